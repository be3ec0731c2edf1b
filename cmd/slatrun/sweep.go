package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/orchestrator"
	"github.com/slatrun/slatrun/sweep"
)

func init() {
	register(command{name: "sweep", summary: "train and evaluate a grid of runs (methods × ε × seeds × …); report, plots, shards, Kubernetes", run: runSweep})
}

// sweepOwn are the training flags a sweep replaces with its own axes.
var sweepOwn = []string{"method", "eps", "seed"}

// runtimeFlagNames are the flags of runtimeFlags: how a cell runs, not
// what it computes, so they are not part of a cell's flags.
var runtimeFlagNames = func() []string {
	fs := pflag.NewFlagSet("runtime", pflag.ContinueOnError)
	fs.SortFlags = false // in declaration order
	new(runtimeFlags).add(fs)
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}()

const sweepSynopsis = `sweep --model M --data D --methods slat,fgsm,... --eps 0.1,0.2 --seeds 0,1 --epochs E [--grid FLAG=V1,V2]... [--variant 'FLAG=V ...']... -o|--out sweeps/NAME [training flags]
       slatrun sweep ... --shard I/N -o|--out DIR        run one shard's share of the cells
       slatrun sweep --merge DIR... [-o|--out DIR]       build the report from shard directories
       slatrun sweep ... --emit-k8s job.json --k8s-shards N --k8s-image IMG -o|--out NAME   write a Kubernetes Indexed Job`

func runSweep(args []string, stdout, stderr io.Writer) error {
	var f sweepFlags
	if err := f.parse(args, stderr); err != nil {
		return err
	}
	if f.merge {
		return f.runMerge(f.fs.Args(), stdout)
	}
	if f.fs.NArg() > 0 {
		return usagef("sweep: unexpected arguments %q (directories go with --merge)", f.fs.Args())
	}
	spec, rtArgs, err := f.spec()
	if err != nil {
		return err
	}
	if f.confirm != "" { // before hours of training, not after
		if _, err := eval.ParseAttacks(f.confirm); err != nil {
			return usagef("sweep: --confirm: %v", err)
		}
	}
	cells, err := spec.Cells()
	if err != nil {
		return usageErr(err)
	}
	if err := checkCells(cells, rtArgs); err != nil {
		return err
	}
	if f.out == "" {
		f.out = filepath.Join("sweeps", strings.TrimSuffix(filepath.Base(f.base.model), ".onnx"))
	}
	if f.emit != "" {
		return f.emitK8s(len(cells), stdout)
	}
	return f.run(spec, cells, rtArgs, stdout)
}

// sweepFlags are the flags of slatrun sweep: its own and the training
// flags every cell shares.
type sweepFlags struct {
	fs, tfs                      *pflag.FlagSet // all the flags; the training flags
	base                         trainFlags
	methods, eps, seeds, attacks string
	grid, variants, methodSeeds  []string
	testN, evalBatch, workers    int
	collapseShare, collapseClean float64
	out, shard, emit             string
	confirm, confirmSeeds        string
	confirmWorkers               int
	baselines                    string
	matchTol                     float64
	merge, partial               bool
	k8sShards                    int
	k8sImage, k8sCommand         string
	k8sName, k8sPVC, k8sMount    string
	k8sCPU, k8sMem               string
}

