package dataset

import "fmt"

// Augment is the data augmentation a Loader applies to each example as it
// copies it into the caller's buffer. The zero value does nothing.
type Augment struct {
	// Pad, if positive, zero-pads each image by Pad pixels on every side and
	// crops it back to H×W at a uniformly random offset (4 is the usual
	// CIFAR setting).
	Pad int
	// Flip mirrors each image left to right with probability 1/2.
	Flip bool
}

// DefaultAugment returns the standard CIFAR augmentation: pad 4, random crop,
// random horizontal flip.
func DefaultAugment() Augment { return Augment{Pad: 4, Flip: true} }

func (a Augment) active() bool { return a.Pad > 0 || a.Flip }

// Loader walks a Set in batches, copying each batch into buffers the caller
// owns. The order of epoch e is a permutation fixed by (seed, e) when
// shuffling, the identity otherwise; the augmentation of the k-th example of
// epoch e is fixed by (seed, e, k). So batches depend only on the seed and the
// position, and Seek resumes anywhere with the same batches. Next, Epoch and
// Seek allocate nothing.
//
// Set DropLast and Augment before the first Next. A Loader is not safe for
// concurrent use.
type Loader struct {
	// DropLast skips the final batch of an epoch when it is smaller than the
	// batch size (so every batch is full).
	DropLast bool
	// Augment is applied to every example Next copies out.
	Augment Augment

	set     *Set
	batch   int
	shuffle bool
	seed    uint64
	order   []int // permutation of epoch; nil without shuffling
	epoch   int
	next    int // index of the next batch
	count   int // examples in the batch last returned
}

// NewLoader returns a Loader over set with the given batch size, positioned
// at the start of epoch 0. It panics if set is nil or batch < 1.
func NewLoader(set *Set, batch int, shuffle bool, seed uint64) *Loader {
	if set == nil || batch < 1 {
		panic(fmt.Sprintf("dataset: NewLoader: batch size %d (want ≥ 1) or nil set", batch))
	}
	l := &Loader{set: set, batch: batch, shuffle: shuffle, seed: seed}
	if shuffle {
		l.order = make([]int, set.N)
	}
	l.Epoch(0)
	return l
}

// BatchSize returns the batch size.
func (l *Loader) BatchSize() int { return l.batch }

// Batches returns the number of batches in an epoch: ⌈N/batch⌉, or ⌊N/batch⌋
// with DropLast.
func (l *Loader) Batches() int {
	if l.DropLast {
		return l.set.N / l.batch
	}
	return (l.set.N + l.batch - 1) / l.batch
}

// Epoch positions the loader at the first batch of epoch e, in the order of
// that epoch.
func (l *Loader) Epoch(e int) {
	l.epoch, l.next, l.count = e, 0, 0
	if !l.shuffle {
		return
	}
	for i := range l.order {
		l.order[i] = i
	}
	r := seeded(l.seed, domainShuffle, uint64(e), 0)
	for i := len(l.order) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		l.order[i], l.order[j] = l.order[j], l.order[i]
	}
}

// Seek positions the loader at batch index batch of epoch epoch, so that Next
// returns the same batches as a loader that got there by calling Next. A
// batch at or past Batches() makes Next return false. It panics if batch < 0.
func (l *Loader) Seek(epoch, batch int) {
	if batch < 0 {
		panic(fmt.Sprintf("dataset: Seek(%d, %d): negative batch index", epoch, batch))
	}
	l.Epoch(epoch)
	l.next = batch
}

// Position returns the current epoch and the index of the batch the next call
// of Next returns; Seek(Position()) is a no-op, so it is what a checkpoint
// records.
func (l *Loader) Position() (epoch, batch int) { return l.epoch, l.next }

// Count returns the number of examples in the batch last returned by Next:
// the batch size, or fewer for the final batch of an epoch without DropLast.
func (l *Loader) Count() int { return l.count }

// Next copies the next batch of the epoch into x (batch×C×H×W, NCHW) and y
// (batch labels) and reports whether there was one; at the end of the epoch it
// returns false and the caller moves on with Epoch. A final short batch fills
// the first Count() examples and zeros the rest of x and y. Next panics if x
// or y is shorter than a full batch.
func (l *Loader) Next(x []float32, y []int64) bool {
	s := l.set
	d := s.C * s.H * s.W
	if len(x) < l.batch*d || len(y) < l.batch {
		panic(fmt.Sprintf("dataset: Loader.Next: buffers of %d pixels and %d labels, want %d and %d", len(x), len(y), l.batch*d, l.batch))
	}
	if l.next >= l.Batches() {
		l.count = 0
		return false
	}
	start := l.next * l.batch
	n := min(l.batch, s.N-start)
	aug := l.Augment.active()
	for i := range n {
		k := start + i
		idx := k
		if l.order != nil {
			idx = l.order[k]
		}
		src := s.X[idx*d : (idx+1)*d]
		dst := x[i*d : (i+1)*d]
		if aug {
			r := seeded(l.seed, domainAugment, uint64(l.epoch), uint64(k))
			l.Augment.apply(dst, src, s.C, s.H, s.W, &r)
		} else {
			copy(dst, src)
		}
		y[i] = s.Y[idx]
	}
	clear(x[n*d : l.batch*d])
	clear(y[n:l.batch])
	l.next++
	l.count = n
	return true
}

// apply writes the augmented image src (c×h×w) into dst: out(i, j) =
// src(i+dy, j'+dx) with j' = j, or w-1-j when flipped, and zero outside src.
func (a Augment) apply(dst, src []float32, c, h, w int, r *rng) {
	dy, dx := 0, 0
	if a.Pad > 0 {
		dy = r.intn(2*a.Pad+1) - a.Pad
		dx = r.intn(2*a.Pad+1) - a.Pad
	}
	flip := a.Flip && r.next()&1 == 1
	// Columns j with 0 ≤ j+dx < w, for the unflipped copy.
	lo, hi := max(0, -dx), min(w, w-dx)
	for ch := range c {
		sp := src[ch*h*w : (ch+1)*h*w]
		dp := dst[ch*h*w : (ch+1)*h*w]
		for i := range h {
			row := dp[i*w : (i+1)*w]
			si := i + dy
			if si < 0 || si >= h {
				clear(row)
				continue
			}
			srow := sp[si*w : (si+1)*w]
			if flip {
				for j := range row {
					if sj := w - 1 - j + dx; sj >= 0 && sj < w {
						row[j] = srow[sj]
					} else {
						row[j] = 0
					}
				}
				continue
			}
			if lo >= hi {
				clear(row)
				continue
			}
			clear(row[:lo])
			copy(row[lo:hi], srow[lo+dx:hi+dx])
			clear(row[hi:])
		}
	}
}
