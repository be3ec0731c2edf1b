package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slatrun/slatrun/onnx"
)

// gemmModel reproduces, with the builder, the weight gradient graphs.Derive
// emits today for a group-1 Conv (convWeightGradGemm in graphs/conv.go): x
// and dY transposed to channel-major, x padded, one strided Slice and one
// Gemm per kernel offset, then Concat and a transpose to [K,C,kh,kw].
func (cc convCase) gemmModel() *onnx.Model {
	oh, ow := cc.out()
	N, C, K := int64(cc.n), int64(cc.c), int64(cc.k)
	O := int64(oh * ow)
	b := onnx.NewBuilder("conv_grad_weight_gemm")
	b.Input("x", onnx.Float, N, C, int64(cc.h), int64(cc.w))
	b.Input("dy", onnx.Float, N, K, int64(oh), int64(ow))
	perm := onnx.AttrInts("perm", 1, 0, 2, 3)
	xt := b.Op("Transpose", []string{"x"}, perm)
	ext := []int64{int64(cc.h), int64(cc.w)}
	if cc.pads != [4]int{} {
		xt = b.Op("Pad", []string{xt, b.Ints(0, 0, int64(cc.pads[0]), int64(cc.pads[1]), 0, 0, int64(cc.pads[2]), int64(cc.pads[3]))})
		ext[0] += int64(cc.pads[0] + cc.pads[2])
		ext[1] += int64(cc.pads[1] + cc.pads[3])
	}
	gt := b.Op("Reshape", []string{b.Op("Transpose", []string{"dy"}, perm), b.Ints(K, N*O)})
	out := []int64{int64(oh), int64(ow)}
	var parts []string
	for i := 0; i < cc.kh; i++ {
		for j := 0; j < cc.kw; j++ {
			k := []int{i, j}
			starts, ends := make([]int64, 2), make([]int64, 2)
			whole := true
			for a := 0; a < 2; a++ {
				starts[a] = int64(k[a] * cc.dil[a])
				ends[a] = starts[a] + int64(cc.stride[a])*(out[a]-1) + 1
				whole = whole && starts[a] == 0 && ends[a] == ext[a] && cc.stride[a] == 1
			}
			sl := xt
			if !whole {
				sl = b.Op("Slice", []string{xt, b.Ints(starts...), b.Ints(ends...), b.Ints(2, 3), b.Ints(int64(cc.stride[0]), int64(cc.stride[1]))})
			}
			parts = append(parts, b.Op("Gemm", []string{gt, b.Op("Reshape", []string{sl, b.Ints(C, N*O)})}, onnx.AttrInt("transB", 1)))
		}
	}
	kn := int64(len(parts))
	var dw string
	if kn == 1 {
		dw = parts[0]
	} else {
		st := b.Op("Concat", parts, onnx.AttrInt("axis", 0))
		dw = b.Op("Transpose", []string{b.Op("Reshape", []string{st, b.Ints(kn, K, C)})}, onnx.AttrInts("perm", 1, 2, 0))
	}
	b.Node("Reshape", []string{dw, b.Ints(K, C, int64(cc.kh), int64(cc.kw))}, []string{"dw"})
	b.Output("dw", onnx.Float, K, C, int64(cc.kh), int64(cc.kw))
	return b.Model()
}

// convnetCases are the convolutions of the zoo's convnet at batch 128.
var convnetCases = []convCase{
	{name: "16x28x28_to16_3x3s1", n: 128, c: 16, h: 28, w: 28, k: 16, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}},
	{name: "16x28x28_to32_3x3s2", n: 128, c: 16, h: 28, w: 28, k: 32, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}},
	{name: "32x14x14_to64_3x3s2", n: 128, c: 32, h: 14, w: 14, k: 64, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}},
	{name: "16x28x28_to32_1x1s2", n: 128, c: 16, h: 28, w: 28, k: 32, kh: 1, kw: 1, stride: [2]int{2, 2}, dil: [2]int{1, 1}},
	{name: "32x14x14_to64_1x1s2", n: 128, c: 32, h: 14, w: 14, k: 64, kh: 1, kw: 1, stride: [2]int{2, 2}, dil: [2]int{1, 1}},
}

