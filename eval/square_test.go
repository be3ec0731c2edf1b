package eval

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// aaPSelection is a float64 transcription of AutoAttack's
// SquareAttack.p_selection with its rescale_schedule flag (AutoAttack's
// standard version turns it off).
func aaPSelection(it, nQueries int, pInit float64, rescale bool) float64 {
	if rescale {
		it = int(float64(it) / float64(nQueries) * 10000)
	}
	switch {
	case 10 < it && it <= 50:
		return pInit / 2
	case 50 < it && it <= 200:
		return pInit / 4
	case 200 < it && it <= 500:
		return pInit / 8
	case 500 < it && it <= 1000:
		return pInit / 16
	case 1000 < it && it <= 2000:
		return pInit / 32
	case 2000 < it && it <= 4000:
		return pInit / 64
	case 4000 < it && it <= 6000:
		return pInit / 128
	case 6000 < it && it <= 8000:
		return pInit / 256
	case 8000 < it:
		return pInit / 512
	}
	return pInit
}

// aaSide transcribes AutoAttack's square side: L∞
// max(int(round(sqrt(p·n_features/c))), 1); L2 the same with a minimum of 3,
// made odd. Python's round rounds halves to even.
func aaSide(p float64, c, h, w int, l2 bool) int {
	nFeatures := c * h * w
	s := int(math.RoundToEven(math.Sqrt(p * float64(nFeatures) / float64(c))))
	if !l2 {
		return max(s, 1)
	}
	s = max(s, 3)
	if s%2 == 0 {
		s++
	}
	return s
}

// TestSquareScheduleMatchesAutoAttack compares p's schedule and the
// square's side with the transcriptions at every iteration of 10000
// queries, for image sizes where the side stays within the image (where it
// would not, squareSide caps it at min(h, w)).
func TestSquareScheduleMatchesAutoAttack(t *testing.T) {
	for _, pInit := range []float64{0.8, 0.05, 0.3} {
		for it := range 10000 {
			got, want := squareP(it, pInit), aaPSelection(it, 5000, pInit, false)
			if got != want {
				t.Fatalf("p_init %v, iteration %d: p = %v, AutoAttack's %v", pInit, it, got, want)
			}
		}
	}
	capped := 0
	for _, sz := range []struct{ c, h, w int }{{3, 32, 32}, {1, 28, 28}, {3, 64, 64}, {1, 6, 6}, {3, 224, 224}, {1, 5, 5}} {
		for _, l2 := range []bool{false, true} {
			for it := range 10000 {
				p := squareP(it, 0.8)
				got, want := squareSide(p, sz.h, sz.w, l2), aaSide(p, sz.c, sz.h, sz.w, l2)
				if want > min(sz.h, sz.w) {
					want = min(sz.h, sz.w)
					capped++
				}
				if got != want {
					t.Fatalf("%+v l2=%v iteration %d (p %v): side %d, AutoAttack's %d", sz, l2, it, p, got, want)
				}
			}
		}
	}
	// Halves round to even, as in Python: √(p·h·w) = 2.5 → 2, 3.5 → 4.
	for _, tc := range []struct {
		p    float64
		h, w int
		want int
	}{{6.25 / 100, 10, 10, 2}, {12.25 / 100, 10, 10, 4}} {
		if got := squareSide(tc.p, tc.h, tc.w, false); got != tc.want {
			t.Errorf("squareSide(%v, %d, %d) = %d, want %d", tc.p, tc.h, tc.w, got, tc.want)
		}
	}
	t.Logf("%d iterations capped at the image size", capped)
}

// TestSquarePattern checks the L2 pattern's defining properties: unit norm,
// upper half positive and lower half negative, largest at the centre of
// each half, and the transpose.
func TestSquarePattern(t *testing.T) {
	for _, s := range []int{1, 3, 5, 8, 11} {
		p := make([]float64, 2*s*s)
		squarePattern(s, false, p)
		n := 0.0
		for i := range s * s {
			n += p[i] * p[i]
			row := i / s
			if (row < s/2 && p[i] <= 0) || (row >= s/2 && p[i] >= 0) {
				t.Fatalf("s=%d: value %v at row %d has the wrong sign", s, p[i], row)
			}
		}
		if math.Abs(n-1) > 1e-12 {
			t.Errorf("s=%d: norm² %v", s, n)
		}
		q := make([]float64, 2*s*s)
		squarePattern(s, true, q)
		for i := range s {
			for j := range s {
				if q[i*s+j] != p[j*s+i] {
					t.Fatalf("s=%d: transposed pattern differs at %d,%d", s, i, j)
				}
			}
		}
		if s >= 3 {
			// The centre of the lower half has the largest magnitude.
			c := (s/2 + (s-s/2)/2) * s
			for j := range s {
				if math.Abs(p[c+j]) > math.Abs(p[c+s/2]) {
					t.Errorf("s=%d: the lower half peaks off centre", s)
				}
			}
		}
	}
}

