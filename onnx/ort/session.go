package ort

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Options configure a session.
type Options struct {
	// Provider is "cpu" (default) or "cuda", in any letter case (see
	// ExecutionProvider).
	Provider string
	// DeviceID selects the CUDA device.
	DeviceID int
	// Threads is the number of intra-op threads; 0 lets ONNX Runtime choose.
	Threads int
	// Spinning lets idle intra-op threads spin; off by default, which is
	// faster on machines shared with other work.
	Spinning bool
	// OptLevel is the graph optimization level: "all" (default), "extended",
	// "basic" or "none".
	OptLevel string
	// Batch replaces symbolic (unknown) dimensions of inputs and outputs.
	Batch int
	// Outputs, if set, fetches only these graph outputs (default: all).
	Outputs []string
	// Shared binds the named inputs to these caller-owned slices instead of
	// allocating new ones, so several sessions can read the same memory
	// (for example the parameters of a training graph and of an attack
	// graph). A slice must hold exactly the input's element count.
	Shared map[string][]float32
	// Profile, if set, enables ONNX Runtime's profiler with this file
	// prefix; the JSON is written when the session is closed.
	Profile string
	// MemPattern turns on ONNX Runtime's memory pattern (its planned
	// single block for the intermediate tensors, reallocated per run). Off
	// by default: on this CPU build the block is page-faulted in again on
	// every run once it is large (preactresnet18 at batch 128: ~119,000
	// minor faults and ~11% of a training step; with it off, ~0), and on
	// smaller graphs it made no measurable difference.
	MemPattern bool
	// PlainConv keeps every convolution of derived graphs in ONNX
	// Runtime's plain NCHW kernels; by default the CPU provider runs
	// eligible ones in the blocked NCHWc layout (see NCHWc).
	PlainConv bool
	// Kernels registers slatrun's oneDNN kernels (domain ai.slatrun, see
	// Kernels and docs/kernels.md) on the CPU provider, with oneDNN using
	// Threads threads. Where they are unavailable the session is made
	// without them and a one-line notice is written once (KernelNotice).
	Kernels bool
	// DirectConv keeps every convolution kernel on oneDNN's direct
	// algorithm. By default those of a 3×3 kernel, stride 1, no dilation,
	// pads of at most 1 and at least 64 input and output channels in whole
	// blocks of 16 run in oneDNN's Winograd F(4×4, 3×3) kernels: 1.4–3.3×
	// as fast here, with rounding of about 2e-6 of an output's largest value
	// instead of about 3e-7 (docs/kernels.md, "Winograd").
	DirectConv bool
}

// Session is an ONNX Runtime session with its input and output tensors bound
// once. It is not safe for concurrent use.
type Session struct {
	sess    *ortgo.AdvancedSession
	names   map[string]int
	values  []ortgo.Value
	f32     [][]float32
	i64     [][]int64
	shapes  [][]int64
	scalars []int // indexes of 0-d float outputs, refreshed after Run
	inputs  []string
	outputs []string
}

