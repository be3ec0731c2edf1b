package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

var convCases = []fdCase{
	{name: "Conv/3x3 pad1", x: []int64{2, 3, 6, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 4, 3, 3, 3), param(b, r, "pB", 4)}, onnx.AttrInts("pads", 1, 1, 1, 1))
	}},
	{name: "Conv/stride2", x: []int64{2, 3, 7, 7}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 4, 3, 3, 3)}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2))
	}},
	{name: "Conv/asymmetric pads", x: []int64{2, 2, 5, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 3, 2), param(b, r, "pB", 3)}, onnx.AttrInts("pads", 0, 1, 2, 0))
	}},
	{name: "Conv/dilation2", x: []int64{2, 2, 8, 8}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 3, 3)}, onnx.AttrInts("pads", 2, 2, 2, 2), onnx.AttrInts("dilations", 2, 2))
	}},
	{name: "Conv/stride2 dilation2", x: []int64{2, 2, 9, 9}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 3, 3)}, onnx.AttrInts("pads", 1, 0, 2, 1), onnx.AttrInts("dilations", 2, 2), onnx.AttrInts("strides", 2, 2))
	}},
	{name: "Conv/stride3 odd", x: []int64{2, 2, 8, 8}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 2, 2)}, onnx.AttrInts("strides", 3, 3))
	}},
	{name: "Conv/group2", x: []int64{2, 4, 6, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 6, 2, 3, 3), param(b, r, "pB", 6)}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 2))
	}},
	{name: "Conv/depthwise stride2", x: []int64{2, 3, 7, 7}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 1, 3, 3)}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 3), onnx.AttrInts("strides", 2, 2))
	}},
	{name: "Conv/1x1 stride2", x: []int64{2, 4, 6, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 5, 4, 1, 1)}, onnx.AttrInts("strides", 2, 2))
	}},
	{name: "Conv/auto_pad SAME_UPPER", x: []int64{2, 2, 7, 7}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 4, 4)}, onnx.AttrString("auto_pad", "SAME_UPPER"), onnx.AttrInts("strides", 2, 2))
	}},
	{name: "Conv/1d", x: []int64{2, 3, 9}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Conv", []string{"x", param(b, r, "pW", 2, 3, 3), param(b, r, "pB", 2)}, onnx.AttrInts("pads", 1, 0), onnx.AttrInts("strides", 2))
	}},
	{name: "ConvTranspose/group2", x: []int64{2, 4, 4, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ConvTranspose", []string{"x", param(b, r, "pW", 4, 3, 3, 3)},
			onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 2))
	}},
	{name: "ConvTranspose/stride2", x: []int64{2, 3, 4, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ConvTranspose", []string{"x", param(b, r, "pW", 3, 2, 3, 3), param(b, r, "pB", 2)},
			onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("output_padding", 1, 1))
	}},
	{name: "ConvTranspose/dilation2", x: []int64{2, 2, 4, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ConvTranspose", []string{"x", param(b, r, "pW", 2, 3, 2, 2)}, onnx.AttrInts("dilations", 2, 2), onnx.AttrInts("pads", 0, 1, 1, 0))
	}},
	{name: "Gemm/plain", x: []int64{3, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Gemm", []string{"x", param(b, r, "pB", 5, 4), param(b, r, "pC", 4)})
	}},
	{name: "Gemm/transB alpha beta", x: []int64{3, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Gemm", []string{"x", param(b, r, "pB", 4, 5), param(b, r, "pC", 3, 4)}, onnx.AttrInt("transB", 1), onnx.AttrFloat("alpha", 0.7), onnx.AttrFloat("beta", 1.3))
	}},
	{name: "Gemm/transA", x: []int64{5, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Gemm", []string{"x", param(b, r, "pB", 5, 4)}, onnx.AttrInt("transA", 1))
	}},
	{name: "Gemm/transA transB", x: []int64{5, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Gemm", []string{"x", param(b, r, "pB", 4, 5), param(b, r, "pC", 1, 4)}, onnx.AttrInt("transA", 1), onnx.AttrInt("transB", 1))
	}},
	{name: "MatMul/2d", x: []int64{3, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("MatMul", []string{"x", param(b, r, "pW", 5, 4)})
	}},
	{name: "MatMul/batched broadcast", x: []int64{2, 3, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("MatMul", []string{param(b, r, "pA", 3, 4), b.Op("Transpose", []string{b.Op("MatMul", []string{"x", param(b, r, "pW", 5, 4)})}, onnx.AttrInts("perm", 0, 2, 1))})
	}},
}

func TestConvFD(t *testing.T) { runFD(t, convCases) }

// wrongConvGrad is Conv's rule with dW computed without the stride/dilation
// swap (strides = forward strides, dilations = forward dilations).
func wrongConvGrad(d *deriver, n *node, dy []string) ([]string, error) {
	res, err := convGrad(d, n, []string{dy[0]})
	if err != nil || !d.wants(n.in[1]) {
		return res, err
	}
	x, w := n.in[0], n.in[1]
	cg := geom(n, d.shape(w)[2:])
	cg.s, cg.dil = cg.dil, cg.s // undo the swap convWeightGrad makes
	res[1] = d.convWeightGrad(x, d.shape(x), dy[0], d.shape(n.out[0]), cg)
	return res, nil
}

// TestFDCatchesWrongRules proves the checker can fail: deliberately wrong
// rules must exceed the tolerance.
func TestFDCatchesWrongRules(t *testing.T) {
	cases := []struct {
		op   string
		rule gradRule
		c    fdCase
	}{
		{"Conv", wrongConvGrad, fdCase{name: "wrong Conv dW", x: []int64{2, 2, 9, 9}, wrt: []string{"pW"}, build: func(b *onnx.Builder, r *rand.Rand) string {
			return b.Op("Conv", []string{"x", param(b, r, "pW", 3, 2, 3, 3)}, onnx.AttrInts("strides", 2, 2))
		}}},
		{"Relu", func(d *deriver, n *node, dy []string) ([]string, error) {
			g, err := reluGrad(d, n, dy)
			return []string{d.op("Neg", g)}, err
		}, fdCase{name: "sign-flipped Relu", x: []int64{2, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
			return b.Op("Relu", []string{"x"})
		}}},
		{"BatchNormalization", func(d *deriver, n *node, dy []string) ([]string, error) {
			// drops the mean(dy·x̂) term of dx
			res, err := bnGrad(d, n, dy)
			if err == nil && d.wants(n.in[0]) {
				sv := d.saved[n]
				c1 := d.reduceMean(dy[0], bnAxes(len(d.shape(n.in[0]))), true)
				res[0] = d.mul(d.sub(dy[0], c1), sv["k"])
			}
			return res, err
		}, fdCase{name: "BN without the x̂ term", x: []int64{4, 2, 3, 3}, training: true, wrt: []string{"x"}, build: func(b *onnx.Builder, r *rand.Rand) string {
			return bnNode(b, r, 2)
		}}},
	}
	for _, c := range cases {
		old := ops[c.op].grad
		ops[c.op].grad = c.rule
		res := checkFD(t, c.c)
		ops[c.op].grad = old
		if res.maxRel < 0.1 {
			t.Errorf("%s: the finite-difference check did not catch a wrong rule (max error %.3g)", c.c.name, res.maxRel)
		} else {
			t.Logf("%s: caught, max relative error %.3g at %s", c.c.name, res.maxRel, res.where)
		}
	}
}
