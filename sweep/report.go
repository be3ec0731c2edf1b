package sweep

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/orchestrator"
)

// CollapseRule defines a collapsed run (catastrophic overfitting). A run
// collapsed when
//
//   - the orchestrator flagged catastrophic overfitting in any epoch (its
//     held-out PGD probe fell below ProbeConfig.Collapse times its best and
//     by at least ProbeConfig.Floor while clean accuracy held), or
//   - at the end, the final checkpoint's robust accuracy on the test images
//     is below RobustShare times its clean accuracy while that clean
//     accuracy is at least MinClean: the model still classifies but almost
//     nothing it classifies survives the attack. This catches a collapse in
//     the first epoch, which the probe cannot see (it has no earlier best to
//     fall from).
//
// A run that did not collapse decayed (CellResult.Decayed) when its final
// probe robust accuracy lies orchestrator.SlowDecayDrop (15 points) or more
// below its best probe robust accuracy: robustness lost slowly, over
// epochs, which neither rule above sees. The report counts such runs apart
// from collapsed ones.
type CollapseRule struct {
	RobustShare float64 `json:"robust_share"`
	MinClean    float64 `json:"min_clean"`
}

// DefaultCollapse is robust < 0.1 × clean with clean ≥ 0.2 (twice chance
// for 10 classes).
var DefaultCollapse = CollapseRule{RobustShare: 0.1, MinClean: 0.2}

// Report is a sweep's results: every cell, and the groups of cells that
// differ only in their seed.
type Report struct {
	Spec    Spec         `json:"spec"`
	Command string       `json:"command"`
	Cells   []CellResult `json:"cells"`
	Groups  []Group      `json:"groups"`
	// Missing lists the cells of the grid with no finished result in any
	// directory (not trained or not evaluated yet, or failed).
	Missing []string `json:"missing,omitempty"`
	// Confirm and Confirmed are the stronger evaluation of the best
	// setting of each method at each ε, when one was run (Confirm).
	Confirm   *ConfirmSpec   `json:"confirm,omitempty"`
	Confirmed []Confirmation `json:"confirmed,omitempty"`
	// Unconfirmed are the cells Confirm chose but did not evaluate (it was
	// told to report the cached evaluations only).
	Unconfirmed []string `json:"unconfirmed,omitempty"`
	// Against compares the settings with baseline methods (Compare).
	Against *Against `json:"against,omitempty"`
	// Dirs are where each cell was found (not in report.json, which is the
	// same whether the sweep ran in one directory or in shards).
	Dirs map[string]string `json:"-"`
}

// CellResult is one finished cell.
type CellResult struct {
	Cell
	Epochs int `json:"epochs"`
	// SecondsPerEpoch is the mean training time of an epoch, without the
	// probe (metrics.jsonl's "seconds").
	SecondsPerEpoch float64 `json:"seconds_per_epoch"`
	// Final is model.onnx's evaluation; Best is best.onnx's (nil without a
	// probe).
	Final *Checkpoint `json:"final"`
	Best  *Checkpoint `json:"best,omitempty"`
	// History is the per-epoch training accuracy, probe and SLAT tap
	// gradients from metrics.jsonl.
	History []EpochPoint `json:"history"`
	// Flagged is the first epoch the orchestrator flagged as catastrophic
	// overfitting (0: none).
	Flagged int `json:"flagged_epoch,omitempty"`
	// Collapsed applies the CollapseRule; Why says which part fired.
	Collapsed bool   `json:"collapsed"`
	Why       string `json:"why,omitempty"`
	// Decayed is set, for a run that did not collapse, when its final
	// probe robust accuracy is orchestrator.SlowDecayDrop or more below its
	// best (a slow decay); DecayWhy gives the numbers.
	Decayed  bool   `json:"decayed,omitempty"`
	DecayWhy string `json:"decay_why,omitempty"`
}

// Checkpoint is the evaluation of one checkpoint: clean accuracy, the
// robust accuracy (the worst case over the attacks) and each attack's.
type Checkpoint struct {
	Epoch   int                `json:"epoch"`
	N       int                `json:"n"`
	Clean   float64            `json:"clean"`
	Robust  float64            `json:"robust"`
	Attacks map[string]float64 `json:"attacks"`
	Seconds float64            `json:"eval_seconds"`
}

