package orchestrator

import (
	"runtime"

	"github.com/slatrun/slatrun/perturb"
)

// maxFanout bounds the goroutines of a fanout.
const maxFanout = 64

// minFanoutPart is the fewest elements a fanout part gets: below it the
// hand-over costs more than the work.
const minFanoutPart = 1 << 15

// fanout runs SLAT's latent step (perturb.SignFillAbsSum) of a tap on the
// run's threads: the tap is cut into one part per thread at multiples of 4
// elements, the calling goroutine takes part 0 and persistent workers the
// others; the parts' sums are added in part order, so the result depends on
// the thread count only. It allocates nothing per call. ONNX Runtime's pool
// is idle while the Go side of a step runs, so the threads are free.
type fanout struct {
	threads int
	work    []chan int // to worker i−1: part i
	done    chan struct{}
	delta   []float32
	g       []float32
	step    float32
	cut     [maxFanout + 1]int
	sums    [maxFanout]float64
}

// newFanout starts threads−1 workers (threads ≤ 0: one per CPU, ONNX
// Runtime's own default).
func newFanout(threads int) *fanout {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	threads = min(max(threads, 1), maxFanout)
	f := &fanout{threads: threads, done: make(chan struct{}, threads)}
	for i := 1; i < threads; i++ {
		c := make(chan int, 1)
		f.work = append(f.work, c)
		go func() {
			for p := range c {
				f.run(p)
				f.done <- struct{}{}
			}
		}()
	}
	return f
}

func (f *fanout) run(p int) {
	lo, hi := f.cut[p], f.cut[p+1]
	f.sums[p] = perturb.SignFillAbsSum(f.delta[lo:hi], f.g[lo:hi], f.step)
}

// latent sets δ = step·sign(g) and returns Σ|g| (perturb.SignFillAbsSum).
func (f *fanout) latent(delta, g []float32, step float32) float64 {
	n := len(delta)
	parts := min(f.threads, max(n/minFanoutPart, 1))
	f.delta, f.g, f.step = delta, g[:n], step
	per := (n/parts + 3) &^ 3
	for p := 0; p <= parts; p++ {
		f.cut[p] = min(p*per, n)
	}
	f.cut[parts] = n
	for p := 1; p < parts; p++ {
		f.work[p-1] <- p
	}
	f.run(0)
	for p := 1; p < parts; p++ {
		<-f.done
	}
	s := 0.0
	for p := 0; p < parts; p++ {
		s += f.sums[p]
	}
	f.delta, f.g = nil, nil
	return s
}

// close stops the workers.
func (f *fanout) close() {
	for _, c := range f.work {
		close(c)
	}
	f.work = nil
}
