package eval

import "math"

// exactLinf returns, for a linear model, the largest margin
// max_j max_δ (z_j − z_y)(x+δ) over the L∞ ball of radius eps intersected
// with [0,1]: the problem separates per pixel, so the optimum puts every
// pixel at the end of its interval that favours j. The sample is robust iff
// the result is < 0 (a tie counts as a mistake, as in Evaluate).
func exactLinf(m *linModel, x []float32, y int, eps float64) float64 {
	z := m.logits64(to64(x))
	worst := math.Inf(-1)
	for j := range m.K {
		if j == y {
			continue
		}
		v := z[j] - z[y]
		for i, xi := range x {
			d := float64(m.W[i*m.K+j]) - float64(m.W[i*m.K+y])
			lo := math.Max(float64(xi)-eps, 0) - float64(xi)
			hi := math.Min(float64(xi)+eps, 1) - float64(xi)
			v += math.Max(d*lo, d*hi)
		}
		worst = math.Max(worst, v)
	}
	return worst
}
