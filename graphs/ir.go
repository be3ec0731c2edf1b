package graphs

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// node is a forward node in normalized (opset-18) form.
type node struct {
	op    string
	name  string // the forward graph's node name (for errors)
	in    []string
	out   []string
	attrs []*onnxpb.AttributeProto

	folded bool // every output is a constant computed at derive time
	// fused: the node is computed by the node before it, whose forward
	// rule emits this node's output (a Relu after a BatchNormalization in
	// slatrun's BatchNormTrain kernel, relu = 1); neither its forward nor
	// its gradient rule is emitted, and the gradient reaching its output is
	// handed on, as is, to that node's gradient rule (see fuseBNRelu).
	fused bool
	tap   bool // pseudo node: out[0] = in[0] + domain-clipped in[1] (train kind)
	// coercesTo2D: an opset<13 Softmax, LogSoftmax or Hardmax, which
	// flattens its input to 2-D at its axis (upgradeSoftmax).
	coercesTo2D bool
}

func (n *node) attr(name string) *onnxpb.AttributeProto {
	for _, a := range n.attrs {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func (n *node) int(name string, def int64) int64 {
	if a := n.attr(name); a != nil {
		return a.GetI()
	}
	return def
}

func (n *node) ints(name string, def []int64) []int64 {
	if a := n.attr(name); a != nil {
		return append([]int64(nil), a.GetInts()...)
	}
	return def
}

func (n *node) float(name string, def float32) float32 {
	if a := n.attr(name); a != nil {
		return a.GetF()
	}
	return def
}

func (n *node) str(name, def string) string {
	if a := n.attr(name); a != nil {
		return string(a.GetS())
	}
	return def
}

// setAttr replaces (or adds) an attribute.
func (n *node) setAttr(a *onnxpb.AttributeProto) {
	for i, old := range n.attrs {
		if old.GetName() == a.GetName() {
			n.attrs[i] = a
			return
		}
	}
	n.attrs = append(n.attrs, a)
}

func (n *node) delAttr(name string) {
	out := n.attrs[:0]
	for _, a := range n.attrs {
		if a.GetName() != name {
			out = append(out, a)
		}
	}
	n.attrs = out
}

// input returns input i, or "" if absent.
func (n *node) input(i int) string {
	if i < len(n.in) {
		return n.in[i]
	}
	return ""
}

func (n *node) String() string { return fmt.Sprintf("node %q (%s)", n.name, n.op) }

// tinfo is what derive knows statically about a tensor: element type, a
// concrete shape and, for constants, the value.
type tinfo struct {
	dt    onnx.DType
	shape []int64
	// constant value (isConst): integers (and bools) in ci, floats in cf.
	isConst bool
	ci      []int64
	cf      []float32
}

func (t *tinfo) numel() int64 { return onnx.NumElements(t.shape) }

func (t *tinfo) isFloat() bool { return t.dt == onnx.Float }

// fgraph is the forward graph prepared for deriving: opset-18 nodes, static
// shapes for every tensor, constants folded.
type fgraph struct {
	nodes   []*node
	info    map[string]*tinfo
	inits   map[string]*onnxpb.TensorProto // initializers of the forward graph
	initSeq []string                       // their order
	input   string                         // contract.Input after renaming
	output  string                         // contract.Logits after renaming
	params  []string
	stats   []string
	opset   int64
	meta    [][2]string
	used    map[string]bool
	nfresh  int
	batch   int64

	outputName string            // the forward graph's output, before renaming
	stripped   string            // "Softmax" or "LogSoftmax" if the output was one, removed
	renamed    map[string]string // forward name → the name derive gives it, for those renamed
}

func (g *fgraph) fresh(prefix string) string {
	for {
		g.nfresh++
		name := fmt.Sprintf("%s__%d", prefix, g.nfresh)
		if !g.used[name] {
			g.used[name] = true
			return name
		}
	}
}

// addConstInts adds a synthetic int64 constant and returns its name.
func (g *fgraph) addConstInts(prefix string, vals []int64) string {
	name := g.fresh(prefix)
	g.info[name] = &tinfo{dt: onnx.Int64, shape: []int64{int64(len(vals))}, isConst: true, ci: append([]int64(nil), vals...)}
	return name
}

func (g *fgraph) shape(name string) []int64 {
	if t := g.info[name]; t != nil {
		return t.shape
	}
	return nil
}

// decodeTensor reads any numeric TensorProto into a tinfo constant.
func decodeTensor(t *onnxpb.TensorProto) (*tinfo, error) {
	dt := onnx.DType(t.GetDataType())
	ti := &tinfo{dt: dt, shape: append([]int64{}, t.GetDims()...), isConst: true}
	if onnx.ExternalData(t) { // onnx.Model.Validate refuses these; this is the second line of defence
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), onnx.ErrExternalData)
	}
	n, err := onnx.Elements(t.GetDims())
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	raw := t.GetRawData()
	switch dt {
	case onnx.Float:
		f, err := onnx.TensorFloats(t)
		if err != nil {
			return nil, err
		}
		ti.cf = f
	case onnxpb.TensorProto_DOUBLE:
		ti.dt = onnx.Float
		if raw != nil {
			if int64(len(raw)) != 8*n {
				return nil, fmt.Errorf("tensor %q: %d raw bytes for %d doubles", t.GetName(), len(raw), n)
			}
			ti.cf = make([]float32, n)
			for i := range ti.cf {
				ti.cf[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
			}
		} else {
			for _, v := range t.GetDoubleData() {
				ti.cf = append(ti.cf, float32(v))
			}
		}
	case onnx.Int64, onnx.Int32:
		v, err := onnx.TensorInt64s(t)
		if err != nil {
			return nil, err
		}
		ti.ci = v
	case onnx.Bool, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8:
		if raw != nil {
			if int64(len(raw)) != n {
				return nil, fmt.Errorf("tensor %q: %d raw bytes for %d bytes", t.GetName(), len(raw), n)
			}
			ti.ci = make([]int64, n)
			for i := range ti.ci {
				if dt == onnxpb.TensorProto_INT8 {
					ti.ci[i] = int64(int8(raw[i]))
				} else {
					ti.ci[i] = int64(raw[i])
				}
			}
		} else {
			for _, v := range t.GetInt32Data() {
				ti.ci = append(ti.ci, int64(v))
			}
		}
	default:
		return nil, fmt.Errorf("tensor %q has element type %s, which slatrun does not handle", t.GetName(), dt)
	}
	if int64(len(ti.ci)+len(ti.cf)) != n {
		return nil, fmt.Errorf("tensor %q has %d values for shape %v", t.GetName(), len(ti.ci)+len(ti.cf), t.GetDims())
	}
	return ti, nil
}

// encodeConst turns a constant tinfo into a TensorProto.
func encodeConst(name string, t *tinfo) *onnxpb.TensorProto {
	switch t.dt {
	case onnx.Float:
		return onnx.FloatTensor(name, t.shape, t.cf)
	case onnx.Bool:
		raw := make([]byte, len(t.ci))
		for i, v := range t.ci {
			if v != 0 {
				raw[i] = 1
			}
		}
		return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), t.shape...), DataType: proto.Int32(int32(onnx.Bool)), RawData: raw}
	case onnx.Int32:
		v := make([]int32, len(t.ci))
		for i, x := range t.ci {
			v[i] = int32(x)
		}
		return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), t.shape...), DataType: proto.Int32(int32(onnx.Int32)), Int32Data: v}
	default:
		return onnx.Int64Tensor(name, t.shape, t.ci)
	}
}

