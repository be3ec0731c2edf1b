package graphs_test

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// FuzzDerive mutates small forward graphs (the zoo's mlp and convnet at
// width 2, the PyTorch CNN of testdata, linearModel, opsModel) as the fuzz input
// says, encodes the mutant, decodes it with onnx.Decode and, if it decodes,
// derives the train, attack and eval graphs. Property: Derive returns a
// graph or an error, never panics, hangs or reports an internal error (a
// derived graph that fails validation), and a derived graph encodes.
//
// The input is a header of fuzzHeader bytes (base model, batch, taps, eval
// loss, NCHWc, slatrun's kernels) and then records of fuzzRecord bytes,
// each one mutation: its kind and four argument bytes (which node,
// attribute, tensor or dimension; which value). mutate documents the kinds.
// The seed corpus in testdata/fuzz/FuzzDerive is written by
// TestFuzzDeriveSeeds with SLATRUN_WRITE_FUZZ_CORPUS=1.
func FuzzDerive(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := deriveMutant(data); err != nil {
			t.Fatal(err)
		}
	})
}

const (
	fuzzHeader = 6
	fuzzRecord = 5
	maxMutants = 16
)

// fuzzBases are the models FuzzDerive mutates.
var fuzzBases = sync.OnceValues(func() ([]*onnx.Model, error) {
	var ms []*onnx.Model
	for _, name := range []string{"mlp", "convnet"} {
		m, err := zoo.Build(name, zoo.Config{Width: 2, Classes: 3})
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	torch, err := onnx.Load(filepath.Join("testdata", "torch_cnn.onnx"))
	if err != nil {
		return nil, err
	}
	return append(ms, torch, linearModel(), opsModel()), nil
})

// opsModel puts many gradient rules on the path from x to the logits:
// x [N,2,6,6] → Conv → AveragePool (overlapping) → MaxPool → Split →
// Concat → Transpose → Pad → Slice → ConvTranspose → Clip → ReduceMean →
// Reshape → MatMul → logits [N,3].
func opsModel() *onnx.Model {
	b := onnx.NewBuilder("ops")
	b.Input("x", onnx.Float, -1, 2, 6, 6)
	r := rand.New(rand.NewSource(3))
	floats := func(name string, shape ...int64) string {
		v := make([]float32, onnx.NumElements(shape))
		for i := range v {
			v[i] = float32(r.NormFloat64()) / 4
		}
		return b.Initializer(onnx.FloatTensor(name, shape, v))
	}
	ints := func(name string, v ...int64) string {
		return b.Initializer(onnx.Int64Tensor(name, []int64{int64(len(v))}, v))
	}
	node := func(op string, in []string, out []string, attrs ...*onnxpb.AttributeProto) {
		b.Node(op, in, out, attrs...).Name = proto.String(out[0])
	}
	node("Conv", []string{"x", floats("conv.w", 4, 2, 3, 3), floats("conv.b", 4)}, []string{"conv"}, onnx.AttrInts("pads", 1, 1, 1, 1))
	node("AveragePool", []string{"conv"}, []string{"avg"}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("pads", 1, 1, 1, 1))
	node("MaxPool", []string{"avg"}, []string{"max"}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))
	node("Split", []string{"max"}, []string{"lo", "hi"}, onnx.AttrInt("axis", 1), onnx.AttrInt("num_outputs", 2))
	node("Concat", []string{"hi", "lo"}, []string{"cat"}, onnx.AttrInt("axis", 1))
	node("Transpose", []string{"cat"}, []string{"tr"}, onnx.AttrInts("perm", 0, 1, 3, 2))
	node("Pad", []string{"tr", ints("pads", 0, 0, 1, 1, 0, 0, 1, 1)}, []string{"pad"})
	node("Slice", []string{"pad", ints("starts", 1, 1), ints("ends", 4, 4), ints("slice.axes", 2, 3)}, []string{"slice"})
	node("ConvTranspose", []string{"slice", floats("deconv.w", 4, 2, 2, 2)}, []string{"deconv"}, onnx.AttrInts("strides", 2, 2))
	b.Initializer(onnx.FloatTensor("lo.clip", nil, []float32{-1}))
	b.Initializer(onnx.FloatTensor("hi.clip", nil, []float32{1}))
	node("Clip", []string{"deconv", "lo.clip", "hi.clip"}, []string{"clip"})
	node("ReduceMean", []string{"clip", ints("mean.axes", 2, 3)}, []string{"mean"}, onnx.AttrInt("keepdims", 0))
	node("Reshape", []string{"mean", ints("shape", -1, 2)}, []string{"flat"})
	node("MatMul", []string{"flat", floats("fc", 2, 3)}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 3)
	b.SetMetadata("slatrun.taps", "conv,cat")
	return b.Model()
}

