package eval

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Norms of the threat model.
const (
	NormLinf = "linf"
	NormL2   = "l2"
)

// Config is one robustness evaluation: a threat model (Norm, Eps), the
// attacks, the data size and the seed.
type Config struct {
	// Eps is the radius of the perturbation ball, in pixel units ([0,1]
	// images). Eps = 0 makes every attack a no-op.
	Eps float32
	// Norm is NormLinf (default when empty) or NormL2. One evaluation has
	// one threat model, so that its worst case means something.
	Norm string
	// Attacks run in order (see ParseAttacks).
	Attacks []AttackSpec
	// Seed fixes every random start; the same seed gives the same report.
	Seed uint64
	// N evaluates the first N examples; 0 (or more than there are) means all.
	N int
	// Cascade runs each attack only on the samples that every earlier
	// attack left robust, as AutoAttack does: faster, but then an attack's
	// accuracy is the cumulative one. Without Cascade (the default) every
	// attack runs on every clean-correct sample, so each attack's accuracy
	// is its own. The worst case is the same either way (attacks on a
	// sample do not depend on the other samples). Attacks of an AutoAttack
	// cascade (AttackSpec.AutoAttack) always run this way.
	Cascade bool
	// Linearity adds the local-linearity probe (see LocalLinearity) on the
	// same examples; it needs the "ce" eval graph.
	Linearity bool
	// Progress, if set, is called after every batch.
	Progress func(attack string, done, total int)
}

// Report is the result of Evaluate, with every setting that produced it.
// Accuracies are fractions of N in [0,1]. Apart from the Seconds fields, the
// same classifier, data and Config give the same report.
type Report struct {
	Eps     float32 `json:"eps"`
	Norm    string  `json:"norm"`
	N       int     `json:"n"`
	Batch   int     `json:"batch"`
	Seed    uint64  `json:"seed"`
	Cascade bool    `json:"cascade"`
	// Clean is the clean accuracy; CleanCorrect counts those samples.
	Clean        float64 `json:"clean"`
	CleanCorrect int     `json:"clean_correct"`
	CleanSeconds float64 `json:"clean_seconds"`
	// Attacks holds one result per attack, in order.
	Attacks []AttackResult `json:"attacks"`
	// WorstCase is the fraction of samples that are correct clean and
	// survive every attack; WorstRobust counts them.
	WorstCase   float64 `json:"worst_case"`
	WorstRobust int     `json:"worst_robust"`
	// AutoAttack summarizes the AutoAttack cascade when the attacks include
	// one (ParseAttacks' "autoattack").
	AutoAttack *AutoAttackSummary `json:"autoattack,omitempty"`
	// LocalLinearity is set when Config.Linearity asks for it.
	LocalLinearity *float64 `json:"local_linearity,omitempty"`
	Seconds        float64  `json:"seconds"`
}

// AttackResult is one attack's outcome.
type AttackResult struct {
	AttackSpec
	// Attacked counts the samples the attack ran on: the clean-correct
	// ones, or with Cascade those still robust after the earlier attacks.
	Attacked int `json:"attacked"`
	// Robust counts the samples (of N) correct clean and not fooled by this
	// attack; Accuracy = Robust/N. With Cascade, samples fooled earlier are
	// not attacked and count as not robust, so this is the cumulative count.
	Robust   int     `json:"robust"`
	Accuracy float64 `json:"accuracy"`
	// Cumulative is the accuracy against this attack and all before it.
	Cumulative float64 `json:"cumulative"`
	// Broke counts the samples this attack fooled (of those it attacked).
	Broke int `json:"broke"`
	// Runs counts the forward-and-backward graph runs, padding included.
	Runs int `json:"runs"`
	// Queries counts the model evaluations of attacked samples: a sample's
	// evaluations until it is fooled or the attack ends, padding and
	// samples already fooled excluded (for Square, its queries).
	Queries int64   `json:"queries"`
	Seconds float64 `json:"seconds"`
}

