package perturb_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

var (
	inf = float32(math.Inf(1))
	nan = float32(math.NaN())
)

// near reports whether got and want agree within tol, element-wise.
func near(got, want []float32, tol float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !(math.Abs(float64(got[i]-want[i])) <= float64(tol)) {
			return false
		}
	}
	return true
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// fill returns n values uniform in [lo, hi).
func fill(rng *rand.Rand, n int, lo, hi float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = lo + (hi-lo)*rng.Float32()
	}
	return v
}

// images returns n pixels in [0,1], with a share of exact 0s and 1s, where the
// box binds.
func images(rng *rand.Rand, n int) []float32 {
	v := fill(rng, n, 0, 1)
	for i := range v {
		switch rng.IntN(8) {
		case 0:
			v[i] = 0
		case 1:
			v[i] = 1
		}
	}
	return v
}

// grads returns n gradient values of mixed scale, with a share of exact zeros.
func grads(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		if rng.IntN(10) == 0 {
			continue
		}
		v[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-8)))
	}
	return v
}

// checkLinf fails unless |δ| ≤ r and 0 ≤ x+δ ≤ 1 hold exactly in float32.
func checkLinf(t *testing.T, delta, x []float32, r float32) {
	t.Helper()
	for i, d := range delta {
		if !(d >= -r && d <= r) {
			t.Fatalf("δ[%d] = %v outside ±%v", i, d, r)
		}
		if s := x[i] + d; !(s >= 0 && s <= 1) {
			t.Fatalf("x[%d]+δ[%d] = %v+%v = %v outside [0,1]", i, i, x[i], d, s)
		}
	}
}

func TestSign(t *testing.T) {
	g := []float32{0, float32(math.Copysign(0, -1)), 1, -2.5, 1e-45, -1e-45, 3e38, inf, -inf, nan}
	want := []float32{0, 0, 1, -1, 1, -1, 1, 1, -1, 0}
	got := make([]float32, len(g))
	perturb.Sign(got, g)
	for i := range g {
		if got[i] != want[i] || math.Signbit(float64(got[i])) != math.Signbit(float64(want[i])) {
			t.Errorf("sign(%v) = %v, want %v", g[i], got[i], want[i])
		}
	}
}

func TestSignStep(t *testing.T) {
	g := []float32{0, 3, -0.001, nan}
	for _, tc := range []struct {
		step float32
		want []float32
	}{
		{0.5, []float32{0, 0.5, -0.5, 0}},
		{-2, []float32{0, -2, 2, 0}},
		{0, []float32{0, 0, 0, 0}},
	} {
		dst := append([]float32(nil), g...) // in place: dst may be g
		perturb.SignStep(dst, dst, tc.step)
		if !near(dst, tc.want, 0) {
			t.Errorf("SignStep(%v, %v) = %v, want %v", g, tc.step, dst, tc.want)
		}
	}
}

func TestClipRadius(t *testing.T) {
	for _, tc := range []struct {
		d    []float32
		r    float32
		want []float32
	}{
		{[]float32{-1, -0.1, 0, 0.05, 0.2, inf}, 0.1, []float32{-0.1, -0.1, 0, 0.05, 0.1, 0.1}},
		{[]float32{-1, 1}, 0, []float32{0, 0}},
		{[]float32{}, 1, []float32{}},
	} {
		d := append([]float32(nil), tc.d...)
		perturb.ClipRadius(d, tc.r)
		if !near(d, tc.want, 0) {
			t.Errorf("ClipRadius(%v, %v) = %v, want %v", tc.d, tc.r, d, tc.want)
		}
	}
}

