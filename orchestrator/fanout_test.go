package orchestrator

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// TestFanout: the latent step split over threads writes what one pass
// writes, and its sum is the one-pass sum (exactly on one part, to rounding
// on several), allocation-free.
func TestFanout(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		threads, n int
	}{
		{1, 100_003},
		{2, 1_605_632}, // a convnet tap, batch 128
		{3, 100_003},   // uneven parts, length not a multiple of 4
		{7, 3 * minFanoutPart},
		{2, 100}, // too short to split
		{4, 0},
	} {
		f := newFanout(c.threads)
		g := make([]float32, c.n)
		for i := range g {
			g[i] = float32(r.NormFloat64())
		}
		got, want := make([]float32, c.n), make([]float32, c.n)
		sum := f.latent(got, g, 0.25)
		ref := perturb.SignFillAbsSum(want, g, 0.25)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("threads %d, n %d: δ[%d] = %v, want %v", c.threads, c.n, i, got[i], want[i])
			}
		}
		parts := min(c.threads, max(c.n/minFanoutPart, 1))
		if parts == 1 && sum != ref || math.Abs(sum-ref) > 1e-12*math.Abs(ref) {
			t.Fatalf("threads %d (%d parts), n %d: sum %v, one pass gives %v", c.threads, parts, c.n, sum, ref)
		}
		if a := testing.AllocsPerRun(3, func() { f.latent(got, g, 0.25) }); a != 0 {
			t.Errorf("threads %d: %v allocations per call", c.threads, a)
		}
		f.close()
	}
}
