package orchestrator

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
)

// TestProbeMatchesCheckpointGraph: the probe, which derives its eval graph
// once and puts each epoch's weights into it, runs the very graph that
// deriving from each epoch's checkpoint gives (what the probe did before)
// and gets its numbers, epoch after epoch.
func TestProbeMatchesCheckpointGraph(t *testing.T) {
	for _, c := range []struct{ model, method string }{{"mlp", "fgsm-rs"}, {"convnet", "slat"}} {
		t.Run(c.model, func(t *testing.T) {
			cfg := testConfig(t, c.model, c.method)
			cfg.Epochs = 2
			var tr *Trainer
			cfg.Hooks.OnEpoch = func(em EpochMetrics) error {
				r := tr.r
				ckpt, err := tr.Checkpoint()
				if err != nil {
					return err
				}
				batch := min(cfg.Batch, r.ProbeN)
				gs, err := graphs.DeriveEval(ckpt, batch, []string{eval.HeadCE}, cfg.Runtime.NCHWc(), cfg.Runtime.OneDNN())
				if err != nil {
					return err
				}
				opts := cfg.Runtime
				opts.Batch = batch
				cl, err := eval.NewClassifier(gs, opts)
				if err != nil {
					return err
				}
				defer cl.Close()
				spec := eval.AttackSpec{Name: "pgd-" + strconv.Itoa(r.ProbeSteps), Kind: eval.KindPGD, Loss: eval.HeadCE,
					Steps: r.ProbeSteps, Restarts: 1, Step: r.ProbeStep / r.Eps, RandomStart: true}
				seed := r.Seed ^ (uint64(em.Epoch-1)+1)*0x9e3779b97f4a7c15
				set := cfg.Holdout.Slice(0, r.ProbeN)
				rep, err := eval.Evaluate(context.Background(), cl, set.X, set.Y, eval.Config{Eps: r.Eps, Attacks: []eval.AttackSpec{spec}, Seed: seed})
				if err != nil {
					return err
				}
				if em.Probe.N != rep.N || em.Probe.Clean != rep.Clean || em.Probe.Robust != rep.Attacks[0].Accuracy {
					t.Errorf("epoch %d: probe n %d clean %v robust %v; the checkpoint's eval graph: n %d clean %v robust %v",
						em.Epoch, em.Probe.N, em.Probe.Clean, em.Probe.Robust, rep.N, rep.Clean, rep.Attacks[0].Accuracy)
				}
				t.Logf("epoch %d: clean %v robust %v", em.Epoch, em.Probe.Clean, em.Probe.Robust)
				return sameEvalGraph(t, tr.probe, gs, tr.Weights())
			}
			tr = newTrainer(t, cfg)
			if _, err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// sameEvalGraph checks that the probe's eval graph with the weights put in
// is, byte for byte, the eval graph derived from the checkpoint.
func sameEvalGraph(t *testing.T, p *prober, ckptGraphs map[string]*onnx.Model, weights map[string][]float32) error {
	values := map[string][]float32{}
	for _, name := range p.weights {
		values[name] = weights[name]
	}
	for head, want := range ckptGraphs {
		got, err := graphs.WithWeights(p.graphs[head], values)
		if err != nil {
			return err
		}
		a, err := got.Encode()
		if err != nil {
			return err
		}
		b, err := want.Encode()
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the probe's eval graph with the epoch's weights is not the checkpoint's eval graph", head)
		}
	}
	return nil
}
