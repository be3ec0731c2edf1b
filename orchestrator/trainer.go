package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/optim"
)

// PCG streams (the second word of rand.NewPCG; the seed is the first) of
// the run's random number generators.
const (
	streamTrain = 0x736c61742d747261 // random starts of the training attacks
	streamProbe = 0x736c61742d707262 // the probe's random starts, plus the epoch
)

// session is an ONNX Runtime session with the slices the steps use.
type session struct {
	s      *ort.Session
	x      []float32
	y      []int64
	loss   []float32 // loss[0]
	logits []float32
	gradX  []float32   // attack, kl; train with InputGrad
	xAdv   []float32   // trades: x.adv, the adversarial input
	ref    []float32   // kl: logits.ref, the clean logits of the KL target
	each   []float32   // kl: loss.each, the per-example KL divergence
	taps   [][]float32 // attack: grad.<tap>; train: delta.<tap>
	// ranges are the attack graph's range.<tap> outputs, hi − lo per
	// sample and channel (slat with LatentScale range; nil otherwise).
	ranges [][]float32
	// l1 are the attack graph's l1.<tap> outputs, Σ|grad.<tap>| (slat).
	l1 [][]float32
	// statNext are the BN running statistics this pass leaves
	// (<stat>.next), in the order of Trainer.stats.
	statNext [][]float32
}

func bindSession(s *ort.Session, taps []string, tapPrefix string, gradX bool, stats []graphs.Tensor) *session {
	b := &session{s: s, x: s.Float(contract.Input), y: s.Int64(contract.Labels), logits: s.Float(contract.Logits)}
	if s.Has(contract.Loss) {
		b.loss = s.Float(contract.Loss)
	}
	for name, dst := range map[string]*[]float32{contract.AdvInput: &b.xAdv, contract.RefLogits: &b.ref, contract.LossEach: &b.each} {
		if s.Has(name) {
			*dst = s.Float(name)
		}
	}
	if gradX {
		b.gradX = s.Float(contract.InputGrad)
	}
	for _, tap := range taps {
		b.taps = append(b.taps, s.Float(tapPrefix+tap))
	}
	for _, st := range stats {
		b.statNext = append(b.statNext, s.Float(contract.NextName(st.Name)))
	}
	return b
}

// Trainer runs one training run. Make it with New, call Run once, and Close
// it. It is not safe for concurrent use.
type Trainer struct {
	cfg   Config
	m     method
	r     resolved
	taps  []string
	graph map[string]string // kind → sha256 of the derived graph
	fwd   *onnx.Model
	// lock is the run directory's lock when New took it (Close releases
	// it); nil without Out or when the caller passed Config.Lock.
	lock *RunLock
	// prov is what the run trains on, provJSON its JSON (state.bin's
	// provenance); set when Out is.
	prov     provenance
	provJSON []byte

	// The model's state: the slices are bound as the sessions' inputs
	// (Options.Shared), so the attack and train graphs read them in place.
	params, stats []graphs.Tensor
	opt           *optim.SGD
	sched         optim.Schedule

	attack, train *session
	kl            *session // trades: the inner maximization's graph
	// gradalign: the attack graph differentiated again (DeriveHVP), its
	// seed.grad.x and grad2.<param> (in params order), and ∇ₓℓ(x) kept
	// while the attack graph runs at x+η.
	hvp      *session
	hvpSeed  []float32
	hvpGrad2 [][]float32
	g1       []float32
	step     func() error // the method's step

	loader *dataset.Loader
	pcg    *rand.PCG
	rng    *rand.Rand
	// noise, set only by tests, fills the random draw of a TRADES or
	// GradAlign step (draw) in place of rng, so that a step can be checked
	// against a reference that supplies its own draw.
	noise func(d []float32)

	// Minibatch buffers: the clean batch and the input perturbation.
	x     []float32
	y     []int64
	delta []float32

	// runState is where the run stands (position, accumulators, best
	// probe, history); state.bin saves it.
	runState

	probe   *prober
	metrics *metricsLog // nil without Out
	info    StepInfo    // given to Hooks.OnStep
	times   StepTimes   // of Step (bench.go)
	closed  bool
}

