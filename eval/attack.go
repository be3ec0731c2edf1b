package eval

import (
	"context"
	"fmt"
	"math"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx/ort"
)

// attacker holds one batch of B rows and every buffer the attacks need,
// allocated once per Evaluate: the attack loops allocate nothing.
//
// Rows are attacked independently: a row's random start comes from its own
// stream (seed, attack, sample, round), and its steps depend only on its own
// gradient, so a sample's verdict does not depend on its batch. Rows n..B−1
// pad the last partial batch with copies of row 0; their results are ignored.
type attacker struct {
	c    *Classifier
	b, d int // batch size, values per image
	k    int // classes
	eps  float32
	l2   bool
	seed uint64
	aid  uint64 // stream identifier of the running attack

	// The batch.
	n      int       // valid rows
	ids    []int     // sample index of every row
	x0     []float32 // clean images
	y      []int64
	lo, hi []float32 // L∞: per-value bounds of ball ∩ [0,1], exact in float32; L2: 0 and 1
	fooled []bool    // row misclassified at some evaluated point

	// Attack state, [B·D] and [B].
	xa, xold, xbest, g, gbest, tmp      []float32
	step, lossBest, lossPrev, lossCheck []float32
	succ                                []int
	reduced                             []bool
	order                               []int // APGD-T, FAB-T: per row, classes ≠ y by clean logit, descending

	// FAB-T: rows attacked by the current target, each row's smallest
	// adversarial distance, and projection scratch [D].
	active       []bool
	fabNorm      []float64
	fabD1, fabD2 []float64
	fabPairs     []breakpoint

	// Square, per row (slot): see square.go.
	sq squareState

	// The bound session and its tensors.
	s          *ort.Session
	sx, sg, sz []float32
	sl         []float32
	sy, st     []int64
	runs       int   // graph runs since the counter was reset
	queries    int64 // evaluations of attacked samples since the counter was reset
}

func newAttacker(c *Classifier, eps float32, l2 bool, seed uint64) *attacker {
	dm := c.Dims()
	b, d := dm.B, dm.D()
	f := func(n int) []float32 { return make([]float32, n) }
	return &attacker{
		c: c, b: b, d: d, k: dm.K, eps: eps, l2: l2, seed: seed,
		ids: make([]int, b), x0: f(b * d), y: make([]int64, b), lo: f(b * d), hi: f(b * d),
		fooled: make([]bool, b),
		xa:     f(b * d), xold: f(b * d), xbest: f(b * d), g: f(b * d), gbest: f(b * d), tmp: f(d),
		step: f(b), lossBest: f(b), lossPrev: f(b), lossCheck: f(b),
		succ: make([]int, b), reduced: make([]bool, b), order: make([]int, b*dm.K),
		active: make([]bool, b), fabNorm: make([]float64, b), fabD1: make([]float64, d), fabD2: make([]float64, d),
		fabPairs: make([]breakpoint, d), sq: newSquareState(b, d),
	}
}

// bind makes head's session the one forward runs.
func (a *attacker) bind(head string) error {
	s, err := a.c.session(head)
	if err != nil {
		return err
	}
	a.s = s
	a.sx, a.sz, a.sg, a.sl = s.Float(contract.Input), s.Float(contract.Logits), nil, nil
	if s.Has(contract.InputGrad) { // not the HeadLogits graph
		a.sg, a.sl = s.Float(contract.InputGrad), s.Float(contract.LossEach)
	}
	a.sy, a.st = s.Int64(contract.Labels), nil
	if s.Has(contract.Target) {
		a.st = s.Int64(contract.Target)
	}
	return nil
}

// load fills the batch with samples rows (1 ≤ len(rows) ≤ B) of x and y,
// padding with copies of the first, and resets the verdicts.
func (a *attacker) load(x []float32, y []int64, rows []int) {
	a.n = len(rows)
	for r := range a.b {
		i := rows[0]
		if r < len(rows) {
			i = rows[r]
		}
		a.loadRow(x, y, r, i)
	}
}

