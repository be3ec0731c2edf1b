package onnx

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// convModel builds x [N,1,4,4] → Conv(W, pads 1) "h" → Relu → MaxPool →
// Flatten → Gemm → Div by 2 → logits [N,3], every node named after its
// output.
func convModel() *Model {
	b := NewBuilder("conv")
	b.Input("x", Float, -1, 1, 4, 4)
	b.Initializer(FloatTensor("W", []int64{2, 1, 3, 3}, make([]float32, 18)))
	b.Initializer(FloatTensor("F", []int64{8, 3}, make([]float32, 24)))
	b.Initializer(Int64Tensor("two", nil, []int64{2}))
	node := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) {
		b.Node(op, in, []string{out}, attrs...).Name = proto.String(out)
	}
	node("Conv", []string{"x", "W"}, "h", AttrInts("pads", 1, 1, 1, 1), AttrInts("strides", 1, 1), AttrInts("kernel_shape", 3, 3), AttrInt("group", 1))
	node("Relu", []string{"h"}, "r")
	node("MaxPool", []string{"r"}, "p", AttrInts("kernel_shape", 2, 2), AttrInts("strides", 2, 2))
	node("Flatten", []string{"p"}, "f", AttrInt("axis", 1))
	node("Gemm", []string{"f", "F"}, "z")
	node("Cast", []string{"z"}, "zi", AttrInt("to", int64(Int64)))
	node("Div", []string{"zi", "two"}, "q")
	node("Cast", []string{"q"}, "logits", AttrInt("to", int64(Float)))
	b.Output("logits", Float, -1, 3)
	return b.Model()
}

func findNode(m *Model, name string) *onnxpb.NodeProto {
	for _, n := range m.Graph().GetNode() {
		if n.GetName() == name {
			return n
		}
	}
	panic("test model has no node " + name)
}

func setAttr(n *onnxpb.NodeProto, a *onnxpb.AttributeProto) {
	for i, old := range n.Attribute {
		if old.GetName() == a.GetName() {
			n.Attribute[i] = a
			return
		}
	}
	n.Attribute = append(n.Attribute, a)
}

func TestValidateAcceptsGoodModels(t *testing.T) {
	for name, m := range map[string]*Model{"small": small(), "conv": convModel()} {
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); err != nil {
			t.Errorf("%s: Decode: %v", name, err)
		}
	}
}