func TestBox(t *testing.T) {
	for _, tc := range []struct {
		x, d   []float32
		lo, hi float32
		want   []float32
	}{
		{[]float32{0, 0, 0.5, 1, 1, 0.25}, []float32{-0.5, 0.3, 0.7, 0.2, -0.4, -1}, 0, 1, []float32{0, 0.3, 0.5, 0, -0.4, -0.25}},
		{[]float32{-1, 2, 0}, []float32{-1, 1, 5}, -1, 2, []float32{0, 0, 2}},
	} {
		d := append([]float32(nil), tc.d...)
		perturb.Box(tc.x, d, tc.lo, tc.hi)
		if !near(d, tc.want, 0) {
			t.Errorf("Box(%v, %v, %v, %v) = %v, want %v", tc.x, tc.d, tc.lo, tc.hi, d, tc.want)
		}
	}

	// Arbitrary bounds: x+δ must land in [lo, hi] exactly, although hi−x
	// rounds; and the result must be the clamp up to that rounding.
	rng := newRNG(1)
	for trial := range 200 {
		lo := float32(rng.NormFloat64() * 100)
		hi := lo + float32(rng.ExpFloat64()*math.Pow(10, float64(rng.IntN(6)-2)))
		x := fill(rng, 1000, lo, hi)
		x[0], x[1] = lo, hi
		d := fill(rng, len(x), -3*(hi-lo), 3*(hi-lo))
		orig := append([]float32(nil), d...)
		perturb.Box(x, d, lo, hi)
		for i := range d {
			if s := x[i] + d[i]; !(s >= lo && s <= hi) {
				t.Fatalf("trial %d: x+δ = %v+%v = %v outside [%v, %v]", trial, x[i], d[i], s, lo, hi)
			}
			want := math.Min(math.Max(float64(x[i])+float64(orig[i]), float64(lo)), float64(hi)) - float64(x[i])
			if math.Abs(float64(d[i])-want) > 1e-6*(math.Abs(float64(x[i]))+math.Abs(float64(lo))+math.Abs(float64(hi))) {
				t.Fatalf("trial %d: Box(%v, %v) = %v, want %v", trial, x[i], orig[i], d[i], want)
			}
		}
	}
}

func TestAdd(t *testing.T) {
	a := []float32{1, 2, -3}
	b := []float32{0.5, -2, 1}
	dst := make([]float32, 3)
	perturb.Add(dst, a, b)
	if want := []float32{1.5, 0, -2}; !near(dst, want, 0) {
		t.Errorf("Add = %v, want %v", dst, want)
	}
	perturb.Add(a, a, a) // aliasing
	if want := []float32{2, 4, -6}; !near(a, want, 0) {
		t.Errorf("Add(a, a, a) = %v, want %v", a, want)
	}
}