// loadRow puts sample i of x, y into row r, with its bounds, and resets the
// row's verdict.
func (a *attacker) loadRow(x []float32, y []int64, r, i int) {
	d := a.d
	a.ids[r], a.y[r], a.fooled[r] = i, y[i], false
	x0, lo, hi := a.x0[r*d:(r+1)*d], a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
	copy(x0, x[i*d:(i+1)*d])
	if a.l2 {
		for j := range lo {
			lo[j], hi[j] = 0, 1
		}
		return
	}
	eps := float64(a.eps)
	for j, v := range x0 {
		h := v + a.eps
		if float64(h)-float64(v) > eps {
			h = math.Nextafter32(h, float32(math.Inf(-1)))
		}
		l := v - a.eps
		if float64(v)-float64(l) > eps {
			l = math.Nextafter32(l, float32(math.Inf(1)))
		}
		lo[j], hi[j] = max(l, 0), min(h, 1)
	}
}

// labels writes y (and y as a placeholder target) into the bound session.
func (a *attacker) labels() {
	copy(a.sy, a.y)
	if a.st != nil {
		copy(a.st, a.y)
	}
}

// run evaluates the bound graph at xa.
func (a *attacker) run() error {
	copy(a.sx, a.xa)
	a.runs++
	return a.s.Run()
}

// forward evaluates the bound graph at xa and marks the valid rows that are
// misclassified there.
func (a *attacker) forward(ctx context.Context) error {
	if err := a.query(ctx, a.fooled, false); err != nil {
		return err
	}
	for r := range a.n {
		if !a.fooled[r] && !correct(a.sz[r*a.k:(r+1)*a.k], a.y[r]) {
			a.fooled[r] = true
		}
	}
	return nil
}

// query evaluates the bound graph at xa, counting a query for every row r
// with counted[r] == want (the rows the attack is working on).
func (a *attacker) query(ctx context.Context, counted []bool, want bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h := a.c.pointHook; h != nil {
		h(a)
	}
	for r := range a.n {
		if counted[r] == want {
			a.queries++
		}
	}
	return a.run()
}

// correct reports whether z_y beats every other logit strictly; a tie or a
// NaN counts as a misclassification.
func correct(z []float32, y int64) bool {
	zy := z[y]
	for j, v := range z {
		if j != int(y) && !(zy > v) {
			return false
		}
	}
	return true
}

// allFooled reports whether every valid row is misclassified already.
func (a *attacker) allFooled() bool {
	for r := range a.n {
		if !a.fooled[r] {
			return false
		}
	}
	return true
}

// attack runs spec on the loaded batch; afterwards fooled holds the verdicts.
func (a *attacker) attack(ctx context.Context, spec *AttackSpec) error {
	if err := a.bind(spec.Loss); err != nil {
		return err
	}
	a.labels()
	switch spec.Kind {
	case KindFGSM:
		return a.fgsm(ctx)
	case KindPGD:
		return a.pgd(ctx, spec)
	case KindAPGD:
		return a.apgd(ctx, spec, 0)
	case KindAPGDT:
		return a.apgdT(ctx, spec)
	case KindFABT:
		return a.fabT(ctx, spec)
	}
	return fmt.Errorf("eval: %w %q: kind %q does not attack a loaded batch", ErrAttack, spec.Name, spec.Kind)
}

// clean marks the rows the bound graph misclassifies at x0.
func (a *attacker) clean(ctx context.Context) error {
	a.labels()
	copy(a.xa, a.x0)
	return a.forward(ctx)
}

// fgsm: x + ε·sign(∇), or x + ε·∇/‖∇‖ for L2, in the box.
func (a *attacker) fgsm(ctx context.Context) error {
	copy(a.xa, a.x0)
	if err := a.forward(ctx); err != nil {
		return err
	}
	copy(a.g, a.sg)
	for r := range a.b {
		a.gradStep(r, a.eps)
	}
	return a.forward(ctx)
}

