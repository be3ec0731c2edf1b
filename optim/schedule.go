package optim

import "math"

// The schedule kinds, the values of Schedule.Kind.
const (
	Cyclic    = "cyclic"
	Piecewise = "piecewise"
	Cosine    = "cosine"
	Constant  = "constant"
)

// ScheduleNames lists the schedule kinds.
const ScheduleNames = Cyclic + ", " + Piecewise + ", " + Cosine + ", " + Constant

// KnownSchedule reports whether kind is one of the schedule kinds.
func KnownSchedule(kind string) bool {
	switch kind {
	case Cyclic, Piecewise, Cosine, Constant:
		return true
	}
	return false
}

// Schedule gives the learning rate and momentum of every optimizer step.
type Schedule struct {
	// Kind is Cyclic (per step, 0 → LR at 40% of Steps → 0, momentum
	// cycling the other way), Piecewise (×0.1 at 30%, 60% and 80% of the
	// epochs), Cosine (per step, LR → 0) or Constant; At treats any other
	// kind as Constant.
	Kind string
	// LR is the peak (cyclic, cosine) or initial (piecewise, constant)
	// learning rate.
	LR float64
	// Momentum is the momentum; for cyclic it is the maximum of the cycle
	// and BaseMomentum its minimum.
	Momentum, BaseMomentum float64
	// Steps is the total number of optimizer steps, StepsPerEpoch the
	// number per epoch (per pass over the data for free-M, whose replays
	// are steps too).
	Steps, StepsPerEpoch int
}

// piecewiseMilestones are where the piecewise schedule multiplies the
// learning rate by 0.1, as fractions of the epochs (rounded to whole epochs:
// epochs 3, 6 and 8 of 10).
func piecewiseMilestones() [3]float64 { return [...]float64{0.3, 0.6, 0.8} }

// At returns the learning rate and momentum of step i (0-based, counted
// over the whole run).
//
// Cyclic reproduces PyTorch's CyclicLR(base_lr=0, max_lr=LR,
// step_size_up=0.4·Steps, step_size_down=0.6·Steps, mode="triangular",
// cycle_momentum=True, base_momentum=BaseMomentum, max_momentum=Momentum)
// stepped once per minibatch, as the reference code does: step i uses the
// values the scheduler holds after i calls of scheduler.step(), so step 0
// has learning rate 0 and momentum Momentum.
func (s *Schedule) At(i int) (lr, momentum float64) {
	switch s.Kind {
	case Cyclic:
		// The reference passes step_size_up = steps·2/5, step_size_down =
		// steps·3/5; computing them the same way keeps the float64
		// arithmetic identical.
		up, down := float64(2*s.Steps)/5, float64(3*s.Steps)/5
		total := up + down
		ratio := up / total
		cycle := math.Floor(1 + float64(i)/total)
		x := 1 + float64(i)/total - cycle
		var scale float64
		if x <= ratio {
			scale = x / ratio
		} else {
			scale = (x - 1) / (ratio - 1)
		}
		return s.LR * scale, s.Momentum - (s.Momentum-s.BaseMomentum)*scale
	case Piecewise:
		epochs := float64(s.Steps / max(1, s.StepsPerEpoch))
		epoch := float64(i / max(1, s.StepsPerEpoch))
		lr = s.LR
		for _, f := range piecewiseMilestones() {
			if epoch >= math.Round(f*epochs) {
				lr *= 0.1
			}
		}
		return lr, s.Momentum
	case Cosine:
		return s.LR * 0.5 * (1 + math.Cos(math.Pi*float64(i)/float64(max(1, s.Steps)))), s.Momentum
	}
	return s.LR, s.Momentum
}
