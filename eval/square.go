package eval

import (
	"context"
	"math"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx/ort"
)

// Square (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
// query-efficient black-box adversarial attack via random search", ECCV
// 2020), as AutoAttack runs it: a random search on the margin
// z_y − max_{j≠y} z_j that only reads the logits. From a starting point on
// the boundary of the ball (L∞: vertical stripes of ±ε; L2: a grid of
// pseudo-Gaussian squares scaled to norm ε), each query changes one square
// window of side s (per channel: all values to ±ε for L∞; for L2 a new
// pseudo-Gaussian pattern that also takes the mass of a second window)
// and keeps the change if the margin drops (or the point is
// misclassified). The window's area shrinks along p's schedule
// (squareP, squareSide).
//
// Unlike AutoAttack, which draws one window position per query for the
// whole batch, every sample draws its own, from its own stream per restart,
// so a sample's queries do not depend on the batch. A sample leaves the
// batch as soon as it is misclassified (or its queries are spent) and the
// next sample of the set takes its row: only samples still robust are
// queried. Square reads the logits alone, so it queries the HeadLogits
// graph (one forward pass) when the Classifier has it; once fewer rows are
// alive than the batch holds, and the Classifier can run smaller batches
// (SetResize), the live rows are packed into the smallest session of the
// ladder B, ⌈B/2⌉, ⌈B/4⌉, …, 1 that holds them.

// squareState is Square's per-row state and scratch, allocated once.
type squareState struct {
	live  []bool // the row holds a sample under attack
	it    []int  // proposals made in the current restart (0: at the start point)
	round []int
	set   []int     // the row's position in the attacked set
	marg  []float64 // smallest margin so far
	rng   []rng
	delta []float64 // [D] L2: the perturbation being built
	pat   []float64 // [2D] an s×s pattern and scratch
	chanN []float64 // [C] per-channel window norms

	// The query: the logits of row r are z[pos[r]·K:]. ladder holds the
	// batch sizes B, ⌈B/2⌉, …, 1 and sess their sessions of head, made
	// on first use (sess[0] is the bound session).
	pos    []int
	z      []float32
	ladder []int
	sess   []*ort.Session
	head   string
}

func newSquareState(b, d int) squareState {
	return squareState{
		live: make([]bool, b), it: make([]int, b), round: make([]int, b), set: make([]int, b),
		marg: make([]float64, b), rng: make([]rng, b),
		delta: make([]float64, d), pat: make([]float64, 2*d), chanN: make([]float64, d),
		pos: make([]int, b), ladder: ladder(b), sess: make([]*ort.Session, len(ladder(b))),
	}
}

// ladder returns the batch sizes b, ⌈b/2⌉, ⌈b/4⌉, …, 1.
func ladder(b int) []int {
	l := []int{b}
	for b > 1 {
		b = (b + 1) / 2
		l = append(l, b)
	}
	return l
}

// squareRun evaluates the live rows' points (live of them) and points sq.z
// and sq.pos at their logits.
func (a *attacker) squareRun(live int) error {
	sq := &a.sq
	i := 0
	if a.c.resize != nil {
		for i+1 < len(sq.ladder) && sq.ladder[i+1] >= live {
			i++
		}
	}
	if i == 0 {
		for r := range sq.pos {
			sq.pos[r] = r
		}
		sq.z = a.sz
		return a.run()
	}
	s := sq.sess[i]
	if s == nil {
		var err error
		if s, err = a.c.sessionAt(sq.head, sq.ladder[i]); err != nil {
			return err
		}
		sq.sess[i] = s
	}
	d := a.d
	x, y := s.Float(contract.Input), s.Int64(contract.Labels)
	j := 0
	for r := range a.b {
		if sq.live[r] {
			copy(x[j*d:(j+1)*d], a.xa[r*d:(r+1)*d])
			y[j], sq.pos[r] = a.y[r], j
			j++
		}
	}
	a.runs++
	sq.z = s.Float(contract.Logits)
	return s.Run()
}

// squareP is the fraction of the image a square covers at iteration it
// (0-based) for p_init: AutoAttack's p_selection without rescaling (its
// standard version runs 5000 queries with resc_schedule off), halving at
// iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.
func squareP(it int, pInit float64) float64 {
	for k, edge := range squareEdges {
		if it <= edge {
			return pInit / float64(int(1)<<k)
		}
	}
	return pInit / 512
}

// squareEdges are the last iterations of each stage of p's schedule.
var squareEdges = [...]int{10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000}

// squareSide is the side of the square window at fraction p of an h×w
// image: round(√(p·h·w)), rounding half to even as Python does, at least 1
// (L∞) or at least 3 and odd (L2), and at most min(h, w).
func squareSide(p float64, h, w int, l2 bool) int {
	s := int(math.RoundToEven(math.Sqrt(p * float64(h*w))))
	if l2 {
		s = max(s, 3)
		if s%2 == 0 {
			s++
		}
	}
	return max(min(s, h, w), 1)
}

