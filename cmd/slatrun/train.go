package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/orchestrator"
)

func init() {
	register(command{name: "train", summary: "train a model with SLAT or a baseline; writes a run directory", run: runTrain})
}

// argsFile keeps the command line of a run, so --resume DIR alone continues it.
const argsFile = orchestrator.ArgsFile

func runTrain(args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("train", "train --model (NAME | forward.onnx) --data SPEC --method METHOD [flags]", stderr)
	var tf trainFlags
	tf.add(fs)
	cfg := &tf.cfg
	out := fs.StringP("out", "o", "", "output directory: the run directory (default runs/MODEL-METHOD)")
	resume := fs.String("resume", "", "continue the run saved in this directory (its flags are reused; later flags override)")
	overwrite := fs.Bool("overwrite", false, "start afresh even if --out already holds a run")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *resume != "" && *overwrite {
		return usagef("train: --resume continues the run in %s and --overwrite replaces it: pass one of them", *resume)
	}
	// The run directory's lock is held from before its files are read or
	// written until the run ends (docs/run-directory.md).
	var lock *orchestrator.RunLock
	if *resume != "" {
		if lock, err = orchestrator.LockRun(*resume); err != nil {
			return fmt.Errorf("train: --resume %s: %w", *resume, err)
		}
		defer lock.Unlock()
		saved, err := os.ReadFile(filepath.Join(*resume, argsFile))
		if err != nil {
			return fmt.Errorf("train: --resume %s: %w (is it a slatrun run directory?)", *resume, err)
		}
		var prev []string
		if err := json.Unmarshal(saved, &prev); err != nil {
			return fmt.Errorf("train: --resume %s: %s is corrupt: %w", *resume, argsFile, err)
		}
		// Saved flags first, then this command line on top.
		if err := parse(fs, append(prev, args...)); err != nil {
			return err
		}
		*out, cfg.Resume = *resume, true
		*overwrite = false // in case an older slatrun saved it
	}
	if fs.NArg() > 0 {
		return usagef("train: unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		*out = filepath.Join("runs", strings.TrimSuffix(filepath.Base(tf.model), ".onnx")+"-"+cfg.Method)
	}
	if lock == nil {
		_, serr := os.Stat(*out)
		made := errors.Is(serr, os.ErrNotExist)
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		if lock, err = orchestrator.LockRun(*out); err != nil {
			if made {
				os.Remove(*out)
			}
			return fmt.Errorf("train: %w", err)
		}
		defer func() {
			lock.Unlock()
			if made && err != nil {
				os.Remove(*out) // only if empty: nothing was written
			}
		}()
		if !*overwrite { // before the data loads (New checks again)
			if err := checkNoRun(*out); err != nil {
				return err
			}
		}
	}
	if err := tf.build(dataset.Open); err != nil {
		return err
	}
	// With --overwrite, New removes the old run's files only once the new
	// run's settings are valid and its graphs derived.
	cfg.Out, cfg.Lock, cfg.Overwrite = *out, lock, *overwrite
	heldN := 0
	if cfg.Holdout != nil {
		heldN = cfg.Holdout.N
	}

	bar := newProgress(stdout, isTerminal(stdout))
	cfg.Logger = bar
	cfg.Hooks.OnStep = func(s orchestrator.StepInfo) error { bar.step(s); return nil }

	fmt.Fprintf(stdout, "slatrun train: %s on %s (%d examples, %d held out), method %s, ε=%.4g, %d epochs, batch %d → %s\n",
		tf.model, tf.data, cfg.Train.N, heldN, cfg.Method, cfg.Eps, cfg.Epochs, cfg.Batch, *out)
	tr, err := orchestrator.New(*cfg)
	if errors.Is(err, orchestrator.ErrRunExists) {
		if cerr := checkNoRun(*out); cerr != nil {
			return cerr
		}
	}
	if err != nil {
		return err
	}
	defer tr.Close()
	if !cfg.Resume {
		b, _ := json.Marshal(withoutResume(args))
		if err := onnx.WriteFileAtomic(filepath.Join(*out, argsFile), b); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := tr.Run(ctx)
	bar.clear()
	if err != nil {
		if errors.Is(err, orchestrator.ErrInterrupted) {
			fmt.Fprintf(stdout, "interrupted: checkpoint saved in %s; continue with: slatrun train --resume %s\n", *out, *out)
		}
		return err
	}
	writeSummary(stdout, res)
	return nil
}

// trainFlags are the flags of "slatrun train" that configure a run (all but
// --out, --resume and --overwrite). "slatrun sweep" defines the same flags
// and parses one command line per cell of its grid.
type trainFlags struct {
	cfg     orchestrator.Config
	model   string
	data    string
	taps    string
	augment string
	trainN  int
	valN    int
	rt      runtimeFlags
	z       zooFlags
}

// add defines the flags on fs, with DefaultConfig's values as defaults.
func (tf *trainFlags) add(fs *pflag.FlagSet) {
	tf.cfg = orchestrator.DefaultConfig()
	cfg := &tf.cfg
	fs.StringVar(&tf.model, "model", "convnet", "zoo model ("+strings.Join(zoo.Names(), ", ")+") or a forward ONNX file")
	fs.StringVar(&tf.data, "data", "fashion-mnist", "training data: fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:CxHxW] (C ≤ 16, H, W ≤ 1024, 2000×C×H×W float32 ≤ 1 GiB)")
	fs.StringVar(&cfg.Method, "method", cfg.Method, "training method: "+orchestrator.Methods)
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "epochs")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "minibatch size")
	fracVar(fs, &cfg.LR, "lr", cfg.LR, false, "peak (cyclic, cosine) or initial (piecewise, constant) learning rate")
	fs.StringVar(&cfg.Schedule, "schedule", cfg.Schedule, "learning-rate schedule: cyclic, piecewise, cosine or constant")
	fracVar(fs, &cfg.Momentum, "momentum", cfg.Momentum, false, "SGD momentum (cyclic: the top of the momentum cycle)")
	fracVar(fs, &cfg.WeightDecay, "weight-decay", cfg.WeightDecay, false, "weight decay")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of every random choice (data order, starts, initial weights of zoo models)")
	fracVar(fs, &cfg.Eps, "eps", cfg.Eps, false, "L∞ budget of the input perturbation in pixel units, e.g. 8/255 or 0.1")
	fracVar(fs, &cfg.InputStep, "input-step", cfg.InputStep, true, "input step ("+orchestrator.AutoHelp("input-step")+")")
	fracVar(fs, &cfg.NoiseRadius, "noise-radius", cfg.NoiseRadius, true, "N-FGSM's uniform start half-width ("+orchestrator.AutoHelp("noise-radius")+")")
	fs.StringVar(&tf.taps, "taps", "", "SLAT: comma-separated latent tensors to perturb (default: the model's taps)")
	fracVar(fs, &cfg.LatentEta, "latent-eta", cfg.LatentEta, true, "SLAT: latent budget η in activation units ("+orchestrator.AutoHelp("latent-eta")+")")
	fracVar(fs, &cfg.LatentStep, "latent-step", cfg.LatentStep, true, "SLAT: latent step ("+orchestrator.AutoHelp("latent-step")+")")
	fracVar(fs, &cfg.LatentRadius, "latent-radius", cfg.LatentRadius, true, "SLAT: ±clip of the latent step ("+orchestrator.AutoHelp("latent-radius")+"; 0: no clip)")
	fracVar(fs, &cfg.TRADESBeta, "trades-beta", cfg.TRADESBeta, true, "TRADES: weight β of the KL term ("+orchestrator.AutoHelp("trades-beta")+")")
	fracVar(fs, &cfg.GradAlignLambda, "gradalign-lambda", cfg.GradAlignLambda, true, "GradAlign: weight λ of 1 − cos(∇ₓℓ(x), ∇ₓℓ(x+η)) ("+orchestrator.AutoHelp("gradalign-lambda")+")")
	fs.IntVar(&cfg.TRADESSteps, "trades-steps", cfg.TRADESSteps, "TRADES: inner PGD steps on the KL divergence (0: "+orchestrator.AutoHelp("trades-steps")+")")
	fs.StringVar(&cfg.LatentScale, "latent-scale", cfg.LatentScale, "SLAT: unit of --latent-eta, --latent-step and --latent-radius: abs (activation units) or range (fractions of each sample's and channel's activation range hi − lo at the tap)")
	fs.StringVar(&cfg.InputStart, "input-start", cfg.InputStart, "SLAT: start of the input step: zero (pass 1 at the clean x) or uniform (pass 1 at x+δ0, δ0 uniform in ±ε; the step from δ0 is clipped to ±ε, as FGSM-RS's)")
	fs.BoolVar(&cfg.DomainClip, "domain-clip", cfg.DomainClip, "SLAT: keep perturbed activations in the clean activation's per-channel range")
	fs.StringVar(&cfg.BNStats, "bn-stats", cfg.BNStats, "which passes update the BN running statistics: all (every training-mode pass, attack passes included, as the PyTorch reference) or train (the train passes only)")
	fs.StringVar(&tf.augment, "augment", "auto", "pad-crop and flip augmentation: on, off or auto (on for CIFAR)")
	fs.IntVar(&tf.trainN, "train-n", 0, "train on the first N training examples (0: all that are not held out)")
	fs.IntVar(&tf.valN, "val-n", 1000, "held-out training examples for the per-epoch PGD probe (0: no probe)")
	fs.IntVar(&cfg.Probe.Steps, "probe-steps", cfg.Probe.Steps, "PGD steps of the per-epoch probe")
	fs.IntVar(&cfg.LogEvery, "log-every", cfg.LogEvery, "write a metrics line every N steps (0: epochs only)")
	tf.rt.add(fs)
	tf.z.add(fs, false)
	limit(fs, atLeastOne, "epochs", "batch", "probe-steps")
	limit(fs, nonNegative, "weight-decay", "input-step", "noise-radius", "latent-eta", "latent-step", "latent-radius", "trades-beta", "trades-steps", "gradalign-lambda", "train-n", "val-n", "log-every")
	limit(fs, positive, "lr")
	limit(fs, unitOpen, "momentum")
	limit(fs, epsBound, "eps")
	aliases(fs, trainAliases)
}

