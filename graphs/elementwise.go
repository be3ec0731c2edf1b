package graphs

import (
	"fmt"
	"math"
	"slices"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Elementwise ops: activations and broadcasting arithmetic. Gradients are
// formulated from the forward output where that saves work (ReLU:
// dX = dY·[y > 0]; Sigmoid: dY·y·(1−y); Tanh: dY·(1−y²); Exp: dY·y).

func init() {
	register(map[string]opDef{
		// activations and other one-input ops
		"Relu":        {infer: sameShape, grad: reluGrad},
		"LeakyRelu":   {infer: sameShape, grad: leakyReluGrad},
		"Sigmoid":     {infer: sameShape, grad: sigmoidGrad},
		"Tanh":        {infer: sameShape, grad: tanhGrad},
		"Exp":         {infer: sameShape, grad: expGrad},
		"Log":         {infer: sameShape, grad: logGrad},
		"Neg":         {infer: sameShape, fold: foldMap(func(v float64) float64 { return -v }), grad: negGrad},
		"Abs":         {infer: sameShape, fold: foldMap(math.Abs), grad: absGrad},
		"Sqrt":        {infer: sameShape, grad: sqrtGrad},
		"Reciprocal":  {infer: sameShape, grad: reciprocalGrad},
		"Identity":    {infer: sameShape, fold: foldCopy, grad: identityGrad},
		"Softplus":    {infer: sameShape, grad: softplusGrad},
		"Elu":         {infer: sameShape, grad: eluGrad},
		"Erf":         {infer: sameShape, grad: erfGrad},
		"HardSigmoid": {infer: sameShape, grad: hardSigmoidGrad},
		"HardSwish":   {infer: sameShape, grad: hardSwishGrad},
		"Sin":         {infer: sameShape, grad: sinGrad},
		"Cos":         {infer: sameShape, grad: cosGrad},
		"Clip":        {upgrade: upgradeClip, infer: sameShape, grad: clipGrad},
		"Selu":        {infer: sameShape},
		"Mish":        {infer: sameShape},
		"Celu":        {infer: sameShape},
		"Softsign":    {infer: sameShape},
		"Floor":       {infer: sameShape, fold: foldMap(math.Floor), grad: noGrad},
		"Ceil":        {infer: sameShape, fold: foldMap(math.Ceil), grad: noGrad},
		"Sign":        {infer: sameShape, grad: noGrad},
		"Round":       {infer: sameShape, grad: noGrad},
		"Not":         {infer: boolShape, fold: foldMap(func(v float64) float64 { return b2f(v == 0) }), grad: noGrad},
		// Dropout is the identity in every derived graph (its inference
		// semantics); a consumer of its mask output is an error later.
		"Dropout": {upgrade: dropoutToIdentity},
		// element types
		"Cast":     {infer: inferCast, fold: foldCast, foldFloat: true, grad: castGrad},
		"CastLike": {infer: inferCastLike, grad: castLikeGrad},
		// broadcasting arithmetic
		"Add":   {infer: inferBroadcast, fold: foldBinary(func(a, b float64) (float64, bool) { return a + b, true }), grad: addGrad},
		"Sub":   {infer: inferBroadcast, fold: foldBinary(func(a, b float64) (float64, bool) { return a - b, true }), grad: subGrad},
		"Mul":   {infer: inferBroadcast, fold: foldBinary(func(a, b float64) (float64, bool) { return a * b, true }), grad: mulGrad},
		"Div":   {infer: inferDivMod, fold: foldDiv, grad: divGrad},
		"Mod":   {infer: inferDivMod},
		"Pow":   {infer: inferBroadcast, grad: powGrad},
		"Sum":   {infer: inferBroadcast, grad: sumGrad},
		"Mean":  {infer: inferBroadcast, grad: meanGrad},
		"Max":   {infer: inferBroadcast, fold: foldBinary(func(a, b float64) (float64, bool) { return math.Max(a, b), true }), grad: maxMinGrad},
		"Min":   {infer: inferBroadcast, fold: foldBinary(func(a, b float64) (float64, bool) { return math.Min(a, b), true }), grad: maxMinGrad},
		"Where": {infer: inferWhere, fold: foldWhere, grad: whereGrad},
		"PRelu": {infer: inferPRelu, grad: preluGrad},
		// comparisons and logic (bool outputs)
		"Equal":          {infer: inferCompare, fold: foldBinary(func(a, b float64) (float64, bool) { return b2f(a == b), true }), grad: noGrad},
		"Less":           {infer: inferCompare, fold: foldBinary(func(a, b float64) (float64, bool) { return b2f(a < b), true }), grad: noGrad},
		"Greater":        {infer: inferCompare, fold: foldBinary(func(a, b float64) (float64, bool) { return b2f(a > b), true }), grad: noGrad},
		"LessOrEqual":    {infer: inferCompare, grad: noGrad},
		"GreaterOrEqual": {infer: inferCompare, grad: noGrad},
		"And":            {infer: inferCompare, grad: noGrad},
		"Or":             {infer: inferCompare, grad: noGrad},
		"Xor":            {infer: inferCompare, grad: noGrad},
	})
}

// upgradeClip moves Clip's min and max attributes to inputs (opset 11).
func upgradeClip(g *fgraph, n *node) error {
	if g.opset < 11 {
		g.floatAttrToInput(n, "min", 1)
		g.floatAttrToInput(n, "max", 2)
	}
	return nil
}

// dropoutToIdentity replaces Dropout by Identity.
func dropoutToIdentity(g *fgraph, n *node) error {
	n.op, n.in, n.out, n.attrs = "Identity", n.in[:1], n.out[:1], nil
	return nil
}

// boolShape is the shape rule of one-input ops with bool outputs.
func boolShape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	return []*tinfo{{dt: onnx.Bool, shape: clone64(ins[0].shape)}}, nil
}

