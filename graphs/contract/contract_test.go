package contract

import (
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{GradName("x"), "grad.x"},
		{GradName("layer1.out"), "grad.layer1.out"},
		{DeltaName("h"), "delta.h"},
		{NextName("bn.running_mean"), "bn.running_mean.next"},
		{InputGrad, "grad.x"},
		{MetaTaps, "slatrun.taps"},
		{MetaBN, "slatrun.bn"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestMetaKeysHavePrefix(t *testing.T) {
	for _, k := range []string{MetaKind, MetaTaps, MetaParams, MetaStats, MetaBatch, MetaLoss, MetaModel, MetaInput, MetaClasses, MetaBN, MetaBeta} {
		if !strings.HasPrefix(k, MetaPrefix) {
			t.Errorf("metadata key %q does not start with %q", k, MetaPrefix)
		}
	}
}

func TestList(t *testing.T) {
	for _, c := range []struct {
		names []string
		value string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b.c", "d"}, "a,b.c,d"},
	} {
		if got := List(c.names); got != c.value {
			t.Errorf("List(%q) = %q, want %q", c.names, got, c.value)
		}
		if got := SplitList(c.value); !slices.Equal(got, c.names) {
			t.Errorf("SplitList(%q) = %q, want %q", c.value, got, c.names)
		}
	}
}

func TestMinClasses(t *testing.T) {
	for _, c := range []struct {
		head string
		want int
	}{{HeadCE, 2}, {HeadCW, 2}, {HeadDLR, 3}, {HeadDLRT, 4}, {HeadDiffT, 2}, {"nope", 0}} {
		if got := MinClasses(c.head); got != c.want {
			t.Errorf("MinClasses(%q) = %d, want %d", c.head, got, c.want)
		}
	}
	for _, h := range Heads() {
		if want := h == HeadDLRT || h == HeadDiffT; Targeted(h) != want {
			t.Errorf("Targeted(%q) = %v, want %v", h, !want, want)
		}
		if MinClasses(h) == 0 {
			t.Errorf("head %q has no class minimum", h)
		}
	}
}

// TestLeaf checks that the package imports nothing from the project, so
// every package can import it.
func TestLeaf(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fs := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fs, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			if path := strings.Trim(im.Path.Value, `"`); strings.HasPrefix(path, "github.com/slatrun/slatrun") {
				t.Errorf("%s imports %s; the contract package must be a leaf", name, path)
			}
		}
	}
}
