package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/orchestrator"
)

func init() {
	register(command{name: "bench", summary: "time training steps per method (ONNX Runtime passes, Go side, allocations)", run: runBench})
}

// benchMethod is one method's trainer and its per-step measurements.
type benchMethod struct {
	name                  string
	tr                    *orchestrator.Trainer
	total, attack, train  []float64 // ms per measured step
	goSide, cpu           []float64
	attackPasses, mallocs uint64
	trainPasses, measured int
	faults                int64 // minor page faults of the process
}

// benchResult is one JSON line of slatrun bench (tools/bench.sh reads it;
// the keys match tools/peer/peer.py's where they mean the same).
type benchResult struct {
	Side         string  `json:"side"`
	Model        string  `json:"model"`
	Method       string  `json:"method"`
	Batch        int     `json:"batch"`
	Threads      int     `json:"threads"`
	MedianMs     float64 `json:"median_ms"`
	P10Ms        float64 `json:"p10_ms"`
	P90Ms        float64 `json:"p90_ms"`
	MinMs        float64 `json:"min_ms"`
	ImagesPerS   float64 `json:"images_per_s"`
	Steps        int     `json:"steps"`
	Warmup       int     `json:"warmup"`
	CPUMedianMs  float64 `json:"cpu_median_ms"`
	AttackMs     float64 `json:"attack_ms"`      // median per step, all attack passes
	AttackPasses float64 `json:"attack_passes"`  // per step
	AttackPassMs float64 `json:"attack_pass_ms"` // attack_ms / attack_passes
	TrainMs      float64 `json:"train_ms"`       // median per step, all train passes
	TrainPasses  float64 `json:"train_passes"`
	GoMs         float64 `json:"go_ms"`  // median per step outside ONNX Runtime
	GoPct        float64 `json:"go_pct"` // go_ms / median_ms, in percent
	AllocsStep   float64 `json:"allocs_per_step"`
	FaultsStep   float64 `json:"page_faults_per_step"` // minor faults of the process
	Spinning     bool    `json:"spinning"`
	NCHWc        int     `json:"nchwc_block"`
	OptLevel     string  `json:"opt_level"`
	ORT          string  `json:"onnxruntime"`
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench --model convnet|preactresnet18 [--methods LIST] [--batch N] [--steps N] [--warmup W] [--threads T] [--json]", stderr)
	model := fs.String("model", "convnet", "zoo model ("+strings.Join(zoo.Names(), ", ")+") or a forward ONNX file")
	methods := fs.String("methods", "standard,fgsm-rs,slat,pgd-7", "comma-separated training methods: "+orchestrator.Methods)
	batch := fs.Int("batch", 128, "minibatch size")
	steps := fs.Int("steps", 10, "measured steps per method")
	warmup := fs.Int("warmup", 3, "unmeasured steps per method first")
	eps := float32(-1)
	fracVar(fs, &eps, "eps", -1, true, "input budget (auto: 0.1, or 8/255 for 3-channel models)")
	seed := fs.Uint64("seed", 0, "seed of the weights, the data and the random starts")
	sequential := fs.Bool("sequential", false, "run the methods one after another instead of interleaving their steps (less memory)")
	optLevel := fs.String("opt-level", "all", "ONNX Runtime graph optimization level: all, extended, basic or none")
	profile := fs.String("profile", "", "write ONNX Runtime profiles (PREFIX-METHOD-attack_*.json, ...-train_*.json) when done")
	jsonOut := fs.Bool("json", false, "one JSON object per method and line")
	var rt runtimeFlags
	rt.add(fs)
	var z zooFlags
	z.add(fs, false)
	limit(fs, atLeastOne, "batch", "steps")
	limit(fs, nonNegative, "warmup")
	limit(fs, epsBound, "eps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("bench: unexpected arguments %q", fs.Args())
	}
	var names []string
	for _, m := range strings.Split(*methods, ",") {
		if m = strings.TrimSpace(m); m != "" {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return usagef("bench: --methods is empty")
	}
	if *profile != "" {
		// ONNX Runtime writes the profiles only when the sessions close,
		// and says nothing if it cannot: check the place now.
		if err := checkOutput("profile", *profile, *profile+"-"+names[0]+"-train.json"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	z.seed = *seed
	if err := rt.init(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fwd, err := loadModel(*model, &z)
	if err != nil {
		return err
	}
	if err := checkFinite(fwd, *model); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	var in []*onnxpb.TensorShapeProto_Dimension
	if ins := fwd.Graph().GetInput(); len(ins) > 0 {
		in = ins[0].GetType().GetTensorType().GetShape().GetDim()
	}
	if len(in) != 4 {
		return fmt.Errorf("bench: the model's input is not [N, C, H, W]")
	}
	c, h, w := int(in[1].GetDimValue()), int(in[2].GetDimValue()), int(in[3].GetDimValue())
	if c < 1 || h < 1 || w < 1 {
		return fmt.Errorf("bench: the model's input is [N, %s, %s, %s]; bench needs fixed C, H and W", dimName(in[1]), dimName(in[2]), dimName(in[3]))
	}
	// The four synthetic minibatches below, as float32.
	if bytes := int64(nbBench) * int64(*batch) * int64(c*h*w) * 4; bytes > dataset.SyntheticMaxBytes {
		return usagef("bench: --batch %d: %d minibatches of %d×%d×%d images are %d bytes of float32, more than the %d bytes of synthetic data slatrun makes",
			*batch, nbBench, c, h, w, bytes, int64(dataset.SyntheticMaxBytes))
	}
	if eps < 0 {
		eps = 0.1
		if c == 3 {
			eps = 8.0 / 255
		}
	}
	// Four fixed synthetic minibatches, cycled (as the peer does); the
	// trainers' own loaders are not used.
	const nb = nbBench
	set := dataset.Synthetic(nb**batch, c, h, w, 10, *seed)
	d := c * h * w
	total := *warmup + *steps
	mkConfig := func(method string) orchestrator.Config {
		cfg := orchestrator.DefaultConfig()
		cfg.Forward, cfg.Train, cfg.Method = fwd, set, method
		cfg.Batch, cfg.Eps, cfg.Seed, cfg.LogEvery = *batch, eps, *seed, 0
		cfg.Epochs = max(1, (total+nb-1)/nb) // a schedule long enough for every step
		if strings.HasPrefix(method, "free-") {
			cfg.Epochs *= 16
		}
		cfg.Runtime = rt.options()
		cfg.Runtime.OptLevel = *optLevel
		if *profile != "" {
			cfg.Runtime.Profile = *profile + "-" + method
		}
		return cfg
	}
	newMethod := func(name string) (*benchMethod, error) {
		tr, err := orchestrator.New(mkConfig(name))
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		return &benchMethod{name: name, tr: tr,
			total: make([]float64, 0, *steps), attack: make([]float64, 0, *steps),
			train: make([]float64, 0, *steps), goSide: make([]float64, 0, *steps),
			cpu: make([]float64, 0, *steps)}, nil
	}
	var ms runtime.MemStats
	var ru syscall.Rusage
	cpuNow := func() time.Duration {
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// step runs step i of m, measuring it after the warm-up.
	step := func(m *benchMethod, i int) error {
		k := i % nb
		x, y := set.X[k**batch*d:(k+1)**batch*d], set.Y[k**batch:(k+1)**batch]
		before := m.tr.Times()
		runtime.ReadMemStats(&ms)
		mallocs := ms.Mallocs
		c0 := cpuNow()
		f0 := ru.Minflt
		if err := m.tr.Step(x, y); err != nil {
			return fmt.Errorf("bench: %s: %w", m.name, err)
		}
		cpu := cpuNow() - c0
		faults := ru.Minflt - f0
		runtime.ReadMemStats(&ms)
		if i < *warmup {
			return nil
		}
		after := m.tr.Times()
		msOf := func(d time.Duration) float64 { return float64(d) / 1e6 }
		m.total = append(m.total, msOf(after.Total-before.Total))
		m.attack = append(m.attack, msOf(after.Attack-before.Attack))
		m.train = append(m.train, msOf(after.Train-before.Train))
		m.goSide = append(m.goSide, msOf(after.Go()-before.Go()))
		m.cpu = append(m.cpu, msOf(cpu))
		m.attackPasses += uint64(after.AttackPasses - before.AttackPasses)
		m.trainPasses += after.TrainPasses - before.TrainPasses
		m.mallocs += ms.Mallocs - mallocs
		m.faults += faults
		m.measured++
		return nil
	}
	var profilesBefore map[string]bool
	if *profile != "" {
		profilesBefore = profileFiles(*profile, names)
	}
	// The steps allocate nothing, so the collector has nothing to do while
	// they run; off (with an explicit collection after each setup), its
	// two-minute forced cycle cannot start its workers (which allocate)
	// inside a long measured step and be counted as the step's.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var results []*benchMethod
	defer func() {
		for _, m := range results {
			m.tr.Close()
		}
	}()
	if *sequential {
		for _, name := range names {
			m, err := newMethod(name)
			if err != nil {
				return err
			}
			results = append(results, m)
			runtime.GC()
			for i := range total {
				if err := step(m, i); err != nil {
					return err
				}
			}
			if *profile != "" || len(names) > 1 { // free the sessions (and write profiles)
				if err := m.tr.Close(); err != nil {
					return fmt.Errorf("bench: %s: %w", m.name, err)
				}
			}
		}
	} else {
		for _, name := range names {
			m, err := newMethod(name)
			if err != nil {
				return err
			}
			results = append(results, m)
		}
		runtime.GC()
		for i := range total {
			for _, m := range results {
				if err := step(m, i); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range results {
		if err := m.tr.Close(); err != nil { // writes the profiles
			return fmt.Errorf("bench: %s: %w", m.name, err)
		}
	}
	if *profile != "" {
		written, err := profilesSince(*profile, names, profilesBefore)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %d profiles: %s\n", len(written), strings.Join(written, ", "))
	}
	modelName, _ := fwd.Metadata(contract.MetaModel)
	if modelName == "" {
		modelName = *model
	}
	var out []benchResult
	for _, m := range results {
		n := float64(m.measured)
		med := median(m.total)
		r := benchResult{Side: "slatrun", Model: modelName, Method: m.name, Batch: *batch, Threads: rt.threads,
			MedianMs: round3(med), P10Ms: round3(percentile(m.total, 10)), P90Ms: round3(percentile(m.total, 90)),
			MinMs: round3(slices.Min(m.total)), ImagesPerS: round3(float64(*batch) / (med / 1e3)),
			Steps: m.measured, Warmup: *warmup, CPUMedianMs: round3(median(m.cpu)),
			AttackMs: round3(median(m.attack)), AttackPasses: float64(m.attackPasses) / n,
			TrainMs: round3(median(m.train)), TrainPasses: float64(m.trainPasses) / n,
			GoMs: round3(median(m.goSide)), AllocsStep: float64(m.mallocs) / n, FaultsStep: float64(m.faults) / n,
			Spinning: rt.spinning, OptLevel: *optLevel, NCHWc: rt.options().NCHWc(), ORT: ort.Version()}
		if r.AttackPasses > 0 {
			r.AttackPassMs = round3(r.AttackMs / r.AttackPasses)
		}
		r.GoPct = round3(100 * r.GoMs / med)
		out = append(out, r)
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		for _, r := range out {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(stdout, "# slatrun bench: %s, batch %d, threads %d, spinning %v, opt level %s, %d steps after %d warm-up, onnxruntime %s\n",
		modelName, *batch, rt.threads, rt.spinning, *optLevel, *steps, *warmup, ort.Version())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tmedian_ms\tp10_ms\tp90_ms\tcpu_ms\timages/s\tattack_ms\t(passes)\ttrain_ms\tgo_ms\tgo_%\tallocs/step\tfaults/step\t")
	for _, r := range out {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%g\t%.1f\t%.2f\t%.2f\t%g\t%.0f\t\n", r.Method, r.MedianMs, r.P10Ms, r.P90Ms,
			r.CPUMedianMs, r.ImagesPerS, r.AttackMs, r.AttackPasses, r.TrainMs, r.GoMs, r.GoPct, r.AllocsStep, r.FaultsStep)
	}
	return tw.Flush()
}

// nbBench is the number of synthetic minibatches bench cycles through.
const nbBench = 4

// dimName is a dimension as the model gives it: its size or its symbol.
func dimName(d *onnxpb.TensorShapeProto_Dimension) string {
	if p := d.GetDimParam(); p != "" {
		return p
	}
	return strconv.FormatInt(d.GetDimValue(), 10)
}

// profileFiles returns the ONNX Runtime profiles of the methods under
// prefix (PREFIX-METHOD-SESSION_TIME.json) that exist now.
func profileFiles(prefix string, methods []string) map[string]bool {
	files := map[string]bool{}
	for _, m := range methods {
		matches, _ := filepath.Glob(globEscape(prefix+"-"+m+"-") + "*.json")
		for _, f := range matches {
			files[f] = true
		}
	}
	return files
}

// profilesSince returns the profiles written since before, and an error
// naming each method that has none: ONNX Runtime does not report a
// profile it failed to write.
func profilesSince(prefix string, methods []string, before map[string]bool) ([]string, error) {
	var written, missing []string
	for _, m := range methods {
		n := 0
		for f := range profileFiles(prefix, []string{m}) {
			if !before[f] {
				written = append(written, f)
				n++
			}
		}
		if n == 0 {
			missing = append(missing, m)
		}
	}
	slices.Sort(written)
	if len(missing) > 0 {
		return written, fmt.Errorf("bench: --profile %s: ONNX Runtime wrote no profile for %s (want %s-METHOD-*.json)", prefix, strings.Join(missing, ", "), prefix)
	}
	return written, nil
}

// globEscape escapes the pattern characters of filepath.Match in s.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func median(v []float64) float64 { return percentile(v, 50) }

// percentile interpolates linearly between order statistics, like numpy.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	pos := p / 100 * float64(len(s)-1)
	i := int(pos)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
