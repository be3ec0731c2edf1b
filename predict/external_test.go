package predict

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
)

// secret writes a file standing for /etc/passwd and returns its path and
// the location that reaches it from the working directory with "..", as an
// attacker's model would name it.
func secret(t *testing.T) (path, location string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte(strings.Repeat("root:x:0:0:root:/root:/bin/sh\n", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	location, err = filepath.Rel(wd, path)
	if err != nil || !strings.HasPrefix(location, "..") {
		t.Fatalf("no relative path from %s to %s (%v)", wd, path, err)
	}
	return path, location
}

// external makes t keep its data in location: its bytes are dropped and
// external_data names the file, as onnx.save_model(...,
// save_as_external_data=True) writes it.
func external(t *onnxpb.TensorProto, location string, marked bool) *onnxpb.TensorProto {
	t.RawData, t.FloatData = nil, nil
	t.ExternalData = []*onnxpb.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String(location)},
	}
	if marked {
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	}
	return t
}

func extTensor(name, location string) *onnxpb.TensorProto {
	return external(onnx.FloatTensor(name, []int64{4}, make([]float32, 4)), location, true)
}

func node(op, name string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Output: []string{name + "_out"}, Attribute: attrs}
}

func subgraph(name string, nodes []*onnxpb.NodeProto, inits ...*onnxpb.TensorProto) *onnxpb.GraphProto {
	return &onnxpb.GraphProto{Name: proto.String(name), Node: nodes, Initializer: inits}
}

func graphAttr(name string, g *onnxpb.GraphProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}
}

// TestExternalData: a model that keeps any tensor's data in an external
// file is refused by New and Open before ONNX Runtime sees it, wherever the
// tensor is, and the file it names is never opened.
func TestExternalData(t *testing.T) {
	path, loc := secret(t)
	opened := watchOpens(t, path)

	// watchOpens sees an open.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !opened() {
		t.Fatal("watchOpens did not see the file opened: this test would prove nothing")
	}
	// The hole: ONNX Runtime itself, handed the model as bytes, reads the
	// file that the location reaches from the working directory (at
	// OptLevel "none"; at other levels its optimizer happens to refuse the
	// tensor).
	m := model(t, "mlp", 4)
	external(m.Graph().GetInitializer()[0], loc, true)
	s, err := ort.NewSession(m, ort.Options{Batch: 1, Threads: 1, OptLevel: "none"})
	if err == nil {
		s.Close()
	}
	t.Logf("ONNX Runtime alone: session error %v, file opened: %v", err, opened())

	for _, c := range []struct {
		name, tensor, where string
		edit                func(m *onnx.Model)
	}{
		{"initializer", "fc1.weight", "initializer in the main graph", func(m *onnx.Model) {
			external(m.Graph().GetInitializer()[0], loc, true)
		}},
		{"external_data without data_location", "fc2.bias", "initializer in the main graph", func(m *onnx.Model) {
			external(m.Graph().GetInitializer()[3], loc, false)
		}},
		{"Constant attribute", "c", `attribute "value" of node "const" (Constant) in the main graph`, func(m *onnx.Model) {
			g := m.Graph()
			g.Node = append(g.Node, node("Constant", "const", onnx.AttrTensor("value", extTensor("c", loc))))
		}},
		{"tensors attribute", "c2", `attribute "list" of node "custom" (Custom) in the main graph`, func(m *onnx.Model) {
			g := m.Graph()
			g.Node = append(g.Node, node("Custom", "custom", &onnxpb.AttributeProto{Name: proto.String("list"), Type: onnxpb.AttributeProto_TENSORS.Enum(),
				Tensors: []*onnxpb.TensorProto{onnx.FloatTensor("c1", []int64{1}, []float32{1}), extTensor("c2", loc)}}))
		}},
		{"sparse initializer", "sv", "values in sparse initializer in the main graph", func(m *onnx.Model) {
			g := m.Graph()
			g.SparseInitializer = append(g.SparseInitializer, &onnxpb.SparseTensorProto{Values: extTensor("sv", loc), Dims: []int64{8}})
		}},
		{"subgraph initializer", "w", `initializer in the subgraph in attribute "then_branch" of node "if" (If) in the main graph`, func(m *onnx.Model) {
			g := m.Graph()
			g.Node = append(g.Node, node("If", "if",
				graphAttr("then_branch", subgraph("then", nil, extTensor("w", loc))),
				graphAttr("else_branch", subgraph("else", nil))))
		}},
		{"nested subgraph", "deep", `attribute "value" of node "k" (Constant) in the subgraph in attribute "body" of node "loop" (Loop) in the subgraph in attribute "else_branch" of node "if" (If) in the main graph`, func(m *onnx.Model) {
			loop := node("Loop", "loop", graphAttr("body", subgraph("body", []*onnxpb.NodeProto{node("Constant", "k", onnx.AttrTensor("value", extTensor("deep", loc)))})))
			g := m.Graph()
			g.Node = append(g.Node, node("If", "if",
				graphAttr("then_branch", subgraph("then", nil)),
				graphAttr("else_branch", subgraph("else", []*onnxpb.NodeProto{loop}))))
		}},
		{"graphs attribute", "g1", `initializer in subgraph 1 in attribute "bodies" of node "custom" (Custom) in the main graph`, func(m *onnx.Model) {
			g := m.Graph()
			g.Node = append(g.Node, node("Custom", "custom", &onnxpb.AttributeProto{Name: proto.String("bodies"), Type: onnxpb.AttributeProto_GRAPHS.Enum(),
				Graphs: []*onnxpb.GraphProto{subgraph("a", nil), subgraph("b", nil, extTensor("g1", loc))}}))
		}},
		{"function", "f", `attribute "value" of node "fk" (Constant) in function "helper"`, func(m *onnx.Model) {
			m.Proto.Functions = append(m.Proto.Functions, &onnxpb.FunctionProto{Name: proto.String("helper"), Domain: proto.String("local"),
				Node: []*onnxpb.NodeProto{node("Constant", "fk", onnx.AttrTensor("value", extTensor("f", loc)))}})
		}},
		{"training info", "ti", "initializer in training info 0 (algorithm)", func(m *onnx.Model) {
			m.Proto.TrainingInfo = append(m.Proto.TrainingInfo, &onnxpb.TrainingInfoProto{Algorithm: subgraph("step", nil, extTensor("ti", loc))})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := model(t, "mlp", 4)
			c.edit(m)
			want := []string{`tensor "` + c.tensor + `" (` + c.where + `) keeps its data in an external file`, `location "` + loc + `"`}
			for _, mode := range modes {
				p, err := New(m, Options{Mode: mode, Sessions: 1, Runtime: ort.Options{OptLevel: "none"}})
				if err == nil {
					p.Close()
				}
				if !errors.Is(err, ErrExternalData) || !containsAll(err, want) {
					t.Errorf("New (%v): %v; want ErrExternalData saying %q", mode, err, want)
				}
			}
			file := filepath.Join(t.TempDir(), "model.onnx")
			if err := m.Save(file); err != nil {
				t.Fatal(err)
			}
			p, err := Open(file, Options{Sessions: 1, Runtime: ort.Options{OptLevel: "none"}})
			if err == nil {
				p.Close()
			}
			// onnx.Load may refuse the model first, in its own words.
			if err == nil || !strings.Contains(err.Error(), "keeps its data in an external file") {
				t.Errorf("Open: %v; want a refusal of the external file", err)
			}
			if opened() {
				t.Errorf("%s was opened", path)
			}
		})
	}
}

func containsAll(err error, want []string) bool {
	if err == nil {
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			return false
		}
	}
	return true
}