func TestValidateRefusesMalformedModels(t *testing.T) {
	external := func(t *onnxpb.TensorProto) {
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		t.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("../w.bin")}}
		t.RawData = nil
	}
	cases := []struct {
		name string
		edit func(m *Model)
		is   error
		msg  string // the error must contain it
	}{
		{"conv strides 0", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("strides", 1, 0)) }, ErrInvalid, "strides[1] = 0"},
		{"conv dilations 0", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("dilations", 0, 1)) }, ErrInvalid, "dilations[0] = 0"},
		{"conv negative pads", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("pads", 1, -1, 1, 1)) }, ErrInvalid, "pads[1] = -1"},
		{"conv huge pads", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("pads", 1, 1, 1, 1<<40)) }, ErrInvalid, "pads[3]"},
		{"conv pads of wrong length", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("pads", 1, 1)) }, ErrInvalid, "pads has 2 values for 2 spatial axes"},
		{"conv strides of wrong length", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("strides", 1, 1, 1)) }, ErrInvalid, "strides has 3 values"},
		{"conv kernel_shape not the weight's", func(m *Model) { setAttr(findNode(m, "h"), AttrInts("kernel_shape", 3, 2)) }, ErrInvalid, "kernel_shape [3 2] does not match"},
		{"conv group 0", func(m *Model) { setAttr(findNode(m, "h"), AttrInt("group", 0)) }, ErrInvalid, "group = 0"},
		{"conv group does not divide", func(m *Model) { setAttr(findNode(m, "h"), AttrInt("group", 3)) }, ErrInvalid, "group 3 does not divide"},
		{"conv group of type float", func(m *Model) { setAttr(findNode(m, "h"), AttrFloat("group", 1)) }, ErrInvalid, `attribute "group" is FLOAT, want INT`},
		{"conv one input", func(m *Model) { findNode(m, "h").Input = []string{"x"} }, ErrInvalid, "Conv takes 2 to 3 inputs, this node has 1"},
		{"conv empty weight", func(m *Model) { findNode(m, "h").Input[1] = "" }, ErrInvalid, "input 1 of Conv is required but empty"},
		{"div one input", func(m *Model) { findNode(m, "q").Input = []string{"zi"} }, ErrInvalid, "Div takes 2 inputs, this node has 1"},
		{"div by an integer zero", func(m *Model) { m.Graph().Initializer[2] = Int64Tensor("two", nil, []int64{0}) }, ErrInvalid, "integer division by zero"},
		{"gemm four inputs", func(m *Model) { n := findNode(m, "z"); n.Input = append(n.Input, "F", "F") }, ErrInvalid, "Gemm takes 2 to 3 inputs, this node has 4"},
		{"relu two outputs", func(m *Model) { findNode(m, "r").Output = []string{"r", "r2"} }, ErrInvalid, "Relu has 1 outputs, this node has 2"},
		{"pool pads not below the kernel", func(m *Model) { setAttr(findNode(m, "p"), AttrInts("pads", 0, 2, 0, 0)) }, ErrInvalid, "smaller than its kernel"},
		{"pool without kernel", func(m *Model) { findNode(m, "p").Attribute = nil }, ErrInvalid, "needs a kernel_shape"},
		{"pool kernel 0", func(m *Model) { setAttr(findNode(m, "p"), AttrInts("kernel_shape", 0, 2)) }, ErrInvalid, "kernel_shape[0] = 0"},
		{"pool kernel rank", func(m *Model) { setAttr(findNode(m, "p"), AttrInts("kernel_shape", 2, 2, 2)) }, ErrInvalid, "3 spatial axes on an input of rank 4"},
		{"flatten axis out of range", func(m *Model) { setAttr(findNode(m, "f"), AttrInt("axis", 5)) }, ErrInvalid, "axis 5 is out of range for a rank-5 input"},
		{"duplicate attribute", func(m *Model) { n := findNode(m, "f"); n.Attribute = append(n.Attribute, AttrInt("axis", 1)) }, ErrInvalid, `attribute "axis" is given twice`},
		{"two nodes, one output", func(m *Model) { findNode(m, "f").Output[0] = "r" }, ErrInvalid, `outputs "r", which is already defined`},
		{"output shadows the input", func(m *Model) { findNode(m, "r").Output[0] = "x" }, ErrInvalid, `outputs "x", which is already defined (graph input)`},
		{"output shadows an initializer", func(m *Model) { findNode(m, "r").Output[0] = "W" }, ErrInvalid, `outputs "W", which is already defined (initializer)`},
		{"undefined input", func(m *Model) { findNode(m, "r").Input[0] = "ghost" }, ErrInvalid, `reads "ghost", which nothing before it defines`},
		{"undefined graph output", func(m *Model) { m.Graph().Output[0].Name = proto.String("probs") }, ErrInvalid, `graph output "probs" is not produced`},
		{"no graph output", func(m *Model) { m.Graph().Output = nil }, ErrInvalid, "no output"},
		{"duplicate graph input", func(m *Model) { g := m.Graph(); g.Input = append(g.Input, g.Input[0]) }, ErrInvalid, `graph input "x" is declared twice`},
		{"duplicate initializer", func(m *Model) { g := m.Graph(); g.Initializer = append(g.Initializer, g.Initializer[0]) }, ErrInvalid, `initializer "W" is defined twice`},
		{"huge initializer dims", func(m *Model) { m.Graph().Initializer[0].Dims = []int64{1 << 40, 1 << 40, 3, 3} }, ErrInvalid, "more than the 2147483648 elements"},
		{"overflowing initializer dims", func(m *Model) { m.Graph().Initializer[0].Dims = []int64{1 << 31, 1 << 31, 1 << 31, 8} }, ErrInvalid, "more than the 2147483648 elements"},
		{"negative initializer dim", func(m *Model) { m.Graph().Initializer[0].Dims = []int64{2, -1, 3, 3} }, ErrInvalid, "negative"},
		{"initializer data short", func(m *Model) { m.Graph().Initializer[0].Dims = []int64{4, 1, 3, 3} }, ErrInvalid, `tensor "W" has 72 bytes of raw data for shape [4 1 3 3]`},
		{"initializer of no type", func(m *Model) { m.Graph().Initializer[0].DataType = proto.Int32(0) }, ErrInvalid, "element type 0"},
		{"external data location", func(m *Model) { external(m.Graph().Initializer[0]) }, ErrExternalData, `tensor "W" (initializer in the main graph) keeps its data in an external file (location "../w.bin")`},
		{"external data entries only", func(m *Model) {
			m.Graph().Initializer[1].ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("f.bin")}}
		}, ErrExternalData, `tensor "F"`},
		{"external data in a Constant", func(m *Model) {
			t := FloatTensor("c", []int64{1}, []float32{1})
			external(t)
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{"c"}, Attribute: []*onnxpb.AttributeProto{AttrTensor("value", t)}})
		}, ErrExternalData, `attribute "value"`},
		{"split num_outputs", func(m *Model) {
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("Split"), Input: []string{"f"}, Output: []string{"s1", "s2"}, Attribute: []*onnxpb.AttributeProto{AttrInt("num_outputs", 0)}})
		}, ErrInvalid, "num_outputs = 0"},
		{"split num_outputs not the outputs", func(m *Model) {
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("Split"), Input: []string{"f"}, Output: []string{"s1", "s2"}, Attribute: []*onnxpb.AttributeProto{AttrInt("num_outputs", 3)}})
		}, ErrInvalid, "num_outputs = 3, but the node has 2 outputs"},
		{"transpose perm", func(m *Model) {
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("Transpose"), Input: []string{"f"}, Output: []string{"t"}, Attribute: []*onnxpb.AttributeProto{AttrInts("perm", 0, 0)}})
		}, ErrInvalid, "not a permutation"},
		{"constant of a huge shape", func(m *Model) {
			g := m.Graph()
			g.Initializer = append(g.Initializer, Int64Tensor("big", []int64{2}, []int64{1 << 30, 1 << 30}))
			g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("ConstantOfShape"), Input: []string{"big"}, Output: []string{"zeros"}})
		}, ErrInvalid, "more than the 2147483648 elements"},
		{"initializer of rank 65", func(m *Model) {
			g := m.Graph()
			g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String("deep"), Dims: make([]int64, 65), DataType: proto.Int32(int32(Float))})
		}, ErrInvalid, `tensor "deep" has rank 65 (at most 64)`},
		{"axes attribute too long", func(m *Model) {
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("ReduceSum"), Input: []string{"f"}, Output: []string{"s"}, Attribute: []*onnxpb.AttributeProto{AttrInts("axes", make([]int64, 1000)...)}})
		}, ErrInvalid, "attribute axes has 1000 values"},
		{"batch norm with three inputs", func(m *Model) {
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("BatchNormalization"), Input: []string{"h", "W", "W"}, Output: []string{"bn"}})
		}, ErrInvalid, "BatchNormalization takes 5 inputs, this node has 3"},
		{"opset imported twice", func(m *Model) {
			m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("ai.onnx"), Version: proto.Int64(13)})
		}, ErrInvalid, "imported twice"},
		{"subgraph reading an undefined name", func(m *Model) {
			sub := &onnxpb.GraphProto{Name: proto.String("then"), Node: []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{"nowhere"}, Output: []string{"o"}}},
				Output: []*onnxpb.ValueInfoProto{ValueInfo("o", Float, 1)}}
			m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("If"), Input: []string{"f"}, Output: []string{"i"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: sub}}})
		}, ErrInvalid, `subgraph "then" in attribute "then_branch": node 0 (Identity) reads "nowhere"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := convModel()
			c.edit(m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate accepted the model")
			}
			if !errors.Is(err, c.is) {
				t.Errorf("err = %v, want errors.Is %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to mention %q", err, c.msg)
			}
			// Decode runs the same check on the bytes.
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Decode: %v, want it to mention %q", err, c.msg)
			}
		})
	}
}

func TestSubgraphsMayReadTheOuterScope(t *testing.T) {
	m := convModel()
	sub := func(name string) *onnxpb.GraphProto {
		return &onnxpb.GraphProto{Name: proto.String(name), Node: []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{"f"}, Output: []string{name + ".o"}}},
			Output: []*onnxpb.ValueInfoProto{ValueInfo(name+".o", Float, -1, 8)}}
	}
	g := m.Graph()
	g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String("cond"), DataType: proto.Int32(int32(Bool)), RawData: []byte{1}})
	g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("If"), Input: []string{"cond"}, Output: []string{"chosen"},
		Attribute: []*onnxpb.AttributeProto{
			{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: sub("then")},
			{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: sub("else")},
		}})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSubgraphDepthIsBounded(t *testing.T) {
	m := convModel()
	inner := &onnxpb.GraphProto{Name: proto.String("leaf"), Node: []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{"f"}, Output: []string{"leaf.o"}}},
		Output: []*onnxpb.ValueInfoProto{ValueInfo("leaf.o", Float, 1)}}
	for i := 0; i < MaxGraphDepth+2; i++ {
		inner = &onnxpb.GraphProto{Name: proto.String("level"), Node: []*onnxpb.NodeProto{{OpType: proto.String("Custom"), Domain: proto.String("my"), Output: []string{"o"},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("body"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: inner}}}},
			Output: []*onnxpb.ValueInfoProto{ValueInfo("o", Float, 1)}}
	}
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("my"), Version: proto.Int64(1)})
	m.Graph().Node = append(m.Graph().Node, inner.Node[0])
	err := m.Validate()
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("err = %v, want a refusal of the nesting", err)
	}
}

func TestElements(t *testing.T) {
	for _, c := range []struct {
		dims []int64
		want int64
		ok   bool
	}{
		{nil, 1, true},
		{[]int64{2, 3}, 6, true},
		{[]int64{0, 1 << 31}, 0, true},
		{[]int64{1 << 31}, 1 << 31, true},
		{[]int64{1 << 31, 2}, 0, false},
		{[]int64{1 << 32}, 0, false},
		{[]int64{1 << 62, 1 << 62}, 0, false},
		{[]int64{3, -1}, 0, false},
	} {
		got, err := Elements(c.dims)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("Elements(%v) = %d, %v; want %d, ok %v", c.dims, got, err, c.want, c.ok)
		}
	}
}

func TestCheckArity(t *testing.T) {
	for _, c := range []struct {
		domain, op string
		in, out    []string
		ok         bool
	}{
		{"", "Mul", []string{"a", "b"}, []string{"c"}, true},
		{"", "Mul", []string{"a"}, []string{"c"}, false},
		{"", "MatMul", []string{"a"}, []string{"c"}, false},
		{"", "BatchNormalization", []string{"x", "s", "b"}, []string{"y"}, false},
		{"", "BatchNormalization", []string{"x", "s", "b", "m", "v"}, []string{"y", "", ""}, true},
		{"", "Clip", []string{"x", "", "hi"}, []string{"y"}, true},
		{"", "Sum", []string{"a", ""}, []string{"y"}, false},
		{"", "Relu", []string{"x"}, []string{""}, false},
		{"", "Loop", []string{"", "", "v"}, []string{"o"}, true},
		{"com.microsoft.nchwc", "Conv", []string{"x"}, []string{"y"}, true},
		{"", "MadeUp", make([]string, MaxNodeArity+1), []string{"y"}, false},
	} {
		err := CheckArity(c.domain, c.op, c.in, c.out)
		if (err == nil) != c.ok {
			t.Errorf("CheckArity(%q, %s, %q, %q) = %v, want ok %v", c.domain, c.op, c.in, c.out, err, c.ok)
		}
	}
}
