package orchestrator

import (
	"fmt"
	"testing"
)

// probeCurve is a synthetic run: per epoch, the probe's (clean, robust).
type probeCurve [][2]float64

// probeCurves are the shapes the per-epoch flags and the sweep report tell
// apart (sweep's tests use the same shapes).
var probeCurves = []struct {
	name string
	c    probeCurve
	// wantCat and wantDecay are the epochs (1-based) flagged catastrophic
	// and decayed.
	wantCat, wantDecay []int
}{
	{"sudden collapse", probeCurve{{0.70, 0.40}, {0.72, 0.44}, {0.78, 0.02}, {0.80, 0.01}}, []int{3, 4}, nil},
	{"slow decay", probeCurve{{0.70, 0.42}, {0.71, 0.38}, {0.73, 0.33}, {0.74, 0.29}, {0.76, 0.25}}, nil, []int{5}},
	{"slow decay with clean", probeCurve{{0.70, 0.40}, {0.60, 0.30}, {0.50, 0.18}}, nil, []int{3}},
	{"healthy", probeCurve{{0.60, 0.20}, {0.66, 0.28}, {0.70, 0.33}, {0.72, 0.36}}, nil, nil},
	{"noisy but healthy", probeCurve{{0.65, 0.30}, {0.70, 0.38}, {0.66, 0.31}, {0.71, 0.41}, {0.69, 0.33}, {0.72, 0.39}}, nil, nil},
	{"exactly 15 points", probeCurve{{0.70, 0.45}, {0.72, 0.30}}, nil, []int{2}},
	{"14 points", probeCurve{{0.70, 0.45}, {0.72, 0.31}}, nil, nil},
}

// TestProbeFlags runs the synthetic probe curves through the per-epoch
// flags: a sudden collapse is catastrophic (not decayed), a slow decay is
// decayed once 15 points below the best, and healthy curves, noisy ones
// included, get neither.
func TestProbeFlags(t *testing.T) {
	cfg := DefaultConfig().Probe
	for _, tc := range probeCurves {
		s := newRunState(0)
		var cat, dec []int
		for i, p := range tc.c {
			_, c, d := s.flags(ProbeResult{Clean: p[0], Robust: p[1]}, cfg.Collapse, cfg.Floor)
			if c {
				cat = append(cat, i+1)
			}
			if d {
				dec = append(dec, i+1)
			}
			s.pass++
		}
		if fmt.Sprint(cat) != fmt.Sprint(tc.wantCat) || fmt.Sprint(dec) != fmt.Sprint(tc.wantDecay) {
			t.Errorf("%s: catastrophic %v, decayed %v; want %v and %v", tc.name, cat, dec, tc.wantCat, tc.wantDecay)
		}
	}
}

func TestSlowDecay(t *testing.T) {
	for _, tc := range []struct {
		best, robust float64
		want         bool
	}{
		{0.45, 0.30, true}, {0.45, 0.31, false}, {0.5, 0.1, true}, {-1, 0, false}, {0.1, 0, false}, {0.2, 0.05, true},
	} {
		if got := SlowDecay(tc.best, tc.robust); got != tc.want {
			t.Errorf("SlowDecay(%v, %v) = %v, want %v", tc.best, tc.robust, got, tc.want)
		}
	}
}