// deriveMutant runs the fuzz property on one input; it returns an error
// for a violation (a panic is one too, caught by the fuzzing engine).
func deriveMutant(data []byte) error {
	bases, err := fuzzBases()
	if err != nil {
		return err
	}
	m, spec := mutate(bases, data)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil // not encodable: nothing to decode
	}
	watchdog := time.AfterFunc(30*time.Second, func() {
		panic(fmt.Sprintf("FuzzDerive: input %q ran for 30 s", data))
	})
	defer watchdog.Stop()
	dm, err := onnx.Decode(b)
	if err != nil {
		return nil
	}
	if _, _, err := graphs.Parameters(dm); err != nil && strings.Contains(err.Error(), "internal error") {
		return err
	}
	for _, kind := range []graphs.Kind{graphs.Train, graphs.Attack, graphs.Eval, graphs.Forward} {
		s := spec
		s.Kind = kind
		d, err := graphs.Derive(dm, s)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				return fmt.Errorf("%s: %v", kind, err)
			}
			continue
		}
		if _, err := d.Encode(); err != nil {
			return fmt.Errorf("%s: the derived graph does not encode: %v", kind, err)
		}
	}
	return nil
}

// input reads the fuzz input byte by byte, zeros past its end.
type input struct {
	b []byte
	i int
}

func (in *input) byte() int {
	if in.i >= len(in.b) {
		in.i++
		return 0
	}
	in.i++
	return int(in.b[in.i-1])
}

// pick returns b mod n (0 for n ≤ 0).
func pick(b, n int) int {
	if n <= 0 {
		return 0
	}
	return b % n
}

// interesting are the integer values mutations write.
var interesting = []int64{0, 1, -1, 2, 3, -2, 4, 7, 1 << 20, 1 << 31, 1 << 40, 1 << 62, math.MinInt64, math.MaxInt64, 16, 28}

// fuzzNames are tensor names mutations rename to or wire in.
var fuzzNames = []string{"x", "logits", "y", "loss", "grad.x", "probs", "x__1", "logits__1", "", "ghost", "delta.stem", "stem.pre__1", "target", "loss.each"}

// fuzzOps are the op types a node may be turned into.
var fuzzOps = strings.Fields(`Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization
	Relu Softmax LogSoftmax Gemm MatMul Add Mul Div Sub Pow Where Flatten Reshape Transpose Squeeze Unsqueeze Concat
	Split Slice Pad Gather Expand Tile ReduceMean ReduceSum ReduceMax ArgMax TopK Shape Size Cast ConstantOfShape Range
	Identity Dropout Clip Max Min Sum Mean PRelu LeakyRelu Sigmoid Tanh Erf Sqrt Constant If Loop MadeUp Upsample
	Resize GatherElements ScatterElements CastLike Sign Floor HardSwish Elu Neg Abs Exp Log`)

// fuzzAttrs are the attribute names a mutation may add.
var fuzzAttrs = strings.Fields(`strides pads dilations kernel_shape group axis axes perm keepdims num_outputs
	output_padding auto_pad transA transB alpha epsilon to ceil_mode count_include_pad allowzero split start end value mode`)

