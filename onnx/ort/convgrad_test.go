package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// How ConvGradInput learns X's shape in gradInputModel.
const (
	shapeFromX    = iota // a third input X
	shapeFromAttr        // the input_shape attribute
	shapeMinimal         // neither: the smallest H, W giving OH, OW
)

// minimalHW is the smallest input extent a convolution with cc's geometry
// maps to its output extent.
func (cc convCase) minimalHW() (int, int) {
	oh, ow := cc.out()
	return (oh-1)*cc.stride[0] + (cc.kh-1)*cc.dil[0] + 1 - cc.pads[0] - cc.pads[2],
		(ow-1)*cc.stride[1] + (cc.kw-1)*cc.dil[1] + 1 - cc.pads[1] - cc.pads[3]
}

// gradInputModel is dY, W [, X] → ai.slatrun ConvGradInput → dX.
func (cc convCase) gradInputModel(how int) *onnx.Model {
	oh, ow := cc.out()
	b := onnx.NewBuilder("conv_grad_input")
	b.Input("dy", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
	b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
	in := []string{"dy", "w"}
	attrs := cc.attrs()
	switch how {
	case shapeFromX:
		b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
		in = append(in, "x")
	case shapeFromAttr:
		attrs = append(attrs, onnx.AttrInts("input_shape", int64(cc.h), int64(cc.w)))
	}
	b.NodeIn(KernelDomain, ConvGradInputOp, in, []string{"dx"}, attrs...)
	b.Output("dx", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
	return b.Model()
}

// forwardModel is X, W, B → ai.slatrun ConvForward → Y.
func (cc convCase) forwardModel() *onnx.Model {
	oh, ow := cc.out()
	b := onnx.NewBuilder("conv_forward")
	b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
	b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
	b.Input("b", onnx.Float, int64(cc.k))
	b.NodeIn(KernelDomain, ConvForwardOp, []string{"x", "w", "b"}, []string{"y"}, cc.attrs()...)
	b.Output("y", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
	return b.Model()
}

// refConv visits every (input, weight, output) index triple of the
// convolution: f(xi, wi, yi).
func (cc convCase) refConv(f func(xi, wi, yi int)) {
	oh, ow := cc.out()
	for n := 0; n < cc.n; n++ {
		for k := 0; k < cc.k; k++ {
			for o := 0; o < oh; o++ {
				for p := 0; p < ow; p++ {
					yi := ((n*cc.k+k)*oh+o)*ow + p
					for c := 0; c < cc.c; c++ {
						for i := 0; i < cc.kh; i++ {
							hi := o*cc.stride[0] + i*cc.dil[0] - cc.pads[0]
							if hi < 0 || hi >= cc.h {
								continue
							}
							for j := 0; j < cc.kw; j++ {
								wj := p*cc.stride[1] + j*cc.dil[1] - cc.pads[1]
								if wj < 0 || wj >= cc.w {
									continue
								}
								f(((n*cc.c+c)*cc.h+hi)*cc.w+wj, ((k*cc.c+c)*cc.kh+i)*cc.kw+j, yi)
							}
						}
					}
				}
			}
		}
	}
}

func TestConvGradInput(t *testing.T) {
	needKernels(t)
	for ci, cc := range convCases {
		t.Run(cc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 11))
			threads := cc.threads
			if threads == 0 {
				threads = 1
			}
			oh, ow := cc.out()
			dy := make([]float32, cc.n*cc.k*oh*ow)
			w := make([]float32, cc.k*cc.c*cc.kh*cc.kw)
			fill(r, dy)
			fill(r, w)
			want := make([]float64, cc.n*cc.c*cc.h*cc.w)
			cc.refConv(func(xi, wi, yi int) { want[xi] += float64(w[wi]) * float64(dy[yi]) })
			mh, mw := cc.minimalHW()
			for how, what := range []string{"X input", "input_shape", "minimal"} {
				if how == shapeMinimal && (mh != cc.h || mw != cc.w) {
					continue
				}
				s, err := NewSession(cc.gradInputModel(how), Options{Threads: threads, Kernels: true})
				if err != nil {
					t.Fatal(err)
				}
				copy(s.Float("dy"), dy)
				copy(s.Float("w"), w)
				// Two runs, so the second uses the cached primitives.
				for run := 0; run < 2; run++ {
					if err := s.Run(); err != nil {
						s.Close()
						t.Fatal(err)
					}
				}
				closeTo(t, "dX ("+what+") vs float64 reference", s.Float("dx"), want, 1e-4)
				if how == shapeFromX {
					closeToSampled(t, "dX vs central differences", s.Float("dx"), cc.finiteDiffX(t, dy, w, r), 1e-4)
					// Writes to the inputs are seen by the next run.
					fill(r, s.Float("w"))
					if err := s.Run(); err != nil {
						s.Close()
						t.Fatal(err)
					}
					w2 := s.Float("w")
					want2 := make([]float64, len(want))
					cc.refConv(func(xi, wi, yi int) { want2[xi] += float64(w2[wi]) * float64(dy[yi]) })
					closeTo(t, "dX after new W", s.Float("dx"), want2, 1e-4)
				}
				s.Close()
			}
		})
	}
}

