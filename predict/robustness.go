package predict

import (
	"context"
	"fmt"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// EvalOptions configure Robustness.
type EvalOptions struct {
	// Batch is the eval graphs' batch (0: 250, or the number of examples
	// if fewer).
	Batch int
	// Runtime configures the ONNX Runtime sessions (Provider, DeviceID,
	// Threads, Spinning).
	Runtime ort.Options
}

// Robustness is `slatrun eval` as a library call: it derives from the
// forward graph the eval graphs that cfg.Attacks follow (one per loss head,
// plus "ce" for the clean pass), evaluates the first cfg.N examples of x
// (N×C×H×W values in [0,1]) with labels y, and releases the sessions. See
// eval.Evaluate for the accounting.
func Robustness(ctx context.Context, forward *onnx.Model, x []float32, y []int64, cfg eval.Config, opts EvalOptions) (*eval.Report, error) {
	n := len(y)
	if cfg.N > 0 && cfg.N < n {
		n = cfg.N
	}
	if n == 0 {
		return nil, fmt.Errorf("predict: robustness: no examples")
	}
	b := opts.Batch
	if b <= 0 {
		b = 250
	}
	b = min(b, n)
	gs, err := graphs.DeriveEval(forward, b, eval.Heads(cfg.Attacks), opts.Runtime.NCHWc(), opts.Runtime.OneDNN())
	if err != nil {
		return nil, fmt.Errorf("predict: robustness: %w", err)
	}
	rt := opts.Runtime
	rt.Batch, rt.Outputs, rt.Shared = 0, nil, nil
	c, err := eval.NewClassifier(gs, rt)
	if err != nil {
		return nil, fmt.Errorf("predict: robustness: %w", err)
	}
	defer c.Close()
	c.SetResize(graphs.EvalAt(forward, opts.Runtime.NCHWc(), opts.Runtime.OneDNN()))
	return eval.Evaluate(ctx, c, x, y, cfg)
}
