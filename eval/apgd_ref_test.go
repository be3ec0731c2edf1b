package eval

import (
	"math"
	"sort"
	"testing"
)

// aaAPGD is a float64 transcription, statement by statement, of
// AutoAttack's APGDAttack.attack_single_run (autoattack/autopgd_base.py,
// norm 'Linf', eot_iter 1) for one sample of the linear test model, with the
// random start t given. It returns whether the sample was misclassified at
// any evaluated point (AutoAttack's acc, negated). visit sees every point it
// evaluates, in order.
func aaAPGD(m *linModel, x []float64, y, target int, head string, eps float64, nIter int, t []float64, visit func([]float64, bool)) bool {
	d := len(x)
	f := func(xa []float64) (logits []float64, loss float64, grad []float64) {
		z := m.logits64(xa)
		visit(xa, !correctRef(z, y))
		return z, refLoss(head, z, y, target), gradX(m, head, z, y, target)
	}
	clamp := func(v, lo, hi float64) float64 { return math.Min(math.Max(v, lo), hi) }
	nIter2 := max(int(0.22*float64(nIter)), 1)
	nIterMin := max(int(0.06*float64(nIter)), 1)
	sizeDecr := max(int(0.03*float64(nIter)), 1)

	tmax := 0.0
	for _, v := range t {
		tmax = math.Max(tmax, math.Abs(v))
	}
	xAdv := make([]float64, d)
	for i := range x {
		xAdv[i] = clamp(x[i]+eps*t[i]/(tmax+1e-12), 0, 1)
	}
	xBest := append([]float64(nil), xAdv...)
	lossSteps := make([]float64, nIter)
	logits, lossIndiv, grad := f(xAdv)
	gradBest := append([]float64(nil), grad...)
	acc := correctRef(logits, y)
	lossBest := lossIndiv
	stepSize := 2 * eps
	xAdvOld := append([]float64(nil), xAdv...)
	k := nIter2
	counter3 := 0
	lossBestLastCheck := lossBest
	reducedLastCheck := true
	sign := func(v float64) float64 {
		switch {
		case v > 0:
			return 1
		case v < 0:
			return -1
		}
		return 0
	}
	for i := range nIter {
		grad2 := make([]float64, d)
		for j := range xAdv {
			grad2[j] = xAdv[j] - xAdvOld[j]
		}
		copy(xAdvOld, xAdv)
		a := 0.75
		if i == 0 {
			a = 1
		}
		x1 := make([]float64, d)
		for j := range x1 {
			x1[j] = xAdv[j] + stepSize*sign(grad[j])
			x1[j] = clamp(math.Min(math.Max(x1[j], x[j]-eps), x[j]+eps), 0, 1)
			x1[j] = clamp(math.Min(math.Max(xAdv[j]+(x1[j]-xAdv[j])*a+grad2[j]*(1-a), x[j]-eps), x[j]+eps), 0, 1)
		}
		xAdv = x1
		logits, lossIndiv, grad = f(xAdv)
		acc = acc && correctRef(logits, y)
		y1 := lossIndiv
		lossSteps[i] = y1
		if y1 > lossBest {
			copy(xBest, xAdv)
			copy(gradBest, grad)
			lossBest = y1
		}
		counter3++
		if counter3 == k {
			// check_oscillation: x[j − c] > x[j − c − 1], index −1 wrapping
			// to the (still zero) last row, as in Python.
			tt := 0
			for c := range k {
				prev := i - c - 1
				if prev < 0 {
					prev += nIter
				}
				if lossSteps[i-c] > lossSteps[prev] {
					tt++
				}
			}
			flOsc := float64(tt) <= float64(k)*0.75
			flReduceNoImpr := !reducedLastCheck && lossBestLastCheck >= lossBest
			flOsc = flOsc || flReduceNoImpr
			reducedLastCheck = flOsc
			lossBestLastCheck = lossBest
			if flOsc {
				stepSize /= 2
				copy(xAdv, xBest)
				copy(grad, gradBest)
			}
			k = max(k-sizeDecr, nIterMin)
			counter3 = 0
		}
	}
	return !acc
}

