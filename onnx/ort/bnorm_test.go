package ort

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

type bnCase struct {
	name     string
	shape    []int64 // [N, C, spatial...]
	relu     bool
	eps      float32 // 0: the default 1e-5
	threads  int
	fdSample int // entries of dX checked by finite differences
}

func (bc bnCase) c() int64 { return bc.shape[1] }

func (bc bnCase) epsilon() float32 {
	if bc.eps == 0 {
		return 1e-5
	}
	return bc.eps
}

func (bc bnCase) attrs(fwd bool) []*onnxpb.AttributeProto {
	var a []*onnxpb.AttributeProto
	if fwd && bc.eps != 0 {
		a = append(a, onnx.AttrFloat("epsilon", bc.eps))
	}
	if bc.relu {
		a = append(a, onnx.AttrInt("relu", 1))
	}
	return a
}

// fusedModel is BatchNormTrain followed by BatchNormTrainGrad on dy, in one
// graph: outputs y, mean, var, invstd, dx, dscale, dbias.
func (bc bnCase) fusedModel() *onnx.Model {
	C := bc.c()
	b := onnx.NewBuilder("bn_train")
	b.Input("x", onnx.Float, bc.shape...)
	b.Input("g", onnx.Float, C)
	b.Input("b", onnx.Float, C)
	b.Input("dy", onnx.Float, bc.shape...)
	b.NodeIn(KernelDomain, BatchNormTrainOp, []string{"x", "g", "b"}, []string{"y", "mean", "var", "invstd"}, bc.attrs(true)...)
	in := []string{"dy", "x", "g", "mean", "invstd"}
	if bc.relu {
		in = append(in, "y")
	}
	b.NodeIn(KernelDomain, BatchNormTrainGradOp, in, []string{"dx", "dg", "db"}, bc.attrs(false)...)
	b.Output("y", onnx.Float, bc.shape...)
	for _, o := range []string{"mean", "var", "invstd"} {
		b.Output(o, onnx.Float, C)
	}
	b.Output("dx", onnx.Float, bc.shape...)
	b.Output("dg", onnx.Float, C)
	b.Output("db", onnx.Float, C)
	return b.Model()
}

func bnAxes(rank int) []int64 {
	a := []int64{0}
	for i := 2; i < rank; i++ {
		a = append(a, int64(i))
	}
	return a
}

func bnBcast(shape []int64) []int64 {
	s := make([]int64, len(shape))
	for i := range s {
		s[i] = 1
	}
	s[1] = shape[1]
	return s
}

// lossModel is L = Σ w ⊙ BN(x; g, b) (ReLU'd if bc.relu) composed of
// standard ops and computed in float64 (the inputs are cast), with L
// returned as two float32 scalars lhi + llo, so that central differences
// see float64 precision.
func (bc bnCase) lossModel() *onnx.Model {
	const double = int64(onnxpb.TensorProto_DOUBLE)
	C := bc.c()
	b := onnx.NewBuilder("bn_loss")
	b.Input("x", onnx.Float, bc.shape...)
	b.Input("g", onnx.Float, C)
	b.Input("b", onnx.Float, C)
	b.Input("w", onnx.Float, bc.shape...)
	cast := func(v string, to int64) string { return b.Op("Cast", []string{v}, onnx.AttrInt("to", to)) }
	bs := b.Ints(bnBcast(bc.shape)...)
	axes := b.Ints(bnAxes(len(bc.shape))...)
	x := cast("x", double)
	g := b.Op("Reshape", []string{cast("g", double), bs})
	bb := b.Op("Reshape", []string{cast("b", double), bs})
	mu := b.Op("ReduceMean", []string{x, axes}, onnx.AttrInt("keepdims", 1))
	xc := b.Op("Sub", []string{x, mu})
	v := b.Op("ReduceMean", []string{b.Op("Mul", []string{xc, xc}), axes}, onnx.AttrInt("keepdims", 1))
	inv := b.Op("Reciprocal", []string{b.Op("Sqrt", []string{b.Op("Add", []string{v, cast(b.Scalar(bc.epsilon()), double)})})})
	y := b.Op("Add", []string{b.Op("Mul", []string{b.Op("Mul", []string{xc, inv}), g}), bb})
	if bc.relu {
		y = b.Op("Relu", []string{y})
	}
	l := b.Op("ReduceSum", []string{b.Op("Mul", []string{y, cast("w", double)})}, onnx.AttrInt("keepdims", 0))
	b.Node("Cast", []string{l}, []string{"lhi"}, onnx.AttrInt("to", int64(onnx.Float)))
	b.Node("Cast", []string{b.Op("Sub", []string{l, cast("lhi", double)})}, []string{"llo"}, onnx.AttrInt("to", int64(onnx.Float)))
	b.Output("lhi", onnx.Float)
	b.Output("llo", onnx.Float)
	return b.Model()
}

