package dataset

import (
	"slices"
	"testing"
)

// TestSyntheticLearnable: class means estimated on one sample classify
// another sample of the same task by nearest mean.
func TestSyntheticLearnable(t *testing.T) {
	for _, sh := range [][3]int{{1, 28, 28}, {3, 32, 32}, {1, 8, 8}} {
		c, h, w := sh[0], sh[1], sh[2]
		train := Synthetic(1000, c, h, w, 10, 1)
		test := Synthetic(300, c, h, w, 10, 2)
		checkSet(t, train)
		checkSet(t, test)
		d := c * h * w
		mean := make([]float64, 10*d)
		var count [10]int
		for i, y := range train.Y {
			count[y]++
			for j, v := range train.X[i*d : (i+1)*d] {
				mean[int(y)*d+j] += float64(v)
			}
		}
		for k, n := range count {
			if n != 100 {
				t.Fatalf("%v: class %d has %d examples, want 100", sh, k, n)
			}
			for j := range d {
				mean[k*d+j] /= float64(n)
			}
		}
		right := 0
		for i, y := range test.Y {
			best, guess := -1.0, -1
			for k := range 10 {
				dist := 0.0
				for j, v := range test.X[i*d : (i+1)*d] {
					e := float64(v) - mean[k*d+j]
					dist += e * e
				}
				if guess < 0 || dist < best {
					best, guess = dist, k
				}
			}
			if int64(guess) == y {
				right++
			}
		}
		if acc := float64(right) / float64(test.N); acc < 0.9 {
			t.Errorf("%v: nearest class mean gets %.3f, want > 0.9", sh, acc)
		}
	}
}

func TestSyntheticSeeded(t *testing.T) {
	a := Synthetic(50, 1, 6, 6, 3, 7)
	b := Synthetic(50, 1, 6, 6, 3, 7)
	c := Synthetic(50, 1, 6, 6, 3, 8)
	if !slices.Equal(a.X, b.X) || !slices.Equal(a.Y, b.Y) {
		t.Fatal("same seed, different data")
	}
	if slices.Equal(a.X, c.X) {
		t.Fatal("different seeds, same data")
	}
	if z := Synthetic(0, 1, 2, 2, 2, 1); z.N != 0 || len(z.X) != 0 {
		t.Fatalf("empty: %v", z)
	}
}
