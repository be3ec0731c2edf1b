package orchestrator

import (
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/perturb"
)

// smoothConvnet is the test convnet with every ReLU made Softplus, so that
// input gradients are smooth in the parameters and central differences of
// the regularizer do not cross kinks.
func smoothConvnet(t *testing.T) Config {
	t.Helper()
	cfg := testConfig(t, "convnet", "gradalign")
	n := 0
	for _, node := range cfg.Forward.Graph().GetNode() {
		if node.GetOpType() == "Relu" {
			node.OpType = proto.String("Softplus")
			n++
		}
	}
	if n == 0 {
		t.Fatal("the test convnet has no ReLU to replace")
	}
	return cfg
}

// TestGradAlignStepByHand runs two GradAlign steps of the Trainer and the
// same two steps by hand: the attack graph at x (g₁ and FGSM's δ from
// zero), the train graph at x+δ, the attack graph at x+η with η drawn from
// a generator seeded as the Trainer's, v = ∂R/∂g₂ computed here in float64
// from the definition, the hvp graph at x+η seeded with v, SGD in float64
// on ∇CE + λ·grad2, and the BN statistics of x, x+δ and x+η in that order.
// At the first step it also checks ∂R/∂θ against central differences of R
// through the attack graph, with g₁ held (the Trainer's gradient) and with
// g₁ moving too (the hvp graph at x seeded with ∂R/∂g₁ added).
func TestGradAlignStepByHand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lambda float32 // Auto: the rule at ε = 0.1
		step   float32 // Auto: ε
	}{
		{"defaults", Auto, Auto},
		{"lambda0.7-step0.05", 0.7, 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smoothConvnet(t)
			cfg.Batch = 8
			cfg.Schedule = "constant"
			cfg.LR = 0.05
			cfg.Holdout = nil
			cfg.GradAlignLambda, cfg.InputStep = tc.lambda, tc.step
			const eps = 0.1
			// the default λ: the rule held at 16/255's value, 2
			lambda, alpha := float32(0.02*math.Pow(10, math.Min(eps, 16.0/255)*255/8)), float32(eps)
			if tc.lambda != Auto {
				lambda = tc.lambda
			}
			if tc.step != Auto {
				alpha = tc.step
			}
			tr := newTrainer(t, cfg)
			if math.Abs(float64(tr.r.GradAlignLambda-lambda)) > 1e-6*float64(lambda) || tr.r.InputStep != alpha {
				t.Fatalf("resolved λ %v, α %v; want %v, %v", tr.r.GradAlignLambda, tr.r.InputStep, lambda, alpha)
			}
			gradAlignByHand(t, cfg, tr, tr.r.GradAlignLambda, alpha)
		})
	}
}

