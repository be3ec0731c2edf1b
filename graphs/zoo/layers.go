package zoo

import (
	"fmt"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// BatchNorm settings of every zoo model: PyTorch's defaults (PyTorch's
// momentum 0.1 is ONNX's 0.9).
const (
	bnEpsilon  = 1e-5
	bnMomentum = 0.9
)

// pcgStream is the second PCG word; the seed is the first.
const pcgStream = 0x736c617472756e // "slatrun"

// net wraps a Builder with the layer vocabulary of the zoo. It knows every
// tensor's shape ([-1, ...] for batched ones) and records it as value_info.
type net struct {
	b      *onnx.Builder
	rng    *rand.Rand
	shapes map[string][]int64
	// err is the first error building the graph (a name used twice: a
	// mistake in a model's definition); Build returns it.
	err error
}

// fail records err unless an earlier error is recorded.
func (n *net) fail(err error) {
	if n.err == nil {
		n.err = err
	}
}

func newNet(name string, seed uint64) *net {
	return &net{
		b:      onnx.NewBuilder(name),
		rng:    rand.New(rand.NewPCG(seed, pcgStream)),
		shapes: map[string][]int64{},
	}
}

// node appends a one-output node whose output (and node name) is out, and
// records the output's shape; the graph output (contract.Logits) gets no
// value_info.
func (n *net) node(op, out string, inputs []string, shape []int64, attrs ...*onnxpb.AttributeProto) string {
	if n.b.Fresh(out) != out {
		n.fail(fmt.Errorf("tensor name %q used twice", out))
	}
	nd := n.b.Node(op, inputs, []string{out}, attrs...)
	nd.Name = proto.String(out)
	n.shapes[out] = shape
	if out != contract.Logits {
		g := n.b.Graph()
		g.ValueInfo = append(g.ValueInfo, onnx.ValueInfo(out, onnx.Float, shape...))
	}
	return out
}

// param adds an initializer under exactly name.
func (n *net) param(name string, shape []int64, data []float32) string {
	if n.b.Fresh(name) != name {
		n.fail(fmt.Errorf("initializer name %q used twice", name))
	}
	return n.b.Initializer(onnx.FloatTensor(name, shape, data))
}

// uniform adds an initializer drawn from U(−1/√fanIn, 1/√fanIn).
func (n *net) uniform(name string, shape []int64, fanIn int64) string {
	bound := 1 / math.Sqrt(float64(fanIn))
	data := make([]float32, onnx.NumElements(shape))
	for i := range data {
		data[i] = float32(bound * (2*n.rng.Float64() - 1))
	}
	return n.param(name, shape, data)
}

func filled(size int64, v float32) []float32 {
	out := make([]float32, size)
	for i := range out {
		out[i] = v
	}
	return out
}

// constant adds a Constant node holding a float tensor.
func (n *net) constant(out string, shape []int64, data []float32) string {
	return n.node("Constant", out, nil, shape, onnx.AttrTensor("value", onnx.FloatTensor(out, shape, data)))
}

// normalize computes (x − mean)/std per channel.
func (n *net) normalize(x string, mean, std []float32) string {
	c := int64(len(mean))
	mu := n.constant("normalize.mean", []int64{1, c, 1, 1}, mean)
	sd := n.constant("normalize.std", []int64{1, c, 1, 1}, std)
	centered := n.node("Sub", "normalize.centered", []string{x, mu}, n.shapes[x])
	return n.node("Div", "normalized", []string{centered, sd}, n.shapes[x])
}

// conv adds a bias-free Conv2d(k×k, stride, pad) named prefix with output
// tensor out.
func (n *net) conv(prefix, out, x string, cout, k, stride, pad int64) string {
	s := n.shapes[x] // [N, C, H, W]
	cin := s[1]
	w := n.uniform(prefix+".weight", []int64{cout, cin, k, k}, cin*k*k)
	oh := (s[2]+2*pad-k)/stride + 1
	ow := (s[3]+2*pad-k)/stride + 1
	return n.node("Conv", out, []string{x, w}, []int64{-1, cout, oh, ow},
		onnx.AttrInts("kernel_shape", k, k),
		onnx.AttrInts("strides", stride, stride),
		onnx.AttrInts("pads", pad, pad, pad, pad))
}

// bn adds an inference-form BatchNormalization named prefix.
func (n *net) bn(prefix, x string) string {
	c := n.shapes[x][1]
	scale := n.param(prefix+".weight", []int64{c}, filled(c, 1))
	bias := n.param(prefix+".bias", []int64{c}, filled(c, 0))
	mean := n.param(prefix+".running_mean", []int64{c}, filled(c, 0))
	variance := n.param(prefix+".running_var", []int64{c}, filled(c, 1))
	return n.node("BatchNormalization", prefix, []string{x, scale, bias, mean, variance}, n.shapes[x],
		onnx.AttrFloat("epsilon", bnEpsilon), onnx.AttrFloat("momentum", bnMomentum))
}

func (n *net) relu(out, x string) string {
	return n.node("Relu", out, []string{x}, n.shapes[x])
}

// linear adds Gemm(x, weight[out,in]ᵀ) + bias named prefix.
func (n *net) linear(prefix, out, x string, units int64) string {
	in := n.shapes[x][1]
	w := n.uniform(prefix+".weight", []int64{units, in}, in)
	b := n.uniform(prefix+".bias", []int64{units}, in)
	return n.node("Gemm", out, []string{x, w, b}, []int64{-1, units}, onnx.AttrInt("transB", 1))
}

// block adds a pre-activation residual block named prefix whose output
// tensor is out:
//
//	o = ReLU(BN1(x))
//	shortcut = Conv1×1/stride(o) if stride ≠ 1 or cin ≠ cout, else x
//	o = Conv3×3/stride(o); o = ReLU(BN2(o)); [o = Dropout(o)]; o = Conv3×3(o)
//	out = o + shortcut
func (n *net) block(prefix, out, x string, cout, stride int64, dropout float32) string {
	cin := n.shapes[x][1]
	o := n.relu(prefix+".relu1", n.bn(prefix+".bn1", x))
	shortcut := x
	if stride != 1 || cin != cout {
		shortcut = n.conv(prefix+".shortcut", prefix+".shortcut", o, cout, 1, stride, 0)
	}
	h := n.conv(prefix+".conv1", prefix+".conv1", o, cout, 3, stride, 1)
	h = n.relu(prefix+".relu2", n.bn(prefix+".bn2", h))
	if dropout > 0 {
		ratio := n.constant(prefix+".dropout.ratio", nil, []float32{dropout})
		h = n.node("Dropout", prefix+".dropout", []string{h, ratio}, n.shapes[h])
	}
	h = n.conv(prefix+".conv2", prefix+".conv2", h, cout, 3, 1, 1)
	return n.node("Add", out, []string{h, shortcut}, n.shapes[h])
}

// head adds BN → ReLU → GlobalAveragePool → Flatten → Linear(classes) and
// returns contract.Logits.
func (n *net) head(x string, classes int) string {
	s := n.shapes[x]
	o := n.relu("relu", n.bn("bn", x))
	o = n.node("GlobalAveragePool", "pool", []string{o}, []int64{-1, s[1], 1, 1})
	o = n.node("Flatten", "flatten", []string{o}, []int64{-1, s[1]}, onnx.AttrInt("axis", 1))
	return n.linear("fc", contract.Logits, o, int64(classes))
}
