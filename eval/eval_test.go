package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// mustParse parses an attack list or fails the test.
func mustParse(t testing.TB, list string) []AttackSpec {
	t.Helper()
	specs, err := ParseAttacks(list)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// attacksFor lists the attacks a task's classifier supports.
func attacksFor(tk task) string {
	if tk.m.K >= 4 {
		return StandardAttacks + ",pgd-20,apgd-dlr,fgsm-cw"
	}
	return "fgsm,fgsm-cw,pgd-20,pgd-cw-20,pgd-50-10,apgd-ce,apgd-cw"
}

// evaluate runs Evaluate or fails the test.
func evaluate(t testing.TB, c *Classifier, tk task, cfg Config) *Report {
	t.Helper()
	r, err := Evaluate(context.Background(), c, tk.x, tk.y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// verdicts runs one attack on every sample of tk and returns, per sample,
// whether it was fooled.
func verdicts(t testing.TB, c *Classifier, tk task, spec AttackSpec, eps float32, norm string, seed uint64) []bool {
	t.Helper()
	a := newAttacker(c, eps, norm == NormL2, seed)
	all := make([]int, len(tk.y))
	for i := range all {
		all[i] = i
	}
	fooled := make([]bool, len(tk.y))
	if err := a.attackSet(context.Background(), &spec, tk.x, tk.y, all, fooled, nil); err != nil {
		t.Fatal(err)
	}
	return fooled
}

func TestEpsZeroLeavesCleanAccuracy(t *testing.T) {
	ten, two := tasks()
	for _, tk := range []task{ten, two} {
		t.Run(fmt.Sprintf("K=%d", tk.m.K), func(t *testing.T) {
			c := tk.m.classifier(t, 32)
			for _, norm := range []string{NormLinf, NormL2} {
				r := evaluate(t, c, tk, Config{Eps: 0, Norm: norm, Attacks: mustParse(t, attacksFor(tk)), Seed: 1})
				if want := tk.cleanAcc(); r.Clean != want {
					t.Fatalf("clean accuracy %v, float64 reference %v", r.Clean, want)
				}
				for _, a := range r.Attacks {
					if a.Robust != r.CleanCorrect {
						t.Errorf("%s %s at ε = 0: %d robust, clean correct %d", norm, a.Name, a.Robust, r.CleanCorrect)
					}
				}
				if r.WorstRobust != r.CleanCorrect {
					t.Errorf("%s worst case at ε = 0: %d, clean correct %d", norm, r.WorstRobust, r.CleanCorrect)
				}
			}
		})
	}
}

func TestAccuracyNeverIncreasesWithEps(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	cases := []struct {
		norm string
		eps  []float32
	}{
		{NormLinf, []float32{0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3}},
		{NormL2, []float32{0, 0.1, 0.25, 0.5, 0.75, 1, 1.5}},
	}
	for _, tc := range cases {
		t.Run(tc.norm, func(t *testing.T) {
			specs := mustParse(t, attacksFor(ten))
			prev := map[string]int{}
			var rows []string
			for i, eps := range tc.eps {
				r := evaluate(t, c, ten, Config{Eps: eps, Norm: tc.norm, Attacks: specs, Seed: 5})
				row := fmt.Sprintf("ε=%-5g", eps)
				for _, a := range r.Attacks {
					if i > 0 && a.Robust > prev[a.Name] {
						t.Errorf("%s: %d robust at ε = %v, %d at ε = %v", a.Name, a.Robust, eps, prev[a.Name], tc.eps[i-1])
					}
					prev[a.Name] = a.Robust
					row += fmt.Sprintf(" %s %5.1f%%", a.Name, 100*a.Accuracy)
				}
				if i > 0 && r.WorstRobust > prev["worst"] {
					t.Errorf("worst case: %d robust at ε = %v, %d at ε = %v", r.WorstRobust, eps, prev["worst"], tc.eps[i-1])
				}
				prev["worst"] = r.WorstRobust
				rows = append(rows, row+fmt.Sprintf(" worst %5.1f%%", 100*r.WorstCase))
			}
			t.Log("\n" + strings.Join(rows, "\n"))
		})
	}
}

// TestAttackStrength checks the expected order of the attacks on the same
// 1000 samples: PGD-50-10 is at least as strong as FGSM and PGD-20; PGD-20
// as FGSM and APGD-CE as PGD-20 up to 1% of the samples; the worst case is
// no higher than any attack.
//
// The tolerances are needed: on a linear model the CE loss is convex in x,
// so FGSM, PGD and APGD-CE all end near the same CE maximum (a vertex of the
// box; APGD-CE and PGD-20 agree to 0.5% in loss), and which single run
// passes a misclassified point on its way is chance. Over seeds 1–6 APGD-CE
// and PGD-20 differ by at most 5 of 1000 samples either way.
func TestAttackStrength(t *testing.T) {
	tasks()
	big := task10big
	c := big.m.classifier(t, 32)
	for _, eps := range []float32{0.03, 0.05, 0.1, 0.15} {
		r := evaluate(t, c, big, Config{Eps: eps, Attacks: mustParse(t, "fgsm,pgd-20,pgd-50-10,apgd-ce,apgd-t"), Seed: 2})
		acc := map[string]int{}
		for _, a := range r.Attacks {
			acc[a.Name] = a.Robust
			if r.WorstRobust > a.Robust {
				t.Errorf("ε = %v: worst case %d above %s's %d", eps, r.WorstRobust, a.Name, a.Robust)
			}
		}
		if acc["pgd-50-10"] > acc["fgsm"] {
			t.Errorf("ε = %v: PGD-50-10 leaves %d robust, FGSM %d", eps, acc["pgd-50-10"], acc["fgsm"])
		}
		if acc["pgd-50-10"] > acc["pgd-20"] {
			t.Errorf("ε = %v: PGD-50-10 leaves %d robust, PGD-20 %d", eps, acc["pgd-50-10"], acc["pgd-20"])
		}
		if tol := r.N / 100; acc["pgd-20"] > acc["fgsm"]+tol {
			t.Errorf("ε = %v: PGD-20 leaves %d robust, FGSM %d (tolerance %d)", eps, acc["pgd-20"], acc["fgsm"], tol)
		}
		if tol := r.N / 100; acc["apgd-ce"] > acc["pgd-20"]+tol {
			t.Errorf("ε = %v: APGD-CE leaves %d robust, PGD-20 %d (tolerance %d)", eps, acc["apgd-ce"], acc["pgd-20"], tol)
		}
		t.Logf("ε = %v\n%s", eps, r.Table())
	}
}

// TestClosedFormLinf compares the attacks with the exact L∞ robustness of
// the linear models (see exactLinf). For two classes the CW margin is linear
// in x, so one signed step of ε (FGSM-CW) and PGD reach the optimum exactly
// and must agree with the closed form on every sample. For ten classes no
// attack may fool a sample the closed form proves robust, and the worst case
// of the standard attacks must reach the exact robust accuracy.
func TestClosedFormLinf(t *testing.T) {
	ten, two := tasks()
	const border = 1e-4 // margins this close to 0 are left to float32 rounding
	type sample struct {
		margin float64
	}
	exact := func(tk task, eps float32) (margins []float64, robust, borderline int) {
		for i := range tk.y {
			m := exactLinf(tk.m, tk.x[i*imgD:(i+1)*imgD], int(tk.y[i]), float64(eps))
			margins = append(margins, m)
			if m < 0 {
				robust++
			}
			if math.Abs(m) < border {
				borderline++
			}
		}
		return margins, robust, borderline
	}
	t.Run("K=2", func(t *testing.T) {
		c := two.m.classifier(t, 32)
		for _, eps := range []float32{0.02, 0.05, 0.1, 0.15, 0.2} {
			margins, robust, borderline := exact(two, eps)
			for _, spec := range mustParse(t, "fgsm-cw,pgd-cw-20,pgd-20,apgd-cw,apgd-ce") {
				fooled := verdicts(t, c, two, spec, eps, NormLinf, 9)
				wrong := 0
				for i, m := range margins {
					if math.Abs(m) >= border && fooled[i] != (m >= 0) {
						wrong++
					}
				}
				if wrong > 0 {
					t.Errorf("ε = %v: %s disagrees with the closed form on %d samples", eps, spec.Name, wrong)
				}
			}
			t.Logf("ε = %v: exact robust accuracy %d/%d (%d borderline); every attack matches", eps, robust, len(margins), borderline)
		}
	})
	t.Run("K=10", func(t *testing.T) {
		c := ten.m.classifier(t, 32)
		specs := mustParse(t, StandardAttacks)
		for _, eps := range []float32{0.02, 0.05, 0.1, 0.15, 0.2} {
			margins, robust, borderline := exact(ten, eps)
			worst := make([]bool, len(margins))
			var line []string
			for _, spec := range specs {
				fooled := verdicts(t, c, ten, spec, eps, NormLinf, 9)
				n := 0
				for i, m := range margins {
					if fooled[i] && m < -border {
						t.Errorf("ε = %v: %s fooled sample %d, which is provably robust (margin %.3g)", eps, spec.Name, i, m)
					}
					worst[i] = worst[i] || fooled[i]
					if !fooled[i] {
						n++
					}
				}
				line = append(line, fmt.Sprintf("%s %d", spec.Name, n))
				if spec.Name == "apgd-t" || spec.Name == "pgd-cw-50-10" {
					if tol := len(margins) / 100; n > robust+borderline+tol {
						t.Errorf("ε = %v: %s leaves %d robust, exact %d (tolerance %d)", eps, spec.Name, n, robust, tol)
					}
				}
			}
			missed := 0
			for i, m := range margins {
				if m >= border && !worst[i] {
					missed++
				}
			}
			if missed > 0 {
				t.Errorf("ε = %v: the standard attacks miss %d samples that the closed form breaks", eps, missed)
			}
			t.Logf("ε = %v: exact %d/%d (%d borderline); %s", eps, robust, len(margins), borderline, strings.Join(line, ", "))
		}
	})
}

// TestPerturbationsStayInBall checks every point every attack evaluates:
// inside the ε-ball around x (exactly for L∞, to float32 rounding for L2)
// and inside [0,1].
func TestPerturbationsStayInBall(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	for _, tc := range []struct {
		norm string
		eps  float32
	}{{NormLinf, 0.1}, {NormLinf, 0.3}, {NormLinf, 1.5}, {NormL2, 0.5}, {NormL2, 2}} {
		t.Run(fmt.Sprintf("%s/%v", tc.norm, tc.eps), func(t *testing.T) {
			points, bad := 0, 0
			c.setPointHook(func(a *attacker) {
				for r := range a.b {
					x0, xa := a.x0[r*a.d:(r+1)*a.d], a.xa[r*a.d:(r+1)*a.d]
					points++
					n2, ninf := 0.0, 0.0
					for i := range xa {
						if !(xa[i] >= 0 && xa[i] <= 1) {
							bad++
							t.Errorf("pixel %v outside [0,1]", xa[i])
							return
						}
						d := math.Abs(float64(xa[i]) - float64(x0[i]))
						n2 += d * d
						ninf = math.Max(ninf, d)
					}
					if tc.norm == NormLinf && ninf > float64(tc.eps) {
						bad++
						t.Errorf("‖δ‖∞ = %v > ε = %v", ninf, tc.eps)
					}
					if tc.norm == NormL2 && math.Sqrt(n2) > float64(tc.eps)*(1+1e-6) {
						bad++
						t.Errorf("‖δ‖₂ = %v > ε = %v", math.Sqrt(n2), tc.eps)
					}
					if bad > 5 {
						t.FailNow()
					}
				}
			})
			defer c.setPointHook(nil)
			evaluate(t, c, ten, Config{Eps: tc.eps, Norm: tc.norm, Attacks: mustParse(t, attacksFor(ten)), Seed: 4})
			if points == 0 {
				t.Fatal("the hook saw no points")
			}
			t.Logf("%d points checked", points)
		})
	}
}

// TestDeterminism: the same seed gives the same report; a sample's verdict
// does not depend on the batch size (padding included) or on the cascade.
func TestDeterminism(t *testing.T) {
	ten, _ := tasks()
	specs := mustParse(t, StandardAttacks+",fgsm-cw,apgd-dlr")
	cfg := Config{Eps: 0.1, Attacks: specs, Seed: 11, Linearity: true}
	c := ten.m.classifier(t, 32)
	a, b := evaluate(t, c, ten, cfg), evaluate(t, c, ten, cfg)
	if ja, jb := reportJSON(t, a), reportJSON(t, b); ja != jb {
		t.Fatalf("same seed, different reports:\n%s\n%s", ja, jb)
	}
	other := evaluate(t, ten.m.classifier(t, 13), ten, cfg)
	if sa, so := summaryNoRuns(a), summaryNoRuns(other); sa != so {
		t.Fatalf("batch 32: %s\nbatch 13: %s", sa, so)
	}
	cfg.Cascade = true
	cas := evaluate(t, c, ten, cfg)
	if cas.WorstRobust != a.WorstRobust {
		t.Fatalf("cascade worst case %d, independent %d", cas.WorstRobust, a.WorstRobust)
	}
	for i, r := range cas.Attacks {
		if r.Accuracy != r.Cumulative || r.Accuracy != a.Attacks[i].Cumulative {
			t.Fatalf("cascade %s: accuracy %v cumulative %v; independent cumulative %v", r.Name, r.Accuracy, r.Cumulative, a.Attacks[i].Cumulative)
		}
	}
	if cas.Attacks[len(cas.Attacks)-1].Attacked >= a.Attacks[len(a.Attacks)-1].Attacked {
		t.Fatal("the cascade attacked as many samples as the independent run")
	}
	cfg.Cascade, cfg.Seed = false, 12
	if reportJSON(t, evaluate(t, c, ten, cfg)) == reportJSON(t, a) {
		t.Log("note: seeds 11 and 12 gave identical reports (possible on an easy model)")
	}
}

// reportJSON marshals a report without its timings.
func reportJSON(t testing.TB, r *Report) string {
	t.Helper()
	c := *r
	c.Seconds, c.CleanSeconds = 0, 0
	c.Attacks = append([]AttackResult(nil), r.Attacks...)
	for i := range c.Attacks {
		c.Attacks[i].Seconds = 0
	}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// summaryNoRuns prints the verdict counts only (runs depend on the batch).
func summaryNoRuns(r *Report) string {
	s := fmt.Sprintf("clean %d", r.CleanCorrect)
	for _, a := range r.Attacks {
		s += fmt.Sprintf(", %s %d", a.Name, a.Robust)
	}
	lin := 0.0
	if r.LocalLinearity != nil {
		lin = *r.LocalLinearity
	}
	return s + fmt.Sprintf(", worst %d, linearity %.6f", r.WorstRobust, lin)
}

func TestCancel(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	cfg := Config{Eps: 0.1, Attacks: mustParse(t, "pgd-50-10"), Progress: func(name string, done, total int) {
		if name == "pgd-50-10" {
			calls++
			cancel()
		}
	}}
	_, err := Evaluate(ctx, c, ten.x, ten.y, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Fatalf("%d batches ran after the cancel", calls-1)
	}
	if _, err := Evaluate(ctx, c, ten.x, ten.y, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before the start: err = %v", err)
	}

	// Within an attack: the run after the cancel is the last.
	for _, name := range []string{"pgd-50-10", "apgd-ce", "apgd-t"} {
		ctx, cancel = context.WithCancel(context.Background())
		points := 0
		c.setPointHook(func(*attacker) {
			if points++; points == 7 {
				cancel()
			}
		})
		_, err = Evaluate(ctx, c, ten.x, ten.y, Config{Eps: 0.1, Attacks: mustParse(t, name)})
		c.setPointHook(nil)
		if !errors.Is(err, context.Canceled) || points != 7 {
			t.Fatalf("%s: err = %v after %d runs, want context.Canceled after 7", name, err, points)
		}
	}
	c.Close()
	if _, err := Evaluate(context.Background(), c, ten.x, ten.y, cfg); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Evaluate after Close: err = %v", err)
	}
}

// TestAttackLoopsDoNotAllocate runs every attack kind on a loaded batch.
func TestAttackLoopsDoNotAllocate(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	ctx := context.Background()
	rows := make([]int, 20) // a partial batch: padding too
	for i := range rows {
		rows[i] = i
	}
	for _, norm := range []string{NormLinf, NormL2} {
		for _, spec := range mustParse(t, "fgsm,pgd-10-2,apgd-ce-10,apgd-t-10,fab-t-10") {
			a := newAttacker(c, 0.05, norm == NormL2, 1)
			a.aid = attackID(spec.Name)
			a.load(ten.x, ten.y, rows)
			if err := a.attack(ctx, &spec); err != nil { // makes the session
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(3, func() {
				a.load(ten.x, ten.y, rows)
				if err := a.attack(ctx, &spec); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s %s allocates %v times per batch", norm, spec.Name, allocs)
			}
		}
	}
}

// TestLocalLinearity checks the probe against a float64 computation with the
// same noise: ∇x CE = Wᵀ(softmax(z) − onehot(y)) for the linear model.
func TestLocalLinearity(t *testing.T) {
	ten, two := tasks()
	for _, tk := range []task{ten, two} {
		c := tk.m.classifier(t, 32)
		for _, eps := range []float32{0, 0.05, 0.3, 1} {
			got, err := LocalLinearity(context.Background(), c, tk.x, tk.y, eps, 3)
			if err != nil {
				t.Fatal(err)
			}
			want := linearityRef(tk, eps, 3)
			if math.Abs(got-want) > 1e-4 {
				t.Errorf("K=%d ε=%v: %v, float64 reference %v", tk.m.K, eps, got, want)
			}
			if eps == 0 && math.Abs(got-1) > 1e-6 {
				t.Errorf("K=%d: at ε = 0 the cosine is %v, want 1", tk.m.K, got)
			}
			t.Logf("K=%d ε=%v: local linearity %.5f", tk.m.K, eps, got)
		}
	}
	if _, err := LocalLinearity(context.Background(), two.m.classifier(t, 32), two.x[:imgD], two.y[:2], 0.1, 1); err == nil {
		t.Error("mismatched x and y accepted")
	}
}

func linearityRef(tk task, eps float32, seed uint64) float64 {
	m := tk.m
	grad := func(x []float64, y int) []float64 {
		z := m.logits64(x)
		mx := math.Inf(-1)
		for _, v := range z {
			mx = math.Max(mx, v)
		}
		s := 0.0
		for j := range z {
			z[j] = math.Exp(z[j] - mx)
			s += z[j]
		}
		for j := range z {
			z[j] /= s
		}
		z[y]--
		g := make([]float64, imgD)
		for i := range g {
			for j := range z {
				g[i] += float64(m.W[i*m.K+j]) * z[j]
			}
		}
		return g
	}
	sum, used := 0.0, 0
	for i := range tk.y {
		x := tk.x[i*imgD : (i+1)*imgD]
		rg := stream(seed, linearityID, i, 0)
		xu := make([]float64, imgD)
		for k, v := range x {
			xu[k] = float64(v + eps*rg.sym())
		}
		g1, g2 := grad(to64(x), int(tk.y[i])), grad(xu, int(tk.y[i]))
		dot, n1, n2 := 0.0, 0.0, 0.0
		for k := range g1 {
			dot, n1, n2 = dot+g1[k]*g2[k], n1+g1[k]*g1[k], n2+g2[k]*g2[k]
		}
		if n1 > 0 && n2 > 0 {
			sum += dot / math.Sqrt(n1*n2)
			used++
		}
	}
	return sum / float64(used)
}

func TestReportJSONAndTable(t *testing.T) {
	ten, _ := tasks()
	c := ten.m.classifier(t, 32)
	r := evaluate(t, c, ten, Config{Eps: 0.1, Attacks: mustParse(t, StandardAttacks), Seed: 7, N: 100, Linearity: true})
	if r.N != 100 {
		t.Fatalf("N = %d, want 100", r.N)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(reportJSON(t, r)), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"eps", "norm", "n", "batch", "seed", "cascade", "clean", "attacks", "worst_case", "local_linearity"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
	att := m["attacks"].([]any)[3].(map[string]any)
	for _, k := range []string{"name", "kind", "loss", "steps", "restarts", "step", "random_start", "accuracy", "cumulative", "attacked", "robust", "runs", "seconds"} {
		if _, ok := att[k]; !ok {
			t.Errorf("attack JSON has no %q", k)
		}
	}
	tab := r.Table()
	for _, want := range []string{"ε = 0.1 (L∞)", "clean", "pgd-50-10", "50 × 10 restarts", "ε/4", "apgd-t", "100 × 9 targets", "worst case", "local linearity"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	t.Log("\n" + tab)
}

func TestEvaluateErrors(t *testing.T) {
	ten, two := tasks()
	c10, c2 := ten.m.classifier(t, 32), two.m.classifier(t, 32)
	pgd := mustParse(t, "pgd-5")
	badPixel := append([]float32(nil), ten.x...)
	badPixel[5*imgD+3] = 1.5
	badLabel := append([]int64(nil), ten.y...)
	badLabel[7] = 10
	cases := []struct {
		name string
		c    *Classifier
		x    []float32
		y    []int64
		cfg  Config
		want string
	}{
		{"norm", c10, ten.x, ten.y, Config{Eps: 0.1, Norm: "l1"}, "unknown norm"},
		{"negative eps", c10, ten.x, ten.y, Config{Eps: -0.1}, "ε = -0.1"},
		{"NaN eps", c10, ten.x, ten.y, Config{Eps: float32(math.NaN())}, "ε = NaN"},
		{"missing head", c2, two.x, two.y, Config{Eps: 0.1, Attacks: mustParse(t, "apgd-t")}, `needs the "dlr-t" eval graph`},
		{"twice", c10, ten.x, ten.y, Config{Eps: 0.1, Attacks: append(pgd, pgd...)}, "two attacks are named"},
		{"bad spec", c10, ten.x, ten.y, Config{Eps: 0.1, Attacks: []AttackSpec{{Name: "mine", Kind: KindPGD, Loss: HeadCE, Steps: 0, Restarts: 1, Step: 0.25}}}, "steps 0"},
		{"pixel", c10, badPixel, ten.y, Config{Eps: 0.1}, "pixel 3 of example 5 is 1.5"},
		{"label", c10, ten.x, badLabel, Config{Eps: 0.1}, "label 10 of example 7"},
		{"lengths", c10, ten.x[:10], ten.y, Config{Eps: 0.1}, "image values"},
		{"negative N", c10, ten.x, ten.y, Config{Eps: 0.1, N: -1}, "no examples"},
		{"no data", c10, nil, nil, Config{Eps: 0.1}, "no examples"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(context.Background(), tc.c, tc.x, tc.y, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
