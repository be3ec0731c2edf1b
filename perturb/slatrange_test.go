package perturb_test

import (
	"math"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// sign64 is sign(g) with sign(0) = sign(NaN) = 0.
func sign64(g float32) float64 {
	switch {
	case g > 0:
		return 1
	case g < 0:
		return -1
	}
	return 0
}

// TestSLATLatentRange compares SLATLatentRange, fed by TapRanges, with the
// formula in float64: per (sample, channel) r = max h − min h, δ =
// clip(step·r·sign(g), ±radius·r) (radius 0: no clip), on random data with a
// constant channel (hi = lo) and odd group sizes (the two-lane loop starts
// misaligned).
func TestSLATLatentRange(t *testing.T) {
	for _, tc := range []struct {
		name         string
		n, c, hw     int
		step, radius float32
	}{
		{"defaults 1.8/1", 3, 4, 7, 1.8, 1},
		{"step inside radius", 2, 3, 8, 0.05, 0.2},
		{"no clip", 2, 3, 5, 0.3, 0},
		{"2-D tap", 4, 1, 33, 0.1, 0.1},
		{"step 0", 2, 2, 4, 0, 0.5},
	} {
		rng := newRNG(uint64(tc.n*1000 + tc.hw))
		size := tc.n * tc.c * tc.hw
		h, g := fill(rng, size, -3, 5), grads(rng, size)
		// Sample 1, channel 0 is constant: its range is 0.
		if tc.n > 1 {
			k := tc.c * tc.hw
			for i := k; i < k+tc.hw; i++ {
				h[i] = 1.25
			}
		}
		g[0], g[1] = nan, 0
		r := make([]float32, tc.n*tc.c)
		if err := perturb.TapRanges(r, h, tc.n, tc.c, tc.hw); err != nil {
			t.Fatalf("%s: TapRanges: %v", tc.name, err)
		}
		d := fill(rng, size, -9, 9) // ignored on entry
		if err := perturb.SLATLatentRange(d, g, r, tc.step, tc.radius); err != nil {
			t.Fatalf("%s: SLATLatentRange: %v", tc.name, err)
		}
		zeroGroup := 0
		for k := range r {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, v := range h[k*tc.hw : (k+1)*tc.hw] {
				lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
			}
			rw := hi - lo
			if math.Abs(float64(r[k])-rw) > 1e-6*rw {
				t.Fatalf("%s: range of group %d = %v, want %v", tc.name, k, r[k], rw)
			}
			if rw == 0 {
				zeroGroup++
			}
			for i := k * tc.hw; i < (k+1)*tc.hw; i++ {
				want := float64(tc.step) * rw * sign64(g[i])
				if tc.radius > 0 {
					lim := float64(tc.radius) * rw
					want = math.Max(-lim, math.Min(lim, want))
				}
				if got := float64(d[i]); math.Abs(got-want) > 1e-6*math.Abs(want) || (want == 0) != (got == 0) {
					t.Fatalf("%s: δ[%d] = %v, want %v (g = %v, r = %v)", tc.name, i, got, want, g[i], rw)
				}
			}
		}
		if tc.n > 1 && zeroGroup == 0 {
			t.Fatalf("%s: no constant channel in the data", tc.name)
		}
	}
}

// TestSLATLatentRangeLikeAbsolute: with every range 1, the relative rule is
// the absolute one, bit for bit.
func TestSLATLatentRangeLikeAbsolute(t *testing.T) {
	rng := newRNG(5)
	const n = 6 * 25
	g := grads(rng, n)
	ones := make([]float32, 6)
	for i := range ones {
		ones[i] = 1
	}
	for _, sr := range [][2]float32{{1.8 * 0.1, 0.1}, {0.3, 0}, {0.05, 0.2}} {
		got, want := make([]float32, n), make([]float32, n)
		if err := perturb.SLATLatentRange(got, g, ones, sr[0], sr[1]); err != nil {
			t.Fatal(err)
		}
		perturb.SLATLatent(want, g, 1, sr[0], sr[1])
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("step %v radius %v: δ[%d] = %v, SLATLatent gives %v", sr[0], sr[1], i, got[i], want[i])
			}
		}
	}
}

func TestSLATLatentRangeBadRanges(t *testing.T) {
	g := []float32{1, -1, 1, -1, 2, -2}
	r := []float32{float32(math.Inf(1)), nan, -1}
	d := make([]float32, 6)
	for i := range d {
		d[i] = 7
	}
	if err := perturb.SLATLatentRange(d, g, r, 0.5, 1); err != nil {
		t.Fatal(err)
	}
	for i, v := range d {
		if v != 0 {
			t.Errorf("δ[%d] = %v with a non-finite or negative range, want 0", i, v)
		}
	}
	big := []float32{math.MaxFloat32}
	d1, g1 := []float32{1}, []float32{1}
	if err := perturb.SLATLatentRange(d1, g1, big, 4, 0); err != nil || d1[0] != 0 {
		t.Errorf("overflowing budget: δ = %v (%v), want 0", d1[0], err)
	}
}