func gradAlignByHand(t *testing.T, cfg Config, tr *Trainer, lambda, alpha float32) {
	B := cfg.Batch
	noTaps := []string{}
	atG, err := graphs.Derive(cfg.Forward, graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: noTaps, NCHWcBlock: cfg.Runtime.NCHWc()})
	if err != nil {
		t.Fatal(err)
	}
	hvG, err := graphs.DeriveHVP(cfg.Forward, graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: noTaps})
	if err != nil {
		t.Fatal(err)
	}
	trG, err := graphs.Derive(cfg.Forward, graphs.Spec{Kind: graphs.Train, Batch: B, Taps: noTaps, NCHWcBlock: cfg.Runtime.NCHWc()})
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
	var ss []*ort.Session
	for _, g := range []*onnx.Model{atG, hvG, trG} {
		s, err := ort.NewSession(g, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ss = append(ss, s)
	}
	as, hs, ts := ss[0], ss[1], ss[2]
	p64, buf, statNow := handState(params, stats)
	setParams := func(shift []float64, h float64) {
		k := 0
		for i, p := range params {
			for _, s := range ss {
				dst := s.Float(p.Name)
				for j, v := range p64[i] {
					if shift != nil {
						v += h * shift[k+j]
					}
					dst[j] = float32(v)
				}
			}
			k += len(p64[i])
		}
	}
	run := func(s *ort.Session, at []float32) {
		t.Helper()
		for i, st := range stats {
			copy(s.Float(st.Name), statNow[i])
		}
		copy(s.Float(contract.Input), at)
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
	}
	takeStats := func(s *ort.Session) {
		for i, st := range stats {
			copy(statNow[i], s.Float(contract.NextName(st.Name)))
		}
	}
	loader := dataset.NewLoader(cfg.Train, B, true, cfg.Seed)
	loader.DropLast = true
	rng := rand.New(rand.NewPCG(cfg.Seed, streamTrain))
	x := make([]float32, len(tr.x))
	y := make([]int64, B)
	d := len(x) / B
	const eps = 0.1
	wd, mom := float64(cfg.WeightDecay), float64(cfg.Momentum)
	for step := range 2 {
		if !tr.loader.Next(tr.x, tr.y) {
			t.Fatal("no batch")
		}
		if err := tr.step(); err != nil {
			t.Fatal(err)
		}
		loader.Next(x, y)
		setParams(nil, 0)
		for _, s := range ss {
			copy(s.Int64(contract.Labels), y)
		}
		// g₁ and FGSM from zero.
		run(as, x)
		takeStats(as)
		g1 := append([]float32(nil), as.Float(contract.InputGrad)...)
		xd := make([]float32, len(x))
		for i := range x {
			s := float32(0)
			if g1[i] > 0 {
				s = alpha
			} else if g1[i] < 0 {
				s = -alpha
			}
			xd[i] = min(max(x[i]+min(max(s, -eps), eps), 0), 1)
		}
		run(ts, xd)
		takeStats(ts)
		// g₂ at x+η, η uniform in ±ε, not boxed.
		eta := make([]float32, len(x))
		perturb.Uniform(rng, eta, eps)
		xe := make([]float32, len(x))
		for i := range x {
			xe[i] = x[i] + eta[i]
		}
		run(as, xe)
		g2 := append([]float32(nil), as.Float(contract.InputGrad)...)
		v1, v2, r := cosGrads(g1, g2, B, d)
		if math.Abs(r-tr.info.GradAlignR) > 1e-9 {
			t.Fatalf("step %d: Trainer R %v, by hand %v", step, tr.info.GradAlignR, r)
		}
		copy(hs.Float(contract.SeedName(contract.InputGrad)), v2)
		run(hs, xe)
		takeStats(hs)
		grad2 := make([][]float32, len(params))
		for i, p := range params {
			grad2[i] = append([]float32(nil), hs.Float(contract.Grad2Name(p.Name))...)
		}
		if step == 0 {
			checkGradAlignFD(t, as, hs, setParams, p64, params, x, xe, g1, v1, grad2, B)
			setParams(nil, 0)
		}
		if got, want := tr.lastLoss, ts.Float(contract.Loss)[0]; math.Abs(float64(got-want)) > 1e-5 {
			t.Fatalf("step %d: Trainer loss %v, by hand %v", step, got, want)
		}
		for i, p := range params {
			g := ts.Float(contract.GradName(p.Name))
			for j := range p64[i] {
				dj := float64(g[j]) + float64(lambda)*float64(grad2[i][j]) + wd*p64[i][j]
				if step == 0 {
					buf[i][j] = dj
				} else {
					buf[i][j] = mom*buf[i][j] + dj
				}
				p64[i][j] -= float64(cfg.LR) * buf[i][j]
			}
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
				if want := statNow[i][j]; math.Abs(float64(v-want)) > 1e-5*(1+math.Abs(float64(want))) {
					t.Fatalf("step %d: BN statistic %s[%d] = %v, by hand %v", step, s.Name, j, v, want)
				}
			}
		}
		t.Logf("step %d: loss %.5f, R %.4f, worst relative parameter difference %.2g", step, tr.lastLoss, r, worst)
		for i, p := range tr.params {
			for j, v := range p.Data {
				p64[i][j] = float64(v)
			}
		}
	}
}

