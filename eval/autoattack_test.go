package eval

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestAutoAttackMatchesClosedForm runs the AutoAttack cascade on the linear
// model and compares every sample's verdict with the exact one (L∞: the
// closed form; L2: the smallest adversarial perturbation, by bisection) at
// several radii. Samples within float32 rounding of the boundary are left
// out. The per-sample verdicts come from running the cascade attack by
// attack; Evaluate must count the same robust samples.
func TestAutoAttackMatchesClosedForm(t *testing.T) {
	ten, _ := tasks()
	const n = 100
	tk := task{m: ten.m, x: ten.x[:n*imgD], y: ten.y[:n]}
	c := tk.m.classifier(t, 32)
	specs := mustParse(t, "autoattack")
	for _, tc := range []struct {
		norm string
		eps  float32
	}{{NormLinf, 0.03}, {NormLinf, 0.08}, {NormLinf, 0.15}, {NormL2, 0.3}, {NormL2, 0.8}} {
		t.Run(fmt.Sprintf("%s/%v", tc.norm, tc.eps), func(t *testing.T) {
			l2 := tc.norm == NormL2
			a := newAttacker(c, tc.eps, l2, 5)
			robust := make([]bool, n)
			for i := range n {
				robust[i] = correctRef(tk.m.logits64(to64(tk.x[i*imgD:(i+1)*imgD])), int(tk.y[i]))
			}
			var perAttack []string
			for k := range specs {
				var set []int
				for i := range n {
					if robust[i] {
						set = append(set, i)
					}
				}
				fooled := make([]bool, n)
				if err := a.attackSet(t.Context(), &specs[k], tk.x, tk.y, set, fooled, nil); err != nil {
					t.Fatal(err)
				}
				broke := 0
				for _, i := range set {
					if fooled[i] {
						robust[i] = false
						broke++
					}
				}
				perAttack = append(perAttack, fmt.Sprintf("%s broke %d", specs[k].Name, broke))
			}
			wrong, border, exactRobust := 0, 0, 0
			for i := range n {
				x, y := tk.x[i*imgD:(i+1)*imgD], int(tk.y[i])
				var isRobust bool
				var dist float64 // distance of the verdict from the boundary
				if !l2 {
					m := exactLinf(tk.m, x, y, float64(tc.eps))
					isRobust, dist = m < 0, math.Abs(m)
				} else {
					mn := math.Inf(1)
					for j := range tk.m.K {
						if j != y {
							mn = math.Min(mn, exactMinNorm(tk.m, x, y, j, true))
						}
					}
					isRobust, dist = mn > float64(tc.eps), math.Abs(mn-float64(tc.eps))
				}
				if isRobust {
					exactRobust++
				}
				if dist < 1e-4 {
					border++
					continue
				}
				if robust[i] != isRobust {
					wrong++
					t.Errorf("sample %d: AutoAttack says robust=%v, exact %v (distance from the boundary %.3g)", i, robust[i], isRobust, dist)
				}
			}
			got := 0
			for _, r := range robust {
				if r {
					got++
				}
			}
			rep := evaluate(t, c, tk, Config{Eps: tc.eps, Norm: tc.norm, Attacks: specs, Seed: 5})
			if rep.WorstRobust != got || rep.AutoAttack == nil || rep.AutoAttack.Robust != got {
				t.Errorf("Evaluate counts %d robust (summary %+v), the cascade %d", rep.WorstRobust, rep.AutoAttack, got)
			}
			if exactRobust == 0 || exactRobust == n {
				t.Errorf("exact robust %d of %d: pick a radius where the verdicts vary", exactRobust, n)
			}
			t.Logf("exact robust %d/%d (%d borderline), AutoAttack %d; %s", exactRobust, n, border, got, strings.Join(perAttack, ", "))
		})
	}
}

// TestAutoAttackReport: the cascade in a report: each AutoAttack attack
// runs on the samples the earlier ones left robust (also without
// Config.Cascade), its accuracy is cumulative, Broke and Attacked add up,
// and the summary block carries what a RobustBench entry needs.
func TestAutoAttackReport(t *testing.T) {
	ten, _ := tasks()
	tk := task{m: ten.m, x: ten.x[:64*imgD], y: ten.y[:64]}
	c := tk.m.classifier(t, 32)
	eps := float32(8.0 / 255)
	rep := evaluate(t, c, tk, Config{Eps: eps, Attacks: mustParse(t, "fgsm,autoattack-standard"), Seed: 1})
	if len(rep.Attacks) != 5 {
		t.Fatalf("%d attacks", len(rep.Attacks))
	}
	prev := rep.Attacks[0]
	if prev.Attacked != rep.CleanCorrect {
		t.Errorf("fgsm (not in the cascade) attacked %d, want every clean-correct sample %d", prev.Attacked, rep.CleanCorrect)
	}
	for _, a := range rep.Attacks[1:] {
		if a.AutoAttack != AAStandard {
			t.Errorf("%s not marked as AutoAttack's", a.Name)
		}
		if a.Attacked != prev.Robust {
			t.Errorf("%s attacked %d samples; the previous attack left %d robust", a.Name, a.Attacked, prev.Robust)
		}
		if a.Robust != a.Attacked-a.Broke || a.Accuracy != a.Cumulative {
			t.Errorf("%s: robust %d, attacked %d, broke %d, accuracy %v, cumulative %v", a.Name, a.Robust, a.Attacked, a.Broke, a.Accuracy, a.Cumulative)
		}
		if a.Attacked > 0 && a.Queries < int64(a.Attacked) {
			t.Errorf("%s: %d queries for %d samples", a.Name, a.Queries, a.Attacked)
		}
		prev = a
	}
	aa := rep.AutoAttack
	if aa == nil {
		t.Fatal("no autoattack block")
	}
	want := AutoAttackSummary{Version: "standard", ThreatModel: "Linf", Eps: eps, EpsFraction: "8/255", N: 64, Seed: 1,
		CleanAcc: 100 * rep.Clean, AutoAttackAcc: 100 * rep.WorstCase, Robust: rep.WorstRobust, PrecededBy: []string{"fgsm"}}
	got := *aa
	got.Attacks = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summary %+v, want %+v", got, want)
	}
	if len(aa.Attacks) != 4 || !strings.HasPrefix(aa.Attacks[2], "fab-t (100 iterations × 9 targets, 1 restarts, α_max 0.1, η 1.05, β 0.9") ||
		!strings.HasPrefix(aa.Attacks[3], "square (5000 queries, 1 restarts, p_init 0.8") {
		t.Errorf("attacks %q", aa.Attacks)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"autoattack":{"version":"standard","threat_model":"Linf"`, `"clean_acc":`, `"autoattack_acc":`, `"broke":`, `"queries":`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("report JSON lacks %s", key)
		}
	}
	tab := rep.Table()
	if !strings.Contains(tab, "AutoAttack (standard, Linf, ε = 8/255, n = 64)") || !strings.Contains(tab, "square (aa)") {
		t.Errorf("table:\n%s", tab)
	}
	t.Logf("\n%s", tab)
	// Without AutoAttack attacks there is no block.
	if r := evaluate(t, c, tk, Config{Eps: eps, Attacks: mustParse(t, "fgsm"), Seed: 1}); r.AutoAttack != nil {
		t.Errorf("autoattack block without AutoAttack: %+v", r.AutoAttack)
	}
}
