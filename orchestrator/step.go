package orchestrator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/perturb"
)

// The steps, one per method family (docs/methods.md). Each starts with the clean
// minibatch in t.x, t.y, runs its attack passes through attackPass and
// ends with one or more trainPass calls, which run the train graph and
// update the parameters. None allocates.
//
// Every pass runs the model in training mode, so each one, attack passes
// included, updates the BN running statistics in the order it runs, as
// the PyTorch reference does (Config.BNStats "all"); with "train" only the
// train passes do.

// stepSLAT is SLAT: pass 1 (attack graph, clean x) gives ∂ℓ/∂x and ∂ℓ/∂h at
// every tap; δx and δ_l follow from their signs; pass 2 (train graph) runs at
// x+δx with δ_l added at each tap (domain clip inside the graph) and drives
// SGD. With InputStart uniform, pass 1 runs at x+δ0, δ0 uniform in ±ε, and
// δx steps from δ0 (FGSM-RS's rule; the latent gradients come from the same
// pass); with LatentScale range, δ_l's step and clip are fractions of each
// sample's and channel's range at pass 1 (the attack graph's range.<tap>).
func (t *Trainer) stepSLAT() error {
	a, tr := t.attack, t.train
	uniform := t.r.InputStart == InputStartUniform
	if uniform {
		perturb.RandomStart(t.rng, t.delta, t.x, t.r.Eps)
		perturb.Add(a.x, t.x, t.delta)
	} else {
		copy(a.x, t.x)
	}
	copy(a.y, t.y)
	if err := t.attackPass(); err != nil {
		return err
	}
	if uniform {
		perturb.SLATInputFrom(t.delta, a.gradX, t.x, t.r.Eps, t.r.inputFrac)
	} else {
		perturb.SLATInput(t.delta, a.gradX, t.x, t.r.Eps, t.r.inputFrac)
	}
	perturb.Add(tr.x, t.x, t.delta)
	for i, g := range a.taps {
		if a.ranges != nil {
			if err := perturb.SLATLatentRange(tr.taps[i], g, a.ranges[i], t.r.LatentStep, t.r.LatentRadius); err != nil {
				return fmt.Errorf("orchestrator: tap %s: %w", t.taps[i], err)
			}
		} else {
			perturb.SLATLatent(tr.taps[i], g, t.r.LatentEta, t.r.LatentStep, t.r.LatentRadius)
		}
		// Σ|g| from the graph (ReduceL1 on ONNX Runtime's threads): in Go
		// it was a third of the step's Go side
		t.info.TapGradL1[i] = float64(a.l1[i][0]) / float64(t.cfg.Batch)
	}
	return t.trainPass()
}

// stepStandard trains on the clean minibatch.
func (t *Trainer) stepStandard() error {
	copy(t.train.x, t.x)
	return t.trainPass()
}

// stepSingle is the one-step attacks: FGSM (δ0 = 0, step ε), FGSM-RS (δ0
// uniform in ±ε, step 1.25ε, clipped to ±ε) and N-FGSM (δ0 uniform in ±2ε,
// step ε, no ±ε clip); one attack pass at x+δ0, one train pass at x+δ.
func (t *Trainer) stepSingle() error {
	a := t.attack
	switch t.m.fam {
	case fgsm:
		clear(t.delta)
	case fgsmRS:
		perturb.RandomStart(t.rng, t.delta, t.x, t.r.Eps)
	case nfgsm:
		perturb.Uniform(t.rng, t.delta, t.r.NoiseRadius)
	}
	perturb.Add(a.x, t.x, t.delta)
	copy(a.y, t.y)
	if err := t.attackPass(); err != nil {
		return err
	}
	if t.m.fam == nfgsm {
		perturb.NFGSM(t.delta, a.gradX, t.x, t.r.InputStep)
	} else {
		perturb.FGSMRS(t.delta, a.gradX, t.x, t.r.Eps, t.r.InputStep)
	}
	perturb.Add(t.train.x, t.x, t.delta)
	return t.trainPass()
}

// stepPGD is PGD-K adversarial training: a uniform start in ±ε, K steps of
// size α with projection to ±ε and [0,1], one train pass at the result.
func (t *Trainer) stepPGD() error {
	a := t.attack
	perturb.RandomStart(t.rng, t.delta, t.x, t.r.Eps)
	copy(a.y, t.y)
	for range t.m.k {
		perturb.Add(a.x, t.x, t.delta)
		if err := t.attackPass(); err != nil {
			return err
		}
		perturb.LinfStep(t.delta, a.gradX, t.x, t.r.InputStep, t.r.Eps)
	}
	perturb.Add(t.train.x, t.x, t.delta)
	return t.trainPass()
}

