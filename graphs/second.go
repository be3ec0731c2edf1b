package graphs

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Second-order derivation (docs/second-order.md). A derived graph is an
// ordinary ONNX graph of registered ops, every shape static, so the same
// machinery differentiates it again: loadDerived reads it as an fgraph
// with several inputs and outputs, and Differentiate seeds chosen outputs
// with cotangent inputs and walks the nodes back as Derive does. Every op
// a plain first-order graph contains has a gradient rule (or is
// registered as piecewise constant); the NCHWc and ai.slatrun kernels have
// none, so a graph to be differentiated again is derived in plain form
// (Spec.NCHWcBlock 0, Spec.Kernels false), which Differentiate checks.

// Differentiate returns a graph that computes every output of m and, as
// outputs grad2.<t> (contract.Grad2Name), the gradients with respect to
// each tensor t of wrt of the scalar
//
//	L = Σ_{o ∈ seeds} ⟨seed.<o>, o⟩
//
// where seed.<o> (contract.SeedName) is a new float input of o's shape,
// declared after m's inputs. m must have static shapes and only
// default-domain ops (a graph from Derive in plain form, or any graph of
// registered ops); seeds are float outputs of m; wrt are float inputs or
// float initializers of m (an initializer becomes an input, declared
// before the seeds). Batch-norm nodes are differentiated in their
// inference form (derived graphs compose training-mode BN from ordinary
// ops). With m an attack graph, seeds [grad.x] and wrt the parameters and
// x, the outputs grad2.<t> are Hessian-vector products (DeriveHVP).
func Differentiate(m *onnx.Model, seeds, wrt []string) (*onnx.Model, error) {
	g, inputs, outputs, err := loadDerived(m)
	if err != nil {
		return nil, err
	}
	isOut := map[string]bool{}
	for _, o := range outputs {
		isOut[o] = true
	}
	isIn := map[string]bool{}
	for _, in := range inputs {
		isIn[in] = true
	}
	if len(seeds) == 0 || len(wrt) == 0 {
		return nil, fmt.Errorf("graphs: differentiate: need at least one seeded output and one tensor to differentiate (got %d and %d)", len(seeds), len(wrt))
	}
	seen := map[string]bool{}
	for _, o := range seeds {
		switch t := g.info[o]; {
		case seen[o]:
			return nil, fmt.Errorf("graphs: differentiate: output %q is seeded twice", o)
		case !isOut[o]:
			return nil, fmt.Errorf("graphs: differentiate: %q is not an output of the graph (outputs: %s)", o, strings.Join(outputs, ", "))
		case t == nil || !t.isFloat():
			return nil, fmt.Errorf("graphs: differentiate: output %q is not a float tensor", o)
		}
		seen[o] = true
	}
	seen = map[string]bool{}
	for _, s := range wrt {
		_, init := g.inits[s]
		switch t := g.info[s]; {
		case seen[s]:
			return nil, fmt.Errorf("graphs: differentiate: %q is listed twice", s)
		case !isIn[s] && !init:
			return nil, fmt.Errorf("graphs: differentiate: %q is neither an input nor an initializer of the graph", s)
		case t == nil || !t.isFloat():
			return nil, fmt.Errorf("graphs: differentiate: %q is not a float tensor", s)
		}
		seen[s] = true
	}
	for _, name := range append(mapNames(seeds, contract.SeedName), mapNames(wrt, contract.Grad2Name)...) {
		if g.used[name] {
			return nil, fmt.Errorf("graphs: differentiate: the graph already uses the name %q, which the second-order graph needs", name)
		}
	}
	g.output = seeds[0]
	g.pruneTo(outputs...)
	spec := Spec{Kind: Kind(contract.KindSecondOrder)}
	if v, ok := m.Metadata(contract.MetaBatch); ok {
		spec.Batch, _ = strconv.Atoi(v)
	}
	d := newDeriver(g, spec, nil, nil)
	d.training = false // derived graphs hold BN in inference form only
	d.markNeeds(wrt)
	d.b = onnx.NewBuilder("slatrun_" + contract.KindSecondOrder)
	for name := range g.used {
		d.b.Reserve(name)
	}
	for _, name := range append(mapNames(seeds, contract.SeedName), mapNames(wrt, contract.Grad2Name)...) {
		d.b.Reserve(name)
	}
	for _, in := range inputs {
		d.input(in, g.info[in].dt, g.info[in].shape)
	}
	for _, s := range wrt {
		if !isIn[s] {
			d.input(s, onnx.Float, g.info[s].shape)
		}
	}
	for _, o := range seeds {
		d.input(contract.SeedName(o), onnx.Float, g.info[o].shape)
	}
	if err := d.emitForward(); err != nil {
		return nil, err
	}
	d.keepOutputs(outputs)
	for _, o := range seeds {
		d.grads[o] = append(d.grads[o], contract.SeedName(o))
	}
	if err := d.emitBackward(); err != nil {
		return nil, err
	}
	for _, s := range wrt {
		d.gradOutputAs(s, contract.Grad2Name(s))
	}
	d.b.Graph().Output = d.outs
	for _, kv := range g.meta {
		if strings.HasPrefix(kv[0], contract.MetaPrefix) && kv[0] != contract.MetaKind {
			d.b.SetMetadata(kv[0], kv[1])
		}
	}
	if v, ok := m.Metadata(contract.MetaKind); ok {
		d.b.SetMetadata(contract.MetaSource, v)
	}
	d.b.SetMetadata(contract.MetaKind, contract.KindSecondOrder)
	d.b.SetMetadata(contract.MetaSeeds, contract.List(seeds))
	d.b.SetMetadata(contract.MetaWrt, contract.List(wrt))
	out := d.b.Model()
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("graphs: differentiate: internal error: %w", err)
	}
	return out, nil
}

