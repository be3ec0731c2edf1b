package graphs_test

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
)

// zooModel builds a small zoo model for the robustness tests.
func zooModel(t *testing.T, name string) *onnx.Model {
	t.Helper()
	m, err := zoo.Build(name, zoo.Config{Width: 2, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// linearModel: x [N,1,4,4] → Flatten → MatMul(W) → Add(b) → Mul(s) → Div(τ)
// → logits [N,3]; nodes are named after their outputs.
func linearModel() *onnx.Model {
	b := onnx.NewBuilder("linear")
	b.Input("x", onnx.Float, -1, 1, 4, 4)
	w := make([]float32, 48)
	for i := range w {
		w[i] = float32(i%7) / 7
	}
	b.Initializer(onnx.FloatTensor("W", []int64{16, 3}, w))
	b.Initializer(onnx.FloatTensor("b", []int64{3}, []float32{0.1, -0.2, 0.3}))
	b.Initializer(onnx.FloatTensor("s", nil, []float32{2}))
	b.Initializer(onnx.FloatTensor("tau", nil, []float32{0.5}))
	node := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) {
		b.Node(op, in, []string{out}, attrs...).Name = proto.String(out)
	}
	node("Flatten", []string{"x"}, "flat", onnx.AttrInt("axis", 1))
	node("MatMul", []string{"flat", "W"}, "mm")
	node("Add", []string{"mm", "b"}, "lin")
	node("Mul", []string{"lin", "s"}, "scaled")
	node("Div", []string{"scaled", "tau"}, "logits")
	b.Output("logits", onnx.Float, -1, 3)
	b.SetMetadata("slatrun.taps", "lin")
	return b.Model()
}

func nodeNamed(m *onnx.Model, name string) *onnxpb.NodeProto {
	for _, n := range m.Graph().GetNode() {
		if n.GetName() == name {
			return n
		}
	}
	panic("no node " + name)
}

// setAttr replaces (or adds) an attribute of n.
func setAttr(n *onnxpb.NodeProto, a *onnxpb.AttributeProto) {
	for i, old := range n.Attribute {
		if old.GetName() == a.GetName() {
			n.Attribute[i] = a
			return
		}
	}
	n.Attribute = append(n.Attribute, a)
}

// appendOutputNode appends op(in) → out and makes out the graph output.
func appendOutputNode(m *onnx.Model, op, in, out string, attrs ...*onnxpb.AttributeProto) {
	g := m.Graph()
	g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out), Input: []string{in}, Output: []string{out}, Attribute: attrs})
	g.Output = []*onnxpb.ValueInfoProto{onnx.ValueInfo(out, onnx.Float, -1, 3)}
}

// renameTensor renames a tensor in every node (inputs and outputs).
func renameTensor(m *onnx.Model, old, new string) {
	for _, n := range m.Graph().GetNode() {
		for i := range n.Input {
			if n.Input[i] == old {
				n.Input[i] = new
			}
		}
		for i := range n.Output {
			if n.Output[i] == old {
				n.Output[i] = new
			}
		}
	}
	for _, vi := range append(m.Graph().GetInput(), m.Graph().GetOutput()...) {
		if vi.GetName() == old {
			vi.Name = proto.String(new)
		}
	}
}

