package graphs_test

import (
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestKernelsMatchPlain checks that graphs derived with Spec.Kernels
// (weight gradients in slatrun's oneDNN ConvGradWeight) compute what the
// plain graphs compute, output by output, with and without NCHWc, and that
// every group-1 2-D Conv's weight gradient actually went to the kernel.
func TestKernelsMatchPlain(t *testing.T) {
	if ok, why := ort.Kernels(); !ok {
		t.Skip(why)
	}
	fixture, err := onnx.Load("testdata/torch_cnn.onnx")
	if err != nil {
		t.Fatal(err)
	}
	zooModel := func(name string, width int) *onnx.Model {
		m, err := zoo.Build(name, zoo.Config{Width: width, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name  string
		m     *onnx.Model
		batch int
		kind  graphs.Kind
		nchwc bool
		convs int // weight gradients expected in the kernel (train kind)
	}{
		{"convnet/train", zooModel("convnet", 16), 4, graphs.Train, true, 9},
		{"convnet/train plain conv", zooModel("convnet", 16), 4, graphs.Train, false, 9},
		{"convnet/attack", zooModel("convnet", 16), 4, graphs.Attack, true, 0},
		{"convnet/eval", zooModel("convnet", 16), 4, graphs.Eval, true, 0},
		{"preactresnet18/train", zooModel("preactresnet18", 16), 2, graphs.Train, true, 20},
		{"wrn-28-10/train", zooModel("wrn-28-10", 1), 2, graphs.Train, true, 27},
		{"torch fixture/train", fixture, 3, graphs.Train, true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			block := 0
			if c.nchwc {
				block = ort.NCHWcBlock()
			}
			plain := graphs.Spec{Kind: c.kind, Batch: c.batch, NCHWcBlock: block}
			kern := plain
			kern.Kernels = true
			g := matchGraphs(t, c.m, plain, ort.Options{Threads: 1}, kern, ort.Options{Threads: 1, Kernels: true})
			n := countOps(g, onnx.KernelDomain, onnx.ConvGradWeight)
			convs := countOps(c.m, "", "Conv")
			if c.kind == graphs.Train && (n != convs || n < c.convs) {
				t.Errorf("%d ConvGradWeight nodes for %d Convs, want one each (at least %d)", n, convs, c.convs)
			}
			if c.kind != graphs.Train && n != 0 {
				t.Errorf("%d ConvGradWeight nodes in a graph without weight gradients", n)
			}
		})
	}
}