// squareSet runs Square on the samples set of x, y and marks in fooled
// (indexed by sample) the ones it misclassifies.
func (a *attacker) squareSet(ctx context.Context, spec *AttackSpec, x []float32, y []int64, set []int, fooled []bool, progress func(string, int, int)) error {
	sq := &a.sq
	steps := spec.Steps
	if a.eps == 0 {
		steps = 0 // nothing to search: only the starting point, which is x
	}
	head := spec.Loss
	if a.c.Has(HeadLogits) {
		head = HeadLogits
	}
	if err := a.bind(head); err != nil {
		return err
	}
	if sq.head != head {
		sq.head = head
		clear(sq.sess[1:])
	}
	a.n = a.b
	clear(sq.live)
	next, done := 0, 0
	finish := func(r int, broke bool) {
		fooled[set[sq.set[r]]] = broke
		sq.live[r] = false
		done++
		report(progress, spec.Name, done, len(set))
	}
	for {
		live := 0
		for r := range a.b {
			if !sq.live[r] && next < len(set) {
				a.loadRow(x, y, r, set[next])
				sq.live[r], sq.set[r], sq.round[r] = true, next, 0
				next++
				a.squareStart(r)
			}
			if sq.live[r] {
				live++
			}
		}
		if live == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		copy(a.sy, a.y)
		if h := a.c.pointHook; h != nil {
			h(a)
		}
		a.queries += int64(live)
		if err := a.squareRun(live); err != nil {
			return err
		}
		d, k := a.d, a.k
		for r := range a.b {
			if !sq.live[r] {
				continue
			}
			p := sq.pos[r]
			z := sq.z[p*k : (p+1)*k]
			m := margin(z, a.y[r])
			xa, xb := a.xa[r*d:(r+1)*d], a.xbest[r*d:(r+1)*d]
			wrong := !correct(z, a.y[r])
			if sq.it[r] == 0 || m < sq.marg[r] || wrong {
				sq.marg[r] = m
				copy(xb, xa)
			} else {
				copy(xa, xb)
			}
			if wrong {
				finish(r, true)
				continue
			}
			if sq.it[r] == steps {
				if sq.round[r]++; sq.round[r] == spec.Restarts {
					finish(r, false)
				} else {
					a.squareStart(r)
				}
				continue
			}
			a.squarePropose(r, sq.it[r], float64(spec.PInit))
			sq.it[r]++
		}
	}
}

// margin is z_y − max_{j≠y} z_j, Square's loss.
func margin(z []float32, y int64) float64 {
	other := math.Inf(-1)
	for j, v := range z {
		if j != int(y) {
			other = max(other, float64(v))
		}
	}
	return float64(z[y]) - other
}

// squareStart seeds row r's stream for its round and puts the row at
// Square's starting point.
func (a *attacker) squareStart(r int) {
	sq := &a.sq
	sq.it[r] = 0
	sq.rng[r] = stream(a.seed, a.aid, a.ids[r], sq.round[r])
	rg := &sq.rng[r]
	dm := a.c.Dims()
	c, h, w, d := dm.C, dm.H, dm.W, a.d
	xa := a.xa[r*d : (r+1)*d]
	if !a.l2 {
		// Vertical stripes: each column of each channel at +ε or −ε.
		lo, hi := a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
		for ch := range c {
			for j := range w {
				up := rg.next()&1 == 1
				for i := range h {
					p := (ch*h+i)*w + j
					if up {
						xa[p] = hi[p]
					} else {
						xa[p] = lo[p]
					}
				}
			}
		}
		return
	}
	// A grid of s×s pseudo-Gaussian squares, s = h/5, with a random sign
	// per square and channel, scaled to norm ε.
	delta := sq.delta
	clear(delta)
	s := max(h/5, 1)
	start := max((h-5*s)/2, 0)
	for bh := 0; bh < h/s; bh++ {
		vh := start + bh*s
		for bw := 0; bw < w/s; bw++ {
			vw := start + bw*s
			squarePattern(s, rg.unit() > 0.5, sq.pat)
			for ch := range c {
				sign := rg.sign()
				if vh+s > h || vw+s > w {
					continue
				}
				for i := range s {
					for j := range s {
						delta[(ch*h+vh+i)*w+vw+j] += sign * sq.pat[i*s+j]
					}
				}
			}
		}
	}
	a.squareL2Point(r)
}

// squareL2Point sets row r of xa to clip(x + ε·δ/‖δ‖, 0, 1) from sq.delta.
func (a *attacker) squareL2Point(r int) {
	d := a.d
	xa, x0, delta := a.xa[r*d:(r+1)*d], a.x0[r*d:(r+1)*d], a.sq.delta
	n := 0.0
	for _, v := range delta {
		n += v * v
	}
	s := float64(a.eps) / (math.Sqrt(n) + 1e-12)
	for i := range xa {
		xa[i] = float32(min(max(float64(x0[i])+s*delta[i], 0), 1))
	}
	a.project(r)
}

