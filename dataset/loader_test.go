package dataset

import (
	"slices"
	"testing"
)

// indexSet returns a set of n examples of c×h×w whose label is the index and
// whose pixels encode it, so a batch tells which examples it holds.
func indexSet(n, c, h, w int) *Set {
	d := c * h * w
	s := &Set{N: n, C: c, H: h, W: w, Classes: n, X: make([]float32, n*d), Y: make([]int64, n)}
	for i := range n {
		s.Y[i] = int64(i)
		for j := range d {
			s.X[i*d+j] = float32(i*d+j) / float32(n*d)
		}
	}
	return s
}

// epochBatches runs one epoch and returns its labels and images, batch by batch.
func epochBatches(l *Loader) (ys [][]int64, xs [][]float32) {
	s := l.set
	x := make([]float32, l.batch*s.C*s.H*s.W)
	y := make([]int64, l.batch)
	for l.Next(x, y) {
		ys = append(ys, slices.Clone(y[:l.Count()]))
		xs = append(xs, slices.Clone(x))
	}
	return ys, xs
}

func TestLoaderEachExampleOnce(t *testing.T) {
	const n = 23
	s := indexSet(n, 1, 2, 2)
	for _, tc := range []struct {
		batch    int
		shuffle  bool
		dropLast bool
		batches  int
		seen     int
	}{
		{5, false, false, 5, 23},
		{5, true, false, 5, 23},
		{5, true, true, 4, 20},
		{23, true, true, 1, 23},
		{30, false, false, 1, 23},
		{30, false, true, 0, 0},
		{1, true, false, 23, 23},
	} {
		l := NewLoader(s, tc.batch, tc.shuffle, 42)
		l.DropLast = tc.dropLast
		if l.Batches() != tc.batches {
			t.Errorf("%+v: Batches() = %d", tc, l.Batches())
		}
		for e := range 3 {
			l.Epoch(e)
			ys, xs := epochBatches(l)
			if len(ys) != tc.batches {
				t.Fatalf("%+v: %d batches", tc, len(ys))
			}
			seen := map[int64]bool{}
			for b, y := range ys {
				for i, v := range y {
					if seen[v] {
						t.Fatalf("%+v epoch %d: example %d twice", tc, e, v)
					}
					seen[v] = true
					if xs[b][i*4] != s.X[v*4] {
						t.Fatalf("%+v: image and label of example %d do not match", tc, v)
					}
				}
			}
			if len(seen) != tc.seen {
				t.Fatalf("%+v epoch %d: %d distinct examples, want %d", tc, e, len(seen), tc.seen)
			}
			if !tc.shuffle && len(ys) > 0 && ys[0][0] != 0 {
				t.Fatalf("%+v: unshuffled epoch starts with %d", tc, ys[0][0])
			}
		}
	}
}

func TestLoaderShortBatchZerosTheRest(t *testing.T) {
	s := indexSet(7, 1, 1, 2)
	l := NewLoader(s, 4, false, 0)
	x := make([]float32, 8)
	y := make([]int64, 4)
	for i := range x {
		x[i] = -1
	}
	l.Next(x, y)
	if !l.Next(x, y) || l.Count() != 3 {
		t.Fatalf("second batch: count %d", l.Count())
	}
	if y[3] != 0 || x[6] != 0 || x[7] != 0 {
		t.Fatalf("tail not zeroed: %v %v", x, y)
	}
	if l.Next(x, y) || l.Count() != 0 {
		t.Fatal("a third batch")
	}
}

func TestLoaderDeterministic(t *testing.T) {
	s := indexSet(50, 1, 4, 4)
	run := func(seed uint64, e int, aug Augment) ([][]int64, [][]float32) {
		l := NewLoader(s, 8, true, seed)
		l.Augment = aug
		l.Epoch(e)
		return epochBatches(l)
	}
	for _, aug := range []Augment{{}, DefaultAugment()} {
		y1, x1 := run(1, 2, aug)
		y2, x2 := run(1, 2, aug)
		if !equalBatches(y1, y2) || !equalBatches(x1, x2) {
			t.Fatalf("%+v: same seed and epoch, different batches", aug)
		}
		if y3, _ := run(2, 2, aug); equalBatches(y1, y3) {
			t.Fatalf("%+v: seeds 1 and 2 give the same order", aug)
		}
		if y4, _ := run(1, 3, aug); equalBatches(y1, y4) {
			t.Fatalf("%+v: epochs 2 and 3 give the same order", aug)
		}
	}
}

func equalBatches[T comparable](a, b [][]T) bool {
	return slices.EqualFunc(a, b, func(x, y []T) bool { return slices.Equal(x, y) })
}

