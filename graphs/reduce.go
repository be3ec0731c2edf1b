package graphs

import (
	"github.com/slatrun/slatrun/onnx"
)

// Reductions: the Reduce* family and ArgMax/ArgMin. Their gradients expand
// dY back over the reduced axes (ReduceMax and ReduceMin split it among
// ties); ArgMax and ArgMin have none.

func init() {
	since18, since13 := axesToInput(18), axesToInput(13) // axes: an input from opset 18 (ReduceSum: 13)
	register(map[string]opDef{
		"ReduceSum":       {upgrade: since13, infer: inferReduce, grad: reduceGrad},
		"ReduceMean":      {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceMax":       {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceMin":       {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceSumSquare": {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceL2":        {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceLogSumExp": {upgrade: since18, infer: inferReduce, grad: reduceGrad},
		"ReduceProd":      {upgrade: since18, infer: inferReduce, fold: foldReduceProd},
		"ReduceL1":        {upgrade: since18, infer: inferReduce},
		"ReduceLogSum":    {upgrade: since18, infer: inferReduce},
		"ArgMax":          {infer: inferArg, grad: noGrad},
		"ArgMin":          {infer: inferArg, grad: noGrad},
	})
}

// reduceAxes returns the normalized axes of a Reduce* node (nil: reduce
// nothing, for noop_with_empty_axes).
func (g *fgraph) reduceAxes(n *node, rank int) ([]int64, error) {
	var a []int64
	if n.input(1) != "" {
		v, err := g.constInts(n.input(1))
		if err != nil {
			return nil, err
		}
		a = v
	} else if at := n.attr("axes"); at != nil {
		a = at.GetInts()
	}
	if len(a) == 0 {
		if n.int("noop_with_empty_axes", 0) != 0 {
			return []int64{}, nil
		}
		for i := 0; i < rank; i++ {
			a = append(a, int64(i))
		}
	}
	return normAxes(a, rank)
}

func reducedShape(x, axes []int64, keep bool) []int64 {
	var out []int64
	for i, d := range x {
		if contains(axes, int64(i)) {
			if keep {
				out = append(out, 1)
			}
			continue
		}
		out = append(out, d)
	}
	return out
}

func inferReduce(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	axes, err := g.reduceAxes(n, len(ins[0].shape))
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: reducedShape(ins[0].shape, axes, n.int("keepdims", 1) != 0)}}, nil
}

func inferArg(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	ax, err := normAxis(n.int("axis", 0), len(ins[0].shape))
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: onnx.Int64, shape: reducedShape(ins[0].shape, []int64{ax}, n.int("keepdims", 1) != 0)}}, nil
}

// foldReduceProd folds the product of a 1-D constant (the element count of
// a shape).
func foldReduceProd(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	x := ins[0]
	if len(x.shape) != 1 || n.int("keepdims", 1) != 0 && len(out.shape) != 1 {
		return nil, false
	}
	p := 1.0
	for _, v := range values(x) {
		p *= v
	}
	return []float64{p}, true
}

// reduceGrad handles the Reduce* family.
func reduceGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, y := n.in[0], n.out[0]
	xs := d.shape(x)
	axes, err := d.g.reduceAxes(n, len(xs))
	if err != nil {
		return nil, err
	}
	if len(axes) == 0 {
		return dy[:1], nil
	}
	keep := reducedShape(xs, axes, true)
	g := d.reshape(dy[0], keep)
	yk := y
	if n.int("keepdims", 1) == 0 {
		yk = d.reshape(y, keep)
	}
	cnt := int64(1)
	for _, a := range axes {
		cnt *= xs[a]
	}
	expand := func(s string) string { return d.op("Expand", []string{s, d.ints(xs...)}) }
	switch n.op {
	case "ReduceSum":
		return one(expand(g)), nil
	case "ReduceMean":
		return one(expand(d.mul(g, d.scalar(1/float32(cnt))))), nil
	case "ReduceSumSquare":
		return one(d.mul(d.mul(g, d.scalar(2)), x)), nil
	case "ReduceL2":
		return one(d.mul(g, d.div(x, yk))), nil
	case "ReduceLogSumExp":
		return one(d.mul(g, d.op("Exp", []string{d.sub(x, yk)}))), nil
	default: // ReduceMax, ReduceMin: split among ties
		mask := d.op("Cast", []string{d.op("Equal", []string{x, yk})}, onnx.AttrInt("to", int64(onnx.Float)))
		ties := d.reduceSum(mask, axes, true)
		return one(d.mul(mask, d.div(g, ties))), nil
	}
}