func TestUniform(t *testing.T) {
	const n, r = 100001, 0.25 // odd length: the last draw is handled apart
	d := make([]float32, n)
	perturb.Uniform(newRNG(7), d, r)
	var sum, sq float64
	neg := 0
	for i, v := range d {
		if !(v >= -r && v <= r) {
			t.Fatalf("d[%d] = %v outside ±%v", i, v, r)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
		if v < 0 {
			neg++
		}
	}
	if mean := sum / n; math.Abs(mean) > 0.005 {
		t.Errorf("mean %v, want ≈ 0", mean)
	}
	if v, want := sq/n, r*r/3.0; math.Abs(v-want) > 0.02*want {
		t.Errorf("variance %v, want ≈ %v", v, want)
	}
	if frac := float64(neg) / n; math.Abs(frac-0.5) > 0.01 {
		t.Errorf("fraction negative %v, want ≈ 0.5", frac)
	}
	// Both halves of each 64-bit draw are used and independent: even and odd
	// positions are uncorrelated.
	var c float64
	for i := 0; i+1 < n; i += 2 {
		c += float64(d[i]) * float64(d[i+1])
	}
	if corr := c / (n / 2) / (r * r / 3); math.Abs(corr) > 0.02 {
		t.Errorf("correlation of neighbours %v, want ≈ 0", corr)
	}

	e := make([]float32, n)
	perturb.Uniform(newRNG(7), e, r)
	if !near(d, e, 0) {
		t.Error("same seed, different draws")
	}
	perturb.Uniform(newRNG(8), e, r)
	if near(d, e, 0) {
		t.Error("different seeds, same draws")
	}
	perturb.Uniform(newRNG(7), e, 0)
	if !near(e, make([]float32, n), 0) {
		t.Error("r = 0 gave nonzero draws")
	}
}

func TestNormal(t *testing.T) {
	const n, sigma = 100000, 0.001
	d := make([]float32, n)
	perturb.Normal(newRNG(3), d, sigma)
	var sum, sq float64
	for _, v := range d {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	if mean := sum / n; math.Abs(mean) > 0.02*sigma {
		t.Errorf("mean %v, want ≈ 0", mean)
	}
	if v, want := sq/n, sigma*sigma; math.Abs(v-want) > 0.02*want {
		t.Errorf("variance %v, want ≈ %v", v, want)
	}
	// One NormFloat64 per element, scaled: the draws are the rng's.
	rng := newRNG(3)
	for i := range 10 {
		if want := float32(rng.NormFloat64() * float64(float32(sigma))); d[i] != want {
			t.Fatalf("d[%d] = %v, want %v", i, d[i], want)
		}
	}
	perturb.Normal(newRNG(3), d, 0)
	if !near(d, make([]float32, n), 0) {
		t.Error("sigma = 0 gave nonzero draws")
	}
}

func TestRandomStart(t *testing.T) {
	rng := newRNG(2)
	x := images(rng, 10000)
	d := make([]float32, len(x))
	perturb.RandomStart(rng, d, x, 0.1)
	checkLinf(t, d, x, 0.1)
	pos, neg := 0, 0
	for i := range d {
		if x[i] == 0 && d[i] < 0 || x[i] == 1 && d[i] > 0 {
			t.Fatalf("x = %v, δ = %v", x[i], d[i])
		}
		if d[i] > 0.05 {
			pos++
		}
		if d[i] < -0.05 {
			neg++
		}
	}
	if pos < 1000 || neg < 1000 {
		t.Errorf("start not spread over ±r: %d above r/2, %d below -r/2", pos, neg)
	}
}

func TestLinfStep(t *testing.T) {
	// Known values: clip to ±eps, then the box; a zero gradient does not move.
	x := []float32{0.5, 0.5, 0.5, 0.5, 0, 1, 0.97, 0.02}
	delta := []float32{0, 0.09, -0.09, 0.05, 0, 0, 0.01, 0}
	grad := []float32{1, 1, -2, 0, -1, 1, 5, -0.3}
	perturb.LinfStep(delta, grad, x, 0.02, 0.1)
	want := []float32{0.02, 0.1, -0.1, 0.05, 0, 0, 0.03, -0.02}
	if !near(delta, want, 1e-7) {
		t.Errorf("LinfStep = %v, want %v", delta, want)
	}

	// Steps accumulate and saturate at eps, not at k·step.
	d := []float32{0}
	for range 10 {
		perturb.LinfStep(d, []float32{1}, []float32{0.5}, 0.03, 0.1)
	}
	if d[0] != 0.1 {
		t.Errorf("10 steps of 0.03 within eps 0.1: δ = %v, want 0.1", d[0])
	}

	// Invariants over many random steps (PGD, Free-m).
	rng := newRNG(3)
	const n = 5000
	x = images(rng, n)
	delta = make([]float32, n)
	perturb.RandomStart(rng, delta, x, 8.0/255)
	for range 20 {
		perturb.LinfStep(delta, grads(rng, n), x, 2.0/255, 8.0/255)
		checkLinf(t, delta, x, 8.0/255)
	}
}

func TestProjectLinf(t *testing.T) {
	x := []float32{0.5, 0.5, 0.05, 0.98}
	d := []float32{0.3, -0.3, -0.07, 0.05}
	perturb.ProjectLinf(d, x, 0.1)
	if want := []float32{0.1, -0.1, -0.05, 0.02}; !near(d, want, 1e-7) {
		t.Errorf("ProjectLinf = %v, want %v", d, want)
	}
}

func TestFGSM(t *testing.T) {
	x := []float32{0.5, 0.5, 0.5, 0.95, 0}
	d := []float32{9, 9, 9, 9, 9} // ignored
	perturb.FGSM(d, []float32{2, -1e-9, 0, 1, -1}, x, 0.1)
	if want := []float32{0.1, -0.1, 0, 0.05, 0}; !near(d, want, 1e-7) {
		t.Errorf("FGSM = %v, want %v", d, want)
	}
}

func TestFGSMRS(t *testing.T) {
	x := []float32{0.5, 0.5, 0.5, 0.98, 0.5}
	d0 := []float32{0.05, -0.05, 0.02, 0.01, 0.03}
	g := []float32{1, 1, -1, 1, 0}
	d := append([]float32(nil), d0...)
	perturb.FGSMRS(d, g, x, 0.1, 0.125)
	if want := []float32{0.1, 0.075, -0.1, 0.02, 0.03}; !near(d, want, 1e-7) {
		t.Errorf("FGSMRS(%v) = %v, want %v", d0, d, want)
	}

	rng := newRNG(4)
	const n, eps = 5000, 8.0 / 255
	x = images(rng, n)
	d = make([]float32, n)
	perturb.RandomStart(rng, d, x, eps)
	perturb.FGSMRS(d, grads(rng, n), x, eps, perturb.DefaultFGSMRSAlpha*eps)
	checkLinf(t, d, x, eps)
}

func TestNFGSM(t *testing.T) {
	// No ±eps clip: δ0 + alpha·sign(g) may reach 3ε; only the box applies.
	x := []float32{0.5, 0.5, 0.9, 0.1}
	d := []float32{0.15, -0.2, 0.15, 0.05}
	perturb.NFGSM(d, []float32{1, -1, 1, -1}, x, 0.1)
	if want := []float32{0.25, -0.3, 0.1, -0.05}; !near(d, want, 1e-7) {
		t.Errorf("NFGSM = %v, want %v", d, want)
	}

	rng := newRNG(5)
	const n, eps = 5000, 8.0 / 255
	x = images(rng, n)
	d = make([]float32, n)
	perturb.Uniform(rng, d, perturb.DefaultNFGSMStart*eps)
	perturb.NFGSM(d, grads(rng, n), x, eps)
	checkLinf(t, d, x, (perturb.DefaultNFGSMStart+1)*eps)
}

func l2(v []float32) float64 {
	var s float64
	for _, e := range v {
		s += float64(e) * float64(e)
	}
	return math.Sqrt(s)
}

func TestL2Step(t *testing.T) {
	for _, tc := range []struct {
		name           string
		delta, grad, x []float32
		step, eps      float32
		want           []float32
		perSample      int
	}{
		{"normalized step", []float32{0, 0}, []float32{3, 4}, []float32{0.5, 0.5}, 0.5, 1, []float32{0.3, 0.4}, 2},
		{"projected onto ball", []float32{0, 0}, []float32{30, 40}, []float32{0, 0}, 10, 1, []float32{0.6, 0.8}, 2},
		{"boxed after projection", []float32{0, 0}, []float32{3, -4}, []float32{0.9, 0.5}, 0.5, 1, []float32{0.1, -0.4}, 2},
		{"zero gradient: no move", []float32{0.1, 0.2}, []float32{0, 0}, []float32{0.5, 0.5}, 0.5, 1, []float32{0.1, 0.2}, 2},
		{"per sample", []float32{0, 0, 0, 0}, []float32{1, 0, 0, -1e-20}, []float32{0.5, 0.5, 0.5, 0.5}, 0.2, 1, []float32{0.2, 0, 0, -0.2}, 2},
	} {
		d := append([]float32(nil), tc.delta...)
		perturb.L2Step(d, tc.grad, tc.x, tc.step, tc.eps, tc.perSample)
		if !near(d, tc.want, 1e-7) {
			t.Errorf("%s: L2Step = %v, want %v", tc.name, d, tc.want)
		}
	}

	rng := newRNG(6)
	const n, per, eps = 16, 3 * 8 * 8, 0.5
	x := images(rng, n*per)
	delta := make([]float32, n*per)
	for range 10 {
		perturb.L2Step(delta, grads(rng, n*per), x, 0.2, eps, per)
		for s := 0; s < n; s++ {
			if nn := l2(delta[s*per : (s+1)*per]); nn > eps*(1+1e-6) {
				t.Fatalf("sample %d: ‖δ‖₂ = %v > eps = %v", s, nn, eps)
			}
		}
		checkLinf(t, delta, x, inf)
	}
}

func TestProjectL2(t *testing.T) {
	d := []float32{3, 4, 0.1, 0.1}
	perturb.ProjectL2(d, []float32{0, 0, 0.5, 0.5}, 1, 2)
	if want := []float32{0.6, 0.8, 0.1, 0.1}; !near(d, want, 1e-7) {
		t.Errorf("ProjectL2 = %v, want %v", d, want)
	}
}

func TestKeepBest(t *testing.T) {
	best := []float32{1, 1, 2, 2, 3, 3}
	bestLoss := []float32{float32(math.Inf(-1)), 0.5, 0.7}
	cand := []float32{-1, -1, -2, -2, -3, -3}
	candLoss := []float32{0.1, 0.4, 0.7}
	perturb.KeepBest(best, cand, bestLoss, candLoss, 2)
	if want := []float32{-1, -1, 2, 2, 3, 3}; !near(best, want, 0) {
		t.Errorf("best = %v, want %v", best, want)
	}
	if want := []float32{0.1, 0.5, 0.7}; !near(bestLoss, want, 0) {
		t.Errorf("bestLoss = %v, want %v", bestLoss, want)
	}
}

func TestSLATInput(t *testing.T) {
	x := []float32{0.5, 0.5, 0.5, 0.95, 0, 1}
	g := []float32{1, -1, 0, 2, -3, 1e-30}
	for _, tc := range []struct {
		frac float32
		want []float32
	}{
		{perturb.DefaultInputStepFrac, []float32{0.09, -0.09, 0, 0.05, 0, 0}},
		{1.5, []float32{0.1, -0.1, 0, 0.05, 0, 0}}, // clipped to ±ε
		{0.2, []float32{0.02, -0.02, 0, 0.02, 0, 0}},
	} {
		d := []float32{7, 7, 7, 7, 7, 7} // no random start: ignored
		perturb.SLATInput(d, g, x, 0.1, tc.frac)
		if !near(d, tc.want, 1e-7) {
			t.Errorf("stepFrac %v: SLATInput = %v, want %v", tc.frac, d, tc.want)
		}
	}

	rng := newRNG(9)
	const n, eps = 5000, 8.0 / 255
	xs := images(rng, n)
	d := make([]float32, n)
	perturb.SLATInput(d, grads(rng, n), xs, eps, perturb.DefaultInputStepFrac)
	checkLinf(t, d, xs, eps)
}

func TestSLATLatent(t *testing.T) {
	g := []float32{2, -0.5, 0, 1e-12}
	const eta = 0.1
	for _, tc := range []struct {
		name              string
		eta, step, radius float32
		want              []float32
	}{
		{"default rule: 1.8η clipped to η", eta, 1.8 * eta, eta, []float32{0.1, -0.1, 0, 0.1}},
		{"radius 0: no clip", eta, 1.8 * eta, 0, []float32{0.18, -0.18, 0, 0.18}},
		{"step below radius", eta, 0.05, eta, []float32{0.05, -0.05, 0, 0.05}},
		{"negative step and radius: defaults from η", eta, -1, -1, []float32{0.1, -0.1, 0, 0.1}},
		{"negative step, no clip", eta, -1, 0, []float32{0.18, -0.18, 0, 0.18}},
		{"eta unused when step and radius given", 123, 0.3, 0.2, []float32{0.2, -0.2, 0, 0.2}},
	} {
		d := []float32{5, 5, 5, 5}
		perturb.SLATLatent(d, g, tc.eta, tc.step, tc.radius)
		if !near(d, tc.want, 1e-7) {
			t.Errorf("%s: SLATLatent = %v, want %v", tc.name, d, tc.want)
		}
	}
}

// TestSLATLatentLanes checks the two-lane loop of SLATLatent against
// SignStep, element by element, on every special value in every lane and
// on odd lengths (the scalar tail).
func TestSLATLatentLanes(t *testing.T) {
	sub := math.Float32frombits(1) // smallest subnormal
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, sub, -sub, inf, -inf, nan,
		math.Float32frombits(0xffc00001), 3e38, -3e38, 1e-30, -2.5}
	var g []float32
	for _, a := range vals {
		for _, b := range vals {
			g = append(g, a, b)
		}
	}
	for _, n := range []int{len(g), len(g) - 1, 33, 32, 31, 1, 0, -3} { // -3: g[1:], not 8-byte aligned
		g := g
		if n < 0 {
			g, n = g[1:], len(g)-1
		}
		for _, step := range []float32{0.1, 0, 1.8} {
			got := make([]float32, n)
			want := make([]float32, n)
			perturb.SLATLatent(got, g[:n], 1, step, 0)
			perturb.SignStep(want, g[:n], step)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d step=%v: SLATLatent(%v) = %v, SignStep gives %v", n, step, g[i], got[i], want[i])
				}
			}
		}
	}
}