func optLevel(s string) (ortgo.GraphOptimizationLevel, error) {
	switch strings.ToLower(s) {
	case "", "all":
		return ortgo.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ortgo.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ortgo.GraphOptimizationLevelEnableBasic, nil
	case "none", "off":
		return ortgo.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("ort: unknown graph optimization level %q (want all, extended, basic or none)", s)
}

// sessionOptions builds ONNX Runtime session options; the caller destroys them.
func sessionOptions(o Options) (*ortgo.SessionOptions, error) {
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	fail := func(err error) (*ortgo.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return fail(fmt.Errorf("ort: threads: %w", err))
		}
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fail(fmt.Errorf("ort: inter-op threads: %w", err))
	}
	spin := "0"
	if o.Spinning {
		spin = "1"
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", spin); err != nil {
		return fail(fmt.Errorf("ort: spinning: %w", err))
	}
	if err := so.SetMemPattern(o.MemPattern); err != nil {
		return fail(fmt.Errorf("ort: memory pattern: %w", err))
	}
	lvl, err := optLevel(o.OptLevel)
	if err != nil {
		return fail(err)
	}
	if err := so.SetGraphOptimizationLevel(lvl); err != nil {
		return fail(fmt.Errorf("ort: optimization level: %w", err))
	}
	if o.Profile != "" {
		if err := so.EnableProfiling(o.Profile); err != nil {
			return fail(fmt.Errorf("ort: profiling: %w", err))
		}
	}
	provider, err := o.ExecutionProvider()
	if err != nil {
		return fail(err)
	}
	switch provider {
	case ProviderCPU:
		if o.Kernels {
			if err := addKernels(so, o.Threads, o.DirectConv); err != nil {
				return fail(err)
			}
		}
	case ProviderCUDA:
		if err := appendCUDA(so, o.DeviceID); err != nil {
			return fail(err)
		}
	}
	return so, nil
}

// The execution providers, as ExecutionProvider names them.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// ExecutionProvider returns the provider o selects, normalized once for
// every use: ProviderCPU for an empty Provider or "cpu" in any letter case,
// ProviderCUDA for "cuda" in any letter case, and an error for any other
// name.
func (o Options) ExecutionProvider() (string, error) {
	switch p := strings.ToLower(strings.TrimSpace(o.Provider)); p {
	case "", ProviderCPU:
		return ProviderCPU, nil
	case ProviderCUDA:
		return ProviderCUDA, nil
	}
	return "", fmt.Errorf("ort: unknown provider %q (want cpu or cuda)", o.Provider)
}

// OnCPU reports whether o selects the CPU provider (see ExecutionProvider).
func (o Options) OnCPU() bool {
	p, err := o.ExecutionProvider()
	return err == nil && p == ProviderCPU
}

// OnCUDA reports whether o selects the CUDA provider (see
// ExecutionProvider); callers check it with CheckCUDA at start-up.
func (o Options) OnCUDA() bool {
	p, err := o.ExecutionProvider()
	return err == nil && p == ProviderCUDA
}

// ErrCUDAUnavailable is wrapped by errors about a CUDA provider that cannot
// be used here; those errors also wrap ONNX Runtime's own error.
var ErrCUDAUnavailable = errors.New("CUDA provider unavailable")

func cudaHelp() string {
	return fmt.Sprintf("the ONNX Runtime library at %s cannot use CUDA here (it needs libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so beside it, a CUDA 12 runtime with cuDNN 9, and an NVIDIA GPU); install a GPU build of ONNX Runtime %s and pass its libonnxruntime.so with --ort-lib, or use --provider cpu",
		Library(), LibraryVersion)
}

// cudaError is a CUDA provider that cannot be used here: what failed,
// ONNX Runtime's own words for why, and what would make CUDA work. It
// matches both ErrCUDAUnavailable and ONNX Runtime's error in errors.Is.
type cudaError struct {
	op  string // what failed, e.g. "add the CUDA provider"
	err error  // ONNX Runtime's error
}

func (e *cudaError) Error() string {
	why := strings.TrimPrefix(oneLine(e.err.Error()), "ort: ")
	return fmt.Sprintf("ort: %v: %s failed: %s; %s", ErrCUDAUnavailable, e.op, why, cudaHelp())
}

func (e *cudaError) Unwrap() []error { return []error{ErrCUDAUnavailable, e.err} }

// oneLine joins the lines of a (multi-line) message with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

func appendCUDA(so *ortgo.SessionOptions, device int) error {
	co, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return &cudaError{"create the CUDA provider options", err}
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(device)}); err != nil {
		return &cudaError{fmt.Sprintf("select CUDA device %d", device), err}
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return &cudaError{"add the CUDA provider", err}
	}
	return nil
}