// EpochPoint is one epoch of a run.
type EpochPoint struct {
	Epoch        int                `json:"epoch"`
	Seconds      float64            `json:"seconds"`
	Loss         float64            `json:"loss"`
	Accuracy     float64            `json:"accuracy"`
	Probe        bool               `json:"probe"`
	ProbeClean   float64            `json:"probe_clean"`
	ProbeRobust  float64            `json:"probe_robust"`
	Best         bool               `json:"best,omitempty"`
	Catastrophic bool               `json:"catastrophic,omitempty"`
	Decayed      bool               `json:"probe_decay,omitempty"`
	TapGradL1    map[string]float64 `json:"tap_grad_l1,omitempty"`
}

// Stat is a mean and a sample standard deviation (n−1; 0 for one value).
type Stat struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	N    int     `json:"n"`
}

// Group is the cells of one method variant and ε, over seeds.
type Group struct {
	Variant  string    `json:"variant"`
	Method   string    `json:"method"`
	Axes     []Setting `json:"axes,omitempty"`
	Eps      string    `json:"eps"`
	EpsValue float64   `json:"eps_value"`
	Seeds    []uint64  `json:"seeds"`

	FinalClean      Stat  `json:"final_clean"`
	FinalRobust     Stat  `json:"final_robust"`
	BestClean       *Stat `json:"best_clean,omitempty"`
	BestRobust      *Stat `json:"best_robust,omitempty"`
	SecondsPerEpoch Stat  `json:"seconds_per_epoch"`
	Collapsed       int   `json:"collapsed"`
	Decayed         int   `json:"decayed"`
	Runs            int   `json:"runs"`
}

func stat(v []float64) Stat {
	s := Stat{N: len(v)}
	if len(v) == 0 {
		return s
	}
	for _, x := range v {
		s.Mean += x
	}
	s.Mean /= float64(len(v))
	if len(v) > 1 {
		var ss float64
		for _, x := range v {
			ss += (x - s.Mean) * (x - s.Mean)
		}
		s.Std = math.Sqrt(ss / float64(len(v)-1))
	}
	return s
}

// Collect builds the report of the sweep in dirs: one sweep directory, or
// the directories of its shards (which must hold the same grid). Each cell
// is taken from the first directory where it finished.
func Collect(dirs ...string) (*Report, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("sweep: Collect: no directories")
	}
	var ref sweepDoc
	for i, d := range dirs {
		var doc sweepDoc
		if err := readJSON(filepath.Join(d, SweepFile), &doc); err != nil {
			return nil, fmt.Errorf("sweep: %s is not a sweep directory: %w", d, err)
		}
		if i == 0 {
			ref = doc
			continue
		}
		if !sameGrid(ref.Cells, doc.Cells) {
			return nil, fmt.Errorf("sweep: %s holds another grid than %s (a shard of another sweep?)", d, dirs[0])
		}
	}
	rep := &Report{Spec: ref.Spec, Command: ref.Spec.Command(), Dirs: map[string]string{}}
	for _, c := range ref.Cells {
		var res *CellResult
		for _, d := range dirs {
			dir := filepath.Join(d, CellsDir, c.Name)
			r, err := loadCell(dir, c, ref.Spec.Collapse)
			if err != nil {
				return nil, err
			}
			if r != nil {
				res = r
				rep.Dirs[c.Name] = dir
				break
			}
		}
		if res == nil {
			rep.Missing = append(rep.Missing, c.Name)
			continue
		}
		rep.Cells = append(rep.Cells, *res)
	}
	rep.Groups = groups(rep.Cells)
	return rep, nil
}

func sameGrid(a, b []Cell) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !slices.Equal(a[i].Args, b[i].Args) {
			return false
		}
	}
	return true
}

