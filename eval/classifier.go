package eval

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// ErrGraph is wrapped by every error about an eval graph that does not keep
// the contract.
var ErrGraph = errors.New("eval graph")

// Dims are the fixed sizes every eval graph of a Classifier shares: batch B,
// images C×H×W, K classes.
type Dims struct{ B, C, H, W, K int }

// D returns the number of values of one image, C·H·W.
func (d Dims) D() int { return d.C * d.H * d.W }

// Classifier runs a model's eval graphs, one per loss head, in ONNX Runtime.
// A session is made for a head the first time an attack needs it. A
// Classifier is not safe for concurrent use.
type Classifier struct {
	dims   Dims
	opts   ort.Options
	graphs map[string]*onnx.Model
	sess   map[string]*ort.Session
	extra  map[string]int       // other float inputs (parameters, BN statistics) → length
	values map[string][]float32 // their values, set by SetInput
	closed bool
	// resize, if set (SetResize), derives a head's graph at a smaller
	// batch; small holds the sessions made from them.
	resize func(head string, batch int) (*onnx.Model, error)
	small  map[sized]*ort.Session
	// pointHook, if set (by tests, through export_test.go), sees every
	// point an attack evaluates, before the graph runs.
	pointHook func(a *attacker)
}

// sized names a head's graph at a batch smaller than B.
type sized struct {
	head  string
	batch int
}

// NewClassifier checks that the eval graphs keep the contract and share the
// batch size B, the image shape C×H×W and the number of classes K. Keys of
// graphs are loss heads (HeadCE, HeadCW, HeadDLR, HeadDLRT, HeadDiffT); every
// graph has inputs x float32 [B,C,H,W] and y int64 [B] (dlr-t and diff-t
// also target int64 [B])
// and outputs logits [B,K], loss.each [B] and grad.x [B,C,H,W], except the
// HeadLogits graph, which outputs only the logits (one forward pass; Square
// uses it when it is given, and the ce graph's logits otherwise). A symbolic
// batch dimension takes opts.Batch. Any further graph input (a parameter or
// a BN statistic, when the weights are inputs rather than initializers) must
// be float32 with a fixed shape and be given with SetInput before use.
// opts.Outputs is ignored: the sessions fetch exactly these outputs.
func NewClassifier(graphs map[string]*onnx.Model, opts ort.Options) (*Classifier, error) {
	if len(graphs) == 0 {
		return nil, fmt.Errorf("eval: %w: no eval graphs given", ErrGraph)
	}
	c := &Classifier{
		opts:   opts,
		graphs: map[string]*onnx.Model{},
		sess:   map[string]*ort.Session{},
		small:  map[sized]*ort.Session{},
		extra:  map[string]int{},
		values: map[string][]float32{},
	}
	first := ""
	for _, head := range sortedKeys(graphs) {
		m := graphs[head]
		if m == nil || m.Graph() == nil {
			return nil, fmt.Errorf("eval: %w %q: no model", ErrGraph, head)
		}
		d, err := c.check(head, m, c.opts.Batch)
		if err != nil {
			return nil, err
		}
		if first == "" {
			c.dims, first = d, head
		} else if d != c.dims {
			return nil, fmt.Errorf("eval: %w %q: sizes B=%d C=%d H=%d W=%d K=%d differ from graph %q's B=%d C=%d H=%d W=%d K=%d",
				ErrGraph, head, d.B, d.C, d.H, d.W, d.K, first, c.dims.B, c.dims.C, c.dims.H, c.dims.W, c.dims.K)
		}
		c.graphs[head] = m
	}
	return c, nil
}

// outputs lists the outputs a session of head fetches.
func outputs(head string) []string {
	if head == contract.HeadLogits {
		return []string{contract.Logits}
	}
	return []string{contract.Logits, contract.LossEach, contract.InputGrad}
}