// bnRef is the float64 forward and backward of training-mode BN.
type bnRef struct {
	y, mean, vr, invstd, dx, dg, db []float64
}

func (bc bnCase) ref(x, g, bias, dy []float32) bnRef {
	N, C := int(bc.shape[0]), int(bc.c())
	S := 1
	for _, d := range bc.shape[2:] {
		S *= int(d)
	}
	cnt := float64(N * S)
	r := bnRef{y: make([]float64, len(x)), dx: make([]float64, len(x))}
	for _, p := range []*[]float64{&r.mean, &r.vr, &r.invstd, &r.dg, &r.db} {
		*p = make([]float64, C)
	}
	at := func(n, c, i int) int { return (n*C+c)*S + i }
	for c := 0; c < C; c++ {
		m := 0.0
		for n := 0; n < N; n++ {
			for i := 0; i < S; i++ {
				m += float64(x[at(n, c, i)])
			}
		}
		m /= cnt
		v := 0.0
		for n := 0; n < N; n++ {
			for i := 0; i < S; i++ {
				d := float64(x[at(n, c, i)]) - m
				v += d * d
			}
		}
		v /= cnt
		inv := 1 / math.Sqrt(v+float64(bc.epsilon()))
		r.mean[c], r.vr[c], r.invstd[c] = m, v, inv
		// dy through the ReLU, then the BN formulas.
		g1 := make([]float64, N*S)
		s1, s2 := 0.0, 0.0
		for n := 0; n < N; n++ {
			for i := 0; i < S; i++ {
				k := at(n, c, i)
				xh := (float64(x[k]) - m) * inv
				y := float64(g[c])*xh + float64(bias[c])
				d := float64(dy[k])
				if bc.relu {
					if y <= 0 {
						d = 0
					}
					y = math.Max(y, 0)
				}
				r.y[k] = y
				g1[n*S+i] = d
				s1 += d
				s2 += d * xh
			}
		}
		r.db[c], r.dg[c] = s1, s2
		for n := 0; n < N; n++ {
			for i := 0; i < S; i++ {
				k := at(n, c, i)
				xh := (float64(x[k]) - m) * inv
				r.dx[k] = float64(g[c]) * inv * (g1[n*S+i] - s1/cnt - xh*s2/cnt)
			}
		}
	}
	return r
}

var bnCases = []bnCase{
	{name: "2x3x5x7_tail", shape: []int64{2, 3, 5, 7}, fdSample: 40},
	{name: "4x16x8x8", shape: []int64{4, 16, 8, 8}, fdSample: 30},
	{name: "3x5x6x6_relu", shape: []int64{3, 5, 6, 6}, relu: true, fdSample: 40},
	{name: "5x4x17_rank3_eps", shape: []int64{5, 4, 17}, eps: 1e-3, fdSample: 30},
	{name: "16x3_rank2", shape: []int64{16, 3}, fdSample: 20},
	{name: "4x32x14x14_relu_2threads", shape: []int64{4, 32, 14, 14}, relu: true, threads: 2, fdSample: 20},
}