// New checks cfg, derives the graphs the method needs (once), creates their
// ONNX Runtime sessions with the parameters shared between them, and, with
// cfg.Resume, restores the state saved in cfg.Out. ort.Init must have been
// called.
//
// With cfg.Out, New first takes the run directory's lock (LockRun; unless
// cfg.Lock holds it already), which the Trainer keeps until Close. A fresh
// run refuses a directory that holds another run's files (ErrRunExists)
// unless cfg.Overwrite is set; then it removes them, but only once the
// settings are valid and the graphs derived, so that a failing New leaves
// the old run as it was. See docs/run-directory.md.
func New(cfg Config) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, _ := parseMethod(cfg.Method)
	t := &Trainer{cfg: cfg, m: m, fwd: cfg.Forward, graph: map[string]string{}}
	made := false // New made cfg.Out
	if cfg.Out != "" {
		var err error
		if made, err = t.lockRun(); err != nil {
			return nil, err
		}
	}
	if err := t.init(); err != nil {
		t.Close()
		if made {
			os.Remove(cfg.Out) // only if empty: nothing was written
		}
		return nil, err
	}
	return t, nil
}

// init is New after the lock.
func (t *Trainer) init() error {
	cfg := &t.cfg
	if cfg.Out != "" && !cfg.Resume {
		old, err := runFiles(cfg.Out, false)
		if err != nil {
			return err
		}
		if len(old) > 0 && !cfg.Overwrite {
			return fmt.Errorf("orchestrator: %w: %s holds %s of an earlier run: resume it (Config.Resume), replace it (Config.Overwrite) or choose another Out",
				ErrRunExists, cfg.Out, strings.Join(old, ", "))
		}
	}
	if t.m.fam == slat {
		t.taps = cfg.Taps
		if len(t.taps) == 0 {
			if v, ok := cfg.Forward.Metadata(contract.MetaTaps); ok && v != "" {
				t.taps = contract.SplitList(v)
			}
		}
		if len(t.taps) == 0 {
			return errors.New("orchestrator: slat needs taps: the forward graph has no slatrun.taps metadata, so set Config.Taps to the latent tensors to perturb")
		}
	}
	t.r = resolve(cfg, t.m, t.taps)
	if t.r.BatchesEpoch == 0 {
		return fmt.Errorf("orchestrator: %d training examples make no full batch of %d", cfg.Train.N, cfg.Batch)
	}
	if err := t.setup(); err != nil {
		return err
	}
	if cfg.Out == "" {
		return nil
	}
	if err := t.fingerprint(); err != nil {
		return err
	}
	if cfg.Resume {
		return t.restore()
	}
	removed, err := clearRun(cfg.Out)
	if len(removed) > 0 {
		t.logf("removed the earlier run's %s from %s", strings.Join(removed, ", "), cfg.Out)
	}
	if err != nil {
		return err
	}
	t.metrics = newMetricsLog(cfg.Out)
	return t.writeConfig()
}