func TestLoaderSeek(t *testing.T) {
	s := indexSet(37, 3, 5, 6)
	for _, aug := range []Augment{{}, DefaultAugment()} {
		ref := NewLoader(s, 4, true, 9)
		ref.Augment = aug
		ref.Epoch(3)
		ys, xs := epochBatches(ref)
		for _, b := range []int{0, 1, 5, len(ys) - 1} {
			l := NewLoader(s, 4, true, 9)
			l.Augment = aug
			l.Seek(3, b)
			if e, bb := l.Position(); e != 3 || bb != b {
				t.Fatalf("Position() = %d, %d after Seek(3, %d)", e, bb, b)
			}
			gy, gx := epochBatches(l)
			if !equalBatches(gy, ys[b:]) || !equalBatches(gx, xs[b:]) {
				t.Fatalf("%+v: Seek(3, %d) gives other batches", aug, b)
			}
		}
		// Resuming a loader that has moved elsewhere.
		l := NewLoader(s, 4, true, 9)
		l.Augment = aug
		epochBatches(l)
		l.Seek(3, 2)
		if gy, _ := epochBatches(l); !equalBatches(gy, ys[2:]) {
			t.Fatal("Seek after an epoch gives other batches")
		}
		l.Seek(3, 1000)
		if gy, _ := epochBatches(l); len(gy) != 0 {
			t.Fatal("Seek past the end gives batches")
		}
	}
}

func TestLoaderNextAllocatesNothing(t *testing.T) {
	s := Synthetic(100, 3, 8, 8, 10, 1)
	for _, aug := range []Augment{{}, DefaultAugment()} {
		l := NewLoader(s, 16, true, 1)
		l.Augment = aug
		x := make([]float32, 16*3*8*8)
		y := make([]int64, 16)
		e := 0
		allocs := testing.AllocsPerRun(200, func() {
			if !l.Next(x, y) {
				e++
				l.Epoch(e)
			}
		})
		if allocs != 0 {
			t.Errorf("%+v: %v allocations per Next", aug, allocs)
		}
	}
}

func TestAugmentFlip(t *testing.T) {
	s := indexSet(40, 2, 3, 5)
	l := NewLoader(s, 40, false, 3)
	l.Augment = Augment{Flip: true}
	x := make([]float32, 40*30)
	y := make([]int64, 40)
	l.Next(x, y)
	flipped := 0
	for i := range 40 {
		src, got := s.X[i*30:(i+1)*30], x[i*30:(i+1)*30]
		if slices.Equal(src, got) {
			continue
		}
		for r := range 6 { // rows of both channels
			for j := range 5 {
				if got[r*5+j] != src[r*5+4-j] {
					t.Fatalf("example %d is neither the image nor its mirror", i)
				}
			}
		}
		flipped++
	}
	if flipped < 10 || flipped > 30 {
		t.Errorf("%d of 40 flipped", flipped)
	}
}

func TestAugmentPadCrop(t *testing.T) {
	const c, h, w, pad = 2, 6, 9, 2
	s := indexSet(60, c, h, w)
	for i := range s.X {
		s.X[i] += 0.01 // no pixel is zero, so padding shows
	}
	for _, flip := range []bool{false, true} {
		l := NewLoader(s, 60, true, 5)
		l.Augment = Augment{Pad: pad, Flip: flip}
		x := make([]float32, 60*c*h*w)
		y := make([]int64, 60)
		l.Next(x, y)
		shifts := map[[3]int]bool{}
		for i := range 60 {
			src := s.X[y[i]*c*h*w:][:c*h*w]
			got := x[i*c*h*w:][:c*h*w]
			found := false
			for dy := -pad; dy <= pad && !found; dy++ {
				for dx := -pad; dx <= pad && !found; dx++ {
					for f := range 2 {
						if f == 1 && !flip {
							continue
						}
						if matchesShift(got, src, c, h, w, dy, dx, f == 1) {
							found = true
							shifts[[3]int{dy, dx, f}] = true
							break
						}
					}
				}
			}
			if !found {
				t.Fatalf("flip %v: example %d is no shifted copy of its image", flip, y[i])
			}
		}
		if len(shifts) < 10 {
			t.Errorf("flip %v: only %d distinct shifts in 60 examples", flip, len(shifts))
		}
	}
}

func matchesShift(got, src []float32, c, h, w, dy, dx int, flip bool) bool {
	for ch := range c {
		for i := range h {
			for j := range w {
				jj := j
				if flip {
					jj = w - 1 - j
				}
				si, sj := i+dy, jj+dx
				want := float32(0)
				if si >= 0 && si < h && sj >= 0 && sj < w {
					want = src[ch*h*w+si*w+sj]
				}
				if got[ch*h*w+i*w+j] != want {
					return false
				}
			}
		}
	}
	return true
}

func BenchmarkLoaderNext(b *testing.B) {
	s := Synthetic(1024, 3, 32, 32, 10, 1)
	for _, tc := range []struct {
		name string
		aug  Augment
	}{{"plain", Augment{}}, {"augment", DefaultAugment()}} {
		b.Run(tc.name, func(b *testing.B) {
			l := NewLoader(s, 128, true, 1)
			l.Augment = tc.aug
			x := make([]float32, 128*3*32*32)
			y := make([]int64, 128)
			b.ReportAllocs()
			e := 0
			for b.Loop() {
				if !l.Next(x, y) {
					e++
					l.Epoch(e)
				}
			}
		})
	}
}
