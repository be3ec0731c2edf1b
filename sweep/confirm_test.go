package sweep

import (
	"testing"
)

// TestBestGroups picks the setting with the highest mean final robust
// accuracy for each method and ε, and leaves out a method and ε whose
// settings have not finished every seed.
func TestBestGroups(t *testing.T) {
	eta, _ := ParseVariant("latent-eta=8/255")
	spec := Spec{Methods: []string{"slat", "fgsm"}, Eps: []string{"0.1", "0.2"}, Seeds: []uint64{0, 1}, Variants: []Variant{eta}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	// Robust accuracy by cell name; a missing name is an unfinished cell.
	robust := map[string]float64{
		"slat_eps=0.1_seed=0": 0.5, "slat_eps=0.1_seed=1": 0.1, // mean 0.3
		"slat_eps=0.1_latent-eta=8%2F255_seed=0": 0.4, "slat_eps=0.1_latent-eta=8%2F255_seed=1": 0.4, // mean 0.4: best
		"slat_eps=0.2_seed=0": 0.3, "slat_eps=0.2_seed=1": 0.3,
		"slat_eps=0.2_latent-eta=8%2F255_seed=0": 0.2, // seed 1 missing: slat at 0.2 is not complete
		"fgsm_eps=0.1_seed=0":                    0.2, "fgsm_eps=0.1_seed=1": 0.2,
		"fgsm_eps=0.2_seed=0": 0.1, "fgsm_eps=0.2_seed=1": 0.0,
	}
	rep := &Report{Spec: spec}
	for _, c := range cells {
		if r, ok := robust[c.Name]; ok {
			rep.Cells = append(rep.Cells, CellResult{Cell: c, Final: &Checkpoint{Clean: 0.8, Robust: r}})
		}
	}
	rep.Groups = groups(rep.Cells)
	best, err := BestGroups(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range best {
		got = append(got, g.Variant+" @ "+g.Eps)
	}
	want := []string{"slat latent-eta=8/255 @ 0.1", "fgsm @ 0.1", "fgsm @ 0.2"}
	if len(got) != len(want) {
		t.Fatalf("best groups %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("best group %d: %q, want %q", i, got[i], want[i])
		}
	}
}
