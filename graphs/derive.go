package graphs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// deriver holds the state of one Derive call.
type deriver struct {
	g        *fgraph
	b        *onnx.Builder
	spec     Spec
	training bool // BN on batch statistics
	taps     []string
	sources  []string
	isInput  map[string]bool
	emitted  map[string]bool
	needs    map[string]bool
	grads    map[string][]string
	total    map[string]string
	saved    map[*node]map[string]string
	cache    map[string]string
	outNames map[string]bool
	outs     []*onnxpb.ValueInfoProto
	obj      objective
	// bnRelu maps a BatchNormalization in the BatchNormTrain kernel to the
	// Relu fused into it (fuseBNRelu).
	bnRelu map[*node]*node
}

// newDeriver returns the state of a derivation of g with objective obj.
func newDeriver(g *fgraph, spec Spec, taps []string, obj objective) *deriver {
	return &deriver{g: g, spec: spec, taps: taps, training: spec.Kind != Eval, obj: obj,
		isInput: map[string]bool{}, emitted: map[string]bool{}, needs: map[string]bool{},
		grads: map[string][]string{}, total: map[string]string{}, saved: map[*node]map[string]string{},
		cache: map[string]string{}, outNames: map[string]bool{}, bnRelu: map[*node]*node{}}
}

// objective is what a derivation differentiates and exposes: the tensors
// whose gradients it computes, the graph inputs besides x and y, the loss
// that seeds the backward pass and the outputs after it. Derive's kinds
// are kindObjective; the tests substitute their own (export_test.go).
type objective interface {
	// sources returns the tensors to differentiate.
	sources(d *deriver) []string
	// inputs declares the graph inputs after x and y.
	inputs(d *deriver)
	// seed emits the loss and its outputs after the forward nodes, and
	// returns the gradient of the differentiated loss with respect to
	// the logits.
	seed(d *deriver) (string, error)
	// outputs declares the outputs after the backward pass.
	outputs(d *deriver)
}

// kindObjective is the objective of the graph kind d.spec.Kind.
type kindObjective struct{}

func (kindObjective) sources(d *deriver) []string {
	switch d.spec.Kind {
	case Attack:
		return append([]string{contract.Input}, d.taps...)
	case Train:
		src := append([]string(nil), d.g.params...)
		if d.spec.InputGrad {
			src = append(src, contract.Input)
		}
		return src
	}
	if d.spec.Loss == contract.HeadLogits {
		return nil
	}
	return []string{contract.Input}
}

// inputs: the training kinds take every parameter and running statistic,
// and train the perturbation delta.<tap> of every tap; eval embeds them.
func (kindObjective) inputs(d *deriver) {
	g := d.g
	if d.spec.Kind == Eval {
		return
	}
	for _, p := range g.params {
		d.input(p, onnx.Float, g.info[p].shape)
	}
	for _, s := range g.stats {
		d.input(s, onnx.Float, g.info[s].shape)
	}
	if d.spec.Kind == Train {
		for _, t := range d.taps {
			d.input(contract.DeltaName(t), onnx.Float, g.info[t].shape)
		}
	}
}

func (kindObjective) seed(d *deriver) (string, error) { return d.emitHead() }

func (kindObjective) outputs(d *deriver) {
	switch d.spec.Kind {
	case Attack:
		d.gradOutput(contract.Input)
		for _, t := range d.taps {
			d.gradOutput(t)
		}
		d.statOutputs()
		if d.spec.TapRange {
			d.rangeOutputs()
		}
		if d.spec.TapL1 {
			d.l1Outputs()
		}
	case Train:
		if d.spec.InputGrad {
			d.gradOutput(contract.Input)
		}
		for _, p := range d.g.params {
			d.gradOutput(p)
		}
		d.statOutputs()
	case Eval:
		if d.spec.Loss != contract.HeadLogits {
			d.gradOutput(contract.Input)
		}
	}
}