// TestSLATInputLanes checks SLATInput element by element, bit for bit,
// against the rule written out here with Go's min and max, on every pair of
// special gradient and pixel values (pixels outside [0, 1] and NaN
// included), at lengths and offsets that cover the 16-wide vector loop,
// its tail and unaligned slices, for positive budgets and for the zero
// ones the vector loop leaves to Go.
func TestSLATInputLanes(t *testing.T) {
	sub := math.Float32frombits(1) // smallest subnormal
	negZero := float32(math.Copysign(0, -1))
	gs := []float32{0, negZero, 1, -1, sub, -sub, inf, -inf, nan, 3e38, -1e-30}
	xs := []float32{0, negZero, 1, 0.5, 0.99, 0.01, sub, 1.5, -0.25, inf, -inf, nan}
	var g, x []float32
	for _, a := range gs {
		for _, b := range xs {
			g, x = append(g, a), append(x, b)
		}
	}
	rule := func(x, g, eps, step float32) float32 {
		s := float32(0)
		switch {
		case g > 0:
			s = step
		case g < 0:
			s = -step
		}
		return min(max(s, max(-eps, 0-x)), min(eps, 1-x))
	}
	same := func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
	}
	for _, off := range []int{0, 1, 3} {
		for _, n := range []int{len(g) - off, 47, 16, 15, 0} {
			for _, tc := range []struct{ eps, frac float32 }{{8.0 / 255, 0.9}, {0.1, 1.5}, {inf, 0.5}, {0, 0.9}, {0.1, 0}} {
				gv, xv := g[off:off+n], x[off:off+n]
				d := make([]float32, n)
				perturb.SLATInput(d, gv, xv, tc.eps, tc.frac)
				for i := range d {
					if want := rule(xv[i], gv[i], tc.eps, tc.frac*tc.eps); !same(d[i], want) {
						t.Fatalf("offset %d, n %d, ε %v, stepFrac %v: g = %v, x = %v: δ = %v (%#x), want %v (%#x)",
							off, n, tc.eps, tc.frac, gv[i], xv[i], d[i], math.Float32bits(d[i]), want, math.Float32bits(want))
					}
				}
			}
		}
	}
}

