package sweep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/orchestrator"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "sweep tests need ONNX Runtime (tools/install-ort.sh):", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// tinySpec is a grid of 2 methods × 2 ε × 2 seeds of the zoo mlp on
// synthetic 1×8×8 data; every cell trains for a fraction of a second.
func tinySpec() Spec {
	return Spec{Methods: []string{"slat", "fgsm"}, Eps: []string{"0.05", "0.1"}, Seeds: []uint64{0, 1},
		Base:     []string{"--model=mlp", "--data=synthetic:1x8x8", "--epochs=2"},
		Eval:     EvalSpec{Data: "synthetic:1x8x8", Attacks: "pgd-5", N: 64, Batch: 32},
		Collapse: DefaultCollapse}
}

// counter wraps a training function for the tests: it counts runs and
// resumes, and can cancel the sweep's context in the middle of a cell.
type counter struct {
	trains, resumes atomic.Int32
	cancelIn        string // cell name: cancel after its 3rd step
	cancel          context.CancelFunc
}

// train trains a cell of tinySpec directly (the CLI parses Cell.Args
// instead; here method, ε and seed are all that vary).
func (k *counter) train(ctx context.Context, c Cell, dir string, resume bool, lock *orchestrator.RunLock, log io.Writer) error {
	k.trains.Add(1)
	if resume {
		k.resumes.Add(1)
	}
	fwd, err := zoo.Build("mlp", zoo.Config{Seed: c.Seed})
	if err != nil {
		return err
	}
	full, err := dataset.Open("synthetic:1x8x8", "train", c.Seed)
	if err != nil {
		return err
	}
	train, held := dataset.Split(full, 100)
	cfg := orchestrator.DefaultConfig()
	cfg.Forward, cfg.Train, cfg.Holdout = fwd, train.Slice(0, 256), held
	cfg.Method, cfg.Eps, cfg.Seed, cfg.Epochs, cfg.Batch = c.Method, float32(c.EpsValue()), c.Seed, 2, 32
	cfg.LogEvery = 2
	cfg.Runtime = ort.Options{Threads: 1}
	cfg.Out, cfg.Resume, cfg.Overwrite, cfg.Lock, cfg.Logger = dir, resume, !resume, lock, log
	if c.Name == k.cancelIn && !resume {
		cfg.Hooks.OnStep = func(s orchestrator.StepInfo) error {
			if s.GlobalStep == 3 {
				k.cancel()
			}
			return nil
		}
	}
	tr, err := orchestrator.New(cfg)
	if err != nil {
		return err
	}
	defer tr.Close()
	_, err = tr.Run(ctx)
	return err
}

func newEval(t *testing.T, spec Spec) EvalFunc {
	t.Helper()
	f, err := NewEvaluator(spec.Eval, ort.Options{Threads: 1}, CacheData(dataset.Open))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestInterruptedSweepResumes interrupts a sweep in the middle of its
// second cell, then runs it again: the finished cell is neither trained nor
// evaluated again, the interrupted one resumes, and a third run does
// nothing at all.
func TestInterruptedSweepResumes(t *testing.T) {
	spec := tinySpec()
	cells, _ := spec.Cells()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	k := &counter{cancelIn: cells[1].Name, cancel: cancel}
	opts := Options{Out: dir, Workers: 1, Train: k.train, Eval: newEval(t, spec)}
	sum, err := Run(ctx, spec, opts)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("first run: %v, want an interruption", err)
	}
	if len(sum.Done) != 1 || sum.Done[0] != cells[0].Name || k.trains.Load() != 2 {
		t.Fatalf("first run: done %v, %d trainings; want only %s done after 2", sum.Done, k.trains.Load(), cells[0].Name)
	}
	half := filepath.Join(dir, CellsDir, cells[1].Name)
	if !exists(filepath.Join(half, orchestrator.StateFile)) || exists(filepath.Join(half, TrainedFile)) {
		t.Fatal("the interrupted cell should have a checkpoint and no trained.json")
	}
	finished := filepath.Join(dir, CellsDir, cells[0].Name)
	before := mtimes(t, finished)

	k2 := &counter{}
	opts.Train = k2.train
	sum, err = Run(context.Background(), spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := int32(len(cells))
	if k2.trains.Load() != n-1 || k2.resumes.Load() != 1 || sum.Skipped != 1 || sum.Resumed != 1 || sum.Trained != int(n-2) {
		t.Errorf("second run: %d trainings (%d resumed), summary %+v; want %d trainings, 1 resumed, 1 skipped", k2.trains.Load(), k2.resumes.Load(), sum, n-1)
	}
	if len(sum.Done) != len(cells) {
		t.Errorf("second run: %d of %d cells done", len(sum.Done), len(cells))
	}
	if after := mtimes(t, finished); after != before {
		t.Errorf("the finished cell's files changed:\nbefore %s\nafter  %s", before, after)
	}
	// The resumed cell has both epochs in its metrics, once each.
	m, err := ReadMetrics(filepath.Join(half, orchestrator.MetricsFile))
	if err != nil || len(m.Epochs) != 2 || m.Epochs[0].Epoch != 1 || m.Epochs[1].Epoch != 2 {
		t.Errorf("resumed cell's metrics: %v, %+v", err, m)
	}

	k3 := &counter{}
	opts.Train = k3.train
	sum, err = Run(context.Background(), spec, opts)
	if err != nil || k3.trains.Load() != 0 || sum.Evals != 0 || sum.Skipped != len(cells) {
		t.Errorf("third run: %v, %d trainings, %+v; want nothing done", err, k3.trains.Load(), sum)
	}

	// Changing the evaluation re-evaluates (from the cache key), without
	// training.
	spec.Eval.Attacks = "fgsm"
	sum, err = Run(context.Background(), spec, Options{Out: dir, Workers: 2, Train: k3.train, Eval: newEval(t, spec)})
	if err != nil || k3.trains.Load() != 0 || sum.Evals != len(cells) {
		t.Errorf("new attacks: %v, %d trainings, %d evaluations; want 0 and %d (best.onnx equal to model.onnx reuses its result)", err, k3.trains.Load(), sum.Evals, len(cells))
	}

	// A cell directory that holds another run is refused.
	spec.Base = append(spec.Base, "--lr=0.1")
	if _, err := Run(context.Background(), spec, opts); err == nil || !strings.Contains(err.Error(), "other flags") {
		t.Errorf("changed flags: %v", err)
	}
}

// mtimes lists a directory's files with their modification times.
func mtimes(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s@%d ", e.Name(), info.ModTime().UnixNano())
	}
	return b.String()
}

