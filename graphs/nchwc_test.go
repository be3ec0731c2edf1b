package graphs_test

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestNCHWcMatchesPlain checks that graphs derived with Spec.NCHWcBlock
// (convolutions and stride-1 input gradients in ONNX Runtime's blocked
// kernels) compute what the plain graphs compute, output by output, and
// that the blocked kernels are actually used.
func TestNCHWcMatchesPlain(t *testing.T) {
	block := ort.NCHWcBlock()
	if block == 0 {
		t.Skip("this ONNX Runtime library has no NCHWc kernels")
	}
	cases := []struct {
		model string
		width int
		batch int
		kind  graphs.Kind
		// minimum counts of NCHWc Convs: forward ones and input gradients
		fwd, dx int
	}{
		{"convnet", 16, 4, graphs.Train, 6, 4},
		{"convnet", 16, 4, graphs.Attack, 6, 4},
		{"convnet", 16, 4, graphs.Eval, 6, 4},
		// the forward kind is the exported model: it stays portable
		{"convnet", 16, 4, graphs.Forward, 0, 0},
		{"preactresnet18", 16, 2, graphs.Train, 18, 10},
	}
	for _, c := range cases {
		t.Run(c.model+"/"+string(c.kind), func(t *testing.T) {
			m, err := zoo.Build(c.model, zoo.Config{Width: c.width, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			blockG := matchGraphs(t, m, graphs.Spec{Kind: c.kind, Batch: c.batch}, ort.Options{Threads: 1},
				graphs.Spec{Kind: c.kind, Batch: c.batch, NCHWcBlock: block}, ort.Options{Threads: 1})
			convs := countOps(blockG, onnx.NCHWcDomain, "Conv")
			if convs < c.fwd+c.dx || (c.fwd+c.dx == 0 && convs > 0) {
				t.Errorf("%d NCHWc Convs, want at least %d (and none if 0)", convs, c.fwd+c.dx)
			}
		})
	}
}

// countOps counts the nodes of op type op in domain dom.
func countOps(m *onnx.Model, dom, op string) int {
	n := 0
	for _, node := range m.Graph().GetNode() {
		if node.GetDomain() == dom && node.GetOpType() == op {
			n++
		}
	}
	return n
}

// matchGraphs derives two graphs of forward m, runs them on the same
// inputs (the model's weights, random images, labels and latent
// perturbations) in sessions with their own options, and checks that every
// output agrees to 1e-4 of its largest value (with a floor of 1e-7, and of
// 1e-6 of the largest value of any output for an output that is zero but for
// rounding). It returns the second graph.
//
// Two correct implementations agree only as far as the inputs let rounding
// differences through, so it first checks that the inputs are well
// conditioned: the first graph, run again on images moved by 1e-6 of their
// value, must stay within that tolerance. The latent perturbations are
// small (0.001) for that reason: at 0.1 the narrow test models' domain
// clips saturated whole planes, a batch norm over two samples then divided
// by their tiny spread, and moving the images by 1e-6 moved
// preactresnet18's grad.layer1.1.conv1.weight by 7.6%; at 0.01,
// wrn-28-10's grad.block1.3.conv2.weight by 6.6e-4 of its scale.
func matchGraphs(t *testing.T, m *onnx.Model, specA graphs.Spec, optsA ort.Options, specB graphs.Spec, optsB ort.Options) *onnx.Model {
	t.Helper()
	ga, err := graphs.Derive(m, specA)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := graphs.Derive(m, specB)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ort.NewSession(ga, optsA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ort.NewSession(gb, optsB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	params, stats, err := graphs.Parameters(m)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string][]float32{}
	for _, p := range append(params, stats...) {
		known[p.Name] = p.Data
	}
	k := int64(10)
	if s := a.Shape("logits"); len(s) == 2 {
		k = s[1]
	}
	r := rand.New(rand.NewSource(2))
	for _, name := range a.Inputs() {
		switch {
		case name == "y":
			for i := range a.Int64(name) {
				a.Int64(name)[i] = r.Int63n(k)
			}
			copy(b.Int64(name), a.Int64(name))
			continue
		case known[name] != nil:
			copy(a.Float(name), known[name])
		case strings.HasPrefix(name, "delta."):
			for i := range a.Float(name) {
				a.Float(name)[i] = 0.001 * float32(r.NormFloat64())
			}
		default:
			for i := range a.Float(name) {
				a.Float(name)[i] = r.Float32()
			}
		}
		copy(b.Float(name), a.Float(name))
	}
	largest := func(v []float32) float64 {
		m := 0.0
		for _, x := range v {
			m = math.Max(m, math.Abs(float64(x)))
		}
		return m
	}
	outs := func(s *ort.Session) map[string][]float32 {
		o := map[string][]float32{}
		for _, name := range s.Outputs() {
			if v := s.Float(name); v != nil {
				o[name] = append([]float32(nil), v...)
			}
		}
		return o
	}
	// the conditioning check: a's outputs on images moved by 1e-6
	x := a.Float(contract.Input)
	saved := append([]float32(nil), x...)
	rn := rand.New(rand.NewSource(3))
	for i := range x {
		x[i] *= 1 + 1e-6*float32(rn.NormFloat64())
	}
	run(t, a)
	moved := outs(a)
	copy(x, saved)
	run(t, a)
	run(t, b)
	oa, ob := outs(a), outs(b)
	top := 0.0 // the largest |value| of any output
	for _, v := range oa {
		top = math.Max(top, largest(v))
	}
	for name, va := range oa {
		scale := largest(va)
		tol := 1e-4 * (scale + 1e-3)
		if scale < 1e-5*top {
			// zero but for rounding (the bias of a Conv before a training-mode
			// BN, whose gradient cancels exactly): noise of sums of terms the
			// size of the graph's values, which each form rounds differently
			tol = math.Max(tol, 1e-6*top)
		}
		if d := maxDiff(va, moved[name]); d > tol {
			t.Fatalf("%s: images moved by 1e-6 of their value move it by %.3g (largest |value| %.3g): the inputs are too ill-conditioned to compare two implementations", name, d, scale)
		}
		if d := maxDiff(va, ob[name]); d > tol {
			t.Errorf("%s: the graphs differ by %.3g (largest |value| %.3g; of any output %.3g)", name, d, scale, top)
		}
	}
	return gb
}

// TestDeriveEval checks that DeriveEval gives one eval graph per head,
// each with its loss head and batch in the metadata.
func TestDeriveEval(t *testing.T) {
	m, err := zoo.Build("mlp", zoo.Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	heads := []string{"ce", "cw", "dlr-t"}
	gs, err := graphs.DeriveEval(m, 3, heads, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != len(heads) {
		t.Fatalf("%d graphs for %d heads", len(gs), len(heads))
	}
	for _, h := range heads {
		info := graphs.ReadInfo(gs[h])
		if info.Kind != graphs.Eval || info.Loss != h || info.Batch != 3 {
			t.Errorf("head %s: graph says kind %s, loss %s, batch %d", h, info.Kind, info.Loss, info.Batch)
		}
	}
	if _, err := graphs.DeriveEval(m, 3, []string{"hinge"}, 0, false); err == nil {
		t.Error("an unknown head derived without error")
	}
}
