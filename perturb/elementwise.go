package perturb

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Sign sets dst[i] = sign(g[i]): 1, -1, or 0 when g[i] is ±0 or NaN. dst may
// be g.
func Sign(dst, g []float32) {
	SignStep(dst, g, 1)
}

// SignStep sets dst[i] = step·sign(g[i]), with sign(0) = sign(NaN) = 0. dst
// may be g.
func SignStep(dst, g []float32, step float32) {
	mustLen("SignStep", "g", len(g), len(dst))
	g = g[:len(dst)]
	for i := range dst {
		dst[i] = signStep(g[i], step)
	}
}

// ClipRadius clips every element of d into [-r, r] (the projection onto the
// L∞ ball of radius r). It panics if r is negative or NaN.
func ClipRadius(d []float32, r float32) {
	mustNonNeg("ClipRadius", "r", r)
	for i, v := range d {
		d[i] = min(max(v, -r), r)
	}
}

// Box clips d so that x+d lies in [lo, hi]: d = clamp(x+d, lo, hi) − x,
// element-wise. The result holds exactly in float32 arithmetic: lo ≤ x[i]+d[i]
// ≤ hi for every x[i] in [lo, hi]. For pixels, lo = 0 and hi = 1.
func Box(x, d []float32, lo, hi float32) {
	mustLen("Box", "x", len(x), len(d))
	if !(lo <= hi) {
		panic(fmt.Sprintf("perturb: Box: lo = %v > hi = %v", lo, hi))
	}
	x = x[:len(d)]
	for i := range d {
		xi := x[i]
		v := min(max(d[i], lo-xi), hi-xi)
		if s := xi + v; s > hi || s < lo {
			v = nudgeBox(xi, v, lo, hi)
		}
		d[i] = v
	}
}

// Add sets dst[i] = a[i] + b[i]. dst may be a or b.
func Add(dst, a, b []float32) {
	mustLen("Add", "a", len(a), len(dst))
	mustLen("Add", "b", len(b), len(dst))
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

// Uniform fills d with independent draws from the uniform distribution on
// [-r, r) (24 random bits each, two draws per rng.Uint64 call). Use a
// rand.New(rand.NewPCG(seed, stream)) generator for reproducible runs. It
// panics if r is negative or NaN.
func Uniform(rng *rand.Rand, d []float32, r float32) {
	mustNonNeg("Uniform", "r", r)
	const (
		mask  = 1<<24 - 1
		scale = 1.0 / (1 << 23) // u·scale − 1 maps a 24-bit u onto [-1, 1) exactly
	)
	i := 0
	for ; i+1 < len(d); i += 2 {
		u := rng.Uint64()
		d[i] = (float32(u>>40)*scale - 1) * r
		d[i+1] = (float32((u>>8)&mask)*scale - 1) * r
	}
	if i < len(d) {
		d[i] = (float32(rng.Uint64()>>40)*scale - 1) * r
	}
}

// Normal fills d with independent draws from N(0, sigma²) (rng.NormFloat64,
// one call per element, rounded to float32): TRADES's start δ =
// DefaultTRADESStart·N(0, I), which is neither clipped to a ball nor boxed.
// It panics if sigma is negative or NaN.
func Normal(rng *rand.Rand, d []float32, sigma float32) {
	mustNonNeg("Normal", "sigma", sigma)
	s := float64(sigma)
	for i := range d {
		d[i] = float32(rng.NormFloat64() * s)
	}
}

// RandomStart draws δ uniformly from [-r, r) (see Uniform) and boxes it so
// that x+δ lies in [0,1]: the random start of FGSM-RS and PGD.
func RandomStart(rng *rand.Rand, delta, x []float32, r float32) {
	mustLen("RandomStart", "x", len(x), len(delta))
	Uniform(rng, delta, r)
	x = x[:len(delta)]
	for i := range delta {
		delta[i] = box01(x[i], delta[i], r)
	}
}

// signStep returns step·sign(g), or 0 when g is ±0 or NaN, without branches:
// gradient signs are random, and a branch on them mispredicts half the time.
func signStep(g, step float32) float32 {
	b := math.Float32bits(g)
	mag := b & 0x7fffffff
	keep := uint32(int32(mag|-mag) >> 31)        // all ones unless g is ±0
	keep &^= uint32(int32(0x7f800000-mag) >> 31) // zero when g is NaN
	return math.Float32frombits(((b & 0x80000000) ^ math.Float32bits(step)) & keep)
}

// box01 clips d into [-r, r] and so that x+d lies in [0, 1]; for x in [0, 1]
// both windows contain 0, so they never conflict. fl(x + fl(1−x)) ≤ 1 holds
// for every float32 x in [0, 1] (checked exhaustively) and x + (0−x) = 0, so
// x+d lands in [0, 1] in float32 arithmetic without a correction step. 0−x
// rather than −x keeps a δ of +0, not −0, at x = 0.
func box01(x, d, r float32) float32 {
	return min(max(d, max(-r, 0-x)), min(r, 1-x))
}

// nudgeBox moves d, already clamped into [lo−x, hi−x], by ulps until x+d
// rounds into [lo, hi] (one step, in practice, when x is in [lo, hi]).
//
//go:noinline
func nudgeBox(x, d, lo, hi float32) float32 {
	for range 64 {
		switch s := x + d; {
		case s > hi:
			d = math.Nextafter32(d, float32(math.Inf(-1)))
		case s < lo:
			d = math.Nextafter32(d, float32(math.Inf(1)))
		default:
			return d
		}
	}
	return d
}

func mustLen(op, name string, got, want int) {
	if got != want {
		panicLen(op, name, got, want)
	}
}

//go:noinline
func panicLen(op, name string, got, want int) {
	panic(fmt.Sprintf("perturb: %s: len(%s) = %d, want %d", op, name, got, want))
}

func mustNonNeg(op, name string, v float32) {
	if !(v >= 0) {
		panicNonNeg(op, name, v)
	}
}

//go:noinline
func panicNonNeg(op, name string, v float32) {
	panic(fmt.Sprintf("perturb: %s: %s = %v, want ≥ 0", op, name, v))
}

// mustSamples checks that length l splits into samples of perSample elements.
func mustSamples(op string, l, perSample int) {
	if perSample <= 0 || l%perSample != 0 {
		panicSamples(op, l, perSample)
	}
}

//go:noinline
func panicSamples(op string, l, perSample int) {
	panic(fmt.Sprintf("perturb: %s: length %d is not a whole number of samples of %d elements", op, l, perSample))
}
