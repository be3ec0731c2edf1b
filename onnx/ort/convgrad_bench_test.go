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

// conv3 is a shorthand for the square, dilation-1 convolutions of the zoo.
func conv3(name string, c, hw, k, kern, stride int) convCase {
	p := (kern - 1) / 2
	return convCase{name: name, n: 128, c: c, h: hw, w: hw, k: k, kh: kern, kw: kern,
		stride: [2]int{stride, stride}, dil: [2]int{1, 1}, pads: [4]int{p, p, p, p}}
}

// abInputCases are the convolutions of the zoo's convnet (width 16, 28×28)
// and preactresnet18 (width 64, 32×32) at batch 128, stems included (their
// dX is the attack's input gradient).
var abInputCases = []convCase{
	conv3("convnet_stem_1x28_to16_3x3s1", 1, 28, 16, 3, 1),
	conv3("convnet_16x28_to16_3x3s1", 16, 28, 16, 3, 1),
	conv3("convnet_16x28_to32_3x3s2", 16, 28, 32, 3, 2),
	conv3("convnet_16x28_to32_1x1s2", 16, 28, 32, 1, 2),
	conv3("convnet_32x14_to32_3x3s1", 32, 14, 32, 3, 1),
	conv3("convnet_32x14_to64_3x3s2", 32, 14, 64, 3, 2),
	conv3("convnet_32x14_to64_1x1s2", 32, 14, 64, 1, 2),
	conv3("convnet_64x7_to64_3x3s1", 64, 7, 64, 3, 1),
	conv3("resnet_stem_3x32_to64_3x3s1", 3, 32, 64, 3, 1),
	conv3("resnet_64x32_to64_3x3s1", 64, 32, 64, 3, 1),
	conv3("resnet_64x32_to128_3x3s2", 64, 32, 128, 3, 2),
	conv3("resnet_64x32_to128_1x1s2", 64, 32, 128, 1, 2),
	conv3("resnet_128x16_to128_3x3s1", 128, 16, 128, 3, 1),
	conv3("resnet_128x16_to256_3x3s2", 128, 16, 256, 3, 2),
	conv3("resnet_128x16_to256_1x1s2", 128, 16, 256, 1, 2),
	conv3("resnet_256x8_to256_3x3s1", 256, 8, 256, 3, 1),
	conv3("resnet_256x8_to512_3x3s2", 256, 8, 512, 3, 2),
	conv3("resnet_256x8_to512_1x1s2", 256, 8, 512, 1, 2),
	conv3("resnet_512x4_to512_3x3s1", 512, 4, 512, 3, 1),
}

// nchwcInputGradOK says whether graphs/conv.go's nchwcInputGrad applies.
func (cc convCase) nchwcInputGradOK(B int) bool {
	return B > 0 && cc.c%B == 0 && cc.k%B == 0 && cc.stride == [2]int{1, 1} && cc.dil == [2]int{1, 1} &&
		cc.pads[0] <= cc.kh-1 && cc.pads[2] <= cc.kh-1 && cc.pads[1] <= cc.kw-1 && cc.pads[3] <= cc.kw-1
}

// nchwcWeight reorders w [M, C, kh, kw] as graphs/conv.go's nchwcWeight.
func nchwcWeight(b *onnx.Builder, w string, B, M, C, kh, kw int64) string {
	r := b.Op("Reshape", []string{w, b.Ints(M/B, B, C/B, B, kh, kw)})
	t := b.Op("Transpose", []string{r}, onnx.AttrInts("perm", 0, 2, 4, 5, 3, 1))
	return b.Op("Reshape", []string{t, b.Ints(M, C, kh, kw)})
}

