package perturb_test

import (
	"math"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// gradAlignR is R in float64 straight from its definition.
func gradAlignR(g1, g2 []float64, n int) float64 {
	d := len(g1) / n
	var sum float64
	m := 0
	for i := range n {
		var aa, bb, ab float64
		for j := i * d; j < (i+1)*d; j++ {
			aa += g1[j] * g1[j]
			bb += g2[j] * g2[j]
			ab += g1[j] * g2[j]
		}
		if aa == 0 || bb == 0 {
			continue
		}
		m++
		sum += 1 - ab/math.Sqrt(aa*bb)
	}
	if m == 0 {
		return 0
	}
	return sum / float64(m)
}

// TestGradAlign checks R and its gradients against central differences of
// the definition, with examples whose gradient is zero left out of the mean.
func TestGradAlign(t *testing.T) {
	const n, d = 4, 6
	for _, tc := range []struct {
		name  string
		zero1 int // an example whose g1 is zero (−1: none)
		zero2 int // an example whose g2 is zero (−1: none)
		same  bool
		wantM int
	}{
		{"all", -1, -1, false, 4},
		{"zero g1", 1, -1, false, 3},
		{"zero g1 and g2", 0, 2, false, 2},
		{"aligned", -1, -1, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRNG(7)
			g1, g2 := make([]float32, n*d), make([]float32, n*d)
			for i := range g1 {
				g1[i] = float32(rng.NormFloat64()) * 1e-3
				g2[i] = float32(rng.NormFloat64()) * 1e-3
			}
			if tc.same {
				for i := range g2 {
					g2[i] = 3 * g1[i]
				}
			}
			for j := range d {
				if tc.zero1 >= 0 {
					g1[tc.zero1*d+j] = 0
				}
				if tc.zero2 >= 0 {
					g2[tc.zero2*d+j] = 0
				}
			}
			v1, v2 := make([]float32, n*d), make([]float32, n*d)
			for i := range v1 {
				v1[i], v2[i] = 9, 9 // must be overwritten
			}
			r, m := perturb.GradAlign(v1, v2, g1, g2, n)
			if m != tc.wantM {
				t.Fatalf("m = %d, want %d", m, tc.wantM)
			}
			a, b := make([]float64, n*d), make([]float64, n*d)
			for i := range a {
				a[i], b[i] = float64(g1[i]), float64(g2[i])
			}
			if want := gradAlignR(a, b, n); math.Abs(r-want) > 1e-12 {
				t.Fatalf("R = %v, want %v", r, want)
			}
			if tc.same && math.Abs(r) > 1e-12 {
				t.Fatalf("aligned gradients give R = %v, want 0", r)
			}
			for _, w := range []struct {
				name string
				v    []float32
				g    []float64
			}{{"v1", v1, a}, {"v2", v2, b}} {
				for i := range w.g {
					if i/d == tc.zero1 || i/d == tc.zero2 { // R jumps there: no derivative to compare
						if w.v[i] != 0 {
							t.Fatalf("%s[%d] = %v for a left-out example, want 0", w.name, i, w.v[i])
						}
						continue
					}
					h := 1e-9
					old := w.g[i]
					w.g[i] = old + h
					rp := gradAlignR(a, b, n)
					w.g[i] = old - h
					rm := gradAlignR(a, b, n)
					w.g[i] = old
					fd := (rp - rm) / (2 * h)
					if math.Abs(float64(w.v[i])-fd) > 1e-4*math.Max(1, math.Abs(fd)) {
						t.Fatalf("%s[%d] = %v, central difference %v", w.name, i, w.v[i], fd)
					}
				}
			}
			// nil gradients are not written; v2 alone is the same.
			only := make([]float32, n*d)
			if r2, _ := perturb.GradAlign(nil, only, g1, g2, n); r2 != r || !near(only, v2, 0) {
				t.Fatal("GradAlign(nil, v2, …) differs from GradAlign(v1, v2, …)")
			}
		})
	}
	if r, m := perturb.GradAlign(nil, nil, make([]float32, 8), make([]float32, 8), 2); r != 0 || m != 0 {
		t.Errorf("all-zero gradients: R = %v, m = %d; want 0, 0", r, m)
	}
}

func TestGradAlignLambda(t *testing.T) {
	for _, c := range []struct{ eps, want float32 }{
		{0, 0.02}, {8.0 / 255, 0.2}, {16.0 / 255, 2}, {4.0 / 255, 0.063245553},
		{0.1, 2}, {0.3, 2}, // held at 16/255's value beyond it
	} {
		if got := perturb.GradAlignLambda(c.eps); math.Abs(float64(got-c.want)) > 1e-6*float64(c.want) {
			t.Errorf("GradAlignLambda(%v) = %v, want %v", c.eps, got, c.want)
		}
	}
}