// stepFree is Free-M (Shafahi et al.): the minibatch is replayed M times;
// each replay is one train pass at x+δ, which gives both the parameter
// gradients (an SGD step) and ∂ℓ/∂x, from which δ takes an ε step. δ is
// carried across replays and minibatches (projected onto this minibatch's
// ε-ball and box first).
func (t *Trainer) stepFree() error {
	tr := t.train
	perturb.ProjectLinf(t.delta, t.x, t.r.Eps)
	for range t.m.k {
		perturb.Add(tr.x, t.x, t.delta)
		if err := t.trainPass(); err != nil {
			return err
		}
		perturb.LinfStep(t.delta, tr.gradX, t.x, t.r.InputStep, t.r.Eps)
	}
	return nil
}

// stepTRADES is TRADES (Zhang et al. 2019), as the reference's trades_loss:
// the inner maximization runs the kl graph, BN on the running statistics
// (the reference's eval mode), which updates no statistics: one pass at
// the clean x gives the clean logits whose softmax is the fixed target,
// then from x′ = x + 0.001·N(0, I) (not boxed) K steps of α·sign(∂KL/∂x′),
// each projected to the ε-ball and [0, 1]. The train pass (trades graph)
// sees x and x′ and drives SGD with CE(f(x), y) + β·KL(f(x) ‖ f(x′)).
func (t *Trainer) stepTRADES() error {
	k, tr := t.kl, t.train
	copy(k.x, t.x)
	copy(k.y, t.y)
	clear(k.ref)
	if err := t.klPass(); err != nil {
		return err
	}
	copy(k.ref, k.logits)
	t.draw(perturb.Normal, perturb.DefaultTRADESStart)
	for range t.r.TRADESSteps {
		perturb.Add(k.x, t.x, t.delta)
		if err := t.klPass(); err != nil {
			return err
		}
		perturb.LinfStep(t.delta, k.gradX, t.x, t.r.InputStep, t.r.Eps)
	}
	perturb.Box(t.x, t.delta, 0, 1) // the reference's final clamp (K = 0)
	copy(tr.x, t.x)
	perturb.Add(tr.xAdv, t.x, t.delta)
	return t.trainPass()
}

// stepGradAlign is GradAlign (Andriushchenko & Flammarion 2020), as the
// reference's FGSM recipe: the attack pass at the clean x gives g₁ =
// ∇ₓℓ(x), which is both FGSM's gradient (δ = ε·sign(g₁) from zero,
// boxed) and the first argument of the regularizer, held constant as the
// reference detaches it; the train pass at x+δ gives ∇θ CE; the attack
// pass at x+η, η ~ U[−ε, ε] (not boxed), gives g₂; the host computes R =
// mean(1 − cos(g₁ᵢ, g₂ᵢ)) and v = ∂R/∂g₂ (perturb.GradAlign); the hvp
// graph at x+η with seed v gives ∂R/∂θ = ∂⟨v, g₂⟩/∂θ, and SGD steps on
// ∇θ CE + λ·∂R/∂θ. Four passes; the BN statistics take the updates of x,
// x+δ and x+η, in that order, as the reference's forward passes do.
func (t *Trainer) stepGradAlign() error {
	a, h, tr := t.attack, t.hvp, t.train
	copy(a.x, t.x)
	copy(a.y, t.y)
	if err := t.attackPass(); err != nil {
		return err
	}
	copy(t.g1, a.gradX)
	clear(t.delta)
	perturb.FGSMRS(t.delta, a.gradX, t.x, t.r.Eps, t.r.InputStep)
	perturb.Add(tr.x, t.x, t.delta)
	if err := t.trainForward(); err != nil {
		return err
	}
	t.draw(perturb.Uniform, t.r.Eps)
	perturb.Add(a.x, t.x, t.delta)
	if err := t.runAttack(); err != nil {
		return err
	}
	if err := t.attackLoss(a.loss[0]); err != nil {
		return err
	}
	r, _ := perturb.GradAlign(nil, t.hvpSeed, t.g1, a.gradX, t.cfg.Batch)
	t.info.GradAlignR = r
	copy(h.x, a.x)
	copy(h.y, t.y)
	if err := timedRun(h.s, &t.times.Attack, &t.times.AttackPasses); err != nil {
		return err
	}
	if t.cfg.BNStats != BNStatsTrain {
		t.takeStats(h)
	}
	lambda := t.r.GradAlignLambda
	for i, g2 := range t.hvpGrad2 {
		g := t.opt.Grads[i]
		for j, v := range g2 {
			g[j] += lambda * v
		}
	}
	return t.optimize()
}

