package graphs

import (
	"fmt"
	"math"

	"github.com/slatrun/slatrun/onnx"
)

// Elementwise ops: activations and broadcasting arithmetic. Gradients are
// formulated from the forward output where that saves work (ReLU:
// dX = dY·[y > 0]; Sigmoid: dY·y·(1−y); Tanh: dY·(1−y²); Exp: dY·y).

func init() {
	for op, f := range map[string]gradRule{
		"Relu": reluGrad, "LeakyRelu": leakyReluGrad, "Sigmoid": sigmoidGrad, "Tanh": tanhGrad,
		"Exp": expGrad, "Log": logGrad, "Neg": negGrad, "Abs": absGrad, "Sqrt": sqrtGrad,
		"Reciprocal": reciprocalGrad, "Identity": identityGrad, "Softplus": softplusGrad,
		"Elu": eluGrad, "Erf": erfGrad, "HardSigmoid": hardSigmoidGrad, "HardSwish": hardSwishGrad,
		"Sin": sinGrad, "Cos": cosGrad, "Clip": clipGrad, "Cast": castGrad,
		"Add": addGrad, "Sub": subGrad, "Mul": mulGrad, "Div": divGrad, "Pow": powGrad,
		"Sum": sumGrad, "Mean": meanGrad, "Max": maxMinGrad, "Min": maxMinGrad, "Where": whereGrad,
		"PRelu": preluGrad,
		"Sign":  noGrad, "Floor": noGrad, "Ceil": noGrad, "Round": noGrad,
		"Equal": noGrad, "Less": noGrad, "Greater": noGrad, "LessOrEqual": noGrad, "GreaterOrEqual": noGrad,
		"And": noGrad, "Or": noGrad, "Xor": noGrad, "Not": noGrad, "Shape": noGrad, "Size": noGrad,
	} {
		gradRules[op] = f
	}
}

func (d *deriver) mul(a, b string) string { return d.op("Mul", []string{a, b}) }
func (d *deriver) sub(a, b string) string { return d.op("Sub", []string{a, b}) }
func (d *deriver) add(a, b string) string { return d.op("Add", []string{a, b}) }
func (d *deriver) div(a, b string) string { return d.op("Div", []string{a, b}) }

func one(s string) []string { return []string{s} }

// reluGrad: dX = dY·[y > 0] (y > 0 exactly where x > 0). Cast(Greater) is
// vectorized in ONNX Runtime; Sign, which this rule used before, is a
// branchy scalar loop that cost ~10× a Relu on random signs.
func reluGrad(d *deriver, n *node, dy []string) ([]string, error) {
	mask := d.op("Cast", []string{d.op("Greater", []string{n.out[0], d.scalar(0)})}, onnx.AttrInt("to", int64(onnx.Float)))
	return one(d.mul(dy[0], mask)), nil
}

func leakyReluGrad(d *deriver, n *node, dy []string) ([]string, error) {
	a := n.float("alpha", 0.01)
	pos := d.op("Greater", []string{n.in[0], d.scalar(0)})
	return one(d.op("Where", []string{pos, dy[0], d.mul(dy[0], d.scalar(a))})), nil
}

func sigmoidGrad(d *deriver, n *node, dy []string) ([]string, error) {
	y := n.out[0]
	return one(d.mul(dy[0], d.mul(y, d.sub(d.scalar(1), y)))), nil
}

func tanhGrad(d *deriver, n *node, dy []string) ([]string, error) {
	y := n.out[0]
	return one(d.mul(dy[0], d.sub(d.scalar(1), d.mul(y, y)))), nil
}

func expGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.mul(dy[0], n.out[0])), nil
}

func logGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.div(dy[0], n.in[0])), nil
}

func negGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.op("Neg", dy[:1])), nil
}

func absGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.mul(dy[0], d.op("Sign", n.in[:1]))), nil
}

func sqrtGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.div(d.mul(dy[0], d.scalar(0.5)), n.out[0])), nil
}

func reciprocalGrad(d *deriver, n *node, dy []string) ([]string, error) {
	y := n.out[0]
	return one(d.op("Neg", []string{d.mul(dy[0], d.mul(y, y))})), nil
}

func identityGrad(d *deriver, n *node, dy []string) ([]string, error) { return dy[:1], nil }

func softplusGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.mul(dy[0], d.op("Sigmoid", n.in[:1]))), nil
}

// eluGrad: x > 0: dY; else dY·(y + α).
func eluGrad(d *deriver, n *node, dy []string) ([]string, error) {
	a := n.float("alpha", 1)
	pos := d.op("Greater", []string{n.in[0], d.scalar(0)})
	return one(d.op("Where", []string{pos, dy[0], d.mul(dy[0], d.add(n.out[0], d.scalar(a)))})), nil
}

func erfGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x := n.in[0]
	e := d.op("Exp", []string{d.op("Neg", []string{d.mul(x, x)})})
	return one(d.mul(dy[0], d.mul(e, d.scalar(float32(2/math.Sqrt(math.Pi)))))), nil
}

// hardSigmoidGrad: α where 0 < αx+β < 1.
func hardSigmoidGrad(d *deriver, n *node, dy []string) ([]string, error) {
	a := n.float("alpha", 0.2)
	y := n.out[0]
	in := d.op("And", []string{d.op("Greater", []string{y, d.scalar(0)}), d.op("Less", []string{y, d.scalar(1)})})
	return one(d.op("Where", []string{in, d.mul(dy[0], d.scalar(a)), d.scalar(0)})), nil
}