// TestMalformedModels is the list of reproductions: each model
// either derives (all of train, attack and eval) or gives an error naming
// the problem, in every kind, without panicking or looping.
func TestMalformedModels(t *testing.T) {
	cases := []struct {
		name  string
		model func(t *testing.T) *onnx.Model
		taps  []string // nil: the model's metadata
		msg   string   // "" means the model must derive
		is    error
	}{
		{"softmax output", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			appendOutputNode(m, "Softmax", "logits", "probs", onnx.AttrInt("axis", 1))
			return m
		}, nil, "", nil},
		{"log-softmax output", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			appendOutputNode(m, "LogSoftmax", "logits", "logprobs")
			return m
		}, nil, "", nil},
		{"softmax over the batch", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			appendOutputNode(m, "Softmax", "logits", "probs", onnx.AttrInt("axis", 0))
			return m
		}, nil, `output "probs" is a Softmax over axis 0, not over the classes`, nil},
		{"output through an identity, another tensor named logits", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			appendOutputNode(m, "Identity", "logits", "out")
			return m
		}, nil, "", nil},
		{"4-D map output while a tensor is named logits", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			m.Graph().Output = []*onnxpb.ValueInfoProto{onnx.ValueInfo("stage1", onnx.Float, -1, 2, 28, 28)}
			return m
		}, []string{}, `output "stage1" must be float logits [N, K], got shape [2 2 28 28]`, nil},
		{"input not named x, a node output named x", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "x", "images")
			renameTensor(m, "hidden", "x")
			return m
		}, []string{}, "", nil},
		{"input named logits, output named x", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "logits", "tmp")
			renameTensor(m, "x", "logits")
			renameTensor(m, "tmp", "x")
			return m
		}, []string{}, "", nil},
		{"tap on a tensor renamed out of the way", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "x", "images")
			renameTensor(m, "hidden", "x")
			return m
		}, []string{"x"}, `tap "x": slatrun renames this tensor`, nil},
		{"tensors named like the derived graph's inputs and outputs", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "fc1", "y")
			renameTensor(m, "flatten", "grad.x")
			renameTensor(m, "normalized", "delta.hidden")
			return m
		}, nil, "", nil},
		{"tensors named like the range and L1 outputs of the tap", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "fc1", "range.hidden")
			renameTensor(m, "flatten", "l1.hidden")
			return m
		}, nil, "", nil},
		{"tap named like the labels", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			renameTensor(m, "hidden", "y")
			return m
		}, []string{"y"}, `needs the name "y" for the labels input and for tap y`, nil},
		{"conv strides 0", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			setAttr(nodeNamed(m, "stem"), onnx.AttrInts("strides", 0, 1))
			return m
		}, nil, "strides[0] = 0", onnx.ErrInvalid},
		{"conv group 0", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			setAttr(nodeNamed(m, "stage1.conv1"), onnx.AttrInt("group", 0))
			return m
		}, nil, "group = 0", onnx.ErrInvalid},
		{"conv pad larger than its kernel", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			setAttr(nodeNamed(m, "stage2.shortcut"), onnx.AttrInts("pads", 3, 3, 3, 3))
			return m
		}, nil, "smaller than the kernel extent 1", nil},
		{"div with one input", func(t *testing.T) *onnx.Model {
			m := linearModel()
			nodeNamed(m, "logits").Input = []string{"scaled"}
			return m
		}, nil, "Div takes 2 inputs, this node has 1", onnx.ErrInvalid},
		{"mul with one input", func(t *testing.T) *onnx.Model {
			m := linearModel()
			nodeNamed(m, "scaled").Input = []string{"lin"}
			return m
		}, nil, "Mul takes 2 inputs, this node has 1", onnx.ErrInvalid},
		{"matmul with one input", func(t *testing.T) *onnx.Model {
			m := linearModel()
			nodeNamed(m, "mm").Input = []string{"flat"}
			return m
		}, nil, "MatMul takes 2 inputs, this node has 1", onnx.ErrInvalid},
		{"batch norm with three inputs", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			n := nodeNamed(m, "stage1.bn1")
			n.Input = n.Input[:3]
			return m
		}, nil, "BatchNormalization takes 5 inputs, this node has 3", onnx.ErrInvalid},
		{"batch norm statistics of the wrong size", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			for _, init := range m.Graph().Initializer {
				if init.GetName() == "stage2.bn2.running_mean" { // [4] on a [N,4,...] input
					init.Dims = []int64{2, 2}
				}
			}
			return m
		}, nil, "mean has shape [2 2], want [4]", nil},
		{"huge initializer dims", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			m.Graph().Initializer[0].Dims = []int64{1 << 40, 1 << 40}
			return m
		}, nil, "more than the 2147483648 elements", onnx.ErrInvalid},
		{"initializer dims overflowing int64", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			m.Graph().Initializer[0].Dims = []int64{1 << 31, 1 << 31, 1 << 31, 1 << 31, 4}
			return m
		}, nil, "more than the 2147483648 elements", onnx.ErrInvalid},
		{"initializer data shorter than its dims", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			m.Graph().Initializer[0].Dims = []int64{2, 65}
			return m
		}, nil, `tensor "fc1.weight" has 512 bytes of raw data for shape [2 65]`, onnx.ErrInvalid},
		{"external data", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			init := m.Graph().Initializer[0]
			init.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
			init.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("weights.bin")}}
			init.RawData = nil
			return m
		}, nil, "keeps its data in an external file", onnx.ErrExternalData},
		{"huge batch", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			vi := m.Graph().Input[0].GetType().GetTensorType().GetShape().GetDim()
			vi[2].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1 << 40}
			return m
		}, nil, "more than the 2147483648 elements", nil},
		{"integer divisor that folds to zero", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			g := m.Graph()
			g.Node = append(g.Node,
				&onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{"four"}, Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value_ints"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{4}}}},
				&onnxpb.NodeProto{OpType: proto.String("Sub"), Input: []string{"four", "four"}, Output: []string{"zero"}},
				&onnxpb.NodeProto{OpType: proto.String("Div"), Name: proto.String("quotient"), Input: []string{"four", "zero"}, Output: []string{"quotient"}})
			return m
		}, nil, `node "quotient" (Div): integer division by zero: divisor "zero" holds a 0`, nil},
		{"image too wide", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "convnet")
			vi := m.Graph().Input[0].GetType().GetTensorType().GetShape().GetDim()
			vi[3].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1 << 21}
			return m
		}, []string{}, "input extent 2097152 along spatial axis 1 is not in [1, 1048576]", nil},
		{"split with an omitted output", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp") // hidden [N,2] → Split → (h1, "") → Concat(h1, h1) → fc2
			g := m.Graph()
			var nodes []*onnxpb.NodeProto
			for _, n := range g.Node {
				if n.GetName() == "logits" {
					nodes = append(nodes,
						&onnxpb.NodeProto{OpType: proto.String("Split"), Input: []string{"hidden"}, Output: []string{"h1", ""},
							Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("axis", 1), onnx.AttrInt("num_outputs", 2)}},
						&onnxpb.NodeProto{OpType: proto.String("Concat"), Input: []string{"h1", "h1"}, Output: []string{"h11"},
							Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("axis", 1)}})
					n.Input[0] = "h11"
				}
				nodes = append(nodes, n)
			}
			g.Node = nodes
			return m
		}, []string{}, "", nil},
		{"unsqueeze by a hundred axes", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			g := m.Graph()
			axes := make([]int64, 100)
			for i := range axes {
				axes[i] = int64(i)
			}
			g.Initializer = append(g.Initializer, onnx.Int64Tensor("many", []int64{100}, axes))
			g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Unsqueeze"), Name: proto.String("wide"), Input: []string{"hidden", "many"}, Output: []string{"wide"}})
			return m
		}, []string{}, "100 axes to unsqueeze (at most 64)", nil},
		{"duplicate taps", func(t *testing.T) *onnx.Model { return zooModel(t, "convnet") }, []string{"stem", "stem"}, `tap "stem" is listed twice`, nil},
		{"unknown tap", func(t *testing.T) *onnx.Model { return zooModel(t, "convnet") }, []string{"stem", "stage9"}, `unknown tap "stage9": the forward graph has no tensor of that name (tensors it computes include normalize.centered, normalized, stem,`, nil},
		{"tap on a parameter", func(t *testing.T) *onnx.Model { return zooModel(t, "convnet") }, []string{"stem.weight"}, `tap "stem.weight" is an initializer`, nil},
		{"tap the logits do not depend on", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			appendOutputNode(m, "Softmax", "logits", "probs", onnx.AttrInt("axis", -1))
			return m
		}, []string{"probs"}, `tap "probs" does not influence the logits`, nil},
		{"two nodes with one output", func(t *testing.T) *onnx.Model {
			m := zooModel(t, "mlp")
			nodeNamed(m, "hidden").Output[0] = "fc1"
			return m
		}, nil, `outputs "fc1", which is already defined`, onnx.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model(t)
			for _, kind := range []graphs.Kind{graphs.Train, graphs.Attack, graphs.Eval, graphs.Forward} {
				taps := c.taps
				if kind == graphs.Eval {
					taps = []string{}
				}
				// (TapRange and TapL1 only mean something to the attack kind)
				d, err := graphs.Derive(m, graphs.Spec{Kind: kind, Batch: 2, Taps: taps, TapRange: true, TapL1: true})
				if c.msg == "" {
					if err != nil {
						t.Fatalf("%s: %v", kind, err)
					}
					if info := graphs.ReadInfo(d); info.Kind != kind {
						t.Fatalf("%s: derived graph of kind %q", kind, info.Kind)
					}
					continue
				}
				if kind == graphs.Eval && strings.Contains(c.name, "tap") {
					continue // the eval kind has no taps
				}
				if kind == graphs.Forward && c.is == nil {
					continue // the forward kind infers no shapes: only Validate's errors apply
				}
				if err == nil {
					t.Fatalf("%s: derived a graph; want an error mentioning %q", kind, c.msg)
				}
				if !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%s: err = %q, want it to mention %q", kind, err, c.msg)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("%s: err = %v, want errors.Is %v", kind, err, c.is)
				}
			}
		})
	}
}