// AutoAttackSummary is the result of the AutoAttack cascade in the terms of
// a RobustBench entry: clean and AutoAttack accuracy in percent, the threat
// model and ε, the number of examples, and the attacks with their settings.
type AutoAttackSummary struct {
	Version string `json:"version"`
	// ThreatModel is "Linf" or "L2", RobustBench's names.
	ThreatModel string  `json:"threat_model"`
	Eps         float32 `json:"eps"`
	// EpsFraction writes ε as k/255 when it is one ("8/255"), as
	// RobustBench does.
	EpsFraction string `json:"eps_fraction,omitempty"`
	N           int    `json:"n"`
	Seed        uint64 `json:"seed"`
	// CleanAcc and AutoAttackAcc are percentages; Robust counts the
	// samples correct clean that survive the whole cascade.
	CleanAcc      float64 `json:"clean_acc"`
	AutoAttackAcc float64 `json:"autoattack_acc"`
	Robust        int     `json:"robust"`
	// Attacks lists the cascade's attacks with their settings, in order.
	Attacks []string `json:"attacks"`
	// PrecededBy lists attacks run before the cascade: they removed samples
	// from it, so AutoAttackAcc counts them too.
	PrecededBy []string `json:"preceded_by,omitempty"`
}

// Evaluate measures the clean and robust accuracy of c on the first cfg.N
// examples of x (N×C×H×W values in [0,1], flattened NCHW) with labels y.
//
// A sample counts as robust against an attack only if the graph classifies
// it correctly (its logit strictly above every other) at every point the
// attack evaluates: the clean point, every iterate of every restart (and of
// every target). This is at least as strict as checking only the
// highest-loss point at the end. Samples misclassified clean are not
// attacked. The last partial batch is padded with copies and the padded
// results are ignored.
//
// Evaluate stops between graph runs when ctx is done and returns ctx.Err().
func Evaluate(ctx context.Context, c *Classifier, x []float32, y []int64, cfg Config) (*Report, error) {
	t0 := time.Now()
	n, l2, err := checkConfig(c, x, y, &cfg)
	if err != nil {
		return nil, err
	}
	dm := c.Dims()
	rep := &Report{Eps: cfg.Eps, Norm: cfg.Norm, N: n, Batch: dm.B, Seed: cfg.Seed, Cascade: cfg.Cascade,
		Attacks: []AttackResult{}}
	a := newAttacker(c, cfg.Eps, l2, cfg.Seed)

	// Clean accuracy, with the CE graph if there is one.
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	head := HeadCE
	if !c.Has(head) {
		head = c.Heads()[0]
	}
	if err := a.bind(head); err != nil {
		return nil, err
	}
	cleanOK := make([]bool, n)
	err = batches(all, dm.B, func(rows []int) error {
		a.load(x, y, rows)
		if err := a.clean(ctx); err != nil {
			return err
		}
		for r, i := range rows {
			cleanOK[i] = !a.fooled[r]
		}
		report(cfg.Progress, "clean", rows[len(rows)-1]+1, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	robust := append([]bool(nil), cleanOK...)
	rep.CleanCorrect = count(cleanOK)
	rep.Clean = frac(rep.CleanCorrect, n)
	rep.CleanSeconds = time.Since(t0).Seconds()

	for k := range cfg.Attacks {
		spec := &cfg.Attacks[k]
		t1 := time.Now()
		cascade := cfg.Cascade || spec.AutoAttack != ""
		var set []int
		for i := range n {
			if cleanOK[i] && (!cascade || robust[i]) {
				set = append(set, i)
			}
		}
		own := append([]bool(nil), cleanOK...)
		fooled := make([]bool, n)
		if err := a.attackSet(ctx, spec, x, y, set, fooled, cfg.Progress); err != nil {
			return nil, err
		}
		broke := 0
		for _, i := range set {
			if fooled[i] {
				own[i], robust[i] = false, false
				broke++
			}
		}
		res := AttackResult{AttackSpec: *spec, Attacked: len(set), Broke: broke, Runs: a.runs, Queries: a.queries}
		if cascade {
			res.Robust = count(robust)
		} else {
			res.Robust = count(own)
		}
		res.Accuracy = frac(res.Robust, n)
		res.Cumulative = frac(count(robust), n)
		res.Seconds = time.Since(t1).Seconds()
		rep.Attacks = append(rep.Attacks, res)
	}
	rep.WorstRobust = count(robust)
	rep.WorstCase = frac(rep.WorstRobust, n)
	rep.AutoAttack = autoAttackSummary(rep)

	if cfg.Linearity {
		v, err := LocalLinearity(ctx, c, x[:n*dm.D()], y[:n], cfg.Eps, cfg.Seed)
		if err != nil {
			return nil, err
		}
		rep.LocalLinearity = &v
	}
	rep.Seconds = time.Since(t0).Seconds()
	return rep, nil
}

// autoAttackSummary returns the summary of the report's AutoAttack
// cascade, or nil if it has none. The cascade's accuracy is the cumulative
// accuracy after its last attack.
func autoAttackSummary(r *Report) *AutoAttackSummary {
	last := -1
	for k, a := range r.Attacks {
		if a.AutoAttack != "" {
			last = k
		}
	}
	if last < 0 {
		return nil
	}
	s := &AutoAttackSummary{Version: r.Attacks[last].AutoAttack, ThreatModel: "Linf", Eps: r.Eps, N: r.N, Seed: r.Seed,
		CleanAcc: 100 * r.Clean, AutoAttackAcc: 100 * r.Attacks[last].Cumulative,
		Robust: int(math.Round(r.Attacks[last].Cumulative * float64(r.N)))}
	if r.Norm == NormL2 {
		s.ThreatModel = "L2"
	}
	if k := float64(r.Eps) * 255; k >= 1 && math.Abs(k-math.Round(k)) < 1e-4 {
		s.EpsFraction = fmt.Sprintf("%d/255", int(math.Round(k)))
	}
	for k, a := range r.Attacks[:last+1] {
		if a.AutoAttack == "" {
			if k < last {
				s.PrecededBy = append(s.PrecededBy, a.Name)
			}
			continue
		}
		s.Attacks = append(s.Attacks, a.Name+" ("+settings(&a.AttackSpec)+")")
	}
	return s
}

// settings describes an attack's parameters in a few words.
func settings(s *AttackSpec) string {
	var b strings.Builder
	if s.Kind == KindSquare {
		fmt.Fprintf(&b, "%d queries", s.Steps)
	} else {
		fmt.Fprintf(&b, "%d iterations", s.Steps)
	}
	if s.Kind == KindAPGDT || s.Kind == KindFABT {
		fmt.Fprintf(&b, " × %d targets", s.Targets)
	}
	fmt.Fprintf(&b, ", %d restarts", s.Restarts)
	switch s.Kind {
	case KindFABT:
		fmt.Fprintf(&b, ", α_max %g, η %g, β %g", s.AlphaMax, s.Eta, s.Beta)
	case KindSquare:
		fmt.Fprintf(&b, ", p_init %g, margin loss", s.PInit)
	default:
		fmt.Fprintf(&b, ", %s loss, step %s", s.Loss, stepString(s.Kind, s.Step))
	}
	return b.String()
}

// checkConfig validates cfg against c and the data, fills in defaults and
// returns the number of examples and whether the norm is L2.
func checkConfig(c *Classifier, x []float32, y []int64, cfg *Config) (n int, l2 bool, err error) {
	if c == nil {
		return 0, false, fmt.Errorf("eval: nil Classifier")
	}
	switch strings.ToLower(cfg.Norm) {
	case "", NormLinf:
		cfg.Norm = NormLinf
	case NormL2:
		cfg.Norm, l2 = NormL2, true
	default:
		return 0, false, fmt.Errorf("eval: unknown norm %q (want linf or l2)", cfg.Norm)
	}
	if !(cfg.Eps >= 0) || math.IsInf(float64(cfg.Eps), 0) {
		return 0, false, fmt.Errorf("eval: ε = %v; want a finite number ≥ 0", cfg.Eps)
	}
	names := map[string]bool{}
	for k := range cfg.Attacks {
		s := &cfg.Attacks[k]
		if err := s.Validate(); err != nil {
			return 0, false, err
		}
		if names[s.Name] {
			return 0, false, fmt.Errorf("eval: %w: two attacks are named %q", ErrAttack, s.Name)
		}
		names[s.Name] = true
		if !c.Has(s.Loss) {
			return 0, false, fmt.Errorf("eval: attack %s needs the %q eval graph; the classifier has %s",
				s.Name, s.Loss, strings.Join(c.Heads(), ", "))
		}
	}
	if cfg.Linearity && !c.Has(HeadCE) {
		return 0, false, fmt.Errorf("eval: the local-linearity probe needs the \"ce\" eval graph; the classifier has %s",
			strings.Join(c.Heads(), ", "))
	}
	dm := c.Dims()
	d := dm.D()
	if len(x) != len(y)*d {
		return 0, false, fmt.Errorf("eval: %d image values for %d labels; the model takes %d×%d×%d images",
			len(x), len(y), dm.C, dm.H, dm.W)
	}
	n = len(y)
	if cfg.N > 0 {
		n = min(cfg.N, n)
	}
	if n == 0 || cfg.N < 0 {
		return 0, false, fmt.Errorf("eval: no examples to evaluate (N = %d, %d given)", cfg.N, len(y))
	}
	for i, v := range y[:n] {
		if v < 0 || v >= int64(dm.K) {
			return 0, false, fmt.Errorf("eval: label %d of example %d is outside [0, %d)", v, i, dm.K)
		}
	}
	for i, v := range x[:n*d] {
		if !(v >= 0 && v <= 1) {
			return 0, false, fmt.Errorf("eval: pixel %d of example %d is %v; images must lie in [0,1]", i%d, i/d, v)
		}
	}
	return n, l2, nil
}

// attackSet runs spec on the samples set of x, y in batches and marks in
// fooled (indexed by sample) the ones it misclassifies; a.runs counts the
// graph runs.
func (a *attacker) attackSet(ctx context.Context, spec *AttackSpec, x []float32, y []int64, set []int, fooled []bool, progress func(string, int, int)) error {
	a.aid, a.runs, a.queries = attackID(spec.Name), 0, 0
	if spec.Kind == KindSquare {
		if err := a.squareSet(ctx, spec, x, y, set, fooled, progress); err != nil {
			return fmt.Errorf("eval: %s: %w", spec.Name, err)
		}
		return nil
	}
	done := 0
	return batches(set, a.b, func(rows []int) error {
		a.load(x, y, rows)
		if err := a.attack(ctx, spec); err != nil {
			return fmt.Errorf("eval: %s: %w", spec.Name, err)
		}
		for r, i := range rows {
			fooled[i] = a.fooled[r]
		}
		done += len(rows)
		report(progress, spec.Name, done, len(set))
		return nil
	})
}

// batches calls f with consecutive slices of rows of at most b samples.
func batches(rows []int, b int, f func([]int) error) error {
	for i := 0; i < len(rows); i += b {
		if err := f(rows[i:min(i+b, len(rows))]); err != nil {
			return err
		}
	}
	return nil
}

func report(p func(string, int, int), name string, done, total int) {
	if p != nil {
		p(name, done, total)
	}
}

func count(v []bool) int {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return n
}

func frac(k, n int) float64 { return float64(k) / float64(n) }

// Table returns the report as a text table for people.
func (r *Report) Table() string {
	var sb strings.Builder
	norm := "L∞"
	if r.Norm == NormL2 {
		norm = "L2"
	}
	mode := "each attack on every clean-correct sample"
	if r.AutoAttack != nil && !r.Cascade {
		mode += "; (aa): AutoAttack's cascade, each on the samples still robust, accuracies cumulative"
	}
	if r.Cascade {
		mode = "cascade: each attack on the samples still robust, accuracies cumulative"
	}
	fmt.Fprintf(&sb, "robustness at ε = %.4g (%s), %d examples, batch %d, seed %d; %s\n",
		r.Eps, norm, r.N, r.Batch, r.Seed, mode)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "attack\tloss\titerations\tstep\taccuracy\tworst so far\tbroke\truns\tqueries\ttime\t")
	fmt.Fprintf(tw, "clean\t\t\t\t%s\t%s\t\t\t\t%s\t\n", pct(r.Clean), pct(r.Clean), secs(r.CleanSeconds))
	for _, a := range r.Attacks {
		name := a.Name
		if a.AutoAttack != "" {
			name += " (aa)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n",
			name, a.Loss, iterations(&a.AttackSpec), stepString(a.Kind, a.Step), pct(a.Accuracy), pct(a.Cumulative), a.Broke, a.Runs, a.Queries, secs(a.Seconds))
	}
	fmt.Fprintf(tw, "worst case\t\t\t\t%s\t\t\t\t\t%s\t\n", pct(r.WorstCase), secs(r.Seconds))
	tw.Flush()
	if aa := r.AutoAttack; aa != nil {
		eps := fmt.Sprintf("%.4g", aa.Eps)
		if aa.EpsFraction != "" {
			eps = aa.EpsFraction
		}
		fmt.Fprintf(&sb, "AutoAttack (%s, %s, ε = %s, n = %d): clean %.2f%%, robust %.2f%%", aa.Version, aa.ThreatModel, eps, aa.N, aa.CleanAcc, aa.AutoAttackAcc)
		if len(aa.PrecededBy) > 0 {
			fmt.Fprintf(&sb, " (after %s)", strings.Join(aa.PrecededBy, ", "))
		}
		sb.WriteString("\n")
	}
	if r.LocalLinearity != nil {
		fmt.Fprintf(&sb, "local linearity (mean cosine of ∇x CE at x and x+U[−ε,ε]): %.4f\n", *r.LocalLinearity)
	}
	return sb.String()
}

func pct(v float64) string  { return fmt.Sprintf("%.2f%%", 100*v) }
func secs(s float64) string { return fmt.Sprintf("%.2fs", s) }

func iterations(s *AttackSpec) string {
	it := strconv.Itoa(s.Steps)
	switch {
	case s.Kind == KindSquare:
		it += " queries"
		if s.Restarts > 1 {
			it += fmt.Sprintf(" × %d restarts", s.Restarts)
		}
	case s.Kind == KindAPGDT || s.Kind == KindFABT:
		it += fmt.Sprintf(" × %d targets", s.Targets)
		if s.Restarts > 1 {
			it += fmt.Sprintf(" × %d", s.Restarts)
		}
	case s.Restarts > 1:
		it += fmt.Sprintf(" × %d restarts", s.Restarts)
	}
	return it
}

func stepString(kind string, f float32) string {
	switch kind {
	case KindFABT:
		return "projection"
	case KindSquare:
		return "random search"
	}
	var s string
	switch {
	case f == 1:
		s = "ε"
	case f < 1 && math.Abs(1/float64(f)-math.Round(1/float64(f))) < 1e-6:
		s = fmt.Sprintf("ε/%d", int(math.Round(1/float64(f))))
	default:
		s = fmt.Sprintf("%gε", f)
	}
	if kind == KindAPGD || kind == KindAPGDT {
		s += " → adaptive"
	}
	return s
}