// loadCell reads a finished cell (nil if it has not finished in dir).
func loadCell(dir string, c Cell, rule CollapseRule) (*CellResult, error) {
	if !exists(filepath.Join(dir, TrainedFile)) || !exists(filepath.Join(dir, EvalFinal)) {
		return nil, nil
	}
	var final, best evalDoc
	if err := readJSON(filepath.Join(dir, EvalFinal), &final); err != nil {
		return nil, err
	}
	res := &CellResult{Cell: c}
	hist, err := ReadMetrics(filepath.Join(dir, orchestrator.MetricsFile))
	if err != nil {
		return nil, err
	}
	bestEpoch := 0
	var secs float64
	for _, e := range hist.Epochs {
		p := EpochPoint{Epoch: e.Epoch, Seconds: e.Seconds, Loss: e.Loss, Accuracy: e.Accuracy,
			Best: e.Best, Catastrophic: e.Catastrophic, Decayed: e.Decayed, TapGradL1: e.TapGradL1}
		if e.Probe != nil {
			p.Probe, p.ProbeClean, p.ProbeRobust = true, e.Probe.Clean, e.Probe.Robust
		}
		if e.Best {
			bestEpoch = e.Epoch
		}
		if e.Catastrophic && res.Flagged == 0 {
			res.Flagged = e.Epoch
		}
		secs += e.Seconds
		res.History = append(res.History, p)
	}
	res.Epochs = len(hist.Epochs)
	if res.Epochs > 0 {
		res.SecondsPerEpoch = secs / float64(res.Epochs)
	}
	res.Final = checkpoint(&final, res.Epochs)
	if readJSON(filepath.Join(dir, EvalBest), &best) == nil && best.Report != nil {
		res.Best = checkpoint(&best, bestEpoch)
	}
	classify(res, rule)
	return res, nil
}

// classify applies the collapse rules to a loaded cell (Flagged, Final and
// History set): Collapsed by the CollapseRule, or else Decayed when the
// last probe lies orchestrator.SlowDecayDrop or more below the best one.
func classify(res *CellResult, rule CollapseRule) {
	f := res.Final
	switch {
	case res.Flagged > 0:
		res.Collapsed, res.Why = true, fmt.Sprintf("probe flagged epoch %d", res.Flagged)
	case f != nil && f.Clean >= rule.MinClean && f.Robust < rule.RobustShare*f.Clean:
		res.Collapsed, res.Why = true, fmt.Sprintf("final robust %.1f%% < %.2g × clean %.1f%%", 100*f.Robust, rule.RobustShare, 100*f.Clean)
	}
	if res.Collapsed {
		return
	}
	best, bestEpoch, last, lastEpoch := -1.0, 0, 0.0, 0
	for _, e := range res.History {
		if !e.Probe {
			continue
		}
		if e.ProbeRobust > best {
			best, bestEpoch = e.ProbeRobust, e.Epoch
		}
		last, lastEpoch = e.ProbeRobust, e.Epoch
	}
	if lastEpoch > 0 && orchestrator.SlowDecay(best, last) {
		res.Decayed = true
		res.DecayWhy = fmt.Sprintf("final probe robust %.1f%% (epoch %d) is %.1f points below the best, %.1f%% (epoch %d)",
			100*last, lastEpoch, 100*(best-last), 100*best, bestEpoch)
	}
}

func checkpoint(d *evalDoc, epoch int) *Checkpoint {
	r := d.Report
	cp := &Checkpoint{Epoch: epoch, N: r.N, Clean: r.Clean, Robust: r.WorstCase, Attacks: map[string]float64{}, Seconds: r.Seconds}
	if len(r.Attacks) == 0 {
		cp.Robust = r.Clean
	}
	for _, a := range r.Attacks {
		cp.Attacks[a.Name] = a.Accuracy
	}
	return cp
}

// groups aggregates the cells over seeds, in grid order.
func groups(cells []CellResult) []Group {
	var out []Group
	index := map[string]int{}
	members := map[string][]CellResult{}
	for _, c := range cells {
		k := c.Variant() + "\x00" + c.Eps
		if _, ok := index[k]; !ok {
			index[k] = len(out)
			out = append(out, Group{Variant: c.Variant(), Method: c.Method, Axes: c.Axes, Eps: c.Eps, EpsValue: c.EpsValue()})
		}
		members[k] = append(members[k], c)
	}
	for i := range out {
		g := &out[i]
		ms := members[g.Variant+"\x00"+g.Eps]
		var fc, fr, bc, br, sp []float64
		for _, c := range ms {
			g.Seeds = append(g.Seeds, c.Seed)
			fc, fr = append(fc, c.Final.Clean), append(fr, c.Final.Robust)
			if c.Best != nil {
				bc, br = append(bc, c.Best.Clean), append(br, c.Best.Robust)
			}
			sp = append(sp, c.SecondsPerEpoch)
			if c.Collapsed {
				g.Collapsed++
			}
			if c.Decayed {
				g.Decayed++
			}
		}
		g.Runs = len(ms)
		g.FinalClean, g.FinalRobust, g.SecondsPerEpoch = stat(fc), stat(fr), stat(sp)
		if len(bc) > 0 {
			b1, b2 := stat(bc), stat(br)
			g.BestClean, g.BestRobust = &b1, &b2
		}
	}
	return out
}

