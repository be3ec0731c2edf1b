package perturb

import (
	"fmt"
	"math"
)

// SLATLatentRange is SLAT's rule for one latent tap with the budget relative
// to the activation's own scale (slatrun's --latent-scale range): for each
// sample n and channel c, with r = rng[n·C+c] the range hi − lo of the tap's
// activation h over that channel's positions (the bounds SLAT's domain clip
// takes, DomainClip), every element of the group gets
//
//	δ = clip(step·r·sign(g), −radius·r, radius·r)  = min(step, radius)·r·sign(g)
//
// (radius 0: no clip, δ = step·r·sign(g)). step and radius are fractions of
// the range, not activation units; they must be resolved (≥ 0, no Auto). g
// is ∂ℓ/∂h at the tap; δ's value on entry is ignored. A group whose range
// is 0 (hi = lo: a constant channel, e.g. a dead ReLU) gets δ = 0, as does
// one whose range is negative, NaN or infinite (an activation that is not
// finite): the domain clip would leave such a channel no room anyway.
//
// delta and g hold len(rng) groups of equal size, hw = len(delta)/len(rng)
// elements each (NCHW: H·W; a 2-D tap [N, F]: rng has one range per sample
// and hw = F). A length that does not fit is an error, and δ is left as it
// was; so is a negative or NaN step or radius. It does not allocate.
func SLATLatentRange(delta, g, rng []float32, step, radius float32) error {
	if len(g) != len(delta) {
		return fmt.Errorf("perturb: SLATLatentRange: len(g) = %d, want len(delta) = %d", len(g), len(delta))
	}
	if len(rng) == 0 {
		if len(delta) == 0 {
			return nil
		}
		return fmt.Errorf("perturb: SLATLatentRange: no ranges for %d elements", len(delta))
	}
	if len(delta)%len(rng) != 0 {
		return fmt.Errorf("perturb: SLATLatentRange: len(delta) = %d is not a whole number of groups of len(rng) = %d", len(delta), len(rng))
	}
	if !(step >= 0) || !(radius >= 0) {
		return fmt.Errorf("perturb: SLATLatentRange: step = %v, radius = %v: want values ≥ 0", step, radius)
	}
	frac := step
	if radius > 0 {
		frac = min(step, radius)
	}
	hw := len(delta) / len(rng)
	for k, r := range rng {
		s := float32(0)
		if r > 0 && r <= math.MaxFloat32 {
			s = frac * r
		}
		if s > math.MaxFloat32 { // frac·r overflowed: no finite budget
			s = 0
		}
		signFill(delta[k*hw:(k+1)*hw], g[k*hw:(k+1)*hw], s)
	}
	return nil
}

// TapRanges computes what SLATLatentRange takes from an activation h of n
// samples, c channels and hw positions (NCHW; a 2-D tap [N, F] is c = 1,
// hw = F): rng[n·c+j] = max − min of h over the hw positions of sample n,
// channel j, the bounds of the domain clip (DomainClip). The SLAT attack
// graph computes the same as its range.<tap> outputs; this is the host-side
// reference. A shape that does not fit is an error.
func TapRanges(rng, h []float32, n, c, hw int) error {
	if n < 0 || c < 0 || hw <= 0 || len(h) != n*c*hw || len(rng) != n*c {
		return fmt.Errorf("perturb: TapRanges: len(h) = %d, len(rng) = %d, want n·c·hw and n·c for n, c, hw = %d, %d, %d (hw > 0)", len(h), len(rng), n, c, hw)
	}
	for k := range rng {
		hs := h[k*hw : (k+1)*hw]
		lo, hi := hs[0], hs[0]
		for _, v := range hs[1:] {
			lo = min(lo, v)
			hi = max(hi, v)
		}
		rng[k] = hi - lo
	}
	return nil
}

// SLATInputFrom is SLAT's input rule from a start (slatrun's --input-start
// uniform, after FGSM-RS): on entry δ holds the start δ0 (RandomStart with r
// = eps: uniform in ±eps, boxed) and gx is ∂ℓ/∂x at x+δ0, from the attack
// pass that also gives the latent gradients; on return δ = clip(δ0 +
// stepFrac·eps·sign(gx), −eps, eps), boxed so that x+δ lies in [0, 1]. It is
// FGSMRS with alpha = stepFrac·eps. With δ0 = 0 (of either sign) it equals
// SLATInput bit for bit for eps, stepFrac > 0.
func SLATInputFrom(delta, gx, x []float32, eps, stepFrac float32) {
	FGSMRS(delta, gx, x, eps, stepFrac*eps)
}
