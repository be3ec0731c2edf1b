package orchestrator

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/optim"
)

// The values of Config.BNStats.
const (
	BNStatsAll   = "all"
	BNStatsTrain = "train"
)

// The values of Config.LatentScale: the unit of SLAT's latent budget.
const (
	// LatentScaleAbs: LatentEta, LatentStep and LatentRadius are in
	// activation units (the reference rule; "" means it too).
	LatentScaleAbs = "abs"
	// LatentScaleRange: they are fractions of the range hi − lo of each
	// sample's and channel's activation at the tap (the bounds of the
	// domain clip), so the latent step and its clip scale per sample and
	// channel (perturb.SLATLatentRange).
	LatentScaleRange = "range"
)

// The values of Config.InputStart: where SLAT's input step starts.
const (
	// InputStartZero: pass 1 runs at the clean x and δx is taken from 0
	// (the reference rule; "" means it too).
	InputStartZero = "zero"
	// InputStartUniform: δ0 is drawn uniformly in ±ε (boxed), pass 1 runs
	// at x+δ0 and gives both ∂ℓ/∂x and the latent gradients there, and δx
	// = clip(δ0 + InputStep·sign(∂ℓ/∂x), ±ε), boxed, as FGSM-RS does
	// (perturb.SLATInputFrom).
	InputStartUniform = "uniform"
)

// Auto, in a float field of Config that documents it, stands for the
// method's default (usually a multiple of Eps or LatentEta), resolved by New.
const Auto float32 = -1