// Derive builds the graph of spec.Kind from a forward graph (docs/contract.md):
//
//   - forward: the forward graph, batch made concrete, with metadata;
//   - attack: inputs x, y, every parameter and every BN running
//     statistic; BN on batch statistics; outputs loss, logits, grad.x,
//     grad.<tap> and <stat>.next;
//   - train: inputs x, y, every parameter, every BN running statistic and
//     delta.<tap>; BN on batch statistics; at each tap ĥ = h +
//     stopgrad(clip(δ, lo−h, hi−h)) (the domain clip); outputs loss,
//     logits, grad.<param>, <stat>.next (and grad.x with Spec.InputGrad);
//   - eval: input x, y; BN on running statistics, weights embedded; outputs
//     logits, loss.each and grad.x of Σ loss.each (with Loss
//     contract.HeadLogits: logits alone, no backward pass; y is unused).
//
// Derived graphs use only default-domain ONNX ops at opset 18, and every
// shape in them is static (Spec.Batch).
//
// Models exported from PyTorch must keep their BatchNormalization nodes:
// an eval-mode export folds each BN that follows a Conv into that Conv, so
// the BN parameters and running statistics are gone and training would run
// without batch normalization. Export with
// training=torch.onnx.TrainingMode.PRESERVE (in train mode). Derive returns
// an error for the training kinds when a graph has Conv layers but no
// BatchNormalization and its metadata does not say slatrun.bn=none.
func Derive(forward *onnx.Model, spec Spec) (*onnx.Model, error) {
	switch spec.Kind {
	case Forward:
		return deriveForward(forward, spec)
	case KL, TRADES:
		return DeriveTRADES(forward, spec)
	case Attack, Train, Eval:
	default:
		return nil, fmt.Errorf("graphs: derive: unknown kind %q (want forward, attack, train, eval, kl or trades)", spec.Kind)
	}
	if spec.Batch <= 0 {
		return nil, fmt.Errorf("graphs: derive: Spec.Batch must be positive, got %d", spec.Batch)
	}
	if spec.Kind == Eval {
		switch spec.Loss {
		case "", contract.HeadCE, contract.HeadCW, contract.HeadDLR, contract.HeadDLRT, contract.HeadDiffT, contract.HeadLogits:
		default:
			return nil, fmt.Errorf("graphs: derive: unknown eval loss %q (want %s)", spec.Loss, strings.Join(contract.Heads(), ", "))
		}
	}
	g, err := loadGraph(forward, int64(spec.Batch))
	if err != nil {
		return nil, err
	}
	if err := checkLogits(g); err != nil {
		return nil, err
	}
	taps := spec.Taps
	if taps == nil {
		if v, ok := forward.Metadata(contract.MetaTaps); ok {
			taps = contract.SplitList(v)
		}
	}
	if spec.Kind != Eval {
		if err := checkFoldedBN(forward, g); err != nil {
			return nil, err
		}
	}
	return newDeriver(g, spec, taps, kindObjective{}).build()
}

// DeriveEval derives one eval graph of forward per loss head (eval.Heads
// lists the heads an evaluation needs), at the given batch size, with
// convolutions in NCHWc blocks of nchwcBlock channels if it is positive
// (Spec.NCHWcBlock; ort.Options.NCHWc gives the value for a session) and
// in slatrun's kernels where they apply if kernels is set (Spec.Kernels;
// ort.Options.OneDNN gives the value).
func DeriveEval(forward *onnx.Model, batch int, heads []string, nchwcBlock int, kernels bool) (map[string]*onnx.Model, error) {
	gs := make(map[string]*onnx.Model, len(heads))
	for _, h := range heads {
		g, err := Derive(forward, evalSpec(batch, h, nchwcBlock, kernels))
		if err != nil {
			return nil, err
		}
		gs[h] = g
	}
	return gs, nil
}

// EvalAt returns DeriveEval for one head at any batch, for
// eval.Classifier.SetResize: Square queries its live rows at smaller
// batches of the logits head.
func EvalAt(forward *onnx.Model, nchwcBlock int, kernels bool) func(head string, batch int) (*onnx.Model, error) {
	return func(head string, batch int) (*onnx.Model, error) {
		return Derive(forward, evalSpec(batch, head, nchwcBlock, kernels))
	}
}

func evalSpec(batch int, head string, nchwcBlock int, kernels bool) Spec {
	return Spec{Kind: Eval, Batch: batch, Loss: head, Taps: []string{}, NCHWcBlock: nchwcBlock, Kernels: kernels}
}

// checkFoldedBN rejects, for the training kinds, a graph with Conv layers and
// no BatchNormalization: almost always a PyTorch eval-mode export that folded
// BN into the convolutions.
func checkFoldedBN(forward *onnx.Model, g *fgraph) error {
	if v, ok := forward.Metadata(contract.MetaBN); ok && v == contract.BNNone {
		return nil
	}
	conv, bn := false, false
	for _, n := range g.nodes {
		conv = conv || n.op == "Conv"
		bn = bn || n.op == "BatchNormalization"
	}
	if conv && !bn && strings.Contains(strings.ToLower(forward.Proto.GetProducerName()), "pytorch") {
		return fmt.Errorf("graphs: derive: the graph has Conv layers but no BatchNormalization: PyTorch's eval-mode export folds BN into Conv, losing its parameters and running statistics; export with training=torch.onnx.TrainingMode.PRESERVE (model.train()), or set metadata slatrun.bn=none if the model really has no BN")
	}
	return nil
}