func TestSLATLatentRangeErrors(t *testing.T) {
	six, five, two := make([]float32, 6), make([]float32, 5), make([]float32, 2)
	four := make([]float32, 4)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"len(g)", perturb.SLATLatentRange(six, five, two, 1, 1)},
		{"groups", perturb.SLATLatentRange(five, five, two, 1, 1)},
		{"no ranges", perturb.SLATLatentRange(six, six, nil, 1, 1)},
		{"negative step", perturb.SLATLatentRange(six, six, two, -1, 1)},
		{"NaN radius", perturb.SLATLatentRange(six, six, two, 1, nan)},
		{"TapRanges shape", perturb.TapRanges(two, six, 1, 2, 2)},
		{"TapRanges hw 0", perturb.TapRanges(four, nil, 2, 2, 0)},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := perturb.SLATLatentRange(nil, nil, nil, 1, 1); err != nil {
		t.Errorf("empty tap: %v", err)
	}
}

// TestSLATInputFrom checks the input step from a uniform start: inside ±ε
// and [0, 1], equal to clip(δ0 + step·sign(g), ±ε) boxed (float64), and with
// a start of radius 0 equal to SLATInput bit for bit.
func TestSLATInputFrom(t *testing.T) {
	for _, tc := range []struct {
		name           string
		eps, stepFrac  float32
		start          float32 // radius of the start, as a multiple of eps
		seed           uint64
		wantEqualsZero bool
	}{
		{"uniform 0.1", 0.1, 0.9, 1, 1, false},
		{"uniform 0.3", 0.3, 0.9, 1, 2, false},
		{"uniform 8/255 step 1.25", 8.0 / 255, 1.25, 1, 3, false},
		{"start 0", 0.2, 0.9, 0, 4, true},
		{"start 0 step 0.5", 0.05, 0.5, 0, 5, true},
	} {
		rng := newRNG(tc.seed)
		const n = 4 * 28 * 28
		x, g := images(rng, n), grads(rng, n)
		g[0], g[1] = nan, 0
		d := make([]float32, n)
		perturb.RandomStart(rng, d, x, tc.start*tc.eps)
		d0 := append([]float32(nil), d...)
		perturb.SLATInputFrom(d, g, x, tc.eps, tc.stepFrac)
		for i := range d {
			if !(d[i] >= -tc.eps && d[i] <= tc.eps) || !(x[i]+d[i] >= 0 && x[i]+d[i] <= 1) {
				t.Fatalf("%s: δ[%d] = %v at x = %v: outside ±%v or [0, 1]", tc.name, i, d[i], x[i], tc.eps)
			}
			e := float64(tc.eps)
			want := float64(d0[i]) + float64(tc.stepFrac*tc.eps)*sign64(g[i])
			want = math.Max(math.Max(-e, -float64(x[i])), math.Min(want, math.Min(e, 1-float64(x[i]))))
			if math.Abs(float64(d[i])-want) > 1e-6 {
				t.Fatalf("%s: δ[%d] = %v, want %v (δ0 = %v, g = %v, x = %v)", tc.name, i, d[i], want, d0[i], g[i], x[i])
			}
		}
		ref := make([]float32, n)
		perturb.SLATInput(ref, g, x, tc.eps, tc.stepFrac)
		same := true
		for i := range d {
			same = same && math.Float32bits(d[i]) == math.Float32bits(ref[i])
		}
		if same != tc.wantEqualsZero {
			t.Errorf("%s: equal to SLATInput bit for bit: %v, want %v", tc.name, same, tc.wantEqualsZero)
		}
	}
}

func TestSLATRangeAllocs(t *testing.T) {
	rng := newRNG(12)
	const n, c, hw = 4, 3, 49
	h, g, d := fill(rng, n*c*hw, -1, 3), grads(rng, n*c*hw), make([]float32, n*c*hw)
	x := images(rng, n*c*hw)
	r := make([]float32, n*c)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"TapRanges", func() { _ = perturb.TapRanges(r, h, n, c, hw) }},
		{"SLATLatentRange", func() { _ = perturb.SLATLatentRange(d, g, r, 1.8*0.1, 0.1) }},
		{"SLATInputFrom", func() { perturb.SLATInputFrom(d, g, x, 0.1, 0.9) }},
	} {
		if a := testing.AllocsPerRun(20, tc.f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, a)
		}
	}
}

func BenchmarkSLATLatentRange(b *testing.B) {
	benchSizes(b, true, func(b *testing.B, n, c, hw int) {
		rng := newRNG(1)
		d, g, h := make([]float32, n*c*hw), grads(rng, n*c*hw), fill(rng, n*c*hw, 0, 4)
		r := make([]float32, n*c)
		if err := perturb.TapRanges(r, h, n, c, hw); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			_ = perturb.SLATLatentRange(d, g, r, 1.8*0.1, 0.1)
		}
	})
}