// The mutation kinds (the first byte of a record, mod mutKinds).
const (
	mutInt       = iota // set INT attribute p2 of node p1 (or an INTS element p4) to interesting[p3]
	mutIntsLen          // truncate INTS attribute p2 of node p1 to p3%4 values, or append interesting[p4]
	mutDim              // set dim p2 of initializer p1 to interesting[p3]; p4 odd: add a dim instead
	mutOp               // turn node p1 into fuzzOps[p2]
	mutDropInput        // remove input p2 of node p1 (p3 odd: make it "" instead)
	mutAddInput         // append to node p1 an input: tensor p2 (p3 odd: fuzzNames[p2])
	mutOutputs          // p3 even: remove output p2 of node p1; odd: append fuzzNames[p2]
	mutRename           // rename tensor p1 to fuzzNames[p2] (p3 odd: to tensor p2's name) everywhere
	mutGraphOut         // make tensor p1 the graph output (p2 odd: add it as a second output)
	mutHead             // append Softmax/LogSoftmax/Identity (p1%3) over the output, axis interesting[p2]
	mutInputDim         // set dim p1 of the graph input to interesting[p2] (p3 odd: symbolic)
	mutDelAttr          // delete attribute p2 of node p1
	mutAddAttr          // add attribute fuzzAttrs[p2] to node p1, type p3%5, value interesting[p4]
	mutNodeOrder        // swap nodes p1 and p2 (p3 odd: duplicate node p1 at the end)
	mutData             // initializer p1: p2%4: truncate raw data, external data, element type p3, clear
	mutOpset            // set the default opset to one of a few versions (p1)
	mutFloat            // set FLOAT attribute p2 of node p1 to NaN, ±Inf, 0 or −1 (p3)
	mutConst            // add a Constant of interesting shape/type feeding input p2 of node p1
	mutInt64s           // add an int64 initializer [interesting[p3], interesting[p4]] as input p2 of node p1
	mutKinds
)

func nodeAt(g *onnxpb.GraphProto, p int) *onnxpb.NodeProto {
	if len(g.Node) == 0 {
		return nil
	}
	return g.Node[pick(p, len(g.Node))]
}

// tensorNames lists the graph's tensor names in a fixed order.
func tensorNames(g *onnxpb.GraphProto) []string {
	seen := map[string]bool{}
	var names []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	for _, vi := range g.Input {
		add(vi.GetName())
	}
	for _, t := range g.Initializer {
		add(t.GetName())
	}
	for _, n := range g.Node {
		for _, s := range n.Output {
			add(s)
		}
	}
	return names
}

