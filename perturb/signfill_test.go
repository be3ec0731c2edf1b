package perturb_test

import (
	"math"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// TestSignFillAbsSum: the fused pass writes SLATLatent's δ and returns
// MeanAbsSum's sum (times n) bit for bit, on aligned and misaligned slices,
// every length mod 4, and the special values of TestSLATLatentLanes.
func TestSignFillAbsSum(t *testing.T) {
	sub := math.Float32frombits(1)
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, sub, -sub, inf, -inf, 3e38, -3e38, 1e-30, -2.5}
	var g []float32
	for _, a := range vals {
		for _, b := range vals {
			g = append(g, a, b, 0.37*a-b)
		}
	}
	rng := newRNG(3)
	g = append(g, grads(rng, 1001)...)
	for _, c := range []struct {
		name   string
		off, n int
	}{
		{"all", 0, len(g)},
		{"mod 4 = 1", 0, 401},
		{"mod 4 = 2", 0, 402},
		{"mod 4 = 3", 0, 403},
		{"short", 0, 3},
		{"empty", 0, 0},
		{"misaligned", 1, len(g) - 1},
		{"misaligned short", 3, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			gg := g[c.off : c.off+c.n]
			for _, step := range []float32{0.1, 0, 1.8} {
				got := make([]float32, c.n)
				want := make([]float32, c.n)
				sum := perturb.SignFillAbsSum(got, gg, step)
				perturb.SLATLatent(want, gg, 1, step, 0)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("step %v: δ[%d] = %v for g %v, SLATLatent gives %v", step, i, got[i], gg[i], want[i])
					}
				}
				if c.n == 0 {
					if sum != 0 {
						t.Fatalf("sum of nothing = %v", sum)
					}
					continue
				}
				if ref := perturb.MeanAbsSum(gg, 1); math.Float64bits(sum) != math.Float64bits(ref) {
					t.Fatalf("sum = %v, MeanAbsSum gives %v", sum, ref)
				}
			}
		})
	}
}

func TestLatentStep(t *testing.T) {
	for _, c := range []struct {
		eta, step, radius, want float32
	}{
		{0.1, -1, -1, 0.1},    // defaults: 1.8η clipped to η
		{0.1, 0.05, -1, 0.05}, // below the radius
		{0.1, 0.5, 0.2, 0.2},
		{0.1, 0.5, 0, 0.5}, // radius 0: no clip
	} {
		if got := perturb.LatentStep(c.eta, c.step, c.radius); math.Abs(float64(got-c.want)) > 1e-7 {
			t.Errorf("LatentStep(%v, %v, %v) = %v, want %v", c.eta, c.step, c.radius, got, c.want)
		}
	}
}

func BenchmarkSignFillAbsSum(b *testing.B) {
	benchSizes(b, true, func(b *testing.B, n, c, hw int) {
		g, d := grads(newRNG(1), n*c*hw), make([]float32, n*c*hw)
		for b.Loop() {
			_ = perturb.SignFillAbsSum(d, g, 8.0/255)
		}
	})
}