// trainAliases are the old names of renamed training flags (see aliases).
var trainAliases = map[string]string{"wd": "weight-decay"}

// build completes tf.cfg from the parsed flags: it initializes ONNX Runtime,
// loads the model and the training data (through open), checks that they
// fit, and splits off the held-out slice. Out, Resume, Logger and Hooks are
// left to the caller.
func (tf *trainFlags) build(open func(spec, split string, seed uint64) (*dataset.Set, error)) error {
	cfg := &tf.cfg
	tf.z.seed = cfg.Seed
	cfg.Taps = parseTaps(tf.taps)
	if err := tf.rt.init(); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	cfg.Runtime = tf.rt.options()
	cfg.DataSpec = tf.data
	fwd, err := loadModel(tf.model, &tf.z)
	if err != nil {
		return err
	}
	cfg.Forward = fwd
	full, err := open(tf.data, "train", cfg.Seed)
	if err != nil {
		return err
	}
	if err := checkDataFitsModel(full, fwd); err != nil {
		return err
	}
	if tf.valN < 0 || tf.valN >= full.N {
		return usagef("train: --val-n %d must be in [0, %d)", tf.valN, full.N)
	}
	train, held := dataset.Split(full, tf.valN)
	if tf.trainN > 0 && tf.trainN < train.N {
		train = train.Slice(0, tf.trainN)
	}
	cfg.Train = train
	if held.N > 0 {
		cfg.Holdout = held
	}
	switch tf.augment {
	case "on":
		cfg.Augment = dataset.DefaultAugment()
	case "auto":
		if strings.HasPrefix(tf.data, "cifar") {
			cfg.Augment = dataset.DefaultAugment()
		}
	case "off":
	default:
		return usagef("train: --augment %q: want on, off or auto", tf.augment)
	}
	return nil
}