// parse defines the flags and parses the command line.
func (f *sweepFlags) parse(args []string, stderr io.Writer) error {
	fs := newFlags("sweep", sweepSynopsis, stderr)
	f.fs = fs
	fs.StringVar(&f.methods, "methods", "slat,fgsm,fgsm-rs,n-fgsm,pgd-7", "comma-separated training methods: "+orchestrator.Methods)
	fs.StringVar(&f.eps, "eps", "", "comma-separated L∞ budgets in pixel units, e.g. 0.1,0.2 or 8/255 (required)")
	fs.StringVar(&f.seeds, "seeds", "0,1,2", "comma-separated seeds")
	fs.StringArrayVar(&f.methodSeeds, "method-seeds", nil, "METHOD=S1,S2: other seeds for one method (repeatable), e.g. pgd-7=0 for an expensive reference")
	fs.StringArrayVar(&f.grid, "grid", nil, "one more axis: [METHOD[+METHOD]:]FLAG=V1,V2 over any training flag (repeatable); latent-*, taps, domain-clip and input-start apply to slat only, noise-radius to n-fgsm only")
	fs.StringArrayVar(&f.variants, "variant", nil, "one more row beside the grid's product: [METHOD[+METHOD]:]FLAG=V[ FLAG=V]... (repeatable), e.g. 'latent-eta=8/255' or 'input-start=uniform latent-scale=range'")
	fs.StringVar(&f.attacks, "attacks", sweep.DefaultAttacks, "attacks on every final and best checkpoint, at the cell's ε (see slatrun eval)")
	fs.StringVar(&f.confirm, "confirm", "", "then evaluate the final checkpoint of the best setting of each method at each ε (highest mean robust accuracy) with these attacks, e.g. autoattack (with --merge too)")
	fs.IntVar(&f.confirmWorkers, "confirm-workers", -1, "--confirm: evaluations at once (-1: --workers; 0: evaluate nothing, report the cached ones)")
	fs.StringVar(&f.confirmSeeds, "confirm-seeds", "", "--confirm: the seeds whose checkpoints are confirmed, comma-separated (default: the sweep's first seed)")
	fs.StringVar(&f.baselines, "baselines", "fgsm-rs,gradalign", "the report compares every other method's settings with these methods at each ε (those in the grid; \"\": no comparison)")
	fs.Float64Var(&f.matchTol, "match-tol", 0.02, "the report's comparison: a setting matches a baseline if its mean final robust accuracy is at most this much below (0.02: two points)")
	fs.IntVar(&f.testN, "test-n", 1000, "evaluate on the first N test examples (0: all)")
	fs.IntVar(&f.evalBatch, "eval-batch", 250, "batch size of the eval graphs")
	fs.Float64Var(&f.collapseShare, "collapse-share", sweep.DefaultCollapse.RobustShare, "a run collapsed if its final robust accuracy is below this share of its clean accuracy (or the probe flagged it)")
	fs.Float64Var(&f.collapseClean, "collapse-min-clean", sweep.DefaultCollapse.MinClean, "… while that clean accuracy is at least this")
	fs.IntVar(&f.workers, "workers", 1, "cells trained at once (each with --threads ONNX Runtime threads)")
	fs.StringVarP(&f.out, "out", "o", "", "output directory: the sweep directory (default sweeps/MODEL)")
	fs.StringVar(&f.shard, "shard", "", "run only share I/N of the cells (I = env: from $JOB_COMPLETION_INDEX); merge the shards with --merge")
	fs.BoolVar(&f.merge, "merge", false, "build report.md/report.json/plots from the sweep or shard directories given as arguments (into --out, default the first)")
	fs.BoolVar(&f.partial, "partial", false, "with --merge: write the report even if cells are missing")
	fs.StringVar(&f.emit, "emit-k8s", "", "write a Kubernetes Indexed Job manifest (JSON, valid YAML) running the sweep as shards to this file (- for stdout), and run nothing")
	fs.IntVar(&f.k8sShards, "k8s-shards", 4, "--emit-k8s: number of shards (pods)")
	fs.StringVar(&f.k8sImage, "k8s-image", "slatrun:latest", "--emit-k8s: container image with slatrun and ONNX Runtime")
	fs.StringVar(&f.k8sCommand, "k8s-command", "slatrun", "--emit-k8s: the command that starts slatrun in the image (space-separated)")
	fs.StringVar(&f.k8sName, "k8s-name", "", "--emit-k8s: job name (default slatrun-sweep-<name of --out>)")
	fs.StringVar(&f.k8sPVC, "k8s-pvc", "slatrun-results", "--emit-k8s: PersistentVolumeClaim (ReadWriteMany) for the results")
	fs.StringVar(&f.k8sMount, "k8s-mount", "/results", "--emit-k8s: where the volume is mounted; the sweep writes to MOUNT/<name of --out>")
	fs.StringVar(&f.k8sCPU, "k8s-cpu", "2", "--emit-k8s: CPU request and limit of each pod")
	fs.StringVar(&f.k8sMem, "k8s-memory", "8Gi", "--emit-k8s: memory request and limit of each pod")
	limit(fs, nonNegative, "test-n")
	limit(fs, atLeastOne, "eval-batch", "workers", "k8s-shards")
	limit(fs, unit, "collapse-share", "collapse-min-clean", "match-tol")
	limit(fs, bound{lo: -1, hi: math.Inf(1), hint: "-1: as many as --workers"}, "confirm-workers")

	// The training flags, shared by every cell.
	f.tfs = pflag.NewFlagSet("train", pflag.ContinueOnError)
	f.base.add(f.tfs)
	f.tfs.VisitAll(func(fl *pflag.Flag) {
		if !slices.Contains(sweepOwn, fl.Name) {
			fs.AddFlag(fl)
		}
	})
	aliases(fs, trainAliases)
	return parse(fs, args)
}

