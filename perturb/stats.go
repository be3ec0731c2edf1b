package perturb

import "math"

// MeanAbsSum returns the mean over the n samples of g of each sample's L1
// norm, Σ|g|/n, accumulated in float64: for g = ∂ℓ/∂h at a tap, the mean
// ‖∇_h ℓ‖₁ that SLAT regularizes and that training logs per tap and epoch.
// len(g) must be a multiple of n, and n positive.
func MeanAbsSum(g []float32, n int) float64 {
	if n <= 0 || len(g)%n != 0 {
		panicSamples("MeanAbsSum", len(g), n)
	}
	// Four independent float64 sums: one sum's add latency, not memory,
	// bounded the single-accumulator loop (4× slower on a 1.6M-element tap).
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(g); i += 4 {
		v := g[i : i+4 : i+4]
		s0 += math.Abs(float64(v[0]))
		s1 += math.Abs(float64(v[1]))
		s2 += math.Abs(float64(v[2]))
		s3 += math.Abs(float64(v[3]))
	}
	for ; i < len(g); i++ {
		s0 += math.Abs(float64(g[i]))
	}
	return ((s0 + s1) + (s2 + s3)) / float64(n)
}

// MeanCosine returns the mean over the n samples of a and b of the cosine
// between each sample's a and b, accumulated in float64; a sample where
// either vector is zero counts as 0. With a = ∇ₓℓ(x) and b = ∇ₓℓ(x+u),
// u ~ U[−ε, ε], this is GradAlign's local-linearity measure.
func MeanCosine(a, b []float32, n int) float64 {
	mustLen("MeanCosine", "b", len(b), len(a))
	if n <= 0 || len(a)%n != 0 {
		panicSamples("MeanCosine", len(a), n)
	}
	per := len(a) / n
	var sum float64
	for s := 0; s < len(a); s += per {
		as, bs := a[s:s+per], b[s:s+per]
		bs = bs[:len(as)]
		var ab, aa, bb float64
		for i, av := range as {
			x, y := float64(av), float64(bs[i])
			ab += x * y
			aa += x * x
			bb += y * y
		}
		if aa > 0 && bb > 0 {
			sum += ab / math.Sqrt(aa*bb)
		}
	}
	return sum / float64(n)
}