// mutate applies the mutations data describes to a copy of one of the base
// models and returns it with the Spec (batch, taps, loss, NCHWc) to derive.
func mutate(bases []*onnx.Model, data []byte) (*onnx.Model, graphs.Spec) {
	in := &input{b: data}
	m := bases[pick(in.byte(), len(bases))].Clone()
	spec := graphs.Spec{Batch: 1 + pick(in.byte(), 3)}
	tapMode, tapA, tapB, flags := in.byte(), in.byte(), in.byte(), in.byte()
	spec.Loss = []string{"ce", "cw", "dlr", "dlr-t"}[pick(flags, 4)]
	if flags&4 != 0 {
		spec.NCHWcBlock = 2
	}
	spec.Kernels = flags&8 != 0
	g := m.Graph()
	for r := 0; r < maxMutants && in.i < len(data); r++ {
		kind, p1, p2, p3, p4 := in.byte(), in.byte(), in.byte(), in.byte(), in.byte()
		val := interesting[pick(p3, len(interesting))]
		n := nodeAt(g, p1)
		switch pick(kind, mutKinds) {
		case mutInt:
			if n == nil || len(n.Attribute) == 0 {
				continue
			}
			a := n.Attribute[pick(p2, len(n.Attribute))]
			if len(a.Ints) > 0 {
				a.Ints[pick(p4, len(a.Ints))] = val
			} else {
				a.I = proto.Int64(val)
			}
		case mutIntsLen:
			if n == nil || len(n.Attribute) == 0 {
				continue
			}
			a := n.Attribute[pick(p2, len(n.Attribute))]
			if k := p3 % 4; k < len(a.Ints) {
				a.Ints = a.Ints[:k]
			} else {
				a.Ints = append(a.Ints, interesting[pick(p4, len(interesting))])
			}
		case mutDim:
			if len(g.Initializer) == 0 {
				continue
			}
			t := g.Initializer[pick(p1, len(g.Initializer))]
			if p4%2 == 1 || len(t.Dims) == 0 {
				t.Dims = append(t.Dims, val)
			} else {
				t.Dims[pick(p2, len(t.Dims))] = val
			}
		case mutOp:
			if n != nil {
				n.OpType = proto.String(fuzzOps[pick(p2, len(fuzzOps))])
			}
		case mutDropInput:
			if n == nil || len(n.Input) == 0 {
				continue
			}
			i := pick(p2, len(n.Input))
			if p3%2 == 1 {
				n.Input[i] = ""
			} else {
				n.Input = append(n.Input[:i], n.Input[i+1:]...)
			}
		case mutAddInput:
			if n == nil {
				continue
			}
			name := fuzzNames[pick(p2, len(fuzzNames))]
			if names := tensorNames(g); p3%2 == 0 && len(names) > 0 {
				name = names[pick(p2, len(names))]
			}
			n.Input = append(n.Input, name)
		case mutOutputs:
			if n == nil {
				continue
			}
			if p3%2 == 0 && len(n.Output) > 0 {
				i := pick(p2, len(n.Output))
				n.Output = append(n.Output[:i], n.Output[i+1:]...)
			} else {
				n.Output = append(n.Output, fuzzNames[pick(p2, len(fuzzNames))])
			}
		case mutRename:
			names := tensorNames(g)
			if len(names) == 0 {
				continue
			}
			from := names[pick(p1, len(names))]
			to := fuzzNames[pick(p2, len(fuzzNames))]
			if p3%2 == 1 {
				to = names[pick(p2, len(names))]
			}
			renameEverywhere(g, from, to)
		case mutGraphOut:
			names := tensorNames(g)
			if len(names) == 0 {
				continue
			}
			vi := onnx.ValueInfo(names[pick(p1, len(names))], onnx.Float, -1, 3)
			if p2%2 == 1 {
				g.Output = append(g.Output, vi)
			} else {
				g.Output = []*onnxpb.ValueInfoProto{vi}
			}
		case mutHead:
			if len(g.Output) == 0 {
				continue
			}
			op := []string{"Softmax", "LogSoftmax", "Identity"}[p1%3]
			out := g.Output[0].GetName()
			head := &onnxpb.NodeProto{OpType: proto.String(op), Input: []string{out}, Output: []string{out + ".head"}}
			if p4%2 == 1 {
				head.Attribute = []*onnxpb.AttributeProto{onnx.AttrInt("axis", interesting[pick(p2, len(interesting))])}
			}
			g.Node = append(g.Node, head)
			g.Output[0] = onnx.ValueInfo(out+".head", onnx.Float, -1, 3)
		case mutInputDim:
			if len(g.Input) == 0 {
				continue
			}
			dims := g.Input[0].GetType().GetTensorType().GetShape().GetDim()
			if len(dims) == 0 {
				continue
			}
			d := dims[pick(p1, len(dims))]
			if p3%2 == 1 {
				d.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "H"}
			} else {
				d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: interesting[pick(p2, len(interesting))]}
			}
		case mutDelAttr:
			if n == nil || len(n.Attribute) == 0 {
				continue
			}
			i := pick(p2, len(n.Attribute))
			n.Attribute = append(n.Attribute[:i], n.Attribute[i+1:]...)
		case mutAddAttr:
			if n == nil {
				continue
			}
			name := fuzzAttrs[pick(p2, len(fuzzAttrs))]
			v := interesting[pick(p4, len(interesting))]
			var a *onnxpb.AttributeProto
			switch p3 % 5 {
			case 0:
				a = onnx.AttrInt(name, v)
			case 1:
				a = onnx.AttrInts(name, v, v, v, v)
			case 2:
				a = onnx.AttrInts(name, v, 1)
			case 3:
				a = onnx.AttrFloat(name, float32(v))
			default:
				a = onnx.AttrString(name, []string{"SAME_UPPER", "VALID", "NOTSET", "reflect", "bogus"}[pick(p4, 5)])
			}
			n.Attribute = append(n.Attribute, a)
		case mutNodeOrder:
			if len(g.Node) == 0 {
				continue
			}
			i, j := pick(p1, len(g.Node)), pick(p2, len(g.Node))
			if p3%2 == 1 {
				g.Node = append(g.Node, proto.Clone(g.Node[i]).(*onnxpb.NodeProto))
			} else {
				g.Node[i], g.Node[j] = g.Node[j], g.Node[i]
			}
		case mutData:
			if len(g.Initializer) == 0 {
				continue
			}
			t := g.Initializer[pick(p1, len(g.Initializer))]
			switch p2 % 4 {
			case 0:
				if len(t.RawData) > 0 {
					t.RawData = t.RawData[:pick(p3, len(t.RawData))]
				}
			case 1:
				t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
				t.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("../w.bin")}}
			case 2:
				t.DataType = proto.Int32(int32(pick(p3, 25)))
			default:
				t.RawData, t.FloatData, t.Int64Data = nil, nil, nil
			}
		case mutOpset:
			for _, o := range m.Proto.OpsetImport {
				if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
					o.Version = proto.Int64([]int64{7, 9, 10, 11, 12, 13, 17, 18, 25, 0, 99}[pick(p1, 11)])
				}
			}
		case mutFloat:
			if n == nil || len(n.Attribute) == 0 {
				continue
			}
			a := n.Attribute[pick(p2, len(n.Attribute))]
			a.F = proto.Float32([]float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -1}[pick(p3, 5)])
		case mutConst:
			if n == nil {
				continue
			}
			name := fmt.Sprintf("fuzz.const%d", r)
			dims := []int64{interesting[pick(p3, 8)]}
			var t *onnxpb.TensorProto
			if e, err := onnx.Elements(dims); err == nil && e <= 64 {
				if p4%2 == 0 {
					t = onnx.FloatTensor(name, dims, make([]float32, e))
				} else {
					t = onnx.Int64Tensor(name, dims, make([]int64, e))
				}
			} else {
				t = onnx.Int64Tensor(name, []int64{1}, []int64{interesting[pick(p3, len(interesting))]})
			}
			g.Node = append([]*onnxpb.NodeProto{{OpType: proto.String("Constant"), Output: []string{name}, Attribute: []*onnxpb.AttributeProto{onnx.AttrTensor("value", t)}}}, g.Node...)
			setInput(n, p2, name)
		case mutInt64s:
			if n == nil {
				continue
			}
			name := fmt.Sprintf("fuzz.ints%d", r)
			g.Initializer = append(g.Initializer, onnx.Int64Tensor(name, []int64{2}, []int64{val, interesting[pick(p4, len(interesting))]}))
			setInput(n, p2, name)
		}
	}
	names := tensorNames(g)
	tapName := func(p int) string {
		if p%3 == 0 {
			return fuzzNames[pick(p/3, len(fuzzNames))]
		}
		return names[pick(p, len(names))]
	}
	switch pick(tapMode, 4) {
	case 1:
		spec.Taps = []string{}
	case 2:
		if len(names) > 0 {
			spec.Taps = []string{tapName(tapA)}
		}
	case 3:
		if len(names) > 0 {
			spec.Taps = []string{tapName(tapA), tapName(tapB)}
		}
	}
	return m, spec
}

