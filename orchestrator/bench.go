package orchestrator

import "time"

// StepTimes accumulates where the time of the steps run through Step went:
// the ONNX Runtime passes of the attack graph and of the train graph, and
// the rest (Go: the perturbation, the optimizer, the copies). Timing costs
// two time.Now calls per pass and allocates nothing.
type StepTimes struct {
	Steps        int
	Total        time.Duration // whole steps
	Attack       time.Duration // attack-graph runs (SLAT pass 1, FGSM-RS, PGD's K)
	AttackPasses int
	Train        time.Duration // train-graph runs
	TrainPasses  int
}

// Go is the time of the steps spent outside ONNX Runtime.
func (s StepTimes) Go() time.Duration { return s.Total - s.Attack - s.Train }

// Step runs one training step of the method on the minibatch x, y (copied
// into the Trainer's buffers; len(x) = Batch·C·H·W, len(y) = Batch): the
// attack passes, the perturbation, the train pass and the SGD update, as
// Run does for each minibatch, without the metrics, hooks and checkpoints
// around it. It is for benchmarks (slatrun bench) and allocates nothing.
func (t *Trainer) Step(x []float32, y []int64) error {
	start := time.Now()
	copy(t.x, x)
	copy(t.y, y)
	err := t.step()
	t.times.Total += time.Since(start)
	t.times.Steps++
	return err
}

// Times returns the times accumulated by Step since New or ResetTimes.
func (t *Trainer) Times() StepTimes { return t.times }

// ResetTimes zeroes the accumulated times (after a warm-up, say).
func (t *Trainer) ResetTimes() { t.times = StepTimes{} }
