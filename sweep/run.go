package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/orchestrator"
)

// Files of a sweep directory and of its cells (see the package doc).
const (
	SweepFile   = "sweep.json"
	CellsDir    = "cells"
	ShardsDir   = "shards"
	CellFile    = "cell.json"
	TrainedFile = "trained.json"
	FailedFile  = "failed.json"
	LogFile     = "train.log"
	EvalFinal   = "eval-final.json"
	EvalBest    = "eval-best.json"
)

// TrainFunc trains cell c into the run directory dir (its Args are the
// flags of "slatrun train"). With resume, dir holds a half-finished run
// (state.bin) to continue with the orchestrator's Config.Resume; without,
// dir may hold the files of a run that failed before its first checkpoint,
// for Config.Overwrite to replace. lock is dir's lock, which Run holds for
// the whole cell: pass it as the orchestrator's Config.Lock. Log lines go
// to log. It returns when the run finished, failed, or ctx was cancelled
// (after the orchestrator saved its checkpoint).
type TrainFunc func(ctx context.Context, c Cell, dir string, resume bool, lock *orchestrator.RunLock, log io.Writer) error

// EvalFunc evaluates the checkpoint file of cell c as Spec.Eval says, at the
// cell's ε (see NewEvaluator).
type EvalFunc func(ctx context.Context, c Cell, checkpoint string) (*eval.Report, error)

// Options are how Run runs a sweep; they are not part of the sweep's
// results, so shards may differ in them.
type Options struct {
	// Out is the sweep directory.
	Out string
	// Workers is the number of cells trained at once (default 1).
	Workers int
	// Shard selects the cells this Run trains (zero: all).
	Shard Shard
	// Train and Eval do the work; both are required.
	Train TrainFunc
	Eval  EvalFunc
	// Log receives a line per cell event; nil is silent.
	Log io.Writer
}

// Summary says what a Run did.
type Summary struct {
	Cells   int      `json:"cells"`   // cells of this shard
	Trained int      `json:"trained"` // trained from scratch by this Run
	Resumed int      `json:"resumed"` // half-finished cells continued
	Skipped int      `json:"skipped"` // finished before this Run
	Evals   int      `json:"evals"`   // checkpoints evaluated (not from the cache)
	Done    []string `json:"done"`
	Failed  []string `json:"failed,omitempty"`
	// Busy are the cells skipped because another process (or Run) holds
	// their directory's lock.
	Busy []string `json:"busy,omitempty"`
}

// sweepDoc is sweep.json.
type sweepDoc struct {
	Spec  Spec   `json:"spec"`
	Cells []Cell `json:"cells"`
}

// trainedDoc is trained.json.
type trainedDoc struct {
	Finished string  `json:"finished"`
	Seconds  float64 `json:"seconds"` // wall time of the last Train call
	Resumed  bool    `json:"resumed,omitempty"`
}

// ErrFailed is wrapped by Run's error when some cells failed; the others
// finished, and a later Run retries the failed ones.
var ErrFailed = errors.New("sweep: some cells failed")

// ErrBusy is wrapped by Run's error when some cells were skipped because
// another process was working in their directories; a later Run does them.
var ErrBusy = errors.New("sweep: some cells are in use by another process")

// Run trains and evaluates the cells of spec that opts.Shard selects, on
// opts.Workers workers, into opts.Out, skipping what is already done. It
// does not write the report: call Collect and WriteReport (after merging
// the shards, if any). When ctx is cancelled, running cells save their
// checkpoints and Run returns ctx's error; run it again to go on.
func Run(ctx context.Context, spec Spec, opts Options) (*Summary, error) {
	cells, err := spec.Cells()
	if err != nil {
		return nil, err
	}
	if opts.Train == nil || opts.Eval == nil {
		return nil, errors.New("sweep: Options.Train and Options.Eval are required")
	}
	if opts.Out == "" {
		return nil, errors.New("sweep: Options.Out is empty")
	}
	if err := os.MkdirAll(filepath.Join(opts.Out, CellsDir), 0o755); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	if err := writeJSON(filepath.Join(opts.Out, SweepFile), sweepDoc{spec, cells}); err != nil {
		return nil, err
	}
	var mine []Cell
	for _, c := range cells {
		if opts.Shard.Has(c) {
			mine = append(mine, c)
		}
	}
	// Refuse up front if a cell directory holds another run.
	for _, c := range mine {
		if err := checkCell(filepath.Join(opts.Out, CellsDir, c.Name), c); err != nil {
			return nil, err
		}
	}
	r := &runner{spec: spec, opts: opts, total: len(mine), sum: &Summary{Cells: len(mine)}}
	work := make(chan Cell)
	var wg sync.WaitGroup
	for range max(1, opts.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				r.run(ctx, c)
			}
		}()
	}