// check validates one graph and returns its sizes; a symbolic batch
// dimension takes batch (if positive).
func (c *Classifier) check(head string, m *onnx.Model, optBatch int) (Dims, error) {
	minK := contract.MinClasses(head)
	if minK == 0 {
		return Dims{}, fmt.Errorf("eval: %w: unknown loss head %q (want %s)", ErrGraph, head, strings.Join(contract.Heads(), ", "))
	}
	bad := func(format string, a ...any) (Dims, error) {
		return Dims{}, fmt.Errorf("eval: %w %q: %s", ErrGraph, head, fmt.Sprintf(format, a...))
	}
	g := m.Graph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	type value struct {
		dt   onnx.DType
		dims []int64
	}
	ins, outs := map[string]value{}, map[string]value{}
	for _, vi := range g.GetInput() {
		if inits[vi.GetName()] {
			continue
		}
		dt, dims, ok := onnx.ValueShape(vi)
		if !ok {
			return bad("input %q has no tensor shape", vi.GetName())
		}
		ins[vi.GetName()] = value{dt, dims}
	}
	for _, vi := range g.GetOutput() {
		dt, dims, _ := onnx.ValueShape(vi)
		outs[vi.GetName()] = value{dt, dims}
	}
	batch := func(n int64) int64 {
		if n < 0 {
			return int64(optBatch)
		}
		return n
	}
	x, ok := ins[contract.Input]
	if !ok || x.dt != onnx.Float || len(x.dims) != 4 {
		return bad(`needs input "x" float32 [B,C,H,W]`)
	}
	b := batch(x.dims[0])
	if b <= 0 {
		return bad("input x has a symbolic batch dimension; set ort.Options.Batch")
	}
	if optBatch > 0 && b != int64(optBatch) {
		return bad("batch size %d differs from ort.Options.Batch %d", b, optBatch)
	}
	for _, v := range x.dims[1:] {
		if v <= 0 {
			return bad("input x has unknown image dimensions %v", x.dims)
		}
	}
	d := Dims{B: int(b), C: int(x.dims[1]), H: int(x.dims[2]), W: int(x.dims[3])}
	want := func(v value, ok bool, dt onnx.DType, dims ...int64) bool {
		if !ok || v.dt != dt || len(v.dims) != len(dims) {
			return false
		}
		for i := range dims {
			if batch(v.dims[i]) != dims[i] && dims[i] >= 0 {
				return false
			}
		}
		return true
	}
	if y, ok := ins[contract.Labels]; !want(y, ok, onnx.Int64, b) {
		return bad(`needs input "y" int64 [%d]`, b)
	}
	t, hasT := ins[contract.Target]
	if contract.Targeted(head) && !want(t, hasT, onnx.Int64, b) {
		return bad("needs input %q int64 [%d]", contract.Target, b)
	}
	if !contract.Targeted(head) && hasT {
		return bad("has an input %q, which only the %s and %s heads take", contract.Target, contract.HeadDLRT, contract.HeadDiffT)
	}
	z, ok := outs[contract.Logits]
	if !want(z, ok, onnx.Float, b, -1) || z.dims[1] <= 0 {
		return bad("needs output %q float32 [%d,K]", contract.Logits, b)
	}
	d.K = int(z.dims[1])
	if d.K < minK {
		return bad("%d classes; this head needs at least %d", d.K, minK)
	}
	if l, ok := outs[contract.LossEach]; head != contract.HeadLogits && !want(l, ok, onnx.Float, b) {
		return bad("needs output %q float32 [%d]", contract.LossEach, b)
	}
	if gx, ok := outs[contract.InputGrad]; head != contract.HeadLogits && !want(gx, ok, onnx.Float, b, int64(d.C), int64(d.H), int64(d.W)) {
		return bad("needs output %q float32 [%d,%d,%d,%d]", contract.InputGrad, b, d.C, d.H, d.W)
	}
	for name, v := range ins {
		if name == contract.Input || name == contract.Labels || name == contract.Target {
			continue
		}
		n := int64(1)
		for _, k := range v.dims {
			if k < 0 {
				return bad("input %q has a symbolic dimension; eval needs fixed shapes for parameter inputs", name)
			}
			n *= k
		}
		if v.dt != onnx.Float {
			return bad("input %q is %s; eval feeds only float32 parameter inputs", name, v.dt)
		}
		if old, ok := c.extra[name]; ok && old != int(n) {
			return bad("input %q has %d values here and %d in another graph", name, n, old)
		}
		c.extra[name] = int(n)
	}
	return d, nil
}

// Dims returns the sizes the eval graphs share.
func (c *Classifier) Dims() Dims { return c.dims }

// Heads returns the loss heads the Classifier has, sorted.
func (c *Classifier) Heads() []string { return sortedKeys(c.graphs) }

// Has reports whether the Classifier has an eval graph for head.
func (c *Classifier) Has(head string) bool { _, ok := c.graphs[head]; return ok }