// pgd runs Madry et al.'s PGD with restarts. A row stops moving once it is
// misclassified; later restarts attack only the rows not yet misclassified.
func (a *attacker) pgd(ctx context.Context, spec *AttackSpec) error {
	alpha := spec.Step * a.eps
	for round := range spec.Restarts {
		if a.allFooled() {
			return nil
		}
		for r := range a.b {
			if !a.fooled[r] {
				a.start(r, round, spec.RandomStart, false)
			}
		}
		for k := 0; ; k++ {
			if err := a.forward(ctx); err != nil {
				return err
			}
			if k == spec.Steps {
				break
			}
			copy(a.g, a.sg)
			for r := range a.b {
				if !a.fooled[r] {
					a.gradStep(r, alpha)
				}
			}
		}
	}
	return nil
}

// start puts row r at its starting point for round: x0, or a random point
// of the ball: uniform in the ball (PGD) or, with sphere, AutoAttack's
// start on the sphere (L∞: ε·t/‖t‖∞ with t uniform; L2: ε·t/‖t‖₂ with t
// Gaussian).
func (a *attacker) start(r, round int, random, sphere bool) {
	d := a.d
	x0, xa := a.x0[r*d:(r+1)*d], a.xa[r*d:(r+1)*d]
	lo, hi := a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
	if !random {
		copy(xa, x0)
		return
	}
	rg := stream(a.seed, a.aid, a.ids[r], round)
	t := a.tmp
	if !a.l2 {
		scale := a.eps
		if sphere {
			m := float32(0)
			for i := range t {
				t[i] = rg.sym()
				m = max(m, abs32(t[i]))
			}
			scale = a.eps / (m + 1e-12)
		} else {
			for i := range t {
				t[i] = rg.sym()
			}
		}
		for i := range xa {
			xa[i] = clamp(x0[i]+scale*t[i], lo[i], hi[i])
		}
		return
	}
	n := 0.0
	for i := range t {
		v := rg.norm()
		t[i] = float32(v)
		n += v * v
	}
	radius := float64(a.eps)
	if !sphere { // uniform in the ball: radius ε·U^(1/D)
		radius *= math.Pow(rg.unit(), 1/float64(d))
	}
	s := float32(radius / (math.Sqrt(n) + 1e-12))
	for i := range xa {
		xa[i] = x0[i] + s*t[i]
	}
	a.project(r)
}

// gradStep moves row r by size along the gradient a.g (L∞: size·sign(g);
// L2: size·g/‖g‖) and projects it onto the ball and the box.
func (a *attacker) gradStep(r int, size float32) {
	d := a.d
	xa, g := a.xa[r*d:(r+1)*d], a.g[r*d:(r+1)*d]
	if !a.l2 {
		lo, hi := a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
		for i := range xa {
			xa[i] = clamp(xa[i]+size*sign(g[i]), lo[i], hi[i])
		}
		return
	}
	s := size / float32(norm2(g)+1e-12)
	for i := range xa {
		xa[i] += s * g[i]
	}
	a.project(r)
}

// project maps row r of xa onto the L2 ball around x0 and then into [0,1]
// (clipping to the box only moves values toward x0, so it stays in the
// ball). L∞ rows are projected by clamping to lo, hi directly.
func (a *attacker) project(r int) {
	d := a.d
	x0, xa := a.x0[r*d:(r+1)*d], a.xa[r*d:(r+1)*d]
	n := 0.0
	for i := range xa {
		v := float64(xa[i] - x0[i])
		n += v * v
	}
	n = math.Sqrt(n)
	s := float32(1)
	if n > float64(a.eps) {
		s = float32(float64(a.eps) / n)
	}
	for i := range xa {
		xa[i] = clamp(x0[i]+s*(xa[i]-x0[i]), 0, 1)
	}
}

func clamp(v, lo, hi float32) float32 { return min(max(v, lo), hi) }

// sign returns ±1, or 0 for ±0 and NaN.
func sign(v float32) float32 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func norm2(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