func TestDomainClip(t *testing.T) {
	// n=1, c=2, hw=3. Channel 0 spans [0, 2], channel 1 spans [-1, 5].
	h := []float32{0, 1, 2, -1, -1, 5}
	d := []float32{5, -5, 0.5, 3, -3, 1}
	perturb.DomainClip(d, h, 1, 2, 3)
	if want := []float32{2, -1, 0, 3, 0, 0}; !near(d, want, 0) {
		t.Errorf("DomainClip = %v, want %v", d, want)
	}

	// Each sample has its own range: n=2, c=1, hw=2.
	h = []float32{0, 1, 10, 20}
	d = []float32{5, -5, 5, -5}
	perturb.DomainClip(d, h, 2, 1, 2)
	if want := []float32{1, -1, 5, -5}; !near(d, want, 0) {
		t.Errorf("DomainClip per sample = %v, want %v", d, want)
	}

	// Invariant on activation-like data: h+δ within its channel's [min, max],
	// exactly in float32, and δ unchanged where it already was.
	// Channels of very different scales, so that lo−h and hi−h round.
	rng := newRNG(10)
	const n, c, hw = 8, 16, 6 * 6
	h = make([]float32, n*c*hw)
	d = make([]float32, len(h))
	for s := 0; s < n*c; s++ {
		scale := math.Pow(10, float64(rng.IntN(7)-3))
		shift := rng.NormFloat64() * scale * 10
		for i := s * hw; i < (s+1)*hw; i++ {
			h[i] = float32(rng.NormFloat64()*scale + shift)
			if rng.IntN(4) == 0 {
				h[i] = float32(shift) // ties at one value
			}
			d[i] = float32(rng.NormFloat64() * scale * 3)
		}
	}
	orig := append([]float32(nil), d...)
	perturb.DomainClip(d, h, n, c, hw)
	for s := 0; s < n*c; s++ {
		hs, ds, os := h[s*hw:(s+1)*hw], d[s*hw:(s+1)*hw], orig[s*hw:(s+1)*hw]
		lo, hi := hs[0], hs[0]
		for _, v := range hs {
			lo, hi = min(lo, v), max(hi, v)
		}
		for i := range hs {
			if v := hs[i] + ds[i]; !(v >= lo && v <= hi) {
				t.Fatalf("sample·channel %d: h+δ = %v outside [%v, %v]", s, v, lo, hi)
			}
			if v := hs[i] + os[i]; v > lo && v < hi && ds[i] != os[i] {
				t.Fatalf("sample·channel %d: δ = %v inside the range changed to %v", s, os[i], ds[i])
			}
		}
	}
}