// todayInputModel is dY, W → dX as graphs/conv.go emits it without
// ConvGradInput: an NCHWc Conv of dY by the transposed, flipped kernel
// (nchwcInputGrad) where that applies, else ConvTranspose.
func (cc convCase) todayInputModel(B int) *onnx.Model {
	oh, ow := cc.out()
	N, C, K, kh, kw := int64(cc.n), int64(cc.c), int64(cc.k), int64(cc.kh), int64(cc.kw)
	b := onnx.NewBuilder("conv_grad_input_today")
	b.Input("dy", onnx.Float, N, K, int64(oh), int64(ow))
	b.Input("w", onnx.Float, K, C, kh, kw)
	if cc.nchwcInputGradOK(B) {
		wt := b.Op("Transpose", []string{"w"}, onnx.AttrInts("perm", 1, 0, 2, 3))
		if kh > 1 || kw > 1 {
			end := int64(-1) << 62
			wt = b.Op("Slice", []string{wt, b.Ints(-1, -1), b.Ints(end, end), b.Ints(2, 3), b.Ints(-1, -1)})
		}
		wb := nchwcWeight(b, wt, int64(B), C, K, kh, kw)
		xc := b.OpIn(onnx.NCHWcDomain, "ReorderInput", []string{"dy"})
		y := b.OpIn(onnx.NCHWcDomain, "Conv", []string{xc, wb},
			onnx.AttrInts("kernel_shape", kh, kw), onnx.AttrInts("strides", 1, 1), onnx.AttrInts("dilations", 1, 1),
			onnx.AttrInts("pads", kh-1-int64(cc.pads[0]), kw-1-int64(cc.pads[1]), kh-1-int64(cc.pads[2]), kw-1-int64(cc.pads[3])))
		b.NodeIn(onnx.NCHWcDomain, "ReorderOutput", []string{y}, []string{"dx"}, onnx.AttrInt("channels", C))
	} else {
		op := make([]int64, 2)
		for i, v := range []struct{ in, o, k, s, d, p0, p1 int }{
			{cc.h, oh, cc.kh, cc.stride[0], cc.dil[0], cc.pads[0], cc.pads[2]},
			{cc.w, ow, cc.kw, cc.stride[1], cc.dil[1], cc.pads[1], cc.pads[3]},
		} {
			op[i] = int64(v.in - (v.s*(v.o-1) + (v.k-1)*v.d + 1 - v.p0 - v.p1))
		}
		b.Node("ConvTranspose", []string{"dy", "w"}, []string{"dx"},
			append(cc.attrs(), onnx.AttrInts("output_padding", op...))...)
	}
	b.Output("dx", onnx.Float, N, C, int64(cc.h), int64(cc.w))
	return b.Model()
}

// nchwcForwardModel is X, W, B → Y through the NCHWc kernels with the
// weight reordered in the graph, as graphs/conv.go's convForward.
func (cc convCase) nchwcForwardModel(B int) *onnx.Model {
	oh, ow := cc.out()
	N, C, K, kh, kw := int64(cc.n), int64(cc.c), int64(cc.k), int64(cc.kh), int64(cc.kw)
	b := onnx.NewBuilder("conv_nchwc")
	b.Input("x", onnx.Float, N, C, int64(cc.h), int64(cc.w))
	b.Input("w", onnx.Float, K, C, kh, kw)
	b.Input("b", onnx.Float, K)
	wb := nchwcWeight(b, "w", int64(B), K, C, kh, kw)
	xc := b.OpIn(onnx.NCHWcDomain, "ReorderInput", []string{"x"})
	y := b.OpIn(onnx.NCHWcDomain, "Conv", []string{xc, wb, "b"}, cc.attrs()...)
	b.NodeIn(onnx.NCHWcDomain, "ReorderOutput", []string{y}, []string{"y"}, onnx.AttrInt("channels", K))
	b.Output("y", onnx.Float, N, K, int64(oh), int64(ow))
	return b.Model()
}

// abForm is one way of computing an output, timed against the others.
type abForm struct {
	name string
	s    *Session
	t    []time.Duration
}