// checkNoRun returns a usage error if dir holds files of a run.
func checkNoRun(dir string) error {
	files, err := orchestrator.RunFiles(dir)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	switch {
	case len(files) == 0:
		return nil
	case slices.Contains(files, orchestrator.StateFile):
		return usagef("train: %s already holds a run: continue it with --resume %s, or pass --overwrite to replace it, or choose another --out", dir, dir)
	}
	return usagef("train: %s holds files of an earlier run that cannot be resumed (%s, but no %s): pass --overwrite to replace them, or choose another --out",
		dir, strings.Join(files, ", "), orchestrator.StateFile)
}

// withoutResume drops --resume and its value, and --overwrite, from a
// command line: what cli-args.json keeps for a later --resume.
func withoutResume(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--resume" {
			i++
			continue
		}
		if strings.HasPrefix(a, "--resume=") || a == "--overwrite" || strings.HasPrefix(a, "--overwrite=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// checkDataFitsModel compares the data's image shape with the model's input.
func checkDataFitsModel(s *dataset.Set, m *onnx.Model) error {
	for _, in := range onnx.Inspect(m).Inputs {
		if len(in.Shape) == 4 {
			return dataset.CheckShape(s, int(in.Shape[1]), int(in.Shape[2]), int(in.Shape[3]))
		}
	}
	return fmt.Errorf("the model has no [N,C,H,W] image input")
}

func writeSummary(w io.Writer, res *orchestrator.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "epoch\tloss\ttrain acc\tprobe clean\tprobe robust\ts/epoch\timg/s\t")
	for _, e := range res.Epochs {
		clean, robust := "-", "-"
		if e.Probe != nil {
			clean, robust = fmt.Sprintf("%.2f%%", 100*e.Probe.Clean), fmt.Sprintf("%.2f%%", 100*e.Probe.Robust)
		}
		flag := ""
		if e.Best {
			flag += " best"
		}
		if e.Catastrophic {
			flag += " COLLAPSE"
		}
		if e.Decayed {
			flag += " decay"
		}
		fmt.Fprintf(tw, "%d\t%.4f\t%.2f%%\t%s\t%s\t%.1f\t%.0f\t%s\n", e.Epoch, e.Loss, 100*e.Accuracy, clean, robust, e.Seconds, e.ImagesPerSec, flag)
	}
	tw.Flush()
	fmt.Fprintf(w, "done in %s; model.onnx", time.Duration(res.Seconds*float64(time.Second)).Round(time.Second))
	if res.BestEpoch > 0 {
		fmt.Fprintf(w, ", best.onnx (epoch %d: probe clean %.2f%%, robust %.2f%%)", res.BestEpoch, 100*res.BestClean, 100*res.BestRobust)
	}
	fmt.Fprintf(w, " in %s\n", res.Dir)
	if res.Catastrophic {
		fmt.Fprintln(w, "WARNING: catastrophic overfitting was detected (see metrics.jsonl)")
	}
}

