package eval

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/perturb"
)

// Loss heads: the keys of the eval graphs a Classifier is made from. The
// graphs' producer defines them (package contract, which says what each
// computes); these are aliases for eval's callers. For every head a higher
// loss is more adversarial.
const (
	HeadCE    = contract.HeadCE
	HeadCW    = contract.HeadCW
	HeadDLR   = contract.HeadDLR
	HeadDLRT  = contract.HeadDLRT
	HeadDiffT = contract.HeadDiffT
	// HeadLogits is not a loss head: it names the logits-only eval graph
	// (one forward pass) Square queries.
	HeadLogits = contract.HeadLogits
)

// Attack kinds.
const (
	KindFGSM   = "fgsm"   // one step of ε·sign(g) (L2: ε·g/‖g‖)
	KindPGD    = "pgd"    // Madry et al.: random start, fixed step, restarts
	KindAPGD   = "apgd"   // Croce & Hein 2020, untargeted (APGD-CE, APGD-DLR)
	KindAPGDT  = "apgd-t" // Croce & Hein 2020, targeted DLR over the top target classes
	KindFABT   = "fab-t"  // Croce & Hein 2020 (ICML), targeted minimum-norm FAB over the top target classes
	KindSquare = "square" // Andriushchenko et al. 2020, score-based random search on the margin
)

// AutoAttack versions (Croce & Hein 2020). Only the standard one is
// implemented; "plus" and "rand" are reserved names that ParseAttacks
// refuses with a message that says so.
const (
	AAStandard = "standard"
	AAPlus     = "plus"
	AARand     = "rand"
)

// StandardAttacks is the evaluation of docs/methods.md: FGSM, PGD-50-10
// with the CE and the CW loss, and the first two attacks of AutoAttack's
// "standard" version.
const StandardAttacks = "fgsm,pgd-50-10,pgd-cw-50-10,apgd-ce,apgd-t"

// AttackSpec describes one attack completely; with the budget (Config.Eps,
// Config.Norm) and the seed it fixes the result. ParseAttacks makes specs
// from names; a hand-built spec is checked by Evaluate.
type AttackSpec struct {
	// Name labels the attack in reports, for example "pgd-50-10". Names in
	// one Config must differ; the name also selects the attack's random
	// streams, so the same attack draws the same random starts wherever it
	// appears in a list.
	Name string `json:"name"`
	// Kind is KindFGSM, KindPGD, KindAPGD or KindAPGDT.
	Kind string `json:"kind"`
	// Loss is the loss head whose gradient the attack follows: HeadCE,
	// HeadCW or HeadDLR, and HeadDLRT for (only) KindAPGDT.
	Loss string `json:"loss"`
	// Steps is the number of gradient steps per restart (per target for
	// APGD-T); FGSM takes 1.
	Steps int `json:"steps"`
	// Restarts is the number of runs from fresh starting points (per target
	// for APGD-T). A sample is robust only if it survives every one.
	Restarts int `json:"restarts"`
	// Step is the step size in units of ε: 1 for FGSM, 0.25 for PGD, and
	// APGD's initial step size (2), which it then halves at checkpoints.
	Step float32 `json:"step"`
	// RandomStart starts each restart from a random point of the ε-ball
	// instead of x (PGD: uniform in the ball; APGD: uniform on the L∞
	// sphere or the L2 sphere, as AutoAttack does).
	RandomStart bool `json:"random_start"`
	// Targets is the number of target classes of APGD-T and FAB-T: the
	// classes with the highest clean logits other than y (AutoAttack: 9; at
	// most K−1 are used).
	Targets int `json:"targets,omitempty"`
	// FAB-T's step parameters (AutoAttack: α_max 0.1, η 1.05, β 0.9): the
	// largest weight of the step from x, the extrapolation factor of the
	// projections, and the factor that pulls an adversarial iterate back
	// towards x.
	AlphaMax float32 `json:"alpha_max,omitempty"`
	Eta      float32 `json:"eta,omitempty"`
	Beta     float32 `json:"beta,omitempty"`
	// PInit is Square's initial fraction of the image a square covers
	// (AutoAttack: 0.8); Steps is its number of queries after the first.
	PInit float32 `json:"p_init,omitempty"`
	// AutoAttack, when set, is the AutoAttack version (AAStandard) whose
	// cascade the attack is part of: it runs only on the samples every
	// earlier attack left robust, whatever Config.Cascade says.
	AutoAttack string `json:"autoattack,omitempty"`
}

