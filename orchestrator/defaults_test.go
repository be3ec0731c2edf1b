package orchestrator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/perturb"
)

// TestAutoHelp: the help phrases slatrun train shows come from the table.
func TestAutoHelp(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"input-step", "auto: slat 0.9ε, fgsm ε, fgsm-rs 1.25ε, n-fgsm ε, pgd-K 2.5ε/K, free-M ε, trades 0.25ε, gradalign ε"},
		{"gradalign-lambda", "auto: 0.02·10^(min(ε, 16/255)/(8/255))"},
		{"trades-beta", "auto: 6"},
		{"trades-steps", "auto: 10"},
		{"noise-radius", "auto: 2ε"},
		{"latent-eta", "auto: ε"},
		{"latent-step", "auto: 1.8η"},
		{"latent-radius", "auto: η"},
		{"lr", ""},
	} {
		if got := AutoHelp(c.flag); got != c.want {
			t.Errorf("AutoHelp(%q) = %q, want %q", c.flag, got, c.want)
		}
	}
}

// TestDefaultsResolve: every row is what resolve gives its method, and the
// rows name methods and settings that exist.
func TestDefaultsResolve(t *testing.T) {
	c := DefaultConfig()
	c.Train = dataset.Synthetic(100, 1, 8, 8, 4, 1)
	c.Eps = 0.1
	const k = 4
	for _, d := range Defaults() {
		name := strings.NewReplacer("-K", "-4", "-M", "-4").Replace(d.Method)
		if name == "" {
			name = "standard"
		}
		m, err := parseMethod(name)
		if err != nil {
			t.Fatalf("row %s/%s: %v", d.Method, d.Setting, err)
		}
		r := resolve(&c, m, []string{"a"})
		got := map[string]float32{"InputStep": r.InputStep, "NoiseRadius": r.NoiseRadius, "LatentEta": r.LatentEta,
			"LatentStep": r.LatentStep, "LatentRadius": r.LatentRadius, "Probe.Step": r.ProbeStep,
			"TRADESBeta": r.TRADESBeta, "TRADESSteps": float32(r.TRADESSteps), "GradAlignLambda": r.GradAlignLambda}
		v, ok := got[d.Setting]
		if !ok {
			t.Errorf("row %s/%s: no such setting", d.Method, d.Setting)
			continue
		}
		if want := d.of(c.Eps, r.LatentEta, k); v != want {
			t.Errorf("row %s/%s: resolve gives %v, the row %v (%s)", d.Method, d.Setting, v, want, d.Value())
		}
		if d.Doc == "" || !strings.HasSuffix(d.Doc, ".") {
			t.Errorf("row %s/%s: Doc %q is not a sentence", d.Method, d.Setting, d.Doc)
		}
	}
}

// TestResolveFractions: on Auto, SLAT's input rule and the probe take the
// table's factors exactly (not a round trip through ε); set by hand, the
// fractions follow the setting.
func TestResolveFractions(t *testing.T) {
	c := DefaultConfig()
	c.Train = dataset.Synthetic(100, 1, 8, 8, 4, 1)
	c.Eps = 8.0 / 255
	m, _ := parseMethod("slat")
	for _, tc := range []struct {
		name                string
		inputStep, probe    float32
		wantInput, wantProb float32
	}{
		{"auto", Auto, Auto, perturb.DefaultInputStepFrac, perturb.DefaultPGDStep},
		{"set", c.Eps / 2, c.Eps / 8, 0.5, 0.125},
	} {
		c.InputStep, c.Probe.Step = tc.inputStep, tc.probe
		r := resolve(&c, m, []string{"a"})
		if r.inputFrac != tc.wantInput || r.probeFrac != tc.wantProb {
			t.Errorf("%s: fractions %v and %v, want %v and %v", tc.name, r.inputFrac, r.probeFrac, tc.wantInput, tc.wantProb)
		}
	}
}

// defaultsMarkdown is the table of docs/methods.md, made from Defaults.
func defaultsMarkdown() string {
	var b strings.Builder
	b.WriteString("| method | flag | auto | what it is |\n|---|---|---|---|\n")
	for _, d := range Defaults() {
		method, flag := "every method", "— (`Config.Probe.Step`)"
		if d.Method != "" {
			method = "`" + d.Method + "`"
		}
		if d.Flag != "" {
			flag = "`--" + d.Flag + "`"
		}
		b.WriteString("| " + method + " | " + flag + " | " + d.Value() + " | " + d.Doc + " |\n")
	}
	return b.String()
}

// TestDefaultsDocumented: docs/methods.md holds the table as Defaults
// makes it.
func TestDefaultsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "methods.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultsMarkdown(); !strings.Contains(string(doc), want) {
		t.Errorf("docs/methods.md does not hold the defaults table as Defaults() makes it; it should read:\n%s", want)
	}
}