// hardSwishGrad: y = x·hs(x), hs = clip(x/6 + 1/2, 0, 1); dy·(hs + x/6·[0<x/6+1/2<1]).
func hardSwishGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x := n.in[0]
	hs := d.op("HardSigmoid", []string{x}, onnx.AttrFloat("alpha", 1.0/6), onnx.AttrFloat("beta", 0.5))
	in := d.op("And", []string{d.op("Greater", []string{x, d.scalar(-3)}), d.op("Less", []string{x, d.scalar(3)})})
	extra := d.op("Where", []string{in, d.mul(x, d.scalar(1.0/6)), d.scalar(0)})
	return one(d.mul(dy[0], d.add(hs, extra))), nil
}

func sinGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.mul(dy[0], d.op("Cos", n.in[:1]))), nil
}

func cosGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.op("Neg", []string{d.mul(dy[0], d.op("Sin", n.in[:1]))})), nil
}

// clipGrad passes dY where min < x < max (ties at the bounds get none).
func clipGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x := n.in[0]
	var mask string
	if lo := n.input(1); lo != "" {
		mask = d.op("Greater", []string{x, lo})
	}
	if hi := n.input(2); hi != "" {
		m := d.op("Less", []string{x, hi})
		if mask == "" {
			mask = m
		} else {
			mask = d.op("And", []string{mask, m})
		}
	}
	if mask == "" {
		return dy[:1], nil
	}
	return one(d.op("Where", []string{mask, dy[0], d.scalar(0)})), nil
}

func castGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if t := d.g.info[n.in[0]]; t != nil && t.isFloat() && onnx.DType(n.int("to", 0)) == onnx.Float {
		return dy[:1], nil
	}
	return nil, nil
}

// binaryGrad returns the gradients of a broadcasting binary op given the
// unreduced per-operand gradients (computed only where wanted).
func binaryGrad(d *deriver, n *node, ga, gb func() string) []string {
	out := d.shape(n.out[0])
	res := make([]string, 2)
	if d.wants(n.in[0]) {
		res[0] = d.unbroadcast(ga(), out, d.shape(n.in[0]))
	}
	if len(n.in) > 1 && d.wants(n.in[1]) {
		res[1] = d.unbroadcast(gb(), out, d.shape(n.in[1]))
	}
	return res
}

func addGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return binaryGrad(d, n, func() string { return dy[0] }, func() string { return dy[0] }), nil
}

func subGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return binaryGrad(d, n, func() string { return dy[0] }, func() string { return d.op("Neg", dy[:1]) }), nil
}

func mulGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return binaryGrad(d, n,
		func() string { return d.mul(dy[0], n.in[1]) },
		func() string { return d.mul(dy[0], n.in[0]) }), nil
}

func divGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return binaryGrad(d, n,
		func() string { return d.div(dy[0], n.in[1]) },
		func() string { return d.op("Neg", []string{d.mul(dy[0], d.div(n.out[0], n.in[1]))}) }), nil
}

// powGrad: d/dx x^p = p·x^(p−1); d/dp = y·ln x.
func powGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, p := n.in[0], n.in[1]
	return binaryGrad(d, n,
		func() string {
			return d.mul(dy[0], d.mul(p, d.op("Pow", []string{x, d.sub(p, d.op("CastLike", []string{d.scalar(1), p}))})))
		},
		func() string { return d.mul(dy[0], d.mul(n.out[0], d.op("Log", []string{x}))) }), nil
}

func sumGrad(d *deriver, n *node, dy []string) ([]string, error) {
	out := d.shape(n.out[0])
	res := make([]string, len(n.in))
	for i, in := range n.in {
		if d.wants(in) {
			res[i] = d.unbroadcast(dy[0], out, d.shape(in))
		}
	}
	return res, nil
}

func meanGrad(d *deriver, n *node, dy []string) ([]string, error) {
	g := d.mul(dy[0], d.scalar(1/float32(len(n.in))))
	return sumGrad(d, n, []string{g})
}

// maxMinGrad (two operands): the gradient goes to the selected operand; on
// ties, to the first.
func maxMinGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if len(n.in) != 2 {
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: fmt.Sprintf("%d operands; slatrun handles 2", len(n.in))}
	}
	cmp := "GreaterOrEqual"
	if n.op == "Min" {
		cmp = "LessOrEqual"
	}
	first := d.op(cmp, []string{n.in[0], n.in[1]})
	zero := d.scalar(0)
	return binaryGrad(d, n,
		func() string { return d.op("Where", []string{first, dy[0], zero}) },
		func() string { return d.op("Where", []string{first, zero, dy[0]}) }), nil
}

func whereGrad(d *deriver, n *node, dy []string) ([]string, error) {
	out := d.shape(n.out[0])
	c, zero := n.in[0], d.scalar(0)
	res := make([]string, 3)
	if d.wants(n.in[1]) {
		res[1] = d.unbroadcast(d.op("Where", []string{c, dy[0], zero}), out, d.shape(n.in[1]))
	}
	if d.wants(n.in[2]) {
		res[2] = d.unbroadcast(d.op("Where", []string{c, zero, dy[0]}), out, d.shape(n.in[2]))
	}
	return res, nil
}

// preluGrad: y = x (x > 0) or slope·x.
func preluGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, slope := n.in[0], n.in[1]
	pos := d.op("Greater", []string{x, d.scalar(0)})
	res := make([]string, 2)
	if d.wants(x) {
		res[0] = d.op("Where", []string{pos, dy[0], d.mul(dy[0], slope)})
	}
	if d.wants(slope) {
		res[1] = d.unbroadcast(d.op("Where", []string{pos, d.scalar(0), d.mul(dy[0], x)}), d.shape(x), d.shape(slope))
	}
	return res, nil
}
