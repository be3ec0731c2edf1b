package eval

import (
	"hash/fnv"
	"math"
)

// rng is a splitmix64 generator, fully specified here so that reports never
// change with the Go release. Every sample gets its own stream per attack and
// restart (see stream), so a sample's attack does not depend on the batch it
// lands in, on padding, or on which other samples are attacked.
type rng struct{ s uint64 }

const golden uint64 = 0x9e3779b97f4a7c15

// Multiples of golden (mod 2⁶⁴) that keep the stream identifiers apart.
const (
	golden2 uint64 = 0x3c6ef372fe94f82a
	golden3 uint64 = 0xdaa66d2c7ddf743f
	golden4 uint64 = 0x78dde6e5fd29f054
)

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// stream returns the generator for (seed, attack, sample, round).
func stream(seed, attack uint64, sample int, round int) rng {
	h := mix64(seed + golden)
	h = mix64(h ^ (attack + golden2))
	h = mix64(h ^ (uint64(sample) + golden3))
	h = mix64(h ^ (uint64(round) + golden4))
	return rng{s: h}
}

// attackID is the stream identifier of an attack: a hash of its name.
func attackID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// linearityID is the stream identifier of the local-linearity probe.
var linearityID = attackID("\x00local-linearity")

func (r *rng) next() uint64 {
	r.s += golden
	return mix64(r.s)
}

// sym returns a uniform float32 in [−1, 1) (24 random bits).
func (r *rng) sym() float32 {
	return float32(r.next()>>40)*(1.0/(1<<23)) - 1
}

// norm returns a standard normal sample (Box-Muller).
func (r *rng) norm() float64 {
	u1 := 1 - float64(r.next()>>11)/(1<<53) // (0, 1]
	u2 := float64(r.next()>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// unit returns a uniform float64 in [0, 1).
func (r *rng) unit() float64 {
	return float64(r.next()>>11) / (1 << 53)
}

// sign returns +1 or −1 with equal probability.
func (r *rng) sign() float64 {
	if r.next()&1 == 1 {
		return 1
	}
	return -1
}

// intn returns floor(U·n) for U uniform in [0, 1): an integer in [0, n)
// for n ≥ 1 (AutoAttack's random_int), and 0 for n ≤ 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return min(int(r.unit()*float64(n)), n-1)
}