// setInput makes name input p%4 of n (appending if n has fewer inputs).
func setInput(n *onnxpb.NodeProto, p int, name string) {
	i := p % 4
	if i < len(n.Input) {
		n.Input[i] = name
	} else {
		n.Input = append(n.Input, name)
	}
}

// renameEverywhere renames tensor from to to in nodes, initializers and
// graph inputs and outputs.
func renameEverywhere(g *onnxpb.GraphProto, from, to string) {
	for _, n := range g.Node {
		for i := range n.Input {
			if n.Input[i] == from {
				n.Input[i] = to
			}
		}
		for i := range n.Output {
			if n.Output[i] == from {
				n.Output[i] = to
			}
		}
	}
	for _, t := range g.Initializer {
		if t.GetName() == from {
			t.Name = proto.String(to)
		}
	}
	for _, vi := range append(append([]*onnxpb.ValueInfoProto(nil), g.Input...), g.Output...) {
		if vi.GetName() == from {
			vi.Name = proto.String(to)
		}
	}
}

// fuzzSeed is one input of the seed corpus; want says what deriving it
// must give: "" every kind derives, otherwise every training kind fails
// with an error containing want.
type fuzzSeed struct {
	name string
	data []byte
	want string
}

// seedBuilder writes fuzz inputs in mutate's format.
type seedBuilder struct {
	base, batch, tapMode, tapA, tapB, flags byte
	records                                 [][fuzzRecord]byte
}