// deriveForward returns the forward graph with its batch made concrete and
// slatrun metadata.
func deriveForward(forward *onnx.Model, spec Spec) (*onnx.Model, error) {
	if forward == nil || forward.Proto == nil || forward.Graph() == nil {
		return nil, fmt.Errorf("graphs: derive: %w", onnx.ErrNoGraph)
	}
	if err := forward.Validate(); err != nil {
		return nil, fmt.Errorf("graphs: derive: %w", err)
	}
	m := forward.Clone()
	if spec.Batch > 0 {
		for _, vs := range [][]*onnxpb.ValueInfoProto{m.Graph().GetInput(), m.Graph().GetOutput()} {
			for _, vi := range vs {
				tt := vi.GetType().GetTensorType()
				if tt == nil || tt.GetShape() == nil || len(tt.GetShape().GetDim()) == 0 {
					continue
				}
				d0 := tt.GetShape().GetDim()[0]
				if _, isVal := d0.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); !isVal {
					d0.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(spec.Batch)}
				}
			}
		}
		m.SetMetadata(contract.MetaBatch, strconv.Itoa(spec.Batch))
	}
	params, stats := classifyNames(m)
	m.SetMetadata(contract.MetaKind, string(Forward))
	taps := spec.Taps
	if taps == nil {
		if v, ok := forward.Metadata(contract.MetaTaps); ok {
			taps = contract.SplitList(v)
		}
	}
	computed := map[string]bool{}
	for _, n := range m.Graph().GetNode() {
		for _, o := range n.GetOutput() {
			computed[o] = true
		}
	}
	seen := map[string]bool{}
	for _, t := range taps {
		if seen[t] {
			return nil, fmt.Errorf("graphs: derive: tap %q is listed twice", t)
		}
		seen[t] = true
		if t == "" || !computed[t] {
			return nil, fmt.Errorf("graphs: derive: unknown tap %q: no node of the forward graph computes a tensor of that name", t)
		}
	}
	m.SetMetadata(contract.MetaTaps, contract.List(taps))
	m.SetMetadata(contract.MetaParams, contract.List(params))
	m.SetMetadata(contract.MetaStats, contract.List(stats))
	return m, nil
}

// build derives the graph, phase by phase.
func (d *deriver) build() (*onnx.Model, error) {
	if err := d.prepare(); err != nil {
		return nil, err
	}
	d.markNeeds(d.obj.sources(d))
	d.begin()
	if err := d.emitForward(); err != nil {
		return nil, err
	}
	seed, err := d.obj.seed(d)
	if err != nil {
		return nil, err
	}
	if seed != "" { // "": no backward pass (the eval kind's logits head)
		d.grads[d.g.output] = []string{seed}
		if err := d.emitBackward(); err != nil {
			return nil, err
		}
	}
	d.obj.outputs(d)
	d.b.Graph().Output = d.outs
	if d.spec.Kernels {
		blockLayouts(d.b, d.tensorShape())
	}
	d.setMetadata()
	m := d.b.Model()
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("graphs: derive: internal error: %w", err)
	}
	return m, nil
}

// prepare checks the taps, frees the interface names, inserts the
// domain-clip nodes of the train kind, keeps only the nodes the logits
// depend on and marks the Relus fused into the batch norm before them.
func (d *deriver) prepare() error {
	if err := d.checkTaps(); err != nil {
		return err
	}
	if err := d.freeInterfaceNames(); err != nil {
		return err
	}
	if d.spec.Kind == Train {
		d.insertTaps()
	}
	if !d.pruneToLogits()[contract.Input] {
		return fmt.Errorf("graphs: derive: the logits do not depend on the input")
	}
	d.fuseBNRelu()
	return nil
}

