package graphs

import (
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// The graphs of TRADES (Zhang et al., ICML 2019), which DeriveTRADES
// builds: the kinds KL and TRADES.
//
// The kl kind is the inner maximization. The reference runs it with the
// model in eval mode, so BN normalizes with the running statistics and
// updates nothing; the kl kind does the same with the parameters and
// running statistics as inputs (unlike the eval kind, which embeds them),
// so that one graph follows the training run. Its loss is the per-example
// KL(softmax(logits.ref) ‖ softmax(f(x))) (emitKLHead).
//
// The trades kind is the outer loss, in training mode. The reference
// evaluates model(x) for the cross-entropy, then model(x′) and model(x)
// again for the KL term, each forward with its own batch statistics; both
// model(x) give the same logits, so the graph instantiates the network
// twice (pairForward), on x and on x.adv, with shared parameters, and
// differentiates CE + β·KL through both (emitTRADESHead). Each running
// statistic then takes the reference's three updates in its order: clean,
// adversarial, clean (tradesObjective.outputs).

// tradesNames are the interface names the TRADES kinds add to those of
// every derived graph.
var tradesNames = []string{contract.AdvInput, contract.AdvLogits, contract.RefLogits}

// DeriveTRADES derives the graph of kind KL or TRADES from a forward graph
// (docs/contract.md):
//
//   - kl: inputs x, y (unused), every parameter, every BN running
//     statistic and logits.ref [N, K]; BN on the running statistics,
//     which it does not update; outputs logits, loss.each (the
//     per-example KL(softmax(logits.ref) ‖ softmax(logits))) and grad.x
//     of Σ loss.each;
//   - trades: inputs x, y, every parameter, every BN running statistic
//     and x.adv; the network on x and on x.adv, each with its own batch
//     statistics; outputs loss (the batch mean of CE(logits, y) +
//     β·KL(softmax(logits) ‖ softmax(logits.adv)), β = Spec.Beta),
//     logits, logits.adv, grad.<param> and <stat>.next (three updates:
//     x, x.adv, x).
//
// Neither kind takes taps. Spec.NCHWcBlock and Spec.Kernels apply as for
// Derive's kinds.
func DeriveTRADES(forward *onnx.Model, spec Spec) (*onnx.Model, error) {
	if spec.Kind != KL && spec.Kind != TRADES {
		return nil, fmt.Errorf("graphs: derive: DeriveTRADES builds the kinds kl and trades, not %q", spec.Kind)
	}
	if spec.Batch <= 0 {
		return nil, fmt.Errorf("graphs: derive: Spec.Batch must be positive, got %d", spec.Batch)
	}
	if len(spec.Taps) > 0 {
		return nil, fmt.Errorf("graphs: derive: the %s kind perturbs no taps; got %v", spec.Kind, spec.Taps)
	}
	if b := float64(spec.Beta); spec.Kind == TRADES && !(b >= 0 && !math.IsInf(b, 0)) {
		return nil, fmt.Errorf("graphs: derive: Spec.Beta = %v: want a finite weight ≥ 0", spec.Beta)
	}
	g, err := loadGraph(forward, int64(spec.Batch))
	if err != nil {
		return nil, err
	}
	if err := checkLogits(g); err != nil {
		return nil, err
	}
	if err := checkFoldedBN(forward, g); err != nil {
		return nil, err
	}
	if err := reserveTRADESNames(g); err != nil {
		return nil, err
	}
	var d *deriver
	loss := contract.HeadKL
	if spec.Kind == KL {
		d = newDeriver(g, spec, []string{}, klObjective{})
		d.training = false // the reference's eval mode: BN on the running statistics
	} else {
		obj, err := pairForward(g)
		if err != nil {
			return nil, err
		}
		d = newDeriver(g, spec, []string{}, obj)
		loss = contract.HeadTRADES
	}
	m, err := d.build()
	if err != nil {
		return nil, err
	}
	m.SetMetadata(contract.MetaLoss, loss)
	if spec.Kind == TRADES {
		m.SetMetadata(contract.MetaBeta, strconv.FormatFloat(float64(spec.Beta), 'g', -1, 32))
	}
	return m, nil
}

// reserveTRADESNames frees the names tradesNames for the interface: a
// forward tensor that carries one is renamed, unless it is a parameter or
// running statistic (whose names are part of the interface too).
func reserveTRADESNames(g *fgraph) error {
	iface := map[string]bool{}
	for _, p := range append(append([]string(nil), g.params...), g.stats...) {
		iface[p] = true
	}
	names := map[string]bool{}
	for _, s := range g.tensorNames() {
		names[s] = true
	}
	for _, s := range tradesNames {
		if iface[s] {
			return fmt.Errorf("graphs: derive: the forward graph's initializer %q takes a name the TRADES graphs need; rename it", s)
		}
		if names[s] {
			g.renameAll(map[string]string{s: g.fresh(s)})
		}
		g.used[s] = true
	}
	return nil
}

// klObjective is the kl kind's: inputs every parameter, every running
// statistic and logits.ref; output grad.x of Σ loss.each.
type klObjective struct{}

func (klObjective) sources(d *deriver) []string { return []string{contract.Input} }

func (klObjective) inputs(d *deriver) {
	g := d.g
	for _, p := range g.params {
		d.input(p, onnx.Float, g.info[p].shape)
	}
	for _, s := range g.stats {
		d.input(s, onnx.Float, g.info[s].shape)
	}
	d.input(contract.RefLogits, onnx.Float, g.info[g.output].shape)
}

func (klObjective) seed(d *deriver) (string, error) { return d.emitKLHead() }

func (klObjective) outputs(d *deriver) { d.gradOutput(contract.Input) }

// tradesObjective is the trades kind's. Every BatchNormalization of both
// instances reads, in place of its running statistics, zero constants
// (fake), which the derived graph treats as inputs: each then computes
// (1−m)·0 + m·batch = m·batch exactly, its own share of an update, and
// outputs chains the three updates from them.
type tradesObjective struct {
	// fake maps a running statistic to the zero stand-ins its clean and
	// its adversarial BatchNormalization read.
	fake map[string][2]string
}

func (o *tradesObjective) sources(d *deriver) []string {
	return append([]string(nil), d.g.params...)
}

func (o *tradesObjective) inputs(d *deriver) {
	g := d.g
	for _, p := range g.params {
		d.input(p, onnx.Float, g.info[p].shape)
	}
	for _, s := range g.stats {
		d.input(s, onnx.Float, g.info[s].shape)
	}
	d.input(contract.AdvInput, onnx.Float, g.info[contract.Input].shape)
	for _, f := range o.fake {
		// Not graph inputs: zero initializers (ensure emits them) that
		// bnUpdatesStats takes for running statistics to update.
		d.isInput[f[0]], d.isInput[f[1]] = true, true
	}
}

func (o *tradesObjective) seed(d *deriver) (string, error) {
	return d.emitTRADESHead(d.spec.Beta)
}

// outputs: grad.<param>, and <stat>.next after the reference's three
// updates, r ← (1−m)·r + m·batch with the batch statistics of x, of x′
// and of x again (the clean forward runs twice there, with the same
// statistics).
func (o *tradesObjective) outputs(d *deriver) {
	for _, p := range d.g.params {
		d.gradOutput(p)
	}
	m := d.spec.BNMomentum
	if m == 0 {
		m = 0.1
	}
	keep := d.scalar(1 - m)
	for _, s := range d.g.stats {
		f, ok := o.fake[s]
		if !ok || !d.emitted[contract.NextName(f[0])] || !d.emitted[contract.NextName(f[1])] {
			continue
		}
		clean, adv := contract.NextName(f[0]), contract.NextName(f[1])
		r := d.op("Add", []string{d.op("Mul", []string{s, keep}), clean})
		r = d.op("Add", []string{d.op("Mul", []string{r, keep}), adv})
		d.b.Node("Add", []string{d.op("Mul", []string{r, keep}), clean}, []string{contract.NextName(s)})
		d.emitted[contract.NextName(s)] = true
		d.output(contract.NextName(s), d.g.info[s].shape)
	}
}

// pairForward makes g compute the network on x and on x.adv: every
// computed (not folded) node is copied, its outputs renamed and x renamed
// to x.adv, the parameters and constants shared; the copy of logits is
// logits.adv, and g's output becomes their concatenation [2B, K], so that
// everything both logits depend on is kept and differentiated. Each
// BatchNormalization of either instance reads its own zero stand-in for
// each running statistic (tradesObjective).
func pairForward(g *fgraph) (*tradesObjective, error) {
	isStat := map[string]bool{}
	for _, s := range g.stats {
		isStat[s] = true
	}
	obj := &tradesObjective{fake: map[string][2]string{}}
	zero := func(s, tag string) string {
		f := g.fresh(s + "." + tag)
		shape := clone64(g.info[s].shape)
		g.inits[f] = onnx.FloatTensor(f, shape, make([]float32, onnx.NumElements(shape)))
		g.info[f] = &tinfo{dt: onnx.Float, shape: shape, isConst: true, cf: make([]float32, onnx.NumElements(shape))}
		return f
	}
	ren := map[string]string{contract.Input: contract.AdvInput, g.output: contract.AdvLogits}
	g.info[contract.AdvInput] = &tinfo{dt: onnx.Float, shape: clone64(g.info[contract.Input].shape)}
	var adv []*node
	for _, n := range g.nodes {
		if n.folded {
			continue
		}
		c := &node{op: n.op, name: n.name + " (x.adv)", in: append([]string(nil), n.in...),
			out: append([]string(nil), n.out...), coercesTo2D: n.coercesTo2D}
		for _, a := range n.attrs {
			c.attrs = append(c.attrs, proto.Clone(a).(*onnxpb.AttributeProto))
		}
		for i, s := range c.in {
			if r, ok := ren[s]; ok {
				c.in[i] = r
			}
		}
		for i, s := range c.out {
			if s == "" {
				continue
			}
			r, ok := ren[s]
			if !ok {
				r = g.fresh(s + ".adv")
				ren[s] = r
			}
			c.out[i] = r
			if t := g.info[s]; t != nil {
				ct := *t
				ct.shape = clone64(t.shape)
				g.info[r] = &ct
			}
		}
		if n.op == "BatchNormalization" {
			mean, vr := n.input(3), n.input(4)
			for _, s := range []string{mean, vr} {
				if !isStat[s] {
					continue
				}
				if _, dup := obj.fake[s]; dup || mean == vr {
					return nil, fmt.Errorf("graphs: derive: %v: the running statistic %q is shared with another BatchNormalization (or with its other statistic); slatrun updates each from one node", n, s)
				}
				f := [2]string{zero(s, "clean"), zero(s, "adv")}
				obj.fake[s] = f
				for i := 3; i <= 4; i++ {
					if n.in[i] == s {
						n.in[i], c.in[i] = f[0], f[1]
					}
				}
			}
		}
		adv = append(adv, c)
	}
	g.nodes = append(g.nodes, adv...)
	pair := g.fresh("logits.pair")
	zs := g.info[contract.Logits].shape
	g.info[pair] = &tinfo{dt: onnx.Float, shape: []int64{2 * zs[0], zs[1]}}
	g.nodes = append(g.nodes, &node{op: "Concat", name: "TRADES logits pair", in: []string{contract.Logits, contract.AdvLogits},
		out: []string{pair}, attrs: []*onnxpb.AttributeProto{onnx.AttrInt("axis", 0)}})
	g.output = pair
	return obj, nil
}
