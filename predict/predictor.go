package predict

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
)

// Mode is how a Predictor schedules requests onto its sessions.
type Mode int

const (
	// Pool gives each request a free session for the time of its runs.
	Pool Mode = iota
	// MicroBatch groups concurrent requests into shared batches.
	MicroBatch
)

func (m Mode) String() string {
	switch m {
	case Pool:
		return "pool"
	case MicroBatch:
		return "micro-batch"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads "pool" or "micro-batch" (also "micro", "microbatch").
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "pool":
		return Pool, nil
	case "micro-batch", "microbatch", "micro":
		return MicroBatch, nil
	}
	return 0, fmt.Errorf("predict: unknown mode %q (want pool or micro-batch)", s)
}

// DefaultBatch is MicroBatch's session batch when the model's batch is
// symbolic and Options.Batch is zero. A Pool's default batch is 1: on CPU a
// padded row costs as much as a real one, and single-image requests are the
// common case.
const DefaultBatch = 16

// Options configure a Predictor. The zero value is a pool of single-thread
// CPU sessions at batch 1, one per available CPU.
type Options struct {
	// Runtime configures the ONNX Runtime sessions: Provider ("cpu" or
	// "cuda"), DeviceID, Threads (per session; 0 means 1 for a pool of
	// several sessions, ONNX Runtime's choice otherwise), Spinning,
	// OptLevel. Batch and Outputs are set by the Predictor; Shared is not
	// used.
	Runtime ort.Options
	// Batch is the rows per session run. 0 takes the model's fixed batch
	// dimension, or when it is symbolic 1 for Pool and DefaultBatch for
	// MicroBatch. A model with a fixed batch accepts no other value. For a
	// Pool, set it to the usual request size: a request's last partial
	// batch is padded, and padding costs as much as real rows.
	Batch int
	// Sessions is the number of ONNX Runtime sessions (each holds its own
	// copy of the weights). 0 means runtime.GOMAXPROCS(0) for Pool and 1
	// for MicroBatch.
	Sessions int
	// Mode is Pool (default) or MicroBatch.
	Mode Mode
	// MaxDelay is how long a MicroBatch collector waits for more rows after
	// a batch's first request. 0 (the default) does not wait: a batch takes
	// the requests that queued while the session was busy, which batches
	// under load and adds no latency when idle. Timers are coarse (often
	// about 1ms), so a positive MaxDelay costs at least that at low load.
	MaxDelay time.Duration
	// Ladder (MicroBatch, models with a symbolic batch) gives each collector
	// sessions at batch 1, 2, 4, … below Batch besides the one at Batch,
	// and runs a batch on the smallest that holds it, so that a lone
	// request does not pay for Batch−1 padded rows. Each size holds its own
	// copy of the weights.
	Ladder bool
	// Output names the logits output; "" means "logits" if the graph has
	// it, else its only output.
	Output string
	// Observe, if set, is called after every Predict call, in the caller's
	// goroutine (for metrics; see package metrics).
	Observe func(Observation)
}

// Observation describes one Predict call, for Options.Observe.
type Observation struct {
	// Rows is the number of images asked for.
	Rows int
	// Duration is the call's wall time, waiting included.
	Duration time.Duration
	// Err is the call's error (nil on success).
	Err error
}

// Stats counts a Predictor's work since Open.
type Stats struct {
	// Requests and Rows count Predict calls that returned results and their
	// images.
	Requests, Rows int64
	// Runs counts session runs; Padding the padded rows they carried.
	Runs, Padding int64
}

// ErrClosed is returned by Predict after Close.
var ErrClosed = errors.New("predict: predictor is closed")

// ErrInput is wrapped by errors about a request's input.
var ErrInput = errors.New("predict: bad input")

// ErrNonFinite is wrapped by the error Predict returns when the model's
// logits for a request are not finite (NaN or ±Inf), as an input far
// outside the model's range can make them: such a result is no prediction.
var ErrNonFinite = errors.New("predict: the model's output is not finite")

