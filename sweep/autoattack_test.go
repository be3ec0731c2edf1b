package sweep

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestEvaluatorAutoAttack: a sweep's --attacks autoattack evaluates a
// checkpoint with AutoAttack's cascade, and its plus version is refused.
func TestEvaluatorAutoAttack(t *testing.T) {
	m, err := zoo.Build("mlp", zoo.Config{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	f, err := NewEvaluator(EvalSpec{Data: "synthetic:1x8x8", Attacks: "autoattack", N: 16, Batch: 8}, ort.Options{Threads: 1}, CacheData(dataset.Open))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f(context.Background(), Cell{Name: "c", Method: "fgsm", Eps: "0.05", Seed: 1}, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AutoAttack == nil || len(rep.Attacks) != 4 || rep.Attacks[2].Name != "fab-t" || rep.Attacks[3].Name != "square" {
		t.Fatalf("report %+v", rep)
	}
	if rep.Attacks[0].Attacked == 0 {
		t.Fatal("no sample is correct clean; the test attacks nothing")
	}
	for _, a := range rep.Attacks {
		if a.AutoAttack != eval.AAStandard {
			t.Errorf("%s is not part of the cascade", a.Name)
		}
	}
	if _, err := NewEvaluator(EvalSpec{Data: "synthetic:1x8x8", Attacks: "autoattack-plus", N: 16, Batch: 8}, ort.Options{}, CacheData(dataset.Open)); err == nil || !strings.Contains(err.Error(), "not implemented") {
		t.Errorf("autoattack-plus: %v", err)
	}
}