// loadGraph prepares forward for deriving at a concrete batch size. It runs
// the onnx package's validation first (a model built in memory has not been
// through Decode), so every node has the inputs and attributes its op
// needs.
func loadGraph(forward *onnx.Model, batch int64) (*fgraph, error) {
	if forward == nil || forward.Proto == nil || forward.Graph() == nil {
		return nil, fmt.Errorf("graphs: derive: %w", onnx.ErrNoGraph)
	}
	if err := forward.Validate(); err != nil {
		return nil, fmt.Errorf("graphs: derive: %w", err)
	}
	for _, o := range forward.Proto.GetOpsetImport() {
		if d := o.GetDomain(); d != "" && d != "ai.onnx" {
			for _, n := range forward.Graph().GetNode() {
				if n.GetDomain() == d {
					return nil, fmt.Errorf("graphs: derive: node %q: no gradient rule for op %s (domain %s; slatrun derives only default-domain ONNX ops)", n.GetName(), n.GetOpType(), d)
				}
			}
		}
	}
	pg := forward.Graph()
	g := &fgraph{info: map[string]*tinfo{}, inits: map[string]*onnxpb.TensorProto{}, used: map[string]bool{}, renamed: map[string]string{}, opset: forward.Opset(), batch: batch}
	if g.opset == 0 {
		g.opset = 1
	}
	for _, p := range forward.Proto.GetMetadataProps() {
		g.meta = append(g.meta, [2]string{p.GetKey(), p.GetValue()})
	}
	for _, t := range pg.GetInitializer() {
		g.inits[t.GetName()] = t
		g.initSeq = append(g.initSeq, t.GetName())
		g.used[t.GetName()] = true
		ti, err := decodeTensor(t)
		if err != nil {
			return nil, fmt.Errorf("graphs: derive: initializer: %w", err)
		}
		g.info[t.GetName()] = ti
	}
	var inputs []*onnxpb.ValueInfoProto
	for _, vi := range pg.GetInput() {
		g.used[vi.GetName()] = true
		if _, ok := g.inits[vi.GetName()]; !ok {
			inputs = append(inputs, vi)
		}
	}
	if len(inputs) != 1 {
		names := make([]string, len(inputs))
		for i, vi := range inputs {
			names[i] = vi.GetName()
		}
		return nil, fmt.Errorf("graphs: derive: the forward graph must have exactly one input (the images), has %d: %s", len(inputs), strings.Join(names, ", "))
	}
	if len(pg.GetOutput()) == 0 {
		return nil, fmt.Errorf("graphs: derive: the forward graph has no output")
	}
	inName := inputs[0].GetName()
	dt, dims, ok := onnx.ValueShape(inputs[0])
	if !ok || dt != onnx.Float || len(dims) < 2 || len(dims) > onnx.MaxRank {
		return nil, fmt.Errorf("graphs: derive: input %q must be a float tensor [N, ...] with a known shape", inName)
	}
	for i, d := range dims[1:] {
		if d < 0 {
			return nil, fmt.Errorf("graphs: derive: input %q has an unknown dimension %d; only the batch may be symbolic", inName, i+1)
		}
		if d == 0 {
			return nil, fmt.Errorf("graphs: derive: input %q has an empty dimension %d (shape %v)", inName, i+1, dims)
		}
	}
	dims[0] = batch
	if _, err := onnx.Elements(dims); err != nil {
		return nil, fmt.Errorf("graphs: derive: input %q at batch %d: %w", inName, batch, err)
	}
	for _, pn := range pg.GetNode() {
		n, err := nodeFromProto(pn)
		if err != nil {
			return nil, fmt.Errorf("graphs: derive: %v: %w", n, err)
		}
		g.used[n.name] = true
		for _, o := range n.out {
			g.used[o] = true
		}
		g.nodes = append(g.nodes, n)
	}
	// The logits: the first output or, if that is a Softmax or LogSoftmax
	// over the classes, the tensor underneath it.
	out := pg.GetOutput()[0].GetName()
	g.outputName = out
	if p := g.producers()[out]; p != nil && (p.op == "Softmax" || p.op == "LogSoftmax") {
		if ax := p.int("axis", -1); ax != 1 && ax != -1 {
			return nil, fmt.Errorf("graphs: derive: the forward graph's output %q is a %s over axis %d, not over the classes; export the logits [N, K] instead", out, p.op, ax)
		}
		out = p.in[0]
		g.stripped = p.op
	}
	if out == inName {
		return nil, fmt.Errorf("graphs: derive: the forward graph's output is its input")
	}
	// Rename the image input to x and the logits to logits, in one pass.
	g.renameAll(map[string]string{inName: contract.Input, out: contract.Logits})
	g.input = contract.Input
	g.output = contract.Logits
	g.info[contract.Input] = &tinfo{dt: onnx.Float, shape: dims}

	for _, n := range g.nodes {
		if err := g.upgrade(n); err != nil {
			return nil, fmt.Errorf("graphs: derive: %v: %w", n, err)
		}
	}
	g.opset = onnx.DefaultOpset
	if err := g.inferAll(); err != nil {
		return nil, err
	}
	g.classify()
	return g, nil
}

