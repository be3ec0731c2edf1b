package graphs

import (
	"fmt"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

// Loss heads and the ops classifiers and attack losses use: Softmax,
// LogSoftmax, Hardmax (no gradient) and TopK.

func init() {
	register(map[string]opDef{
		"Softmax":    {upgrade: upgradeSoftmax, infer: inferSoftmax, grad: softmaxGrad},
		"LogSoftmax": {upgrade: upgradeSoftmax, infer: inferSoftmax, grad: logSoftmaxGrad},
		"Hardmax":    {upgrade: upgradeSoftmax, infer: inferSoftmax, grad: noGrad},
		"TopK":       {infer: inferTopK, grad: topKGrad},
	})
}

// upgradeSoftmax: before opset 13 the Softmax family coerced its input to
// 2-D at axis (default 1), which is the new semantics when axis is the last
// axis; the axis is made explicit and inferSoftmax checks that it is the
// last.
func upgradeSoftmax(g *fgraph, n *node) error {
	if g.opset < 13 {
		n.setAttr(onnx.AttrInt("axis", n.int("axis", 1)))
		n.coercesTo2D = true
	}
	return nil
}

// inferSoftmax is sameShape, refusing an opset<13 softmax over an axis
// other than the last.
func inferSoftmax(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if n.coercesTo2D {
		ax, err := normAxis(n.int("axis", 1), len(ins[0].shape))
		if err != nil {
			return nil, err
		}
		if int(ax) != len(ins[0].shape)-1 {
			return nil, fmt.Errorf("opset<13 %s over axis %d of a rank-%d tensor is not supported; export with opset ≥ 13", n.op, ax, len(ins[0].shape))
		}
	}
	return sameShape(g, n, ins)
}

func inferTopK(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	k, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(n.int("axis", -1), len(ins[0].shape))
	if err != nil {
		return nil, err
	}
	if len(k) != 1 || k[0] < 0 || k[0] > ins[0].shape[ax] {
		return nil, fmt.Errorf("TopK's k %v must be one value in [0, %d]", k, ins[0].shape[ax])
	}
	out := clone64(ins[0].shape)
	out[ax] = k[0]
	return []*tinfo{{dt: ins[0].dt, shape: out}, {dt: onnx.Int64, shape: clone64(out)}}, nil
}

// onehot returns float32 one-hot rows [B,K] of int64 labels [B].
func (d *deriver) onehot(labels string, k int64) string {
	key := "onehot:" + labels
	if s, ok := d.cache[key]; ok {
		return s
	}
	ar := make([]int64, k)
	for i := range ar {
		ar[i] = int64(i)
	}
	arange := d.b.Int64s("classes", []int64{1, k}, ar)
	col := labels
	if len(d.shapeOrNil(labels)) != 2 {
		col = d.op("Unsqueeze", []string{labels, d.ints(1)})
	}
	oh := d.op("Cast", []string{d.op("Equal", []string{col, arange})}, onnx.AttrInt("to", int64(onnx.Float)))
	d.cache[key] = oh
	return oh
}

func (d *deriver) shapeOrNil(s string) []int64 {
	if t := d.g.info[s]; t != nil {
		return t.shape
	}
	return nil
}

// emitHead emits the loss on the logits and returns the gradient of the
// differentiated loss with respect to the logits.
//
//   - attack, train: loss = mean_i −log softmax(z_i)[y_i] (0-d);
//     ∂loss/∂z = (softmax(z) − onehot(y))/B.
//   - eval "ce": loss.each_i = −log softmax(z_i)[y_i]; seed softmax − onehot.
//   - eval "cw": loss.each_i = max_{j≠y} z_ij − z_iy; seed onehot(j*) −
//     onehot(y).
//   - eval "dlr": loss.each_i = (max_{j≠y} z_j − z_y)/(z_π1 − z_π3 + 1e-12)
//     with z sorted descending (π); needs K ≥ 3.
//   - eval "dlr-t": loss.each_i = (z_t − z_y)/(z_π1 − (z_π3+z_π4)/2 + 1e-12)
//     for the target class t (input "target", int64 [B]); needs K ≥ 4.
//   - eval "logits": the logits alone; no gradient (returns "").
//   - eval "diff-t": loss.each_i = z_it − z_iy for the target class t
//     (input "target"); seed onehot(t) − onehot(y). FAB-T's linearization.
func (d *deriver) emitHead() (string, error) {
	z := d.g.output
	zs := d.shape(z)
	B, K := zs[0], zs[1]
	if d.spec.Kind == Eval && d.spec.Loss == contract.HeadLogits {
		d.output(contract.Logits, zs)
		return "", nil
	}
	oh := d.onehot(contract.Labels, K)
	loss := d.spec.Loss
	if d.spec.Kind != Eval {
		loss = contract.HeadCE
	}
	switch loss {
	case "", contract.HeadCE:
		lsm := d.op("LogSoftmax", []string{z}, onnx.AttrInt("axis", 1))
		picked := d.op("Mul", []string{lsm, oh})
		diff := d.op("Sub", []string{d.op("Exp", []string{lsm}), oh})
		if d.spec.Kind == Eval {
			s := d.reduceSum(picked, []int64{1}, false)
			d.b.Node("Neg", []string{s}, []string{contract.LossEach})
			d.output(contract.Logits, zs)
			d.output(contract.LossEach, []int64{B})
			return diff, nil
		}
		s := d.reduceSum(picked, []int64{0, 1}, false)
		d.b.Node("Mul", []string{s, d.scalar(-1 / float32(B))}, []string{contract.Loss})
		d.output(contract.Loss, nil)
		d.output(contract.Logits, zs)
		return d.op("Mul", []string{diff, d.scalar(1 / float32(B))}), nil
	case contract.HeadCW, contract.HeadDLR:
		zy := d.reduceSum(d.op("Mul", []string{z, oh}), []int64{1}, false)
		other := d.op("Sub", []string{z, d.op("Mul", []string{oh, d.scalar(1e9)})})
		zmax := d.op("ReduceMax", []string{other, d.ints(1)}, onnx.AttrInt("keepdims", 0))
		jstar := d.op("ArgMax", []string{other}, onnx.AttrInt("axis", 1), onnx.AttrInt("keepdims", 0))
		margin := d.op("Sub", []string{zmax, zy})
		dm := d.op("Sub", []string{d.onehot(jstar, K), oh})
		d.output(contract.Logits, zs)
		d.output(contract.LossEach, []int64{B})
		if loss == contract.HeadCW {
			d.b.Node("Identity", []string{margin}, []string{contract.LossEach})
			return dm, nil
		}
		if K < 3 {
			return "", &UnsupportedOpError{Node: "loss head", Op: "DLR", Detail: "the DLR loss needs at least 3 classes"}
		}
		outs := d.b.OpN("TopK", []string{z, d.ints(3)}, 2, onnx.AttrInt("axis", 1))
		vals, idx := outs[0], outs[1]
		c0 := d.b.Int64s("col", nil, []int64{0})
		c2 := d.b.Int64s("col", nil, []int64{2})
		v1 := d.op("Gather", []string{vals, c0}, onnx.AttrInt("axis", 1)) // [B]
		v3 := d.op("Gather", []string{vals, c2}, onnx.AttrInt("axis", 1))
		i1 := d.op("Gather", []string{idx, c0}, onnx.AttrInt("axis", 1))
		i3 := d.op("Gather", []string{idx, c2}, onnx.AttrInt("axis", 1))
		den := d.op("Add", []string{d.op("Sub", []string{v1, v3}), d.scalar(1e-12)})
		d.b.Node("Div", []string{margin, den}, []string{contract.LossEach})
		// ∂/∂z = dm/den − margin/den² · (onehot(π1) − onehot(π3))
		inv := d.op("Reciprocal", []string{den})
		invc := d.reshape(inv, []int64{B, 1})
		q := d.reshape(d.op("Mul", []string{contract.LossEach, inv}), []int64{B, 1})
		dd := d.op("Sub", []string{d.onehot(i1, K), d.onehot(i3, K)})
		return d.op("Sub", []string{d.op("Mul", []string{dm, invc}), d.op("Mul", []string{dd, q})}), nil
	case contract.HeadDiffT:
		d.input(contract.Target, onnx.Int64, []int64{B})
		dm := d.op("Sub", []string{d.onehot(contract.Target, K), oh})
		d.b.Node("Identity", []string{d.reduceSum(d.op("Mul", []string{z, dm}), []int64{1}, false)}, []string{contract.LossEach})
		d.output(contract.Logits, zs)
		d.output(contract.LossEach, []int64{B})
		return dm, nil
	case contract.HeadDLRT:
		if K < 4 {
			return "", &UnsupportedOpError{Node: "loss head", Op: "DLR-T", Detail: "the targeted DLR loss needs at least 4 classes"}
		}
		d.input(contract.Target, onnx.Int64, []int64{B})
		ot := d.onehot(contract.Target, K)
		zy := d.reduceSum(d.op("Mul", []string{z, oh}), []int64{1}, false)
		zt := d.reduceSum(d.op("Mul", []string{z, ot}), []int64{1}, false)
		outs := d.b.OpN("TopK", []string{z, d.ints(4)}, 2, onnx.AttrInt("axis", 1))
		vals, idx := outs[0], outs[1]
		col := func(i int64) (string, string) {
			c := d.b.Int64s("col", nil, []int64{i})
			return d.op("Gather", []string{vals, c}, onnx.AttrInt("axis", 1)), d.op("Gather", []string{idx, c}, onnx.AttrInt("axis", 1))
		}
		v1, i1 := col(0)
		v3, i3 := col(2)
		v4, i4 := col(3)
		// den = z_π1 − (z_π3 + z_π4)/2 + 1e-12; loss = (z_t − z_y)/den.
		half := d.op("Mul", []string{d.op("Add", []string{v3, v4}), d.scalar(0.5)})
		den := d.op("Add", []string{d.op("Sub", []string{v1, half}), d.scalar(1e-12)})
		d.b.Node("Div", []string{d.op("Sub", []string{zt, zy}), den}, []string{contract.LossEach})
		d.output(contract.Logits, zs)
		d.output(contract.LossEach, []int64{B})
		// ∂/∂z = (onehot(t) − onehot(y))/den − loss/den · (onehot(π1) − (onehot(π3)+onehot(π4))/2)
		inv := d.op("Reciprocal", []string{den})
		invc := d.reshape(inv, []int64{B, 1})
		q := d.reshape(d.op("Mul", []string{contract.LossEach, inv}), []int64{B, 1})
		dm := d.op("Sub", []string{ot, oh})
		h34 := d.op("Mul", []string{d.op("Add", []string{d.onehot(i3, K), d.onehot(i4, K)}), d.scalar(0.5)})
		dd := d.op("Sub", []string{d.onehot(i1, K), h34})
		return d.op("Sub", []string{d.op("Mul", []string{dm, invc}), d.op("Mul", []string{dd, q})}), nil
	}
	return "", nil
}

// softmaxGrad: dX = s·(dY − Σ_axis dY·s).
func softmaxGrad(d *deriver, n *node, dy []string) ([]string, error) {
	s := n.out[0]
	ax, err := normAxis(n.int("axis", -1), len(d.shape(s)))
	if err != nil {
		return nil, err
	}
	t := d.reduceSum(d.op("Mul", []string{dy[0], s}), []int64{ax}, true)
	return []string{d.op("Mul", []string{s, d.op("Sub", []string{dy[0], t})})}, nil
}

// logSoftmaxGrad: dX = dY − exp(y)·Σ_axis dY.
func logSoftmaxGrad(d *deriver, n *node, dy []string) ([]string, error) {
	y := n.out[0]
	ax, err := normAxis(n.int("axis", -1), len(d.shape(y)))
	if err != nil {
		return nil, err
	}
	t := d.reduceSum(dy[0], []int64{ax}, true)
	return []string{d.op("Sub", []string{dy[0], d.op("Mul", []string{d.op("Exp", []string{y}), t})})}, nil
}

// topKGrad scatters the values' gradient back to their positions.
func topKGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if dy[0] == "" {
		return nil, nil
	}
	x := n.in[0]
	ax, err := normAxis(n.int("axis", -1), len(d.shape(x)))
	if err != nil {
		return nil, err
	}
	if len(n.out) < 2 || n.out[1] == "" {
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: "TopK without its indices output"}
	}
	dx := d.op("ScatterElements", []string{d.zeros(d.shape(x)), n.out[1], dy[0]}, onnx.AttrInt("axis", ax), onnx.AttrString("reduction", "add"))
	return []string{dx}, nil
}

