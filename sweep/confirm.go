package sweep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/orchestrator"
)

// ConfirmFile is a cell's confirmation: its final checkpoint under the
// stronger attacks of ConfirmSpec.
const ConfirmFile = "eval-confirm.json"

// ConfirmSpec is the second, stronger evaluation a sweep can end with: the
// sweep's own attacks (cheap, on every checkpoint) draw the map, and these
// (AutoAttack, say) check its conclusions on the final checkpoint of the
// best setting of each method at each ε, for the listed seeds.
type ConfirmSpec struct {
	Attacks string   `json:"attacks"`
	Seeds   []uint64 `json:"seeds"`
}

// Confirmation is one confirmed checkpoint.
type Confirmation struct {
	Method   string  `json:"method"`
	Variant  string  `json:"variant"`
	Eps      string  `json:"eps"`
	EpsValue float64 `json:"eps_value"`
	Seed     uint64  `json:"seed"`
	Cell     string  `json:"cell"`
	// Clean and Robust are the sweep's evaluation of the checkpoint;
	// Confirmed is the worst case under the confirmation attacks, whose
	// accuracies are in Attacks.
	Clean     float64            `json:"clean"`
	Robust    float64            `json:"robust"`
	Confirmed float64            `json:"confirmed"`
	Attacks   map[string]float64 `json:"attacks"`
	Seconds   float64            `json:"eval_seconds"`
}

// BestGroups returns, for each method and ε whose every variant has
// finished all its seeds, the variant with the highest mean final robust
// accuracy (the first in grid order on a tie), in grid order. Methods and
// ε with cells still missing are left out, so that a sweep still running
// can be confirmed in parts.
func BestGroups(rep *Report) ([]*Group, error) {
	cells, err := rep.Spec.Cells()
	if err != nil {
		return nil, err
	}
	// The variants the grid has for each method and ε.
	want := map[string][]string{}
	for _, c := range cells {
		k := c.Method + "\x00" + c.Eps
		if !slices.Contains(want[k], c.Variant()) {
			want[k] = append(want[k], c.Variant())
		}
	}
	var out []*Group
	seen := map[string]bool{}
	for i := range rep.Groups {
		g := &rep.Groups[i]
		k := g.Method + "\x00" + g.Eps
		if seen[k] {
			continue
		}
		seen[k] = true
		var best *Group
		complete := true
		for _, v := range want[k] {
			h := findGroup(rep.Groups, v, g.Eps)
			if h == nil || h.Runs < len(rep.Spec.SeedsOf(g.Method)) {
				complete = false
				break
			}
			if best == nil || h.FinalRobust.Mean > best.FinalRobust.Mean {
				best = h
			}
		}
		if complete && best != nil {
			out = append(out, best)
		}
	}
	return out, nil
}

// Confirm evaluates, with fn (an evaluator of cs.Attacks; NewEvaluator),
// the final checkpoint of each seed of cs.Seeds of every BestGroups group,
// the largest ε first, on workers goroutines, reusing a cell's
// eval-confirm.json when it holds the same evaluation of the same bytes.
// With workers 0 it evaluates nothing: what is not cached yet is listed in
// rep.Unconfirmed. It sets rep.Confirm, rep.Confirmed and rep.Unconfirmed.
// e is fn's evaluation (for the cache key); log gets a line per fresh
// evaluation.
func Confirm(ctx context.Context, rep *Report, cs ConfirmSpec, e EvalSpec, fn EvalFunc, workers int, log io.Writer) error {
	best, err := BestGroups(rep)
	if err != nil {
		return err
	}
	var jobs []CellResult
	for _, g := range best {
		for _, c := range rep.Cells {
			if c.Variant() == g.Variant && c.Eps == g.Eps && slices.Contains(cs.Seeds, c.Seed) {
				jobs = append(jobs, c)
			}
		}
	}
	// The largest ε first: fewer samples stay robust there, so those
	// evaluations are the shortest (AutoAttack runs its later attacks on
	// the survivors only), and an interrupted run has confirmed the most.
	slices.SortStableFunc(jobs, func(a, b CellResult) int { return cmp.Compare(b.EpsValue(), a.EpsValue()) })
	out := make([]Confirmation, len(jobs))
	errs := make([]error, len(jobs))
	if workers == 0 { // what is cached only
		fn = func(context.Context, Cell, string) (*eval.Report, error) { return nil, errNotCached }
	}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range max(1, min(workers, len(jobs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				out[i], errs[i] = confirmCell(ctx, rep, jobs[i], e, fn, log, &mu)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sweep: confirmation interrupted (%w); finished evaluations are kept, run it again to go on", err)
	}
	rep.Confirm, rep.Confirmed, rep.Unconfirmed = &cs, nil, nil
	for i, err := range errs {
		switch {
		case err == nil:
			rep.Confirmed = append(rep.Confirmed, out[i])
		case errors.Is(err, errNotCached):
			rep.Unconfirmed = append(rep.Unconfirmed, jobs[i].Name)
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

// errNotCached is what Confirm's evaluator gives with workers 0.
var errNotCached = errors.New("not evaluated yet")

func confirmCell(ctx context.Context, rep *Report, c CellResult, e EvalSpec, fn EvalFunc, log io.Writer, mu *sync.Mutex) (Confirmation, error) {
	dir, ok := rep.Dirs[c.Name]
	if !ok {
		return Confirmation{}, fmt.Errorf("sweep: confirm %s: the cell's directory is unknown", c.Name)
	}
	doc, fresh, err := evalCached(ctx, e, fn, c.Cell, dir, orchestrator.ModelFile, ConfirmFile, nil)
	if err != nil {
		return Confirmation{}, fmt.Errorf("sweep: confirm %s: %w", c.Name, err)
	}
	cp := checkpoint(doc, c.Final.Epoch)
	cf := Confirmation{Method: c.Method, Variant: c.Variant(), Eps: c.Eps, EpsValue: c.EpsValue(), Seed: c.Seed, Cell: c.Name,
		Clean: c.Final.Clean, Robust: c.Final.Robust, Confirmed: cp.Robust, Attacks: cp.Attacks, Seconds: cp.Seconds}
	if fresh && log != nil {
		mu.Lock()
		fmt.Fprintf(log, "sweep: confirmed %s: clean %.1f%%, %s %.1f%% (%.0fs)\n", c.Name, 100*cp.Clean, e.Attacks, 100*cp.Robust, cp.Seconds)
		mu.Unlock()
	}
	return cf, nil
}