// lockRun takes the lock of the run directory, making the directory for a
// fresh run (made reports whether it did), or checks the one in
// Config.Lock.
func (t *Trainer) lockRun() (made bool, err error) {
	dir := t.cfg.Out
	if t.cfg.Lock != nil {
		if !t.cfg.Lock.held(dir) {
			return false, fmt.Errorf("orchestrator: Config.Lock is not a held lock of %s (it was taken on %s)", dir, t.cfg.Lock.Dir())
		}
		return false, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if t.cfg.Resume {
			return false, fmt.Errorf("orchestrator: %w: run directory %s does not exist", ErrState, dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("orchestrator: run directory: %w", err)
		}
		made = true
	}
	l, err := LockRun(dir)
	if err != nil {
		if made {
			os.Remove(dir)
		}
		return false, err
	}
	t.lock = l
	return made, nil
}

// fingerprint computes the run's provenance: the forward graph's hash and
// the data's fingerprint.
func (t *Trainer) fingerprint() error {
	fb, err := t.fwd.Encode()
	if err != nil {
		return fmt.Errorf("orchestrator: encode the forward graph: %w", err)
	}
	sum := sha256.Sum256(fb)
	t.prov = provenance{Forward: hex.EncodeToString(sum[:]), Data: fingerprintData(t.cfg.Train, t.cfg.Holdout)}
	if t.provJSON, err = json.Marshal(t.prov); err != nil {
		return fmt.Errorf("orchestrator: encode the provenance: %w", err)
	}
	return nil
}

// setup derives the graphs and builds sessions, optimizer, loader and
// buffers.
func (t *Trainer) setup() error {
	cfg, B := &t.cfg, t.cfg.Batch
	var err error
	t.params, t.stats, err = graphs.Parameters(cfg.Forward)
	if err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	if len(t.params) == 0 {
		return errors.New("orchestrator: the forward graph has no trainable parameters")
	}
	if err := cfg.Forward.CheckFinite(); err != nil {
		return fmt.Errorf("orchestrator: the forward graph's %w, so there is nothing to train from", err)
	}
	// The Go-side storage of the model: fresh copies, bound to every
	// session that reads them.
	shared := map[string][]float32{}
	for _, list := range [][]graphs.Tensor{t.params, t.stats} {
		for i := range list {
			list[i].Data = append([]float32(nil), list[i].Data...)
			shared[list[i].Name] = list[i].Data
		}
	}
	opts := cfg.Runtime
	opts.Batch, opts.Shared, opts.Outputs = B, shared, nil

	noTaps := []string{} // not nil: nil would mean the forward's default taps
	taps := noTaps
	if t.m.fam == slat {
		taps = t.taps
	}
	if t.m.fam != standard && t.m.fam != free && t.m.fam != trades {
		tapRange := t.m.fam == slat && t.r.LatentScale == LatentScaleRange
		s, err := t.session("attack", graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: taps, TapRange: tapRange, TapL1: len(taps) > 0}, opts)
		if err != nil {
			return err
		}
		t.attack = bindSession(s, taps, contract.GradPrefix, true, t.stats)
		if tapRange {
			for _, tap := range taps {
				t.attack.ranges = append(t.attack.ranges, s.Float(contract.RangeName(tap)))
			}
		}
		for _, tap := range taps {
			t.attack.l1 = append(t.attack.l1, s.Float(contract.L1Name(tap)))
		}
	}
	trainSpec := graphs.Spec{Kind: graphs.Train, Batch: B, Taps: taps,
		NoDomainClip: !cfg.DomainClip, InputGrad: t.m.fam == free}
	if t.m.fam == trades {
		s, err := t.session("kl", graphs.Spec{Kind: graphs.KL, Batch: B}, opts)
		if err != nil {
			return err
		}
		t.kl = bindSession(s, nil, "", true, nil)
		trainSpec = graphs.Spec{Kind: graphs.TRADES, Batch: B, Beta: t.r.TRADESBeta}
	}
	if t.m.fam == gradalign {
		s, err := t.session("hvp", graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: noTaps}, opts)
		if err != nil {
			return err
		}
		t.hvp = bindSession(s, nil, "", true, t.stats)
		t.hvpSeed = s.Float(contract.SeedName(contract.InputGrad))
		for _, p := range t.params {
			t.hvpGrad2 = append(t.hvpGrad2, s.Float(contract.Grad2Name(p.Name)))
		}
	}
	s, err := t.session("train", trainSpec, opts)
	if err != nil {
		return err
	}
	t.train = bindSession(s, taps, contract.DeltaPrefix, t.m.fam == free, t.stats)
	if err := t.checkData(s); err != nil {
		return err
	}

	grads := make([][]float32, len(t.params))
	values := make([][]float32, len(t.params))
	for i, p := range t.params {
		values[i] = p.Data
		grads[i] = s.Float(contract.GradName(p.Name))
	}
	if t.opt, err = optim.NewSGD(values, grads, cfg.WeightDecay); err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	t.sched = optim.Schedule{Kind: cfg.Schedule, LR: float64(cfg.LR), Momentum: float64(cfg.Momentum),
		BaseMomentum: float64(cfg.BaseMomentum), Steps: t.r.TotalSteps,
		StepsPerEpoch: t.r.BatchesEpoch * t.r.Replays}

	t.loader = dataset.NewLoader(cfg.Train, B, true, cfg.Seed)
	t.loader.DropLast = true
	t.loader.Augment = cfg.Augment
	t.pcg = rand.NewPCG(cfg.Seed, streamTrain)
	t.rng = rand.New(t.pcg)
	d := cfg.Train.C * cfg.Train.H * cfg.Train.W
	t.x = make([]float32, B*d)
	t.y = make([]int64, B)
	t.delta = make([]float32, B*d)
	if t.m.fam == gradalign {
		t.g1 = make([]float32, B*d)
	}

	t.runState = newRunState(len(t.taps))
	t.info.TapGradL1 = make([]float64, len(t.taps))

	switch t.m.fam {
	case standard:
		t.step = t.stepStandard
	case fgsm, fgsmRS, nfgsm:
		t.step = t.stepSingle
	case pgd:
		t.step = t.stepPGD
	case free:
		t.step = t.stepFree
	case slat:
		t.step = t.stepSLAT
	case trades:
		t.step = t.stepTRADES
	case gradalign:
		t.step = t.stepGradAlign
	}
	if cfg.Holdout != nil && t.r.ProbeN > 0 {
		if t.probe, err = newProber(cfg.Forward, t.Weights(), cfg.Holdout.Slice(0, t.r.ProbeN), min(B, t.r.ProbeN), t.r, cfg.Runtime); err != nil {
			return err
		}
	}
	return nil
}