func (s *seedBuilder) mut(kind int, p ...int) *seedBuilder {
	var r [fuzzRecord]byte
	r[0] = byte(kind)
	for i, v := range p {
		r[1+i] = byte(v)
	}
	s.records = append(s.records, r)
	return s
}

func (s *seedBuilder) bytes() []byte {
	b := []byte{s.base, s.batch, s.tapMode, s.tapA, s.tapB, s.flags}
	for _, r := range s.records {
		b = append(b, r[:]...)
	}
	return b
}

// index returns the position of value in list (for the seeds' arguments).
func index[T comparable](t testing.TB, list []T, value T) int {
	for i, v := range list {
		if v == value {
			return i
		}
	}
	t.Fatalf("fuzz seeds: %v is not in %v", value, list)
	return 0
}

// fuzzSeeds returns the named seeds (the reproductions and the
// unmutated bases) and a few random ones.
func fuzzSeeds(t testing.TB) []fuzzSeed {
	bases, err := fuzzBases()
	if err != nil {
		t.Fatal(err)
	}
	nodeIndex := func(base int, name string) int {
		for i, n := range bases[base].Graph().GetNode() {
			if n.GetName() == name {
				return i
			}
		}
		t.Fatalf("fuzz seeds: base %d has no node %q", base, name)
		return 0
	}
	attrIndex := func(base int, node, attr string) int {
		for i, a := range bases[base].Graph().GetNode()[nodeIndex(base, node)].GetAttribute() {
			if a.GetName() == attr {
				return i
			}
		}
		t.Fatalf("fuzz seeds: node %q has no attribute %q", node, attr)
		return 0
	}
	tensorIndex := func(base int, name string) int { return index(t, tensorNames(bases[base].Graph()), name) }
	const mlp, convnet, torch, linear, ops = 0, 1, 2, 3, 4
	v := func(x int64) int { return index(t, interesting, x) }
	seeds := []fuzzSeed{
		{"base-mlp", (&seedBuilder{base: mlp}).bytes(), ""},
		{"base-convnet", (&seedBuilder{base: convnet, tapMode: 0}).bytes(), ""},
		{"base-torch", (&seedBuilder{base: torch, batch: 1}).bytes(), ""},
		{"base-linear", (&seedBuilder{base: linear}).bytes(), ""},
		{"base-ops", (&seedBuilder{base: ops, batch: 2}).bytes(), ""},
		{"ops-split-omitted-output", (&seedBuilder{base: ops}).
			mut(mutRename, tensorIndex(ops, "hi"), index(t, fuzzNames, "")).
			mut(mutDropInput, nodeIndex(ops, "cat"), 0, 0).
			mut(mutAddInput, nodeIndex(ops, "cat"), tensorIndex(ops, "lo"), 0).bytes(), ""},
		{"convnet-nchwc-dlr", (&seedBuilder{base: convnet, flags: 4 | 2}).bytes(), ""},
		{"torch-kernels", (&seedBuilder{base: torch, flags: 8}).bytes(), ""},
		{"softmax-output", (&seedBuilder{base: convnet}).mut(mutHead, 0, 0, 0, 0).bytes(), ""},
		{"log-softmax-output", (&seedBuilder{base: torch}).mut(mutHead, 1, 0, 0, 0).bytes(), ""},
		{"softmax-over-batch", (&seedBuilder{base: mlp}).mut(mutHead, 0, v(0), 0, 1).bytes(), "not over the classes"},
		{"map-output-beside-logits", (&seedBuilder{base: convnet, tapMode: 1}).mut(mutGraphOut, tensorIndex(convnet, "stage1")).bytes(), "must be float logits [N, K]"},
		{"input-renamed-x-taken", (&seedBuilder{base: mlp, tapMode: 1}).
			mut(mutRename, tensorIndex(mlp, "x"), index(t, fuzzNames, "ghost")).
			mut(mutRename, tensorIndex(mlp, "hidden"), index(t, fuzzNames, "x")).bytes(), ""},
		{"output-renamed-logits-taken", (&seedBuilder{base: mlp, tapMode: 1}).
			mut(mutRename, tensorIndex(mlp, "logits"), index(t, fuzzNames, "probs")).
			mut(mutRename, tensorIndex(mlp, "fc1"), index(t, fuzzNames, "logits")).bytes(), ""},
		// found by FuzzDerive
		{"fresh-name-is-a-gradient-name", (&seedBuilder{base: mlp}).
			mut(mutRename, tensorIndex(mlp, "fc2.weight"), index(t, fuzzNames, "x__1")).
			mut(mutRename, tensorIndex(mlp, "flatten"), index(t, fuzzNames, "grad.x")).bytes(), ""},
		{"conv-strides-0", (&seedBuilder{base: convnet}).mut(mutInt, nodeIndex(convnet, "stem"), attrIndex(convnet, "stem", "strides"), v(0), 1).bytes(), "strides[1] = 0"},
		{"conv-group-huge", (&seedBuilder{base: convnet}).mut(mutAddAttr, nodeIndex(convnet, "stage2.conv1"), index(t, fuzzAttrs, "group"), 0, v(1<<62)).bytes(), "attribute group = 4611686018427387904"},
		{"conv-pads-huge", (&seedBuilder{base: torch}).mut(mutInt, nodeIndex(torch, "/conv1/Conv"), attrIndex(torch, "/conv1/Conv", "pads"), v(1<<40), 2).bytes(), "pads[2] = 1099511627776"},
		{"div-one-input", (&seedBuilder{base: linear}).mut(mutDropInput, nodeIndex(linear, "logits"), 1).bytes(), "Div takes 2 inputs"},
		{"mul-one-input", (&seedBuilder{base: linear}).mut(mutDropInput, nodeIndex(linear, "scaled"), 0).bytes(), "Mul takes 2 inputs"},
		{"matmul-one-input", (&seedBuilder{base: linear}).mut(mutDropInput, nodeIndex(linear, "mm"), 1).bytes(), "MatMul takes 2 inputs"},
		{"bn-three-inputs", (&seedBuilder{base: convnet}).
			mut(mutDropInput, nodeIndex(convnet, "stage1.bn1"), 4).
			mut(mutDropInput, nodeIndex(convnet, "stage1.bn1"), 3).bytes(), "BatchNormalization takes 5 inputs"},
		{"huge-initializer-dims", (&seedBuilder{base: mlp}).mut(mutDim, 0, 0, v(1<<40)).mut(mutDim, 0, 1, v(1<<40)).bytes(), "elements"},
		{"external-data", (&seedBuilder{base: torch}).mut(mutData, 0, 1).bytes(), "external file"},
		{"duplicate-taps", (&seedBuilder{base: convnet, tapMode: 3, tapA: byte(tensorIndex(convnet, "stem")), tapB: byte(tensorIndex(convnet, "stem"))}).bytes(), "listed twice"},
		{"unknown-tap", (&seedBuilder{base: convnet, tapMode: 2, tapA: byte(3 * index(t, fuzzNames, "ghost"))}).bytes(), `unknown tap "ghost"`},
		{"opset-9-torch", (&seedBuilder{base: torch}).mut(mutOpset, 1).bytes(), ""},
		{"reshape-huge-shape", (&seedBuilder{base: mlp}).
			mut(mutOp, nodeIndex(mlp, "flatten"), index(t, fuzzOps, "Reshape")).
			mut(mutInt64s, nodeIndex(mlp, "flatten"), 1, v(1<<40), v(-1)).bytes(), "reshape"},
		{"constant-of-shape-huge", (&seedBuilder{base: mlp}).
			mut(mutInt64s, nodeIndex(mlp, "flatten"), 0, v(1<<31), v(1<<31)).
			mut(mutOp, nodeIndex(mlp, "flatten"), index(t, fuzzOps, "ConstantOfShape")).bytes(), "elements"},
		{"pool-kernel-0", (&seedBuilder{base: torch}).mut(mutInt, nodeIndex(torch, "/pool1/MaxPool"), attrIndex(torch, "/pool1/MaxPool", "kernel_shape"), v(0), 1).bytes(), "kernel_shape[1] = 0"},
	}
	// Random seeds: deterministic, a few mutations each.
	r := rand.New(rand.NewSource(20261201))
	for i := 0; i < 20; i++ {
		b := make([]byte, fuzzHeader+fuzzRecord*(1+r.Intn(5)))
		r.Read(b)
		seeds = append(seeds, fuzzSeed{fmt.Sprintf("random-%02d", i), b, "?"})
	}
	return seeds
}

