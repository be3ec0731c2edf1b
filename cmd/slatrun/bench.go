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
	"github.com/slatrun/slatrun/onnx"
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
	var f benchFlags
	if err := f.parse(args, stderr); err != nil {
		return err
	}
	b, err := newBench(&f)
	if err != nil {
		return err
	}
	var profilesBefore map[string]bool
	if f.profile != "" {
		profilesBefore = profileFiles(f.profile, f.names)
	}
	// The steps allocate nothing, so the collector has nothing to do while
	// they run; off (with an explicit collection after each setup), its
	// two-minute forced cycle cannot start its workers (which allocate)
	// inside a long measured step and be counted as the step's.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer b.close()
	if err := b.measure(); err != nil {
		return err
	}
	if f.profile != "" {
		written, err := profilesSince(f.profile, f.names, profilesBefore)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %d profiles: %s\n", len(written), strings.Join(written, ", "))
	}
	rep := b.report()
	results := rep.results(b.methods)
	if f.json {
		return writeBenchJSON(stdout, results)
	}
	return rep.writeTable(stdout, results)
}

// benchFlags are the flags of slatrun bench.
type benchFlags struct {
	model, methodList, optLevel, profile string
	batch, steps, warmup                 int
	eps                                  float32 // < 0: auto
	seed                                 uint64
	sequential, json                     bool
	rt                                   runtimeFlags
	z                                    zooFlags
	names                                []string // the methods of --methods
}