// session derives one graph and opens a session over it.
func (t *Trainer) session(name string, spec graphs.Spec, opts ort.Options) (*ort.Session, error) {
	spec.NCHWcBlock = opts.NCHWc()
	spec.Kernels = opts.OneDNN()
	derive := graphs.Derive
	if name == "hvp" { // differentiated again: plain form only (docs/second-order.md)
		spec.NCHWcBlock, spec.Kernels = 0, false
		derive = graphs.DeriveHVP
	}
	g, err := derive(t.cfg.Forward, spec)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: derive the %s graph: %w", name, err)
	}
	b, err := g.Encode()
	if err != nil {
		return nil, fmt.Errorf("orchestrator: encode the %s graph: %w", name, err)
	}
	sum := sha256.Sum256(b)
	t.graph[name] = hex.EncodeToString(sum[:])
	if opts.Profile != "" { // one profile per session
		opts.Profile += "-" + name
	}
	s, err := ort.NewSession(g, opts)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: the %s graph: %w", name, err)
	}
	return s, nil
}

// checkData checks the data against the train graph's x and logits.
func (t *Trainer) checkData(s *ort.Session) error {
	xs, ls := s.Shape(contract.Input), s.Shape(contract.Logits)
	if len(xs) != 4 || len(ls) != 2 {
		return fmt.Errorf("orchestrator: the model takes x %v and gives logits %v; slatrun trains image classifiers (x [N,C,H,W], logits [N,K])", xs, ls)
	}
	for _, set := range []*dataset.Set{t.cfg.Train, t.cfg.Holdout} {
		if set == nil {
			continue
		}
		if err := dataset.CheckShape(set, int(xs[1]), int(xs[2]), int(xs[3])); err != nil {
			return fmt.Errorf("orchestrator: %w", err)
		}
		for i, y := range set.Y {
			if y < 0 || y >= ls[1] {
				return fmt.Errorf("orchestrator: label %d of example %d is outside the model's %d classes", y, i, ls[1])
			}
		}
	}
	return nil
}

// Close releases the ONNX Runtime sessions and the run directory's lock
// (unless it came in Config.Lock). It is safe to call twice.
func (t *Trainer) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, s := range []*session{t.attack, t.kl, t.hvp, t.train} {
		if s != nil {
			errs = append(errs, s.s.Close())
		}
	}
	errs = append(errs, t.metrics.close(), t.lock.Unlock())
	return errors.Join(errs...)
}