// Predictor runs a forward graph on request. It is safe for concurrent use.
type Predictor struct {
	mode          Mode
	batch         int
	c, h, w, k, d int
	input, output string
	maxDelay      time.Duration
	observe       func(Observation)
	sessions      []*ort.Session
	nsess         int

	mu       sync.RWMutex // guards closed against the inflight.Add of new calls
	closed   bool
	inflight sync.WaitGroup
	closeErr error

	pool    chan *ort.Session // Pool: the free sessions
	queue   chan *job         // MicroBatch: requests waiting for a batch
	done    chan struct{}     // MicroBatch: closed to stop the collectors
	workers sync.WaitGroup

	requests, rows, runs, padding atomic.Int64
}

// Open loads a forward graph from path (a checkpoint's model.onnx) with
// onnx.Load, which checks it as the slatrun command does, and makes a
// Predictor over it with New. ort.Init must have been called.
func Open(path string, opts Options) (*Predictor, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	return New(m, opts)
}

// New makes a Predictor over the forward graph m (not modified). Before
// anything reaches ONNX Runtime it refuses a model that keeps tensor data
// in external files (ErrExternalData) or that fails m.Validate.
func New(m *onnx.Model, opts Options) (*Predictor, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("predict: %w", onnx.ErrNoGraph)
	}
	if err := m.Validate(); err != nil { // refuses external data (ErrExternalData) first
		return nil, fmt.Errorf("predict: %w", err)
	}
	if opts.Mode != Pool && opts.Mode != MicroBatch {
		return nil, fmt.Errorf("predict: unknown mode %v", opts.Mode)
	}
	if opts.Batch < 0 || opts.Sessions < 0 || opts.MaxDelay < 0 {
		return nil, fmt.Errorf("predict: Batch = %d, Sessions = %d, MaxDelay = %v: want values ≥ 0", opts.Batch, opts.Sessions, opts.MaxDelay)
	}
	m = m.Clone()
	inferenceBN(m)
	p := &Predictor{mode: opts.Mode, observe: opts.Observe, maxDelay: opts.MaxDelay}
	b0, err := p.signature(m, opts.Output)
	if err != nil {
		return nil, err
	}
	switch {
	case b0 > 0 && opts.Batch != 0 && opts.Batch != b0:
		return nil, fmt.Errorf("predict: the model's batch is fixed at %d; Options.Batch = %d cannot change it (export with a dynamic batch axis)", b0, opts.Batch)
	case b0 > 0:
		p.batch = b0
	case opts.Batch > 0:
		p.batch = opts.Batch
	case p.mode == Pool:
		p.batch = 1
	default:
		p.batch = DefaultBatch
	}
	n := opts.Sessions
	if n == 0 {
		n = 1
		if p.mode == Pool {
			n = runtime.GOMAXPROCS(0)
		}
	}
	rt := opts.Runtime
	rt.Batch, rt.Shared, rt.Outputs = p.batch, nil, []string{p.output}
	if rt.Threads == 0 && n > 1 {
		rt.Threads = 1
	}
	sizes := []int{p.batch}
	if opts.Ladder && p.mode == MicroBatch && b0 == 0 {
		sizes = sizes[:0]
		for b := 1; b < p.batch; b *= 2 {
			sizes = append(sizes, b)
		}
		sizes = append(sizes, p.batch)
	}
	sets := make([][]*ort.Session, n)
	for i := range sets {
		for _, b := range sizes {
			rt.Batch = b
			s, err := ort.NewSession(m, rt)
			if err != nil {
				for _, s := range p.sessions {
					s.Close()
				}
				return nil, fmt.Errorf("predict: %w", err)
			}
			p.sessions = append(p.sessions, s)
			sets[i] = append(sets[i], s)
		}
	}
	p.nsess = len(p.sessions)
	switch p.mode {
	case Pool:
		p.pool = make(chan *ort.Session, n)
		for _, s := range p.sessions {
			p.pool <- s
		}
	case MicroBatch:
		p.queue = make(chan *job, 4*n*p.batch)
		p.done = make(chan struct{})
		for i := range sets {
			p.workers.Add(1)
			go p.collect(sets[i], sizes)
		}
	}
	return p, nil
}

