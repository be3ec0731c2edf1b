package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

var lossCases = []fdCase{
	{name: "Softmax", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Softmax", []string{"x"}, onnx.AttrInt("axis", 1))
	}},
	{name: "Softmax/axis0 3d", x: []int64{3, 2, 2}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("Softmax", []string{"x"}, onnx.AttrInt("axis", 0))
	}},
	{name: "LogSoftmax", x: []int64{2, 5}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.Op("LogSoftmax", []string{"x"}, onnx.AttrInt("axis", -1))
	}},
	{name: "TopK", x: []int64{2, 6}, build: func(b *onnx.Builder, r *rand.Rand) string {
		return b.OpN("TopK", []string{"x", ints(b, 3)}, 2, onnx.AttrInt("axis", 1))[0]
	}, xgen: distinct, h: 1e-3},
}

func TestLossOpsFD(t *testing.T) { runFD(t, lossCases) }