// TestSoftmaxOutputTrainsOnLogits checks that a model whose output is
// Softmax(logits) derives graphs whose logits are the tensor under the
// Softmax: the same numbers as the model without it.
func TestSoftmaxOutputTrainsOnLogits(t *testing.T) {
	const B = 4
	plain := zooModel(t, "mlp")
	soft := plain.Clone()
	appendOutputNode(soft, "Softmax", "logits", "probs")
	r := rand.New(rand.NewSource(5))
	x := make([]float32, B*64)
	for i := range x {
		x[i] = r.Float32()
	}
	run := func(m *onnx.Model) []float32 {
		d, err := graphs.Derive(m, graphs.Spec{Kind: graphs.Eval, Batch: B})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range d.Graph().GetNode() {
			if n.GetOpType() == "Softmax" {
				t.Fatalf("the eval graph still computes a Softmax (%s)", n.GetName())
			}
		}
		s, err := ort.NewSession(d, ort.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		copy(s.Float("x"), x)
		copy(s.Int64("y"), []int64{0, 1, 2, 0})
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), s.Float("logits")...)
	}
	want, got := run(plain), run(soft)
	sum := 0.0
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("logits[%d] = %v with the Softmax output, %v without", i, got[i], want[i])
		}
		sum += float64(got[i])
	}
	// Probabilities would sum to B; logits of this model do not.
	if math.Abs(sum-B) < 1e-3 {
		t.Fatalf("the logits sum to %v, like probabilities", sum)
	}
}

// TestForwardKindChecksTaps: the forward kind records taps in the
// metadata; it refuses the ones training would refuse by name.
func TestForwardKindChecksTaps(t *testing.T) {
	m := zooModel(t, "convnet")
	for _, c := range []struct {
		taps []string
		msg  string
	}{
		{[]string{"stem", "stage1"}, ""},
		{[]string{"stem", "stem"}, `tap "stem" is listed twice`},
		{[]string{"stage9"}, `unknown tap "stage9"`},
		{[]string{"stem.weight"}, `unknown tap "stem.weight"`},
	} {
		d, err := graphs.Derive(m, graphs.Spec{Kind: graphs.Forward, Batch: 2, Taps: c.taps})
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("taps %v: %v", c.taps, err)
		case c.msg == "" && strings.Join(graphs.ReadInfo(d).Taps, ",") != strings.Join(c.taps, ","):
			t.Errorf("taps %v: metadata says %v", c.taps, graphs.ReadInfo(d).Taps)
		case c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg)):
			t.Errorf("taps %v: err = %v, want it to mention %q", c.taps, err, c.msg)
		}
	}
}