func TestMeanAbsSum(t *testing.T) {
	if got := perturb.MeanAbsSum([]float32{1, -2, 3, -4}, 2); got != 5 {
		t.Errorf("MeanAbsSum = %v, want 5", got)
	}
	if got := perturb.MeanAbsSum(nil, 4); got != 0 {
		t.Errorf("MeanAbsSum(nil) = %v, want 0", got)
	}
	// float64 accumulation: in float32, 1e8 + 1 == 1e8.
	g := make([]float32, 1001)
	g[0] = 1e8
	for i := 1; i < len(g); i++ {
		g[i] = -1
	}
	if got := perturb.MeanAbsSum(g, 1); got != 1e8+1000 {
		t.Errorf("MeanAbsSum = %v, want %v", got, 1e8+1000)
	}
}

func TestMeanCosine(t *testing.T) {
	for _, tc := range []struct {
		a, b []float32
		n    int
		want float64
	}{
		{[]float32{1, 0, 1, 1}, []float32{2, 0, -1, -1}, 2, 0},
		{[]float32{1, 0}, []float32{1, 1}, 1, 1 / math.Sqrt2},
		{[]float32{0, 0, 1, 2}, []float32{1, 1, 2, 4}, 2, 0.5}, // a zero sample counts 0
	} {
		if got := perturb.MeanCosine(tc.a, tc.b, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("MeanCosine(%v, %v, %d) = %v, want %v", tc.a, tc.b, tc.n, got, tc.want)
		}
	}
}

