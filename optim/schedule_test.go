package optim

import (
	"math"
	"testing"
)

// TestCyclicMatchesPyTorch checks the cyclic schedule against values of
// PyTorch's CyclicLR(base_lr=0, max_lr=0.2, step_size_up=steps·2/5,
// step_size_down=steps·3/5, cycle_momentum=True, base_momentum=0.8,
// max_momentum=0.9) computed by hand from its formula:
//
//	cycle = floor(1 + i/total); x = 1 + i/total − cycle
//	scale = x/ratio if x ≤ ratio else (x−1)/(ratio−1)
//	lr = 0.2·scale; momentum = 0.9 − 0.1·scale
func TestCyclicMatchesPyTorch(t *testing.T) {
	cases := []struct {
		steps, i int
		lr, mom  float64
	}{
		{100, 0, 0, 0.9},                       // PyTorch's first step has lr 0
		{100, 10, 0.05, 0.875},                 // scale 0.1/0.4
		{100, 20, 0.1, 0.85},                   // halfway up
		{100, 40, 0.2, 0.8},                    // the peak, at 40%
		{100, 70, 0.1, 0.85},                   // scale (0.7−1)/(0.4−1) = 0.5
		{100, 99, 0.2 / 60, 0.9 - 0.1/60},      // scale 0.01/0.6
		{100, 100, 0, 0.9},                     // a second cycle would start at 0
		{7, 3, 0.2 * 20 / 21, 0.9 - 0.1*20/21}, // x = 3/7 > 0.4: scale (4/7)/0.6 = 20/21
		{7, 2, 0.2 * (2.0 / 7) / 0.4, 0.9 - 0.1*(2.0/7)/0.4},
		{5, 2, 0.2, 0.8}, // up = 2 exactly
	}
	for _, c := range cases {
		s := Schedule{Kind: Cyclic, LR: 0.2, Momentum: 0.9, BaseMomentum: 0.8, Steps: c.steps, StepsPerEpoch: 1}
		lr, mom := s.At(c.i)
		if math.Abs(lr-c.lr) > 1e-12 || math.Abs(mom-c.mom) > 1e-12 {
			t.Errorf("cyclic steps %d, step %d: lr %v momentum %v, want %v and %v", c.steps, c.i, lr, mom, c.lr, c.mom)
		}
	}
}

func TestOtherSchedules(t *testing.T) {
	// 10 epochs of 5 steps.
	pw := Schedule{Kind: Piecewise, LR: 0.01, Momentum: 0.9, Steps: 50, StepsPerEpoch: 5}
	for _, c := range []struct {
		i  int
		lr float64
	}{{0, 0.01}, {14, 0.01}, {15, 0.001}, {29, 0.001}, {30, 1e-4}, {39, 1e-4}, {40, 1e-5}, {49, 1e-5}} {
		lr, mom := pw.At(c.i)
		if math.Abs(lr-c.lr) > 1e-15 || mom != 0.9 {
			t.Errorf("piecewise step %d: lr %v momentum %v, want %v and 0.9", c.i, lr, mom, c.lr)
		}
	}
	cos := Schedule{Kind: Cosine, LR: 0.2, Momentum: 0.9, Steps: 100, StepsPerEpoch: 10}
	for _, c := range []struct {
		i  int
		lr float64
	}{{0, 0.2}, {50, 0.1}, {100, 0}, {25, 0.1 * (1 + math.Sqrt2/2)}} {
		if lr, _ := cos.At(c.i); math.Abs(lr-c.lr) > 1e-12 {
			t.Errorf("cosine step %d: lr %v, want %v", c.i, lr, c.lr)
		}
	}
	con := Schedule{Kind: Constant, LR: 0.05, Momentum: 0.5, Steps: 10}
	if lr, mom := con.At(7); lr != 0.05 || mom != 0.5 {
		t.Errorf("constant: %v %v", lr, mom)
	}
}
