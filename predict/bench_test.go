package predict

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/onnx/ort"
)

// BenchmarkPredict compares the two designs under concurrent single-image
// requests: clients goroutines each send b.N/clients requests. ns/op is
// wall time per request (its inverse the throughput); p50-µs and p99-µs are
// request latencies; rows/run is how full the runs were.
//
//	go test -run - -bench Predict -benchtime 1000x ./predict/
func BenchmarkPredict(b *testing.B) {
	type design struct {
		name string
		opts Options
	}
	designs := []design{
		{"pool-b1-s2", Options{Mode: Pool, Sessions: 2}},             // the default on 2 CPUs
		{"pool-b16-s2", Options{Mode: Pool, Batch: 16, Sessions: 2}}, // pays for 15 padded rows
		{"micro-b16-s1-t2", Options{Mode: MicroBatch, Sessions: 1, Runtime: ort.Options{Threads: 2}}},
		{"micro-ladder-b16-s1-t2", Options{Mode: MicroBatch, Sessions: 1, Ladder: true, Runtime: ort.Options{Threads: 2}}},
		{"micro-ladder-b16-s2", Options{Mode: MicroBatch, Sessions: 2, Ladder: true}},
	}
	for _, mc := range []struct {
		name string
		side int
	}{{"mlp", 8}, {"convnet", 28}} {
		m := model(b, mc.name, 0)
		x := dataset.Synthetic(1, 1, mc.side, mc.side, classes, 1).X
		for _, clients := range []int{1, 8, 64} {
			for _, d := range designs {
				b.Run(fmt.Sprintf("%s/c%d/%s", mc.name, clients, d.name), func(b *testing.B) {
					p, err := New(m, d.opts)
					if err != nil {
						b.Fatal(err)
					}
					defer p.Close()
					lat := make([][]time.Duration, clients)
					var wg sync.WaitGroup
					b.ResetTimer()
					for c := range clients {
						n := b.N / clients
						if c < b.N%clients {
							n++
						}
						wg.Go(func() {
							ls := make([]time.Duration, 0, n)
							for range n {
								t0 := time.Now()
								if _, _, err := p.Predict(context.Background(), x, 1); err != nil {
									b.Error(err)
									return
								}
								ls = append(ls, time.Since(t0))
							}
							lat[c] = ls
						})
					}
					wg.Wait()
					b.StopTimer()
					all := slices.Concat(lat...)
					slices.Sort(all)
					if len(all) > 0 {
						b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
						b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
					}
					st := p.Stats()
					b.ReportMetric(float64(st.Rows)/float64(max(st.Runs, 1)), "rows/run")
				})
			}
		}
	}
}