func TestPanics(t *testing.T) {
	three, two := make([]float32, 3), make([]float32, 2)
	for _, tc := range []struct {
		name, msg string
		f         func()
	}{
		{"LinfStep grad", "len(grad) = 2, want 3", func() { perturb.LinfStep(three, two, three, 0.1, 0.1) }},
		{"LinfStep eps", "eps = -0.1", func() { perturb.LinfStep(three, three, three, 0.1, -0.1) }},
		{"ClipRadius NaN", "r = NaN", func() { perturb.ClipRadius(three, nan) }},
		{"Box bounds", "lo = 1 > hi = 0", func() { perturb.Box(three, three, 1, 0) }},
		{"Add", "len(b) = 2", func() { perturb.Add(three, three, two) }},
		{"L2Step samples", "not a whole number of samples of 2", func() { perturb.L2Step(three, three, three, 1, 1, 2) }},
		{"L2Step zero perSample", "samples of 0", func() { perturb.L2Step(three, three, three, 1, 1, 0) }},
		{"DomainClip shape", "want n·c·hw = 1·2·2", func() { perturb.DomainClip(three, three, 1, 2, 2) }},
		{"MeanAbsSum n", "samples of 0", func() { perturb.MeanAbsSum(three, 0) }},
		{"KeepBest losses", "len(candLoss) = 2, want 3", func() { perturb.KeepBest(three, three, three, two, 1) }},
		{"SLATLatent default eta", "eta = -1", func() { perturb.SLATLatent(three, three, -1, -1, 0) }},
	} {
		func() {
			defer func() {
				r := recover()
				if s := fmt.Sprint(r); r == nil || !strings.Contains(s, tc.msg) || !strings.HasPrefix(s, "perturb: ") {
					t.Errorf("%s: panic %v, want one containing %q", tc.name, r, tc.msg)
				}
			}()
			tc.f()
		}()
	}
}