// draw fills t.delta with fill(t.rng, t.delta, r), or with t.noise when a
// test has set it.
func (t *Trainer) draw(fill func(*rand.Rand, []float32, float32), r float32) {
	if t.noise != nil {
		t.noise(t.delta)
		return
	}
	fill(t.rng, t.delta, r)
}

// klPass runs the kl graph and stops on a non-finite divergence. It
// updates no BN statistics (the graph reads the running ones).
func (t *Trainer) klPass() error {
	if err := timedRun(t.kl.s, &t.times.Attack, &t.times.AttackPasses); err != nil {
		return err
	}
	sum := float32(0)
	for _, v := range t.kl.each {
		sum += v
	}
	return t.attackLoss(sum)
}

// attackPass runs the attack graph on the inputs the step has written,
// stops on a non-finite loss and, with BNStats "all", takes the BN
// statistics it returns.
func (t *Trainer) attackPass() error {
	if err := t.runAttack(); err != nil {
		return err
	}
	if err := t.attackLoss(t.attack.loss[0]); err != nil {
		return err
	}
	if t.cfg.BNStats != BNStatsTrain {
		t.takeStats(t.attack)
	}
	return nil
}

// attackLoss is the error of a non-finite attack-pass loss (nil when it is
// finite): the run stops before the pass touches parameters or statistics.
func (t *Trainer) attackLoss(loss float32) error {
	if finite32(loss) {
		return nil
	}
	lr, _ := t.sched.At(t.global)
	return &lossError{loss: loss, lr: lr, global: t.global, pass: "attack"}
}

// trainPass runs the train graph on the inputs the step has written, stops
// on a non-finite loss, takes the BN statistics it returns and updates the
// parameters with SGD at the schedule's learning rate and momentum.
func (t *Trainer) trainPass() error {
	if err := t.trainForward(); err != nil {
		return err
	}
	return t.optimize()
}

// trainForward runs the train graph on the inputs the step has written,
// stops on a non-finite loss and takes the BN statistics it returns; the
// parameter gradients wait in the train session's outputs.
func (t *Trainer) trainForward() error {
	tr := t.train
	copy(tr.y, t.y)
	if err := t.runTrain(); err != nil {
		return err
	}
	if loss := tr.loss[0]; !finite32(loss) {
		lr, _ := t.sched.At(t.global)
		return &lossError{loss: loss, lr: lr, global: t.global}
	}
	t.takeStats(tr)
	return nil
}

// optimize updates the parameters with SGD from the train session's
// gradients (as the step left them) at the schedule's learning rate and
// momentum, and records the train pass's loss and accuracy.
func (t *Trainer) optimize() error {
	tr := t.train
	lr, mom := t.sched.At(t.global)
	t.opt.Step(float32(lr), float32(mom))
	t.trained(tr.loss[0], correct(tr.logits, t.y), len(t.y), lr, mom)
	return nil
}

// runAttack runs the attack graph, timing it.
func (t *Trainer) runAttack() error {
	return timedRun(t.attack.s, &t.times.Attack, &t.times.AttackPasses)
}

// runTrain runs the train graph, timing it.
func (t *Trainer) runTrain() error {
	return timedRun(t.train.s, &t.times.Train, &t.times.TrainPasses)
}

// timedRun runs s, adding its time to total and one to passes.
func timedRun(s *ort.Session, total *time.Duration, passes *int) error {
	start := time.Now()
	err := s.Run()
	*total += time.Since(start)
	*passes++
	return err
}

// takeStats makes the BN running statistics those the pass of s left.
func (t *Trainer) takeStats(s *session) {
	for i, st := range t.stats {
		copy(st.Data, s.statNext[i])
	}
}

func finite32(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// lossError is the error of a non-finite training loss.
type lossError struct {
	loss   float32
	lr     float64
	global int
	param  string // set when a parameter, not the loss, is non-finite
	pass   string // "attack" when the attack pass's loss was non-finite
}

func (e *lossError) Error() string {
	if e.param != "" {
		return fmt.Sprintf("%s is %v after optimizer step %d (learning rate %.4g): training diverged", e.param, e.loss, e.global+1, e.lr)
	}
	if e.pass != "" {
		return fmt.Sprintf("the %s pass's loss is %v before optimizer step %d (learning rate %.4g): training diverged; neither the parameters nor the BN statistics were updated with it", e.pass, e.loss, e.global+1, e.lr)
	}
	return fmt.Sprintf("the training loss is %v at optimizer step %d (learning rate %.4g): training diverged; the parameters were not updated with it", e.loss, e.global+1, e.lr)
}

// correct counts the rows of logits whose argmax is the label.
func correct(logits []float32, y []int64) int {
	k := len(logits) / len(y)
	n := 0
	for i, label := range y {
		row := logits[i*k : (i+1)*k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if int64(best) == label {
			n++
		}
	}
	return n
}