// TestFuzzDeriveSeeds runs the seed corpus through the fuzz property and
// checks the named seeds' outcomes (the mutator still means what the
// seeds were written for). With SLATRUN_WRITE_FUZZ_CORPUS=1 it (re)writes
// testdata/fuzz/FuzzDerive, which plain `go test` replays.
func TestFuzzDeriveSeeds(t *testing.T) {
	bases, err := fuzzBases()
	if err != nil {
		t.Fatal(err)
	}
	seeds := fuzzSeeds(t)
	for _, s := range seeds {
		if err := deriveMutant(s.data); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
		if s.want == "?" {
			continue
		}
		m, spec := mutate(bases, s.data)
		b, err := proto.Marshal(m.Proto)
		if err != nil {
			t.Fatal(err)
		}
		var derr error
		dm, derr := onnx.Decode(b)
		for _, kind := range []graphs.Kind{graphs.Train, graphs.Attack} {
			if derr == nil {
				spec.Kind = kind
				_, derr = graphs.Derive(dm, spec)
			}
			switch {
			case s.want == "" && derr != nil:
				t.Errorf("%s: %s: %v", s.name, kind, derr)
			case s.want != "" && (derr == nil || !strings.Contains(derr.Error(), s.want)):
				t.Errorf("%s: %s: err = %v, want it to mention %q", s.name, kind, derr, s.want)
			}
		}
	}
	if os.Getenv("SLATRUN_WRITE_FUZZ_CORPUS") == "" {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDerive")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