// signature finds the image input and the logits output, checks their
// shapes and returns the model's fixed batch (0 if symbolic).
func (p *Predictor) signature(m *onnx.Model, output string) (int, error) {
	g := m.Graph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins []*onnxpb.ValueInfoProto
	for _, vi := range g.GetInput() {
		if !inits[vi.GetName()] {
			ins = append(ins, vi)
		}
	}
	if len(ins) != 1 {
		names := make([]string, len(ins))
		for i, vi := range ins {
			names[i] = vi.GetName()
		}
		return 0, fmt.Errorf("predict: the model has %d inputs %v; a Predictor needs a forward graph with one image input [N,C,H,W]", len(ins), names)
	}
	dt, dims, ok := onnx.ValueShape(ins[0])
	p.input = ins[0].GetName()
	if !ok || dt != onnx.Float || len(dims) != 4 || dims[1] <= 0 || dims[2] <= 0 || dims[3] <= 0 {
		return 0, fmt.Errorf("predict: input %q is %s %v; want FLOAT [N,C,H,W] with C, H, W fixed", p.input, dt, dims)
	}
	p.c, p.h, p.w = int(dims[1]), int(dims[2]), int(dims[3])
	p.d = p.c * p.h * p.w
	b0 := max(int(dims[0]), 0)

	var outs []string
	for _, vi := range g.GetOutput() {
		outs = append(outs, vi.GetName())
	}
	switch {
	case output != "":
		p.output = output
	case len(outs) == 1:
		p.output = outs[0]
	default:
		p.output = "logits"
	}
	var ovi *onnxpb.ValueInfoProto
	for _, vi := range g.GetOutput() {
		if vi.GetName() == p.output {
			ovi = vi
		}
	}
	if ovi == nil {
		return 0, fmt.Errorf("predict: the model has no output %q (outputs: %s); set Options.Output", p.output, strings.Join(outs, ", "))
	}
	dt, dims, ok = onnx.ValueShape(ovi)
	if !ok || dt != onnx.Float || len(dims) != 2 || dims[1] <= 0 {
		return 0, fmt.Errorf("predict: output %q is %s %v; want FLOAT logits [N,K] with K fixed", p.output, dt, dims)
	}
	p.k = int(dims[1])
	return b0, nil
}

// inferenceBN switches BatchNormalization nodes exported in training mode
// (PyTorch's TrainingMode.PRESERVE) to their inference form, which uses
// the running statistics, so that the rows of a batch are independent.
func inferenceBN(m *onnx.Model) {
	used := map[string]bool{}
	for _, n := range m.Graph().GetNode() {
		for _, in := range n.GetInput() {
			used[in] = true
		}
	}
	for _, o := range m.Graph().GetOutput() {
		used[o.GetName()] = true
	}
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() != "BatchNormalization" {
			continue
		}
		attrs := n.GetAttribute()[:0]
		for _, a := range n.GetAttribute() {
			if a.GetName() != "training_mode" {
				attrs = append(attrs, a)
			}
		}
		n.Attribute = attrs
		extra := false
		for _, o := range n.GetOutput()[min(1, len(n.GetOutput())):] {
			extra = extra || used[o]
		}
		if !extra && len(n.Output) > 1 {
			n.Output = n.Output[:1]
		}
	}
}

// Shape returns the image shape C, H, W a request's rows have.
func (p *Predictor) Shape() (c, h, w int) { return p.c, p.h, p.w }

// Classes returns K, the number of logits per image.
func (p *Predictor) Classes() int { return p.k }

// Batch returns the rows per session run.
func (p *Predictor) Batch() int { return p.batch }

// Mode returns how requests are scheduled.
func (p *Predictor) Mode() Mode { return p.mode }

// Sessions returns the number of ONNX Runtime sessions (Options.Sessions,
// times the sizes of the ladder).
func (p *Predictor) Sessions() int { return p.nsess }

// Stats returns the counts of work done so far.
func (p *Predictor) Stats() Stats {
	return Stats{Requests: p.requests.Load(), Rows: p.rows.Load(), Runs: p.runs.Load(), Padding: p.padding.Load()}
}

