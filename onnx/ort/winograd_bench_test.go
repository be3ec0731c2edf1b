package ort

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// BenchmarkConvWinograd times the three convolution kernels on the 3×3,
// stride-1 shapes of the zoo at batch 128, 1 thread, with oneDNN's
// Winograd and direct algorithms (Options.DirectConv): the numbers behind
// ck_winograd_shape's channel rule (docs/kernels.md, "Winograd").
func BenchmarkConvWinograd(b *testing.B) {
	needKernels(b)
	for _, sh := range []struct{ c, hw int }{{16, 28}, {32, 14}, {64, 7}, {64, 32}, {128, 16}, {256, 8}, {512, 4}, {160, 32}, {320, 16}, {640, 8}} {
		cc := convCase{n: 128, c: sh.c, h: sh.hw, w: sh.hw, k: sh.c, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}}
		for _, kind := range []struct {
			name string
			m    *onnx.Model
		}{{"forward", cc.forwardModel()}, {"input-grad", cc.gradInputModel(shapeFromX)}, {"weight-grad", cc.gradModel()}} {
			for _, direct := range []bool{false, true} {
				algo := "winograd"
				if direct {
					algo = "direct"
				}
				b.Run(fmt.Sprintf("%dx%dx%d/%s/%s", sh.c, sh.hw, sh.hw, kind.name, algo), func(b *testing.B) {
					s, err := NewSession(kind.m, Options{Threads: 1, Kernels: true, DirectConv: direct})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					r := rand.New(rand.NewPCG(1, 2))
					for _, name := range s.Inputs() {
						fill(r, s.Float(name))
					}
					if err := s.Run(); err != nil { // builds the primitives
						b.Fatal(err)
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
}
