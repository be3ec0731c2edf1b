package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
)

// ErrInterrupted is wrapped (with the context's error) by the error Run
// returns when its context is cancelled.
var ErrInterrupted = errors.New("training interrupted")

// Run trains until the last epoch, or until ctx is cancelled: then it
// finishes the current step, saves model.onnx and state.bin, and returns an
// error (wrapping ErrInterrupted and ctx.Err()) that says how to resume. A
// non-finite loss stops the run with an error and writes nothing, so the
// last checkpoint stays as it was.
func (t *Trainer) Run(ctx context.Context) (*Result, error) {
	if t.closed {
		return nil, errors.New("orchestrator: Run on a closed Trainer")
	}
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("orchestrator: %w before the first step: %w", ErrInterrupted, err)
	}
	switch {
	case t.pass >= t.r.Passes:
		t.logf("resuming a run that had finished its %d epochs (optimizer step %d): nothing to train", t.r.Passes, t.global)
	case t.pass > 0 || t.batch > 0:
		t.logf("resuming at epoch %d/%d, step %d/%d (optimizer step %d)", t.pass+1, t.r.Passes, t.batch, t.r.BatchesEpoch, t.global)
	}
	for t.pass < t.r.Passes {
		t.loader.Seek(t.pass, t.batch)
		for t.loader.Next(t.x, t.y) {
			t0 := time.Now()
			if err := t.step(); err != nil {
				return nil, t.stepError(err)
			}
			t.batch++
			if err := t.afterStep(time.Since(t0)); err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, t.interrupt(err)
			}
		}
		if err := t.endEpoch(ctx); err != nil {
			if ctx.Err() != nil { // cancelled during the probe
				return nil, t.interrupt(ctx.Err())
			}
			return nil, err
		}
		if err := ctx.Err(); err != nil && t.pass < t.r.Passes {
			return nil, t.interrupt(err)
		}
	}
	res := &Result{Dir: t.cfg.Out, Epochs: t.history, Steps: t.global,
		BestEpoch: t.bestEpoch, Seconds: time.Since(start).Seconds()}
	if t.bestEpoch > 0 {
		res.BestClean, res.BestRobust = t.bestClean, t.bestRobust
	}
	for _, e := range t.history {
		res.Catastrophic = res.Catastrophic || e.Catastrophic
	}
	return res, nil
}

// afterStep accumulates a finished minibatch's statistics, calls OnStep and
// writes a metrics line every LogEvery minibatches.
func (t *Trainer) afterStep(d time.Duration) error {
	t.stepped(d.Seconds(), t.info.TapGradL1)
	if t.cfg.Hooks.OnStep != nil {
		t.info.Epoch, t.info.Step, t.info.StepsPerEpoch = t.pass+1, t.batch, t.r.BatchesEpoch
		t.info.GlobalStep, t.info.Loss, t.info.Correct, t.info.Batch = t.global, t.lastLoss, t.lastCorrect, t.cfg.Batch
		t.info.LR, t.info.Momentum, t.info.Duration = t.lastLR, t.lastMom, d
		if err := t.cfg.Hooks.OnStep(t.info); err != nil {
			return fmt.Errorf("orchestrator: OnStep hook at epoch %d step %d: %w", t.pass+1, t.batch, err)
		}
	}
	if t.cfg.LogEvery > 0 && t.batch%t.cfg.LogEvery == 0 {
		w := &t.win
		line := StepMetrics{Kind: "step", Epoch: t.pass + 1, Step: t.batch, GlobalStep: t.global,
			Loss: ratio(w.loss, float64(w.passes)), Accuracy: ratio(float64(w.correct), float64(w.n)),
			LR: t.lastLR, Momentum: t.lastMom,
			MsPerStep: 1000 * ratio(w.seconds, float64(w.passes)), ImagesPerSec: ratio(float64(w.n), w.seconds),
			TapGradL1: w.tapMeans(t.taps)}
		t.logf("epoch %d/%d step %d/%d  loss %.4f  acc %.1f%%  lr %.4g  mom %.3f  %.1f ms/step  %.0f img/s%s",
			line.Epoch, t.r.Passes, line.Step, t.r.BatchesEpoch, line.Loss, 100*line.Accuracy, line.LR, line.Momentum,
			line.MsPerStep, line.ImagesPerSec, tapString(t.taps, line.TapGradL1))
		w.reset()
		if err := t.appendMetrics(line); err != nil {
			return err
		}
	}
	return nil
}