// insertTaps renames each tap's tensor t to a fresh t.pre and inserts a
// tap node computing t from it and the input delta.<t>.
func (d *deriver) insertTaps() {
	g := d.g
	prod := g.producers()
	for _, t := range d.taps {
		p := prod[t]
		pre := g.fresh(t + ".pre")
		for i, o := range p.out {
			if o == t {
				p.out[i] = pre
			}
		}
		g.info[pre] = g.info[t]
		delta := contract.DeltaName(t)
		g.info[delta] = &tinfo{dt: onnx.Float, shape: clone64(g.info[t].shape)}
		tn := &node{op: "SlatrunTap", name: "tap " + t, in: []string{pre, delta}, out: []string{t}, tap: true}
		for i, n := range g.nodes {
			if n == p {
				g.nodes = append(g.nodes[:i+1], append([]*node{tn}, g.nodes[i+1:]...)...)
				break
			}
		}
	}
}

// pruneToLogits drops the nodes the logits do not depend on and returns
// the tensors they do.
func (d *deriver) pruneToLogits() map[string]bool { return d.g.pruneTo(d.g.output) }

// markNeeds marks the sources and the float tensors computed from them:
// the tensors that need a gradient.
func (d *deriver) markNeeds(sources []string) {
	d.sources = sources
	for _, s := range sources {
		d.needs[s] = true
	}
	for _, n := range d.g.nodes {
		if n.folded {
			continue
		}
		reached := false
		for _, in := range n.in {
			reached = reached || d.needs[in]
		}
		if !reached {
			continue
		}
		for _, o := range n.out {
			if t := d.g.info[o]; t != nil && t.isFloat() {
				d.needs[o] = true
			}
		}
	}
}

// begin starts the derived graph: every name the forward graph or the
// interface uses is reserved, and the inputs are declared: x and y, then
// the objective's.
func (d *deriver) begin() {
	g, spec := d.g, d.spec
	d.b = onnx.NewBuilder("slatrun_" + string(spec.Kind))
	for name := range g.used {
		d.b.Reserve(name)
	}
	for _, s := range []string{contract.Input, contract.Labels, contract.Target, contract.Loss, contract.LossEach, contract.Logits, contract.InputGrad} {
		d.b.Reserve(s)
	}
	for _, s := range append(append([]string(nil), g.params...), d.taps...) {
		d.b.Reserve(contract.GradName(s))
		d.b.Reserve(contract.DeltaName(s))
	}
	for _, s := range d.taps {
		d.b.Reserve(contract.RangeName(s))
		d.b.Reserve(contract.L1Name(s))
	}
	for _, s := range g.stats {
		d.b.Reserve(contract.NextName(s))
	}
	B := int64(spec.Batch)
	d.input(contract.Input, onnx.Float, g.info[contract.Input].shape)
	d.input(contract.Labels, onnx.Int64, []int64{B})
	g.info[contract.Labels] = &tinfo{dt: onnx.Int64, shape: []int64{B}}
	d.obj.inputs(d)
}

// emitForward emits the forward nodes: copies, or their op's forward
// rule, or the tap's domain clip. Folded nodes are constants, and fused
// nodes are emitted by the node before them.
func (d *deriver) emitForward() error {
	for _, n := range d.g.nodes {
		if n.folded || n.fused {
			continue
		}
		for _, in := range n.in {
			d.ensure(in)
		}
		var err error
		switch def := ops[n.op]; {
		case n.tap:
			err = d.emitTap(n)
		case def != nil && def.forward != nil:
			err = def.forward(d, n)
		default:
			d.copyNode(n)
		}
		if err != nil {
			return fmt.Errorf("graphs: derive: %v: %w", n, err)
		}
	}
	return nil
}

// emitBackward walks the nodes in reverse and emits, for each that a
// gradient reaches and that has an input needing one, its op's gradient
// rule; the gradients of its inputs are collected for their producers. A
// fused node emits nothing: the gradient reaching its output goes, as is,
// to its input, whose producer's rule (which computed the fused node)
// takes it as the gradient of the fused output.
func (d *deriver) emitBackward() error {
	g := d.g
	for i := len(g.nodes) - 1; i >= 0; i-- {
		n := g.nodes[i]
		if n.folded {
			continue
		}
		if n.fused {
			if o := n.out[0]; len(d.grads[o]) > 0 && d.wants(n.in[0]) {
				d.grads[n.in[0]] = append(d.grads[n.in[0]], d.grad(o))
			}
			continue
		}
		dy := make([]string, len(n.out))
		reached := false
		for j, o := range n.out {
			if o != "" && len(d.grads[o]) > 0 {
				dy[j] = d.grad(o)
				reached = true
			}
		}
		wantIn := false
		for _, in := range n.in {
			wantIn = wantIn || (in != "" && d.needs[in])
		}
		if !reached || !wantIn {
			continue
		}
		var rule gradRule
		if def := ops[n.op]; def != nil {
			rule = def.grad
		}
		if n.tap {
			rule = tapGrad
		}
		if rule == nil {
			return &UnsupportedOpError{Node: n.name, Op: n.op}
		}
		dx, err := rule(d, n, dy)
		if err != nil {
			return fmt.Errorf("graphs: derive: %v: backward: %w", n, err)
		}
		for j, gx := range dx {
			if gx != "" && j < len(n.in) && n.in[j] != "" && d.needs[n.in[j]] {
				d.grads[n.in[j]] = append(d.grads[n.in[j]], gx)
			}
		}
	}
	return nil
}