// TestSquare: Square lowers accuracy on the linear models for both norms,
// never beyond the exact robust accuracy (L∞), every break it reports is a
// point it evaluated inside the ball whose logits (recomputed in float64)
// are misclassified, its verdicts do not depend on the batch size, and a
// sample stops being queried once it is broken.
func TestSquare(t *testing.T) {
	ten, _ := tasks()
	for _, tc := range []struct {
		norm    string
		eps     float32
		queries string
	}{{NormLinf, 0.1, "square-300"}, {NormL2, 0.5, "square-300"}} {
		t.Run(fmt.Sprintf("%s/%v", tc.norm, tc.eps), func(t *testing.T) {
			spec := mustParse(t, tc.queries)[0]
			c := ten.m.classifier(t, 16)
			l2 := tc.norm == NormL2
			// Record, per sample, the last point evaluated and whether
			// any evaluated point was inside the ball and misclassified.
			seenWrong := make([]bool, len(ten.y))
			queried := make([]int, len(ten.y))
			broke := make([]bool, len(ten.y))
			c.setPointHook(func(a *attacker) {
				for r := range a.b {
					if !a.sq.live[r] {
						continue
					}
					s := a.ids[r]
					queried[s]++
					if broke[s] {
						t.Errorf("sample %d queried after it was broken", s)
					}
					x0, xa := a.x0[r*a.d:(r+1)*a.d], a.xa[r*a.d:(r+1)*a.d]
					n := 0.0
					for i := range xa {
						v := float64(xa[i]) - float64(x0[i])
						if l2 {
							n += v * v
						} else {
							n = math.Max(n, math.Abs(v))
						}
						if !(xa[i] >= 0 && xa[i] <= 1) {
							t.Fatalf("sample %d: pixel %v outside [0,1]", s, xa[i])
						}
					}
					if l2 {
						n = math.Sqrt(n)
					}
					if n > float64(tc.eps)*(1+1e-6) {
						t.Fatalf("sample %d: ‖δ‖ = %v > ε = %v", s, n, tc.eps)
					}
					if !correctRef(ten.m.logits64(to64(xa)), int(ten.y[s])) {
						seenWrong[s] = true
					}
				}
			})
			a := newAttacker(c, tc.eps, l2, 7)
			a.aid = attackID(spec.Name)
			var set []int
			for s := range ten.y {
				if correctRef(ten.m.logits64(to64(ten.x[s*imgD:(s+1)*imgD])), int(ten.y[s])) {
					set = append(set, s)
				}
			}
			fooled := make([]bool, len(ten.y))
			a.runs, a.queries = 0, 0
			if err := a.squareSet(context.Background(), &spec, ten.x, ten.y, set, fooled, func(string, int, int) {
				for _, s := range set {
					broke[s] = fooled[s]
				}
			}); err != nil {
				t.Fatal(err)
			}
			c.setPointHook(nil)
			n, total := 0, 0
			for _, s := range set {
				total += queried[s]
				if fooled[s] {
					n++
					if !seenWrong[s] {
						t.Errorf("sample %d reported broken, but no point evaluated in the ball is misclassified in float64", s)
					}
				} else if queried[s] != spec.Steps+1 {
					t.Errorf("robust sample %d was queried %d times, want %d", s, queried[s], spec.Steps+1)
				}
			}
			if int64(total) != a.queries {
				t.Errorf("queries counted %d, hook saw %d", a.queries, total)
			}
			if n < len(set)/10 {
				t.Errorf("Square broke only %d of %d samples", n, len(set))
			}
			if !l2 {
				for _, s := range set {
					if fooled[s] && exactLinf(ten.m, ten.x[s*imgD:(s+1)*imgD], int(ten.y[s]), float64(tc.eps)) < -1e-4 {
						t.Errorf("sample %d is provably robust and was reported broken", s)
					}
				}
			}
			// Another batch size gives the same verdicts.
			other := verdictsOn(t, ten.m.classifier(t, 7), ten, spec, set, tc.eps, l2)
			for _, s := range set {
				if other[s] != fooled[s] {
					t.Errorf("sample %d: verdict %v with batch 16, %v with batch 7", s, fooled[s], other[s])
				}
			}
			// So does the logits graph in the ladder of smaller batches.
			sc := ten.m.smallClassifier(t, 16)
			small := verdictsOn(t, sc, ten, spec, set, tc.eps, l2)
			if len(sc.small) == 0 {
				t.Error("Square made no session at a smaller batch")
			}
			for _, s := range set {
				if small[s] != fooled[s] {
					t.Errorf("sample %d: verdict %v with batch 16, %v with the logits graph at shrinking batches", s, fooled[s], small[s])
				}
			}
			t.Logf("broke %d of %d clean-correct samples, %d queries (%.0f per sample)", n, len(set), total, float64(total)/float64(len(set)))
		})
	}
}

// verdictsOn runs one attack on the samples set and returns the verdicts.
func verdictsOn(t *testing.T, c *Classifier, tk task, spec AttackSpec, set []int, eps float32, l2 bool) []bool {
	t.Helper()
	a := newAttacker(c, eps, l2, 7)
	fooled := make([]bool, len(tk.y))
	if err := a.attackSet(context.Background(), &spec, tk.x, tk.y, set, fooled, nil); err != nil {
		t.Fatal(err)
	}
	return fooled
}

// TestSquareDoesNotAllocate: Square's query loop allocates nothing.
func TestSquareDoesNotAllocate(t *testing.T) {
	ten, _ := tasks()
	for _, c := range []*Classifier{ten.m.classifier(t, 8), ten.m.smallClassifier(t, 8)} {
		squareAllocs(t, c, ten)
	}
}

func squareAllocs(t *testing.T, c *Classifier, ten task) {
	set := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	fooled := make([]bool, len(ten.y))
	for _, l2 := range []bool{false, true} {
		spec := mustParse(t, "square-50")[0]
		a := newAttacker(c, 0.01, l2, 1)
		run := func() {
			if err := a.attackSet(context.Background(), &spec, ten.x, ten.y, set, fooled, nil); err != nil {
				t.Fatal(err)
			}
		}
		run() // makes the session
		if allocs := testing.AllocsPerRun(3, run); allocs != 0 {
			t.Errorf("l2=%v: Square allocates %v times per set", l2, allocs)
		}
	}
}