// Config is every setting of a training run. Start from DefaultConfig and
// set Forward, Train and what differs; New validates it (see Validate) and
// resolves the Auto fields.
type Config struct {
	// Forward is the model to train: a forward graph (zoo.Build, or one
	// exported from PyTorch) with one image input and one logits output.
	// Its initializers are the initial weights and BN statistics.
	Forward *onnx.Model
	// Train is the training data; Holdout, if not nil, is the held-out slice
	// the per-epoch probe attacks (see Probe). Without Holdout there is no
	// probe and no best.onnx.
	Train, Holdout *dataset.Set
	// DataSpec says where Train and Holdout come from (slatrun records its
	// --data flag here); config.json keeps it beside the data's
	// fingerprint. Resume compares the fingerprint, not DataSpec.
	DataSpec string

	// Method is one of standard, fgsm, fgsm-rs, n-fgsm, pgd-K (K ≥ 1
	// steps, e.g. pgd-7), free-M (M ≥ 1 replays, e.g. free-8), slat, trades
	// and gradalign.
	Method string
	// Epochs is the number of epochs. Free-M makes Epochs÷M passes over the
	// data, replaying each minibatch M times, so that it costs as many
	// optimizer steps as Epochs epochs of the other methods.
	Epochs int
	// Batch is the minibatch size; the last incomplete batch of an epoch is
	// dropped, so every step sees Batch examples.
	Batch int

	// LR is the peak learning rate (cyclic, cosine) or the initial one
	// (piecewise, constant).
	LR float32
	// Schedule is cyclic (default: per minibatch 0 → LR at 40% of all
	// steps → 0, with momentum cycling Momentum → BaseMomentum → Momentum
	// like PyTorch's CyclicLR), piecewise (×0.1 at 30%, 60% and 80% of the
	// epochs), cosine (per minibatch, LR → 0) or constant.
	Schedule string
	// Momentum is SGD's momentum (the maximum of the cycle for cyclic);
	// BaseMomentum is the minimum of the cyclic schedule's momentum cycle.
	Momentum, BaseMomentum float32
	// WeightDecay is SGD's L2 weight decay, applied to every parameter.
	WeightDecay float32
	// Seed drives every random choice of the run: shuffling, augmentation,
	// random starts and the probe.
	Seed uint64

	// Eps is the L∞ budget of the input perturbation, in pixel units
	// ([0,1] images), for training and for the probe.
	Eps float32
	// InputStep is the step of the input perturbation; Auto means the
	// method's default (the Defaults table, e.g. 0.9ε for slat).
	InputStep float32
	// NoiseRadius is the half-width of N-FGSM's uniform start (Auto: its
	// Defaults row; no ±ε clip follows). FGSM-RS and PGD start uniformly
	// in ±ε.
	NoiseRadius float32
	// Taps are the latent tensors SLAT perturbs (default: the forward
	// graph's slatrun.taps metadata, the zoo model's default taps).
	Taps []string
	// TRADESBeta is TRADES's weight β of KL(f(x) ‖ f(x′)) in the outer
	// loss CE(f(x), y) + β·KL (Auto: its Defaults row, 6).
	TRADESBeta float32
	// TRADESSteps is the number K of TRADES's inner PGD steps on the KL
	// divergence (0: its Defaults row, 10).
	TRADESSteps int
	// GradAlignLambda is GradAlign's weight λ of the regularizer
	// 1 − cos(∇ₓℓ(x), ∇ₓℓ(x+η)) beside the FGSM loss (Auto: its Defaults
	// row, the reference's 0.02·10^(ε/(8/255)), 0.2 at ε = 8/255).
	GradAlignLambda float32
	// LatentEta is SLAT's latent budget η in activation units (Auto: its
	// Defaults row, a multiple of ε); with LatentScale range, a fraction of
	// each sample's and channel's activation range (LatentStep and
	// LatentRadius too).
	LatentEta float32
	// LatentStep is SLAT's latent step (Auto: its Defaults row, a multiple
	// of η).
	LatentStep float32
	// LatentRadius is SLAT's ±clip of the latent step (Auto: its Defaults
	// row, a multiple of η); 0 means no clip, the reference's CIFAR-100
	// variant.
	LatentRadius float32
	// LatentScale is the unit of LatentEta, LatentStep and LatentRadius:
	// LatentScaleAbs (default; "" means it too) or LatentScaleRange.
	LatentScale string
	// InputStart is where SLAT's input step starts: InputStartZero
	// (default; "" means it too) or InputStartUniform.
	InputStart string
	// DomainClip keeps SLAT's perturbed activations inside the range the
	// clean activation spans (per sample and channel); on by default.
	DomainClip bool
	// BNStats says which passes update the BN running statistics:
	// BNStatsAll (default; "" means it too), every training-mode pass in
	// the order the step runs them, attack passes included, as PyTorch's
	// train mode does in the reference; or BNStatsTrain, the train passes
	// only (slatrun before 2026-12; for comparisons and old runs).
	BNStats string

	// Augment is applied to training batches (dataset.DefaultAugment for
	// CIFAR; none by default).
	Augment dataset.Augment
	// Probe configures the per-epoch PGD probe on Holdout.
	Probe ProbeConfig

	// Runtime configures the ONNX Runtime sessions (provider, threads,
	// spinning). Batch, Shared and Outputs are set by the Trainer.
	Runtime ort.Options

	// Out is the run directory (docs/run-directory.md); "" writes
	// nothing. The Trainer holds its lock (LockRun) from New to Close.
	Out string
	// Resume continues the run saved in Out (its state.bin) instead of
	// starting anew; the other settings, the forward graph and the data
	// must match the saved run's.
	Resume bool
	// Overwrite starts a fresh run in an Out that holds another run's
	// files: New removes them once it has validated the settings and
	// derived the graphs. Without it, New refuses such an Out
	// (ErrRunExists).
	Overwrite bool
	// Lock, if not nil, is the lock of Out that the caller took with
	// LockRun (to work in the directory before and after the Trainer, as
	// slatrun train and sweep do); New then takes none, and Close leaves
	// it to the caller.
	Lock *RunLock
	// LogEvery writes a metrics line (and a log line) every LogEvery
	// steps; 0 logs epochs only.
	LogEvery int
	// Logger receives human-readable progress lines; nil is silent.
	Logger io.Writer
	// Hooks are called from the training loop.
	Hooks Hooks
}

// ProbeConfig is the per-epoch robustness probe: eval's PGD with a uniform
// start on the first N examples of Config.Holdout, through the CE eval
// graph of the epoch's checkpoint; a sample counts as robust only if every
// point the attack visits is classified right.
type ProbeConfig struct {
	// N is the number of held-out examples probed (0: all of Holdout).
	N int
	// Steps is the number of PGD steps (default 10).
	Steps int
	// Step is the PGD step size (Auto: its Defaults row, a multiple of ε).
	Step float32
	// Collapse and Floor define catastrophic overfitting: an epoch is
	// flagged when the probe's robust accuracy is below Collapse (default
	// 0.5) times the best so far and at least Floor (default 0.1) below it,
	// while the clean accuracy stays within Floor of the clean accuracy at
	// the best epoch or above it.
	Collapse, Floor float32
}

