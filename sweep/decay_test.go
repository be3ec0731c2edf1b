package sweep

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/orchestrator"
)

// history makes a run's epochs from per-epoch (clean, robust) probes;
// flagged lists the epochs the orchestrator flagged catastrophic.
func history(probes [][2]float64, flagged ...int) []EpochPoint {
	var h []EpochPoint
	for i, p := range probes {
		e := EpochPoint{Epoch: i + 1, Probe: true, ProbeClean: p[0], ProbeRobust: p[1]}
		for _, f := range flagged {
			e.Catastrophic = e.Catastrophic || f == i+1
		}
		h = append(h, e)
	}
	return h
}

// decayCases are synthetic probe curves: the report must tell a sudden
// collapse, a slow decay and healthy runs (noisy ones included) apart.
var decayCases = []struct {
	name          string
	hist          []EpochPoint
	final         Checkpoint
	wantCollapsed bool
	wantDecayed   bool
	wantEpochs    []float64 // the plot's slow-decay markers
}{
	{"sudden collapse", history([][2]float64{{0.70, 0.40}, {0.72, 0.44}, {0.78, 0.02}, {0.80, 0.01}}, 3, 4),
		Checkpoint{Clean: 0.8, Robust: 0.01}, true, false, nil},
	{"slow decay", history([][2]float64{{0.70, 0.42}, {0.71, 0.38}, {0.73, 0.33}, {0.74, 0.29}, {0.76, 0.25}}),
		Checkpoint{Clean: 0.76, Robust: 0.24}, false, true, []float64{5}},
	{"decay then partial recovery", history([][2]float64{{0.70, 0.45}, {0.71, 0.28}, {0.72, 0.31}, {0.72, 0.32}}),
		Checkpoint{Clean: 0.72, Robust: 0.31}, false, false, []float64{2}},
	{"healthy", history([][2]float64{{0.60, 0.20}, {0.66, 0.28}, {0.70, 0.33}, {0.72, 0.36}}),
		Checkpoint{Clean: 0.72, Robust: 0.35}, false, false, nil},
	{"noisy but healthy", history([][2]float64{{0.65, 0.30}, {0.70, 0.38}, {0.66, 0.31}, {0.71, 0.41}, {0.69, 0.33}, {0.72, 0.39}}),
		Checkpoint{Clean: 0.72, Robust: 0.38}, false, false, nil},
	{"collapsed at the end, no probe flag", history([][2]float64{{0.50, 0.30}, {0.60, 0.10}}),
		Checkpoint{Clean: 0.60, Robust: 0.02}, true, false, []float64{2}},
}

func TestClassifyDecay(t *testing.T) {
	for _, tc := range decayCases {
		res := &CellResult{History: tc.hist, Final: &tc.final}
		for _, e := range tc.hist {
			if e.Catastrophic && res.Flagged == 0 {
				res.Flagged = e.Epoch
			}
		}
		classify(res, DefaultCollapse)
		if res.Collapsed != tc.wantCollapsed || res.Decayed != tc.wantDecayed {
			t.Errorf("%s: collapsed %v (%s), decayed %v (%s); want %v, %v", tc.name, res.Collapsed, res.Why, res.Decayed, res.DecayWhy, tc.wantCollapsed, tc.wantDecayed)
		}
		if res.Decayed && !strings.Contains(res.DecayWhy, "below the best") {
			t.Errorf("%s: DecayWhy %q", tc.name, res.DecayWhy)
		}
		var ems []orchestrator.EpochMetrics
		for _, e := range tc.hist {
			ems = append(ems, orchestrator.EpochMetrics{Epoch: e.Epoch, Catastrophic: e.Catastrophic,
				Probe: &orchestrator.ProbeResult{Clean: e.ProbeClean, Robust: e.ProbeRobust}})
		}
		if got := decayEpochs(ems); fmt.Sprint(got) != fmt.Sprint(tc.wantEpochs) {
			t.Errorf("%s: slow-decay markers at epochs %v, want %v", tc.name, got, tc.wantEpochs)
		}
	}
}

// TestReportShowsDecay: report.md and report.json mark a slowly decayed run
// apart from a collapsed one.
func TestReportShowsDecay(t *testing.T) {
	rep := &Report{Spec: Spec{Methods: []string{"slat"}, Eps: []string{"0.1"}, Seeds: []uint64{0, 1, 2}, Collapse: DefaultCollapse}}
	for i, k := range []int{0, 1, 3} { // sudden collapse, slow decay, healthy
		tc := decayCases[k]
		c := CellResult{Cell: Cell{Method: "slat", Eps: "0.1", Seed: uint64(i), Name: fmt.Sprintf("slat_eps=0.1_seed=%d", i)},
			History: tc.hist, Final: &tc.final, Epochs: len(tc.hist)}
		for _, e := range tc.hist {
			if e.Catastrophic && c.Flagged == 0 {
				c.Flagged = e.Epoch
			}
		}
		classify(&c, DefaultCollapse)
		rep.Cells = append(rep.Cells, c)
	}
	rep.Groups = groups(rep.Cells)
	if g := rep.Groups[0]; g.Collapsed != 1 || g.Decayed != 1 || g.Runs != 3 {
		t.Fatalf("group: %d collapsed, %d decayed of %d, want 1, 1 of 3", g.Collapsed, g.Decayed, g.Runs)
	}
	var md bytes.Buffer
	WriteMarkdown(&md, rep, nil)
	for _, want := range []string{
		"## Slowly decayed runs", "| slat | **1/3** |", "collapsed at ε = 0.1 (1/3 runs); slow decay at ε = 0.1 (1/3 runs)",
		"**yes**: probe flagged epoch 3", "**slow decay**: final probe robust 25.0% (epoch 5) is 17.0 points below the best, 42.0% (epoch 1)",
		"15 points or more below",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"decayed":true`, `"decayed":1`, `"collapsed":true`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("report.json lacks %s", want)
		}
	}
}

func TestReadMetricsTornLine(t *testing.T) {
	epoch := `{"kind":"epoch","epoch":1,"loss":1.5}`
	step := `{"kind":"step","epoch":1,"step":5,"loss":2}`
	for _, c := range []struct {
		name, text string
		epochs     int
		err        bool
	}{
		{"whole", step + "\n" + epoch + "\n", 1, false},
		{"torn last line", step + "\n" + epoch + "\n" + `{"kind":"ep`, 1, false},
		{"bad line in the middle", step + "\n" + `{"kind":` + "\n" + epoch + "\n", 0, true},
		{"bad last line with its newline", epoch + "\n" + `{"kind":` + "\n", 0, true},
	} {
		path := filepath.Join(t.TempDir(), "metrics.jsonl")
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadMetrics(path)
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.err)
			continue
		}
		if err == nil && len(m.Epochs) != c.epochs {
			t.Errorf("%s: %d epochs, want %d", c.name, len(m.Epochs), c.epochs)
		}
	}
}
