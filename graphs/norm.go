package graphs

import (
	"fmt"
	"slices"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Batch normalization. In the training kinds (attack, train) a
// BatchNormalization node becomes its training form: batch mean μ and
// biased variance σ² over (N, spatial), x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ +
// β, as PyTorch's train mode computes. Its backward is dedicated rather
// than composed:
//
//	dβ = Σ dy,  dγ = Σ dy·x̂,  dx = (γ/σ)·(dy − mean(dy) − x̂·mean(dy·x̂)).
//
// Without Spec.Kernels both are composed of standard ops, the backward
// from the centred input xc without materializing x̂. With Spec.Kernels
// (and an input the kernel takes: float32, rank 2 to bnKernelMaxRank) the
// forward is one ai.slatrun BatchNormTrain node and the backward one
// BatchNormTrainGrad node; a Relu that is the BN output's only consumer is
// then fused into both (relu = 1; fuseBNRelu), so the pre-ReLU tensor is
// never materialized. Both training kinds also output <stat>.next = (1−m)·old +
// m·batch, with the unbiased variance for running_var (PyTorch's rule),
// from the batch statistics of either form. In the eval kind BN keeps its
// inference form (running statistics).

func init() {
	register(map[string]opDef{
		"BatchNormalization": {upgrade: upgradeBN, infer: inferBN, grad: bnGrad, forward: bnForward},
	})
}

// upgradeBN drops training_mode (opsets 14, 15) and the attributes of
// older opsets, and the running-statistics outputs: the training kinds
// compute slatrun's own training form and <stat>.next outputs.
func upgradeBN(g *fgraph, n *node) error {
	n.delAttr("training_mode")
	n.delAttr("spatial")
	n.delAttr("is_test")
	n.delAttr("consumed_inputs")
	n.out = n.out[:1]
	return nil
}

func bnAxes(rank int) []int64 { return append([]int64{0}, seq(2, rank)...) }

func bnBroadcast(xs []int64) []int64 {
	s := make([]int64, len(xs))
	for i := range s {
		s[i] = 1
	}
	s[1] = xs[1]
	return s
}

// bnKernelMaxRank is the highest input rank slatrun's BatchNormTrain
// kernels take (BN_MAXRANK in onnx/ort/bnorm.c).
const bnKernelMaxRank = 8

// bnKernel reports whether BatchNormalization node n runs in slatrun's
// fused BatchNormTrain/BatchNormTrainGrad kernels: in the training kinds,
// with Spec.Kernels, for a float32 input of rank 2 to bnKernelMaxRank with
// elements in every channel.
func (d *deriver) bnKernel(n *node) bool {
	if !d.training || !d.spec.Kernels || n.op != "BatchNormalization" || len(n.in) < 3 {
		return false
	}
	x := d.g.info[n.in[0]]
	if x == nil || !x.isFloat() || len(x.shape) < 2 || len(x.shape) > bnKernelMaxRank || x.shape[1] < 1 {
		return false
	}
	for _, p := range n.in[1:3] {
		if t := d.g.info[p]; t == nil || !t.isFloat() {
			return false
		}
	}
	return onnx.NumElements(x.shape)/x.shape[1] > 0
}

// fuseBNRelu marks, for each BatchNormalization in the kernel (bnKernel),
// the Relu that is its output's only consumer as fused into it, when that
// output is nothing else: not a tap, not the logits. The kernel then
// computes max(0, BN(x)) under the Relu's output name, and its grad node
// masks the gradient itself. In the train kind a tap on the BN output has
// become a tap node between the two, so no Relu follows the BN directly.
func (d *deriver) fuseBNRelu() {
	if !d.training || !d.spec.Kernels {
		return
	}
	cons := d.g.consumers()
	tap := map[string]bool{}
	for _, t := range d.taps {
		tap[t] = true
	}
	for _, n := range d.g.nodes {
		if n.folded || !d.bnKernel(n) {
			continue
		}
		y := n.out[0]
		c := cons[y]
		if len(c) != 1 || tap[y] || y == d.g.output {
			continue
		}
		if r := c[0]; r.op == "Relu" && !r.tap && !r.folded && !r.fused && len(r.in) == 1 && len(r.out) == 1 {
			r.fused = true
			d.bnRelu[n] = r
		}
	}
}

func bnForward(d *deriver, n *node) error {
	if !d.training {
		d.copyNode(n)
		return nil
	}
	upd, err := d.bnUpdatesStats(n)
	if err != nil {
		return err
	}
	if d.bnKernel(n) {
		return d.bnForwardKernel(n, upd)
	}
	x, scale, bias := n.in[0], n.in[1], n.in[2]
	xs := d.shape(x)
	C := xs[1]
	axes := bnAxes(len(xs))
	bs := bnBroadcast(xs)
	eps := n.float("epsilon", 1e-5)
	mu := d.reduceMean(x, axes, true)
	xc := d.sub(x, mu)
	v := d.reduceMean(d.mul(xc, xc), axes, true)
	invstd := d.op("Reciprocal", []string{d.op("Sqrt", []string{d.add(v, d.scalar(eps))})})
	gam := d.reshape(scale, bs)
	k := d.mul(invstd, gam)
	d.b.Node("Add", []string{d.mul(xc, k), d.reshape(bias, bs)}, []string{n.out[0]})
	d.saved[n] = map[string]string{"xc": xc, "invstd": invstd, "k": k}
	if upd {
		d.bnNextStats(n, d.reshape(mu, []int64{C}), d.reshape(v, []int64{C}))
	}
	return nil
}

// bnForwardKernel emits n as one BatchNormTrain node, with the Relu fused
// into it if any, and the running-statistics updates from its batch mean
// and variance when upd.
func (d *deriver) bnForwardKernel(n *node, upd bool) error {
	x, scale, bias := n.in[0], n.in[1], n.in[2]
	y := n.out[0]
	attrs := []*onnxpb.AttributeProto{onnx.AttrFloat("epsilon", n.float("epsilon", 1e-5))}
	sv := map[string]string{}
	if r := d.bnRelu[n]; r != nil {
		y = r.out[0]
		attrs = append(attrs, onnx.AttrInt("relu", 1))
		sv["y"] = y
	}
	mean, invstd := d.b.Fresh("bn_mean"), d.b.Fresh("bn_invstd")
	vr := ""
	if upd {
		vr = d.b.Fresh("bn_var")
	}
	d.b.NodeIn(onnx.KernelDomain, onnx.BatchNormTrain, []string{x, scale, bias}, []string{y, mean, vr, invstd}, attrs...)
	sv["mean"], sv["invstd"] = mean, invstd
	d.saved[n] = sv
	if upd {
		d.bnNextStats(n, mean, vr)
	}
	return nil
}

// bnUpdatesStats reports whether n updates its running statistics (both
// are inputs of the derived graph), and refuses statistics shared with
// another BatchNormalization.
func (d *deriver) bnUpdatesStats(n *node) (bool, error) {
	mean, vr := n.input(3), n.input(4)
	if !d.isInput[mean] || !d.isInput[vr] {
		return false, nil
	}
	if mean == vr || d.emitted[contract.NextName(mean)] || d.emitted[contract.NextName(vr)] {
		return false, fmt.Errorf("the running statistics %q and %q are shared with another BatchNormalization (or with each other); slatrun updates each from one node", mean, vr)
	}
	return true, nil
}

// bnNextStats emits <stat>.next = (1−m)·old + m·batch for n's running
// mean and variance from the batch mean and biased batch variance [C],
// the variance made unbiased (count/(count−1)).
func (d *deriver) bnNextStats(n *node, bmean, bvar string) {
	mean, vr := n.input(3), n.input(4)
	xs := d.shape(n.in[0])
	cnt := onnx.NumElements(xs) / xs[1]
	m := d.spec.BNMomentum
	if m == 0 {
		m = 0.1
	}
	unb := float32(1)
	if cnt > 1 {
		unb = float32(cnt) / float32(cnt-1)
	}
	d.b.Node("Add", []string{d.mul(mean, d.scalar(1-m)), d.mul(bmean, d.scalar(m))}, []string{contract.NextName(mean)})
	d.b.Node("Add", []string{d.mul(vr, d.scalar(1-m)), d.mul(bvar, d.scalar(m*unb))}, []string{contract.NextName(vr)})
	d.emitted[contract.NextName(mean)] = true
	d.emitted[contract.NextName(vr)] = true
}

func bnGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, scale, bias := n.in[0], n.in[1], n.in[2]
	xs := d.shape(x)
	C := xs[1]
	axes := bnAxes(len(xs))
	bs := bnBroadcast(xs)
	res := make([]string, len(n.in))
	if !d.training {
		// inference form: y = γ·(x − mean)/√(var + ε) + β
		eps := n.float("epsilon", 1e-5)
		inv := d.op("Reciprocal", []string{d.op("Sqrt", []string{d.add(n.in[4], d.scalar(eps))})})
		if d.wants(x) {
			res[0] = d.mul(dy[0], d.reshape(d.mul(scale, inv), bs))
		}
		if d.wants(scale) {
			xhat := d.mul(d.sub(x, d.reshape(n.in[3], bs)), d.reshape(inv, bs))
			res[1] = d.reduceSum(d.mul(dy[0], xhat), axes, false)
		}
		if d.wants(bias) {
			res[2] = d.reduceSum(dy[0], axes, false)
		}
		// the running statistics, inputs of some graphs (the kl kind) and
		// differentiated in second-order graphs: ∂y/∂mean = −γ·inv,
		// ∂y/∂var = −½·γ·(x − mean)·inv³
		if mean, vr := n.in[3], n.in[4]; d.wants(mean) || d.wants(vr) {
			gs := d.mul(scale, inv)
			if d.wants(mean) {
				res[3] = d.op("Neg", []string{d.mul(d.reduceSum(dy[0], axes, false), gs)})
			}
			if d.wants(vr) {
				xc := d.sub(x, d.reshape(mean, bs))
				s := d.reduceSum(d.mul(dy[0], xc), axes, false)
				res[4] = d.mul(s, d.mul(d.mul(gs, d.mul(inv, inv)), d.scalar(-0.5)))
			}
		}
		return res, nil
	}
	sv := d.saved[n]
	if _, ok := sv["mean"]; ok {
		return d.bnGradKernel(n, dy[0], sv), nil
	}
	xc, invstd, k := sv["xc"], sv["invstd"], sv["k"]
	cnt := float32(onnx.NumElements(xs) / C)
	s1 := d.reduceSum(dy[0], axes, true)            // Σ dy
	s2 := d.reduceSum(d.mul(dy[0], xc), axes, true) // Σ dy·xc
	if d.wants(bias) {
		res[2] = d.reshape(s1, []int64{C})
	}
	if d.wants(scale) {
		res[1] = d.reshape(d.mul(s2, invstd), []int64{C})
	}
	if d.wants(x) {
		c1 := d.mul(s1, d.scalar(1/cnt))
		c2 := d.mul(s2, d.mul(d.mul(invstd, invstd), d.scalar(1/cnt)))
		res[0] = d.mul(d.sub(d.sub(dy[0], c1), d.mul(xc, c2)), k)
	}
	return res, nil
}