// Predict classifies n images: x holds them flattened, n×C×H×W values
// (NCHW, in the model's input range, usually [0,1]). It returns the logits
// and the softmax probabilities, n×K values each, in new slices the caller
// owns. Any n ≥ 1 works; rows beyond the session batch run in several
// batches. x is not modified, nor read after Predict returns.
func (p *Predictor) Predict(ctx context.Context, x []float32, n int) (logits, probs []float32, err error) {
	start := time.Now()
	if p.observe != nil {
		defer func() { p.observe(Observation{Rows: n, Duration: time.Since(start), Err: err}) }()
	}
	if n < 1 || len(x) != n*p.d {
		return nil, nil, fmt.Errorf("%w: got %d values for n = %d images; want n×C×H×W = %d×%d×%d×%d = %d (n ≥ 1)",
			ErrInput, len(x), n, max(n, 0), p.c, p.h, p.w, max(n, 0)*p.d)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, fmt.Errorf("%w: value %d (image %d) is %v; want finite values", ErrInput, i, i/p.d, v)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	p.inflight.Add(1)
	p.mu.RUnlock()
	defer p.inflight.Done()

	logits = make([]float32, n*p.k)
	probs = make([]float32, n*p.k)
	if p.mode == Pool {
		err = p.predictPool(ctx, x, n, logits, probs)
	} else {
		err = p.predictMicro(ctx, x, n, logits, probs)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := finite(logits, probs, p.k); err != nil {
		return nil, nil, err
	}
	p.requests.Add(1)
	p.rows.Add(int64(n))
	return logits, probs, nil
}

func (p *Predictor) predictPool(ctx context.Context, x []float32, n int, logits, probs []float32) error {
	var s *ort.Session
	select {
	case s = <-p.pool:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { p.pool <- s }()
	in, out := s.Float(p.input), s.Float(p.output)
	for lo := 0; lo < n; lo += p.batch {
		m := min(p.batch, n-lo)
		copy(in, x[lo*p.d:(lo+m)*p.d])
		if err := p.run(s, p.batch, m); err != nil {
			return err
		}
		copy(logits[lo*p.k:], out[:m*p.k])
		softmax(probs[lo*p.k:(lo+m)*p.k], out[:m*p.k], p.k)
	}
	return nil
}

// run runs s on its first rows rows, the rest of the batch being padding
// (whatever the input held before: rows are independent).
func (p *Predictor) run(s *ort.Session, size, rows int) error {
	p.runs.Add(1)
	p.padding.Add(int64(size - rows))
	if err := s.Run(); err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	return nil
}

// job is up to one batch of rows of a MicroBatch request.
type job struct {
	x             []float32
	n             int
	logits, probs []float32
	state         atomic.Int32 // jobQueued → jobTaken (collector) or jobCanceled (caller)
	done          chan error
}

const (
	jobQueued int32 = iota
	jobTaken
	jobCanceled
)

func (p *Predictor) predictMicro(ctx context.Context, x []float32, n int, logits, probs []float32) error {
	jobs := make([]job, (n+p.batch-1)/p.batch)
	for i := range jobs {
		lo := i * p.batch
		m := min(p.batch, n-lo)
		j := &jobs[i]
		j.x, j.n = x[lo*p.d:(lo+m)*p.d], m
		j.logits, j.probs = logits[lo*p.k:(lo+m)*p.k], probs[lo*p.k:(lo+m)*p.k]
		j.done = make(chan error, 1)
	}
	queued := 0
	var err error
	for i := range jobs {
		select {
		case p.queue <- &jobs[i]:
			queued++
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		break
	}
	// Wait for every queued job; on cancellation, withdraw those that no
	// collector has taken yet (a taken job's rows are being read).
	for i := range queued {
		j := &jobs[i]
		select {
		case e := <-j.done:
			err = cmp(err, e)
		case <-ctx.Done():
			if j.state.CompareAndSwap(jobQueued, jobCanceled) {
				err = cmp(err, ctx.Err())
			} else {
				err = cmp(err, <-j.done)
			}
		}
	}
	return err
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// collect is a MicroBatch collector: it owns sessions ss (of batch sizes
// sizes, ascending) and runs batches of queued jobs until Close.
func (p *Predictor) collect(ss []*ort.Session, sizes []int) {
	defer p.workers.Done()
	var (
		batch []*job
		carry *job
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	// add puts j into the batch if it fits; it reports false when it does
	// not (j is then carried to the next batch).
	rows := 0
	add := func(j *job) bool {
		if rows+j.n > p.batch {
			return false
		}
		if !j.state.CompareAndSwap(jobQueued, jobTaken) {
			return true // withdrawn by its caller
		}
		rows += j.n
		batch = append(batch, j)
		return true
	}
	for {
		batch, rows = batch[:0], 0
		if carry != nil {
			add(carry)
			carry = nil
		}
		for len(batch) == 0 {
			select {
			case j := <-p.queue:
				add(j)
			case <-p.done:
				return
			}
		}
		// Take what is queued already, then wait up to maxDelay for more.
		waiting := false
	fill:
		for rows < p.batch {
			select {
			case j := <-p.queue:
				if !add(j) {
					carry = j
					break fill
				}
				continue
			default:
			}
			if p.maxDelay <= 0 {
				break
			}
			if !waiting {
				timer.Reset(p.maxDelay)
				waiting = true
			}
			select {
			case j := <-p.queue:
				if !add(j) {
					carry = j
					break fill
				}
			case <-timer.C:
				waiting = false
				break fill
			}
		}
		if waiting {
			timer.Stop() // since Go 1.23 no stale tick remains
		}
		i := 0
		for sizes[i] < rows {
			i++
		}
		s := ss[i]
		in, out := s.Float(p.input), s.Float(p.output)
		off := 0
		for _, j := range batch {
			copy(in[off*p.d:], j.x)
			off += j.n
		}
		err := p.run(s, sizes[i], rows)
		off = 0
		for _, j := range batch {
			if err == nil {
				z := out[off*p.k : (off+j.n)*p.k]
				copy(j.logits, z)
				softmax(j.probs, z, p.k)
			}
			off += j.n
			j.done <- err
		}
		clear(batch)
	}
}

// Close waits for the requests in flight, then releases the sessions. It is
// safe to call more than once.
func (p *Predictor) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	if p.done != nil {
		close(p.done)
		p.workers.Wait()
	}
	var errs []error
	for _, s := range p.sessions {
		errs = append(errs, s.Close())
	}
	p.sessions = nil
	return errors.Join(errs...)
}

// finite returns an error wrapping ErrNonFinite if a logit or probability
// is NaN or infinite.
func finite(logits, probs []float32, k int) error {
	for _, z := range []struct {
		what string
		v    []float32
	}{{"logit", logits}, {"probability", probs}} {
		for i, v := range z.v {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%w: image %d, %s %d is %v (is the input in the model's range?)", ErrNonFinite, i/k, z.what, i%k, v)
			}
		}
	}
	return nil
}

// softmax writes the row-wise softmax of z (rows of k logits) into dst.
func softmax(dst, z []float32, k int) {
	for lo := 0; lo+k <= len(z); lo += k {
		row, out := z[lo:lo+k], dst[lo:lo+k]
		m := row[0]
		for _, v := range row[1:] {
			m = max(m, v)
		}
		var sum float64
		for i, v := range row {
			e := math.Exp(float64(v - m))
			out[i] = float32(e)
			sum += e
		}
		for i := range out {
			out[i] = float32(float64(out[i]) / sum)
		}
	}
}

// Argmax returns the index of the largest value of row (the first on a
// tie): the predicted class of a row of logits or probabilities.
func Argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// Classify returns the predicted class of each row of k values (logits or
// probabilities as Predict returns them).
func Classify(rows []float32, k int) []int {
	cls := make([]int, len(rows)/k)
	for i := range cls {
		cls[i] = Argmax(rows[i*k : (i+1)*k])
	}
	return cls
}
