package eval

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// refSquareLinf is a float64 transcription of AutoAttack's untargeted L∞
// Square (SquareAttack.attack_single_run with the margin loss, and
// perturb's restarts) for one sample of the linear model. It calls visit
// with each point the reference evaluates, in order, and returns their
// number and whether one is misclassified.
//
// The reference's loop: x_best = clip(x + ε·s, 0, 1) with one sign s per
// channel and column (vertical stripes), evaluated; then for iteration
// i = 0, 1, …, n_queries−1, while the margin of x_best is > 0: p =
// p_selection(i) (aaPSelection, not rescaled), side s =
// min(aaSide(p), h, w), a corner vh, vw uniform in [0, h−s) × [0, w−s),
// one sign per channel, x_new = clip(clip(x_best + 2ε·sign on the window,
// x−ε, x+ε), 0, 1), evaluated; x_new replaces x_best if its margin is
// strictly smaller, or ≤ 0 (misclassified). A restart repeats this from a
// new start for a sample still robust.
//
// The random numbers are Go's per-sample streams, drawn in the order the
// reference draws its tensors: the stripes (channel-major, then column),
// then per iteration vh, vw and the channels' signs. The reference draws
// one window per iteration for the whole batch from a global generator;
// per-sample streams are slatrun's documented change, and sharing the
// draws is what lets this compare points exactly.
func refSquareLinf(m *linModel, x0 []float32, y int, eps float64, queries, restarts int, pInit float64, seed, aid uint64, sample int, visit func(k int, p []float64)) (n int, broke bool) {
	c, h, w := imgC, imgH, imgW
	x := to64(x0)
	marginAt := func(p []float64) float64 {
		z := m.logits64(p)
		other := math.Inf(-1)
		for j, v := range z {
			if j != y {
				other = math.Max(other, v)
			}
		}
		return z[y] - other
	}
	eval := func(p []float64) float64 {
		visit(n, p)
		n++
		return marginAt(p)
	}
	for round := range restarts {
		rg := stream(seed, aid, sample, round)
		best := make([]float64, len(x))
		for ch := range c {
			for j := range w {
				s := -1.0
				if rg.next()&1 == 1 {
					s = 1
				}
				for i := range h {
					q := (ch*h+i)*w + j
					best[q] = math.Min(math.Max(x[q]+eps*s, 0), 1)
				}
			}
		}
		mMin := eval(best)
		for it := 0; it < queries && mMin > 0; it++ {
			p := aaPSelection(it, queries, pInit, false)
			s := min(aaSide(p, c, h, w, false), h, w)
			vh, vw := rg.intn(h-s), rg.intn(w-s)
			next := append([]float64(nil), best...)
			for ch := range c {
				sign := -1.0
				if rg.next()&1 == 1 {
					sign = 1
				}
				for i := vh; i < vh+s; i++ {
					for j := vw; j < vw+s; j++ {
						q := (ch*h+i)*w + j
						v := math.Min(math.Max(next[q]+2*eps*sign, x[q]-eps), x[q]+eps)
						next[q] = math.Min(math.Max(v, 0), 1)
					}
				}
			}
			if mNew := eval(next); mNew < mMin || mNew <= 0 {
				best, mMin = next, mNew
			}
		}
		if mMin <= 0 {
			return n, true
		}
	}
	return n, false
}

