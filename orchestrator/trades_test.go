package orchestrator

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/perturb"
)

// TestTRADESStepByHand runs two TRADES steps of the Trainer and the same
// two steps by hand: the kl graph at the clean x for the target logits,
// x′ = x + 0.001·N(0, I) from a generator seeded as the Trainer's, K
// steps of α·sign(∂KL/∂x′) projected to ±ε and [0, 1], the trades graph at
// (x, x′), SGD in float64, and the BN statistics from the trades pass
// alone (the kl passes read the running statistics and update none).
// Parameters and statistics must agree after each step (each step by hand
// starts from the Trainer's parameters); settings other
// than the defaults (β, K, α) must reach the step.
func TestTRADESStepByHand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		beta  float32 // Auto: the default 6
		steps int     // 0: the default 10
		alpha float32 // Auto: ε/4
	}{
		{"defaults", Auto, 0, Auto},
		{"beta1-k3-alpha", 1, 3, 0.03},
		{"beta2-k1", 2, 1, Auto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "convnet", "trades")
			cfg.Batch = 8
			cfg.Schedule = "constant"
			cfg.LR = 0.05
			cfg.Holdout = nil
			cfg.TRADESBeta, cfg.TRADESSteps, cfg.InputStep = tc.beta, tc.steps, tc.alpha
			beta, k, alpha := float32(6), 10, float32(0.1/4)
			if tc.beta != Auto {
				beta = tc.beta
			}
			if tc.steps != 0 {
				k = tc.steps
			}
			if tc.alpha != Auto {
				alpha = tc.alpha
			}
			tr := newTrainer(t, cfg)
			if tr.r.TRADESBeta != beta || tr.r.TRADESSteps != k || tr.r.InputStep != alpha {
				t.Fatalf("resolved β %v, K %d, α %v; want %v, %d, %v", tr.r.TRADESBeta, tr.r.TRADESSteps, tr.r.InputStep, beta, k, alpha)
			}
			tradesByHand(t, cfg, tr, beta, k, alpha)
		})
	}
}

func tradesByHand(t *testing.T, cfg Config, tr *Trainer, beta float32, k int, alpha float32) {
	B := cfg.Batch
	blk := cfg.Runtime.NCHWc()
	klG, err := graphs.DeriveTRADES(cfg.Forward, graphs.Spec{Kind: graphs.KL, Batch: B, NCHWcBlock: blk})
	if err != nil {
		t.Fatal(err)
	}
	trG, err := graphs.DeriveTRADES(cfg.Forward, graphs.Spec{Kind: graphs.TRADES, Batch: B, Beta: beta, NCHWcBlock: blk})
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
	opts := ort.Options{Threads: 1, Batch: B}
	ks, err := ort.NewSession(klG, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ts, err := ort.NewSession(trG, opts)
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
	const eps = 0.1
	wd, mom := float64(cfg.WeightDecay), float64(cfg.Momentum)
	kl := func(at []float32) {
		t.Helper()
		copy(ks.Float(contract.Input), at)
		if err := ks.Run(); err != nil {
			t.Fatal(err)
		}
	}
	for step := range 2 {
		if !tr.loader.Next(tr.x, tr.y) {
			t.Fatal("no batch")
		}
		if err := tr.step(); err != nil {
			t.Fatal(err)
		}
		loader.Next(x, y)
		for i, p := range params {
			for _, s := range []*ort.Session{ks, ts} {
				dst := s.Float(p.Name)
				for j, v := range p64[i] {
					dst[j] = float32(v)
				}
			}
		}
		for i, s := range stats {
			copy(ks.Float(s.Name), statNow[i])
			copy(ts.Float(s.Name), statNow[i])
		}
		copy(ks.Int64(contract.Labels), y)
		clear(ks.Float(contract.RefLogits))
		kl(x)
		copy(ks.Float(contract.RefLogits), ks.Float(contract.Logits))
		for i := range dx {
			dx[i] = float32(rng.NormFloat64() * float64(float32(0.001))) // Normal's σ is a float32
		}
		xa := make([]float32, len(x))
		for range k {
			perturb.Add(xa, x, dx)
			kl(xa)
			perturb.LinfStep(dx, ks.Float(contract.InputGrad), x, alpha, eps)
		}
		perturb.Box(x, dx, 0, 1)
		perturb.Add(xa, x, dx)
		for i := range xa {
			if d := math.Abs(float64(xa[i] - x[i])); d > eps+1e-6 || xa[i] < 0 || xa[i] > 1 {
				t.Fatalf("step %d: x′[%d] = %v for x = %v: outside the ε-ball or [0, 1]", step, i, xa[i], x[i])
			}
		}
		copy(ts.Float(contract.Input), x)
		copy(ts.Float(contract.AdvInput), xa)
		copy(ts.Int64(contract.Labels), y)
		if err := ts.Run(); err != nil {
			t.Fatal(err)
		}
		if got, want := tr.lastLoss, ts.Float(contract.Loss)[0]; step == 0 && got != want || math.Abs(float64(got-want)) > 1e-5 {
			t.Fatalf("step %d: Trainer loss %v, by hand %v", step, got, want)
		}
		for i, p := range params {
			g := ts.Float(contract.GradName(p.Name))
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
		moved := false
		for i, s := range stats {
			next := ts.Float(contract.NextName(s.Name))
			moved = moved || next[0] != statNow[i][0]
			copy(statNow[i], next)
		}
		if !moved {
			t.Fatalf("step %d: the trades pass left the BN statistics as they were", step)
		}
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
		// The next step starts from the Trainer's parameters: K sign steps
		// would turn the rounding difference of float64 SGD into whole
		// steps of α where a gradient is near zero.
		for i, p := range tr.params {
			for j, v := range p.Data {
				p64[i][j] = float64(v)
			}
		}
	}
}
