package perturb

import (
	"fmt"
	"math"
	"unsafe"
)

// Default step sizes of the methods, as multiples of their budget: of ε for
// the input rules (of ε/K for PGD-K training), of η for the latent rule.
// Multiply before passing them to functions that take absolute values (all
// but SLATInput's stepFrac). The orchestrator's Defaults table reads them.
const (
	// DefaultInputStepFrac is SLAT's input step, 0.9·ε.
	DefaultInputStepFrac = 0.9
	// DefaultLatentStep is SLAT's latent step, 1.8·η.
	DefaultLatentStep = 1.8
	// DefaultLatentRadius is SLAT's latent clip radius, η.
	DefaultLatentRadius = 1.0
	// DefaultFGSMStep is the step of FGSM, N-FGSM and Free-m, ε.
	DefaultFGSMStep = 1.0
	// DefaultFGSMRSAlpha is FGSM-RS's step, 1.25·ε.
	DefaultFGSMRSAlpha = 1.25
	// DefaultNFGSMStart is the half-width of N-FGSM's uniform start, 2·ε.
	DefaultNFGSMStart = 2.0
	// DefaultLatentEta is SLAT's latent budget η as a multiple of ε: η = ε.
	DefaultLatentEta = 1.0
	// DefaultPGDTrainStep is the step of PGD-K adversarial training as a
	// multiple of ε/K: 2.5·ε/K (slatrun's choice; the reference uses ε/4
	// for K = 7).
	DefaultPGDTrainStep = 2.5
	// DefaultPGDStep is PGD's step when it measures robustness (the
	// per-epoch probe, evaluation), ε/4.
	DefaultPGDStep = 0.25
	// DefaultTRADESStep is the step of each of TRADES's inner PGD steps,
	// ε/4: the reference's CIFAR-10 recipe takes 0.007 for ε = 0.031 and
	// K = 10, which is ε/4.4; slatrun rounds it to ε/4.
	DefaultTRADESStep = 0.25
	// DefaultTRADESStart is the standard deviation of TRADES's Gaussian
	// start x + σ·N(0, I), in pixel units (the reference's 0.001; not a
	// multiple of ε).
	DefaultTRADESStart = 0.001
	// DefaultTRADESBeta is TRADES's weight β of the KL term (the
	// reference's CIFAR-10 setting, 1/λ = 6).
	DefaultTRADESBeta = 6.0
	// DefaultTRADESSteps is the number K of TRADES's inner PGD steps.
	DefaultTRADESSteps = 10
)

// SLATInput is SLAT's rule for the input: δx = clip(stepFrac·eps·sign(gx),
// −eps, eps), then boxed so that x+δx lies in [0, 1]. gx is ∂ℓ/∂x at the clean
// x, from the attack pass; there is no random start, and δ's value on entry
// is ignored. The default stepFrac is DefaultInputStepFrac (0.9).
func SLATInput(delta, gx, x []float32, eps, stepFrac float32) {
	mustLen("SLATInput", "gx", len(gx), len(delta))
	mustLen("SLATInput", "x", len(x), len(delta))
	mustNonNeg("SLATInput", "eps", eps)
	mustNonNeg("SLATInput", "stepFrac", stepFrac)
	step := stepFrac * eps
	gx, x = gx[:len(delta)], x[:len(delta)]
	for i := slatInputVec(delta, gx, x, step, eps); i < len(delta); i++ {
		delta[i] = box01(x[i], signStep(gx[i], step), eps)
	}
}

// SLATLatent is SLAT's rule for one latent tap: δ = step·sign(g), then
// clipped into [−radius, radius] unless radius is 0, which means no clip (the
// reference's CIFAR-100 and Tiny-ImageNet variant, which relies on the domain
// clip alone). g is ∂ℓ/∂h at the tap, from the attack pass; δ's value on entry
// is ignored.
//
// step and radius are absolute, in activation units, like the latent budget
// eta. A negative step or radius stands for its default,
// DefaultLatentStep·eta or DefaultLatentRadius·eta (1.8η and η, so that by
// default δ = η·sign(g)); eta is used for nothing else. There is no box: the
// train graph clips h+δ into the tap's own per-channel range (see
// DomainClip).
func SLATLatent(delta, g []float32, eta, step, radius float32) {
	mustLen("SLATLatent", "g", len(g), len(delta))
	if step < 0 || radius < 0 {
		mustNonNeg("SLATLatent", "eta", eta)
	}
	if step < 0 {
		step = DefaultLatentStep * eta
	}
	if radius < 0 {
		radius = DefaultLatentRadius * eta
	}
	if radius > 0 {
		step = min(step, radius)
	}
	signFill(delta, g, step)
}

