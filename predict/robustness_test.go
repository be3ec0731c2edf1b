package predict

import (
	"context"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestRobustnessAutoAttack: Robustness derives the heads FAB-T and Square
// need and runs the AutoAttack cascade, for both norms, with its summary.
func TestRobustnessAutoAttack(t *testing.T) {
	forward, err := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	test := dataset.Synthetic(24, 1, 8, 8, 4, 9)
	for _, tc := range []struct {
		list, norm string
		eps        float32
	}{{"autoattack", eval.NormLinf, 0.05}, {"autoattack", eval.NormL2, 0.5}, {"fab-t-20,square-200", eval.NormLinf, 0.002}, {"fab-t-20,square-200", eval.NormL2, 0.02}} {
		t.Run(tc.list+"/"+tc.norm, func(t *testing.T) {
			attacks, err := eval.ParseAttacks(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Robustness(context.Background(), forward, test.X, test.Y,
				eval.Config{Eps: tc.eps, Norm: tc.norm, Attacks: attacks, Seed: 1},
				EvalOptions{Batch: 8, Runtime: ort.Options{Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", rep.Table())
			if tc.list != "autoattack" {
				for _, a := range rep.Attacks {
					if a.Attacked == 0 || a.Queries == 0 {
						t.Errorf("%s attacked %d samples with %d queries", a.Name, a.Attacked, a.Queries)
					}
				}
				if rep.AutoAttack != nil {
					t.Errorf("autoattack block without the cascade: %+v", rep.AutoAttack)
				}
				return
			}
			if rep.Attacks[0].Attacked == 0 {
				t.Fatal("no sample is correct clean; the test attacks nothing")
			}
			var names []string
			for _, a := range rep.Attacks {
				names = append(names, a.Name)
			}
			if got := strings.Join(names, ","); got != eval.AutoAttackNames {
				t.Errorf("attacks %s, want %s", got, eval.AutoAttackNames)
			}
			aa := rep.AutoAttack
			if aa == nil || aa.N != 24 || aa.Robust != rep.WorstRobust || aa.CleanAcc != 100*rep.Clean {
				t.Fatalf("autoattack block %+v for report %+v", aa, rep)
			}
			if want := map[string]string{eval.NormLinf: "Linf", eval.NormL2: "L2"}[tc.norm]; aa.ThreatModel != want {
				t.Errorf("threat model %q, want %q", aa.ThreatModel, want)
			}
		})
	}
	plus, err := eval.ParseAttacks("autoattack-plus")
	if err == nil || !strings.Contains(err.Error(), "not implemented") {
		t.Errorf("autoattack-plus: %v, %v; want an error saying it is not implemented", plus, err)
	}
}