// cosGrads returns, in float64 from the definition, R = mean over examples
// of 1 − cos(g1ᵢ, g2ᵢ) (every example here has nonzero gradients) and its
// gradients with respect to g1 and g2.
func cosGrads(g1, g2 []float32, n, d int) (v1, v2 []float32, r float64) {
	v1, v2 = make([]float32, len(g1)), make([]float32, len(g1))
	for i := range n {
		var aa, bb, ab float64
		for j := i * d; j < (i+1)*d; j++ {
			a, b := float64(g1[j]), float64(g2[j])
			aa, bb, ab = aa+a*a, bb+b*b, ab+a*b
		}
		na, nb := math.Sqrt(aa), math.Sqrt(bb)
		c := ab / (na * nb)
		r += (1 - c) / float64(n)
		for j := i * d; j < (i+1)*d; j++ {
			a, b := float64(g1[j]), float64(g2[j])
			v2[j] = float32(-(a/(na*nb) - c*b/bb) / float64(n))
			v1[j] = float32(-(b/(na*nb) - c*a/aa) / float64(n))
		}
	}
	return v1, v2, r
}

// checkGradAlignFD compares the directional derivative of R along a random
// direction u of the parameters, (R(θ+hu) − R(θ−hu))/2h with R computed
// through the attack graph, with ⟨∂R/∂θ, u⟩ from the hvp graph: first with
// g₁ held (grad2 at x+η alone, what the Trainer uses), then with g₁ moving
// too (plus the hvp graph at x seeded with ∂R/∂g₁).
func checkGradAlignFD(t *testing.T, as, hs *ort.Session, setParams func([]float64, float64), p64 [][]float64, params []graphs.Tensor,
	x, xe, g1, v1 []float32, grad2 [][]float32, B int) {
	t.Helper()
	n := 0
	for _, p := range p64 {
		n += len(p)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	u := make([]float64, n)
	for i := range u {
		u[i] = rng.NormFloat64()
	}
	dot := func(g [][]float32) float64 {
		s, k := 0.0, 0
		for _, gi := range g {
			for _, v := range gi {
				s += float64(v) * u[k]
				k++
			}
		}
		return s
	}
	grad := func(at []float32) []float32 {
		copy(as.Float(contract.Input), at)
		if err := as.Run(); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), as.Float(contract.InputGrad)...)
	}
	// ∂R/∂θ through g₁: the hvp graph at x seeded with ∂R/∂g₁.
	setParams(nil, 0)
	copy(hs.Float(contract.SeedName(contract.InputGrad)), v1)
	copy(hs.Float(contract.Input), x)
	if err := hs.Run(); err != nil {
		t.Fatal(err)
	}
	through1 := make([][]float32, len(params))
	for i, p := range params {
		through1[i] = append([]float32(nil), hs.Float(contract.Grad2Name(p.Name))...)
	}
	const h = 1e-3
	for _, c := range []struct {
		name   string
		moving bool
	}{{"g1 held", false}, {"g1 moving", true}} {
		var rs [2]float64
		for k, sign := range []float64{1, -1} {
			setParams(u, sign*h)
			a := g1
			if c.moving {
				a = grad(x)
			}
			rs[k], _ = perturb.GradAlign(nil, nil, a, grad(xe), B)
		}
		fd := (rs[0] - rs[1]) / (2 * h)
		want := dot(grad2)
		if c.moving {
			want += dot(through1)
		}
		t.Logf("∂R/∂θ along u, %s: hvp %.6g, central difference %.6g", c.name, want, fd)
		if math.Abs(fd-want) > 0.03*math.Abs(want)+1e-4 {
			t.Errorf("∂R/∂θ along u, %s: hvp gives %.6g, central differences %.6g", c.name, want, fd)
		}
	}
}