// CheckCUDA reports, with one clear error, whether a CUDA session on device
// can be created. Call it at start-up when the user asks for CUDA. The
// error wraps ErrCUDAUnavailable and ONNX Runtime's own error.
func CheckCUDA(device int) error {
	if !ortgo.IsInitialized() {
		return ErrNotInitialized
	}
	b := onnx.NewBuilder("cuda_probe")
	b.Input("x", onnx.Float, 1)
	b.Node("Identity", []string{"x"}, []string{"y"})
	b.Output("y", onnx.Float, 1)
	s, err := NewSession(b.Model(), Options{Provider: ProviderCUDA, DeviceID: device})
	if err != nil {
		if errors.Is(err, ErrCUDAUnavailable) {
			return err
		}
		// A one-node graph that fails only under CUDA: the provider is
		// what cannot run.
		return &cudaError{fmt.Sprintf("a one-node test session on CUDA device %d", device), err}
	}
	return s.Close()
}

// NewSession creates a session over m with every graph input (and every
// graph output, or opts.Outputs) bound to a tensor allocated here. Inputs
// and outputs must be float32 or int64 with known shapes (symbolic dims are
// replaced by opts.Batch).
func NewSession(m *onnx.Model, opts Options) (*Session, error) {
	if !ortgo.IsInitialized() {
		return nil, ErrNotInitialized
	}
	data, err := m.Encode()
	if err != nil {
		return nil, err
	}
	g := m.Graph()
	s := &Session{names: map[string]int{}}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins, outs []ortgo.Value
	for _, vi := range g.GetInput() {
		if inits[vi.GetName()] { // old-style models list initializers as inputs
			continue
		}
		v, err := s.bind(vi.GetName(), vi, opts.Batch, opts.Shared[vi.GetName()])
		if err != nil {
			s.destroyValues()
			return nil, err
		}
		s.inputs = append(s.inputs, vi.GetName())
		ins = append(ins, v)
	}
	want := map[string]bool{}
	for _, o := range opts.Outputs {
		want[o] = true
	}
	for _, vi := range g.GetOutput() {
		if len(want) > 0 && !want[vi.GetName()] {
			continue
		}
		delete(want, vi.GetName())
		v, err := s.bind(vi.GetName(), vi, opts.Batch, nil)
		if err != nil {
			s.destroyValues()
			return nil, err
		}
		s.outputs = append(s.outputs, vi.GetName())
		outs = append(outs, v)
	}
	for o := range want {
		s.destroyValues()
		return nil, fmt.Errorf("ort: requested output %q is not a graph output", o)
	}
	if len(ins) == 0 || len(outs) == 0 {
		s.destroyValues()
		return nil, fmt.Errorf("ort: model needs at least one input and one output (has %d, %d)", len(ins), len(outs))
	}
	so, err := sessionOptions(opts)
	if err != nil {
		s.destroyValues()
		return nil, err
	}
	defer so.Destroy()
	sess, err := ortgo.NewAdvancedSessionWithONNXData(data, s.inputs, s.outputs, ins, outs, so)
	if err != nil {
		s.destroyValues()
		if opts.OnCUDA() {
			return nil, fmt.Errorf("ort: create session on CUDA device %d: %w", opts.DeviceID, err)
		}
		return nil, fmt.Errorf("ort: create session: %w", err)
	}
	s.sess = sess
	return s, nil
}

