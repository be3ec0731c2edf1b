package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

func unary(op string, attrs ...*onnxpb.AttributeProto) func(b *onnx.Builder, r *rand.Rand) string {
	return func(b *onnx.Builder, r *rand.Rand) string { return b.Op(op, []string{"x"}, attrs...) }
}

func positive(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 0.5 + r.Float32()
	}
	return v
}

// pos adds an initializer with values in [0.5, 1.5] (a safe divisor).
func pos(b *onnx.Builder, r *rand.Rand, name string, shape ...int64) string {
	return b.Initializer(onnx.FloatTensor(name, shape, positive(r, int(onnx.NumElements(shape)))))
}

var elementwiseCases = []fdCase{
	{name: "Relu", x: []int64{2, 3, 4}, build: unary("Relu")},
	{name: "LeakyRelu", x: []int64{2, 3, 4}, build: unary("LeakyRelu", onnx.AttrFloat("alpha", 0.1))},
	{name: "Sigmoid", x: []int64{2, 5}, build: unary("Sigmoid")},
	{name: "Tanh", x: []int64{2, 5}, build: unary("Tanh")},
	{name: "Exp", x: []int64{2, 5}, build: unary("Exp")},
	{name: "Log", x: []int64{2, 5}, build: unary("Log"), xgen: positive},
	{name: "Neg", x: []int64{2, 5}, build: unary("Neg")},
	{name: "Abs", x: []int64{2, 5}, build: unary("Abs")},
	{name: "Sqrt", x: []int64{2, 5}, build: unary("Sqrt"), xgen: positive},
	{name: "Reciprocal", x: []int64{2, 5}, build: unary("Reciprocal"), xgen: positive},
	{name: "Identity", x: []int64{2, 5}, build: unary("Identity")},
	{name: "Softplus", x: []int64{2, 5}, build: unary("Softplus")},
	{name: "Elu", x: []int64{2, 5}, build: unary("Elu", onnx.AttrFloat("alpha", 0.7))},
	{name: "Erf", x: []int64{2, 5}, build: unary("Erf")},
	{name: "Sin", x: []int64{2, 5}, build: unary("Sin")},
	{name: "Cos", x: []int64{2, 5}, build: unary("Cos")},
	{name: "HardSigmoid", x: []int64{2, 5}, build: unary("HardSigmoid", onnx.AttrFloat("alpha", 0.3))},
	{name: "HardSwish", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("HardSwish", []string{b.Op("Mul", []string{"x", b.Scalar(2)})})
	}},
	{name: "Clip", x: []int64{2, 8}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Clip", []string{"x", b.Scalar(-0.7), b.Scalar(0.6)})
	}, xgen: func(r *rand.Rand, n int) []float32 {
		v := []float32{-1, -0.5, -0.3, 0.3, 0.5, 0.9, -0.9, 0.1}
		out := make([]float32, n)
		for i := range out {
			out[i] = v[i%len(v)]
		}
		return out
	}},
	{name: "Clip/min only", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Clip", []string{"x", b.Scalar(0.05)})
	}},
	{name: "Add/broadcast", x: []int64{2, 3, 4, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Add", []string{"x", param(b, r, "pB", 3, 1, 1)})
	}},
	{name: "Add/same operand twice", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Add", []string{"x", "x"})
	}},
	{name: "Sub/broadcast", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Sub", []string{param(b, r, "pA", 1, 4), "x"})
	}},
	{name: "Mul/broadcast", x: []int64{2, 3, 4, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Mul", []string{"x", param(b, r, "pB", 1, 3, 1, 4)})
	}},
	{name: "Mul/self", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Mul", []string{"x", "x"})
	}},
	{name: "Div/broadcast", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Div", []string{"x", pos(b, r, "pD", 3, 1)})
	}},
	{name: "Div/numerator param", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Div", []string{param(b, r, "pN", 3), b.Op("Add", []string{b.Op("Abs", []string{"x"}), b.Scalar(0.5)})})
	}},
	{name: "Pow", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Pow", []string{"x", pos(b, r, "pP", 5)})
	}, xgen: positive},
	{name: "Pow/constant exponent", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Pow", []string{"x", b.Scalar(3)})
	}},
	{name: "Sum", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Sum", []string{"x", param(b, r, "pA", 4), param(b, r, "pB", 3, 1)})
	}},
	{name: "Mean", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Mean", []string{"x", param(b, r, "pA", 3)})
	}},
	{name: "Max", x: []int64{2, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Max", []string{"x", b.Initializer(onnx.FloatTensor("pM", []int64{6}, []float32{0.05, -0.05, 0.1, -0.1, 0.08, -0.08}))})
	}},
	{name: "Min", x: []int64{2, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Min", []string{"x", b.Initializer(onnx.FloatTensor("pM", []int64{6}, []float32{0.05, -0.05, 0.1, -0.1, 0.08, -0.08}))})
	}},
	{name: "Where", x: []int64{2, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		cond := b.Op("Greater", []string{param(b, r, "c", 4), b.Scalar(0)})
		return b.Op("Where", []string{cond, "x", param(b, r, "pB", 2, 1)})
	}},
	{name: "PRelu", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("PRelu", []string{"x", param(b, r, "pS", 3, 1)})
	}},
	{name: "Cast/float", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Cast", []string{"x"}, onnx.AttrInt("to", int64(onnx.Float)))
	}},
}

func TestElementwiseFD(t *testing.T) { runFD(t, elementwiseCases) }
