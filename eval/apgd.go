package eval

import "context"

// APGD constants (Croce & Hein 2020; AutoAttack's autopgd_base.py).
const (
	apgdRho      = 0.75 // halve the step when at most ρ of the steps since the last checkpoint raised the loss
	apgdMomentum = 0.75
)

// apgdSchedule returns APGD's checkpoint spacing for n iterations: the first
// checkpoint comes after first iterations, and each later interval is decr
// shorter than the one before, but at least least. For n = 100 the
// checkpoints are 22, 41, 57, 70, 80, 87, 93, 99: p_0 = 0, p_1 = 0.22,
// p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06).
func apgdSchedule(n int) (first, decr, least int) {
	return max(int(0.22*float64(n)), 1), max(int(0.03*float64(n)), 1), max(int(0.06*float64(n)), 1)
}

// apgd runs APGD (untargeted, or with the targets already in the session)
// on the loaded batch. round0 offsets the random streams (APGD-T gives each
// target its own).
//
// Per row, as in AutoAttack: start on the ε-sphere (or at x), step size
// η = Step·ε, then Steps iterations of
//
//	z = P(x_k + η·sign(∇))                 (L2: η·∇/‖∇‖)
//	x_{k+1} = P(x_k + a(z − x_k) + (1−a)(x_k − x_{k−1})),  a = 1 at k = 0, else 0.75
//
// where P projects onto the ε-ball and [0,1]. At each checkpoint (see
// apgdSchedule) η is halved, and the row restarts from its highest-loss
// point, if at most ρ = 0.75 of the steps since the last checkpoint raised
// the loss, or if η was not halved at the last checkpoint and the best loss
// has not improved since. This follows AutoAttack's attack_single_run line
// for line, including its one departure from the paper: the first step of
// the first interval is compared with a loss of 0 rather than with the loss
// at the starting point. Every evaluated point is checked: a row
// misclassified at any of them is fooled and stops moving (AutoAttack keeps
// moving it, which cannot change the verdict).
func (a *attacker) apgd(ctx context.Context, spec *AttackSpec, round0 int) error {
	first, decr, least := apgdSchedule(spec.Steps)
	d := a.d
	for rs := range spec.Restarts {
		if a.allFooled() {
			return nil
		}
		for r := range a.b {
			if !a.fooled[r] {
				a.start(r, round0+rs, spec.RandomStart, true)
			}
		}
		if err := a.forward(ctx); err != nil {
			return err
		}
		copy(a.g, a.sg)
		copy(a.gbest, a.g)
		copy(a.xbest, a.xa)
		copy(a.xold, a.xa)
		for r := range a.b {
			a.step[r] = spec.Step * a.eps
			a.lossBest[r], a.lossCheck[r], a.lossPrev[r] = a.sl[r], a.sl[r], 0
			a.succ[r], a.reduced[r] = 0, true
		}
		interval, since := first, 0
		for i := range spec.Steps {
			mom := float32(apgdMomentum)
			if i == 0 {
				mom = 1
			}
			for r := range a.b {
				if !a.fooled[r] {
					a.apgdStep(r, mom)
				}
			}
			if err := a.forward(ctx); err != nil {
				return err
			}
			copy(a.g, a.sg)
			for r := range a.b {
				l := a.sl[r]
				if l > a.lossPrev[r] {
					a.succ[r]++
				}
				a.lossPrev[r] = l
				if l > a.lossBest[r] {
					a.lossBest[r] = l
					copy(a.xbest[r*d:(r+1)*d], a.xa[r*d:(r+1)*d])
					copy(a.gbest[r*d:(r+1)*d], a.g[r*d:(r+1)*d])
				}
			}
			if since++; since < interval {
				continue
			}
			for r := range a.b {
				if a.fooled[r] {
					continue
				}
				halve := apgdHalve(a.succ[r], interval, a.reduced[r], a.lossCheck[r], a.lossBest[r])
				a.reduced[r], a.lossCheck[r], a.succ[r] = halve, a.lossBest[r], 0
				if halve {
					a.step[r] /= 2
					copy(a.xa[r*d:(r+1)*d], a.xbest[r*d:(r+1)*d])
					copy(a.g[r*d:(r+1)*d], a.gbest[r*d:(r+1)*d])
				}
			}
			since, interval = 0, max(interval-decr, least)
		}
	}
	return nil
}

// apgdHalve is APGD's checkpoint rule: halve the step size if at most ρ of
// the interval's steps raised the loss (succ ≤ ρ·interval, AutoAttack's
// check_oscillation), or if it was not halved at the previous checkpoint and
// the best loss has not improved since (bestBefore ≥ best).
func apgdHalve(succ, interval int, halvedBefore bool, bestBefore, best float32) bool {
	return float64(succ) <= apgdRho*float64(interval) || (!halvedBefore && bestBefore >= best)
}

// apgdStep takes row r's momentum step (see apgd); xold becomes the current
// point.
func (a *attacker) apgdStep(r int, mom float32) {
	d := a.d
	xa, xold, z := a.xa[r*d:(r+1)*d], a.xold[r*d:(r+1)*d], a.tmp
	eta := a.step[r]
	if !a.l2 {
		g, lo, hi := a.g[r*d:(r+1)*d], a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
		for i, x := range xa {
			zi := clamp(x+eta*sign(g[i]), lo[i], hi[i])
			xa[i] = clamp(x+mom*(zi-x)+(1-mom)*(x-xold[i]), lo[i], hi[i])
			xold[i] = x
		}
		return
	}
	// L2: z = P(x + η∇/‖∇‖) in place in xa, keeping x in tmp.
	copy(z, xa)
	a.gradStep(r, eta)
	for i, x := range z {
		xa[i] = x + mom*(xa[i]-x) + (1-mom)*(x-xold[i])
		xold[i] = x
	}
	a.project(r)
}

// apgdT runs APGD-T: for each of the top Targets classes other than y (by
// the clean logits), APGD on the targeted DLR loss, attacking only the rows
// that no earlier target fooled.
func (a *attacker) apgdT(ctx context.Context, spec *AttackSpec) error {
	copy(a.xa, a.x0)
	if err := a.forward(ctx); err != nil {
		return err
	}
	k := a.k
	for r := range a.b {
		a.rankTargets(r)
	}
	targets := min(spec.Targets, k-1)
	for t := range targets {
		if a.allFooled() {
			return nil
		}
		for r := range a.b {
			a.st[r] = int64(a.order[r*k+t])
		}
		if err := a.apgd(ctx, spec, t*spec.Restarts); err != nil {
			return err
		}
	}
	return nil
}

// rankTargets writes row r's classes other than y, by clean logit
// descending (ties by class index), into order[r·K : r·K+K−1].
func (a *attacker) rankTargets(r int) {
	k := a.k
	z, o := a.sz[r*k:(r+1)*k], a.order[r*k:(r+1)*k]
	n := 0
	for j := range k {
		if int64(j) == a.y[r] {
			continue
		}
		// Insertion sort: K is small and this runs once per batch.
		p := n
		for p > 0 && z[o[p-1]] < z[j] {
			o[p] = o[p-1]
			p--
		}
		o[p] = j
		n++
	}
}
