package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBenchReport checks the report phase of slatrun bench on made-up
// measurements: the summary of each method and the text table.
func TestBenchReport(t *testing.T) {
	rep := benchReport{model: "mlp", batch: 8, threads: 2, steps: 4, warmup: 1, spinning: true, optLevel: "all", nchwc: 8, ort: "1.2.3"}
	for _, c := range []struct {
		name string
		m    benchMethod
		want benchResult
	}{
		{"attack", benchMethod{name: "pgd-2", total: []float64{40, 10, 30, 20}, attack: []float64{4, 4, 4, 4}, train: []float64{5, 5, 5, 5},
			goSide: []float64{1, 2, 3, 4}, cpu: []float64{50, 50, 50, 50}, attackPasses: 8, trainPasses: 4, mallocs: 2, faults: 6, measured: 4},
			benchResult{Side: "slatrun", Model: "mlp", Method: "pgd-2", Batch: 8, Threads: 2, MedianMs: 25, P10Ms: 13, P90Ms: 37, MinMs: 10,
				ImagesPerS: 320, Steps: 4, Warmup: 1, CPUMedianMs: 50, AttackMs: 4, AttackPasses: 2, AttackPassMs: 2, TrainMs: 5, TrainPasses: 1,
				GoMs: 2.5, GoPct: 10, AllocsStep: 0.5, FaultsStep: 1.5, Spinning: true, NCHWc: 8, OptLevel: "all", ORT: "1.2.3"}},
		{"no attack", benchMethod{name: "standard", total: []float64{3}, attack: []float64{0}, train: []float64{2},
			goSide: []float64{1}, cpu: []float64{6}, trainPasses: 1, measured: 1},
			benchResult{Side: "slatrun", Model: "mlp", Method: "standard", Batch: 8, Threads: 2, MedianMs: 3, P10Ms: 3, P90Ms: 3, MinMs: 3,
				ImagesPerS: 2666.667, Steps: 1, Warmup: 1, CPUMedianMs: 6, TrainMs: 2, TrainPasses: 1,
				GoMs: 1, GoPct: 33.333, Spinning: true, NCHWc: 8, OptLevel: "all", ORT: "1.2.3"}},
	} {
		got := rep.results([]*benchMethod{&c.m})
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s:\ngot  %+v\nwant %+v", c.name, got, c.want)
		}
	}

	var b bytes.Buffer
	results := rep.results([]*benchMethod{{name: "standard", total: []float64{3}, attack: []float64{0}, train: []float64{2},
		goSide: []float64{1}, cpu: []float64{6}, trainPasses: 1, measured: 1}})
	if err := rep.writeTable(&b, results); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"# slatrun bench: mlp, batch 8, threads 2, spinning true, opt level all, 4 steps after 1 warm-up, onnxruntime 1.2.3",
		"    method  median_ms  p10_ms  p90_ms  cpu_ms  images/s  attack_ms  (passes)  train_ms  go_ms   go_%  allocs/step  faults/step",
		"  standard        3.0     3.0     3.0     6.0    2666.7        0.0         0       2.0   1.00  33.33            0            0",
		""}, "\n")
	if b.String() != want {
		t.Errorf("table:\n%q\nwant:\n%q", b.String(), want)
	}
}