// DeriveHVP derives forward's graph of spec.Kind in plain form and
// differentiates it again with seed grad.x: the result takes the derived
// graph's inputs and seed.grad.x (v, x's shape), and outputs the derived
// graph's outputs and the Hessian-vector products
// grad2.<t> = ∂⟨v, ∇ₓℓ⟩/∂t = (∂²ℓ/∂t∂x)·v for
//
//   - attack (BN on batch statistics): every parameter, then x;
//   - eval (BN on running statistics, weights embedded): x.
//
// Spec.NCHWcBlock and Spec.Kernels must be off: their ops have no gradient
// rules. Other seeds (the loss too, for ∇θℓ + H·v in one pass) go through
// Differentiate.
func DeriveHVP(forward *onnx.Model, spec Spec) (*onnx.Model, error) {
	if spec.NCHWcBlock != 0 || spec.Kernels {
		return nil, fmt.Errorf("graphs: derive hvp: a graph differentiated twice must be plain ONNX: Spec.NCHWcBlock and Spec.Kernels must be off")
	}
	if spec.Kind != Attack && spec.Kind != Eval {
		return nil, fmt.Errorf("graphs: derive hvp: kind %q: want attack or eval (Differentiate handles any derived graph)", spec.Kind)
	}
	first, err := Derive(forward, spec)
	if err != nil {
		return nil, err
	}
	wrt := []string{contract.Input}
	if spec.Kind == Attack {
		wrt = append(ReadInfo(first).Params, contract.Input)
	}
	return Differentiate(first, []string{contract.InputGrad}, wrt)
}

func mapNames(names []string, f func(string) string) []string {
	out := make([]string, len(names))
	for i, s := range names {
		out[i] = f(s)
	}
	return out
}

