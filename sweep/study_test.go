package sweep

import (
	"slices"
	"strings"
	"testing"
)

// TestStudyAxes: the knobs of the SLAT reliability study are grid axes
// scoped to slat: the latent scale, the input start, η as a number or a
// fraction, the taps (comma-separated lists, so the values are split at
// semicolons) and the latent radius 0 (no clip).
func TestStudyAxes(t *testing.T) {
	s := Spec{Methods: []string{"slat", "fgsm-rs"}, Eps: []string{"0.1", "0.2", "0.3"}, Seeds: []uint64{0}}
	for _, a := range []string{"latent-scale=abs,range", "input-start=zero,uniform", "latent-eta=auto,8/255",
		"taps=stem;stem,stage1", "latent-radius=auto,0"} {
		ax, err := ParseAxis(a)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ax.Methods, []string{"slat"}) {
			t.Errorf("axis %s applies to %v, want slat only", a, ax.Methods)
		}
		if back, err := ParseAxis(ax.String()); err != nil || !slices.Equal(back.Values, ax.Values) {
			t.Errorf("axis %s: String %q parses back to %v (%v)", a, ax.String(), back.Values, err)
		}
		s.Axes = append(s.Axes, ax)
	}
	if got := s.Axes[3].Values; !slices.Equal(got, []string{"stem", "stem,stage1"}) {
		t.Fatalf("taps values %q", got)
	}
	cells, err := s.Cells()
	if err != nil {
		t.Fatal(err)
	}
	slat, other := 0, 0
	seen := map[string]bool{}
	for _, c := range cells {
		args := strings.Join(c.Args, " ")
		if c.Method == "slat" {
			slat++
			for _, f := range []string{"--latent-scale=", "--input-start=", "--latent-eta=", "--taps=", "--latent-radius="} {
				if !strings.Contains(args, f) {
					t.Errorf("%s: no %s in %s", c.Name, f, args)
				}
			}
			seen[args[strings.Index(args, "--taps="):]] = true
		} else {
			other++
			if strings.Contains(args, "--latent-") || strings.Contains(args, "--input-start") || strings.Contains(args, "--taps") {
				t.Errorf("%s: a slat flag in %s", c.Name, args)
			}
		}
	}
	if slat != 3*32 || other != 3 {
		t.Errorf("%d slat cells and %d fgsm-rs cells, want 96 and 3", slat, other)
	}
	found := false
	for k := range seen {
		found = found || strings.HasPrefix(k, "--taps=stem,stage1 ")
	}
	if !found {
		t.Errorf("no cell has --taps=stem,stage1")
	}
}
