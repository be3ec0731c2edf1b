package graphs

import (
	"fmt"
	"slices"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

// Batch normalization. In the training kinds (attack, train) a
// BatchNormalization node becomes its training form, composed of standard
// ops: batch mean μ and biased variance σ² over (N, spatial), x̂ =
// (x − μ)/√(σ² + ε), y = γ·x̂ + β, as PyTorch's train mode computes. Its
// backward is dedicated rather than composed:
//
//	dβ = Σ dy,  dγ = Σ dy·x̂,  dx = (γ/σ)·(dy − mean(dy) − x̂·mean(dy·x̂)),
//
// computed from the centred input xc without materializing x̂. Both
// training kinds also output <stat>.next = (1−m)·old + m·batch, with the unbiased
// variance for running_var (PyTorch's rule). In the eval kind BN keeps its
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

func bnForward(d *deriver, n *node) error {
	if !d.training {
		d.copyNode(n)
		return nil
	}
	x, scale, bias, mean, vr := n.in[0], n.in[1], n.in[2], n.input(3), n.input(4)
	xs := d.shape(x)
	C := xs[1]
	axes := bnAxes(len(xs))
	bs := bnBroadcast(xs)
	cnt := onnx.NumElements(xs) / C
	eps := n.float("epsilon", 1e-5)
	mu := d.reduceMean(x, axes, true)
	xc := d.sub(x, mu)
	v := d.reduceMean(d.mul(xc, xc), axes, true)
	invstd := d.op("Reciprocal", []string{d.op("Sqrt", []string{d.add(v, d.scalar(eps))})})
	gam := d.reshape(scale, bs)
	k := d.mul(invstd, gam)
	d.b.Node("Add", []string{d.mul(xc, k), d.reshape(bias, bs)}, []string{n.out[0]})
	d.saved[n] = map[string]string{"xc": xc, "invstd": invstd, "k": k}
	if d.isInput[mean] && d.isInput[vr] {
		if mean == vr || d.emitted[contract.NextName(mean)] || d.emitted[contract.NextName(vr)] {
			return fmt.Errorf("the running statistics %q and %q are shared with another BatchNormalization (or with each other); slatrun updates each from one node", mean, vr)
		}
		m := d.spec.BNMomentum
		if m == 0 {
			m = 0.1
		}
		unb := float32(1)
		if cnt > 1 {
			unb = float32(cnt) / float32(cnt-1)
		}
		d.b.Node("Add", []string{d.mul(mean, d.scalar(1-m)), d.mul(d.reshape(mu, []int64{C}), d.scalar(m))}, []string{contract.NextName(mean)})
		d.b.Node("Add", []string{d.mul(vr, d.scalar(1-m)), d.mul(d.reshape(v, []int64{C}), d.scalar(m*unb))}, []string{contract.NextName(vr)})
		d.emitted[contract.NextName(mean)] = true
		d.emitted[contract.NextName(vr)] = true
	}
	return nil
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
		return res, nil
	}
	sv := d.saved[n]
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
