package perturb

import "math"

// GradAlign's defaults (Andriushchenko & Flammarion, NeurIPS 2020).
const (
	// DefaultGradAlignLambda is the factor of GradAlign's weight λ(ε) =
	// DefaultGradAlignLambda·10^(ε/GradAlignLambdaDecade): the reference's
	// log-linear interpolation of its CIFAR-10 settings, λ = 0.2 at ε = 8/255
	// and λ = 2 at ε = 16/255 (0.02 at ε = 0). It was fitted on ε from
	// 1/255 to 16/255; beyond that the default holds at 2
	// (GradAlignLambdaMaxEps).
	DefaultGradAlignLambda = 0.02
	// GradAlignLambdaDecade is the growth of ε, in pixel units, that makes
	// the default λ ten times larger: 8/255.
	GradAlignLambdaDecade = 8.0 / 255
	// GradAlignLambdaMaxEps is the largest ε the reference tuned λ for
	// (16/255, λ = 2). Larger budgets, such as Fashion-MNIST's 0.1, get that
	// λ rather than the rule's extrapolation (about 31 at 0.1, which made the
	// regularizer's gradient several times the loss's); the reference
	// publishes no λ for grayscale data (docs/methods.md).
	GradAlignLambdaMaxEps = 16.0 / 255
)

// GradAlignLambda returns the default weight λ(ε) of GradAlign's
// regularizer for an L∞ budget eps in pixel units (0.2 at 8/255, 2 from
// 16/255 on).
func GradAlignLambda(eps float32) float32 {
	return float32(DefaultGradAlignLambda * math.Pow(10, min(float64(eps), GradAlignLambdaMaxEps)/GradAlignLambdaDecade))
}

// GradAlign computes GradAlign's regularizer for a batch of n examples,
//
//	R = (1/m)·Σᵢ (1 − cos(g1ᵢ, g2ᵢ)),
//
// each gᵢ the flattened input gradient of example i, the sum over the m
// examples whose two gradients both have a nonzero norm (the reference
// drops the others), and writes its gradients v1 = ∂R/∂g1 and v2 = ∂R/∂g2
// (zero rows for the examples left out). Either of v1 and v2 may be nil,
// for a gradient not wanted. It returns R (0 when m = 0) and m. Sums are
// in float64. It panics if the lengths differ or are not a multiple of n.
func GradAlign(v1, v2, g1, g2 []float32, n int) (r float64, m int) {
	mustLen("GradAlign", "g2", len(g2), len(g1))
	if v1 != nil {
		mustLen("GradAlign", "v1", len(v1), len(g1))
	}
	if v2 != nil {
		mustLen("GradAlign", "v2", len(v2), len(g1))
	}
	if n <= 0 || len(g1)%n != 0 {
		panicLen("GradAlign", "g1 (a multiple of n)", len(g1), n)
	}
	d := len(g1) / n
	for i := range n {
		a, b := g1[i*d:(i+1)*d], g2[i*d:(i+1)*d]
		var aa, bb float64
		for j := range a {
			aa += float64(a[j]) * float64(a[j])
			bb += float64(b[j]) * float64(b[j])
		}
		if aa > 0 && bb > 0 {
			m++
		}
	}
	if v1 != nil {
		clear(v1)
	}
	if v2 != nil {
		clear(v2)
	}
	if m == 0 {
		return 0, 0
	}
	for i := range n {
		a, b := g1[i*d:(i+1)*d], g2[i*d:(i+1)*d]
		var aa, bb, ab float64
		for j := range a {
			x, y := float64(a[j]), float64(b[j])
			aa += x * x
			bb += y * y
			ab += x * y
		}
		if !(aa > 0 && bb > 0) {
			continue
		}
		na, nb := math.Sqrt(aa), math.Sqrt(bb)
		c := ab / (na * nb)
		r += 1 - c
		// ∂c/∂b = a/(‖a‖‖b‖) − c·b/‖b‖², and R has −c/m.
		s, k := -1/(float64(m)*na*nb), 1/float64(m)
		if v2 != nil {
			w, cb := v2[i*d:(i+1)*d], c*k/bb
			for j := range w {
				w[j] = float32(s*float64(a[j]) + cb*float64(b[j]))
			}
		}
		if v1 != nil {
			w, ca := v1[i*d:(i+1)*d], c*k/aa
			for j := range w {
				w[j] = float32(s*float64(b[j]) + ca*float64(a[j]))
			}
		}
	}
	return r / float64(m), m
}