// TestShardsMergeEqualsOneRun runs the grid once in one directory, and as 3
// shards at once (separate state, separate directories), and checks that
// the merged report equals the single one, number for number (training and
// eval times aside); then draws the plots.
func TestShardsMergeEqualsOneRun(t *testing.T) {
	spec := tinySpec()
	root := t.TempDir()
	one := filepath.Join(root, "one")
	k := &counter{}
	if _, err := Run(context.Background(), spec, Options{Out: one, Workers: 2, Train: k.train, Eval: newEval(t, spec)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	dirs := make([]string, 3)
	for i := range 3 {
		dirs[i] = filepath.Join(root, fmt.Sprintf("shard%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &counter{}
			_, errs[i] = Run(context.Background(), spec, Options{Out: dirs[i], Shard: Shard{i, 3}, Train: k.train, Eval: newEval(t, spec)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	partial, err := Collect(dirs[0])
	if err != nil || len(partial.Missing) == 0 {
		t.Errorf("one shard alone should miss cells: %v", err)
	}
	merged, err := Collect(dirs...)
	if err != nil {
		t.Fatal(err)
	}
	single, err := Collect(one)
	if err != nil {
		t.Fatal(err)
	}
	if len(single.Missing) != 0 || len(merged.Missing) != 0 || len(single.Cells) != 8 {
		t.Fatalf("missing cells: single %v, merged %v", single.Missing, merged.Missing)
	}
	a, b := withoutTimes(t, single), withoutTimes(t, merged)
	if a != b {
		t.Errorf("merged report differs from the single run's:\nsingle %s\nmerged %s", a, b)
	}
	var md1, md2 bytes.Buffer
	WriteMarkdown(&md1, single, nil)
	WriteMarkdown(&md2, merged, nil)
	if !strings.Contains(md1.String(), "| slat | ") || !strings.Contains(md1.String(), "Collapsed runs") {
		t.Errorf("report.md lacks its tables:\n%s", md1.String())
	}

	// The report and its plots, from the merged shards.
	out := filepath.Join(root, "merged")
	os.MkdirAll(out, 0o755)
	if err := WriteReport(out, merged); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"report.md", "report.json"} {
		if !exists(filepath.Join(out, f)) {
			t.Errorf("%s not written", f)
		}
	}
	for _, f := range []string{PlotRobustVsEps, PlotProbe, PlotTapGrads} {
		checkPNG(t, filepath.Join(out, "plots", f))
	}
	files, err := PlotRuns([]string{filepath.Join(one, CellsDir, single.Cells[0].Name), filepath.Join(one, CellsDir, single.Cells[7].Name)}, filepath.Join(root, "runplots"))
	if err != nil || len(files) != 2 {
		t.Fatalf("PlotRuns: %v %v", files, err)
	}
	for _, f := range files {
		checkPNG(t, f)
	}
}

// withoutTimes is the report as JSON with the wall-clock numbers zeroed.
func withoutTimes(t *testing.T, r *Report) string {
	t.Helper()
	c := *r
	c.Cells = append([]CellResult(nil), r.Cells...)
	for i := range c.Cells {
		cell := &c.Cells[i]
		cell.SecondsPerEpoch = 0
		f := *cell.Final
		f.Seconds = 0
		cell.Final = &f
		if cell.Best != nil {
			b := *cell.Best
			b.Seconds = 0
			cell.Best = &b
		}
		h := append([]EpochPoint(nil), cell.History...)
		for j := range h {
			h[j].Seconds = 0
		}
		cell.History = h
	}
	c.Groups = groups(c.Cells)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
		t.Errorf("%s is %v, too small", path, b)
	}
}

// TestCollapseRule checks both ways a run counts as collapsed on cells
// written by hand.
func TestCollapseRule(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, flagged bool, clean, robust float64) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		var lines bytes.Buffer
		for e := 1; e <= 3; e++ {
			em := orchestrator.EpochMetrics{Kind: "epoch", Epoch: e, GlobalStep: 10 * e, Seconds: 1,
				Probe: &orchestrator.ProbeResult{Clean: 0.8, Robust: 0.5}, Best: e == 1, Catastrophic: flagged && e == 3}
			b, _ := json.Marshal(em)
			lines.Write(append(b, '\n'))
		}
		os.WriteFile(filepath.Join(d, orchestrator.MetricsFile), lines.Bytes(), 0o644)
		writeJSON(filepath.Join(d, TrainedFile), trainedDoc{})
		writeJSON(filepath.Join(d, EvalFinal), evalDoc{Report: evalReport(clean, robust)})
		return d
	}
	rule := DefaultCollapse
	for _, c := range []struct {
		name          string
		flagged       bool
		clean, robust float64
		want          bool
		why           string
	}{
		{"healthy", false, 0.85, 0.6, false, ""},
		{"probe", true, 0.85, 0.6, true, "probe flagged epoch 3"},
		{"first-epoch", false, 0.4, 0.0, true, "final robust"},
		{"chance", false, 0.1, 0.0, false, ""}, // never learned: not a collapse
		{"weak-but-robust", false, 0.5, 0.06, false, ""},
	} {
		r, err := loadCell(write(c.name, c.flagged, c.clean, c.robust), Cell{Name: c.name, Method: "fgsm", Eps: "0.1"}, rule)
		if err != nil || r == nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Collapsed != c.want || !strings.Contains(r.Why, c.why) {
			t.Errorf("%s: collapsed %v (%s), want %v", c.name, r.Collapsed, r.Why, c.want)
		}
		if r.Epochs != 3 || r.SecondsPerEpoch != 1 || r.Best != nil || r.Final.Epoch != 3 {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
}

func evalReport(clean, robust float64) *eval.Report {
	return &eval.Report{N: 100, Clean: clean, WorstCase: robust, Attacks: []eval.AttackResult{{AttackSpec: eval.AttackSpec{Name: "pgd-20"}, Accuracy: robust}}}
}

// TestBusyCellIsSkipped runs a sweep while another holder has a cell's
// lock: that cell is skipped, neither trained nor marked failed, and Run
// says so; the next Run trains it.
func TestBusyCellIsSkipped(t *testing.T) {
	spec := tinySpec()
	spec.Methods, spec.Seeds = []string{"fgsm"}, []uint64{0}
	cells, _ := spec.Cells()
	dir := t.TempDir()
	busy := filepath.Join(dir, CellsDir, cells[0].Name)
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := orchestrator.LockRun(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	k := &counter{}
	opts := Options{Out: dir, Workers: 2, Train: k.train, Eval: newEval(t, spec)}
	sum, err := Run(context.Background(), spec, opts)
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrFailed) || !slices.Equal(sum.Busy, []string{cells[0].Name}) ||
		len(sum.Done) != len(cells)-1 || k.trains.Load() != int32(len(cells)-1) {
		t.Fatalf("with a busy cell: %v, %d trainings, %+v; want ErrBusy for %s only", err, k.trains.Load(), sum, cells[0].Name)
	}
	if ents, _ := os.ReadDir(busy); len(ents) != 1 || ents[0].Name() != orchestrator.LockFile {
		t.Errorf("the busy cell's directory was written to: %v", ents)
	}
	lock.Unlock()
	sum, err = Run(context.Background(), spec, opts)
	if err != nil || sum.Trained != 1 || sum.Skipped != len(cells)-1 {
		t.Errorf("once free: %v, %+v; want the one cell trained", err, sum)
	}
}
