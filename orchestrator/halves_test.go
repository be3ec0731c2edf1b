package orchestrator

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// TestHalves: the split steps give perturb.SLATLatent's and
// perturb.SLATInput's values exactly, for sizes below and above the split
// threshold, odd ones included, with and without the latent radius clip;
// a nil *halves runs them whole; bad arguments panic on the caller's
// goroutine as the perturb functions do.
func TestHalves(t *testing.T) {
	h := newHalves()
	defer h.close()
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 7, minHalves - 1, minHalves, 3*minHalves + 5} {
		g := make([]float32, n)
		x := make([]float32, n)
		for i := range g {
			g[i] = float32(r.NormFloat64())
			x[i] = r.Float32()
		}
		for _, radius := range []float32{-1, 0, 0.05} {
			want := make([]float32, n)
			perturb.SLATLatent(want, g, 0.1, -1, radius)
			wantIn := make([]float32, n)
			perturb.SLATInput(wantIn, g, x, 0.1, 0.9)
			for _, hv := range []*halves{h, nil} {
				got, gotIn := make([]float32, n), make([]float32, n)
				for i := range got {
					got[i], gotIn[i] = 9, 9 // overwritten everywhere
				}
				hv.latent(got, g, 0.1, -1, radius)
				hv.input(gotIn, g, x, 0.1, 0.9)
				if !slices.Equal(got, want) || !slices.Equal(gotIn, wantIn) {
					t.Fatalf("n %d, radius %g, helper %v: a split step differs", n, radius, hv != nil)
				}
			}
		}
	}
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"negative eta", func() { h.latent(make([]float32, minHalves), make([]float32, minHalves), -1, -1, -1) }},
		{"short x", func() { h.input(make([]float32, minHalves), make([]float32, minHalves), make([]float32, 5), 0.1, 0.9) }},
		{"negative eps", func() {
			h.input(make([]float32, minHalves), make([]float32, minHalves), make([]float32, minHalves), -1, 0.9)
		}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", c.name)
				}
			}()
			c.f()
		}()
	}
	// the helper still works after the panics
	d := make([]float32, minHalves)
	h.latent(d, make([]float32, minHalves), 0.1, -1, -1)
}

// BenchmarkHalves times SLAT's latent step on one convnet tap (batch 128,
// 16×28×28) whole and split over two goroutines.
func BenchmarkHalves(b *testing.B) {
	g := make([]float32, 128*16*28*28)
	for i := range g {
		g[i] = float32(i%7) - 3
	}
	d := make([]float32, len(g))
	for _, c := range []struct {
		name string
		h    *halves
	}{{"whole", nil}, {"split", newHalves()}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.h.latent(d, g, 0.1, -1, -1)
			}
		})
		c.h.close()
	}
}