feed:
	for _, c := range mine {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	sum := r.sum
	slices.Sort(sum.Done)
	slices.Sort(sum.Failed)
	slices.Sort(sum.Busy)
	if opts.Shard.N > 1 {
		name := fmt.Sprintf("%d-of-%d.json", opts.Shard.I, opts.Shard.N)
		if err := os.MkdirAll(filepath.Join(opts.Out, ShardsDir), 0o755); err == nil {
			writeJSON(filepath.Join(opts.Out, ShardsDir, name), sum)
		}
	}
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("sweep: interrupted with %d of %d cells done (%w); run the same command again to go on", len(sum.Done), len(mine), err)
	}
	var errs []error
	if len(sum.Failed) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s (see failed.json in their directories; a new run retries them)", ErrFailed, strings.Join(sum.Failed, ", ")))
	}
	if len(sum.Busy) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s (their directories are locked; run again once that process is done)", ErrBusy, strings.Join(sum.Busy, ", ")))
	}
	return sum, errors.Join(errs...)
}

type runner struct {
	spec  Spec
	opts  Options
	mu    sync.Mutex
	total int
	n     int
	sum   *Summary
}

func (r *runner) logf(format string, args ...any) {
	if r.opts.Log == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.opts.Log, "sweep: "+format+"\n", args...)
}

func (r *runner) count(f func(s *Summary)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.sum)
}

// run trains and evaluates one cell, recording its failure, if any.
func (r *runner) run(ctx context.Context, c Cell) {
	dir := filepath.Join(r.opts.Out, CellsDir, c.Name)
	// The cell's files, its training and its evaluations are this Run's
	// alone while it holds the lock.
	var lock *orchestrator.RunLock
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		lock, err = orchestrator.LockRun(dir)
	}
	if err == nil {
		err = r.cell(ctx, c, dir, lock)
	}
	defer lock.Unlock()
	switch {
	case err == nil:
		r.count(func(s *Summary) { s.Done = append(s.Done, c.Name) })
	case ctx.Err() != nil:
		r.logf("%s: interrupted; its checkpoint is saved", c.Name)
	case errors.Is(err, orchestrator.ErrLocked): // not ours to mark failed
		r.count(func(s *Summary) { s.Busy = append(s.Busy, c.Name) })
		r.logf("%s: skipped: %v", c.Name, err)
	default:
		r.count(func(s *Summary) { s.Failed = append(s.Failed, c.Name) })
		writeJSON(filepath.Join(dir, FailedFile), map[string]string{"error": err.Error(), "time": time.Now().UTC().Format(time.RFC3339)})
		r.logf("%s: FAILED: %v", c.Name, err)
	}
}

// cell trains and evaluates c in dir, whose lock Run holds.
func (r *runner) cell(ctx context.Context, c Cell, dir string, lock *orchestrator.RunLock) error {
	if !exists(filepath.Join(dir, CellFile)) { // checkCell vouched for an existing one
		if err := writeJSON(filepath.Join(dir, CellFile), c); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(dir, FailedFile))
	r.mu.Lock()
	r.n++
	k := r.n
	r.mu.Unlock()
	if exists(filepath.Join(dir, TrainedFile)) {
		r.count(func(s *Summary) { s.Skipped++ })
	} else {
		resume := exists(filepath.Join(dir, orchestrator.StateFile))
		verb := "training"
		if resume {
			verb = "resuming"
		}
		r.logf("[%d/%d] %s: %s", k, r.total, c.Name, verb)
		f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		t0 := time.Now()
		err = r.opts.Train(ctx, c, dir, resume, lock, f)
		f.Close()
		if err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(dir, TrainedFile), trainedDoc{Finished: time.Now().UTC().Format(time.RFC3339),
			Seconds: time.Since(t0).Seconds(), Resumed: resume}); err != nil {
			return err
		}
		r.count(func(s *Summary) {
			if resume {
				s.Resumed++
			} else {
				s.Trained++
			}
		})
	}
	final, err := r.evalCached(ctx, c, dir, orchestrator.ModelFile, EvalFinal, nil)
	if err != nil {
		return err
	}
	best, err := r.evalCached(ctx, c, dir, orchestrator.BestFile, EvalBest, final)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("[%d/%d] %s: final clean %.1f%% robust %.1f%%", k, r.total, c.Name, 100*final.Report.Clean, 100*final.Report.WorstCase)
	if best != nil {
		msg += fmt.Sprintf(", best clean %.1f%% robust %.1f%%", 100*best.Report.Clean, 100*best.Report.WorstCase)
	}
	r.logf("%s", msg)
	return nil
}