// spec returns the grid and the flags every cell shares, and the runtime
// flags given (how the cells run, not part of a cell's flags).
func (f *sweepFlags) spec() (spec sweep.Spec, rtArgs []string, err error) {
	spec = sweep.Spec{Methods: splitList(f.methods), Eps: splitList(f.eps),
		Eval:     sweep.EvalSpec{Data: f.base.data, Attacks: f.attacks, N: f.testN, Batch: f.evalBatch},
		Collapse: sweep.CollapseRule{RobustShare: f.collapseShare, MinClean: f.collapseClean}}
	if len(spec.Eps) == 0 {
		return spec, nil, usagef("sweep: --eps is required, e.g. --eps 0.05,0.1,0.15,0.2")
	}
	if spec.Seeds, err = parseSeeds("--seeds", f.seeds); err != nil {
		return spec, nil, err
	}
	for _, ms := range f.methodSeeds {
		m, list, ok := strings.Cut(ms, "=")
		m = strings.ToLower(strings.TrimSpace(m))
		if !ok || m == "" || strings.TrimSpace(list) == "" {
			return spec, nil, usagef("sweep: --method-seeds %q: want METHOD=S1,S2, e.g. pgd-7=0", ms)
		}
		if _, dup := spec.MethodSeeds[m]; dup {
			return spec, nil, usagef("sweep: --method-seeds: %s is given twice", m)
		}
		seeds, err := parseSeeds("--method-seeds "+m, list)
		if err != nil {
			return spec, nil, err
		}
		if spec.MethodSeeds == nil {
			spec.MethodSeeds = map[string][]uint64{}
		}
		spec.MethodSeeds[m] = seeds
	}
	if spec.Axes, err = f.axes(); err != nil {
		return spec, nil, err
	}
	if spec.Variants, err = f.parseVariants(); err != nil {
		return spec, nil, err
	}
	f.fs.Visit(func(fl *pflag.Flag) {
		if f.tfs.Lookup(fl.Name) == nil || slices.Contains(sweepOwn, fl.Name) {
			return
		}
		arg := "--" + fl.Name + "=" + fl.Value.String()
		if slices.Contains(runtimeFlagNames, fl.Name) {
			rtArgs = append(rtArgs, arg)
		} else {
			spec.Base = append(spec.Base, arg)
		}
	})
	return spec, rtArgs, nil
}

// axes parses the --grid axes, each over a training flag not set for
// every cell.
func (f *sweepFlags) axes() ([]sweep.Axis, error) {
	var axes []sweep.Axis
	for _, g := range f.grid {
		a, err := sweep.ParseAxis(g)
		if err != nil {
			return nil, usageErr(err)
		}
		if err := f.checkVaried("--grid "+g, a.Flag); err != nil {
			return nil, err
		}
		axes = append(axes, a)
	}
	return axes, nil
}

