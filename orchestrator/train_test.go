package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/perturb"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// Test models: the zoo's mlp (1×8×8, tap "hidden") and a convnet of width
// 4 (1×28×28, taps "stem" and "stage1"), both with 4 classes.
const testClasses = 4

func testModel(t testing.TB, name string) *onnx.Model {
	t.Helper()
	width := 16
	if name == "convnet" {
		width = 4
	}
	m, err := zoo.Build(name, zoo.Config{Width: width, Classes: testClasses, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testData returns a training set of n and a held-out set of 64 synthetic
// examples shaped for model name.
func testData(name string, n int) (train, held *dataset.Set) {
	hw := 8
	if name == "convnet" {
		hw = 28
	}
	return dataset.Synthetic(n, 1, hw, hw, testClasses, 1), dataset.Synthetic(64, 1, hw, hw, testClasses, 2)
}

// testConfig is a small, quick run of method on model name.
func testConfig(t testing.TB, name, method string) Config {
	c := DefaultConfig()
	c.Forward = testModel(t, name)
	c.Train, c.Holdout = testData(name, 256)
	c.Method = method
	c.Epochs = 3
	c.Batch = 32
	c.LR = 0.1
	c.Eps = 0.1
	c.Probe.N = 64
	c.Probe.Steps = 3
	c.Runtime = ort.Options{Threads: 1}
	c.LogEvery = 0
	return c
}

func newTrainer(t testing.TB, c Config) *Trainer {
	t.Helper()
	tr, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestMethodsLearn trains every method for a few epochs on synthetic data
// and expects accuracy well above chance (25%).
func TestMethodsLearn(t *testing.T) {
	for _, c := range []struct{ model, method string }{
		{"mlp", "standard"},
		{"mlp", "fgsm"},
		{"mlp", "fgsm-rs"},
		{"mlp", "n-fgsm"},
		{"mlp", "pgd-3"},
		{"mlp", "free-3"},
		{"convnet", "slat"},
		{"mlp", "trades"},
		{"convnet", "gradalign"},
	} {
		t.Run(c.method, func(t *testing.T) {
			cfg := testConfig(t, c.model, c.method)
			switch c.method {
			case "free-3":
				cfg.Epochs = 6 // two passes of three replays
			case "slat", "gradalign":
				// The convnet needs more steps than the mlp, and a smaller
				// ε to learn this task in a few epochs.
				cfg.Train, _ = testData("convnet", 640)
				cfg.Epochs, cfg.Eps = 4, 0.05
			}
			res, err := newTrainer(t, cfg).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			final := res.Final()
			t.Logf("%s: train acc %.2f loss %.3f, probe clean %.2f robust %.2f, %.1f ms/step",
				c.method, final.Accuracy, final.Loss, final.Probe.Clean, final.Probe.Robust, final.MsPerStep)
			if final.Probe.Clean < 0.6 {
				t.Errorf("probe clean accuracy %.2f after %d epochs, want ≥ 0.6", final.Probe.Clean, len(res.Epochs))
			}
			if len(res.Epochs) != cfg.Epochs/max(1, map[string]int{"free-3": 3}[c.method]) {
				t.Errorf("%d epochs of metrics", len(res.Epochs))
			}
		})
	}
}

// TestStepByHand runs two steps of the Trainer and the same two steps by
// hand, for SLAT, FGSM-RS and PGD-2 under both BN-statistics rules: the
// attack and train graphs run here, the perturbations from perturb (random
// starts from a generator seeded as the Trainer's), SGD in float64, and
// the BN running statistics taken from each pass's <stat>.next (every pass
// for BNStatsAll, the train pass only for BNStatsTrain). Parameters and
// statistics must agree after each step.
func TestStepByHand(t *testing.T) {
	for _, tc := range []struct {
		method, bnStats string
		kernels         bool // slatrun's oneDNN kernels
	}{
		{"slat", BNStatsAll, false},
		{"slat", BNStatsTrain, false},
		{"fgsm-rs", BNStatsAll, false},
		{"pgd-2", BNStatsAll, false},
		{"pgd-2", BNStatsTrain, false},
		{"slat", BNStatsAll, true},
	} {
		name := tc.method + "/" + tc.bnStats
		if tc.kernels {
			name += "/onednn"
		}
		t.Run(name, func(t *testing.T) {
			if ok, why := ort.Kernels(); tc.kernels && !ok {
				t.Skip(why)
			}
			stepByHand(t, tc.method, tc.bnStats, tc.kernels)
		})
	}
}

func stepByHand(t *testing.T, method, bnStats string, kernels bool) {
	cfg := testConfig(t, "convnet", method)
	cfg.Runtime.Kernels = kernels
	cfg.Batch = 8
	cfg.Schedule = "constant"
	cfg.LR = 0.05
	cfg.Holdout = nil
	cfg.BNStats = bnStats
	tr := newTrainer(t, cfg)

	// The hand-run graphs, with their own parameter storage.
	B := cfg.Batch
	taps := []string{}
	if method == "slat" {
		taps = zoo.DefaultTaps("convnet")
	}
	// (the same graphs the Trainer derives: NCHWc convolutions where the
	// library has them)
	blk := cfg.Runtime.NCHWc()
	attackG, err := graphs.Derive(cfg.Forward, graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: taps, NCHWcBlock: blk, Kernels: kernels})
	if err != nil {
		t.Fatal(err)
	}
	trainG, err := graphs.Derive(cfg.Forward, graphs.Spec{Kind: graphs.Train, Batch: B, Taps: taps, NCHWcBlock: blk, Kernels: kernels})
	if err != nil {
		t.Fatal(err)
	}
	params, stats, err := graphs.Parameters(cfg.Forward)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) == 0 {
		t.Fatal("the test model has no BN statistics")
	}
	opts := ort.Options{Threads: 1, Batch: B, Kernels: kernels}
	as, err := ort.NewSession(attackG, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	ts, err := ort.NewSession(trainG, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	p64, buf, statNow := handState(params, stats)
	loader := dataset.NewLoader(cfg.Train, B, true, cfg.Seed)
	loader.DropLast = true
	rng := rand.New(rand.NewPCG(cfg.Seed, streamTrain))
	x := make([]float32, len(tr.x))
	y := make([]int64, B)
	dx := make([]float32, len(x))
	const eps, eta = 0.1, 0.1
	wd, mom := float64(cfg.WeightDecay), float64(cfg.Momentum)

	// attack runs the attack graph at x+dx with the statistics of now and,
	// under BNStatsAll, takes the statistics it leaves.
	attack := func() {
		t.Helper()
		perturb.Add(as.Float("x"), x, dx)
		copy(as.Int64("y"), y)
		for i, s := range stats {
			copy(as.Float(s.Name), statNow[i])
		}
		if err := as.Run(); err != nil {
			t.Fatal(err)
		}
		if bnStats == BNStatsAll {
			for i, s := range stats {
				copy(statNow[i], as.Float(s.Name+".next"))
			}
		}
	}

	var attackMoved bool // the attack passes changed the statistics
	for step := range 2 {
		// The Trainer's step.
		if !tr.loader.Next(tr.x, tr.y) {
			t.Fatal("no batch")
		}
		if err := tr.step(); err != nil {
			t.Fatal(err)
		}
		// By hand. Parameters go in as float32, as the graph takes them.
		loader.Next(x, y)
		for i, p := range params {
			for _, s := range []*ort.Session{as, ts} {
				dst := s.Float(p.Name)
				for j, v := range p64[i] {
					dst[j] = float32(v)
				}
			}
		}
		before := statNow[0][0]
		switch method {
		case "slat":
			clear(dx)
			attack()
			perturb.SLATInput(dx, as.Float("grad.x"), x, eps, 0.9)
			for i, tap := range taps {
				g := as.Float("grad." + tap)
				perturb.SLATLatent(ts.Float("delta."+tap), g, eta, 1.8*eta, eta)
				// the logged ‖∂ℓ/∂h‖₁ (l1.<tap> in the graph) against Go's float64 sum
				want := perturb.MeanAbsSum(g, B)
				if got := tr.info.TapGradL1[i]; math.Abs(got-want) > 1e-5*want {
					t.Fatalf("step %d: TapGradL1[%s] = %v, Σ|grad|/n = %v", step, tap, got, want)
				}
			}
		case "fgsm-rs":
			perturb.RandomStart(rng, dx, x, eps)
			attack()
			perturb.FGSMRS(dx, as.Float("grad.x"), x, eps, 1.25*eps)
		case "pgd-2":
			perturb.RandomStart(rng, dx, x, eps)
			for range 2 {
				attack()
				perturb.LinfStep(dx, as.Float("grad.x"), x, 2.5*eps/2, eps)
			}
		default:
			t.Fatalf("no hand step for %s", method)
		}
		attackMoved = attackMoved || statNow[0][0] != before
		perturb.Add(ts.Float("x"), x, dx)
		copy(ts.Int64("y"), y)
		for i, s := range stats {
			copy(ts.Float(s.Name), statNow[i])
		}
		if err := ts.Run(); err != nil {
			t.Fatal(err)
		}
		// The first step's inputs are bit-identical; later ones differ by
		// the rounding of float64 SGD.
		if got, want := tr.lastLoss, ts.Float("loss")[0]; step == 0 && got != want || math.Abs(float64(got-want)) > 1e-5 {
			t.Fatalf("step %d: Trainer loss %v, by hand %v", step, got, want)
		}
		for i, p := range params {
			g := ts.Float("grad." + p.Name)
			for j := range p64[i] {
				d := float64(g[j]) + wd*p64[i][j]
				if step == 0 {
					buf[i][j] = d
				} else {
					buf[i][j] = mom*buf[i][j] + d
				}
				p64[i][j] -= float64(cfg.LR) * buf[i][j]
			}
		}
		for i, s := range stats {
			copy(statNow[i], ts.Float(s.Name+".next"))
		}
		// Compare.
		var worst float64
		for i, p := range tr.params {
			for j, v := range p.Data {
				worst = max(worst, math.Abs(float64(v)-p64[i][j])/(1e-3+math.Abs(p64[i][j])))
			}
		}
		if worst > 1e-5 {
			t.Fatalf("step %d: parameters differ from the hand computation by %.3g (relative)", step, worst)
		}
		for i, s := range tr.stats {
			for j, v := range s.Data {
				if want := statNow[i][j]; step == 0 && v != want || math.Abs(float64(v-want)) > 1e-5*(1+math.Abs(float64(want))) {
					t.Fatalf("step %d: BN statistic %s[%d] = %v, by hand %v", step, s.Name, j, v, want)
				}
			}
		}
		t.Logf("step %d: loss %.5f, worst relative parameter difference %.2g", step, tr.lastLoss, worst)
	}
	if want := bnStats == BNStatsAll; attackMoved != want {
		t.Errorf("the attack passes moved the BN statistics: %v, want %v under %q", attackMoved, want, bnStats)
	}
}

// TestStepAllocatesNothing checks each method's step in steady state.
func TestStepAllocatesNothing(t *testing.T) {
	for _, c := range []struct{ model, method string }{
		{"mlp", "standard"}, {"mlp", "fgsm-rs"}, {"mlp", "n-fgsm"}, {"mlp", "pgd-2"}, {"mlp", "free-2"}, {"convnet", "slat"}, {"mlp", "trades"}, {"convnet", "gradalign"},
	} {
		cfg := testConfig(t, c.model, c.method)
		cfg.Holdout = nil
		tr := newTrainer(t, cfg)
		step := stepper(t, tr)
		step()
		if n := testing.AllocsPerRun(5, step); n != 0 {
			t.Errorf("%s: %v allocations per step", c.method, n)
		}
	}
}

// comparable strips the timings from epoch metrics.
func comparable(ms []EpochMetrics) []EpochMetrics {
	out := append([]EpochMetrics(nil), ms...)
	for i := range out {
		out[i].Seconds, out[i].MsPerStep, out[i].ImagesPerSec = 0, 0, 0
		if out[i].Probe != nil {
			p := *out[i].Probe
			p.Seconds = 0
			out[i].Probe = &p
		}
	}
	return out
}

// TestResume trains 2 epochs straight, and again with an interruption in
// the middle of the first epoch (and one at its end) followed by resumes:
// the final weights and metrics must be identical.
func TestResume(t *testing.T) {
	for _, c := range []struct {
		model, method string
		kernels       bool // slatrun's oneDNN kernels
	}{{"mlp", "fgsm-rs", false}, {"mlp", "free-2", false}, {"convnet", "slat", false}, {"convnet", "slat", true}, {"convnet", "trades", false}, {"convnet", "gradalign", false}, {"convnet", "gradalign", true}} {
		name := c.method
		if c.kernels {
			name += "/onednn"
		}
		t.Run(name, func(t *testing.T) {
			if ok, why := ort.Kernels(); c.kernels && !ok {
				t.Skip(why)
			}
			cfg := testConfig(t, c.model, c.method)
			cfg.Runtime.Kernels = c.kernels
			cfg.Epochs = 2
			if c.method == "free-2" {
				cfg.Epochs = 4
			}
			cfg.LogEvery = 3
			cfg.Out = t.TempDir()
			straight := newTrainer(t, cfg)
			want, err := straight.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wantMetrics, _ := os.ReadFile(filepath.Join(cfg.Out, MetricsFile))

			// Interrupt at step 5 of epoch 1, then at the end of epoch 1
			// (after its last step, before its probe), then finish.
			cfg.Out = t.TempDir()
			stops := []int{5, straight.r.BatchesEpoch}
			for i := 0; ; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				run := cfg
				run.Resume = i > 0
				if i < len(stops) {
					stop := stops[i]
					run.Hooks.OnStep = func(s StepInfo) error {
						if s.Epoch == 1 && s.Step == stop {
							cancel()
						}
						return nil
					}
				}
				tr := newTrainer(t, run)
				if run.Resume {
					checkAliases(t, tr)
				}
				got, err := tr.Run(ctx)
				cancel()
				tr.Close() // releases the run directory for the next round
				if i < len(stops) {
					if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "resume") {
						t.Fatalf("interrupted run: err = %v", err)
					}
					checkLoadable(t, cfg.Out)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				sameAsStraight(t, got, want, tr, straight)
				gotMetrics, _ := os.ReadFile(filepath.Join(cfg.Out, MetricsFile))
				if a, b := stripTimes(gotMetrics), stripTimes(wantMetrics); a != b {
					t.Errorf("metrics.jsonl differs:\n%s\nwant\n%s", a, b)
				}
				break
			}
		})
	}
}

// checkAliases checks that the Trainer's parameter and BN-statistic slices
// are still the inputs of its sessions and the optimizer's parameters:
// restore copies the saved values into them and must never replace them,
// or the graphs would train on stale weights.
func checkAliases(t *testing.T, tr *Trainer) {
	t.Helper()
	same := func(a, b []float32) bool { return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0] }
	for _, c := range []struct {
		role   string
		list   []graphs.Tensor
		shared func(i int) [][]float32
	}{
		{"parameter", tr.params, func(i int) [][]float32 { return [][]float32{tr.opt.Params[i]} }},
		{"BN statistic", tr.stats, func(int) [][]float32 { return nil }},
	} {
		for i, p := range c.list {
			views := c.shared(i)
			for _, s := range []*session{tr.attack, tr.train} {
				if s != nil {
					views = append(views, s.s.Float(p.Name))
				}
			}
			for _, v := range views {
				if !same(p.Data, v) {
					t.Fatalf("%s %s: the Trainer's slice is not the one the sessions and the optimizer use", c.role, p.Name)
				}
			}
		}
	}
}

// stripTimes removes the timing fields from metrics.jsonl text.
func stripTimes(b []byte) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var fields []string
		for _, f := range strings.Split(line, ",") {
			if strings.Contains(f, `"seconds"`) || strings.Contains(f, `"ms_per_step"`) || strings.Contains(f, `"images_per_s"`) {
				continue
			}
			fields = append(fields, f)
		}
		out = append(out, strings.Join(fields, ","))
	}
	return strings.Join(out, "\n")
}

