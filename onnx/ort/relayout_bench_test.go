package ort

import (
	"fmt"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// BenchmarkRelayout times the layout kernels on preactresnet18's largest
// activations ([128, 64, 32, 32]) beside a plain memory-bound copy (Neg),
// at 1 and 2 threads: Relayout each way, and TapClip with every tensor
// NCHW, with h blocked, and with pre and h blocked.
func BenchmarkRelayout(b *testing.B) {
	needKernels(b)
	shape := []int64{128, 64, 32, 32}
	for _, c := range []struct {
		name string
		op   string
		attr string
		v    int64
	}{
		{"neg", "Neg", "", 0},
		{"relayout to nChw16c", onnx.Relayout, "to_blocked", 1},
		{"relayout to NCHW", onnx.Relayout, "to_blocked", 0},
		{"tapclip plain", onnx.TapClip, "blocked", 0},
		{"tapclip h blocked", onnx.TapClip, "blocked", 4},
		{"tapclip pre, h blocked", onnx.TapClip, "blocked", 5},
	} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/%dt", c.name, threads), func(b *testing.B) {
				m := onnx.NewBuilder("layout")
				m.Input("x", onnx.Float, shape...)
				in := []string{"x"}
				if c.op == onnx.TapClip {
					m.Input("d", onnx.Float, shape...)
					in = append(in, "d")
				}
				if c.op == "Neg" {
					m.Node("Neg", in, []string{"y"})
				} else {
					m.NodeIn(KernelDomain, c.op, in, []string{"y"}, onnx.AttrInt(c.attr, c.v))
				}
				m.Output("y", onnx.Float, shape...)
				s, err := NewSession(m.Model(), Options{Threads: threads, Kernels: true})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				for i := range s.Float("x") {
					s.Float("x")[i] = float32(i%97) * 0.01
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := s.Run(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
