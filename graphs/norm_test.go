package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// bnNode adds a BatchNormalization of x with C channels (scale pS, bias pB,
// running stats).
func bnNode(b *onnx.Builder, r *rand.Rand, c int64) string {
	scale := b.Initializer(onnx.FloatTensor("pS", []int64{c}, awayFromZero(r, int(c))))
	bias := param(b, r, "pB", c)
	mean := b.Initializer(onnx.FloatTensor("mean", []int64{c}, randn(r, int(c), 0.3)))
	v := make([]float32, c)
	for i := range v {
		v[i] = 0.5 + r.Float32()
	}
	vr := b.Initializer(onnx.FloatTensor("var", []int64{c}, v))
	return b.Op("BatchNormalization", []string{"x", scale, bias, mean, vr}, onnx.AttrFloat("epsilon", 1e-3))
}

var normCases = []fdCase{
	{name: "BatchNormalization/training", x: []int64{4, 3, 3, 3}, training: true, build: func(b *onnx.Builder, r *rand.Rand) string {
		return bnNode(b, r, 3)
	}, xgen: func(r *rand.Rand, n int) []float32 { return randn(r, n, 1) }},
	{name: "BatchNormalization/training 2d", x: []int64{6, 4}, training: true, build: func(b *onnx.Builder, r *rand.Rand) string {
		return bnNode(b, r, 4)
	}, xgen: func(r *rand.Rand, n int) []float32 { return randn(r, n, 1) }},
	{name: "BatchNormalization/inference stats", x: []int64{2, 3, 3, 3}, wrt: []string{"x", "pS", "mean", "var"}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return bnNode(b, r, 3)
	}},
	{name: "BatchNormalization/inference", x: []int64{2, 3, 3, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return bnNode(b, r, 3)
	}},
}

func TestNormFD(t *testing.T) { runFD(t, normCases) }
