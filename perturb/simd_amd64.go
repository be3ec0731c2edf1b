//go:build !purego

package perturb

import "golang.org/x/sys/cpu"

// The AVX2 loops in simd_amd64.s. They give the same bits as the Go loops
// they stand in for (signStep, box01), element by element; on the 1.6M-float
// latent taps of a SLAT step they run at memory speed, about 6× the
// two-lanes-per-uint64 Go loop. Build with -tags purego to leave them out.

//go:noescape
func signFillAVX2(delta, grad *float32, n int, step float32)

//go:noescape
func slatInputAVX2(delta, grad, x *float32, n int, step, r float32)

// signFillVec sets δ[i] = signStep(g[i], step) for the first len(δ) rounded
// down to 32 elements when the processor has AVX2, and returns how many it
// set (0 without AVX2). len(g) ≥ len(δ).
func signFillVec(delta, g []float32, step float32) int {
	n := len(delta) &^ 31
	if n == 0 || !cpu.X86.HasAVX2 {
		return 0
	}
	_ = g[n-1]
	signFillAVX2(&delta[0], &g[0], n, step)
	return n
}

// slatInputVec sets δ[i] = box01(x[i], signStep(g[i], step), r) for the
// first len(δ) rounded down to 16 elements when the processor has AVX2 and
// step and r are positive, and returns how many it set. (With a zero step
// or radius, signed zeros meet in the min and max, where the vector
// instructions and Go's builtins pick differently.) len(g), len(x) ≥ len(δ).
func slatInputVec(delta, g, x []float32, step, r float32) int {
	n := len(delta) &^ 15
	if n == 0 || !(step > 0) || !(r > 0) || !cpu.X86.HasAVX2 {
		return 0
	}
	_, _ = g[n-1], x[n-1]
	slatInputAVX2(&delta[0], &g[0], &x[0], n, step, r)
	return n
}