// castTypes are the element types a Cast may produce in a derived graph.
var castTypes = map[onnx.DType]bool{
	onnxpb.TensorProto_FLOAT: true, onnxpb.TensorProto_UINT8: true, onnxpb.TensorProto_INT8: true,
	onnxpb.TensorProto_UINT16: true, onnxpb.TensorProto_INT16: true, onnxpb.TensorProto_INT32: true,
	onnxpb.TensorProto_INT64: true, onnxpb.TensorProto_BOOL: true, onnxpb.TensorProto_FLOAT16: true,
	onnxpb.TensorProto_DOUBLE: true, onnxpb.TensorProto_UINT32: true, onnxpb.TensorProto_UINT64: true,
	onnxpb.TensorProto_BFLOAT16: true,
}

func inferCast(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	to := onnx.DType(n.int("to", 1))
	if !castTypes[to] {
		return nil, fmt.Errorf("Cast to element type %s is not supported", to)
	}
	return []*tinfo{{dt: to, shape: clone64(ins[0].shape)}}, nil
}

func inferCastLike(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[1].dt, shape: clone64(ins[0].shape)}}, nil
}

// foldCast converts the values to the output's element type: bools are 0
// or 1, integers truncated.
func foldCast(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	v := values(ins[0])
	switch {
	case out.dt == onnx.Bool:
		for i := range v {
			if v[i] != 0 {
				v[i] = 1
			}
		}
	case out.dt != onnx.Float:
		for i := range v {
			v[i] = math.Trunc(v[i])
		}
	}
	return v, true
}

// broadcastIns returns the broadcast shape of all of an op's inputs (every
// one must be present) and the element type of the last.
func broadcastIns(ins []*tinfo) ([]int64, onnx.DType, error) {
	if err := needIns(ins, len(ins)); err != nil {
		return nil, 0, err
	}
	shape := clone64(ins[0].shape)
	for _, t := range ins[1:] {
		s, err := broadcast(shape, t.shape)
		if err != nil {
			return nil, 0, err
		}
		shape = s
	}
	return shape, ins[len(ins)-1].dt, nil
}

// inferBroadcast is the shape rule of numpy-broadcasting ops.
func inferBroadcast(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	shape, dt, err := broadcastIns(ins)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: dt, shape: shape}}, nil
}

// inferCompare is the shape rule of broadcasting ops with bool outputs.
func inferCompare(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	shape, _, err := broadcastIns(ins)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: onnx.Bool, shape: shape}}, nil
}

// inferDivMod also refuses an integer division by a constant holding 0.
func inferDivMod(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	shape, dt, err := broadcastIns(ins)
	if err != nil {
		return nil, err
	}
	if dt != onnx.Float && len(ins) == 2 && ins[1].isConst {
		for _, v := range ins[1].ci {
			if v == 0 {
				return nil, fmt.Errorf("integer division by zero: divisor %q holds a 0", n.in[1])
			}
		}
	}
	return []*tinfo{{dt: dt, shape: shape}}, nil
}

// foldDiv divides (truncating integers); a division by zero is not folded.
func foldDiv(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	intDiv := out.dt != onnx.Float
	return foldBinary(func(a, b float64) (float64, bool) {
		if b == 0 {
			return 0, false
		}
		if intDiv {
			return math.Trunc(a / b), true
		}
		return a / b, true
	})(g, n, ins, out)
}

// inferWhere: the output has the type of the selected values (inputs 1, 2).
func inferWhere(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	shape, _, err := broadcastIns(ins)
	if err != nil {
		return nil, err
	}
	if len(ins) != 3 {
		return nil, fmt.Errorf("Where needs 3 inputs")
	}
	return []*tinfo{{dt: ins[1].dt, shape: shape}}, nil
}

func foldWhere(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	if len(ins) != 3 {
		return nil, false
	}
	return zipConst(ins, out.numel(), func(v []float64) (float64, bool) {
		if v[0] != 0 {
			return v[1], true
		}
		return v[2], true
	})
}

// inferPRelu: the slope broadcasts to the input, not the other way.
func inferPRelu(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	shape, dt, err := broadcastIns(ins)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(shape, ins[0].shape) {
		return nil, fmt.Errorf("PRelu's slope %v does not broadcast to its input %v", ins[1].shape, ins[0].shape)
	}
	return []*tinfo{{dt: dt, shape: shape}}, nil
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

// castLikeGrad: a float-to-float CastLike passes dY to its input; its
// second input only gives the type.
func castLikeGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if a, b := d.g.info[n.in[0]], d.g.info[n.in[1]]; a != nil && b != nil && a.isFloat() && b.isFloat() {
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
	test := "GreaterOrEqual"
	if n.op == "Min" {
		test = "LessOrEqual"
	}
	first := d.op(test, []string{n.in[0], n.in[1]})
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