// checkLoadable checks that a run directory's model.onnx loads and runs in
// ONNX Runtime and that state.bin decodes.
func checkLoadable(t *testing.T, dir string) {
	t.Helper()
	m, err := onnx.Load(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	g, err := graphs.Derive(m, graphs.Spec{Kind: graphs.Eval, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(g, ort.Options{Threads: 1, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	for _, v := range s.Float("logits") {
		if math.IsNaN(float64(v)) {
			t.Fatal("checkpoint gives NaN logits")
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeState(b, StateFile); err != nil {
		t.Fatal(err)
	}
}

// TestResumeRejects checks that a state from other settings, or a corrupt
// one, is refused with a clear error.
func TestResumeRejects(t *testing.T) {
	cfg := testConfig(t, "mlp", "fgsm")
	cfg.Epochs = 1
	cfg.Holdout = nil
	cfg.Out = t.TempDir()
	first := newTrainer(t, cfg)
	if _, err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close()
	other := cfg
	other.Resume = true
	other.Eps = 0.2
	if _, err := New(other); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "eps was 0.1, now 0.2") {
		t.Errorf("resume with another eps: %v", err)
	}
	other = cfg
	other.Resume = true
	other.Forward, _ = zoo.Build("mlp", zoo.Config{Width: 8, Classes: testClasses})
	if _, err := New(other); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "different model") {
		t.Errorf("resume with another model: %v", err)
	}
	path := filepath.Join(cfg.Out, StateFile)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	os.WriteFile(path, b, 0o644)
	resume := cfg
	resume.Resume = true
	if _, err := New(resume); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("resume from a corrupt state: %v", err)
	}
	resume.Out = t.TempDir()
	if _, err := New(resume); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("resume from nothing: %v", err)
	}
}

// TestNaNStops checks that a diverging run stops with a clear error and
// leaves the last good checkpoint as it was.
func TestNaNStops(t *testing.T) {
	t.Run("huge learning rate", func(t *testing.T) {
		cfg := testConfig(t, "mlp", "standard")
		cfg.Schedule, cfg.LR = "constant", 1e30
		cfg.Holdout = nil
		_, err := newTrainer(t, cfg).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "diverged") || !strings.Contains(err.Error(), "learning rate") {
			t.Fatalf("err = %v, want a divergence error", err)
		}
		t.Log(err)
	})
	t.Run("injected NaN", func(t *testing.T) {
		cfg := testConfig(t, "mlp", "fgsm-rs")
		cfg.Train = dataset.Synthetic(256, 1, 8, 8, testClasses, 1) // the test poisons it
		cfg.Out = t.TempDir()
		var saved map[string][]byte
		cfg.Hooks.OnEpoch = func(e EpochMetrics) error {
			if e.Epoch == 1 {
				saved = readDir(t, cfg.Out)
				for i := range cfg.Train.X {
					cfg.Train.X[i] = float32(math.NaN())
				}
			}
			return nil
		}
		_, err := newTrainer(t, cfg).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "checkpoint (epoch 1) is intact") {
			t.Fatalf("err = %v, want a NaN error naming the intact checkpoint", err)
		}
		t.Log(err)
		after := readDir(t, cfg.Out)
		for _, name := range []string{ModelFile, BestFile, StateFile, ConfigFile} {
			if !bytes.Equal(saved[name], after[name]) {
				t.Errorf("%s changed after the NaN", name)
			}
		}
		checkLoadable(t, cfg.Out)
	})
	t.Run("NaN weights in the model", func(t *testing.T) {
		cfg := testConfig(t, "mlp", "fgsm-rs")
		params, _, err := graphs.Parameters(cfg.Forward)
		if err != nil {
			t.Fatal(err)
		}
		w := map[string][]float32{params[0].Name: append([]float32(nil), params[0].Data...)}
		w[params[0].Name][5] = float32(math.NaN())
		if cfg.Forward, err = graphs.WithWeights(cfg.Forward, w); err != nil {
			t.Fatal(err)
		}
		_, err = New(cfg)
		if err == nil || !strings.Contains(err.Error(), `"`+params[0].Name+`" holds NaN (element 5`) || strings.Contains(err.Error(), "learning rate") {
			t.Fatalf("err = %v, want one naming the NaN weight and not the learning rate", err)
		}
	})
	t.Run("NaN data at the first step", func(t *testing.T) {
		cfg := testConfig(t, "mlp", "fgsm-rs")
		cfg.Train = dataset.Synthetic(256, 1, 8, 8, testClasses, 1)
		for i := range cfg.Train.X {
			cfg.Train.X[i] = float32(math.NaN())
		}
		_, err := newTrainer(t, cfg).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "no parameter was updated") || strings.Contains(err.Error(), "smaller learning rate") {
			t.Fatalf("err = %v, want a NaN error that does not blame the learning rate", err)
		}
	})
	t.Run("broken parameter at the end of an epoch", func(t *testing.T) {
		cfg := testConfig(t, "mlp", "standard")
		cfg.Out = t.TempDir()
		var tr *Trainer
		var saved map[string][]byte
		cfg.Hooks.OnStep = func(s StepInfo) error {
			if s.Epoch == 2 && s.Step == s.StepsPerEpoch {
				saved = readDir(t, cfg.Out)
				tr.params[0].Data[3] = float32(math.Inf(-1))
			}
			return nil
		}
		tr = newTrainer(t, cfg)
		_, err := tr.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "fc1.weight is -Inf") || !strings.Contains(err.Error(), "(epoch 1) is intact") {
			t.Fatalf("err = %v, want an error naming the parameter and the intact checkpoint", err)
		}
		if after := readDir(t, cfg.Out); !bytes.Equal(saved[ModelFile], after[ModelFile]) || !bytes.Equal(saved[StateFile], after[StateFile]) {
			t.Error("the checkpoint changed")
		}
	})
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{ModelFile, BestFile, StateFile, ConfigFile, MetricsFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// TestRunDirectory checks the files of a run directory.
func TestRunDirectory(t *testing.T) {
	cfg := testConfig(t, "convnet", "slat")
	cfg.Epochs = 1
	cfg.LogEvery = 4
	cfg.Out = t.TempDir()
	var log bytes.Buffer
	cfg.Logger = &log
	tr := newTrainer(t, cfg)
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	files := readDir(t, cfg.Out)
	for _, want := range []string{`"onnxruntime": "` + ort.Version(), `"provider": "cpu"`, `"train": "`, `"attack": "`, `"taps": [`, `"latent_eta": 0.1`} {
		if !bytes.Contains(files[ConfigFile], []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, files[ConfigFile])
		}
	}
	lines := strings.Split(strings.TrimSpace(string(files[MetricsFile])), "\n")
	if len(lines) != tr.r.BatchesEpoch/4+1 {
		t.Errorf("metrics.jsonl has %d lines, want %d", len(lines), tr.r.BatchesEpoch/4+1)
	}
	for _, want := range []string{`"kind":"epoch"`, `"tap_grad_l1":{"stage1":`, `"probe":{"n":64`, `"best":true`} {
		if !strings.Contains(lines[len(lines)-1], want) {
			t.Errorf("epoch line lacks %s: %s", want, lines[len(lines)-1])
		}
	}
	if !bytes.Equal(files[ModelFile], files[BestFile]) {
		t.Error("after one epoch best.onnx should be model.onnx")
	}
	if res.BestEpoch != 1 || res.Final().TapGradL1["stem"] <= 0 {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(log.String(), "epoch 1/1 done") || !strings.Contains(log.String(), "probe clean") {
		t.Errorf("log:\n%s", log.String())
	}
	checkLoadable(t, cfg.Out)
}

// TestCatastrophicFlag feeds endEpoch's rule a collapse.
func TestCatastrophicFlag(t *testing.T) {
	cfg := testConfig(t, "mlp", "fgsm")
	tr := newTrainer(t, cfg)
	tr.bestRobust, tr.bestClean, tr.bestEpoch = 0.5, 0.8, 1
	var log bytes.Buffer
	tr.cfg.Logger = &log
	tr.probe.eps = 0.5 // a probe no model survives: robust 0
	tr.bestClean = 0   // so the clean accuracy "holds"
	if err := tr.endEpoch(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := tr.history[len(tr.history)-1]
	if !e.Catastrophic || !strings.Contains(log.String(), "catastrophic overfitting") {
		t.Errorf("no flag: %+v, log %s", e, log.String())
	}
}

// stepper returns one training step of tr on its next batch (starting the
// epoch over when the loader runs out), as the run loop takes it, for
// allocation counts.
func stepper(t *testing.T, tr *Trainer) func() {
	return func() {
		if !tr.loader.Next(tr.x, tr.y) {
			tr.loader.Epoch(0)
			tr.loader.Next(tr.x, tr.y)
		}
		if err := tr.step(); err != nil {
			t.Fatal(err)
		}
		tr.afterStep(0)
	}
}

// sameAsStraight checks that a resumed run (result got, Trainer tr) ended
// with the epochs and weights of the uninterrupted one (want, straight).
func sameAsStraight(t *testing.T, got, want *Result, tr, straight *Trainer) {
	t.Helper()
	if !reflect.DeepEqual(comparable(got.Epochs), comparable(want.Epochs)) {
		t.Errorf("metrics differ:\nresumed  %+v\nstraight %+v", comparable(got.Epochs), comparable(want.Epochs))
	}
	if !reflect.DeepEqual(tr.Weights(), straight.Weights()) {
		t.Error("final weights differ from the uninterrupted run's")
	}
}

// handState starts a by-hand step's state from the Trainer's starting
// tensors: the parameters in float64 (as the Trainer's SGD holds them), a
// float64 buffer of their shape, and a copy of the BN running statistics.
func handState(params, stats []graphs.Tensor) (p64, buf [][]float64, statNow [][]float32) {
	p64 = make([][]float64, len(params))
	buf = make([][]float64, len(params))
	for i, p := range params {
		p64[i] = make([]float64, len(p.Data))
		buf[i] = make([]float64, len(p.Data))
		for j, v := range p.Data {
			p64[i][j] = float64(v)
		}
	}
	statNow = make([][]float32, len(stats))
	for i, s := range stats {
		statNow[i] = append([]float32(nil), s.Data...)
	}
	return p64, buf, statNow
}