// Weights returns the current parameters and BN statistics by name (the
// Trainer's own slices; do not modify them while it runs).
func (t *Trainer) Weights() map[string][]float32 {
	w := make(map[string][]float32, len(t.params)+len(t.stats))
	for _, list := range [][]graphs.Tensor{t.params, t.stats} {
		for _, p := range list {
			w[p.Name] = p.Data
		}
	}
	return w
}

// Checkpoint returns the forward graph with the current weights and BN
// statistics (what model.onnx holds).
func (t *Trainer) Checkpoint() (*onnx.Model, error) {
	m, err := graphs.WithWeights(t.fwd, t.Weights())
	if err != nil {
		return nil, fmt.Errorf("orchestrator: checkpoint: %w", err)
	}
	return m, nil
}

// Taps returns the latent tensors SLAT perturbs (nil for other methods).
func (t *Trainer) Taps() []string { return t.taps }

// GraphHashes returns the sha256 (hex) of each derived graph's bytes, by
// kind ("attack", "train"; trades: "kl", "train"; gradalign: "attack",
// "hvp", "train").
func (t *Trainer) GraphHashes() map[string]string { return t.graph }

// configFile is config.json.
type configFile struct {
	Settings    resolved          `json:"settings"`
	Model       string            `json:"model,omitempty"`
	Params      int               `json:"params"`
	ONNXRuntime string            `json:"onnxruntime"`
	Provider    string            `json:"provider"`
	Threads     int               `json:"threads"`
	Spinning    bool              `json:"spinning"`
	NCHWcBlock  int               `json:"nchwc_block"` // 0: plain NCHW convolutions
	Kernels     string            `json:"kernels"`     // onednn (onednn-direct: no Winograd): slatrun's oneDNN kernels; ort: ONNX Runtime's only
	Graphs      map[string]string `json:"graphs_sha256"`
	Forward     string            `json:"forward_sha256"`
	Data        configData        `json:"data"`
}

// configData is config.json's data: where it came from (Config.DataSpec)
// and its fingerprint.
type configData struct {
	Spec string `json:"spec,omitempty"`
	dataFingerprint
}

// writeConfig writes config.json; t.fingerprint has run.
func (t *Trainer) writeConfig() error {
	n := 0
	for _, p := range t.params {
		n += len(p.Data)
	}
	provider := t.cfg.Runtime.Provider
	if provider == "" {
		provider = "cpu"
	}
	model, _ := t.fwd.Metadata(contract.MetaModel)
	c := configFile{Settings: t.r, Model: model, Params: n, ONNXRuntime: ort.Version(),
		Provider: provider, Threads: t.cfg.Runtime.Threads, Spinning: t.cfg.Runtime.Spinning,
		NCHWcBlock: t.cfg.Runtime.NCHWc(), Kernels: kernelsName(t.cfg.Runtime), Graphs: t.graph, Forward: t.prov.Forward,
		Data: configData{Spec: t.cfg.DataSpec, dataFingerprint: t.prov.Data}}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("orchestrator: encode %s: %w", ConfigFile, err)
	}
	return t.write(ConfigFile, append(b, '\n'))
}

// write writes a file of the run directory atomically.
func (t *Trainer) write(name string, data []byte) error {
	if err := onnx.WriteFileAtomic(filepath.Join(t.cfg.Out, name), data); err != nil {
		return fmt.Errorf("orchestrator: write %s: %w", name, err)
	}
	return nil
}

// kernelsName names the kernel set the sessions of opts run: "onednn" when
// the derived graphs use slatrun's oneDNN kernels ("onednn-direct" with
// Options.DirectConv), "ort" otherwise.
func kernelsName(opts ort.Options) string {
	switch {
	case opts.OneDNN() && opts.DirectConv:
		return "onednn-direct"
	case opts.OneDNN():
		return "onednn"
	}
	return "ort"
}
