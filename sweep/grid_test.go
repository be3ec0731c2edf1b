package sweep

import (
	"slices"
	"strings"
	"testing"
)

func TestCells(t *testing.T) {
	ax, err := ParseAxis("latent-radius=auto,8/255")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := ParseAxis("fgsm:schedule=cyclic,piecewise")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Methods: []string{"slat", "fgsm", "pgd-7"}, Eps: []string{"0.1", "8/255"}, Seeds: []uint64{0, 1},
		Axes: []Axis{ax, sched}, Base: []string{"--model=mlp", "--epochs=1"}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	// slat: 2 ε × 2 radii × 2 seeds; fgsm: 2 ε × 2 schedules × 2 seeds; pgd-7: 2 ε × 2 seeds.
	if len(cells) != 8+8+4 {
		t.Fatalf("%d cells, want 20", len(cells))
	}
	names := map[string]bool{}
	for i, c := range cells {
		if c.Index != i {
			t.Errorf("cell %d has index %d", i, c.Index)
		}
		if names[c.Name] {
			t.Errorf("duplicate name %s", c.Name)
		}
		names[c.Name] = true
		if strings.ContainsAny(c.Name, "/ ") {
			t.Errorf("name %q is not one safe path element", c.Name)
		}
	}
	first := cells[0]
	if first.Name != "slat_eps=0.1_latent-radius=auto_seed=0" {
		t.Errorf("first cell %q", first.Name)
	}
	wantArgs := []string{"--model=mlp", "--epochs=1", "--method=slat", "--eps=0.1", "--seed=0", "--latent-radius=auto", "--bn-stats=all"}
	if !slices.Equal(first.Args, wantArgs) {
		t.Errorf("args %q, want %q", first.Args, wantArgs)
	}
	if cells[1].Seed != 1 || cells[1].Variant() != first.Variant() {
		t.Errorf("seeds should be neighbours: %+v", cells[1])
	}
	if c := cells[3]; c.Name != "slat_eps=0.1_latent-radius=8%2F255_seed=1" || c.Variant() != "slat latent-radius=8/255" {
		t.Errorf("cell 3: %q, variant %q", c.Name, c.Variant())
	}
	for _, c := range cells {
		switch c.Method {
		case "fgsm":
			if len(c.Axes) != 1 || c.Axes[0].Flag != "schedule" {
				t.Errorf("fgsm cell %s: axes %v, want only the schedule", c.Name, c.Axes)
			}
		case "pgd-7":
			if len(c.Axes) != 0 {
				t.Errorf("pgd-7 cell %s has axes %v (latent-radius is slat-only)", c.Name, c.Axes)
			}
		}
	}
	if v := cells[4].EpsValue(); cells[4].Eps != "8/255" || v < 0.0313 || v > 0.0314 {
		t.Errorf("cell 4 ε %q = %v", cells[4].Eps, v)
	}
	// The same spec gives the same grid (shards rely on it).
	again, _ := spec.Cells()
	if !sameGrid(cells, again) {
		t.Error("the grid is not deterministic")
	}
}

func TestSpecErrors(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Eps: []string{"0.1"}, Seeds: []uint64{0}}, "no methods"},
		{Spec{Methods: []string{"slat"}, Eps: []string{"x"}, Seeds: []uint64{0}}, `ε "x"`},
		{Spec{Methods: []string{"slat"}, Eps: []string{"0.1"}}, "no seeds"},
		{Spec{Methods: []string{"slat", "slat"}, Eps: []string{"0.1"}, Seeds: []uint64{0}}, "listed twice"},
		{Spec{Methods: []string{"slat"}, Eps: []string{"0.1"}, Seeds: []uint64{0}, Axes: []Axis{{Flag: "eps", Values: []string{"1"}}}}, "own flags"},
		{Spec{Methods: []string{"slat"}, Eps: []string{"0.1"}, Seeds: []uint64{0}, Axes: []Axis{{Flag: "lr", Values: []string{"0.1", "0.1"}}}}, "two cells"},
	} {
		_, err := c.spec.Cells()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.spec, err, c.want)
		}
	}
}

