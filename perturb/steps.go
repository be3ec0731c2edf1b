package perturb

import "math"

// LinfStep is one L∞ ascent step of PGD: δ += step·sign(grad), then δ is
// projected onto [-eps, eps] and boxed so that x+δ lies in [0, 1]. grad is
// ∂ℓ/∂x at x+δ. Free-m's δ, carried across the m replays of a minibatch, is
// advanced by the same call with step = eps.
func LinfStep(delta, grad, x []float32, step, eps float32) {
	mustLen("LinfStep", "grad", len(grad), len(delta))
	mustLen("LinfStep", "x", len(x), len(delta))
	mustNonNeg("LinfStep", "eps", eps)
	grad, x = grad[:len(delta)], x[:len(delta)]
	for i := range delta {
		delta[i] = box01(x[i], delta[i]+signStep(grad[i], step), eps)
	}
}

// ProjectLinf projects δ onto [-eps, eps] and boxes it so that x+δ lies in
// [0, 1]: ClipRadius followed by Box(x, δ, 0, 1), in one pass.
func ProjectLinf(delta, x []float32, eps float32) {
	mustLen("ProjectLinf", "x", len(x), len(delta))
	mustNonNeg("ProjectLinf", "eps", eps)
	x = x[:len(delta)]
	for i := range delta {
		delta[i] = box01(x[i], delta[i], eps)
	}
}

// FGSM sets δ = eps·sign(grad) and boxes it so that x+δ lies in [0, 1]; grad
// is ∂ℓ/∂x at the clean x. On entry δ is ignored.
func FGSM(delta, grad, x []float32, eps float32) {
	mustLen("FGSM", "grad", len(grad), len(delta))
	mustLen("FGSM", "x", len(x), len(delta))
	mustNonNeg("FGSM", "eps", eps)
	grad, x = grad[:len(delta)], x[:len(delta)]
	for i := range delta {
		delta[i] = box01(x[i], signStep(grad[i], eps), eps)
	}
}

// FGSMRS is the step of FGSM with a random start (Wong et al. 2020): on entry
// δ holds the start δ0 (RandomStart with r = eps) and grad is ∂ℓ/∂x at x+δ0;
// on return δ = clip(δ0 + alpha·sign(grad), ±eps), boxed so that x+δ lies in
// [0, 1]. The usual alpha is DefaultFGSMRSAlpha·eps.
func FGSMRS(delta, grad, x []float32, eps, alpha float32) {
	mustLen("FGSMRS", "grad", len(grad), len(delta))
	mustLen("FGSMRS", "x", len(x), len(delta))
	mustNonNeg("FGSMRS", "eps", eps)
	grad, x = grad[:len(delta)], x[:len(delta)]
	for i := range delta {
		delta[i] = box01(x[i], delta[i]+signStep(grad[i], alpha), eps)
	}
}

// NFGSM is the step of N-FGSM (de Jorge et al. 2022): on entry δ holds the
// start δ0, drawn from [-k·eps, k·eps] with k = DefaultNFGSMStart (Uniform,
// not boxed), and grad is ∂ℓ/∂x at x+δ0; on return δ = δ0 + alpha·sign(grad)
// with no ±eps clip, boxed so that x+δ lies in [0, 1]. The usual alpha is eps.
func NFGSM(delta, grad, x []float32, alpha float32) {
	mustLen("NFGSM", "grad", len(grad), len(delta))
	mustLen("NFGSM", "x", len(x), len(delta))
	grad, x = grad[:len(delta)], x[:len(delta)]
	inf := float32(math.Inf(1))
	for i := range delta {
		delta[i] = box01(x[i], delta[i]+signStep(grad[i], alpha), inf)
	}
}

// L2Step is one L2 ascent step of PGD, sample by sample (perSample elements
// each, C·H·W for NCHW): δ += step·g/‖g‖₂ (a sample whose gradient is zero
// does not move), δ is scaled back onto the L2 ball of radius eps if it left
// it, and then boxed so that x+δ lies in [0, 1]. Boxing moves elements
// towards zero, so ‖δ‖₂ ≤ eps still holds afterwards (up to float32
// rounding of the scaling, a relative 1e-7). Norms accumulate in float64.
func L2Step(delta, grad, x []float32, step, eps float32, perSample int) {
	mustLen("L2Step", "grad", len(grad), len(delta))
	mustLen("L2Step", "x", len(x), len(delta))
	mustNonNeg("L2Step", "eps", eps)
	mustSamples("L2Step", len(delta), perSample)
	for s := 0; s < len(delta); s += perSample {
		d := delta[s : s+perSample]
		g := grad[s : s+perSample]
		if gn := norm2(g); gn > 0 {
			k := float64(step) / gn
			g = g[:len(d)]
			for i := range d {
				d[i] += float32(float64(g[i]) * k)
			}
		}
		projectL2(d, x[s:s+perSample], eps)
	}
}

// ProjectL2 projects each sample of δ (perSample elements) onto the L2 ball
// of radius eps, by scaling it down if its norm exceeds eps, and then boxes δ
// so that x+δ lies in [0, 1].
func ProjectL2(delta, x []float32, eps float32, perSample int) {
	mustLen("ProjectL2", "x", len(x), len(delta))
	mustNonNeg("ProjectL2", "eps", eps)
	mustSamples("ProjectL2", len(delta), perSample)
	for s := 0; s < len(delta); s += perSample {
		projectL2(delta[s:s+perSample], x[s:s+perSample], eps)
	}
}

// projectL2 scales d onto the L2 ball of radius eps if it is outside, then
// boxes it against x.
func projectL2(d, x []float32, eps float32) {
	x = x[:len(d)]
	inf := float32(math.Inf(1))
	if n := norm2(d); n > float64(eps) {
		k := float64(eps) / n
		for i := range d {
			d[i] = box01(x[i], float32(float64(d[i])*k), inf)
		}
		return
	}
	for i := range d {
		d[i] = box01(x[i], d[i], inf)
	}
}

// norm2 returns ‖v‖₂, accumulated in float64.
func norm2(v []float32) float64 {
	var s float64
	for _, e := range v {
		s += float64(e) * float64(e)
	}
	return math.Sqrt(s)
}

// KeepBest keeps, per sample, the perturbation with the higher loss: for each
// sample i (perSample elements of best and cand) with candLoss[i] >
// bestLoss[i], it copies the sample's cand into best and candLoss[i] into
// bestLoss[i]. This is how PGD with restarts keeps the strongest δ per
// sample; start bestLoss at -Inf so the first restart is always kept.
func KeepBest(best, cand, bestLoss, candLoss []float32, perSample int) {
	mustLen("KeepBest", "cand", len(cand), len(best))
	mustSamples("KeepBest", len(best), perSample)
	n := len(best) / perSample
	mustLen("KeepBest", "bestLoss", len(bestLoss), n)
	mustLen("KeepBest", "candLoss", len(candLoss), n)
	for i, l := range candLoss {
		if l > bestLoss[i] {
			bestLoss[i] = l
			copy(best[i*perSample:(i+1)*perSample], cand[i*perSample:])
		}
	}
}