// Hooks are called from the training loop, in the loop's goroutine. A hook
// that returns an error stops the run with that error (after the current
// step; no checkpoint is written for it).
type Hooks struct {
	// OnStep is called after every optimizer step. The StepInfo's slices
	// are reused; copy what you keep.
	OnStep func(StepInfo) error
	// OnEpoch is called after each epoch's probe and checkpoint.
	OnEpoch func(EpochMetrics) error
	// OnCheckpoint is called after files have been written to the run
	// directory (model.onnx and state.bin, and best.onnx when best is
	// true); epochs is the number of finished epochs the checkpoint holds
	// (an interrupted epoch's steps come on top).
	OnCheckpoint func(dir string, epochs int, best bool) error
}

// DefaultConfig returns the reference settings of docs/methods.md: slat,
// 30 epochs, batch 128, cyclic learning rate to 0.2, momentum 0.9 (cycling
// to 0.8), weight decay 5e-4, ε = 8/255, every step size Auto (Defaults),
// domain clip on, a PGD-10 probe on up to 1000 held-out examples, a
// metrics line every 50 steps.
func DefaultConfig() Config {
	return Config{
		Method:          "slat",
		Epochs:          30,
		Batch:           128,
		LR:              0.2,
		Schedule:        optim.Cyclic,
		Momentum:        0.9,
		BaseMomentum:    0.8,
		WeightDecay:     5e-4,
		Eps:             8.0 / 255,
		InputStep:       Auto,
		NoiseRadius:     Auto,
		LatentEta:       Auto,
		LatentStep:      Auto,
		LatentRadius:    Auto,
		TRADESBeta:      Auto,
		GradAlignLambda: Auto,
		LatentScale:     LatentScaleAbs,
		InputStart:      InputStartZero,
		DomainClip:      true,
		BNStats:         BNStatsAll,
		Probe:           ProbeConfig{N: 1000, Steps: 10, Step: Auto, Collapse: 0.5, Floor: 0.1},
		LogEvery:        50,
	}
}

// family is a method family: each has its own step function.
type family int

const (
	standard family = iota
	fgsm
	fgsmRS
	nfgsm
	pgd
	free
	slat
	trades
	gradalign
)

// method is a parsed Config.Method.
type method struct {
	fam family
	k   int // PGD steps or Free replays
}

func (m method) String() string {
	switch m.fam {
	case pgd:
		return "pgd-" + strconv.Itoa(m.k)
	case free:
		return "free-" + strconv.Itoa(m.k)
	}
	return [...]string{"standard", "fgsm", "fgsm-rs", "n-fgsm", "", "", "slat", "trades", "gradalign"}[m.fam]
}

// Methods lists the method names Config.Method accepts (K and M stand for
// numbers).
const Methods = "standard, fgsm, fgsm-rs, n-fgsm, pgd-K, free-M, slat, trades, gradalign"

func parseMethod(s string) (method, error) {
	switch strings.ToLower(s) {
	case "standard":
		return method{fam: standard}, nil
	case "fgsm":
		return method{fam: fgsm}, nil
	case "fgsm-rs":
		return method{fam: fgsmRS}, nil
	case "n-fgsm":
		return method{fam: nfgsm}, nil
	case "slat":
		return method{fam: slat}, nil
	case "trades":
		return method{fam: trades}, nil
	case "gradalign":
		return method{fam: gradalign}, nil
	}
	for prefix, fam := range map[string]family{"pgd-": pgd, "free-": free} {
		if rest, ok := strings.CutPrefix(strings.ToLower(s), prefix); ok {
			k, err := strconv.Atoi(rest)
			if err != nil || k < 1 {
				return method{}, fmt.Errorf("orchestrator: method %q: want %sN with a whole number N ≥ 1", s, prefix)
			}
			return method{fam: fam, k: k}, nil
		}
	}
	return method{}, fmt.Errorf("orchestrator: unknown method %q (known: %s)", s, Methods)
}

// Schedules lists the schedule names Config.Schedule accepts.
const Schedules = optim.ScheduleNames