// loadDerived reads a graph with static shapes (a derived graph) for
// differentiating it: its inputs, initializers and nodes, every node
// upgraded to opset 18 and its shapes inferred. It returns the graph and
// the names of its inputs (initializers excluded) and outputs.
func loadDerived(m *onnx.Model) (*fgraph, []string, []string, error) {
	if m == nil || m.Proto == nil || m.Graph() == nil {
		return nil, nil, nil, fmt.Errorf("graphs: differentiate: %w", onnx.ErrNoGraph)
	}
	pg := m.Graph()
	for _, n := range pg.GetNode() {
		if dom := n.GetDomain(); dom != "" && dom != "ai.onnx" {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: node %q is %s of domain %s, which has no gradient rule; derive the graph to differentiate again in plain form (Spec.NCHWcBlock 0, Spec.Kernels false)", n.GetName(), n.GetOpType(), dom)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("graphs: differentiate: %w", err)
	}
	g := &fgraph{info: map[string]*tinfo{}, inits: map[string]*onnxpb.TensorProto{}, used: map[string]bool{}, renamed: map[string]string{}, opset: m.Opset()}
	if g.opset == 0 {
		g.opset = 1
	}
	for _, p := range m.Proto.GetMetadataProps() {
		g.meta = append(g.meta, [2]string{p.GetKey(), p.GetValue()})
	}
	for _, t := range pg.GetInitializer() {
		ti, err := decodeTensor(t)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: initializer: %w", err)
		}
		g.inits[t.GetName()] = t
		g.initSeq = append(g.initSeq, t.GetName())
		g.used[t.GetName()] = true
		g.info[t.GetName()] = ti
	}
	var inputs []string
	for _, vi := range pg.GetInput() {
		name := vi.GetName()
		g.used[name] = true
		if _, ok := g.inits[name]; ok {
			continue
		}
		dt, dims, ok := onnx.ValueShape(vi)
		if !ok {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: input %q has no known shape", name)
		}
		for _, v := range dims {
			if v <= 0 {
				return nil, nil, nil, fmt.Errorf("graphs: differentiate: input %q has shape %v; every dimension must be static and positive", name, dims)
			}
		}
		g.info[name] = &tinfo{dt: dt, shape: dims}
		inputs = append(inputs, name)
	}
	for _, pn := range pg.GetNode() {
		n, err := nodeFromProto(pn)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: %v: %w", n, err)
		}
		if n.op == "BatchNormalization" && (n.int("training_mode", 0) != 0 || len(n.out) > 1) {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: %v: a training_mode BatchNormalization has no rule here; derived graphs compose training-mode BN from ordinary ops", n)
		}
		g.used[n.name] = true
		for _, o := range n.out {
			g.used[o] = true
		}
		g.nodes = append(g.nodes, n)
	}
	for _, n := range g.nodes {
		if err := g.upgrade(n); err != nil {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: %v: %w", n, err)
		}
	}
	g.opset = onnx.DefaultOpset
	if err := g.inferAll(); err != nil {
		return nil, nil, nil, err
	}
	var outputs []string
	for _, vi := range pg.GetOutput() {
		name := vi.GetName()
		if g.info[name] == nil {
			return nil, nil, nil, fmt.Errorf("graphs: differentiate: output %q has no known shape", name)
		}
		outputs = append(outputs, name)
	}
	if len(outputs) == 0 {
		return nil, nil, nil, fmt.Errorf("graphs: differentiate: the graph has no output")
	}
	return g, inputs, outputs, nil
}

// pruneTo drops the nodes none of the tensors keep depends on and returns
// the tensors that remain needed (keep and everything upstream of it).
func (g *fgraph) pruneTo(keep ...string) map[string]bool {
	want := map[string]bool{}
	for _, s := range keep {
		want[s] = true
	}
	live := map[*node]bool{}
	for i := len(g.nodes) - 1; i >= 0; i-- {
		n := g.nodes[i]
		hit := false
		for _, o := range n.out {
			hit = hit || (o != "" && want[o])
		}
		if !hit {
			continue
		}
		live[n] = true
		for _, in := range n.in {
			want[in] = true
		}
	}
	var nodes []*node
	for _, n := range g.nodes {
		if live[n] {
			nodes = append(nodes, n)
		}
	}
	g.nodes = nodes
	return want
}

// keepOutputs declares the source graph's outputs as outputs again. An
// output the derived graph does not compute with a node (a folded
// constant, an initializer) is given one: an Identity of the constant.
func (d *deriver) keepOutputs(outputs []string) {
	computed := map[string]bool{}
	for _, n := range d.b.Graph().GetNode() {
		for _, o := range n.GetOutput() {
			computed[o] = true
		}
	}
	for _, o := range outputs {
		t := d.g.info[o]
		if !computed[o] && !d.isInput[o] {
			src := d.b.Fresh(o + ".const")
			if init, ok := d.g.inits[o]; ok {
				c := proto.Clone(init).(*onnxpb.TensorProto)
				c.Name = proto.String(src)
				d.b.Initializer(c)
			} else {
				d.b.Initializer(encodeConst(src, t))
			}
			d.b.Node("Identity", []string{src}, []string{o})
		}
		d.outs = append(d.outs, onnx.ValueInfo(o, t.dt, t.shape...))
		d.outNames[o] = true
	}
}
