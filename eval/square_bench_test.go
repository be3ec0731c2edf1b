package eval

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
)

// BenchmarkSquareConvnet measures Square's throughput on the convnet
// (random weights, 1×28×28 inputs, 1 thread) at a full batch of 250, in
// image-queries per second, against the bare forward pass of the same
// logits graph: "forward/b=B" runs the session alone at batch B (250, and
// the smaller batches Square packs its last live rows into), "square" runs
// squareSet on 250 samples that all stay robust (labels the model's own
// predictions, ε = 1e-6), so every query is a full batch. The difference
// per image-query is Square's Go side (proposals, margins, copies). Both
// report wall-clock and CPU-time rates (img-queries/s, img-queries/cpu-s):
// on a machine shared with other jobs the CPU-time rate is the one to
// compare (with 1 thread, ONNX Runtime runs on the calling thread).
//
//	go test -run '^$' -bench SquareConvnet ./eval/
func BenchmarkSquareConvnet(b *testing.B) {
	needORT(b)
	const n, queries = 250, 100
	fwd, err := zoo.Build("convnet", zoo.Config{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	block := ort.NCHWcBlock()
	gs, err := graphs.DeriveEval(fwd, n, []string{HeadCE, HeadLogits}, block, false)
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewClassifier(gs, ort.Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetResize(graphs.EvalAt(fwd, block, false))
	data := dataset.Synthetic(n, 1, 28, 28, 10, 1)
	s, err := c.session(HeadLogits)
	if err != nil {
		b.Fatal(err)
	}
	copy(s.Float(contract.Input), data.X)
	if err := s.Run(); err != nil {
		b.Fatal(err)
	}
	y := make([]int64, n)
	set := make([]int, n)
	z := s.Float(contract.Logits)
	for i := range y {
		set[i] = i
		for j := range 10 {
			if z[i*10+j] > z[i*10+int(y[i])] {
				y[i] = int64(j)
			}
		}
	}
	var wall time.Time
	var cpu time.Duration
	startClock := func() { wall, cpu = time.Now(), cpuTime() }
	perSec := func(b *testing.B, imageQueries int64) {
		b.ReportMetric(float64(imageQueries)/time.Since(wall).Seconds(), "img-queries/s")
		b.ReportMetric(float64(imageQueries)/(cpuTime()-cpu).Seconds(), "img-queries/cpu-s")
	}
	for _, bs := range []int{n, 16, 4, 1} {
		// The logits graph alone, at the full batch and at batches of
		// the ladder Square packs its last live rows into.
		sb, err := c.sessionAt(HeadLogits, bs)
		if err != nil {
			b.Fatal(err)
		}
		copy(sb.Float(contract.Input), data.X[:bs*28*28])
		b.Run(fmt.Sprintf("forward/b=%d", bs), func(b *testing.B) {
			startClock()
			for range b.N {
				if err := sb.Run(); err != nil {
					b.Fatal(err)
				}
			}
			perSec(b, int64(b.N*bs))
		})
	}
	b.Run("square", func(b *testing.B) {
		spec := mustParse(b, "square-100")[0]
		a := newAttacker(c, 1e-6, false, 1)
		a.aid = attackID(spec.Name)
		fooled := make([]bool, n)
		a.queries = 0
		startClock()
		for range b.N {
			if err := a.squareSet(context.Background(), &spec, data.X, y, set, fooled, nil); err != nil {
				b.Fatal(err)
			}
		}
		perSec(b, a.queries)
		if broke := count(fooled); broke != 0 {
			b.Fatalf("%d samples broken: not every query is a full batch", broke)
		}
		if want := int64(b.N) * n * (queries + 1); a.queries != want {
			b.Fatalf("%d queries, want %d", a.queries, want)
		}
	})
}

// cpuTime is the CPU time (user and system) of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