func bnFill(r *rand.Rand, s *Session) {
	x := s.Float("x")
	fill(r, x)
	// An offset, so that cancellation in x − μ matters.
	for i := range x {
		x[i] = 3 + 2*x[i]
	}
	for i, g := range s.Float("g") {
		_ = g
		s.Float("g")[i] = float32(0.5 + r.Float64())
	}
	fill(r, s.Float("b"))
	fill(r, s.Float("dy"))
}

func TestBatchNormTrain(t *testing.T) {
	needKernels(t)
	for ci, bc := range bnCases {
		t.Run(bc.name, func(t *testing.T) {
			threads := max(bc.threads, 1)
			s, err := NewSession(bc.fusedModel(), Options{Threads: threads, Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := rand.New(rand.NewPCG(uint64(ci), 11))
			bnFill(r, s)
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
			x, g, b, dy := s.Float("x"), s.Float("g"), s.Float("b"), s.Float("dy")
			want := bc.ref(x, g, b, dy)
			closeTo(t, "y", s.Float("y"), want.y, 1e-4)
			closeTo(t, "mean", s.Float("mean"), want.mean, 1e-4)
			closeTo(t, "var", s.Float("var"), want.vr, 1e-4)
			closeTo(t, "invstd", s.Float("invstd"), want.invstd, 1e-4)
			closeTo(t, "dx", s.Float("dx"), want.dx, 1e-4)
			closeTo(t, "dscale", s.Float("dg"), want.dg, 1e-4)
			closeTo(t, "dbias", s.Float("db"), want.db, 1e-4)

			// Central differences of L = Σ dy ⊙ BN(x) through the composed
			// float64 graph: dL/dx, dL/dscale, dL/dbias.
			fx, fg, fb := bc.finiteDiff(t, x, g, b, dy, r)
			var got []float32
			var fdx []float64
			for i, v := range fx {
				if !math.IsNaN(v) {
					got, fdx = append(got, s.Float("dx")[i]), append(fdx, v)
				}
			}
			closeTo(t, "dx vs central differences", got, fdx, 1e-4)
			closeTo(t, "dscale vs central differences", s.Float("dg"), fg, 1e-4)
			closeTo(t, "dbias vs central differences", s.Float("db"), fb, 1e-4)
		})
	}
}

// finiteDiff differentiates L = Σ dy ⊙ BN(x; g, b) numerically with respect
// to fdSample random entries of x (NaN elsewhere) and all of g and b.
func (bc bnCase) finiteDiff(t *testing.T, x, g, b, dy []float32, r *rand.Rand) (fx, fg, fb []float64) {
	t.Helper()
	s, err := NewSession(bc.lossModel(), Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	copy(s.Float("x"), x)
	copy(s.Float("g"), g)
	copy(s.Float("b"), b)
	copy(s.Float("w"), dy)
	loss := func() float64 {
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		return float64(s.Float("lhi")[0]) + float64(s.Float("llo")[0])
	}
	diff := func(p *float32) float64 {
		v := *p
		// Steps of a few float32 ulps: the loss is computed in float64, and
		// with a ReLU a larger step would carry entries across its kink.
		up, dn := v, v
		for range 8 {
			up, dn = math.Nextafter32(up, float32(math.Inf(1))), math.Nextafter32(dn, float32(math.Inf(-1)))
		}
		*p = up
		lp := loss()
		*p = dn
		lm := loss()
		*p = v
		return (lp - lm) / (float64(up) - float64(dn))
	}
	xs := s.Float("x")
	fx = make([]float64, len(xs))
	for i := range fx {
		fx[i] = math.NaN()
	}
	for _, i := range r.Perm(len(xs))[:min(bc.fdSample, len(xs))] {
		fx[i] = diff(&xs[i])
	}
	for _, p := range []struct {
		v   []float32
		out *[]float64
	}{{s.Float("g"), &fg}, {s.Float("b"), &fb}} {
		*p.out = make([]float64, len(p.v))
		for i := range p.v {
			(*p.out)[i] = diff(&p.v[i])
		}
	}
	return fx, fg, fb
}

// TestBatchNormTrainDeterministic: two sessions, and 1 and 2 threads, give
// bit-identical outputs (the work is split by channel, each channel summed
// by one thread in a fixed order).
func TestBatchNormTrainDeterministic(t *testing.T) {
	needKernels(t)
	bc := bnCase{shape: []int64{16, 32, 14, 14}, relu: true}
	var first map[string][]float32
	for run, threads := range []int{2, 2, 1} {
		s, err := NewSession(bc.fusedModel(), Options{Threads: threads, Kernels: true})
		if err != nil {
			t.Fatal(err)
		}
		bnFill(rand.New(rand.NewPCG(5, 6)), s)
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		got := map[string][]float32{}
		for _, o := range s.Outputs() {
			got[o] = slices.Clone(s.Float(o))
		}
		s.Close()
		if run == 0 {
			first = got
			continue
		}
		for o, v := range got {
			for i := range v {
				if math.Float32bits(v[i]) != math.Float32bits(first[o][i]) {
					t.Fatalf("session %d (%d threads): %s[%d] = %v, first session %v", run, threads, o, i, v[i], first[o][i])
				}
			}
		}
	}
}

// TestBatchNormTrainErrors: bad shapes and a missing Y fail with the
// kernel's own words.
func TestBatchNormTrainErrors(t *testing.T) {
	needKernels(t)
	bc := bnCase{shape: []int64{2, 3, 4, 4}}
	m := bc.fusedModel()
	m.Graph().GetInput()[1] = onnx.ValueInfo("g", onnx.Float, 4)
	s, err := NewSession(m, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s.Run()
		s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "BatchNormTrain") || !strings.Contains(err.Error(), "[C] = [3]") {
		t.Fatalf("scale of the wrong size: err = %v", err)
	}
	m = bc.fusedModel()
	grad := m.Graph().GetNode()[1]
	grad.Attribute = append(grad.Attribute, onnx.AttrInt("relu", 1))
	s, err = NewSession(m, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s.Run()
		s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "BatchNormTrainGrad") || !strings.Contains(err.Error(), "Y is required") {
		t.Fatalf("relu without Y: err = %v", err)
	}
}

// TestBatchNormTrainGradAcc: with acc, dX is acc + the plain dX bit for bit
// (what an Add of the two gives), with and without the fused ReLU (without
// it the Y slot is left empty); dscale and dbias do not change.
func TestBatchNormTrainGradAcc(t *testing.T) {
	needKernels(t)
	for ci, bc := range []bnCase{
		{shape: []int64{3, 5, 6, 6}},
		{shape: []int64{4, 32, 14, 14}, relu: true, threads: 2},
		{shape: []int64{16, 3}},
	} {
		addOp := "Add"
		model := func(fused bool) *onnx.Model {
			m := bc.fusedModel()
			g := m.Graph()
			g.Input = append(g.Input, onnx.ValueInfo("acc", onnx.Float, bc.shape...))
			grad := g.GetNode()[1]
			if fused {
				if !bc.relu {
					grad.Input = append(grad.Input, "")
				}
				grad.Input = append(grad.Input, "acc")
				return m
			}
			grad.Output[0] = "dx0"
			g.Node = append(g.Node, &onnxpb.NodeProto{OpType: &addOp, Input: []string{"acc", "dx0"}, Output: []string{"dx"}})
			return m
		}
		var outs [2]map[string][]float32
		for k, fused := range []bool{false, true} {
			s, err := NewSession(model(fused), Options{Threads: max(bc.threads, 1), Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(ci), 9))
			bnFill(r, s)
			fill(r, s.Float("acc"))
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
			outs[k] = map[string][]float32{}
			for _, o := range []string{"dx", "dg", "db"} {
				outs[k][o] = slices.Clone(s.Float(o))
			}
			s.Close()
		}
		for o, want := range outs[0] {
			for i, v := range outs[1][o] {
				if math.Float32bits(v) != math.Float32bits(want[i]) {
					t.Fatalf("%v: %s[%d] = %g with acc, %g with an Add", bc.shape, o, i, v, want[i])
				}
			}
		}
	}
}