// Validate checks the settings and returns one error naming every problem
// it finds. It does not look at the graphs (New does).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	auto := func(name string, v float32) {
		if v != Auto && !(v >= 0 && finite(v)) {
			bad("%s = %v: want a finite value ≥ 0, or Auto (-1) for the default", name, v)
		}
	}
	if c.Forward == nil {
		bad("Forward is nil: give the forward graph to train (zoo.Build or onnx.Load)")
	}
	if c.Train == nil || c.Train.N == 0 {
		bad("Train is nil or empty: give the training data")
	}
	m, err := parseMethod(c.Method)
	if err != nil {
		errs = append(errs, err)
	}
	if c.Epochs < 1 {
		bad("Epochs = %d: want at least 1", c.Epochs)
	} else if err == nil && m.fam == free && c.Epochs < m.k {
		bad("Epochs = %d with %s: free-M makes Epochs÷M passes over the data, so Epochs must be at least %d", c.Epochs, m, m.k)
	}
	if c.Batch < 1 {
		bad("Batch = %d: want at least 1", c.Batch)
	} else if c.Train != nil && c.Train.N > 0 && c.Batch > c.Train.N {
		bad("Batch = %d is larger than the training set (%d examples); incomplete batches are dropped, so no step would run", c.Batch, c.Train.N)
	}
	if !(c.LR > 0 && finite(c.LR)) {
		bad("LR = %v: want a finite learning rate > 0", c.LR)
	}
	if !optim.KnownSchedule(c.Schedule) {
		bad("Schedule %q: want one of %s", c.Schedule, Schedules)
	}
	if !(c.Momentum >= 0 && c.Momentum < 1) {
		bad("Momentum = %v: want a value in [0, 1)", c.Momentum)
	}
	if c.Schedule == optim.Cyclic && !(c.BaseMomentum >= 0 && c.BaseMomentum <= c.Momentum) {
		bad("BaseMomentum = %v: the cyclic schedule wants 0 ≤ BaseMomentum ≤ Momentum (%v)", c.BaseMomentum, c.Momentum)
	}
	if !(c.WeightDecay >= 0 && finite(c.WeightDecay)) {
		bad("WeightDecay = %v: want a finite value ≥ 0", c.WeightDecay)
	}
	if !(c.Eps >= 0 && c.Eps <= 1) {
		bad("Eps = %v: want a budget in [0, 1] (pixel units; 8/255 for CIFAR)", c.Eps)
	}
	auto("InputStep", c.InputStep)
	auto("NoiseRadius", c.NoiseRadius)
	auto("LatentEta", c.LatentEta)
	auto("LatentStep", c.LatentStep)
	auto("LatentRadius", c.LatentRadius)
	auto("Probe.Step", c.Probe.Step)
	auto("TRADESBeta", c.TRADESBeta)
	auto("GradAlignLambda", c.GradAlignLambda)
	if c.TRADESSteps < 0 {
		bad("TRADESSteps = %d: want ≥ 0 (0: the default)", c.TRADESSteps)
	}
	if c.Probe.N < 0 {
		bad("Probe.N = %d: want ≥ 0 (0: all of Holdout)", c.Probe.N)
	}
	if c.Probe.Steps < 1 {
		bad("Probe.Steps = %d: want at least 1", c.Probe.Steps)
	}
	if !(c.Probe.Collapse >= 0 && c.Probe.Collapse <= 1) || !(c.Probe.Floor >= 0 && c.Probe.Floor <= 1) {
		bad("Probe.Collapse = %v, Probe.Floor = %v: want values in [0, 1]", c.Probe.Collapse, c.Probe.Floor)
	}
	if c.Holdout != nil && c.Train != nil && (c.Holdout.C != c.Train.C || c.Holdout.H != c.Train.H || c.Holdout.W != c.Train.W) {
		bad("Holdout images are %d×%d×%d but Train images are %d×%d×%d", c.Holdout.C, c.Holdout.H, c.Holdout.W, c.Train.C, c.Train.H, c.Train.W)
	}
	switch c.BNStats {
	case "", BNStatsAll, BNStatsTrain:
	default:
		bad("BNStats %q: want %q (every training-mode pass updates the BN running statistics) or %q (the train passes only)", c.BNStats, BNStatsAll, BNStatsTrain)
	}
	if c.Augment.Pad < 0 {
		bad("Augment.Pad = %d: want ≥ 0", c.Augment.Pad)
	}
	if c.LogEvery < 0 {
		bad("LogEvery = %d: want ≥ 0", c.LogEvery)
	}
	if c.Resume && c.Out == "" {
		bad("Resume needs Out, the run directory to resume")
	}
	if c.Overwrite && (c.Resume || c.Out == "") {
		bad("Overwrite needs Out and no Resume: it replaces the run in Out with a fresh one")
	}
	if c.Lock != nil && c.Out == "" {
		bad("Lock is set but Out is empty")
	}
	if err == nil && len(c.Taps) > 0 && m.fam != slat {
		bad("Taps are set but method %s perturbs no latent tensors (only slat does)", m)
	}
	switch c.LatentScale {
	case "", LatentScaleAbs:
	case LatentScaleRange:
		if err == nil && m.fam != slat {
			bad("LatentScale %q is set but method %s perturbs no latent tensors (only slat does)", c.LatentScale, m)
		}
	default:
		bad("LatentScale %q: want %q (the latent budget in activation units) or %q (a fraction of each sample's and channel's activation range)", c.LatentScale, LatentScaleAbs, LatentScaleRange)
	}
	switch c.InputStart {
	case "", InputStartZero:
	case InputStartUniform:
		if err == nil && m.fam != slat {
			bad("InputStart %q is set but method %s has no such setting (only slat does; fgsm-rs and pgd-K always start uniformly)", c.InputStart, m)
		}
	default:
		bad("InputStart %q: want %q (SLAT's input step from the clean x) or %q (from a uniform start in ±ε)", c.InputStart, InputStartZero, InputStartUniform)
	}
	if len(errs) == 0 {
		return nil
	}
	// One line, "a; b; c", that still wraps every problem (errors.Is).
	args := make([]any, len(errs))
	for i, e := range errs {
		args[i] = e
	}
	return fmt.Errorf("orchestrator: invalid config: "+strings.TrimSuffix(strings.Repeat("%w; ", len(errs)), "; "), args...)
}

