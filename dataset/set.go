package dataset

import (
	"errors"
	"fmt"
)

// Errors returned (wrapped, with the file and the details) by the readers and
// checks of this package. Test with errors.Is.
var (
	ErrEmpty     = errors.New("empty file")
	ErrMagic     = errors.New("bad magic number")
	ErrHeader    = errors.New("bad header")
	ErrTruncated = errors.New("truncated")
	ErrTrailing  = errors.New("unexpected data after the end")
	ErrCorrupt   = errors.New("corrupt gzip data")
	ErrCount     = errors.New("image and label counts differ")
	ErrLabel     = errors.New("label out of range")
	ErrSize      = errors.New("bad file size")
	ErrSplit     = errors.New("unknown split")
	ErrSpec      = errors.New("unknown data spec")
	ErrShape     = errors.New("shape mismatch")
)

// Set is a labelled image set held in memory: N images of C×H×W float32 pixels
// in [0,1], stored NCHW in X, and their labels in [0, Classes) in Y.
type Set struct {
	N, C, H, W int
	Classes    int
	X          []float32 // len N*C*H*W
	Y          []int64   // len N
}

// Shape returns {N, C, H, W}.
func (s *Set) Shape() [4]int { return [4]int{s.N, s.C, s.H, s.W} }

// String describes the set, for example "60000×1×28×28, 10 classes".
func (s *Set) String() string {
	return fmt.Sprintf("%d×%d×%d×%d, %d classes", s.N, s.C, s.H, s.W, s.Classes)
}

// Slice returns examples [from, to) as a view that shares memory with s (no
// copy). Appending to the view's X or Y never writes into s. Like slicing, it
// panics if the bounds are out of range.
func (s *Set) Slice(from, to int) *Set {
	if from < 0 || to < from || to > s.N {
		panic(fmt.Sprintf("dataset: Slice(%d, %d) of a set of %d examples", from, to, s.N))
	}
	d := s.C * s.H * s.W
	return &Set{
		N: to - from, C: s.C, H: s.H, W: s.W, Classes: s.Classes,
		X: s.X[from*d : to*d : to*d],
		Y: s.Y[from:to:to],
	}
}

// Split returns the first N-holdout examples as train and the last holdout
// examples as held, both views of s. holdout is clamped to [0, N].
func Split(s *Set, holdout int) (train, held *Set) {
	holdout = max(0, min(holdout, s.N))
	return s.Slice(0, s.N-holdout), s.Slice(s.N-holdout, s.N)
}

// CheckShape returns an error (ErrShape) unless the images of s are c×h×w,
// for example "dataset: data is 1×28×28 but the model expects 3×32×32".
func CheckShape(s *Set, c, h, w int) error {
	if s.C == c && s.H == h && s.W == w {
		return nil
	}
	return fmt.Errorf("dataset: %w: data is %d×%d×%d but the model expects %d×%d×%d", ErrShape, s.C, s.H, s.W, c, h, w)
}

// checkSplit accepts "train" and "test".
func checkSplit(split string) error {
	if split == "train" || split == "test" {
		return nil
	}
	return fmt.Errorf("dataset: %w %q: want \"train\" or \"test\"", ErrSplit, split)
}

// unit maps a pixel byte to [0,1].
var unit = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

func bytesToUnit(dst []float32, src []byte) {
	dst = dst[:len(src)]
	for i, b := range src {
		dst[i] = unit[b]
	}
}
