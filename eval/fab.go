package eval

import (
	"cmp"
	"context"
	"math"
	"slices"
)

// fabT runs FAB-T (Croce & Hein, "Minimally distorted adversarial examples
// with a fast adaptive boundary attack", ICML 2020) in AutoAttack's targeted
// form: for each of the top Targets classes t other than y (by the clean
// logits) and each restart, Steps iterations from x (later restarts from a
// random point at distance ε/2) of
//
//	linearize g = z_t − z_y at x_k (value and gradient: the diff-t head)
//	d₁ = the smallest step (in the threat model's norm) that takes x_k onto
//	     the hyperplane where the linearization vanishes, inside [0,1]^D
//	d₂ = the same from x
//	α  = min(‖d₁‖/(‖d₁‖+‖d₂‖), α_max)
//	x_{k+1} = clip((x_k + η·d₁)(1−α) + (x + η·d₂)α, 0, 1)
//
// and, when x_{k+1} is misclassified, x_{k+1} ← x + β(x_{k+1} − x): the
// iterate is pulled back towards x to look for a closer adversarial point.
// FAB minimizes the norm of the perturbation instead of staying inside the
// ball, so its iterates may leave it: a row is fooled only at a
// misclassified iterate within distance ε of x (AutoAttack's final check of
// the smallest adversarial perturbation found against ε). Each row keeps its
// smallest adversarial distance in fabNorm. Rows fooled by an earlier target
// or restart are not attacked again, as in AutoAttack.
//
// A graph run gives the logits and the gradient at once, so an iteration
// costs one run, plus one more when some row was pulled back (its gradient
// must be taken at the new point).
func (a *attacker) fabT(ctx context.Context, spec *AttackSpec) error {
	copy(a.xa, a.x0)
	if err := a.forward(ctx); err != nil {
		return err
	}
	k := a.k
	for r := range a.b {
		a.rankTargets(r)
		a.fabNorm[r] = math.Inf(1)
	}
	targets := min(spec.Targets, k-1)
	for t := range targets {
		for rs := range spec.Restarts {
			if a.allFooled() {
				return nil
			}
			for r := range a.b {
				a.active[r] = r < a.n && !a.fooled[r]
				a.st[r] = int64(a.order[r*k+t])
				if a.active[r] {
					a.fabStart(r, t*spec.Restarts+rs, rs > 0)
				}
			}
			fresh := false // the session's outputs are those at xa
			for range spec.Steps {
				if !fresh {
					if err := a.fabRun(ctx); err != nil {
						return err
					}
				}
				for r := range a.b {
					if a.active[r] {
						a.fabStep(r, spec)
					}
				}
				if err := a.fabRun(ctx); err != nil {
					return err
				}
				fresh = true
				for r := range a.b {
					if a.active[r] && a.fabCheck(r, spec.Beta) {
						fresh = false
					}
				}
			}
		}
	}
	return nil
}

// fabRun evaluates the bound graph at xa, counting a query for every row
// FAB is attacking.
func (a *attacker) fabRun(ctx context.Context) error { return a.query(ctx, a.active, true) }

// fabStart puts row r at x, or with random at AutoAttack's random start:
// x + (ε/2)·u/‖u‖ (u uniform in [−1,1]^D for L∞, Gaussian for L2), clipped
// to [0,1].
func (a *attacker) fabStart(r, round int, random bool) {
	d := a.d
	x0, xa := a.x0[r*d:(r+1)*d], a.xa[r*d:(r+1)*d]
	if !random {
		copy(xa, x0)
		return
	}
	rg := stream(a.seed, a.aid, a.ids[r], round)
	u := a.tmp
	n := 0.0
	for i := range u {
		if a.l2 {
			v := rg.norm()
			u[i] = float32(v)
			n += v * v
		} else {
			u[i] = rg.sym()
			n = math.Max(n, float64(abs32(u[i])))
		}
	}
	if a.l2 {
		n = math.Sqrt(n)
	}
	s := float32(float64(a.eps) / 2 / (n + 1e-12))
	for i := range xa {
		xa[i] = clamp(x0[i]+s*u[i], 0, 1)
	}
}

// fabStep takes row r's FAB step from the session's outputs at xa.
func (a *attacker) fabStep(r int, spec *AttackSpec) {
	d, k := a.d, a.k
	x1, x0, g := a.xa[r*d:(r+1)*d], a.x0[r*d:(r+1)*d], a.sg[r*d:(r+1)*d]
	z := a.sz[r*k : (r+1)*k]
	df := float64(z[a.st[r]]) - float64(z[a.y[r]])
	// The hyperplane {p : g·p = g·x1 − df}: its signed offsets at x1 and x.
	s0 := df
	for i := range g {
		s0 += float64(g[i]) * (float64(x0[i]) - float64(x1[i]))
	}
	d1, d2 := a.fabD1, a.fabD2
	fabProject(x1, g, df, a.l2, d1, a.fabPairs)
	fabProject(x0, g, s0, a.l2, d2, a.fabPairs)
	n1, n2 := max(a.norm(d1), 1e-8), max(a.norm(d2), 1e-8)
	alpha := min(max(n1/(n1+n2), 0), float64(spec.AlphaMax))
	eta := float64(spec.Eta)
	for i := range x1 {
		v := (float64(x1[i])+eta*d1[i])*(1-alpha) + (float64(x0[i])+eta*d2[i])*alpha
		x1[i] = float32(min(max(v, 0), 1))
	}
}