// setMetadata copies the forward graph's slatrun.* metadata and sets the
// derived graph's own.
func (d *deriver) setMetadata() {
	g, spec := d.g, d.spec
	for _, kv := range g.meta {
		if strings.HasPrefix(kv[0], contract.MetaPrefix) {
			d.b.SetMetadata(kv[0], kv[1])
		}
	}
	d.b.SetMetadata(contract.MetaKind, string(spec.Kind))
	d.b.SetMetadata(contract.MetaTaps, contract.List(d.taps))
	d.b.SetMetadata(contract.MetaParams, contract.List(g.params))
	d.b.SetMetadata(contract.MetaStats, contract.List(g.stats))
	d.b.SetMetadata(contract.MetaBatch, strconv.Itoa(spec.Batch))
	if spec.Kind == Eval {
		loss := spec.Loss
		if loss == "" {
			loss = contract.DefaultHead
		}
		d.b.SetMetadata(contract.MetaLoss, loss)
	}
}

// statOutputs outputs <stat>.next for every BN running statistic the
// forward pass updated (the training kinds).
func (d *deriver) statOutputs() {
	for _, s := range d.g.stats {
		if d.emitted[contract.NextName(s)] {
			d.output(contract.NextName(s), d.g.info[s].shape)
		}
	}
}

// maxClasses bounds K of the logits [N, K] (the loss heads build [1, K]
// constants in Go).
const maxClasses = 1 << 20

// checkLogits checks that the tensor Derive differentiates is float
// logits [N, K] with 2 ≤ K ≤ maxClasses.
func checkLogits(g *fgraph) error {
	what := fmt.Sprintf("output %q", g.outputName)
	if g.stripped != "" {
		what = fmt.Sprintf("logits (the input of the %s that computes the output %q)", g.stripped, g.outputName)
	}
	t := g.info[contract.Logits]
	if t == nil || len(t.shape) != 2 || !t.isFloat() {
		got := "an unknown shape"
		if t != nil {
			got = fmt.Sprintf("shape %v", t.shape)
			if !t.isFloat() {
				got = fmt.Sprintf("element type %s, shape %v", t.dt, t.shape)
			}
		}
		return fmt.Errorf("graphs: derive: the forward graph's %s must be float logits [N, K], got %s (see docs/models.md)", what, got)
	}
	if k := t.shape[1]; k < 2 || k > maxClasses {
		return fmt.Errorf("graphs: derive: the forward graph's %s has %d classes; slatrun needs 2 to %d", what, k, maxClasses)
	}
	return nil
}

// checkTaps checks the taps: listed once each, float tensors [N, ...] that
// the forward graph computes and the logits depend on.
func (d *deriver) checkTaps() error {
	g := d.g
	prod := g.producers()
	live := g.ancestors(g.output)
	seen := map[string]bool{}
	for _, t := range d.taps {
		if seen[t] {
			return fmt.Errorf("graphs: derive: tap %q is listed twice", t)
		}
		seen[t] = true
		if now, ok := g.renamed[t]; ok {
			switch now {
			case contract.Input:
				return fmt.Errorf("graphs: derive: tap %q is the model's input; a tap must be a tensor the forward graph computes", t)
			case contract.Logits:
				return fmt.Errorf("graphs: derive: tap %q is the model's logits, which slatrun calls logits; name the tap logits", t)
			}
			return fmt.Errorf("graphs: derive: tap %q: slatrun renames this tensor (to %q) because the names x and logits are reserved for the model's input and logits; rename it in the model", t, now)
		}
		ti, p := g.info[t], prod[t]
		switch {
		case t == "":
			return fmt.Errorf("graphs: derive: a tap has an empty name")
		case t == contract.Input:
			return fmt.Errorf("graphs: derive: tap %q is the model's input; a tap must be a tensor the forward graph computes", t)
		case ti == nil:
			return fmt.Errorf("graphs: derive: unknown tap %q: the forward graph has no tensor of that name%s", t, d.tapHint())
		case p == nil:
			return fmt.Errorf("graphs: derive: tap %q is an initializer of the forward graph, not a tensor it computes%s", t, d.tapHint())
		case p.folded:
			return fmt.Errorf("graphs: derive: tap %q is a constant (computed from shapes), not an activation%s", t, d.tapHint())
		case !ti.isFloat() || len(ti.shape) < 2:
			return fmt.Errorf("graphs: derive: tap %q must be a float tensor [N, ...], is %s %v", t, ti.dt, ti.shape)
		case !live[t]:
			return fmt.Errorf("graphs: derive: tap %q does not influence the logits", t)
		}
	}
	return nil
}