// signFill sets δ = step·sign(g) element-wise (signStep; step ≥ 0);
// len(g) ≥ len(δ). The whole tap is 1.6M elements per step on convnet, so
// this is most of SLAT's Go side: AVX2 where there is some (signFillVec),
// then two lanes per uint64 (signStep2), then one at a time.
func signFill(delta, g []float32, step float32) {
	g = g[:len(delta)]
	v := signFillVec(delta, g, step)
	delta, g = delta[v:], g[v:]
	i := 0
	if n := len(delta) / 2; n > 0 && (uintptr(unsafe.Pointer(&delta[0]))|uintptr(unsafe.Pointer(&g[0])))%8 == 0 {
		d2 := unsafe.Slice((*uint64)(unsafe.Pointer(&delta[0])), n)
		g2 := unsafe.Slice((*uint64)(unsafe.Pointer(&g[0])), n)[:len(d2)]
		s := uint64(math.Float32bits(step)) * 0x100000001
		j := 0
		for ; j+4 <= len(d2); j += 4 { // four independent lanes pairs per turn
			d, g := d2[j:j+4:j+4], g2[j:j+4:j+4]
			d[0], d[1], d[2], d[3] = signStep2(g[0], s), signStep2(g[1], s), signStep2(g[2], s), signStep2(g[3], s)
		}
		for ; j < len(d2); j++ {
			d2[j] = signStep2(g2[j], s)
		}
		i = 2 * n
	}
	for ; i < len(delta); i++ {
		delta[i] = signStep(g[i], step)
	}
}

// signStep2 is signStep on two float32 lanes packed in a uint64, step2
// holding the (non-negative) step's bits in both lanes. Per lane: the
// magnitude bits m ≤ 0x7fffffff, so m + 0x7fffffff sets bit 31 iff m ≠ 0
// and m + 0x007fffff sets it iff m > 0x7f800000 (NaN); neither sum carries
// into the other lane.
func signStep2(g, step2 uint64) uint64 {
	const (
		signs = 0x8000000080000000
		mags  = 0x7fffffff7fffffff
		nan   = 0x007fffff007fffff
		ones  = 0x0000000100000001
	)
	m := g & mags
	keep := ((m + mags) &^ (m + nan)) & signs
	mask := (keep >> 31 & ones) * 0xffffffff
	return ((g & signs) ^ step2) & mask
}

// DomainClip is the host-side reference of SLAT's domain clip, which the
// train graph computes inside ONNX. h is a tap's activation (n samples, c
// channels, hw spatial positions, NCHW) and δ the perturbation for it; for
// each sample and channel, lo and hi are the minimum and maximum of h over
// the hw positions, and δ is clipped element-wise into [lo−h, hi−h], so that
// h+δ stays within [lo, hi] exactly in float32 arithmetic. Where lo−h or
// hi−h rounds so that h+δ would fall just outside, δ is moved by an ulp
// inwards; there, and only there, the result differs from the graph's plain
// clip(δ, lo−h, hi−h), by one ulp, so compare with the graph under a
// tolerance.
func DomainClip(delta, h []float32, n, c, hw int) {
	if n < 0 || c < 0 || hw < 0 || len(delta) != n*c*hw {
		panic(fmt.Sprintf("perturb: DomainClip: len(delta) = %d, want n·c·hw = %d·%d·%d", len(delta), n, c, hw))
	}
	mustLen("DomainClip", "h", len(h), len(delta))
	if hw == 0 {
		return
	}
	for s := 0; s < len(delta); s += hw {
		hs := h[s : s+hw]
		d := delta[s : s+hw]
		lo, hi := hs[0], hs[0]
		for _, v := range hs[1:] {
			lo = min(lo, v)
			hi = max(hi, v)
		}
		hs = hs[:len(d)]
		for i := range d {
			hv := hs[i]
			v := min(max(d[i], lo-hv), hi-hv)
			if s := hv + v; s > hi || s < lo {
				v = nudgeBox(hv, v, lo, hi)
			}
			d[i] = v
		}
	}
}