// tensorNames lists every tensor name the graph mentions, in a fixed order.
func (g *fgraph) tensorNames() []string {
	seen := map[string]bool{"": true}
	var names []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	for _, s := range g.initSeq {
		add(s)
	}
	for _, n := range g.nodes {
		for _, s := range n.in {
			add(s)
		}
		for _, s := range n.out {
			add(s)
		}
	}
	for _, s := range []string{g.input, g.output} {
		add(s)
	}
	return names
}

// renameAll renames tensors old → new (m) everywhere, in one pass. A
// tensor that already carries one of the new names and is not itself
// renamed is first given a fresh name, so no two tensors ever share a
// name and nothing is renamed twice: swapping two names works, and there is
// no chain of renames to follow. The renames are recorded in g.renamed.
func (g *fgraph) renameAll(m map[string]string) {
	full := map[string]string{}
	taken := map[string]bool{}
	for from, to := range m {
		if from != to {
			full[from] = to
			taken[to] = true
		}
	}
	for _, name := range g.tensorNames() {
		if _, moving := full[name]; taken[name] && !moving {
			full[name] = g.fresh(name)
		}
	}
	if len(full) == 0 {
		return
	}
	sub := func(s []string) {
		for i := range s {
			if v, ok := full[s[i]]; ok {
				s[i] = v
			}
		}
	}
	for _, n := range g.nodes {
		sub(n.in)
		sub(n.out)
	}
	sub(g.initSeq)
	inits := map[string]*onnxpb.TensorProto{}
	for name, t := range g.inits {
		if v, ok := full[name]; ok {
			t = proto.Clone(t).(*onnxpb.TensorProto)
			t.Name = proto.String(v)
			name = v
		}
		inits[name] = t
	}
	g.inits = inits
	info := map[string]*tinfo{}
	for name, t := range g.info {
		if v, ok := full[name]; ok {
			name = v
		}
		info[name] = t
	}
	g.info = info
	orig := map[string]string{} // current name → forward name, for tensors renamed before
	for o, cur := range g.renamed {
		orig[cur] = o
	}
	for from, to := range full {
		g.used[to] = true
		if o, ok := orig[from]; ok {
			g.renamed[o] = to
		} else {
			g.renamed[from] = to
		}
	}
}