// Metrics is a run's metrics.jsonl.
type Metrics struct {
	Epochs []orchestrator.EpochMetrics
	Steps  []orchestrator.StepMetrics
}

// ReadMetrics reads a metrics.jsonl file.
func ReadMetrics(path string) (*Metrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	m := &Metrics{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var kind struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(line, &kind); err != nil {
			if torn(b, line) {
				break // a crash mid-append; the orchestrator drops it on resume too
			}
			return nil, fmt.Errorf("sweep: %s:%d: %w", path, n, err)
		}
		switch kind.Kind {
		case "epoch":
			var e orchestrator.EpochMetrics
			if err := json.Unmarshal(line, &e); err != nil {
				return nil, fmt.Errorf("sweep: %s:%d: %w", path, n, err)
			}
			m.Epochs = append(m.Epochs, e)
		case "step":
			var s orchestrator.StepMetrics
			if err := json.Unmarshal(line, &s); err != nil {
				return nil, fmt.Errorf("sweep: %s:%d: %w", path, n, err)
			}
			m.Steps = append(m.Steps, s)
		}
	}
	return m, sc.Err()
}

// torn reports whether line is the last line of b and b does not end with
// a newline: what a crash in the middle of an append leaves.
func torn(b, line []byte) bool {
	return len(b) > 0 && b[len(b)-1] != '\n' && bytes.HasSuffix(b, line)
}

// Command is the "slatrun sweep" command line of the spec (without --out
// and the options that do not change results).
func (s *Spec) Command() string {
	parts := []string{"slatrun", "sweep"}
	parts = append(parts, s.Base...)
	parts = append(parts, "--methods="+strings.Join(s.Methods, ","), "--eps="+strings.Join(s.Eps, ","))
	parts = append(parts, "--seeds="+joinSeeds(s.Seeds))
	for _, m := range slices.Sorted(maps.Keys(s.MethodSeeds)) {
		parts = append(parts, "--method-seeds="+m+"="+joinSeeds(s.MethodSeeds[m]))
	}
	for _, a := range s.Axes {
		parts = append(parts, "--grid="+a.String())
	}
	for _, v := range s.Variants {
		parts = append(parts, "--variant="+v.String())
	}
	parts = append(parts, "--attacks="+s.Eval.Attacks, fmt.Sprintf("--test-n=%d", s.Eval.N))
	for i, p := range parts {
		if strings.ContainsAny(p, " ;|&*?'\"$()<>") {
			parts[i] = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
		}
	}
	return strings.Join(parts, " ")
}

// WriteReport writes report.json, report.md and the plots (plots/*.png)
// into dir.
func WriteReport(dir string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "report.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	plots, err := PlotReport(rep, filepath.Join(dir, "plots"))
	if err != nil {
		return err
	}
	var md bytes.Buffer
	WriteMarkdown(&md, rep, plots)
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "report.md"), md.Bytes()); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

func pct(s Stat) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.1f", 100*s.Mean)
	}
	return fmt.Sprintf("%.1f ± %.1f", 100*s.Mean, 100*s.Std)
}