// evalKey identifies an evaluation: the cached one is reused only if every
// field is equal.
type evalKey struct {
	Data    string `json:"data"`
	Attacks string `json:"attacks"`
	N       int    `json:"n"`
	Batch   int    `json:"batch"`
	Eps     string `json:"eps"`
	Seed    uint64 `json:"seed"`
	SHA256  string `json:"checkpoint_sha256"`
}

// evalDoc is eval-final.json and eval-best.json.
type evalDoc struct {
	Key        evalKey      `json:"key"`
	Checkpoint string       `json:"checkpoint"`
	SameAs     string       `json:"same_as,omitempty"` // best.onnx equals model.onnx: its report is copied
	Report     *eval.Report `json:"report"`
}

// evalCached evaluates dir/file unless cacheName already holds the same
// evaluation of the same bytes. A missing best.onnx (no probe) gives nil.
// When same (model.onnx's evaluation) is of identical bytes, it is reused.
func (r *runner) evalCached(ctx context.Context, c Cell, dir, file, cacheName string, same *evalDoc) (*evalDoc, error) {
	doc, fresh, err := evalCached(ctx, r.spec.Eval, r.opts.Eval, c, dir, file, cacheName, same)
	if fresh {
		r.count(func(s *Summary) { s.Evals++ })
	}
	return doc, err
}

// evalCached evaluates dir/file with fn (which evaluates as e says) unless
// cacheName already holds the same evaluation of the same bytes; fresh
// reports whether fn ran. A missing best.onnx (no probe) gives nil. When
// same is an evaluation of identical bytes with the same key, it is reused.
func evalCached(ctx context.Context, e EvalSpec, fn EvalFunc, c Cell, dir, file, cacheName string, same *evalDoc) (doc *evalDoc, fresh bool, err error) {
	path := filepath.Join(dir, file)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && file == orchestrator.BestFile {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	sum := sha256.Sum256(b)
	key := evalKey{Data: e.Data, Attacks: e.Attacks, N: e.N, Batch: e.Batch, Eps: c.Eps, Seed: c.Seed, SHA256: hex.EncodeToString(sum[:])}
	cache := filepath.Join(dir, cacheName)
	var old evalDoc
	if readJSON(cache, &old) == nil && old.Key == key && old.Report != nil {
		return &old, false, nil
	}
	doc = &evalDoc{Key: key, Checkpoint: file}
	if same != nil && same.Key == key {
		doc.SameAs, doc.Report = same.Checkpoint, same.Report
	} else {
		rep, err := fn(ctx, c, path)
		if err != nil {
			return nil, false, fmt.Errorf("evaluate %s: %w", file, err)
		}
		doc.Report, fresh = rep, true
	}
	return doc, fresh, writeJSON(cache, doc)
}

// checkCell refuses a cell directory whose cell.json holds other training
// flags: its run is not this cell's.
func checkCell(dir string, c Cell) error {
	var old Cell
	if err := readJSON(filepath.Join(dir, CellFile), &old); err != nil {
		return nil // new, or unreadable: cell writes it anew
	}
	if !slices.Equal(old.Args, c.Args) {
		return fmt.Errorf("sweep: %s holds a run with other flags (%s, now %s): remove it or choose another --out",
			dir, strings.Join(old.Args, " "), strings.Join(c.Args, " "))
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := onnx.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("sweep: %s: %w", path, err)
	}
	return nil
}