// resolved holds the settings with every Auto filled in; it is what
// config.json records and what state.bin's fingerprint covers.
type resolved struct {
	Method          string   `json:"method"`
	Epochs          int      `json:"epochs"`
	Passes          int      `json:"passes"`
	Replays         int      `json:"replays"`
	Batch           int      `json:"batch"`
	BatchesEpoch    int      `json:"batches_per_pass"`
	TotalSteps      int      `json:"total_steps"`
	TrainN          int      `json:"train_n"`
	HoldoutN        int      `json:"holdout_n"`
	LR              float32  `json:"lr"`
	Schedule        string   `json:"schedule"`
	Momentum        float32  `json:"momentum"`
	BaseMomentum    float32  `json:"base_momentum"`
	WeightDecay     float32  `json:"weight_decay"`
	Seed            uint64   `json:"seed"`
	Eps             float32  `json:"eps"`
	InputStep       float32  `json:"input_step"`
	NoiseRadius     float32  `json:"noise_radius,omitempty"`
	Taps            []string `json:"taps,omitempty"`
	LatentEta       float32  `json:"latent_eta,omitempty"`
	LatentStep      float32  `json:"latent_step,omitempty"`
	LatentRadius    float32  `json:"latent_radius,omitempty"`
	LatentScale     string   `json:"latent_scale,omitempty"`
	InputStart      string   `json:"input_start,omitempty"`
	DomainClip      bool     `json:"domain_clip,omitempty"`
	TRADESBeta      float32  `json:"trades_beta,omitempty"`
	TRADESSteps     int      `json:"trades_steps,omitempty"`
	GradAlignLambda float32  `json:"gradalign_lambda,omitempty"`
	BNStats         string   `json:"bn_stats"`
	AugmentPad      int      `json:"augment_pad"`
	AugmentFlip     bool     `json:"augment_flip"`
	ProbeN          int      `json:"probe_n"`
	ProbeSteps      int      `json:"probe_steps"`
	ProbeStep       float32  `json:"probe_step"`
	Collapse        float32  `json:"probe_collapse"`
	Floor           float32  `json:"probe_floor"`

	// inputFrac is InputStep as the fraction of Eps that SLAT's input rule
	// takes, probeFrac ProbeStep as the fraction of Eps that eval's PGD
	// takes (not recorded: they follow from the fields above).
	inputFrac, probeFrac float32
}

