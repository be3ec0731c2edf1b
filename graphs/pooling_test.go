package graphs

import (
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

func pool(op string, attrs ...*onnxpb.AttributeProto) func(b *onnx.Builder, r *rand.Rand) string {
	return func(b *onnx.Builder, r *rand.Rand) string { return b.Op(op, []string{"x"}, attrs...) }
}

var poolingCases = []fdCase{
	{name: "MaxPool/2x2 s2 (tiling)", x: []int64{2, 3, 4, 6}, build: pool("MaxPool", onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)), xgen: distinct, h: 1e-3},
	{name: "MaxPool/3x3 s2 p1 (overlapping)", x: []int64{2, 2, 7, 7}, build: pool("MaxPool", onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1)), xgen: distinct, h: 1e-3},
	{name: "MaxPool/3x3 s1 (overlapping)", x: []int64{2, 2, 5, 5}, build: pool("MaxPool", onnx.AttrInts("kernel_shape", 3, 3)), xgen: distinct, h: 1e-3},
	{name: "MaxPool/2x2 s2 odd input", x: []int64{2, 2, 5, 5}, build: pool("MaxPool", onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)), xgen: distinct, h: 1e-3},
	{name: "MaxPool/ceil_mode", x: []int64{2, 2, 6, 6}, build: pool("MaxPool", onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("ceil_mode", 1)), xgen: distinct, h: 1e-3},
	{name: "AveragePool/2x2 s2", x: []int64{2, 3, 4, 4}, build: pool("AveragePool", onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))},
	{name: "AveragePool/3x3 s2 p1", x: []int64{2, 2, 7, 6}, build: pool("AveragePool", onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))},
	{name: "AveragePool/3x3 s2 p1 include pad", x: []int64{2, 2, 7, 6}, build: pool("AveragePool", onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("count_include_pad", 1))},
	{name: "AveragePool/ceil_mode", x: []int64{2, 2, 6, 6}, build: pool("AveragePool", onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("ceil_mode", 1))},
	{name: "GlobalAveragePool", x: []int64{2, 3, 4, 5}, build: pool("GlobalAveragePool")},
	{name: "GlobalMaxPool", x: []int64{2, 3, 3, 4}, build: pool("GlobalMaxPool"), xgen: distinct, h: 1e-3},
}

func TestPoolingFD(t *testing.T) { runFD(t, poolingCases) }