// squarePropose writes row r's proposal for iteration it into xa (which
// holds the row's best point).
func (a *attacker) squarePropose(r, it int, pInit float64) {
	sq := &a.sq
	rg := &sq.rng[r]
	dm := a.c.Dims()
	c, h, w, d := dm.C, dm.H, dm.W, a.d
	p := squareP(it, pInit)
	s := squareSide(p, h, w, a.l2)
	vh, vw := rg.intn(h-s), rg.intn(w-s)
	xb, x0 := a.xbest[r*d:(r+1)*d], a.x0[r*d:(r+1)*d]
	if !a.l2 {
		xa, lo, hi := a.xa[r*d:(r+1)*d], a.lo[r*d:(r+1)*d], a.hi[r*d:(r+1)*d]
		for ch := range c {
			up := rg.next()&1 == 1
			for i := vh; i < vh+s; i++ {
				for j := vw; j < vw+s; j++ {
					q := (ch*h+i)*w + j
					if up {
						xa[q] = hi[q]
					} else {
						xa[q] = lo[q]
					}
				}
			}
		}
		return
	}
	vh2, vw2 := rg.intn(h-s), rg.intn(w-s)
	in := func(v0, w0, i, j int) bool { return i >= v0 && i < v0+s && j >= w0 && j < w0+s }
	delta := sq.delta
	nImg, nWins := 0.0, 0.0
	for ch := range c {
		nw := 0.0
		for i := range h {
			for j := range w {
				q := (ch*h+i)*w + j
				v := float64(xb[q]) - float64(x0[q])
				delta[q] = v
				nImg += v * v
				if in(vh, vw, i, j) {
					nw += v * v
				}
				if in(vh, vw, i, j) || in(vh2, vw2, i, j) {
					nWins += v * v
				}
			}
		}
		sq.chanN[ch] = math.Sqrt(nw)
	}
	squarePattern(s, rg.unit() > 0.5, sq.pat)
	eps := float64(a.eps)
	target := math.Sqrt(max(eps*eps-nImg, 0)/float64(c) + nWins)
	win := sq.pat[s*s : 2*s*s] // the new window, one channel at a time
	for ch := range c {
		sign := rg.sign()
		n := 0.0
		for i := range s {
			for j := range s {
				v := sign*sq.pat[i*s+j] + delta[(ch*h+vh+i)*w+vw+j]/(1e-12+sq.chanN[ch])
				win[i*s+j] = v
				n += v * v
			}
		}
		f := target / (1e-12 + math.Sqrt(n))
		for i := range s {
			for j := range s {
				delta[(ch*h+vh2+i)*w+vw2+j] = 0
			}
		}
		for i := range s {
			for j := range s {
				delta[(ch*h+vh+i)*w+vw+j] = win[i*s+j] * f
			}
		}
	}
	a.squareL2Point(r)
}

// squarePattern writes AutoAttack's s×s L2 pattern (its eta: the upper
// half of the rows a stack of nested rectangles, the lower half the same
// negated, unit norm; transposed if asked) into out[:s·s]. out must hold
// 2·s·s values (the second half is scratch for the caller).
func squarePattern(s int, transpose bool, out []float64) {
	p := out[:s*s]
	clear(p)
	top := s / 2
	squareRects(p[:top*s], top, s, 1)
	squareRects(p[top*s:], s-top, s, -1)
	n := 0.0
	for _, v := range p {
		n += v * v
	}
	n = math.Sqrt(n)
	for i := range p {
		p[i] /= n
	}
	if transpose {
		for i := range s {
			for j := i + 1; j < s; j++ {
				p[i*s+j], p[j*s+i] = p[j*s+i], p[i*s+j]
			}
		}
	}
}

// squareRects writes sign times AutoAttack's eta_rectangles(x, y) into
// out[:x·y]: centred rectangles of growing size, the k-th adding 1/(k+1)²,
// normalized to unit norm.
func squareRects(out []float64, x, y int, sign float64) {
	if x == 0 || y == 0 {
		return
	}
	c0, c1 := x/2, y/2
	for k := range max(x/2+1, y/2+1) {
		v := 1 / float64((k+1)*(k+1))
		for i := max(c0, 0); i < min(c0+2*k+1, x); i++ {
			for j := max(c1, 0); j < min(c1+2*k+1, y); j++ {
				out[i*y+j] += v
			}
		}
		c0--
		c1--
	}
	n := 0.0
	for _, v := range out {
		n += v * v
	}
	n = math.Sqrt(n)
	for i := range out {
		out[i] *= sign / n
	}
}