// resolve fills in the Auto fields; c must be valid.
func resolve(c *Config, m method, taps []string) resolved {
	r := resolved{
		Method: m.String(), Epochs: c.Epochs, Passes: c.Epochs, Replays: 1,
		Batch: c.Batch, TrainN: c.Train.N,
		LR: c.LR, Schedule: c.Schedule, Momentum: c.Momentum, WeightDecay: c.WeightDecay,
		Seed: c.Seed, Eps: c.Eps, InputStep: c.InputStep,
		BNStats:    c.BNStats,
		AugmentPad: c.Augment.Pad, AugmentFlip: c.Augment.Flip,
		ProbeSteps: c.Probe.Steps, ProbeStep: c.Probe.Step,
		Collapse: c.Probe.Collapse, Floor: c.Probe.Floor,
	}
	if r.BNStats == "" {
		r.BNStats = BNStatsAll
	}
	if c.Schedule == optim.Cyclic {
		r.BaseMomentum = c.BaseMomentum
	}
	if m.fam == free {
		r.Replays = m.k
		r.Passes = c.Epochs / m.k
	}
	r.BatchesEpoch = c.Train.N / c.Batch
	r.TotalSteps = r.Passes * r.BatchesEpoch * r.Replays
	if c.Holdout != nil {
		r.HoldoutN = c.Holdout.N
		r.ProbeN = c.Holdout.N
		if c.Probe.N > 0 {
			r.ProbeN = min(c.Probe.N, c.Holdout.N)
		}
	}
	def := func(setting string, eta float32) float32 {
		d, ok := defaultOf(m, setting)
		if !ok {
			return 0
		}
		return d.of(c.Eps, eta, m.k)
	}
	// The fractions of ε that SLATInput and the probe take: the table's
	// factor itself on Auto (and with ε = 0), so that no round trip
	// through ε changes it.
	frac := func(setting string) float32 {
		if d, ok := defaultOf(m, setting); ok && d.Basis == OfEps {
			return d.Scale
		}
		return 0
	}
	r.inputFrac, r.probeFrac = frac("InputStep"), frac("Probe.Step")
	if r.ProbeStep == Auto {
		r.ProbeStep = def("Probe.Step", 0)
	} else if c.Eps > 0 {
		r.probeFrac = r.ProbeStep / c.Eps
	}
	if r.InputStep == Auto {
		r.InputStep = def("InputStep", 0)
	} else if c.Eps > 0 {
		r.inputFrac = r.InputStep / c.Eps
	}
	if _, ok := defaultOf(m, "NoiseRadius"); ok {
		r.NoiseRadius = c.NoiseRadius
		if r.NoiseRadius == Auto {
			r.NoiseRadius = def("NoiseRadius", 0)
		}
	}
	if m.fam == trades {
		r.TRADESBeta = c.TRADESBeta
		if r.TRADESBeta == Auto {
			r.TRADESBeta = def("TRADESBeta", 0)
		}
		r.TRADESSteps = c.TRADESSteps
		if r.TRADESSteps == 0 {
			r.TRADESSteps = int(def("TRADESSteps", 0))
		}
	}
	if m.fam == gradalign {
		r.GradAlignLambda = c.GradAlignLambda
		if r.GradAlignLambda == Auto {
			r.GradAlignLambda = def("GradAlignLambda", 0)
		}
	}
	if m.fam == slat {
		r.Taps = taps
		r.DomainClip = c.DomainClip
		r.LatentEta = c.LatentEta
		if r.LatentEta == Auto {
			r.LatentEta = def("LatentEta", 0)
		}
		r.LatentStep = c.LatentStep
		if r.LatentStep == Auto {
			r.LatentStep = def("LatentStep", r.LatentEta)
		}
		r.LatentRadius = c.LatentRadius
		if r.LatentRadius == Auto {
			r.LatentRadius = def("LatentRadius", r.LatentEta)
		}
		r.LatentScale, r.InputStart = c.LatentScale, c.InputStart
		if r.LatentScale == "" {
			r.LatentScale = LatentScaleAbs
		}
		if r.InputStart == "" {
			r.InputStart = InputStartZero
		}
	}
	return r
}
