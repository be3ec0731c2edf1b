package orchestrator

import "github.com/slatrun/slatrun/perturb"

// halves runs SLAT's element-wise host steps in two halves, the second on a
// helper goroutine, for runs with two or more intra-op threads: between
// the graph passes those cores are idle, and the latent signs (two taps of
// 1.6M floats a step on convnet, read and written once) and the input step
// are memory-bound loops that a second core shortens (one convnet tap: 0.91
// → 0.59 ms, BenchmarkHalves). The split changes no value: every element
// is computed by the same function either way. A nil *halves runs
// everything on the caller's goroutine.
type halves struct {
	jobs chan halfJob
	done chan struct{}
}

// halfJob is one half of a perturb.SLATLatent call (x nil) or of a
// perturb.SLATInput call.
type halfJob struct {
	delta, g, x []float32
	a, b, c     float32 // SLATLatent's eta, step, radius; SLATInput's eps, stepFrac
}

func (j halfJob) run() {
	if j.x == nil {
		perturb.SLATLatent(j.delta, j.g, j.a, j.b, j.c)
	} else {
		perturb.SLATInput(j.delta, j.g, j.x, j.a, j.b)
	}
}

// minHalves is the smallest tensor worth handing half of to the helper
// (the hand-over costs a few microseconds).
const minHalves = 1 << 16

func newHalves() *halves {
	h := &halves{jobs: make(chan halfJob), done: make(chan struct{})}
	go func() {
		for j := range h.jobs {
			j.run()
			h.done <- struct{}{}
		}
	}()
	return h
}

// split runs j, split in two when it is large enough. The argument checks
// run first on the caller's goroutine (on empty slices), so that what they
// panic on panics here and not on the helper's.
func (h *halves) split(j halfJob) {
	n := len(j.delta)
	if h == nil || n < minHalves || len(j.g) < n || j.x != nil && len(j.x) != n {
		j.run()
		return
	}
	head := j
	head.delta, head.g = j.delta[:0], j.g[:0]
	if j.x != nil {
		head.x = j.x[:0]
	}
	head.run()
	m := n / 2 &^ 15 // both halves start 64-byte aligned if delta does
	tail := j
	tail.delta, tail.g = j.delta[m:], j.g[m:n]
	if j.x != nil {
		tail.x = j.x[m:]
	}
	h.jobs <- tail
	head.delta, head.g = j.delta[:m], j.g[:m]
	if j.x != nil {
		head.x = j.x[:m]
	}
	head.run()
	<-h.done
}

// latent is perturb.SLATLatent(delta, g, eta, step, radius), split.
func (h *halves) latent(delta, g []float32, eta, step, radius float32) {
	h.split(halfJob{delta: delta, g: g, a: eta, b: step, c: radius})
}

// input is perturb.SLATInput(delta, gx, x, eps, stepFrac), split.
func (h *halves) input(delta, gx, x []float32, eps, stepFrac float32) {
	if x == nil { // SLATInput's own complaint, from the caller's goroutine
		perturb.SLATInput(delta, gx, x, eps, stepFrac)
		return
	}
	h.split(halfJob{delta: delta, g: gx, x: x, a: eps, b: stepFrac})
}

// close stops the helper.
func (h *halves) close() {
	if h != nil {
		close(h.jobs)
	}
}
