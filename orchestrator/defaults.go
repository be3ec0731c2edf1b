package orchestrator

import (
	"math"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/perturb"
)

// Basis is what a method default is a multiple of.
type Basis string

// The bases of the defaults.
const (
	OfEps     Basis = "ε"   // the input budget, Config.Eps
	OfEpsPerK Basis = "ε/K" // Config.Eps over PGD-K's number of steps K
	OfEta     Basis = "η"   // SLAT's latent budget, Config.LatentEta resolved
	OfOne     Basis = ""    // a plain number (TRADES's β and K)
	// OfTenEps is a power of ten in ε up to 16/255: Scale·10^(min(ε,
	// 16/255)/(8/255)), GradAlign's λ.
	OfTenEps Basis = "·10^(min(ε, 16/255)/(8/255))"
)

// Default is a row of the table Defaults returns: the value a setting of
// Config left at Auto takes for a method.
type Default struct {
	// Method is a method as Config.Method names it, with K and M standing
	// for the number (pgd-K, free-M); "" means every method.
	Method string
	// Setting is the Config field, e.g. "InputStep" or "Probe.Step".
	Setting string
	// Flag is slatrun train's flag for the setting ("" if it has none).
	Flag string
	// Scale times Basis is the value.
	Scale float32
	Basis Basis
	// Doc says, in a sentence, what the setting is for the method.
	Doc string
}

// Value writes the default as the help and the docs do: "0.9ε", "2.5ε/K",
// "η".
func (d Default) Value() string {
	if d.Scale == 1 && d.Basis != OfOne {
		return string(d.Basis)
	}
	return strconv.FormatFloat(float64(d.Scale), 'g', -1, 32) + string(d.Basis)
}

// Defaults returns the table of method defaults, the one place they are
// written: New resolves every Auto setting from it (config.json records
// the results), the per-epoch probe takes its step from it, and slatrun
// train's help (AutoHelp) and docs/methods.md are made from it. The
// factors are perturb's Default constants. A method without a row for a
// setting does not use it (standard has no input step).
func Defaults() []Default {
	return []Default{
		{"slat", "InputStep", "input-step", perturb.DefaultInputStepFrac, OfEps,
			"SLAT's input step, from the clean x; δx is clipped to ±ε."},
		{"fgsm", "InputStep", "input-step", perturb.DefaultFGSMStep, OfEps,
			"FGSM's step from the clean x."},
		{"fgsm-rs", "InputStep", "input-step", perturb.DefaultFGSMRSAlpha, OfEps,
			"FGSM-RS's step from a uniform start in ±ε, clipped back to ±ε."},
		{"n-fgsm", "InputStep", "input-step", perturb.DefaultFGSMStep, OfEps,
			"N-FGSM's step from its noise start, with no ±ε clip."},
		{"pgd-K", "InputStep", "input-step", perturb.DefaultPGDTrainStep, OfEpsPerK,
			"Each of PGD-K's K steps from a uniform start in ±ε (slatrun's choice; the reference uses ε/4 for K = 7)."},
		{"free-M", "InputStep", "input-step", perturb.DefaultFGSMStep, OfEps,
			"The step δ takes after each of Free-M's M replays."},
		{"trades", "InputStep", "input-step", perturb.DefaultTRADESStep, OfEps,
			"Each of TRADES's K steps on the KL divergence, from x + 0.001·N(0, I) (slatrun's choice; the reference uses 0.007 for ε = 0.031, about ε/4.4)."},
		{"gradalign", "InputStep", "input-step", perturb.DefaultFGSMStep, OfEps,
			"GradAlign's FGSM step from the clean x (the reference's 1.25ε from zero, clipped to ±ε, is the same)."},
		{"n-fgsm", "NoiseRadius", "noise-radius", perturb.DefaultNFGSMStart, OfEps,
			"The half-width of N-FGSM's uniform start."},
		{"slat", "LatentEta", "latent-eta", perturb.DefaultLatentEta, OfEps,
			"SLAT's latent budget η, in activation units (with --latent-scale range, a fraction of each sample's and channel's activation range)."},
		{"slat", "LatentStep", "latent-step", perturb.DefaultLatentStep, OfEta,
			"SLAT's latent step at each tap, before the ±radius clip."},
		{"slat", "LatentRadius", "latent-radius", perturb.DefaultLatentRadius, OfEta,
			"The ±clip of SLAT's latent step (0: no clip)."},
		{"trades", "TRADESBeta", "trades-beta", perturb.DefaultTRADESBeta, OfOne,
			"TRADES's weight β of KL(f(x) ‖ f(x′)) beside CE(f(x), y) in the outer loss."},
		{"trades", "TRADESSteps", "trades-steps", perturb.DefaultTRADESSteps, OfOne,
			"The number K of TRADES's inner PGD steps on the KL divergence."},
		{"gradalign", "GradAlignLambda", "gradalign-lambda", perturb.DefaultGradAlignLambda, OfTenEps,
			"GradAlign's weight λ of 1 − cos(∇ₓℓ(x), ∇ₓℓ(x+η)): the reference's log-linear rule, 0.2 at ε = 8/255 and 2 at 16/255, held at 2 beyond (the reference tuned it on CIFAR-10 for ε ≤ 16/255 only)."},
		{"", "Probe.Step", "", perturb.DefaultPGDStep, OfEps,
			"The step of the per-epoch PGD probe."},
	}
}

// AutoHelp returns the "auto: …" phrase of a flag's help, made from
// Defaults: "auto: 2ε" when one method has the flag's default, "auto: slat
// 0.9ε, fgsm ε, …" when several have one. It returns "" for a flag that
// has no row.
func AutoHelp(flag string) string {
	var rows []Default
	for _, d := range Defaults() {
		if d.Flag == flag {
			rows = append(rows, d)
		}
	}
	if len(rows) == 0 {
		return ""
	}
	if len(rows) == 1 {
		return "auto: " + rows[0].Value()
	}
	parts := make([]string, len(rows))
	for i, d := range rows {
		parts[i] = d.Method + " " + d.Value()
	}
	return "auto: " + strings.Join(parts, ", ")
}

// pattern is the name of m's row in Defaults: pgd-K and free-M stand for
// every number of steps or replays.
func (m method) pattern() string {
	switch m.fam {
	case pgd:
		return "pgd-K"
	case free:
		return "free-M"
	}
	return m.String()
}

// defaultOf returns the row of setting for method m, and false if m has
// none.
func defaultOf(m method, setting string) (Default, bool) {
	for _, d := range Defaults() {
		if d.Setting == setting && (d.Method == "" || d.Method == m.pattern()) {
			return d, true
		}
	}
	return Default{}, false
}

// of returns the default's value for budget eps, latent budget eta and K
// steps.
func (d Default) of(eps, eta float32, k int) float32 {
	switch d.Basis {
	case OfEpsPerK:
		return d.Scale * eps / float32(k)
	case OfEta:
		return d.Scale * eta
	case OfOne:
		return d.Scale
	case OfTenEps:
		return float32(float64(d.Scale) * math.Pow(10, min(float64(eps), perturb.GradAlignLambdaMaxEps)/perturb.GradAlignLambdaDecade))
	}
	return d.Scale * eps
}