// Default numbers of the attacks ParseAttacks knows.
const (
	pgdStep       = perturb.DefaultPGDStep // PGD step ε/4 (docs/methods.md)
	apgdStep      = 2                      // APGD's initial step 2ε
	apgdIters     = 100                    // AutoAttack "standard"
	apgdTargets   = 9                      // AutoAttack "standard"
	fabIters      = 100                    // AutoAttack "standard" FAB-T
	fabAlphaMax   = 0.1
	fabEta        = 1.05
	fabBeta       = 0.9
	squareQueries = 5000 // AutoAttack "standard"
	squarePInit   = 0.8
)

// AutoAttackNames is the standard version of AutoAttack, in its order:
// what the name "autoattack" expands to.
const AutoAttackNames = "apgd-ce,apgd-t,fab-t,square"

// ErrAttack is wrapped by every error about an attack name or spec.
var ErrAttack = errors.New("bad attack")

const acceptedForms = `accepted forms: clean, fgsm[-LOSS], pgd-K[-R], pgd-LOSS-K[-R], apgd-ce[-K], apgd-cw[-K], apgd-dlr[-K], apgd-t[-K], fab-t[-K], square[-Q], autoattack[-standard] (LOSS: ce, cw or dlr; K steps ≥ 1; R restarts ≥ 1; Q queries ≥ 1; e.g. "fgsm,pgd-50-10,pgd-cw-50,apgd-ce,apgd-t" or "autoattack")`

// ParseAttacks turns a comma-separated list of attack names into specs:
//
//	fgsm, fgsm-LOSS        one signed-gradient step of size ε
//	pgd-K, pgd-K-R         PGD on CE, K steps of ε/4, R restarts (default 1), random start
//	pgd-LOSS-K[-R]         the same on another loss head, e.g. pgd-cw-50-10
//	apgd-ce[-K]            APGD on CE, K iterations (default 100), one restart
//	apgd-dlr[-K], apgd-cw[-K]  APGD on the DLR or CW loss
//	apgd-t[-K]             APGD-T: targeted DLR over 9 target classes, K iterations each
//	fab-t[-K]              FAB-T: targeted minimum-norm FAB over 9 target classes, K iterations each (default 100)
//	square[-Q]             Square: score-based random search, Q queries (default 5000), p_init 0.8
//	autoattack             AutoAttack's standard version: apgd-ce, apgd-t, fab-t, square as a cascade
//	autoattack-standard    the same; autoattack-plus and autoattack-rand are not implemented
//	clean                  accepted and dropped: clean accuracy is always reported
//
// LOSS is ce, cw or dlr. Step sizes are relative to ε, so the same specs serve
// every ε. Names are case-insensitive and may be surrounded by spaces; an
// empty list gives no attacks. An unknown or repeated name is an error that
// lists the accepted forms.
func ParseAttacks(list string) ([]AttackSpec, error) {
	var specs []AttackSpec
	seen := map[string]bool{}
	for _, raw := range strings.Split(list, ",") {
		name := strings.ToLower(strings.TrimSpace(raw))
		if name == "" {
			if strings.TrimSpace(list) == "" {
				continue
			}
			return nil, fmt.Errorf("eval: %w: empty name in attack list %q; %s", ErrAttack, list, acceptedForms)
		}
		if name == "clean" {
			continue
		}
		if v, ok := strings.CutPrefix(name, "autoattack"); ok {
			suite, err := autoAttack(strings.TrimPrefix(v, "-"), name)
			if err != nil {
				return nil, err
			}
			for _, s := range suite {
				if seen[s.Name] {
					return nil, fmt.Errorf("eval: %w: attack %q is listed twice (%s includes it)", ErrAttack, s.Name, name)
				}
				seen[s.Name] = true
			}
			specs = append(specs, suite...)
			continue
		}
		s, ok := parseAttack(name)
		if !ok {
			return nil, fmt.Errorf("eval: %w: unknown attack %q; %s", ErrAttack, name, acceptedForms)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("eval: %w: attack %q is listed twice", ErrAttack, s.Name)
		}
		seen[s.Name] = true
		specs = append(specs, s)
	}
	return specs, nil
}