// gradX is ∂loss/∂x of a head for the linear model, in float64.
func gradX(m *linModel, head string, z []float64, y, t int) []float64 {
	k := len(z)
	dz := make([]float64, k)
	switch head {
	case HeadCE:
		mx := math.Inf(-1)
		for _, v := range z {
			mx = math.Max(mx, v)
		}
		s := 0.0
		for j := range z {
			dz[j] = math.Exp(z[j] - mx)
			s += dz[j]
		}
		for j := range dz {
			dz[j] /= s
		}
		dz[y]--
	case HeadDLRT:
		idx := make([]int, k)
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return z[idx[a]] > z[idx[b]] })
		num := z[t] - z[y]
		den := z[idx[0]] - (z[idx[2]]+z[idx[3]])/2 + 1e-12
		dz[t] += 1 / den
		dz[y] -= 1 / den
		c := num / (den * den)
		dz[idx[0]] -= c
		dz[idx[2]] += c / 2
		dz[idx[3]] += c / 2
	default:
		panic("gradX: head " + head)
	}
	g := make([]float64, imgD)
	for i := range g {
		for j := range dz {
			g[i] += float64(m.W[i*m.K+j]) * dz[j]
		}
	}
	return g
}

// TestAPGDMatchesAutoAttack compares APGD-CE and APGD-T with the float64
// transcription of AutoAttack's code, started from the same random points:
// every point APGD evaluates must match the transcription's, up to the first
// misclassified one (after which APGD stops moving the sample and AutoAttack
// does not, which cannot change the verdict), and so must the verdicts.
// float32 graphs and float64 arithmetic can part ways where a gradient
// component or a loss comparison is within rounding of a tie, so 3% of the
// trajectories may diverge (late, in practice) and 1% of the verdicts differ.
func TestAPGDMatchesAutoAttack(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	const seed = 21
	defer c.setPointHook(nil)
	for _, eps := range []float32{0.05, 0.1, 0.15} {
		for _, spec := range mustParse(t, "apgd-ce,apgd-t-50") {
			// Record the points each sample's rows visit.
			traj := make([][][]float32, len(ten.y))
			a := newAttacker(c, eps, false, seed)
			a.aid = attackID(spec.Name)
			c.setPointHook(func(a *attacker) {
				for r := range a.n {
					s := a.ids[r]
					traj[s] = append(traj[s], append([]float32(nil), a.xa[r*a.d:(r+1)*a.d]...))
				}
			})
			fooled := make([]bool, len(ten.y))
			var set []int
			for s := range ten.y {
				if correctRef(ten.m.logits64(to64(ten.x[s*imgD:(s+1)*imgD])), int(ten.y[s])) {
					set = append(set, s)
				}
			}
			if err := a.attackSet(t.Context(), &spec, ten.x, ten.y, set, fooled, nil); err != nil {
				t.Fatal(err)
			}
			c.setPointHook(nil)

			differ, diverged, points := 0, 0, 0
			for _, s := range set {
				x := to64(ten.x[s*imgD : (s+1)*imgD])
				y := int(ten.y[s])
				z := ten.m.logits64(x)
				start := func(round int) []float64 {
					rg := stream(seed, a.aid, s, round)
					tt := make([]float64, imgD)
					for i := range tt {
						tt[i] = float64(rg.sym())
					}
					return tt
				}
				var ref [][]float64
				done := false
				visit := func(p []float64, wrong bool) {
					if !done {
						ref = append(ref, append([]float64(nil), p...))
					}
					done = done || wrong
				}
				refFooled := false
				if spec.Kind == KindAPGD {
					refFooled = aaAPGD(ten.m, x, y, 0, HeadCE, float64(eps), spec.Steps, start(0), visit)
				} else {
					visit(x, false) // APGD-T's clean run that ranks the targets
					order := make([]int, 0, ten.m.K-1)
					for j := range ten.m.K {
						if j != y {
							order = append(order, j)
						}
					}
					sort.SliceStable(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
					for tg := 0; tg < spec.Targets && !refFooled; tg++ {
						refFooled = aaAPGD(ten.m, x, y, order[tg], HeadDLRT, float64(eps), spec.Steps, start(tg), visit)
					}
				}
				if refFooled != fooled[s] {
					differ++
				}
				if len(traj[s]) < len(ref) {
					diverged++
					continue
				}
				for k, p := range ref {
					dev := 0.0
					for i := range p {
						dev = math.Max(dev, math.Abs(p[i]-float64(traj[s][k][i])))
					}
					points++
					if dev > 1e-4 {
						diverged++
						t.Logf("sample %d diverges at point %d of %d (max deviation %.3g)", s, k, len(ref), dev)
						break
					}
				}
			}
			t.Logf("ε = %v %s: %d samples, %d points compared; %d trajectories diverge, %d verdicts differ",
				eps, spec.Name, len(set), points, diverged, differ)
			if diverged > 3*len(set)/100 || differ > len(set)/100 {
				t.Errorf("ε = %v %s: %d of %d trajectories and %d verdicts differ from AutoAttack's algorithm",
					eps, spec.Name, diverged, len(set), differ)
			}
		}
	}
}