// producers maps a tensor to the node producing it.
func (g *fgraph) producers() map[string]*node {
	p := map[string]*node{}
	for _, n := range g.nodes {
		for _, o := range n.out {
			if o != "" {
				p[o] = n
			}
		}
	}
	return p
}

// consumers maps a tensor to the nodes that read it.
func (g *fgraph) consumers() map[string][]*node {
	c := map[string][]*node{}
	for _, n := range g.nodes {
		for _, i := range n.in {
			if i != "" {
				c[i] = append(c[i], n)
			}
		}
	}
	return c
}

// classify finds trainable parameters (float initializers in weight/bias
// slots) and batch-norm running statistics, in order of first use.
func (g *fgraph) classify() {
	prod := g.producers()
	seenP, seenS := map[string]bool{}, map[string]bool{}
	isInit := func(s string) bool {
		_, ok := g.inits[s]
		return ok && g.info[s].isFloat()
	}
	addP := func(s string) {
		if s != "" && isInit(s) && !seenP[s] && !seenS[s] {
			seenP[s] = true
			g.params = append(g.params, s)
		}
	}
	for _, n := range g.nodes {
		switch n.op {
		case "Conv", "ConvTranspose", "Gemm":
			addP(n.input(1))
			addP(n.input(2))
		case "MatMul", "PRelu":
			addP(n.input(0))
			addP(n.input(1))
		case "Add":
			// a bias after MatMul (torch's Linear on 3-D inputs)
			for i := 0; i < 2; i++ {
				if p := prod[n.input(1-i)]; p != nil && p.op == "MatMul" {
					addP(n.input(i))
				}
			}
		case "BatchNormalization":
			addP(n.input(1))
			addP(n.input(2))
			for _, s := range []string{n.input(3), n.input(4)} {
				if isInit(s) && !seenS[s] && !seenP[s] {
					seenS[s] = true
					g.stats = append(g.stats, s)
				}
			}
		}
	}
}

// nodeFromProto copies a NodeProto into the deriver's node form (attributes
// cloned, an empty name replaced by op(first output)) and checks its arity.
// On an arity error it still returns the node, to name it in the message.
func nodeFromProto(pn *onnxpb.NodeProto) (*node, error) {
	n := &node{op: pn.GetOpType(), name: pn.GetName(), in: append([]string(nil), pn.GetInput()...), out: append([]string(nil), pn.GetOutput()...)}
	for _, a := range pn.GetAttribute() {
		n.attrs = append(n.attrs, proto.Clone(a).(*onnxpb.AttributeProto))
	}
	if n.name == "" {
		n.name = n.op
		if len(n.out) > 0 {
			n.name = n.op + "(" + n.out[0] + ")"
		}
	}
	return n, onnx.CheckArity("", n.op, n.in, n.out)
}