// autoAttack returns the attacks of AutoAttack version v ("" is standard),
// marked as its cascade.
func autoAttack(v, name string) ([]AttackSpec, error) {
	switch v {
	case "", AAStandard:
	case AAPlus, AARand:
		return nil, fmt.Errorf("eval: %w: %q: AutoAttack's %s version is not implemented; only the standard version is (autoattack or autoattack-standard)", ErrAttack, name, v)
	default:
		return nil, fmt.Errorf("eval: %w: %q: unknown AutoAttack version %q; only standard is implemented (plus and rand are not)", ErrAttack, name, v)
	}
	var suite []AttackSpec
	for _, n := range strings.Split(AutoAttackNames, ",") {
		s, ok := parseAttack(n)
		if !ok {
			return nil, fmt.Errorf("eval: %w: AutoAttack's attack %q does not parse", ErrAttack, n)
		}
		s.AutoAttack = AAStandard
		suite = append(suite, s)
	}
	return suite, nil
}

// parseAttack parses one lower-case name and gives it its canonical name.
func parseAttack(name string) (AttackSpec, bool) {
	f := strings.Split(name, "-")
	isLoss := func(s string) bool { return s == HeadCE || s == HeadCW || s == HeadDLR }
	switch f[0] {
	case "fgsm":
		loss := HeadCE
		switch {
		case len(f) == 1:
		case len(f) == 2 && isLoss(f[1]):
			loss = f[1]
		default:
			return AttackSpec{}, false
		}
		s := AttackSpec{Name: "fgsm", Kind: KindFGSM, Loss: loss, Steps: 1, Restarts: 1, Step: 1}
		if loss != HeadCE {
			s.Name = "fgsm-" + loss
		}
		return s, true
	case "pgd":
		loss := HeadCE
		nums := f[1:]
		if len(nums) > 0 && isLoss(nums[0]) {
			loss, nums = nums[0], nums[1:]
		}
		if len(nums) < 1 || len(nums) > 2 {
			return AttackSpec{}, false
		}
		k, ok := positive(nums[0])
		if !ok {
			return AttackSpec{}, false
		}
		r := 1
		if len(nums) == 2 {
			if r, ok = positive(nums[1]); !ok {
				return AttackSpec{}, false
			}
		}
		s := AttackSpec{Kind: KindPGD, Loss: loss, Steps: k, Restarts: r, Step: pgdStep, RandomStart: true}
		s.Name = "pgd-"
		if loss != HeadCE {
			s.Name += loss + "-"
		}
		s.Name += strconv.Itoa(k)
		if r != 1 {
			s.Name += "-" + strconv.Itoa(r)
		}
		return s, true
	case "apgd":
		if len(f) < 2 || len(f) > 3 {
			return AttackSpec{}, false
		}
		k := apgdIters
		if len(f) == 3 {
			var ok bool
			if k, ok = positive(f[2]); !ok {
				return AttackSpec{}, false
			}
		}
		s := AttackSpec{Kind: KindAPGD, Steps: k, Restarts: 1, Step: apgdStep, RandomStart: true}
		switch {
		case f[1] == "t":
			s.Kind, s.Loss, s.Targets = KindAPGDT, HeadDLRT, apgdTargets
		case isLoss(f[1]):
			s.Loss = f[1]
		default:
			return AttackSpec{}, false
		}
		s.Name = "apgd-" + f[1]
		if k != apgdIters {
			s.Name += "-" + strconv.Itoa(k)
		}
		return s, true
	case "fab":
		if len(f) < 2 || len(f) > 3 || f[1] != "t" {
			return AttackSpec{}, false
		}
		k := fabIters
		if len(f) == 3 {
			var ok bool
			if k, ok = positive(f[2]); !ok {
				return AttackSpec{}, false
			}
		}
		s := AttackSpec{Name: "fab-t", Kind: KindFABT, Loss: HeadDiffT, Steps: k, Restarts: 1, Step: 1,
			Targets: apgdTargets, AlphaMax: fabAlphaMax, Eta: fabEta, Beta: fabBeta}
		if k != fabIters {
			s.Name += "-" + strconv.Itoa(k)
		}
		return s, true
	case "square":
		if len(f) > 2 {
			return AttackSpec{}, false
		}
		q := squareQueries
		if len(f) == 2 {
			var ok bool
			if q, ok = positive(f[1]); !ok {
				return AttackSpec{}, false
			}
		}
		s := AttackSpec{Name: "square", Kind: KindSquare, Loss: HeadCE, Steps: q, Restarts: 1, Step: 1, RandomStart: true, PInit: squarePInit}
		if q != squareQueries {
			s.Name += "-" + strconv.Itoa(q)
		}
		return s, true
	}
	return AttackSpec{}, false
}