func TestAllocs(t *testing.T) {
	rng := newRNG(11)
	const n, per = 4 * 3 * 8 * 8, 3 * 8 * 8
	x, g, d, h := images(rng, n), grads(rng, n), make([]float32, n), fill(rng, n, -2, 2)
	best, loss, cl := make([]float32, n), make([]float32, n/per), make([]float32, n/per)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Sign", func() { perturb.Sign(d, g) }},
		{"SignStep", func() { perturb.SignStep(d, g, 0.1) }},
		{"ClipRadius", func() { perturb.ClipRadius(d, 0.1) }},
		{"Box", func() { perturb.Box(x, d, 0, 1) }},
		{"Add", func() { perturb.Add(d, d, g) }},
		{"Uniform", func() { perturb.Uniform(rng, d, 0.1) }},
		{"RandomStart", func() { perturb.RandomStart(rng, d, x, 0.1) }},
		{"LinfStep", func() { perturb.LinfStep(d, g, x, 0.01, 0.03) }},
		{"ProjectLinf", func() { perturb.ProjectLinf(d, x, 0.03) }},
		{"FGSM", func() { perturb.FGSM(d, g, x, 0.03) }},
		{"FGSMRS", func() { perturb.FGSMRS(d, g, x, 0.03, 0.04) }},
		{"NFGSM", func() { perturb.NFGSM(d, g, x, 0.03) }},
		{"L2Step", func() { perturb.L2Step(d, g, x, 0.1, 0.5, per) }},
		{"ProjectL2", func() { perturb.ProjectL2(d, x, 0.5, per) }},
		{"KeepBest", func() { perturb.KeepBest(best, d, loss, cl, per) }},
		{"SLATInput", func() { perturb.SLATInput(d, g, x, 0.03, 0.9) }},
		{"SLATLatent", func() { perturb.SLATLatent(d, g, 0.03, -1, -1) }},
		{"DomainClip", func() { perturb.DomainClip(d, h, 4, 3, 64) }},
		{"MeanAbsSum", func() { _ = perturb.MeanAbsSum(g, 4) }},
		{"MeanCosine", func() { _ = perturb.MeanCosine(g, d, 4) }},
	} {
		if a := testing.AllocsPerRun(20, tc.f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, a)
		}
	}
}

// Benchmark sizes: a Fashion-MNIST and a CIFAR-10 batch of 128, and for the
// latent rules a PreActResNet-18 stem output (128×64×32×32).
var sizes = []struct {
	name       string
	n, c, h, w int
}{
	{"128x1x28x28", 128, 1, 28, 28},
	{"128x3x32x32", 128, 3, 32, 32},
}

var tapSize = struct {
	name       string
	n, c, h, w int
}{"128x64x32x32", 128, 64, 32, 32}

func benchSizes(b *testing.B, latent bool, f func(b *testing.B, n, c, hw int)) {
	all := sizes
	if latent {
		all = append(all[:len(all):len(all)], tapSize)
	}
	for _, s := range all {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * s.n * s.c * s.h * s.w))
			f(b, s.n, s.c, s.h*s.w)
		})
	}
}

func BenchmarkLinfStep(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, g, d := images(rng, n*c*hw), grads(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.LinfStep(d, g, x, 2.0/255, 8.0/255)
		}
	})
}

func BenchmarkSLATInput(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, g, d := images(rng, n*c*hw), grads(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.SLATInput(d, g, x, 8.0/255, perturb.DefaultInputStepFrac)
		}
	})
}

func BenchmarkFGSMRS(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, g, d := images(rng, n*c*hw), grads(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.FGSMRS(d, g, x, 8.0/255, 10.0/255)
		}
	})
}

func BenchmarkRandomStart(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, d := images(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.RandomStart(rng, d, x, 8.0/255)
		}
	})
}

func BenchmarkL2Step(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, g, d := images(rng, n*c*hw), grads(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.L2Step(d, g, x, 0.1, 0.5, c*hw)
		}
	})
}

func BenchmarkBox(b *testing.B) {
	benchSizes(b, false, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		x, d := images(rng, n*c*hw), fill(rng, n*c*hw, -0.05, 0.05)
		for b.Loop() {
			perturb.Box(x, d, 0, 1)
		}
	})
}

func BenchmarkSLATLatent(b *testing.B) {
	benchSizes(b, true, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		g, d := grads(rng, n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			perturb.SLATLatent(d, g, 8.0/255, 1.8*8.0/255, 8.0/255)
		}
	})
}

func BenchmarkDomainClip(b *testing.B) {
	benchSizes(b, true, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		h, d := fill(rng, n*c*hw, -2, 2), fill(rng, n*c*hw, -0.05, 0.05)
		for b.Loop() {
			perturb.DomainClip(d, h, n, c, hw)
		}
	})
}

func BenchmarkMeanAbsSum(b *testing.B) {
	benchSizes(b, true, func(b *testing.B, n, c, hw int) {
		g := grads(newRNG(1), n*c*hw)
		for b.Loop() {
			_ = perturb.MeanAbsSum(g, n)
		}
	})
}