func (s *Session) bind(name string, vi *onnxpb.ValueInfoProto, batch int, shared []float32) (ortgo.Value, error) {
	dt, dims, ok := onnx.ValueShape(vi)
	if !ok {
		return nil, fmt.Errorf("ort: %q has no tensor shape; slatrun needs shaped inputs and outputs", name)
	}
	shape := make(ortgo.Shape, len(dims))
	for i, d := range dims {
		if d < 0 {
			if batch <= 0 {
				return nil, fmt.Errorf("ort: %q has a symbolic dimension %d; set Options.Batch", name, i)
			}
			d = int64(batch)
		}
		shape[i] = d
	}
	idx := len(s.values)
	s.names[name] = idx
	s.shapes = append(s.shapes, []int64(shape))
	var (
		v   ortgo.Value
		err error
		f   []float32
		n   []int64
	)
	switch {
	case dt == onnx.Float && len(shape) == 0:
		var sc *ortgo.Scalar[float32]
		sc, err = ortgo.NewEmptyScalar[float32]()
		v, f = sc, make([]float32, 1)
		s.scalars = append(s.scalars, idx)
	case dt == onnx.Float && shared != nil:
		if int64(len(shared)) != shape.FlattenedSize() {
			return nil, fmt.Errorf("ort: shared slice for %q holds %d values, the input %v needs %d", name, len(shared), []int64(shape), shape.FlattenedSize())
		}
		f = shared
		v, err = ortgo.NewTensor(shape, f)
	case dt == onnx.Float:
		f = make([]float32, shape.FlattenedSize())
		v, err = ortgo.NewTensor(shape, f)
	case dt == onnx.Int64 && len(shape) == 0:
		return nil, fmt.Errorf("ort: %q: 0-d int64 values are not supported", name)
	case dt == onnx.Int64:
		n = make([]int64, shape.FlattenedSize())
		v, err = ortgo.NewTensor(shape, n)
	default:
		return nil, fmt.Errorf("ort: %q has element type %s; slatrun binds only FLOAT and INT64", name, dt)
	}
	if err != nil {
		return nil, fmt.Errorf("ort: tensor %q %v: %w", name, dims, err)
	}
	s.values = append(s.values, v)
	s.f32 = append(s.f32, f)
	s.i64 = append(s.i64, n)
	return v, nil
}

// Inputs and Outputs list the bound names in binding order.
func (s *Session) Inputs() []string  { return s.inputs }
func (s *Session) Outputs() []string { return s.outputs }

// Has reports whether name is a bound input or output.
func (s *Session) Has(name string) bool { _, ok := s.names[name]; return ok }

// Shape returns the concrete shape of a bound input or output (nil if
// unknown).
func (s *Session) Shape(name string) []int64 {
	i, ok := s.names[name]
	if !ok {
		return nil
	}
	return s.shapes[i]
}

// Float returns the float32 slice bound to an input or output. Writes to an
// input's slice are seen by the next Run; an output's slice holds the latest
// Run's result. It panics if name is not a bound float tensor, which is a
// programming error.
func (s *Session) Float(name string) []float32 {
	i, ok := s.names[name]
	if !ok || s.f32[i] == nil {
		panic(fmt.Sprintf("ort: %q is not a bound float tensor", name))
	}
	return s.f32[i]
}

// Int64 returns the int64 slice bound to an input or output (see Float).
func (s *Session) Int64(name string) []int64 {
	i, ok := s.names[name]
	if !ok || s.i64[i] == nil {
		panic(fmt.Sprintf("ort: %q is not a bound int64 tensor", name))
	}
	return s.i64[i]
}

// Run runs the model on the current contents of the input slices.
func (s *Session) Run() error {
	if s.sess == nil {
		return errors.New("ort: run on a closed session")
	}
	if err := s.sess.Run(); err != nil {
		return fmt.Errorf("ort: run: %w", err)
	}
	for _, i := range s.scalars {
		s.f32[i][0] = s.values[i].(*ortgo.Scalar[float32]).GetData()
	}
	return nil
}

func (s *Session) destroyValues() {
	for _, v := range s.values {
		if v != nil {
			v.Destroy()
		}
	}
	s.values = nil
}

// Close releases the session and its tensors. It is safe to call twice.
func (s *Session) Close() error {
	var err error
	if s.sess != nil {
		err = s.sess.Destroy()
		s.sess = nil
	}
	s.destroyValues()
	return err
}