// abPair is the per-offset Gemm session and the oneDNN session for one
// shape and thread count, on the same random x and dY.
type abPair struct{ gemm, dnnl *Session }

func newABPair(tb testing.TB, cc convCase, threads int) abPair {
	tb.Helper()
	g, err := NewSession(cc.gemmModel(), Options{Threads: threads})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := NewSession(cc.gradModel(), Options{Threads: threads, Kernels: true})
	if err != nil {
		g.Close()
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	fill(r, g.Float("x"))
	fill(r, g.Float("dy"))
	copy(d.Float("x"), g.Float("x"))
	copy(d.Float("dy"), g.Float("dy"))
	return abPair{g, d}
}

func (p abPair) close() { p.gemm.Close(); p.dnnl.Close() }

// check runs both once and compares dW (the two forms must agree).
func (p abPair) check(tb testing.TB) {
	tb.Helper()
	if err := p.gemm.Run(); err != nil {
		tb.Fatal(err)
	}
	if err := p.dnnl.Run(); err != nil {
		tb.Fatal(err)
	}
	a, b := p.gemm.Float("dw"), p.dnnl.Float("dw")
	scale := 0.0
	for _, v := range a {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4*scale {
			tb.Fatalf("dW[%d]: per-offset Gemm %g, oneDNN %g", i, a[i], b[i])
		}
	}
}

// BenchmarkConvGradWeight times the oneDNN kernel against the per-offset
// Gemm form on the convnet shapes, at 1 and 2 threads:
//
//	go test ./onnx/ort/ -run '^$' -bench ConvGradWeight -benchtime 20x
//
// On a shared machine prefer TestConvGradWeightAB, which interleaves the two.
func BenchmarkConvGradWeight(b *testing.B) {
	needKernels(b)
	for _, cc := range convnetCases {
		for _, threads := range []int{1, 2} {
			p := newABPair(b, cc, threads)
			p.check(b)
			for _, form := range []struct {
				name string
				s    *Session
			}{{"gemm", p.gemm}, {"onednn", p.dnnl}} {
				b.Run(fmt.Sprintf("%s/%s/t%d", cc.name, form.name, threads), func(b *testing.B) {
					for b.Loop() {
						if err := form.s.Run(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			p.close()
		}
	}
	b.Log(KernelsInfo())
}

// TestConvGradWeightAB interleaves runs of the two forms and logs medians;
// it runs only with SLATRUN_AB=<rounds> set (timings are never asserted).
func TestConvGradWeightAB(t *testing.T) {
	rounds := 0
	fmt.Sscan(os.Getenv("SLATRUN_AB"), &rounds)
	if rounds <= 0 {
		t.Skip("set SLATRUN_AB=<rounds> to time the per-offset Gemm form against oneDNN")
	}
	needKernels(t)
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e6
	}
	for _, cc := range convnetCases {
		for _, threads := range []int{1, 2} {
			p := newABPair(t, cc, threads)
			p.check(t)
			var tg, td []time.Duration
			for i := 0; i < rounds; i++ {
				for _, s := range []*Session{p.gemm, p.dnnl} {
					t0 := time.Now()
					if err := s.Run(); err != nil {
						t.Fatal(err)
					}
					if s == p.gemm {
						tg = append(tg, time.Since(t0))
					} else {
						td = append(td, time.Since(t0))
					}
				}
			}
			mg, md := med(tg), med(td)
			t.Logf("%-22s threads %d: per-offset Gemm %7.2f ms  oneDNN %7.2f ms  (%.2fx)  [%s]", cc.name, threads, mg, md, mg/md, implInfo())
			p.close()
		}
	}
	t.Log(KernelsInfo())
}

func implInfo() string {
	info := KernelsInfo()
	if i := strings.LastIndex(info, ": "); i >= 0 {
		return info[i+2:]
	}
	return info
}