// emitKLHead emits the kl kind's loss on the logits z at x′ and returns
// its gradient with respect to z. With p = softmax(logits.ref), the fixed
// target, and q = softmax(z):
//
//	loss.each_i = Σ_j p_ij·(log p_ij − log q_ij),  ∂Σ loss.each/∂z = q − p,
//
// which is the summed KL divergence (PyTorch's KLDivLoss with reduction
// "sum") that TRADES's inner maximization differentiates; log p and log q
// are LogSoftmax, so a p that underflows to 0 contributes 0.
func (d *deriver) emitKLHead() (string, error) {
	z := d.g.output
	zs := d.shape(z)
	lp := d.op("LogSoftmax", []string{contract.RefLogits}, onnx.AttrInt("axis", 1))
	p := d.op("Exp", []string{lp})
	lq := d.op("LogSoftmax", []string{z}, onnx.AttrInt("axis", 1))
	kl := d.reduceSum(d.op("Mul", []string{p, d.op("Sub", []string{lp, lq})}), []int64{1}, false)
	d.b.Node("Identity", []string{kl}, []string{contract.LossEach})
	d.output(contract.Logits, zs)
	d.output(contract.LossEach, []int64{zs[0]})
	return d.op("Sub", []string{d.op("Exp", []string{lq}), p}), nil
}