// progress draws a one-line progress bar on a terminal and passes log lines
// through; elsewhere it only passes log lines.
type progress struct {
	w     io.Writer
	tty   bool
	shown bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

// Write prints a log line, clearing the bar first.
func (p *progress) Write(b []byte) (int, error) {
	p.clear()
	return p.w.Write(b)
}

func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

func (p *progress) step(s orchestrator.StepInfo) {
	if !p.tty {
		return
	}
	now := time.Now()
	if s.Step == 1 || p.start.IsZero() {
		p.start = now
	}
	if now.Sub(p.last) < 200*time.Millisecond && s.Step != s.StepsPerEpoch {
		return
	}
	p.last = now
	const width = 24
	filled := width * s.Step / max(1, s.StepsPerEpoch)
	bar := strings.Repeat("█", filled) + strings.Repeat("·", width-filled)
	el := now.Sub(p.start)
	eta := time.Duration(float64(el) / float64(s.Step) * float64(s.StepsPerEpoch-s.Step))
	ips := float64(s.Batch) / s.Duration.Seconds()
	fmt.Fprintf(p.w, "\r\033[Kepoch %d %s %d/%d loss %.4f acc %5.1f%% %5.0f img/s ETA %s",
		s.Epoch, bar, s.Step, s.StepsPerEpoch, s.Loss, 100*float64(s.Correct)/float64(max(1, s.Batch)), ips, eta.Round(time.Second))
	p.shown = true
}
