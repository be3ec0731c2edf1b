package orchestrator

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// prober is the per-epoch robustness probe: eval's PGD (uniform start in
// ±ε, Steps steps of size Step, projection to ±ε and [0,1], one restart) on
// the CE eval graph of the epoch's checkpoint (BN on running statistics),
// on a fixed held-out slice. As everywhere in eval, a sample is robust only
// if every point the attack visits is classified right.
type prober struct {
	set     *dataset.Set
	batch   int
	attack  eval.AttackSpec
	eps     float32
	seed    uint64
	runtime ort.Options
}

func newProber(set *dataset.Set, batch int, r resolved, runtime ort.Options) *prober {
	return &prober{set: set, batch: batch, eps: r.Eps, seed: r.Seed, runtime: runtime,
		attack: eval.AttackSpec{Name: "pgd-" + strconv.Itoa(r.ProbeSteps), Kind: eval.KindPGD, Loss: eval.HeadCE,
			Steps: r.ProbeSteps, Restarts: 1, Step: r.probeFrac, RandomStart: true}}
}

// run probes the checkpoint ckpt after pass (0-based). Its random starts
// depend only on the seed and the pass, so a resumed run probes exactly as
// an uninterrupted one.
func (p *prober) run(ctx context.Context, ckpt *onnx.Model, pass int) (ProbeResult, error) {
	start := time.Now()
	gs, err := graphs.DeriveEval(ckpt, p.batch, []string{eval.HeadCE}, p.runtime.NCHWc())
	if err != nil {
		return ProbeResult{}, fmt.Errorf("orchestrator: probe: derive the eval graph: %w", err)
	}
	opts := p.runtime
	opts.Batch, opts.Shared = p.batch, nil
	c, err := eval.NewClassifier(gs, opts)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("orchestrator: probe: %w", err)
	}
	defer c.Close()
	seed := p.seed ^ (uint64(pass)+1)*0x9e3779b97f4a7c15
	rep, err := eval.Evaluate(ctx, c, p.set.X, p.set.Y, eval.Config{Eps: p.eps, Attacks: []eval.AttackSpec{p.attack}, Seed: seed})
	if err != nil {
		return ProbeResult{}, fmt.Errorf("orchestrator: probe: %w", err)
	}
	return ProbeResult{N: rep.N, Steps: p.attack.Steps, Clean: rep.Clean, Robust: rep.Attacks[0].Accuracy,
		Seconds: time.Since(start).Seconds()}, nil
}