// parseVariants parses the --variant rows, each over training flags not
// set for every cell.
func (f *sweepFlags) parseVariants() ([]sweep.Variant, error) {
	var out []sweep.Variant
	for _, s := range f.variants {
		v, err := sweep.ParseVariant(s)
		if err != nil {
			return nil, usageErr(err)
		}
		for _, st := range v.Settings {
			if err := f.checkVaried("--variant "+s, st.Flag); err != nil {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// checkVaried says why flag cannot vary over the cells (what names it, in
// the error), or nil.
func (f *sweepFlags) checkVaried(what, flag string) error {
	switch {
	case slices.Contains(sweepOwn, flag):
		return usagef("sweep: %s: --%s has its own flag (--%ss)", what, flag, flag)
	case slices.Contains(runtimeFlagNames, flag) || f.tfs.Lookup(flag) == nil:
		return usagef("sweep: %s: --%s is not a training flag of slatrun train", what, flag)
	case f.fs.Changed(flag):
		return usagef("sweep: %s: --%s is also set for every cell; give it once", what, flag)
	}
	return nil
}

// checkCells parses every cell's flags as slatrun train would; the
// first cell's errors are those of the flags every cell shares.
func checkCells(cells []sweep.Cell, rtArgs []string) error {
	if _, err := parseCell(cells[0].Args, rtArgs); err != nil {
		return err
	}
	for _, c := range cells[1:] {
		if _, err := parseCell(c.Args, rtArgs); err != nil {
			return fmt.Errorf("sweep: cell %s: %w", c.Name, err)
		}
	}
	return nil
}

// emitK8s writes the Kubernetes Indexed Job that runs the sweep's nCells
// cells as shards, and runs nothing.
func (f *sweepFlags) emitK8s(nCells int, stdout io.Writer) error {
	name := f.k8sName
	if name == "" {
		name = "slatrun-sweep-" + dnsName(filepath.Base(filepath.Clean(f.out)))
	}
	var jobArgs []string
	f.fs.Visit(func(fl *pflag.Flag) {
		switch {
		case fl.Name == "out" || fl.Name == "shard" || fl.Name == "emit-k8s" || strings.HasPrefix(fl.Name, "k8s-"):
		case fl.Name == "grid":
			for _, g := range f.grid {
				jobArgs = append(jobArgs, "--grid="+g)
			}
		case fl.Name == "variant":
			for _, v := range f.variants {
				jobArgs = append(jobArgs, "--variant="+v)
			}
		case fl.Name == "method-seeds":
			for _, v := range f.methodSeeds {
				jobArgs = append(jobArgs, "--method-seeds="+v)
			}
		default:
			jobArgs = append(jobArgs, "--"+fl.Name+"="+fl.Value.String())
		}
	})
	b, err := sweep.K8sJob(sweep.K8sOptions{Name: name, Shards: f.k8sShards, Image: f.k8sImage, Command: strings.Fields(f.k8sCommand),
		Args: jobArgs, PVC: f.k8sPVC, Mount: f.k8sMount, Dir: filepath.Base(filepath.Clean(f.out)), CPU: f.k8sCPU, Memory: f.k8sMem})
	if err != nil {
		return usageErr(err)
	}
	if f.emit == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := onnx.WriteFileAtomic(f.emit, b); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	dir := strings.TrimSuffix(f.k8sMount, "/") + "/" + filepath.Base(filepath.Clean(f.out))
	fmt.Fprintf(stdout, "wrote %s: Indexed Job %s, %d pods (%d cells, about %d each), results in PVC %s at %s\n"+
		"run it with: kubectl apply -f %s; then: slatrun sweep --merge %s (in a pod with the volume, or on a copy of it)\n",
		f.emit, name, f.k8sShards, nCells, (nCells+f.k8sShards-1)/f.k8sShards, f.k8sPVC, dir, f.emit, dir)
	return nil
}

// run trains and evaluates the cells of this shard, then (unless the
// sweep is sharded) writes the report. It returns the error of a failed
// or busy cell after the report.
func (f *sweepFlags) run(spec sweep.Spec, cells []sweep.Cell, rtArgs []string, stdout io.Writer) error {
	var shard sweep.Shard
	if f.shard != "" {
		var err error
		if shard, err = sweep.ParseShard(f.shard, os.Getenv); err != nil {
			return usageErr(err)
		}
	}
	if f.workers < 1 {
		return usagef("sweep: --workers must be at least 1")
	}
	rt := f.base.rt
	if err := rt.init(); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	open := sweep.CacheData(dataset.Open)
	evalFn, err := sweep.NewEvaluator(spec.Eval, rt.options(), open)
	if err != nil {
		return usageErr(err)
	}
	n := 0
	for _, c := range cells {
		if shard.Has(c) {
			n++
		}
	}
	fmt.Fprintf(stdout, "slatrun sweep: %d cells (%d in shard %s), %d workers → %s\n", len(cells), n, shard, f.workers, f.out)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := sweep.Run(ctx, spec, sweep.Options{Out: f.out, Workers: f.workers, Shard: shard, Log: stdout, Eval: evalFn,
		Train: func(ctx context.Context, c sweep.Cell, dir string, resume bool, lock *orchestrator.RunLock, log io.Writer) error {
			return trainCell(ctx, c, rtArgs, dir, resume, lock, log, open)
		}})
	if sum != nil {
		fmt.Fprintf(stdout, "sweep: %d cells: %d trained, %d resumed, %d already done; %d checkpoints evaluated\n",
			sum.Cells, sum.Trained, sum.Resumed, sum.Skipped, sum.Evals)
	}
	if err != nil && !errors.Is(err, sweep.ErrFailed) && !errors.Is(err, sweep.ErrBusy) {
		return err
	}
	if shard.N > 1 {
		fmt.Fprintf(stdout, "shard %s done in %s; once every shard is: slatrun sweep --merge DIR... (the shards' --out)\n", shard, f.out)
		return err
	}
	rep, cerr := sweep.Collect(f.out)
	if cerr != nil {
		return cerr
	}
	if cerr := f.confirmBest(ctx, rep, rt, open, stdout); cerr != nil {
		return cerr
	}
	if werr := f.writeReport(f.out, rep, stdout); werr != nil {
		return werr
	}
	return err
}

// parseCell parses a cell's training flags (and the runtime flags) as
// "slatrun train" does.
func parseCell(cellArgs, rtArgs []string) (*trainFlags, error) {
	fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tf := &trainFlags{}
	tf.add(fs)
	if err := fs.Parse(append(slices.Clone(cellArgs), rtArgs...)); err != nil {
		return nil, usagef("sweep: %v", err)
	}
	return tf, nil
}

// trainCell trains one cell into dir like "slatrun train --out dir
// --overwrite" (or --resume dir) would, under the lock the sweep holds.
func trainCell(ctx context.Context, c sweep.Cell, rtArgs []string, dir string, resume bool, lock *orchestrator.RunLock, log io.Writer, open sweep.OpenFunc) error {
	tf, err := parseCell(c.Args, rtArgs)
	if err != nil {
		return err
	}
	if err := tf.build(open); err != nil {
		return err
	}
	cfg := tf.cfg
	// A cell that is not resumed may hold the files of an attempt that
	// failed before its first checkpoint: they go.
	cfg.Out, cfg.Resume, cfg.Overwrite, cfg.Lock, cfg.Logger = dir, resume, !resume, lock, log
	tr, err := orchestrator.New(cfg)
	if err != nil {
		return err
	}
	defer tr.Close()
	if !resume {
		// So that "slatrun train --resume DIR" continues a cell, too.
		b, _ := json.Marshal(c.Args)
		if err := onnx.WriteFileAtomic(filepath.Join(dir, argsFile), b); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	res, err := tr.Run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "done: %d epochs, %d steps in %.1fs\n", len(res.Epochs), res.Steps, res.Seconds)
	return nil
}

// runMerge builds the report from sweep or shard directories (into --out,
// default the first), after the --confirm evaluations if asked.
func (f *sweepFlags) runMerge(dirs []string, stdout io.Writer) error {
	if len(dirs) == 0 {
		return usagef("sweep: --merge needs the sweep or shard directories as arguments")
	}
	out := f.out
	if out == "" {
		out = dirs[0]
	}
	rep, err := sweep.Collect(dirs...)
	if err != nil {
		return err
	}
	if len(rep.Missing) > 0 && !f.partial {
		return fmt.Errorf("sweep: %d of %d cells are not finished in %s: %s (run their shards again, or pass --partial)",
			len(rep.Missing), len(rep.Missing)+len(rep.Cells), strings.Join(dirs, ", "), strings.Join(rep.Missing, ", "))
	}
	if f.confirm != "" {
		rt := f.base.rt
		if err := rt.init(); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := f.confirmBest(ctx, rep, rt, sweep.CacheData(dataset.Open), stdout); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return f.writeReport(out, rep, stdout)
}

// confirmBest runs --confirm on rep (nothing without it): the attacks on
// the final checkpoints of the best setting of each method at each ε, for
// the --confirm-seeds, on --workers evaluators, with the sweep's test data.
func (f *sweepFlags) confirmBest(ctx context.Context, rep *sweep.Report, rt runtimeFlags, open sweep.OpenFunc, stdout io.Writer) error {
	if f.confirm == "" {
		return nil
	}
	seeds, err := parseSeeds("--confirm-seeds", f.confirmSeeds)
	if err != nil {
		return err
	}
	cs := sweep.ConfirmSpec{Attacks: f.confirm, Seeds: seeds}
	if len(cs.Seeds) == 0 && len(rep.Spec.Seeds) > 0 {
		cs.Seeds = rep.Spec.Seeds[:1]
	}
	e := rep.Spec.Eval
	e.Attacks = f.confirm
	fn, err := sweep.NewEvaluator(e, rt.options(), open)
	if err != nil {
		return usageErr(err)
	}
	workers := f.workers
	if f.confirmWorkers >= 0 {
		workers = f.confirmWorkers
	}
	return sweep.Confirm(ctx, rep, cs, e, fn, workers, stdout)
}

// writeReport writes the report files and prints the robust accuracy and
// collapse summary.
func (f *sweepFlags) writeReport(out string, rep *sweep.Report, stdout io.Writer) error {
	sweep.Compare(rep, splitList(f.baselines), f.matchTol)
	return writeReport(out, rep, stdout)
}

// writeReport writes the report files and prints the robust accuracy and
// collapse summary.
func writeReport(out string, rep *sweep.Report, stdout io.Writer) error {
	if err := sweep.WriteReport(out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-32s %8s %16s %16s %9s\n", "method, ε", "runs", "final clean %", "final robust %", "collapsed")
	for _, g := range rep.Groups {
		fmt.Fprintf(stdout, "%-32s %8d %16s %16s %9s\n", g.Variant+", "+g.Eps, g.Runs,
			meanStd(g.FinalClean), meanStd(g.FinalRobust), fmt.Sprintf("%d/%d", g.Collapsed, g.Runs))
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintf(stdout, "missing: %s\n", strings.Join(rep.Missing, ", "))
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s\n", filepath.Join(out, "report.md"), filepath.Join(out, "report.json"), filepath.Join(out, "plots"))
	return nil
}

func meanStd(s sweep.Stat) string {
	return fmt.Sprintf("%.1f ± %.1f", 100*s.Mean, 100*s.Std)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseSeeds parses a comma-separated list of seeds given by flag.
func parseSeeds(flag, list string) ([]uint64, error) {
	var seeds []uint64
	for _, s := range splitList(list) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, usagef("sweep: %s: %q is not a whole number ≥ 0", flag, s)
		}
		seeds = append(seeds, v)
	}
	return seeds, nil
}

// dnsName turns s into a DNS label fragment (lower case, [a-z0-9-]).
func dnsName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	if name == "" {
		name = "run"
	}
	return name
}