// tapHint names a few tensors that could be taps.
func (d *deriver) tapHint() string {
	var names []string
	live := d.g.ancestors(d.g.output)
	for _, n := range d.g.nodes {
		if n.folded || len(names) == 6 {
			continue
		}
		for _, o := range n.out {
			if t := d.g.info[o]; o != "" && o != contract.Logits && live[o] && t != nil && t.isFloat() && len(t.shape) >= 2 && len(names) < 6 {
				names = append(names, o)
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (tensors it computes include " + strings.Join(names, ", ") + ")"
}

// ancestors returns the tensors s depends on, s included.
func (g *fgraph) ancestors(s string) map[string]bool {
	want := map[string]bool{s: true}
	for i := len(g.nodes) - 1; i >= 0; i-- {
		n := g.nodes[i]
		hit := false
		for _, o := range n.out {
			hit = hit || (o != "" && want[o])
		}
		if hit {
			for _, in := range n.in {
				want[in] = true
			}
		}
	}
	return want
}

// freeInterfaceNames makes the names of the derived graph's inputs and
// outputs (x, y, target, loss, logits, loss.each, grad.*, delta.<tap>,
// <stat>.next) free: a forward tensor that carries one of them and is not
// the tensor it stands for is renamed. Two interface tensors wanting the
// same name (a parameter called y, a tap called grad.x) are an error.
func (d *deriver) freeInterfaceNames() error {
	g := d.g
	type claim struct{ tensor, role string }
	owner := map[string]claim{}
	add := func(name, tensor, role string) error {
		if prev, ok := owner[name]; ok && prev.tensor != tensor {
			return fmt.Errorf("graphs: derive: the derived graph needs the name %q for %s and for %s; rename the forward graph's tensor %q", name, prev.role, role, name)
		}
		owner[name] = claim{tensor, role}
		return nil
	}
	claims := [][3]string{{contract.Input, contract.Input, "the image input"}, {contract.Logits, contract.Logits, "the logits"},
		{contract.Labels, "", "the labels input"}, {contract.Target, "", "the targets input"}, {contract.Loss, "", "the loss output"},
		{contract.LossEach, "", "the per-example loss output"}, {contract.InputGrad, "", "the input gradient output"}}
	for _, p := range g.params {
		claims = append(claims, [3]string{p, p, "parameter " + p}, [3]string{contract.GradName(p), "", "the gradient of parameter " + p})
	}
	for _, s := range g.stats {
		claims = append(claims, [3]string{s, s, "running statistic " + s}, [3]string{contract.NextName(s), "", "the update of running statistic " + s})
	}
	for _, t := range d.taps {
		claims = append(claims, [3]string{t, t, "tap " + t}, [3]string{contract.DeltaName(t), "", "the perturbation of tap " + t}, [3]string{contract.GradName(t), "", "the gradient of tap " + t},
			[3]string{contract.RangeName(t), "", "the range of tap " + t}, [3]string{contract.L1Name(t), "", "the gradient L1 norm of tap " + t})
	}
	for _, c := range claims {
		if err := add(c[0], c[1], c[2]); err != nil {
			return err
		}
	}
	for name := range owner { // fresh names must not take an interface name either
		g.used[name] = true
	}
	m := map[string]string{}
	for _, name := range g.tensorNames() {
		if c, ok := owner[name]; ok && c.tensor != name {
			m[name] = g.fresh(name)
		}
	}
	g.renameAll(m)
	return nil
}

func (d *deriver) input(name string, dt onnx.DType, shape []int64) {
	d.b.Input(name, dt, shape...)
	d.isInput[name] = true
	d.emitted[name] = true
}

// output declares a graph output.
func (d *deriver) output(name string, shape []int64) {
	d.outs = append(d.outs, onnx.ValueInfo(name, onnx.Float, shape...))
	d.outNames[name] = true
}

// gradOutput declares grad.<name>, the total gradient of forward tensor name.
func (d *deriver) gradOutput(name string) { d.gradOutputAs(name, contract.GradName(name)) }

// gradOutputAs declares the total gradient of forward tensor name as the
// graph output out (zeros when no gradient reaches name).
func (d *deriver) gradOutputAs(name, out string) {
	shape := d.g.info[name].shape
	if len(d.grads[name]) == 0 {
		d.b.Node("ConstantOfShape", []string{d.ints(shape...)}, []string{out}, onnx.AttrTensor("value", onnx.FloatTensor("value", []int64{1}, []float32{0})))
	} else {
		d.bindOutput(d.grad(name), out)
	}
	d.output(out, shape)
}

// bindOutput makes tensor src available under the graph output name out:
// by renaming src when it is an internal tensor of the backward pass, or
// with an Identity node.
func (d *deriver) bindOutput(src, out string) {
	_, fwd := d.g.info[src]
	if fwd || d.isInput[src] || d.outNames[src] {
		d.b.Node("Identity", []string{src}, []string{out})
		return
	}
	produced := false
	for _, n := range d.b.Graph().GetNode() {
		for _, o := range n.Output {
			produced = produced || o == src
		}
	}
	if !produced { // a constant or initializer
		d.b.Node("Identity", []string{src}, []string{out})
		return
	}
	for _, n := range d.b.Graph().GetNode() {
		for i, s := range n.Input {
			if s == src {
				n.Input[i] = out
			}
		}
		for i, s := range n.Output {
			if s == src {
				n.Output[i] = out
			}
		}
	}
	for k, v := range d.total {
		if v == src {
			d.total[k] = out
		}
	}
}

// ensure emits forward tensor s as an initializer if it is a constant that
// is not yet in the derived graph.
func (d *deriver) ensure(s string) {
	if s == "" || d.emitted[s] {
		return
	}
	if t, ok := d.g.inits[s]; ok {
		d.b.Initializer(t)
		d.emitted[s] = true
		return
	}
	if t := d.g.info[s]; t != nil && t.isConst {
		d.b.Initializer(encodeConst(s, t))
		d.emitted[s] = true
	}
}

// copyNode emits n unchanged.
func (d *deriver) copyNode(n *node) {
	d.b.Node(n.op, n.in, n.out, n.attrs...)
}

// grad returns the total gradient of forward tensor s (summing the
// contributions of its consumers once).
func (d *deriver) grad(s string) string {
	if t, ok := d.total[s]; ok {
		return t
	}
	cs := d.grads[s]
	t := cs[0]
	if len(cs) > 1 {
		t = d.op("Sum", cs)
	}
	d.total[s] = t
	return t
}

// takeGrad hands a kernel with an accumulate input the gradient of forward
// tensor s that its other consumers gave so far, when that is exactly one
// tensor, and removes it from s's contributions: the kernel's output, which
// the rule returns, is then s's gradient so far (no Sum of the two). It
// returns "" otherwise.
func (d *deriver) takeGrad(s string) string {
	if cs := d.grads[s]; len(cs) == 1 {
		d.grads[s] = nil
		return cs[0]
	}
	return ""
}

// tensorShape returns a lookup of the static shapes the deriver knows of
// the derived graph's tensors: the forward tensors' and their gradients'
// (the totals and the contributions no kernel took), nil for the rest.
func (d *deriver) tensorShape() func(string) []int64 {
	grads := map[string][]int64{}
	for s, t := range d.total {
		grads[t] = d.shapeOrNil(s)
	}
	for s, cs := range d.grads {
		for _, c := range cs {
			grads[c] = d.shapeOrNil(s)
		}
	}
	return func(t string) []int64 {
		if s := d.shapeOrNil(t); s != nil {
			return s
		}
		return grads[t]
	}
}

// wants reports whether forward tensor s needs a gradient.
func (d *deriver) wants(s string) bool { return s != "" && d.needs[s] }

// shape returns the static shape of forward tensor s.
func (d *deriver) shape(s string) []int64 { return d.g.info[s].shape }

// op emits a node with one fresh output.
func (d *deriver) op(op string, in []string, attrs ...*onnxpb.AttributeProto) string {
	return d.b.Op(op, in, attrs...)
}

// ints returns a (shared) 1-D int64 constant.
func (d *deriver) ints(v ...int64) string {
	key := fmt.Sprint("i", v)
	if s, ok := d.cache[key]; ok {
		return s
	}
	s := d.b.Ints(v...)
	d.cache[key] = s
	return s
}

// scalar returns a (shared) float32 0-d constant.
func (d *deriver) scalar(v float32) string {
	key := fmt.Sprint("f", v)
	if s, ok := d.cache[key]; ok {
		return s
	}
	s := d.b.Scalar(v)
	d.cache[key] = s
	return s
}

// floats adds a float32 constant.
func (d *deriver) floats(name string, shape []int64, v []float32) string {
	return d.b.Floats(name, shape, v)
}

func (d *deriver) reshape(x string, shape []int64) string {
	return d.op("Reshape", []string{x, d.ints(shape...)})
}

// reduceSum sums x over axes (keepdims as given).
func (d *deriver) reduceSum(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return d.op("ReduceSum", []string{x, d.ints(axes...)}, onnx.AttrInt("keepdims", k))
}

func (d *deriver) reduceMean(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return d.op("ReduceMean", []string{x, d.ints(axes...)}, onnx.AttrInt("keepdims", k))
}

// unbroadcast reduces a gradient of shape from (a broadcast result) to the
// shape to of the operand that was broadcast.
func (d *deriver) unbroadcast(grad string, from, to []int64) string {
	if slices.Equal(from, to) {
		return grad
	}
	off := len(from) - len(to)
	var axes []int64
	for i := range from {
		j := i - off
		if j < 0 || (to[j] == 1 && from[i] != 1) {
			axes = append(axes, int64(i))
		}
	}
	r := grad
	if len(axes) > 0 {
		r = d.reduceSum(grad, axes, true)
	}
	if onnx.NumElements(from) != onnx.NumElements(to) || len(from) != len(to) {
		r = d.reshape(r, to)
	}
	return r
}

// zeros returns a float zero tensor of the given shape.
func (d *deriver) zeros(shape []int64) string {
	return d.op("ConstantOfShape", []string{d.ints(shape...)}, onnx.AttrTensor("value", onnx.FloatTensor("value", []int64{1}, []float32{0})))
}

// emitTap emits SLAT's domain clip at a tap: h = pre + clip(δ, lo−pre,
// hi−pre) with lo/hi the per-sample min/max of pre over its non-batch,
// non-channel axes (for a 2-D tap [N,F], over F). Since lo ≤ pre ≤ hi,
// that is clamp(pre + δ, lo, hi), which is what is emitted: three passes
// over the tap instead of five (on preactresnet18's 32 MiB taps the two
// saved passes were a visible share of SLAT's train pass). Both forms give
// pre + δ exactly where it is inside [lo, hi]; where it is clipped the
// clamp gives lo or hi exactly, the literal form lo or hi up to rounding.
// No gradient flows through the clip (tapGrad). With Spec.Kernels the
// clamp is one ai.slatrun TapClip node, which computes exactly these ops
// in one pass per plane.
func (d *deriver) emitTap(n *node) error {
	pre, delta, h := n.in[0], n.in[1], n.out[0]
	if d.spec.NoDomainClip {
		d.b.Node("Add", []string{pre, delta}, []string{h})
		return nil
	}
	if d.spec.Kernels {
		d.b.NodeIn(onnx.KernelDomain, onnx.TapClip, []string{pre, delta}, []string{h})
		return nil
	}
	axes := tapAxes(len(d.shape(pre)))
	lo := d.op("ReduceMin", []string{pre, d.ints(axes...)}, onnx.AttrInt("keepdims", 1))
	hi := d.op("ReduceMax", []string{pre, d.ints(axes...)}, onnx.AttrInt("keepdims", 1))
	d.b.Node("Max", []string{d.op("Min", []string{d.add(pre, delta), hi}), lo}, []string{h})
	return nil
}

// tapAxes are the axes over which the domain clip's bounds are taken:
// spatial axes 2.. for [N,C,...] taps, the feature axis for [N,F] taps.
func tapAxes(rank int) []int64 {
	if rank == 2 {
		return []int64{1}
	}
	var a []int64
	for i := 2; i < rank; i++ {
		a = append(a, int64(i))
	}
	return a
}

// tapGrad: the clipped perturbation is a constant (stop-gradient), so the
// gradient passes through to the unperturbed tensor.
func tapGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return []string{dy[0], ""}, nil
}