// closeToSampled is closeTo on the entries of want that are not NaN (the
// ones a finite-difference check sampled).
func closeToSampled(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	var g []float32
	var w []float64
	for i, v := range want {
		if !math.IsNaN(v) {
			g, w = append(g, got[i]), append(w, v)
		}
	}
	closeTo(t, what, g, w, tol)
}

// finiteDiffX returns central differences of L = Σ dy ⊙ Conv(x; w, b) with
// respect to x (NaN for entries not sampled), through a plain ONNX Conv with
// random x and b. L is linear in x, so they are exact up to rounding.
func (cc convCase) finiteDiffX(t *testing.T, dy, w []float32, r *rand.Rand) []float64 {
	t.Helper()
	s, err := NewSession(cc.convModel(), Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := s.Float("x")
	fill(r, x)
	copy(s.Float("w"), w)
	fill(r, s.Float("b"))
	loss := func() float64 {
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		l := 0.0
		for i, y := range s.Float("y") {
			l += float64(y) * float64(dy[i])
		}
		return l
	}
	const h = 0.5
	g := make([]float64, len(x))
	idx := r.Perm(len(x))
	if cc.fdSamples > 0 && cc.fdSamples < len(idx) {
		for _, i := range idx[cc.fdSamples:] {
			g[i] = math.NaN()
		}
		idx = idx[:cc.fdSamples]
	}
	for _, i := range idx {
		v := x[i]
		x[i] = v + h
		lp := loss()
		x[i] = v - h
		lm := loss()
		x[i] = v
		g[i] = (lp - lm) / (2 * h)
	}
	return g
}

func TestConvForward(t *testing.T) {
	needKernels(t)
	for ci, cc := range convCases {
		t.Run(cc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 13))
			threads := cc.threads
			if threads == 0 {
				threads = 1
			}
			s, err := NewSession(cc.forwardModel(), Options{Threads: threads, Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := NewSession(cc.convModel(), Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, name := range []string{"x", "w", "b"} {
				fill(r, s.Float(name))
				copy(p.Float(name), s.Float(name))
			}
			for run := 0; run < 2; run++ {
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Run(); err != nil {
				t.Fatal(err)
			}
			x, w, b := s.Float("x"), s.Float("w"), s.Float("b")
			oh, ow := cc.out()
			want := make([]float64, cc.n*cc.k*oh*ow)
			for i := range want {
				want[i] = float64(b[(i/(oh*ow))%cc.k])
			}
			cc.refConv(func(xi, wi, yi int) { want[yi] += float64(x[xi]) * float64(w[wi]) })
			closeTo(t, "Y vs float64 reference", s.Float("y"), want, 1e-4)
			plain := make([]float64, len(want))
			for i, v := range p.Float("y") {
				plain[i] = float64(v)
			}
			closeTo(t, "Y vs ONNX Conv", s.Float("y"), plain, 1e-4)
		})
	}
}

// TestConvGradInputErrors checks that bad graphs fail with the kernel's own
// words rather than crash.
func TestConvGradInputErrors(t *testing.T) {
	needKernels(t)
	cc := convCases[1]
	// input_shape whose convolution does not give dY's size.
	m2 := cc.gradInputModel(shapeFromAttr)
	for _, a := range m2.Graph().GetNode()[0].GetAttribute() {
		if a.GetName() == "input_shape" {
			a.Ints = []int64{int64(cc.h + 3), int64(cc.w)}
		}
	}
	s2, err := NewSession(m2, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s2.Run()
		s2.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "ConvGradInput") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("input_shape not matching dY: err = %v, want the kernel's shape error", err)
	}
	// W that does not fit kernel_shape.
	m3 := cc.gradInputModel(shapeFromX)
	for _, a := range m3.Graph().GetNode()[0].GetAttribute() {
		if a.GetName() == "kernel_shape" {
			a.Ints = []int64{2, 2}
		}
	}
	s3, err := NewSession(m3, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s3.Run()
		s3.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "ConvGradInput") {
		t.Fatalf("W not matching kernel_shape: err = %v", err)
	}
	t.Log(err)
}

// TestConvGradInputDeterministic checks that two sessions, each built and
// run on its own goroutine, give bit-identical dX (the thread count is set
// before the primitive is built; docs/kernels.md, "Threads").
func TestConvGradInputDeterministic(t *testing.T) {
	needKernels(t)
	cc := conv3("s2", 32, 14, 64, 3, 2)
	cc.n = 8
	var outs [2][]float32
	for i := range outs {
		done := make(chan error)
		go func() {
			s, err := NewSession(cc.gradInputModel(shapeFromAttr), Options{Threads: 2, Kernels: true})
			if err != nil {
				done <- err
				return
			}
			defer s.Close()
			r := rand.New(rand.NewPCG(5, 6))
			fill(r, s.Float("dy"))
			fill(r, s.Float("w"))
			if err := s.Run(); err != nil {
				done <- err
				return
			}
			outs[i] = slices.Clone(s.Float("dx"))
			done <- nil
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for j := range outs[0] {
		if math.Float32bits(outs[0][j]) != math.Float32bits(outs[1][j]) {
			t.Fatalf("dX[%d]: %g in one session, %g in another", j, outs[0][j], outs[1][j])
		}
	}
}

// TestConvWinograd: the convolution kernels of a Winograd shape (3×3,
// stride 1, pads 1, at least 64 channels in blocks of 16) pick oneDNN's
// Winograd implementation by default and its direct one with DirectConv,
// narrower ones the direct one always, and all match the float64
// definition (to 1e-5 of each output's largest value; direct also to 1e-4
// of each value): the forward, the input gradient and the weight gradient
// (with the bias's), on 1 and 2 threads (the batch in parts), images that
// straddle Winograd's 4×4 tiles unevenly.
func TestConvWinograd(t *testing.T) {
	needKernels(t)
	for ci, c := range []struct {
		cc   convCase
		wino bool // Winograd by default
	}{
		{convCase{name: "64to80_10x10", n: 3, c: 64, h: 10, w: 10, k: 80, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true}, true},
		{convCase{name: "80to64_7x9_2threads", n: 5, c: 80, h: 7, w: 9, k: 64, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true, threads: 2}, true},
		{convCase{name: "32to32_8x8", n: 2, c: 32, h: 8, w: 8, k: 32, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true}, false},
	} {
		cc := c.cc
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/direct=%v", cc.name, direct), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(ci), 17))
				opts := Options{Threads: max(cc.threads, 1), Kernels: true, DirectConv: direct}
				oh, ow := cc.out()
				x := make([]float32, cc.n*cc.c*cc.h*cc.w)
				w := make([]float32, cc.k*cc.c*cc.kh*cc.kw)
				b := make([]float32, cc.k)
				dy := make([]float32, cc.n*cc.k*oh*ow)
				for _, v := range [][]float32{x, w, b, dy} {
					fill(r, v)
				}
				// each model alone in its session, so that the primitive the
				// last Run built is its convolution's
				check := func(m *onnx.Model, inputs map[string][]float32, out string, want []float64) {
					t.Helper()
					s := runWith(t, m, opts, inputs)
					defer s.Close()
					if wino := strings.Contains(KernelsInfo(), "wino"); wino != (c.wino && !direct) {
						t.Errorf("%s: implementation %q with DirectConv %v", out, KernelsInfo(), direct)
					}
					// Winograd's rounding scales with the terms summed, not
					// with each result: held to 1e-5 of the output's largest
					// value (it measured about 2e-6, direct about 3e-7),
					// direct to 1e-4 of each value as everywhere else
					worst := 0.0
					for i, v := range s.Float(out) {
						worst = math.Max(worst, math.Abs(float64(v)-want[i]))
					}
					if worst > 1e-5*maxAbs(want) {
						t.Errorf("%s: off the float64 reference by %.3g, %.2g of its largest value", out, worst, worst/maxAbs(want))
					}
					if direct {
						closeTo(t, out+" vs float64 reference", s.Float(out), want, 1e-4)
					}
				}
				y := make([]float64, len(dy))
				for i := range y {
					y[i] = float64(b[(i/(oh*ow))%cc.k])
				}
				cc.refConv(func(xi, wi, yi int) { y[yi] += float64(x[xi]) * float64(w[wi]) })
				check(cc.forwardModel(), map[string][]float32{"x": x, "w": w, "b": b}, "y", y)
				dx := make([]float64, len(x))
				cc.refConv(func(xi, wi, yi int) { dx[xi] += float64(w[wi]) * float64(dy[yi]) })
				check(cc.gradInputModel(shapeFromX), map[string][]float32{"x": x, "w": w, "dy": dy}, "dx", dx)
				dw, db := cc.refGrad(x, dy)
				check(cc.gradModel(), map[string][]float32{"x": x, "dy": dy}, "dw", dw)
				check(cc.gradModel(), map[string][]float32{"x": x, "dy": dy}, "db", db)
			})
		}
	}
}
