package sweep

import (
	"context"
	"fmt"
	"sync"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// OpenFunc opens a split of a data set, like dataset.Open.
type OpenFunc func(spec, split string, seed uint64) (*dataset.Set, error)

// CacheData wraps open so that each (spec, split, seed) is loaded once and
// shared: concurrent cells then hold one copy of the data, which nothing
// writes to. Synthetic data depends on the seed, the other data sets do
// not, so their seed is not part of the key.
func CacheData(open OpenFunc) OpenFunc {
	type key struct {
		spec, split string
		seed        uint64
	}
	type entry struct {
		once sync.Once
		set  *dataset.Set
		err  error
	}
	var mu sync.Mutex
	cache := map[key]*entry{}
	return func(spec, split string, seed uint64) (*dataset.Set, error) {
		k := key{spec, split, seed}
		if len(spec) < 9 || spec[:9] != "synthetic" {
			k.seed = 0
		}
		mu.Lock()
		e := cache[k]
		if e == nil {
			e = &entry{}
			cache[k] = e
		}
		mu.Unlock()
		e.once.Do(func() { e.set, e.err = open(spec, split, seed) })
		return e.set, e.err
	}
}

// NewEvaluator returns the EvalFunc "slatrun eval" would be: the attacks of
// spec at the cell's ε, with the cell's seed, on the first spec.N examples
// of the test split of spec.Data, through eval graphs derived from the
// checkpoint, on ONNX Runtime with runtime's options (ort.Init must have
// been called).
func NewEvaluator(spec EvalSpec, runtime ort.Options, open OpenFunc) (EvalFunc, error) {
	specs, err := eval.ParseAttacks(spec.Attacks)
	if err != nil {
		return nil, err
	}
	if spec.Batch < 1 {
		return nil, fmt.Errorf("sweep: eval batch %d: want at least 1", spec.Batch)
	}
	heads := eval.Heads(specs)
	return func(ctx context.Context, c Cell, checkpoint string) (*eval.Report, error) {
		fwd, err := onnx.Load(checkpoint)
		if err != nil {
			return nil, err
		}
		set, err := open(spec.Data, "test", c.Seed)
		if err != nil {
			return nil, err
		}
		if spec.N > 0 && spec.N < set.N {
			set = set.Slice(0, spec.N)
		}
		b := min(spec.Batch, set.N)
		gs, err := graphs.DeriveEval(fwd, b, heads, runtime.NCHWc(), runtime.OneDNN())
		if err != nil {
			return nil, err
		}
		opts := runtime
		opts.Batch, opts.Shared = b, nil
		cl, err := eval.NewClassifier(gs, opts)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		cl.SetResize(graphs.EvalAt(fwd, runtime.NCHWc(), runtime.OneDNN()))
		return eval.Evaluate(ctx, cl, set.X, set.Y, eval.Config{Eps: float32(c.EpsValue()), Norm: eval.NormLinf,
			Attacks: specs, Seed: c.Seed})
	}, nil
}