// WriteMarkdown writes report.md; plots are the PNG files to show, relative
// to the report.
func WriteMarkdown(w io.Writer, rep *Report, plots []string) {
	s := &rep.Spec
	fmt.Fprintf(w, "# Sweep report\n\n")
	fmt.Fprintf(w, "```\n%s\n```\n\n", rep.Command)
	variants, eps := axesOf(rep.Groups)
	fmt.Fprintf(w, "%d runs finished", len(rep.Cells))
	if len(rep.Missing) > 0 {
		fmt.Fprintf(w, ", **%d missing** (%s)", len(rep.Missing), strings.Join(rep.Missing, ", "))
	}
	fmt.Fprintf(w, ": %d method variants × %d ε × %d seeds", len(variants), len(eps), len(s.Seeds))
	for _, m := range s.Methods {
		if seeds, ok := s.MethodSeeds[m]; ok {
			fmt.Fprintf(w, " (%s: seeds %s)", m, joinSeeds(seeds))
		}
	}
	fmt.Fprintf(w, ". Evaluation: %s at the run's ε on the first %d test images of %s, "+
		"starts seeded with the run's seed; robust accuracy is the worst case over the attacks. "+
		"Accuracies in %%, mean ± sample std over seeds.\n\n",
		s.Eval.Attacks, s.Eval.N, s.Eval.Data)

	table := func(title string, get func(g *Group) string) {
		fmt.Fprintf(w, "## %s\n\n| method |", title)
		for _, e := range eps {
			fmt.Fprintf(w, " ε = %s |", e)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(eps)))
		for _, v := range variants {
			fmt.Fprintf(w, "| %s |", v)
			for _, e := range eps {
				cell := "–"
				if g := findGroup(rep.Groups, v, e); g != nil {
					cell = get(g)
				}
				fmt.Fprintf(w, " %s |", cell)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	table("Robust accuracy, final checkpoint (model.onnx)", func(g *Group) string { return pct(g.FinalRobust) })
	table("Clean accuracy, final checkpoint", func(g *Group) string { return pct(g.FinalClean) })
	table("Robust accuracy, best checkpoint (best.onnx, chosen by the held-out probe)", func(g *Group) string {
		if g.BestRobust == nil {
			return "–"
		}
		return pct(*g.BestRobust)
	})
	table("Clean accuracy, best checkpoint", func(g *Group) string {
		if g.BestClean == nil {
			return "–"
		}
		return pct(*g.BestClean)
	})
	table("Training time, seconds per epoch (without the probe)", func(g *Group) string {
		if g.SecondsPerEpoch.N > 1 {
			return secs(g.SecondsPerEpoch.Mean) + " ± " + secs(g.SecondsPerEpoch.Std)
		}
		return secs(g.SecondsPerEpoch.Mean)
	})
	table("Collapsed runs (of the seeds)", func(g *Group) string {
		if g.Collapsed > 0 {
			return fmt.Sprintf("**%d/%d**", g.Collapsed, g.Runs)
		}
		return fmt.Sprintf("0/%d", g.Runs)
	})

	table("Slowly decayed runs (of the seeds; not counted as collapsed)", func(g *Group) string {
		if g.Decayed > 0 {
			return fmt.Sprintf("**%d/%d**", g.Decayed, g.Runs)
		}
		return fmt.Sprintf("0/%d", g.Runs)
	})

	fmt.Fprintf(w, "## Where each method collapsed\n\n")
	for _, v := range variants {
		var at, slow []string
		for _, e := range eps {
			g := findGroup(rep.Groups, v, e)
			if g != nil && g.Collapsed > 0 {
				at = append(at, fmt.Sprintf("ε = %s (%d/%d runs)", e, g.Collapsed, g.Runs))
			}
			if g != nil && g.Decayed > 0 {
				slow = append(slow, fmt.Sprintf("ε = %s (%d/%d runs)", e, g.Decayed, g.Runs))
			}
		}
		line := "no collapse"
		if len(at) > 0 {
			line = "collapsed at " + strings.Join(at, ", ")
		}
		if len(slow) > 0 {
			line += "; slow decay at " + strings.Join(slow, ", ")
		}
		fmt.Fprintf(w, "- %s: %s\n", v, line)
	}
	fmt.Fprintf(w, "\nA run collapsed when the orchestrator flagged catastrophic overfitting in an epoch "+
		"(its held-out PGD probe fell below %.2g× its best so far, by at least %.2g, while clean accuracy held), "+
		"or when the final checkpoint's robust accuracy on the test images is below %.2g × its clean accuracy "+
		"while that clean accuracy is at least %.0f%% (the model still classifies, but almost nothing survives the attack; "+
		"this also catches a collapse in the first epoch, which the probe cannot see). "+
		"A run that did not collapse **decayed slowly** when its final probe robust accuracy is %.0f points or more below "+
		"its best probe robust accuracy (robustness lost over epochs rather than at once).\n\n",
		probeDefault.Collapse, probeDefault.Floor, s.Collapse.RobustShare, 100*s.Collapse.MinClean, 100*orchestrator.SlowDecayDrop)

	writeAgainst(w, rep)
	writeConfirmed(w, rep)

	if len(plots) > 0 {
		fmt.Fprintf(w, "## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(p), ".png"), filepath.ToSlash(p))
		}
	}

	fmt.Fprintf(w, "## Runs\n\n| run | epochs | s/epoch | final clean | final robust | best epoch | best clean | best robust | probe robust by epoch | collapsed |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, c := range rep.Cells {
		bestE, bestC, bestR := "–", "–", "–"
		if c.Best != nil {
			bestE, bestC, bestR = strconv.Itoa(c.Best.Epoch), fmt.Sprintf("%.1f", 100*c.Best.Clean), fmt.Sprintf("%.1f", 100*c.Best.Robust)
		}
		var probe []string
		for _, e := range c.History {
			if e.Probe {
				probe = append(probe, fmt.Sprintf("%.0f", 100*e.ProbeRobust))
			}
		}
		col := "no"
		switch {
		case c.Collapsed:
			col = "**yes**: " + c.Why
		case c.Decayed:
			col = "**slow decay**: " + c.DecayWhy
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.1f | %.1f | %s | %s | %s | %s | %s |\n", c.Name, c.Epochs, secs(c.SecondsPerEpoch),
			100*c.Final.Clean, 100*c.Final.Robust, bestE, bestC, bestR, strings.Join(probe, " → "), col)
	}
	fmt.Fprintln(w)
}

// writeConfirmed writes the confirmation table, if there is one: by ε,
// then in grid order.
func writeConfirmed(w io.Writer, rep *Report) {
	if rep.Confirm == nil {
		return
	}
	cs, s := rep.Confirm, &rep.Spec
	fmt.Fprintf(w, "## Confirmation: %s on the best setting of each method\n\n", cs.Attacks)
	fmt.Fprintf(w, "For each method and ε, the setting with the highest mean final robust accuracy above (%s, over all "+
		"seeds), its final checkpoint of seed %s, on the same %d test images; %s starts seeded with the run's seed. "+
		"Accuracies in %%.\n\n", s.Eval.Attacks, joinSeeds(cs.Seeds), s.Eval.N, cs.Attacks)
	rows := slices.Clone(rep.Confirmed)
	slices.SortStableFunc(rows, func(a, b Confirmation) int { return cmp.Compare(a.EpsValue, b.EpsValue) })
	fmt.Fprintf(w, "| ε | method | best setting | seed | clean | %s | %s |\n|---|---|---|---:|---:|---:|---:|\n", s.Eval.Attacks, cs.Attacks)
	for _, c := range rows {
		setting := strings.TrimSpace(strings.TrimPrefix(c.Variant, c.Method))
		if setting == "" {
			setting = "(defaults)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.1f | %.1f | %.1f |\n", c.Eps, c.Method, setting, c.Seed, 100*c.Clean, 100*c.Robust, 100*c.Confirmed)
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "| – | no method has finished every seed of every setting at any ε yet | | | | | |\n")
	}
	fmt.Fprintln(w)
	if len(rep.Unconfirmed) > 0 {
		fmt.Fprintf(w, "Not evaluated yet: %s.\n\n", strings.Join(rep.Unconfirmed, ", "))
	}
}

// joinSeeds writes seeds as a comma-separated list.
func joinSeeds(seeds []uint64) string {
	s := make([]string, len(seeds))
	for i, v := range seeds {
		s[i] = strconv.FormatUint(v, 10)
	}
	return strings.Join(s, ",")
}

// secs formats seconds: whole seconds from 100 on, tenths from 1, else
// thousandths.
func secs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// probeDefault is the orchestrator's definition of a flagged epoch, which
// "slatrun train" does not change.
var probeDefault = orchestrator.DefaultConfig().Probe

// axesOf returns the report's rows (variants) and columns (ε) in order.
func axesOf(gs []Group) (variants, eps []string) {
	for _, g := range gs {
		if !slices.Contains(variants, g.Variant) {
			variants = append(variants, g.Variant)
		}
		if !slices.Contains(eps, g.Eps) {
			eps = append(eps, g.Eps)
		}
	}
	slices.SortStableFunc(eps, func(a, b string) int {
		va, _ := ParseNumber(a)
		vb, _ := ParseNumber(b)
		switch {
		case va < vb:
			return -1
		case va > vb:
			return 1
		}
		return 0
	})
	return variants, eps
}

func findGroup(gs []Group, variant, eps string) *Group {
	for i := range gs {
		if gs[i].Variant == variant && gs[i].Eps == eps {
			return &gs[i]
		}
	}
	return nil
}
