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
// the CE eval graph (BN on running statistics) with the epoch's weights, on
// a fixed held-out slice. As everywhere in eval, a sample is robust only if
// every point the attack visits is classified right.
//
// The eval graph is derived once, from the forward graph; each epoch puts
// the current weights into its initializers (graphs.WithWeights), which
// gives the very bytes that deriving it from the epoch's checkpoint gave,
// and opens a session over it. The weights stay initializers rather than
// session inputs because ONNX Runtime folds constant weights (Conv with
// BatchNormalization, for one): fed as inputs, the convnet's logits moved
// in the last bits, and the probe's numbers must not.
type prober struct {
	set     *dataset.Set
	batch   int
	attack  eval.AttackSpec
	eps     float32
	seed    uint64
	runtime ort.Options
	graphs  map[string]*onnx.Model // loss head → eval graph, derived once
	weights []string               // the weights that are initializers of the eval graphs
}

// newProber derives the probe's eval graph from forward for batches of
// batch examples of set; weights are the Trainer's parameters and BN
// statistics (the names of what run will be given).
func newProber(forward *onnx.Model, weights map[string][]float32, set *dataset.Set, batch int, r resolved, runtime ort.Options) (*prober, error) {
	gs, err := graphs.DeriveEval(forward, batch, []string{eval.HeadCE}, runtime.NCHWc(), runtime.OneDNN())
	if err != nil {
		return nil, fmt.Errorf("orchestrator: probe: derive the eval graph: %w", err)
	}
	p := &prober{set: set, batch: batch, eps: r.Eps, seed: r.Seed, runtime: runtime, graphs: gs,
		attack: eval.AttackSpec{Name: "pgd-" + strconv.Itoa(r.ProbeSteps), Kind: eval.KindPGD, Loss: eval.HeadCE,
			Steps: r.ProbeSteps, Restarts: 1, Step: r.probeFrac, RandomStart: true}}
	inits := map[string]bool{}
	for _, g := range gs {
		for _, t := range g.Graph().GetInitializer() {
			inits[t.GetName()] = true
		}
	}
	for name := range weights {
		if inits[name] {
			p.weights = append(p.weights, name)
		}
	}
	return p, nil
}

// run probes the weights (by name: the Trainer's Weights) after pass
// (0-based). Its random starts depend only on the seed and the pass, so a
// resumed run probes exactly as an uninterrupted one.
func (p *prober) run(ctx context.Context, weights map[string][]float32, pass int) (ProbeResult, error) {
	start := time.Now()
	values := make(map[string][]float32, len(p.weights))
	for _, name := range p.weights {
		values[name] = weights[name]
	}
	gs := make(map[string]*onnx.Model, len(p.graphs))
	for head, g := range p.graphs {
		m, err := graphs.WithWeights(g, values)
		if err != nil {
			return ProbeResult{}, fmt.Errorf("orchestrator: probe: the %s eval graph: %w", head, err)
		}
		gs[head] = m
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