// abRun checks that the forms agree on out (to 1e-4 of its scale), then
// interleaves rounds runs of each and returns the medians in ms.
func abRun(t *testing.T, forms []*abForm, out string, rounds int) []float64 {
	t.Helper()
	var ref []float32
	for _, f := range forms {
		if err := f.s.Run(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		got := f.s.Float(out)
		if ref == nil {
			ref = slices.Clone(got)
			continue
		}
		scale := 0.0
		for _, v := range ref {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for i := range ref {
			if math.Abs(float64(got[i]-ref[i])) > 1e-4*scale {
				t.Fatalf("%s[%d]: %s %g, %s %g", out, i, forms[0].name, ref[i], f.name, got[i])
			}
		}
	}
	for i := 0; i < rounds; i++ {
		for _, f := range forms {
			t0 := time.Now()
			if err := f.s.Run(); err != nil {
				t.Fatal(err)
			}
			f.t = append(f.t, time.Since(t0))
		}
	}
	med := make([]float64, len(forms))
	for i, f := range forms {
		slices.Sort(f.t)
		med[i] = float64(f.t[len(f.t)/2]) / 1e6
	}
	return med
}

// newForms opens one session per model with the same random inputs.
func newForms(t *testing.T, threads int, names []string, models []*onnx.Model, kernels []bool, inputs ...string) []*abForm {
	t.Helper()
	var forms []*abForm
	r := rand.New(rand.NewPCG(3, 4))
	for i, m := range models {
		s, err := NewSession(m, Options{Threads: threads, Kernels: kernels[i]})
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, &abForm{name: names[i], s: s})
	}
	for _, in := range inputs {
		fill(r, forms[0].s.Float(in))
		for _, f := range forms[1:] {
			copy(f.s.Float(in), forms[0].s.Float(in))
		}
	}
	return forms
}

// TestConvGradInputAB interleaves, per shape and thread count, the input
// gradient as the deriver emits it without the kernel (NCHWc Conv for
// stride 1, ConvTranspose otherwise) and ConvGradInput, and the forward
// convolution as a plain ONNX Conv, through NCHWc (block channels only) and
// ConvForward, and logs medians. It runs only with SLATRUN_AB=<rounds>
// (preactresnet18's shapes get a quarter of the rounds, at least 5);
// SLATRUN_AB_ONLY=<substring> picks shapes. Timings are never asserted.
func TestConvGradInputAB(t *testing.T) {
	rounds := 0
	fmt.Sscan(os.Getenv("SLATRUN_AB"), &rounds)
	if rounds <= 0 {
		t.Skip("set SLATRUN_AB=<rounds> to time the input-gradient and forward forms against oneDNN")
	}
	needKernels(t)
	B := NCHWcBlock()
	only := os.Getenv("SLATRUN_AB_ONLY")
	for _, cc := range abInputCases {
		if only != "" && !strings.Contains(cc.name, only) {
			continue
		}
		n := rounds
		if strings.HasPrefix(cc.name, "resnet") {
			n = max(5, rounds/4)
		}
		for _, threads := range []int{1, 2} {
			today := "ConvTranspose"
			if cc.nchwcInputGradOK(B) {
				today = "NCHWc Conv"
			}
			forms := newForms(t, threads, []string{today, "ConvGradInput"},
				[]*onnx.Model{cc.todayInputModel(B), cc.gradInputModel(shapeFromAttr)}, []bool{false, true}, "dy", "w")
			m := abRun(t, forms, "dx", n)
			for _, f := range forms {
				f.s.Close()
			}
			t.Logf("dX %-30s t%d: %-13s %8.2f ms  oneDNN %8.2f ms  (%.2fx)  [%s]", cc.name, threads, today, m[0], m[1], m[0]/m[1], implInfo())
			names := []string{"Conv", "ConvForward"}
			models := []*onnx.Model{cc.convModel(), cc.forwardModel()}
			kern := []bool{false, true}
			if B > 0 && cc.c%B == 0 && cc.k%B == 0 {
				names = append(names, "NCHWc")
				models = append(models, cc.nchwcForwardModel(B))
				kern = append(kern, false)
			}
			forms = newForms(t, threads, names, models, kern, "x", "w", "b")
			m = abRun(t, forms, "y", n)
			for _, f := range forms {
				f.s.Close()
			}
			line := fmt.Sprintf("Y  %-30s t%d: Conv %8.2f ms  oneDNN %8.2f ms", cc.name, threads, m[0], m[1])
			if len(m) > 2 {
				line += fmt.Sprintf("  NCHWc %8.2f ms  (NCHWc/oneDNN %.2fx)", m[2], m[2]/m[1])
			}
			t.Log(line + "  [" + implInfo() + "]")
		}
	}
	t.Log(KernelsInfo())
}