// endEpoch finishes a pass over the data: epoch metrics, the probe, the
// checkpoints, the state, and OnEpoch.
func (t *Trainer) endEpoch(ctx context.Context) error {
	e := &t.ep
	em := EpochMetrics{Kind: "epoch", Epoch: t.pass + 1, GlobalStep: t.global,
		Loss: ratio(e.loss, float64(e.passes)), Accuracy: ratio(float64(e.correct), float64(e.n)),
		LR: t.lastLR, Momentum: t.lastMom, Seconds: e.seconds,
		MsPerStep: 1000 * ratio(e.seconds, float64(e.passes)), ImagesPerSec: ratio(float64(e.n), e.seconds),
		TapGradL1: e.tapMeans(t.taps)}
	if err := t.checkFinite(); err != nil {
		return err
	}
	ckpt, err := t.Checkpoint()
	if err != nil {
		return err
	}
	if t.probe != nil {
		p, err := t.probe.run(ctx, t.Weights(), t.pass)
		if err != nil {
			return err
		}
		em.Probe = &p
		em.Best, em.Catastrophic, em.Decayed = t.flags(p, t.cfg.Probe.Collapse, t.cfg.Probe.Floor)
	}
	t.logf("epoch %d/%d done in %.1fs: loss %.4f  acc %.1f%%  %.1f ms/step  %.0f img/s%s%s",
		em.Epoch, t.r.Passes, em.Seconds, em.Loss, 100*em.Accuracy, em.MsPerStep, em.ImagesPerSec,
		probeString(em), tapString(t.taps, em.TapGradL1))
	if em.Catastrophic {
		t.logf("WARNING: catastrophic overfitting at epoch %d: probe robust accuracy fell to %.1f%% (best %.1f%% at epoch %d) while clean accuracy is %.1f%%",
			em.Epoch, 100*em.Probe.Robust, 100*t.bestRobust, t.bestEpoch, 100*em.Probe.Clean)
	}
	if em.Decayed {
		t.logf("WARNING: slow decay at epoch %d: probe robust accuracy %.1f%% is %.0f points or more below its best, %.1f%% at epoch %d",
			em.Epoch, 100*em.Probe.Robust, 100*SlowDecayDrop, 100*t.bestRobust, t.bestEpoch)
	}
	t.runState.endEpoch(em)
	if t.cfg.Out != "" {
		if err := t.appendMetrics(em); err != nil {
			return err
		}
		if err := t.save(ckpt, em.Best); err != nil {
			return err
		}
	}
	if t.cfg.Hooks.OnEpoch != nil {
		if err := t.cfg.Hooks.OnEpoch(em); err != nil {
			return fmt.Errorf("orchestrator: OnEpoch hook at epoch %d: %w", em.Epoch, err)
		}
	}
	return nil
}

// stepError turns a step's error into Run's: it says where the run stopped
// and what is on disk.
func (t *Trainer) stepError(err error) error {
	where := fmt.Sprintf("epoch %d/%d, step %d/%d", t.pass+1, t.r.Passes, min(t.batch+1, t.r.BatchesEpoch), t.r.BatchesEpoch)
	var le *lossError
	if !errors.As(err, &le) {
		return fmt.Errorf("orchestrator: %s: %w", where, err)
	}
	disk := "nothing was saved (no run directory)"
	switch {
	case t.cfg.Out != "" && len(t.history) > 0:
		disk = fmt.Sprintf("the last good checkpoint (epoch %d) is intact in %s", len(t.history), t.cfg.Out)
	case t.cfg.Out != "":
		disk = "no checkpoint was written yet (the run diverged in its first epoch)"
	}
	if le.global == 0 && le.param == "" {
		// No update has happened: the learning rate cannot be the cause.
		return fmt.Errorf("orchestrator: %s: %w; %s; no parameter was updated yet, so look at the data and the model rather than the learning rate", where, err, disk)
	}
	return fmt.Errorf("orchestrator: %s: %w; %s; try a smaller learning rate (Config.LR = %v)", where, err, disk, t.cfg.LR)
}

// checkFinite returns an error if a parameter or BN statistic is NaN or
// infinite (a loss can stay finite for a step after the update that broke
// the model), so that no broken checkpoint is ever written.
func (t *Trainer) checkFinite() error {
	for _, list := range [][]graphs.Tensor{t.params, t.stats} {
		for _, p := range list {
			for _, v := range p.Data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return t.stepError(&lossError{loss: v, lr: t.lastLR, global: t.global - 1, param: p.Name})
				}
			}
		}
	}
	return nil
}

// interrupt saves the mid-epoch state and returns the error that says how
// to resume.
func (t *Trainer) interrupt(cause error) error {
	where := fmt.Sprintf("epoch %d/%d after step %d/%d", t.pass+1, t.r.Passes, t.batch, t.r.BatchesEpoch)
	if t.cfg.Out == "" {
		return fmt.Errorf("orchestrator: %w at %s (%w); nothing was saved (no run directory)", ErrInterrupted, where, cause)
	}
	err := t.checkFinite()
	var ckpt *onnx.Model
	if err == nil {
		ckpt, err = t.Checkpoint()
	}
	if err == nil {
		err = t.save(ckpt, false)
	}
	if err != nil {
		return fmt.Errorf("orchestrator: %w at %s (%w), and saving failed: %w", ErrInterrupted, where, cause, err)
	}
	t.logf("interrupted at %s: saved %s and %s in %s", where, ModelFile, StateFile, t.cfg.Out)
	return fmt.Errorf("orchestrator: %w at %s (%w); %s and %s are saved in %s: resume with the same settings and Config.Resume (slatrun train --resume %s)",
		ErrInterrupted, where, cause, ModelFile, StateFile, t.cfg.Out, t.cfg.Out)
}

// appendMetrics adds a line to metrics.jsonl (none without a run
// directory).
func (t *Trainer) appendMetrics(v any) error {
	if t.metrics == nil {
		return nil
	}
	return t.metrics.append(v)
}

func (t *Trainer) logf(format string, args ...any) {
	if t.cfg.Logger == nil {
		return
	}
	fmt.Fprintf(t.cfg.Logger, format+"\n", args...)
}

func probeString(em EpochMetrics) string {
	if em.Probe == nil {
		return ""
	}
	s := fmt.Sprintf("  probe clean %.1f%% PGD-%d %.1f%%", 100*em.Probe.Clean, em.Probe.Steps, 100*em.Probe.Robust)
	if em.Best {
		s += " (best)"
	}
	return s
}

func tapString(taps []string, m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("  |∂ℓ/∂h|₁")
	for _, tap := range taps {
		fmt.Fprintf(&b, " %s %.4g", tap, m[tap])
	}
	return b.String()
}
