package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestBench runs slatrun bench on the small mlp model and checks its JSON
// lines: one per method, a positive step time split into ONNX Runtime and
// Go time, the passes each method makes, and no allocations in the step.
func TestBench(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--model", "mlp", "--methods", "standard,fgsm-rs,slat,pgd-3",
		"--batch", "16", "--steps", "3", "--warmup", "2", "--threads", "1", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := map[string][2]float64{"standard": {0, 1}, "fgsm-rs": {1, 1}, "slat": {1, 1}, "pgd-3": {3, 1}}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for _, l := range lines {
		var r benchResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		w, ok := want[r.Method]
		if !ok || r.Side != "slatrun" || r.Steps != 3 || r.Batch != 16 {
			t.Errorf("unexpected line %s", l)
			continue
		}
		if r.AttackPasses != w[0] || r.TrainPasses != w[1] {
			t.Errorf("%s: %g attack and %g train passes per step, want %g and %g", r.Method, r.AttackPasses, r.TrainPasses, w[0], w[1])
		}
		if !(r.MedianMs > 0) || r.TrainMs <= 0 || r.GoMs < 0 || r.TrainMs+r.AttackMs > r.MedianMs*1.5 {
			t.Errorf("%s: implausible times %s", r.Method, l)
		}
		if r.AllocsStep != 0 {
			t.Errorf("%s: %g allocations per step, want 0", r.Method, r.AllocsStep)
		}
	}
	code = run([]string{"bench", "--model", "mlp", "--steps", "0"}, &out, &errb)
	if code != 2 {
		t.Errorf("--steps 0: exit %d, want 2 (usage)", code)
	}
}
