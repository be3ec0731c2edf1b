package sweep

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestCompare: a setting holds at an ε when none of its runs failed and no
// baseline is more than the tolerance ahead; the most reliable setting has
// the fewest failed runs, then the highest robust accuracy.
func TestCompare(t *testing.T) {
	eta, _ := ParseVariant("latent-eta=8/255")
	spec := Spec{Methods: []string{"slat", "fgsm-rs", "gradalign"}, Eps: []string{"0.1", "0.3"}, Seeds: []uint64{0, 1},
		Variants: []Variant{eta}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		robust    float64
		collapsed bool
	}
	results := map[string]res{
		"slat_eps=0.1_seed=0": {0.60, false}, "slat_eps=0.1_seed=1": {0.62, false}, // 61: 1 behind fgsm-rs, holds
		"slat_eps=0.1_latent-eta=8%2F255_seed=0": {0.70, true}, "slat_eps=0.1_latent-eta=8%2F255_seed=1": {0.70, false}, // a collapse
		"fgsm-rs_eps=0.1_seed=0": {0.62, false}, "fgsm-rs_eps=0.1_seed=1": {0.62, false},
		"gradalign_eps=0.1_seed=0": {0.55, false}, "gradalign_eps=0.1_seed=1": {0.55, false},
		"slat_eps=0.3_seed=0": {0.20, false}, "slat_eps=0.3_seed=1": {0.20, false}, // 5 behind gradalign
		"slat_eps=0.3_latent-eta=8%2F255_seed=0": {0.30, false}, "slat_eps=0.3_latent-eta=8%2F255_seed=1": {0.30, false},
		"fgsm-rs_eps=0.3_seed=0": {0.01, true}, "fgsm-rs_eps=0.3_seed=1": {0.02, true},
		"gradalign_eps=0.3_seed=0": {0.25, false}, "gradalign_eps=0.3_seed=1": {0.25, false},
	}
	rep := &Report{Spec: spec}
	for _, c := range cells {
		r := results[c.Name]
		rep.Cells = append(rep.Cells, CellResult{Cell: c, Final: &Checkpoint{Clean: 0.8, Robust: r.robust}, Collapsed: r.collapsed})
	}
	rep.Groups = groups(rep.Cells)
	Compare(rep, []string{"fgsm-rs", "gradalign", "pgd-7"}, 0.02)
	a := rep.Against
	if len(a.Baselines) != 2 {
		t.Fatalf("baselines %v: pgd-7 is not in the grid", a.Baselines)
	}
	want := map[string]bool{ // variant@eps → holds
		"slat@0.1": true, "slat latent-eta=8/255@0.1": false,
		"slat@0.3": false, "slat latent-eta=8/255@0.3": true,
	}
	if len(a.Rows) != len(want) {
		t.Fatalf("%d rows, want %d (the baselines have none)", len(a.Rows), len(want))
	}
	for _, r := range a.Rows {
		if h, ok := want[r.Variant+"@"+r.Eps]; !ok || h != r.Holds {
			t.Errorf("%s at %s: holds %v, want %v (%+v)", r.Variant, r.Eps, r.Holds, h, r)
		}
	}
	if d := a.Rows[0].Delta["fgsm-rs"]; math.Abs(d+0.01) > 1e-9 {
		t.Errorf("slat at 0.1 against fgsm-rs: %g, want -0.01", d)
	}
	most := map[string]string{}
	for _, m := range a.Most {
		most[m.Eps] = m.Variant
	}
	if most["0.1"] != "fgsm-rs" || most["0.3"] != "slat latent-eta=8/255" {
		t.Errorf("most reliable %v", most)
	}
	var md bytes.Buffer
	WriteMarkdown(&md, rep, nil)
	for _, s := range []string{"## Each setting against fgsm-rs and gradalign", "**holds** -1.0 / +6.0; 0/2 failed", "| 0.3 | slat latent-eta=8/255 | 30.0 ± 0.0 | 0/2 |"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report.md lacks %q:\n%s", s, md.String())
		}
	}
}