// fabCheck looks at row r's new iterate: if it is misclassified, it records
// its distance from x (and the row as fooled if that is at most ε) and pulls
// the iterate back to x + β(x_k − x), reporting true.
func (a *attacker) fabCheck(r int, beta float32) bool {
	d, k := a.d, a.k
	if correct(a.sz[r*k:(r+1)*k], a.y[r]) {
		return false
	}
	x1, x0 := a.xa[r*d:(r+1)*d], a.x0[r*d:(r+1)*d]
	n := 0.0
	for i := range x1 {
		v := float64(x1[i]) - float64(x0[i])
		if a.l2 {
			n += v * v
		} else {
			n = math.Max(n, math.Abs(v))
		}
	}
	if a.l2 {
		n = math.Sqrt(n)
	}
	a.fabNorm[r] = min(a.fabNorm[r], n)
	if n <= float64(a.eps) && r < a.n {
		a.fooled[r] = true
	}
	for i := range x1 {
		x1[i] = x0[i] + beta*(x1[i]-x0[i])
	}
	return true
}

// norm is the threat model's norm of v.
func (a *attacker) norm(v []float64) float64 {
	n := 0.0
	for _, x := range v {
		if a.l2 {
			n += x * x
		} else {
			n = math.Max(n, math.Abs(x))
		}
	}
	if a.l2 {
		return math.Sqrt(n)
	}
	return n
}

// breakpoint is one coordinate of fabProject's piecewise-linear equation:
// it contributes u·min(λ, q).
type breakpoint struct{ q, u float64 }

func byQ(a, b breakpoint) int { return cmp.Compare(a.q, b.q) }

// fabProject writes into d the smallest step, in the L∞ norm (or L2 with
// l2), that moves the point t onto the hyperplane {p : w·p = w·t − s} while
// keeping t + d inside [0,1]^D; if no point of the box reaches the
// hyperplane, the step to the box's corner closest to it. pairs is scratch
// of length ≥ len(t).
//
// The step moves every coordinate against σ·w_i (σ the sign of s, + for
// s = 0), coordinate i by at most p_i, its distance to the box's face on
// that side, and must lower σ·w·p by c = |s|:
//
//	L∞: d_i = −σ·sign(w_i)·min(λ, p_i),       Σ |w_i|·min(λ, p_i) = c
//	L2: d_i = −σ·sign(w_i)·min(λ|w_i|, p_i),  Σ w_i²·min(λ, p_i/|w_i|) = c
//
// Both are one equation Σ u_i·min(λ, q_i) = c, piecewise linear and
// increasing in λ, solved exactly by sorting the breakpoints q_i. This is
// the problem AutoAttack's projection_linf and projection_l2 solve (they
// search the sorted breakpoints by bisection).
func fabProject(t, w []float32, s float64, l2 bool, d []float64, pairs []breakpoint) {
	sigma := 1.0
	if s < 0 {
		sigma = -1
	}
	c := s * sigma
	room := func(i int) float64 {
		if sigma*float64(w[i]) > 0 {
			return float64(t[i]) // moves down to 0
		}
		return 1 - float64(t[i]) // moves up to 1
	}
	n, reach := 0, 0.0
	for i, wi := range w {
		if wi == 0 {
			continue
		}
		aw, p := math.Abs(float64(wi)), room(i)
		bp := breakpoint{q: p, u: aw}
		if l2 {
			bp = breakpoint{q: p / aw, u: aw * aw}
		}
		pairs[n] = bp
		n++
		reach += aw * p
	}
	lambda := math.Inf(1) // unreachable: go all the way
	if reach > c {
		bs := pairs[:n]
		slices.SortFunc(bs, byQ)
		rest := 0.0
		for _, b := range bs {
			rest += b.u
		}
		done := 0.0 // Σ u·q over the saturated coordinates
		for _, b := range bs {
			if done+rest*b.q >= c {
				lambda = max((c-done)/rest, 0)
				break
			}
			done += b.u * b.q
			rest -= b.u
		}
	}
	for i, wi := range w {
		if wi == 0 {
			d[i] = 0
			continue
		}
		aw, p := math.Abs(float64(wi)), room(i)
		m := lambda
		if l2 {
			m *= aw
		}
		dir := -sigma
		if wi < 0 {
			dir = sigma
		}
		d[i] = dir * min(m, p)
	}
}