// positive parses a positive decimal count without sign or leading zeros.
func positive(s string) (int, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' || len(s) > 7 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// Validate reports whether the spec is complete and consistent.
func (s *AttackSpec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("eval: %w %q: %s", ErrAttack, s.Name, fmt.Sprintf(format, a...))
	}
	if s.Name == "" {
		return fmt.Errorf("eval: %w: spec of kind %q has no name", ErrAttack, s.Kind)
	}
	switch s.Kind {
	case KindFGSM, KindPGD, KindAPGD:
		if s.Loss != HeadCE && s.Loss != HeadCW && s.Loss != HeadDLR {
			return bad("loss %q; want ce, cw or dlr", s.Loss)
		}
	case KindAPGDT:
		if s.Loss != HeadDLRT {
			return bad("APGD-T uses the dlr-t loss, not %q", s.Loss)
		}
		if s.Targets < 1 {
			return bad("APGD-T needs Targets ≥ 1")
		}
	case KindFABT:
		if s.Loss != HeadDiffT {
			return bad("FAB-T uses the diff-t head, not %q", s.Loss)
		}
		if s.Targets < 1 {
			return bad("FAB-T needs Targets ≥ 1")
		}
		if !(s.AlphaMax >= 0 && s.AlphaMax <= 1) || !(s.Eta >= 1 && s.Eta < 10) || !(s.Beta > 0 && s.Beta <= 1) {
			return bad("FAB-T needs α_max in [0,1], η in [1,10) and β in (0,1]; got %v, %v, %v", s.AlphaMax, s.Eta, s.Beta)
		}
	case KindSquare:
		if s.Loss != HeadCE {
			return bad("Square reads the logits of the ce graph; loss %q", s.Loss)
		}
		if !(s.PInit > 0 && s.PInit <= 1) {
			return bad("Square needs p_init in (0,1], got %v", s.PInit)
		}
	default:
		return bad("unknown kind %q; want fgsm, pgd, apgd, apgd-t, fab-t or square", s.Kind)
	}
	switch s.AutoAttack {
	case "", AAStandard:
	default:
		return bad("AutoAttack version %q is not implemented; only %q is", s.AutoAttack, AAStandard)
	}
	if s.Steps < 1 || s.Restarts < 1 {
		return bad("steps %d and restarts %d must be ≥ 1", s.Steps, s.Restarts)
	}
	if s.Kind == KindFGSM && (s.Steps != 1 || s.Restarts != 1 || s.RandomStart) {
		return bad("FGSM is one step from x (steps 1, restarts 1, no random start)")
	}
	if !(s.Step > 0) || s.Step > 1e6 {
		return bad("step %v (in units of ε) must be positive", s.Step)
	}
	return nil
}

// Heads lists the loss heads an evaluation with these attacks needs, each
// once: HeadCE first (the clean pass and the local-linearity probe use it),
// then the heads the attacks follow, in order (HeadLogits for Square,
// which reads the logits alone). Derive one eval graph per
// head (graphs.DeriveEval) for NewClassifier.
func Heads(attacks []AttackSpec) []string {
	heads := []string{HeadCE}
	for _, a := range attacks {
		h := a.Loss
		if a.Kind == KindSquare {
			h = HeadLogits // Square reads only the logits
		}
		if !slices.Contains(heads, h) {
			heads = append(heads, h)
		}
	}
	return heads
}
