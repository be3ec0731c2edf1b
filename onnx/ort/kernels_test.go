package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// TestKernelABI checks the facts the custom-op layer relies on without
// oneDNN: onnxruntime_go's SessionOptions layout, and the OrtApiBase and
// OrtApi entries reached through the loaded library.
func TestKernelABI(t *testing.T) {
	if err := checkSessionOptionsLayout(); err != nil {
		t.Fatalf("onnxruntime_go layout: %v", err)
	}
	ok, why := Kernels()
	t.Logf("kernels available=%v %s; %s", ok, why, KernelsInfo())
	if strings.Contains(why, "C API") {
		t.Fatalf("OrtApi binding failed: %s", why)
	}
	if got, want := apiVersionString(), ortgo.GetVersion(); got != want {
		t.Fatalf("GetVersionString through our OrtApiBase = %q, onnxruntime_go says %q", got, want)
	}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	if sessionOptionsPtr(so) == nil {
		t.Fatal("OrtSessionOptions pointer read from onnxruntime_go.SessionOptions is nil")
	}
}

func needKernels(t testing.TB) {
	t.Helper()
	if ok, why := Kernels(); !ok {
		t.Skip(why)
	}
}

type convCase struct {
	name          string
	n, c, h, w, k int
	kh, kw        int
	stride, dil   [2]int
	pads          [4]int // top, left, bottom, right
	bias          bool
	fdSamples     int // finite-difference entries checked (0: all)
	threads       int
}

func (cc convCase) out() (int, int) {
	o := func(in, k, s, d, p0, p1 int) int { return (in+p0+p1-((k-1)*d+1))/s + 1 }
	return o(cc.h, cc.kh, cc.stride[0], cc.dil[0], cc.pads[0], cc.pads[2]),
		o(cc.w, cc.kw, cc.stride[1], cc.dil[1], cc.pads[1], cc.pads[3])
}

func (cc convCase) attrs() []*onnxpb.AttributeProto {
	return []*onnxpb.AttributeProto{
		onnx.AttrInts("kernel_shape", int64(cc.kh), int64(cc.kw)),
		onnx.AttrInts("strides", int64(cc.stride[0]), int64(cc.stride[1])),
		onnx.AttrInts("dilations", int64(cc.dil[0]), int64(cc.dil[1])),
		onnx.AttrInts("pads", int64(cc.pads[0]), int64(cc.pads[1]), int64(cc.pads[2]), int64(cc.pads[3])),
	}
}

// gradModel is X, dY → ai.slatrun ConvGradWeight → dW (, dB).
func (cc convCase) gradModel() *onnx.Model {
	oh, ow := cc.out()
	b := onnx.NewBuilder("conv_grad_weight")
	b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
	b.Input("dy", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
	outs := []string{"dw"}
	if cc.bias {
		outs = append(outs, "db")
	}
	b.NodeIn(KernelDomain, ConvGradWeightOp, []string{"x", "dy"}, outs, cc.attrs()...)
	b.Output("dw", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
	if cc.bias {
		b.Output("db", onnx.Float, int64(cc.k))
	}
	return b.Model()
}

// convModel is a plain ONNX Conv of x by w plus bias.
func (cc convCase) convModel() *onnx.Model {
	oh, ow := cc.out()
	b := onnx.NewBuilder("conv")
	b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
	b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
	b.Input("b", onnx.Float, int64(cc.k))
	b.Node("Conv", []string{"x", "w", "b"}, []string{"y"}, cc.attrs()...)
	b.Output("y", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
	return b.Model()
}

// refGrad is the float64 weight and bias gradient.
func (cc convCase) refGrad(x, dy []float32) (dw, db []float64) {
	oh, ow := cc.out()
	dw = make([]float64, cc.k*cc.c*cc.kh*cc.kw)
	db = make([]float64, cc.k)
	for n := 0; n < cc.n; n++ {
		for k := 0; k < cc.k; k++ {
			for o := 0; o < oh; o++ {
				for p := 0; p < ow; p++ {
					g := float64(dy[((n*cc.k+k)*oh+o)*ow+p])
					db[k] += g
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
								dw[((k*cc.c+c)*cc.kh+i)*cc.kw+j] += g * float64(x[((n*cc.c+c)*cc.h+hi)*cc.w+wj])
							}
						}
					}
				}
			}
		}
	}
	return dw, db
}