// TestSquareFollowsReference runs Square on the linear model and compares,
// per sample, every point it evaluates (in order), its queries and its
// verdict with the float64 transcription of AutoAttack's loop
// (refSquareLinf): the stripes, p's schedule, the window's side and
// position, the signs, the projection onto the ball and the box, which
// proposals are kept, when a sample stops, and the restarts. Points may
// differ by the float32 rounding of the ball's ends (ε is not exact in
// float32), not by more. Not covered: keeping a proposal whose margin ties
// the best (a tie almost always means the proposal changed nothing, so it
// is invisible here), and C > 1 (the test images have one channel).
func TestSquareFollowsReference(t *testing.T) {
	ten, _ := tasks()
	for _, tc := range []struct {
		attack   string
		eps      float32
		restarts int
		pInit    float32 // 0: the default
		batch    int
		small    bool // the logits graph at shrinking batches
		seed     uint64
		samples  int // attack only the first clean-correct samples (0: all)
	}{
		{"square-300", 0.1, 1, 0, 16, false, 7, 0},
		{"square-300", 0.1, 1, 0, 16, true, 7, 0},
		{"square-1200", 0.03, 1, 0, 5, true, 3, 0},   // p down to p_init/32
		{"square-60", 0.05, 4, 0, 8, true, 1, 0},     // restarts
		{"square-80", 0.05, 2, 0.3, 8, false, 11, 0}, // another p_init
		{"square", 0.02, 1, 0, 16, true, 2, 60},      // AutoAttack's 5000 queries, p down to p_init/128
	} {
		name := fmt.Sprintf("%s/eps=%v/restarts=%d/p=%v/b=%d/small=%v", tc.attack, tc.eps, tc.restarts, tc.pInit, tc.batch, tc.small)
		t.Run(name, func(t *testing.T) {
			spec := mustParse(t, tc.attack)[0]
			spec.Restarts = tc.restarts
			if tc.pInit != 0 {
				spec.PInit = tc.pInit
			}
			c := ten.m.classifier(t, tc.batch)
			if tc.small {
				c = ten.m.smallClassifier(t, tc.batch)
			}
			seen := make([][][]float32, len(ten.y))
			c.setPointHook(func(a *attacker) {
				for r := range a.b {
					if a.sq.live[r] {
						s := a.ids[r]
						seen[s] = append(seen[s], append([]float32(nil), a.xa[r*a.d:(r+1)*a.d]...))
					}
				}
			})
			a := newAttacker(c, tc.eps, false, tc.seed)
			a.aid = attackID(spec.Name)
			var set []int
			for s := range ten.y {
				if correctRef(ten.m.logits64(to64(ten.x[s*imgD:(s+1)*imgD])), int(ten.y[s])) {
					set = append(set, s)
				}
			}
			if tc.samples > 0 {
				set = set[:tc.samples]
			}
			fooled := make([]bool, len(ten.y))
			a.queries = 0
			if err := a.squareSet(context.Background(), &spec, ten.x, ten.y, set, fooled, nil); err != nil {
				t.Fatal(err)
			}
			c.setPointHook(nil)
			broken, total := 0, 0
			for _, s := range set {
				got, differ := seen[s], false
				n, wantBroke := refSquareLinf(ten.m, ten.x[s*imgD:(s+1)*imgD], int(ten.y[s]), float64(tc.eps),
					spec.Steps, spec.Restarts, float64(spec.PInit), tc.seed, a.aid, s, func(k int, want []float64) {
						if differ || k >= len(got) {
							return
						}
						if i, d := maxDiff(got[k], want); d > 1e-6 {
							t.Errorf("sample %d, query %d: value %d is %v, the reference's %v", s, k, i, got[k][i], want[i])
							differ = true
						}
					})
				total += n
				if fooled[s] != wantBroke {
					t.Errorf("sample %d: broken %v, the reference %v", s, fooled[s], wantBroke)
				}
				if wantBroke {
					broken++
				}
				if len(got) != n {
					t.Errorf("sample %d: %d queries, the reference %d", s, len(got), n)
				}
				seen[s] = nil
				if t.Failed() {
					t.FailNow()
				}
			}
			if int64(total) != a.queries {
				t.Errorf("queries counted %d, the reference makes %d", a.queries, total)
			}
			// The comparison means something only if both outcomes occur.
			if broken == 0 || broken == len(set) {
				t.Errorf("broke %d of %d samples: the case does not exercise both outcomes", broken, len(set))
			}
			t.Logf("broke %d of %d, %d queries", broken, len(set), total)
		})
	}
}

// maxDiff returns the index and size of the largest |got − want|.
func maxDiff(got []float32, want []float64) (int, float64) {
	at, d := 0, 0.0
	for i := range got {
		if v := math.Abs(float64(got[i]) - want[i]); v > d {
			at, d = i, v
		}
	}
	return at, d
}