// emitTRADESHead emits the trades kind's loss on the clean logits z
// (logits) and the adversarial logits a (logits.adv), both [B, K], and
// returns the gradient with respect to the pair output [z; a] [2B, K]
// (pairForward). With p = softmax(z), q = softmax(a), L = log p − log q
// and y the labels:
//
//	loss = (1/B)·Σ_i [−log p_iy + β·Σ_j p_ij·L_ij]
//	∂loss/∂z = (p − onehot(y))/B + (β/B)·p⊙(L − Σ_j p_j·L_j)
//	∂loss/∂a = (β/B)·(q − p)
//
// which is TRADES's F.cross_entropy(z, y) + β·KLDivLoss(sum)(log_softmax(a),
// softmax(z))/B with the gradient flowing through both arguments.
func (d *deriver) emitTRADESHead(beta float32) (string, error) {
	z, a := contract.Logits, contract.AdvLogits
	zs := d.shape(z)
	B, K := zs[0], zs[1]
	oh := d.onehot(contract.Labels, K)
	lz := d.op("LogSoftmax", []string{z}, onnx.AttrInt("axis", 1))
	p := d.op("Exp", []string{lz})
	la := d.op("LogSoftmax", []string{a}, onnx.AttrInt("axis", 1))
	L := d.op("Sub", []string{lz, la})
	pL := d.op("Mul", []string{p, L})
	ce := d.reduceSum(d.op("Mul", []string{lz, oh}), []int64{0, 1}, false)
	kl := d.reduceSum(pL, []int64{0, 1}, false)
	invB := 1 / float32(B)
	d.b.Node("Add", []string{d.op("Mul", []string{ce, d.scalar(-invB)}), d.op("Mul", []string{kl, d.scalar(beta * invB)})}, []string{contract.Loss})
	d.output(contract.Loss, nil)
	d.output(contract.Logits, zs)
	d.output(contract.AdvLogits, zs)
	// ∂/∂z: the CE part and the KL part through p (softmax's Jacobian on
	// L; the Σ p·∂log p term vanishes).
	centred := d.op("Sub", []string{L, d.reduceSum(pL, []int64{1}, true)})
	dz := d.op("Add", []string{
		d.op("Mul", []string{d.op("Sub", []string{p, oh}), d.scalar(invB)}),
		d.op("Mul", []string{d.op("Mul", []string{p, centred}), d.scalar(beta * invB)})})
	da := d.op("Mul", []string{d.op("Sub", []string{d.op("Exp", []string{la}), p}), d.scalar(beta * invB)})
	return d.op("Concat", []string{dz, da}, onnx.AttrInt("axis", 0)), nil
}