// bnGradKernel emits the backward of a BatchNormTrain node as one
// BatchNormTrainGrad node; dy is the gradient reaching the forward's Y
// (the fused Relu's output when there is one). Gradients no input wants
// are left out. When X already has exactly one gradient contribution from
// its other consumers (a residual fan-out), the node takes it as its acc
// input and returns the sum: the Sum of the two that grad would emit costs
// a pass over X's size, the addition inside the kernel almost nothing.
func (d *deriver) bnGradKernel(n *node, dy string, sv map[string]string) []string {
	in := []string{dy, n.in[0], n.in[1], sv["mean"], sv["invstd"]}
	var attrs []*onnxpb.AttributeProto
	if y := sv["y"]; y != "" {
		in = append(in, y)
		attrs = append(attrs, onnx.AttrInt("relu", 1))
	}
	if acc := d.takeGrad(n.in[0]); acc != "" { // (only a wanted X has contributions)
		if len(in) == 5 {
			in = append(in, "") // no Y
		}
		in = append(in, acc)
	}
	res := make([]string, len(n.in))
	outs := make([]string, 3)
	last := -1
	for i, what := range []string{"bn_dx", "bn_dscale", "bn_dbias"} {
		if d.wants(n.in[i]) {
			outs[i] = d.b.Fresh(what)
			res[i] = outs[i]
			last = i
		}
	}
	if last >= 0 {
		d.b.NodeIn(onnx.KernelDomain, onnx.BatchNormTrainGrad, in, outs[:last+1], attrs...)
	}
	return res
}

// inferBN: x [N, C, ...]; scale, bias, mean and var [C].
func inferBN(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 5); err != nil {
		return nil, err
	}
	x := ins[0].shape
	if len(x) < 2 || x[1] < 1 {
		return nil, fmt.Errorf("BatchNormalization needs an input [N, C, ...] with C ≥ 1, got %v", x)
	}
	for i, what := range []string{"scale", "bias", "mean", "variance"} {
		if t := ins[1+i]; !slices.Equal(t.shape, []int64{x[1]}) || !t.isFloat() {
			return nil, fmt.Errorf("BatchNormalization %s has shape %v, want [%d] (the input's channels) of floats", what, t.shape, x[1])
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: clone64(x)}}, nil
}
