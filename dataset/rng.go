package dataset

import (
	"math"
	"math/bits"
)

// rng is a splitmix64 generator. It is small, fast and fully specified here,
// so streams never change with the Go release.
type rng struct{ s uint64 }

const golden = 0x9e3779b97f4a7c15

// Stream domains: each use of randomness draws from its own stream.
const (
	domainShuffle uint64 = iota + 1
	domainAugment
	domainPrototype
	domainSynthetic
	domainSplit
)

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// seeded returns a generator whose stream is fixed by seed and the stream
// identifiers a, b, c; different identifiers give unrelated streams.
func seeded(seed, a, b, c uint64) rng {
	h := mix64(seed + golden)
	h = mix64(h ^ mix64(a+0x2545f4914f6cdd1d))
	h = mix64(h ^ mix64(b+0x632be59bd9b4e019))
	h = mix64(h ^ mix64(c+0x8cb92ba72f3d8dd7))
	return rng{s: h}
}

func (r *rng) next() uint64 {
	r.s += golden
	return mix64(r.s)
}

// intn returns a uniform integer in [0, n), n > 0 (Lemire's method, unbiased).
func (r *rng) intn(n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(r.next(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), un)
		}
	}
	return int(hi)
}

// float64 returns a uniform float in [0, 1).
func (r *rng) float64() float64 {
	return float64(r.next()>>11) / (1 << 53)
}

// norm returns a standard normal sample (Box-Muller).
func (r *rng) norm() float64 {
	u1 := 1 - r.float64() // (0, 1]
	u2 := r.float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