// runWith opens a session of m, copies inputs into its tensors and runs it
// once; the caller reads the outputs and closes it.
func runWith(t *testing.T, m *onnx.Model, opts Options, inputs map[string][]float32) *Session {
	t.Helper()
	s, err := NewSession(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range inputs {
		copy(s.Float(name), v)
	}
	if err := s.Run(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

func fill(r *rand.Rand, s []float32) {
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// closeTo compares got to want entry by entry with tolerance
// tol·(|want| + max|want|·1e-2): relative, with a floor for entries near 0.
func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	floor := maxAbs(want) * 1e-2
	bad := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(math.Abs(want[i])+floor) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.7g, want %.7g (|diff| %.3g)", what, i, got[i], want[i], d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d entries off", what, bad, len(want))
	}
}

var convCases = []convCase{
	{name: "3x3_s1_p1", n: 2, c: 3, h: 7, w: 6, k: 4, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true},
	{name: "3x3_s2_p1", n: 2, c: 3, h: 8, w: 9, k: 5, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}},
	{name: "1x1_s2_p0", n: 3, c: 4, h: 8, w: 8, k: 6, kh: 1, kw: 1, stride: [2]int{2, 2}, dil: [2]int{1, 1}, bias: true},
	{name: "3x3_dil2_p2", n: 2, c: 2, h: 9, w: 9, k: 3, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{2, 2}, pads: [4]int{2, 2, 2, 2}},
	{name: "asym_pads_rect", n: 2, c: 3, h: 7, w: 8, k: 2, kh: 3, kw: 2, stride: [2]int{2, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 0, 0, 1}, bias: true},
	{name: "blocked_16to32_s2", n: 4, c: 16, h: 10, w: 10, k: 32, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true, fdSamples: 40},
	{name: "blocked_16to16_s1_2threads", n: 4, c: 16, h: 12, w: 12, k: 16, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, fdSamples: 40, threads: 2},
	// the batch split over the session's threads: uneven parts (5 rows in
	// 2+2+1), a part per row (3 rows, 4 threads), a bias gradient summed
	// over parts
	{name: "blocked_16to32_s2_3threads_uneven", n: 5, c: 16, h: 10, w: 10, k: 32, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, bias: true, fdSamples: 40, threads: 3},
	{name: "1x1_s2_more_threads_than_rows", n: 3, c: 4, h: 8, w: 8, k: 6, kh: 1, kw: 1, stride: [2]int{2, 2}, dil: [2]int{1, 1}, bias: true, threads: 4},
}

func TestConvGradWeight(t *testing.T) {
	needKernels(t)
	for ci, cc := range convCases {
		t.Run(cc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 7))
			threads := cc.threads
			if threads == 0 {
				threads = 1
			}
			s, err := NewSession(cc.gradModel(), Options{Threads: threads, Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			x, dy := s.Float("x"), s.Float("dy")
			fill(r, x)
			fill(r, dy)
			// Two runs, so the second uses the cached primitives.
			for run := 0; run < 2; run++ {
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
			}
			wantW, wantB := cc.refGrad(x, dy)
			closeTo(t, "dW vs float64 reference", s.Float("dw"), wantW, 1e-4)
			if cc.bias {
				closeTo(t, "dB vs float64 reference", s.Float("db"), wantB, 1e-4)
			}
			fdW, fdB := cc.finiteDiff(t, x, dy, r)
			gotW := s.Float("dw")
			var got []float32
			var want []float64
			for i, v := range fdW {
				if !math.IsNaN(v) {
					got, want = append(got, gotW[i]), append(want, v)
				}
			}
			// Central differences of a loss linear in W are exact up to
			// float32 rounding of the Conv output.
			closeTo(t, "dW vs central differences", got, want, 1e-4)
			if cc.bias {
				closeTo(t, "dB vs central differences", s.Float("db"), fdB, 1e-4)
			}
			// Writes to the inputs are seen by the next run.
			fill(r, x)
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
			wantW, _ = cc.refGrad(x, dy)
			closeTo(t, "dW after new input", s.Float("dw"), wantW, 1e-4)
		})
	}
}

// finiteDiff returns central differences of L = Σ dy ⊙ Conv(x; w, b) with
// respect to w (NaN for entries not sampled) and b, running a plain ONNX
// Conv in ONNX Runtime and summing L in float64. w and b are random.
func (cc convCase) finiteDiff(t *testing.T, x, dy []float32, r *rand.Rand) ([]float64, []float64) {
	t.Helper()
	s, err := NewSession(cc.convModel(), Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	copy(s.Float("x"), x)
	w, b := s.Float("w"), s.Float("b")
	fill(r, w)
	fill(r, b)
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
	diff := func(p *float32) float64 {
		v := *p
		*p = v + h
		lp := loss()
		*p = v - h
		lm := loss()
		*p = v
		return (lp - lm) / (2 * h)
	}
	gw := make([]float64, len(w))
	idx := r.Perm(len(w))
	if cc.fdSamples > 0 && cc.fdSamples < len(idx) {
		for _, i := range idx[cc.fdSamples:] {
			gw[i] = math.NaN()
		}
		idx = idx[:cc.fdSamples]
	}
	for _, i := range idx {
		gw[i] = diff(&w[i])
	}
	gb := make([]float64, len(b))
	for i := range b {
		gb[i] = diff(&b[i])
	}
	return gw, gb
}

// TestConvGradWeightErrors checks that bad graphs fail with the kernel's own
// words rather than crash.
func TestConvGradWeightErrors(t *testing.T) {
	needKernels(t)
	cc := convCases[0]
	m := cc.gradModel()
	// dY of the wrong spatial size.
	bad := cc
	bad.pads = [4]int{0, 0, 0, 0}
	g := m.Graph()
	g.GetNode()[0].Attribute = bad.attrs()
	s, err := NewSession(m, Options{Threads: 1, Kernels: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Run()
	if err == nil || !strings.Contains(err.Error(), "ConvGradWeight") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("run with mismatched dY: err = %v, want the kernel's shape error", err)
	}
	// Missing kernel_shape.
	m2 := cc.gradModel()
	m2.Graph().GetNode()[0].Attribute = cc.attrs()[1:]
	s2, err := NewSession(m2, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s2.Run()
		s2.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "kernel_shape") {
		t.Fatalf("missing kernel_shape: err = %v", err)
	}
}

// TestKernelsOff: without Options.Kernels the domain is unknown to the
// session, and ONNX Runtime says so.
func TestKernelsOff(t *testing.T) {
	_, err := NewSession(convCases[0].gradModel(), Options{Threads: 1})
	if err == nil {
		t.Fatal("a graph using ai.slatrun loaded without Options.Kernels")
	}
	t.Logf("%v", fmt.Sprint(err))
}
