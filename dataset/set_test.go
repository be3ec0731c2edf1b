package dataset

import (
	"errors"
	"testing"
)

func TestSliceIsAView(t *testing.T) {
	s := Synthetic(10, 2, 3, 3, 4, 1)
	v := s.Slice(3, 7)
	if v.Shape() != [4]int{4, 2, 3, 3} || v.Classes != 4 {
		t.Fatalf("got %v", v)
	}
	checkSet(t, v)
	d := 2 * 3 * 3
	if &v.X[0] != &s.X[3*d] || &v.Y[0] != &s.Y[3] {
		t.Fatal("Slice copied")
	}
	// Appending to a view never writes into the set.
	before := s.Y[7]
	_ = append(v.Y, 99)
	if s.Y[7] != before {
		t.Fatal("append to a view overwrote the set")
	}
	if e := s.Slice(10, 10); e.N != 0 || len(e.X) != 0 {
		t.Fatalf("empty slice: %v", e)
	}
}

func TestSplit(t *testing.T) {
	s := Synthetic(10, 1, 2, 2, 3, 1)
	for _, tc := range []struct{ holdout, train, held int }{
		{3, 7, 3}, {0, 10, 0}, {10, 0, 10}, {12, 0, 10}, {-1, 10, 0},
	} {
		tr, he := Split(s, tc.holdout)
		if tr.N != tc.train || he.N != tc.held {
			t.Errorf("Split(%d): %d + %d, want %d + %d", tc.holdout, tr.N, he.N, tc.train, tc.held)
		}
		if he.N > 0 && &he.Y[he.N-1] != &s.Y[9] {
			t.Errorf("Split(%d): held is not the last examples", tc.holdout)
		}
	}
}

func TestCheckShape(t *testing.T) {
	s := Synthetic(1, 1, 28, 28, 10, 1)
	if err := CheckShape(s, 1, 28, 28); err != nil {
		t.Fatal(err)
	}
	err := CheckShape(s, 3, 32, 32)
	if !errors.Is(err, ErrShape) || err.Error() != "dataset: shape mismatch: data is 1×28×28 but the model expects 3×32×32" {
		t.Fatalf("got %v", err)
	}
}