// SetInput sets the value of a graph input other than x, y and target (a
// parameter or BN statistic of graphs that take their weights as inputs).
// The value is copied, written into every session that has the input, and
// kept for sessions made later.
func (c *Classifier) SetInput(name string, v []float32) error {
	n, ok := c.extra[name]
	if !ok {
		return fmt.Errorf("eval: no eval graph has a parameter input %q", name)
	}
	if len(v) != n {
		return fmt.Errorf("eval: input %q takes %d values, got %d", name, n, len(v))
	}
	c.values[name] = append(c.values[name][:0], v...)
	for _, s := range c.sess {
		if s.Has(name) {
			copy(s.Float(name), v)
		}
	}
	for _, s := range c.small {
		if s.Has(name) {
			copy(s.Float(name), v)
		}
	}
	return nil
}

// SetResize lets the Classifier run a head's graph at batches smaller than
// B: derive returns head's graph at batch b (1 ≤ b < B), keeping the same
// contract and sizes otherwise (graphs.DeriveEval at that batch). Square
// then queries only as many rows as it still attacks, in a session of the
// smallest batch of the ladder B, ⌈B/2⌉, ⌈B/4⌉, …, 1 that holds them,
// each made on first use. The graphs must compute every row independently
// of the others (BN on running statistics), as eval graphs do.
func (c *Classifier) SetResize(derive func(head string, batch int) (*onnx.Model, error)) {
	c.resize = derive
}

// sessionAt returns head's session at batch b (B, or a smaller batch when
// SetResize was called), making it on first use.
func (c *Classifier) sessionAt(head string, b int) (*ort.Session, error) {
	if b == c.dims.B {
		return c.session(head)
	}
	key := sized{head, b}
	if s, ok := c.small[key]; ok {
		return s, nil
	}
	if c.closed {
		return nil, errors.New("eval: the classifier is closed")
	}
	if c.resize == nil || b < 1 || b > c.dims.B {
		return nil, fmt.Errorf("eval: no %q eval graph at batch %d", head, b)
	}
	m, err := c.resize(head, b)
	if err != nil {
		return nil, fmt.Errorf("eval: %q eval graph at batch %d: %w", head, b, err)
	}
	d, err := c.check(head, m, b)
	if err != nil {
		return nil, err
	}
	if want := (Dims{b, c.dims.C, c.dims.H, c.dims.W, c.dims.K}); d != want {
		return nil, fmt.Errorf("eval: %w %q at batch %d: sizes B=%d C=%d H=%d W=%d K=%d, want B=%d C=%d H=%d W=%d K=%d",
			ErrGraph, head, b, d.B, d.C, d.H, d.W, d.K, want.B, want.C, want.H, want.W, want.K)
	}
	opts := c.opts
	opts.Batch = b
	s, err := c.newSession(head, m, opts)
	if err != nil {
		return nil, err
	}
	c.small[key] = s
	return s, nil
}

// session returns the session of head, making it on first use.
func (c *Classifier) session(head string) (*ort.Session, error) {
	if s, ok := c.sess[head]; ok {
		return s, nil
	}
	if c.closed {
		return nil, errors.New("eval: the classifier is closed")
	}
	m, ok := c.graphs[head]
	if !ok {
		return nil, fmt.Errorf("eval: no %q eval graph (have %s)", head, strings.Join(c.Heads(), ", "))
	}
	s, err := c.newSession(head, m, c.opts)
	if err != nil {
		return nil, err
	}
	c.sess[head] = s
	return s, nil
}

// newSession makes a session of head's graph m and sets its parameter
// inputs.
func (c *Classifier) newSession(head string, m *onnx.Model, opts ort.Options) (*ort.Session, error) {
	opts.Outputs = outputs(head)
	s, err := ort.NewSession(m, opts)
	if err != nil {
		return nil, fmt.Errorf("eval: %q eval graph: %w", head, err)
	}
	for _, name := range s.Inputs() {
		if name == contract.Input || name == contract.Labels || name == contract.Target {
			continue
		}
		v, ok := c.values[name]
		if !ok {
			s.Close()
			return nil, fmt.Errorf("eval: %q eval graph: input %q has no value; call Classifier.SetInput", head, name)
		}
		copy(s.Float(name), v)
	}
	return s, nil
}

// Close releases every session; the Classifier cannot be used afterwards.
// It is safe to call twice.
func (c *Classifier) Close() error {
	c.closed = true
	var errs []error
	for _, head := range sortedKeys(c.sess) {
		errs = append(errs, c.sess[head].Close())
		delete(c.sess, head)
	}
	for key, s := range c.small {
		errs = append(errs, s.Close())
		delete(c.small, key)
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
