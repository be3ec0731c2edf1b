package orchestrator

import (
	"time"
)

// StepInfo describes one minibatch step, for Hooks.OnStep.
type StepInfo struct {
	// Epoch (1-based) and Step (1-based within the epoch, of
	// StepsPerEpoch) locate the minibatch; GlobalStep counts optimizer
	// steps done so far (free-M makes M per minibatch).
	Epoch, Step, StepsPerEpoch, GlobalStep int
	// Loss is the training loss of the step's last train pass (at the
	// perturbed point), Correct the number of its Batch examples the model
	// classified right there.
	Loss           float32
	Correct, Batch int
	// LR and Momentum are those of the step's last optimizer update.
	LR, Momentum float64
	// TapGradL1 is SLAT's per-tap mean ‖∂ℓ/∂h‖₁ at the clean point, in
	// Config.Taps order (nil for other methods). The slice is reused.
	TapGradL1 []float64
	// GradAlignR is GradAlign's regularizer mean(1 − cos(∇ₓℓ(x),
	// ∇ₓℓ(x+η))) at this step, before λ (0 for other methods).
	GradAlignR float64
	// Duration is the step's wall time.
	Duration time.Duration
}

// StepMetrics is a metrics.jsonl line written every Config.LogEvery
// minibatches: means over the minibatches since the previous line.
type StepMetrics struct {
	Kind         string             `json:"kind"` // "step"
	Epoch        int                `json:"epoch"`
	Step         int                `json:"step"`
	GlobalStep   int                `json:"global_step"`
	Loss         float64            `json:"loss"`
	Accuracy     float64            `json:"accuracy"`
	LR           float64            `json:"lr"`
	Momentum     float64            `json:"momentum"`
	MsPerStep    float64            `json:"ms_per_step"`
	ImagesPerSec float64            `json:"images_per_s"`
	TapGradL1    map[string]float64 `json:"tap_grad_l1,omitempty"`
}

// EpochMetrics is the metrics.jsonl line of an epoch (a pass over the data
// for free-M).
type EpochMetrics struct {
	Kind       string `json:"kind"` // "epoch"
	Epoch      int    `json:"epoch"`
	GlobalStep int    `json:"global_step"`
	// Loss and Accuracy are the means of the epoch's training passes, at
	// the perturbed points the method trains on.
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	// LR and Momentum are those of the epoch's last optimizer step.
	LR       float64 `json:"lr"`
	Momentum float64 `json:"momentum"`
	// Seconds is the training time of the epoch without the probe;
	// MsPerStep is per optimizer step, ImagesPerSec counts every train
	// pass's minibatch.
	Seconds      float64 `json:"seconds"`
	MsPerStep    float64 `json:"ms_per_step"`
	ImagesPerSec float64 `json:"images_per_s"`
	// TapGradL1 is SLAT's mean ‖∂ℓ/∂h‖₁ per tap over the epoch.
	TapGradL1 map[string]float64 `json:"tap_grad_l1,omitempty"`
	// Probe is the held-out PGD probe of the epoch's checkpoint (nil
	// without Config.Holdout).
	Probe *ProbeResult `json:"probe,omitempty"`
	// Best is set when this epoch's checkpoint became best.onnx.
	Best bool `json:"best,omitempty"`
	// Catastrophic is set when the probe's robust accuracy collapsed while
	// its clean accuracy held (see ProbeConfig).
	Catastrophic bool `json:"catastrophic_overfitting,omitempty"`
	// Decayed is set when the probe's robust accuracy lies SlowDecayDrop
	// or more below the best so far without the epoch being flagged
	// Catastrophic: a slow decay.
	Decayed bool `json:"probe_decay,omitempty"`
}

// ProbeResult is one probe: clean and PGD accuracy on held-out examples.
type ProbeResult struct {
	N       int     `json:"n"`
	Steps   int     `json:"steps"`
	Clean   float64 `json:"clean"`
	Robust  float64 `json:"robust"`
	Seconds float64 `json:"seconds"`
}

// Result summarizes a finished run.
type Result struct {
	// Dir is the run directory ("" when nothing was written).
	Dir string
	// Epochs holds every epoch's metrics, those before a resume included.
	Epochs []EpochMetrics
	// Steps is the number of optimizer steps of the whole run.
	Steps int
	// BestEpoch (1-based; 0 without a probe) is the epoch of best.onnx,
	// with its probe's accuracies.
	BestEpoch             int
	BestClean, BestRobust float64
	// Catastrophic is set when any epoch was flagged.
	Catastrophic bool
	// Seconds is the wall time of this Run call.
	Seconds float64
}

// Final returns the last epoch's metrics (the zero value if none).
func (r *Result) Final() EpochMetrics {
	if len(r.Epochs) == 0 {
		return EpochMetrics{}
	}
	return r.Epochs[len(r.Epochs)-1]
}

// accum accumulates training statistics over a window of minibatches.
type accum struct {
	loss    float64
	correct int64
	n       int64 // examples over all train passes
	passes  int64 // train passes (optimizer steps)
	batches int64
	seconds float64
	taps    []float64
}

func (a *accum) reset() {
	taps := a.taps
	clear(taps)
	*a = accum{taps: taps}
}

func (a *accum) tapMeans(names []string) map[string]float64 {
	if len(names) == 0 || a.batches == 0 {
		return nil
	}
	m := make(map[string]float64, len(names))
	for i, name := range names {
		m[name] = a.taps[i] / float64(a.batches)
	}
	return m
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