func TestParseAxis(t *testing.T) {
	for _, c := range []struct {
		in      string
		flag    string
		values  []string
		methods []string
	}{
		{"lr=0.1,0.2", "lr", []string{"0.1", "0.2"}, nil},
		{"--latent-radius=auto,8/255", "latent-radius", []string{"auto", "8/255"}, []string{"slat"}},
		{"fgsm+FGSM-RS:schedule=cyclic, piecewise", "schedule", []string{"cyclic", "piecewise"}, []string{"fgsm", "fgsm-rs"}},
		{"taps=conv1;conv1,layer1", "taps", []string{"conv1", "conv1,layer1"}, []string{"slat"}},
		{"gradalign-lambda=0.2,auto", "gradalign-lambda", []string{"0.2", "auto"}, []string{"gradalign"}},
	} {
		a, err := ParseAxis(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if a.Flag != c.flag || !slices.Equal(a.Values, c.values) || !slices.Equal(a.Methods, c.methods) {
			t.Errorf("%s: got %+v", c.in, a)
		}
		if b, err := ParseAxis(a.String()); err != nil || b.Flag != a.Flag || !slices.Equal(b.Values, a.Values) || !slices.Equal(b.Methods, a.Methods) {
			t.Errorf("%s: String %q does not parse back: %+v %v", c.in, a.String(), b, err)
		}
	}
	for _, bad := range []string{"lr", "=1,2", "lr=", "lr=,"} {
		if _, err := ParseAxis(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestShards(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == IndexEnv {
				return v
			}
			return ""
		}
	}
	if s, err := ParseShard("2/3", env("")); err != nil || s != (Shard{2, 3}) {
		t.Errorf("2/3: %v %v", s, err)
	}
	if s, err := ParseShard("env/4", env("3")); err != nil || s != (Shard{3, 4}) {
		t.Errorf("env/4: %v %v", s, err)
	}
	for _, bad := range []string{"3/3", "-1/2", "1", "a/b", "0/0"} {
		if _, err := ParseShard(bad, env("")); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := ParseShard("env/4", env("")); err == nil || !strings.Contains(err.Error(), IndexEnv) {
		t.Errorf("env without the variable: %v", err)
	}
	spec := Spec{Methods: []string{"slat", "fgsm"}, Eps: []string{"0.1", "0.2", "0.3"}, Seeds: []uint64{0, 1}}
	cells, _ := spec.Cells()
	seen := map[string]int{}
	for i := range 3 {
		n := 0
		for _, c := range cells {
			if (Shard{i, 3}).Has(c) {
				seen[c.Name]++
				n++
			}
		}
		if n != 4 {
			t.Errorf("shard %d/3 has %d of 12 cells", i, n)
		}
	}
	for _, c := range cells {
		if seen[c.Name] != 1 {
			t.Errorf("%s is in %d shards", c.Name, seen[c.Name])
		}
		if !(Shard{}).Has(c) {
			t.Errorf("the zero shard lacks %s", c.Name)
		}
	}
}

func TestStat(t *testing.T) {
	s := stat([]float64{0.5, 0.7, 0.9})
	if s.N != 3 || s.Mean < 0.6999 || s.Mean > 0.7001 || s.Std < 0.1999 || s.Std > 0.2001 {
		t.Errorf("stat = %+v, want mean 0.7, sample std 0.2", s)
	}
	if s := stat([]float64{0.4}); s.Std != 0 || s.Mean != 0.4 {
		t.Errorf("one value: %+v", s)
	}
}

// A cell's args record the BN-statistics rule even when the spec leaves it
// to the default, and never twice.
func TestCellsRecordBNStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		base []string
		axes []Axis
		want []string // the bn-stats args of every cell
	}{
		{"default", []string{"--model=mlp"}, nil, []string{"--bn-stats=all"}},
		{"base", []string{"--model=mlp", "--bn-stats=train"}, nil, []string{"--bn-stats=train"}},
		{"axis", []string{"--model=mlp"}, []Axis{{Flag: "bn-stats", Values: []string{"train"}}}, []string{"--bn-stats=train"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := Spec{Methods: []string{"fgsm-rs"}, Eps: []string{"0.1"}, Seeds: []uint64{0}, Base: tc.base, Axes: tc.axes}
			cells, err := spec.Cells()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range cells[0].Args {
				if strings.HasPrefix(a, "--bn-stats") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("bn-stats args %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVariants(t *testing.T) {
	eta, err := ParseVariant("latent-eta=8/255")
	if err != nil {
		t.Fatal(err)
	}
	both, err := ParseVariant("slat:input-start=uniform latent-scale=range")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Methods: []string{"slat", "fgsm"}, Eps: []string{"0.1"}, Seeds: []uint64{0, 1},
		Variants: []Variant{eta, both}, Base: []string{"--model=mlp"}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cells {
		got = append(got, c.Name)
	}
	// slat: the base row and one row per variant, seeds neighbours; fgsm:
	// the base row only (both variants are slat's).
	want := []string{
		"slat_eps=0.1_seed=0", "slat_eps=0.1_seed=1",
		"slat_eps=0.1_latent-eta=8%2F255_seed=0", "slat_eps=0.1_latent-eta=8%2F255_seed=1",
		"slat_eps=0.1_input-start=uniform_latent-scale=range_seed=0", "slat_eps=0.1_input-start=uniform_latent-scale=range_seed=1",
		"fgsm_eps=0.1_seed=0", "fgsm_eps=0.1_seed=1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("cells\n%q\nwant\n%q", got, want)
	}
	if args := cells[4].Args; !slices.Contains(args, "--input-start=uniform") || !slices.Contains(args, "--latent-scale=range") {
		t.Errorf("variant cell args %q", args)
	}
	// With an axis, each variant is tried at every axis value.
	ax, _ := ParseAxis("lr=0.1,0.2")
	spec.Axes, spec.Variants, spec.Methods = []Axis{ax}, []Variant{eta}, []string{"slat"}
	if cells, err = spec.Cells(); err != nil || len(cells) != 8 {
		t.Fatalf("%d cells (%v), want 2 lr × 2 rows × 2 seeds", len(cells), err)
	}
	if c := cells[4]; c.Variant() != "slat lr=0.1 latent-eta=8/255" {
		t.Errorf("cell 4 is %q", c.Variant())
	}
	// A variant may not set an axis's flag.
	spec.Variants = []Variant{{Settings: []Setting{{"lr", "0.3"}}}}
	if _, err := spec.Cells(); err == nil || !strings.Contains(err.Error(), "is an axis") {
		t.Errorf("variant over an axis: %v", err)
	}
}

func TestParseVariant(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: String() of the parse, or the error's words
		ok       bool
	}{
		{"latent-eta=8/255", "slat:latent-eta=8/255", true},
		{"--lr=0.1", "lr=0.1", true},
		{"fgsm+FGSM-RS:schedule=piecewise lr=0.1", "fgsm+fgsm-rs:schedule=piecewise lr=0.1", true},
		{"taps=stem,stage1 latent-radius=0", "slat:taps=stem,stage1 latent-radius=0", true},
		{"", "sets no flag", false},
		{"lr", "want FLAG=V", false},
		{"lr=0.1 lr=0.2", "twice", false},
		{"latent-eta=0.1 lr=0.1", "different methods", false},
	} {
		v, err := ParseVariant(c.in)
		if !c.ok {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.want)
			}
			continue
		}
		if err != nil || v.String() != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, v.String(), err, c.want)
			continue
		}
		if back, err := ParseVariant(v.String()); err != nil || back.String() != v.String() {
			t.Errorf("%q does not parse back: %v", v.String(), err)
		}
	}
}

func TestMethodSeeds(t *testing.T) {
	spec := Spec{Methods: []string{"slat", "pgd-7"}, Eps: []string{"0.1", "0.2"}, Seeds: []uint64{0, 1, 2},
		MethodSeeds: map[string][]uint64{"pgd-7": {0}}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	perMethod := map[string]int{}
	for _, c := range cells {
		perMethod[c.Method]++
		if c.Method == "pgd-7" && c.Seed != 0 {
			t.Errorf("pgd-7 cell %s: seed %d", c.Name, c.Seed)
		}
	}
	if perMethod["slat"] != 6 || perMethod["pgd-7"] != 2 {
		t.Errorf("cells per method %v, want slat 6 (2 ε × 3 seeds), pgd-7 2 (2 ε × seed 0)", perMethod)
	}
	if cmd := spec.Command(); !strings.Contains(cmd, "--method-seeds=pgd-7=0") {
		t.Errorf("command %q lacks --method-seeds", cmd)
	}
	for _, c := range []struct {
		seeds map[string][]uint64
		want  string
	}{
		{map[string][]uint64{"fgsm": {0}}, "not in the grid"},
		{map[string][]uint64{"pgd-7": {}}, "no seeds for method"},
	} {
		spec.MethodSeeds = c.seeds
		if _, err := spec.Cells(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("MethodSeeds %v: %v, want %q", c.seeds, err, c.want)
		}
	}
}
