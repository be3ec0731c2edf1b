package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

func ints(b *onnx.Builder, v ...int64) string { return b.Ints(v...) }

var shapeCases = []fdCase{
	{name: "Reshape", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Mul", []string{b.Op("Reshape", []string{"x", ints(b, 0, -1)}), param(b, r, "pW", 12)})
	}},
	{name: "Flatten", x: []int64{2, 3, 2, 2}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Flatten", []string{"x"}, onnx.AttrInt("axis", 1))
	}},
	{name: "Transpose", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Transpose", []string{"x"}, onnx.AttrInts("perm", 2, 0, 1))
	}},
	{name: "Squeeze", x: []int64{2, 1, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Squeeze", []string{"x", ints(b, 1)})
	}},
	{name: "Unsqueeze", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Unsqueeze", []string{"x", ints(b, 1, 3)})
	}},
	{name: "Concat", x: []int64{2, 3, 2}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Concat", []string{"x", param(b, r, "pA", 2, 1, 2), "x"}, onnx.AttrInt("axis", 1))
	}},
	{name: "Split", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		o := b.OpN("Split", []string{"x", ints(b, 2, 3)}, 2, onnx.AttrInt("axis", 1))
		return b.Op("Mul", []string{b.Op("ReduceSum", []string{o[0], ints(b, 1)}), b.Op("Exp", []string{o[1]})})
	}},
	{name: "Split/one output used", x: []int64{2, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		o := b.OpN("Split", []string{"x"}, 3, onnx.AttrInt("axis", 1), onnx.AttrInt("num_outputs", 3))
		return o[1]
	}},
	{name: "Slice", x: []int64{2, 5, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Slice", []string{"x", ints(b, 1, -4), ints(b, 4, 100), ints(b, 1, 2)})
	}},
	{name: "Slice/step 2", x: []int64{2, 5, 7}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Slice", []string{"x", ints(b, 1, 0), ints(b, 5, 6), ints(b, 1, 2), ints(b, 2, 3)})
	}},
	{name: "Slice/step -2", x: []int64{2, 5, 7}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Slice", []string{"x", ints(b, -1, 5), ints(b, -100, 0), ints(b, 2, 1), ints(b, -2, -3)})
	}},
	{name: "Pad", x: []int64{2, 2, 3, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Pad", []string{"x", ints(b, 0, 0, 1, 2, 0, 0, 2, 0), b.Scalar(0.5)})
	}},
	{name: "Gather", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Gather", []string{"x", b.Int64s("idx", []int64{2, 2}, []int64{4, 0, 4, -2})}, onnx.AttrInt("axis", 1))
	}},
	{name: "GatherElements", x: []int64{2, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("GatherElements", []string{"x", b.Int64s("idx", []int64{2, 3}, []int64{3, 0, 3, 1, 1, 2})}, onnx.AttrInt("axis", 1))
	}},
	{name: "Expand", x: []int64{2, 1, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Expand", []string{"x", ints(b, 2, 4, 3)})
	}},
	{name: "Tile", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Tile", []string{"x", ints(b, 2, 3)})
	}},
	{name: "ReduceSum", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceSum", []string{"x", ints(b, 2)}, onnx.AttrInt("keepdims", 0))
	}},
	{name: "ReduceMean", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceMean", []string{"x", ints(b, 1, 2)})
	}},
	{name: "ReduceMax", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceMax", []string{"x", ints(b, 1)}, onnx.AttrInt("keepdims", 0))
	}, xgen: distinct, h: 1e-3},
	{name: "ReduceMin", x: []int64{2, 3, 4}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceMin", []string{"x", ints(b, -1)})
	}, xgen: distinct, h: 1e-3},
	{name: "ReduceSumSquare", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceSumSquare", []string{"x", ints(b, 1)})
	}},
	{name: "ReduceL2", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceL2", []string{"x", ints(b, 1)}, onnx.AttrInt("keepdims", 0))
	}},
	{name: "ReduceLogSumExp", x: []int64{2, 3}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("ReduceLogSumExp", []string{"x", ints(b, 1)})
	}},
}

func TestShapeFD(t *testing.T) { runFD(t, shapeCases) }