// parse parses and checks the command line.
func (f *benchFlags) parse(args []string, stderr io.Writer) error {
	fs := newFlags("bench", "bench --model convnet|preactresnet18 [--methods LIST] [--batch N] [--steps N] [--warmup W] [--threads T] [--json]", stderr)
	fs.StringVar(&f.model, "model", "convnet", "zoo model ("+strings.Join(zoo.Names(), ", ")+") or a forward ONNX file")
	fs.StringVar(&f.methodList, "methods", "standard,fgsm-rs,slat,pgd-7", "comma-separated training methods: "+orchestrator.Methods)
	fs.IntVar(&f.batch, "batch", 128, "minibatch size")
	fs.IntVar(&f.steps, "steps", 10, "measured steps per method")
	fs.IntVar(&f.warmup, "warmup", 3, "unmeasured steps per method first")
	fracVar(fs, &f.eps, "eps", -1, true, "input budget (auto: 0.1, or 8/255 for 3-channel models)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the weights, the data and the random starts")
	fs.BoolVar(&f.sequential, "sequential", false, "run the methods one after another instead of interleaving their steps (less memory)")
	fs.StringVar(&f.optLevel, "opt-level", "all", "ONNX Runtime graph optimization level: all, extended, basic or none")
	fs.StringVar(&f.profile, "profile", "", "write ONNX Runtime profiles (PREFIX-METHOD-attack_*.json, ...-train_*.json) when done")
	fs.BoolVar(&f.json, "json", false, "one JSON object per method and line")
	f.rt.add(fs)
	f.z.add(fs, false)
	limit(fs, atLeastOne, "batch", "steps")
	limit(fs, nonNegative, "warmup")
	limit(fs, epsBound, "eps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("bench: unexpected arguments %q", fs.Args())
	}
	f.names = splitList(f.methodList)
	if len(f.names) == 0 {
		return usagef("bench: --methods is empty")
	}
	if f.profile != "" {
		// ONNX Runtime writes the profiles only when the sessions close,
		// and says nothing if it cannot: check the place now.
		if err := checkOutput("profile", f.profile, f.profile+"-"+f.names[0]+"-train.json"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	f.z.seed = f.seed
	return nil
}

// bench is a benchmark set up: the model, its synthetic minibatches, and
// the methods' trainers with their measurements.
type bench struct {
	*benchFlags
	fwd     *onnx.Model
	set     *dataset.Set
	d       int // values per image
	methods []*benchMethod
	ms      runtime.MemStats
	ru      syscall.Rusage
}

// newBench starts ONNX Runtime, loads the model and makes the data.
func newBench(f *benchFlags) (*bench, error) {
	if err := f.rt.init(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	fwd, err := loadModel(f.model, &f.z)
	if err != nil {
		return nil, err
	}
	if err := checkFinite(fwd, f.model); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	c, h, w, err := benchInput(fwd)
	if err != nil {
		return nil, err
	}
	// The four synthetic minibatches below, as float32.
	if bytes := int64(nbBench) * int64(f.batch) * int64(c*h*w) * 4; bytes > dataset.SyntheticMaxBytes {
		return nil, usagef("bench: --batch %d: %d minibatches of %d×%d×%d images are %d bytes of float32, more than the %d bytes of synthetic data slatrun makes",
			f.batch, nbBench, c, h, w, bytes, int64(dataset.SyntheticMaxBytes))
	}
	if f.eps < 0 {
		f.eps = 0.1
		if c == 3 {
			f.eps = 8.0 / 255
		}
	}
	// Four fixed synthetic minibatches, cycled (as the peer does); the
	// trainers' own loaders are not used.
	set := dataset.Synthetic(nbBench*f.batch, c, h, w, 10, f.seed)
	return &bench{benchFlags: f, fwd: fwd, set: set, d: c * h * w}, nil
}

// benchInput returns the fixed C, H and W of the model's [N, C, H, W] input.
func benchInput(fwd *onnx.Model) (c, h, w int, err error) {
	var in []*onnxpb.TensorShapeProto_Dimension
	if ins := fwd.Graph().GetInput(); len(ins) > 0 {
		in = ins[0].GetType().GetTensorType().GetShape().GetDim()
	}
	if len(in) != 4 {
		return 0, 0, 0, fmt.Errorf("bench: the model's input is not [N, C, H, W]")
	}
	c, h, w = int(in[1].GetDimValue()), int(in[2].GetDimValue()), int(in[3].GetDimValue())
	if c < 1 || h < 1 || w < 1 {
		return 0, 0, 0, fmt.Errorf("bench: the model's input is [N, %s, %s, %s]; bench needs fixed C, H and W", dimName(in[1]), dimName(in[2]), dimName(in[3]))
	}
	return c, h, w, nil
}

// config is the trainer configuration of method.
func (b *bench) config(method string) orchestrator.Config {
	total := b.warmup + b.steps
	cfg := orchestrator.DefaultConfig()
	cfg.Forward, cfg.Train, cfg.Method = b.fwd, b.set, method
	cfg.Batch, cfg.Eps, cfg.Seed, cfg.LogEvery = b.batch, b.eps, b.seed, 0
	cfg.Epochs = max(1, (total+nbBench-1)/nbBench) // a schedule long enough for every step
	if strings.HasPrefix(method, "free-") {
		cfg.Epochs *= 16
	}
	cfg.Runtime = b.rt.options()
	cfg.Runtime.OptLevel = b.optLevel
	if b.profile != "" {
		cfg.Runtime.Profile = b.profile + "-" + method
	}
	return cfg
}

// newMethod makes the trainer of method name and adds it to b.methods.
func (b *bench) newMethod(name string) (*benchMethod, error) {
	tr, err := orchestrator.New(b.config(name))
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	n := b.steps
	m := &benchMethod{name: name, tr: tr,
		total: make([]float64, 0, n), attack: make([]float64, 0, n),
		train: make([]float64, 0, n), goSide: make([]float64, 0, n),
		cpu: make([]float64, 0, n)}
	b.methods = append(b.methods, m)
	return m, nil
}

// measure runs every method's warm-up and measured steps, one method
// after another or interleaved, and closes the trainers.
func (b *bench) measure() error {
	run := b.interleaved
	if b.sequential {
		run = b.oneByOne
	}
	if err := run(); err != nil {
		return err
	}
	for _, m := range b.methods {
		if err := m.tr.Close(); err != nil { // writes the profiles
			return fmt.Errorf("bench: %s: %w", m.name, err)
		}
	}
	return nil
}

// oneByOne runs each method's steps before setting up the next one.
func (b *bench) oneByOne() error {
	for _, name := range b.names {
		m, err := b.newMethod(name)
		if err != nil {
			return err
		}
		runtime.GC()
		for i := range b.warmup + b.steps {
			if err := b.step(m, i); err != nil {
				return err
			}
		}
		if b.profile != "" || len(b.names) > 1 { // free the sessions (and write profiles)
			if err := m.tr.Close(); err != nil {
				return fmt.Errorf("bench: %s: %w", m.name, err)
			}
		}
	}
	return nil
}

// interleaved sets up every method, then runs step i of each in turn.
func (b *bench) interleaved() error {
	for _, name := range b.names {
		if _, err := b.newMethod(name); err != nil {
			return err
		}
	}
	runtime.GC()
	for i := range b.warmup + b.steps {
		for _, m := range b.methods {
			if err := b.step(m, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// cpuNow is the CPU time of the process so far; it leaves its page
// faults in b.ru.
func (b *bench) cpuNow() time.Duration {
	syscall.Getrusage(syscall.RUSAGE_SELF, &b.ru)
	return time.Duration(b.ru.Utime.Nano() + b.ru.Stime.Nano())
}

// step runs step i of m, measuring it after the warm-up.
func (b *bench) step(m *benchMethod, i int) error {
	k := i % nbBench
	x, y := b.set.X[k*b.batch*b.d:(k+1)*b.batch*b.d], b.set.Y[k*b.batch:(k+1)*b.batch]
	before := m.tr.Times()
	runtime.ReadMemStats(&b.ms)
	mallocs := b.ms.Mallocs
	c0 := b.cpuNow()
	f0 := b.ru.Minflt
	if err := m.tr.Step(x, y); err != nil {
		return fmt.Errorf("bench: %s: %w", m.name, err)
	}
	cpu := b.cpuNow() - c0
	faults := b.ru.Minflt - f0
	runtime.ReadMemStats(&b.ms)
	if i < b.warmup {
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
	m.mallocs += b.ms.Mallocs - mallocs
	m.faults += faults
	m.measured++
	return nil
}

// close closes the trainers that are still open.
func (b *bench) close() {
	for _, m := range b.methods {
		m.tr.Close()
	}
}

// report is the setting the report states besides the measurements.
func (b *bench) report() benchReport {
	modelName, _ := b.fwd.Metadata(contract.MetaModel)
	if modelName == "" {
		modelName = b.model
	}
	return benchReport{model: modelName, batch: b.batch, threads: b.rt.threads, spinning: b.rt.spinning,
		optLevel: b.optLevel, steps: b.steps, warmup: b.warmup, nchwc: b.rt.options().NCHWc(), ort: ort.Version()}
}

// benchReport is what a bench's report says besides the measurements.
type benchReport struct {
	model                         string // the model's name
	batch, threads, steps, warmup int
	spinning                      bool
	optLevel                      string
	nchwc                         int
	ort                           string // ONNX Runtime's version
}

// results summarizes each method's measurements.
func (r benchReport) results(methods []*benchMethod) []benchResult {
	var out []benchResult
	for _, m := range methods {
		n := float64(m.measured)
		med := median(m.total)
		res := benchResult{Side: "slatrun", Model: r.model, Method: m.name, Batch: r.batch, Threads: r.threads,
			MedianMs: round3(med), P10Ms: round3(percentile(m.total, 10)), P90Ms: round3(percentile(m.total, 90)),
			MinMs: round3(slices.Min(m.total)), ImagesPerS: round3(float64(r.batch) / (med / 1e3)),
			Steps: m.measured, Warmup: r.warmup, CPUMedianMs: round3(median(m.cpu)),
			AttackMs: round3(median(m.attack)), AttackPasses: float64(m.attackPasses) / n,
			TrainMs: round3(median(m.train)), TrainPasses: float64(m.trainPasses) / n,
			GoMs: round3(median(m.goSide)), AllocsStep: float64(m.mallocs) / n, FaultsStep: float64(m.faults) / n,
			Spinning: r.spinning, OptLevel: r.optLevel, NCHWc: r.nchwc, ORT: r.ort}
		if res.AttackPasses > 0 {
			res.AttackPassMs = round3(res.AttackMs / res.AttackPasses)
		}
		res.GoPct = round3(100 * res.GoMs / med)
		out = append(out, res)
	}
	return out
}

// writeBenchJSON writes one JSON object per result and line.
func writeBenchJSON(w io.Writer, results []benchResult) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// writeTable writes a header line and a table of the results.
func (r benchReport) writeTable(w io.Writer, results []benchResult) error {
	fmt.Fprintf(w, "# slatrun bench: %s, batch %d, threads %d, spinning %v, opt level %s, %d steps after %d warm-up, onnxruntime %s\n",
		r.model, r.batch, r.threads, r.spinning, r.optLevel, r.steps, r.warmup, r.ort)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tmedian_ms\tp10_ms\tp90_ms\tcpu_ms\timages/s\tattack_ms\t(passes)\ttrain_ms\tgo_ms\tgo_%\tallocs/step\tfaults/step\t")
	for _, res := range results {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%g\t%.1f\t%.2f\t%.2f\t%g\t%.0f\t\n", res.Method, res.MedianMs, res.P10Ms, res.P90Ms,
			res.CPUMedianMs, res.ImagesPerS, res.AttackMs, res.AttackPasses, res.TrainMs, res.GoMs, res.GoPct, res.AllocsStep, res.FaultsStep)
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
