package graphs

import (
	"errors"
	"fmt"
	"math"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Static shape inference and constant folding. With the batch size fixed,
// every tensor of a supported forward graph has a concrete shape, and the
// integer shape arithmetic torch.onnx.export emits for flatten/view
// (Shape → Gather → Unsqueeze → Concat → Reshape) folds to constants.

var unaryOps = map[string]bool{
	"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "Exp": true, "Log": true,
	"Neg": true, "Abs": true, "Sqrt": true, "Reciprocal": true, "Identity": true, "Softplus": true,
	"Elu": true, "Selu": true, "HardSigmoid": true, "HardSwish": true, "Erf": true, "Floor": true, "Ceil": true,
	"Sign": true, "Clip": true, "Softmax": true, "LogSoftmax": true, "Hardmax": true, "Not": true,
	"Round": true, "Sin": true, "Cos": true, "Mish": true, "Celu": true, "Softsign": true,
}

var broadcastOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Max": true, "Min": true,
	"Sum": true, "Mean": true, "And": true, "Or": true, "Xor": true, "Equal": true, "Less": true,
	"Greater": true, "LessOrEqual": true, "GreaterOrEqual": true, "Where": true, "Mod": true, "PRelu": true,
}

var boolOut = map[string]bool{"Equal": true, "Less": true, "Greater": true, "LessOrEqual": true,
	"GreaterOrEqual": true, "And": true, "Or": true, "Xor": true, "Not": true}

// broadcast returns the numpy-broadcast shape of a and b.
func broadcast(a, b []int64) ([]int64, error) {
	r := len(a)
	if len(b) > r {
		r = len(b)
	}
	out := make([]int64, r)
	for i := 0; i < r; i++ {
		da, db := int64(1), int64(1)
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

func normAxis(a int64, rank int) (int64, error) {
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, rank)
	}
	return a, nil
}

func normAxes(axes []int64, rank int) ([]int64, error) {
	out := make([]int64, len(axes))
	for i, a := range axes {
		v, err := normAxis(a, rank)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func contains(s []int64, v int64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func clone64(s []int64) []int64 { return append([]int64{}, s...) }

// inferAll infers shapes for every node in order and folds constants.
func (g *fgraph) inferAll() error {
	for _, n := range g.nodes {
		if err := g.inferNode(n); err != nil {
			var u *UnsupportedOpError
			if errors.As(err, &u) {
				return err
			}
			return fmt.Errorf("graphs: derive: %v: %w", n, err)
		}
	}
	return nil
}

// constVal returns the constant integer values of tensor s (converting
// floats), or an error naming what must be constant.
func (g *fgraph) constInts(s string) ([]int64, error) {
	t := g.info[s]
	if t == nil || !t.isConst {
		return nil, fmt.Errorf("input %q must be a constant (or computable from shapes) for slatrun to derive the graph", s)
	}
	if t.cf != nil {
		out := make([]int64, len(t.cf))
		for i, v := range t.cf {
			out[i] = int64(v)
		}
		return out, nil
	}
	return t.ci, nil
}

func (g *fgraph) constFloat(s string, def float32) (float32, error) {
	if s == "" {
		return def, nil
	}
	t := g.info[s]
	if t == nil || !t.isConst || t.numel() != 1 {
		return 0, fmt.Errorf("input %q must be a constant scalar", s)
	}
	if t.cf != nil {
		return t.cf[0], nil
	}
	return float32(t.ci[0]), nil
}

func (g *fgraph) inferNode(n *node) error {
	ins := make([]*tinfo, len(n.in))
	for i, s := range n.in {
		if s == "" {
			continue
		}
		t := g.info[s]
		if t == nil {
			return fmt.Errorf("input %q has no known shape (an unsupported producer or an unused-mask output?)", s)
		}
		ins[i] = t
	}
	set := func(i int, t *tinfo) {
		if i < len(n.out) && n.out[i] != "" {
			g.info[n.out[i]] = t
		}
	}
	if len(ins) == 0 && n.op != "Constant" {
		return fmt.Errorf("no inputs")
	}
	var in0 *tinfo
	if len(ins) > 0 {
		in0 = ins[0]
	}
	need := func(k int) error {
		for i := 0; i < k; i++ {
			if i >= len(ins) || ins[i] == nil {
				return fmt.Errorf("missing input %d", i)
			}
		}
		return nil
	}
	switch {
	case n.op == "Constant":
		t, err := constantAttr(n)
		if err != nil {
			return err
		}
		set(0, t)
		n.folded = true
		return nil
	case unaryOps[n.op]:
		if err := need(1); err != nil {
			return err
		}
		dt := in0.dt
		if boolOut[n.op] {
			dt = onnx.Bool
		}
		if a := n.attr("__legacy"); a != nil {
			ax, err := normAxis(n.int("axis", 1), len(in0.shape))
			if err != nil {
				return err
			}
			if int(ax) != len(in0.shape)-1 {
				return fmt.Errorf("opset<13 %s over axis %d of a rank-%d tensor is not supported; export with opset ≥ 13", n.op, ax, len(in0.shape))
			}
			n.delAttr("__legacy")
		}
		set(0, &tinfo{dt: dt, shape: clone64(in0.shape)})
	case broadcastOps[n.op]:
		var shape []int64
		var dt onnx.DType
		first := true
		for i, t := range ins {
			if t == nil {
				continue
			}
			if first {
				shape, first = clone64(t.shape), false
			} else {
				s, err := broadcast(shape, t.shape)
				if err != nil {
					return err
				}
				shape = s
			}
			if n.op != "Where" || i > 0 {
				dt = t.dt
			}
		}
		if n.op == "Where" {
			dt = ins[1].dt
		}
		if boolOut[n.op] {
			dt = onnx.Bool
		}
		if n.op == "PRelu" {
			shape = clone64(in0.shape)
		}
		set(0, &tinfo{dt: dt, shape: shape})
	default:
		f := inferRules[n.op]
		if f == nil {
			return &UnsupportedOpError{Node: n.name, Op: n.op}
		}
		if err := need(1); err != nil {
			return err
		}
		outs, err := f(g, n, ins)
		if err != nil {
			return err
		}
		for i, t := range outs {
			set(i, t)
		}
	}
	g.fold(n, ins)
	return nil
}

// constantAttr decodes a Constant node's value.
func constantAttr(n *node) (*tinfo, error) {
	for _, a := range n.attrs {
		switch a.GetName() {
		case "value":
			return decodeTensor(a.GetT())
		case "value_float":
			return &tinfo{dt: onnx.Float, isConst: true, cf: []float32{a.GetF()}}, nil
		case "value_floats":
			return &tinfo{dt: onnx.Float, shape: []int64{int64(len(a.GetFloats()))}, isConst: true, cf: append([]float32(nil), a.GetFloats()...)}, nil
		case "value_int":
			return &tinfo{dt: onnx.Int64, isConst: true, ci: []int64{a.GetI()}}, nil
		case "value_ints":
			return &tinfo{dt: onnx.Int64, shape: []int64{int64(len(a.GetInts()))}, isConst: true, ci: clone64(a.GetInts())}, nil
		}
	}
	return nil, fmt.Errorf("Constant without a supported value attribute")
}

type inferFunc func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error)

var inferRules = map[string]inferFunc{
	"Conv":              inferConv,
	"ConvTranspose":     inferConvTranspose,
	"MaxPool":           inferPool,
	"AveragePool":       inferPool,
	"GlobalAveragePool": inferGlobalPool,
	"GlobalMaxPool":     inferGlobalPool,
	"BatchNormalization": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		return []*tinfo{{dt: ins[0].dt, shape: clone64(ins[0].shape)}}, nil
	},
	"Gemm":      inferGemm,
	"MatMul":    inferMatMul,
	"Flatten":   inferFlatten,
	"Reshape":   inferReshape,
	"Transpose": inferTranspose,
	"Squeeze":   inferSqueeze,
	"Unsqueeze": inferUnsqueeze,
	"Concat":    inferConcat,
	"Split":     inferSplit,
	"Slice":     inferSlice,
	"Pad":       inferPad,
	"Gather":    inferGather,
	"GatherElements": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		return []*tinfo{{dt: ins[0].dt, shape: clone64(ins[1].shape)}}, nil
	},
	"ScatterElements": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		return []*tinfo{{dt: ins[0].dt, shape: clone64(ins[0].shape)}}, nil
	},
	"Expand": inferExpand,
	"Tile":   inferTile,
	"ArgMax": inferArg,
	"ArgMin": inferArg,
	"TopK":   inferTopK,
	"Shape":  inferShape,
	"Size":   func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) { return []*tinfo{{dt: onnx.Int64}}, nil },
	"Cast": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		return []*tinfo{{dt: onnx.DType(n.int("to", 1)), shape: clone64(ins[0].shape)}}, nil
	},
	"CastLike": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		return []*tinfo{{dt: ins[1].dt, shape: clone64(ins[0].shape)}}, nil
	},
	"ConstantOfShape": inferConstantOfShape,
	"Range":           inferRange,
	"Resize":          nil,
}

func init() {
	for op := range reduceOps {
		inferRules[op] = inferReduce
	}
	delete(inferRules, "Resize")
}

// spatial returns the kernel/stride/dilation/pads of a conv or pool node with
// r spatial axes, resolving auto_pad into explicit pads (written back).
func spatial(n *node, in []int64, kernel []int64) (strides, dil, pads []int64, err error) {
	r := len(kernel)
	ones := func() []int64 {
		o := make([]int64, r)
		for i := range o {
			o[i] = 1
		}
		return o
	}
	strides = n.ints("strides", ones())
	dil = n.ints("dilations", ones())
	pads = n.ints("pads", make([]int64, 2*r))
	if len(strides) != r || len(dil) != r || len(pads) != 2*r {
		return nil, nil, nil, fmt.Errorf("strides/dilations/pads do not match %d spatial axes", r)
	}
	switch ap := n.str("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
	case "VALID":
		pads = make([]int64, 2*r)
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < r; i++ {
			out := (in[i] + strides[i] - 1) / strides[i]
			total := (out-1)*strides[i] + (kernel[i]-1)*dil[i] + 1 - in[i]
			if total < 0 {
				total = 0
			}
			small, big := total/2, total-total/2
			if ap == "SAME_UPPER" {
				pads[i], pads[i+r] = small, big
			} else {
				pads[i], pads[i+r] = big, small
			}
		}
	default:
		return nil, nil, nil, fmt.Errorf("unknown auto_pad %q", ap)
	}
	n.delAttr("auto_pad")
	n.setAttr(onnx.AttrInts("pads", pads...))
	n.setAttr(onnx.AttrInts("strides", strides...))
	n.setAttr(onnx.AttrInts("dilations", dil...))
	return strides, dil, pads, nil
}

func inferConv(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	k := w[2:]
	n.setAttr(onnx.AttrInts("kernel_shape", k...))
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	grp := n.int("group", 1)
	if x[1] != w[1]*grp {
		return nil, fmt.Errorf("input has %d channels, weight expects %d×%d", x[1], w[1], grp)
	}
	r := len(k)
	out := []int64{x[0], w[0]}
	for i := 0; i < r; i++ {
		o := (x[2+i]+p[i]+p[i+r]-d[i]*(k[i]-1)-1)/s[i] + 1
		if o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		out = append(out, o)
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}

func inferConvTranspose(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	if n.attr("output_shape") != nil {
		return nil, fmt.Errorf("ConvTranspose with output_shape is not supported; use pads and output_padding")
	}
	if ap := n.str("auto_pad", "NOTSET"); ap != "NOTSET" && ap != "VALID" {
		return nil, fmt.Errorf("ConvTranspose with auto_pad %s is not supported", ap)
	}
	k := w[2:]
	r := len(k)
	n.setAttr(onnx.AttrInts("kernel_shape", k...))
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	op := n.ints("output_padding", make([]int64, r))
	grp := n.int("group", 1)
	out := []int64{x[0], w[1] * grp}
	for i := 0; i < r; i++ {
		out = append(out, s[i]*(x[2+i]-1)+op[i]+(k[i]-1)*d[i]+1-p[i]-p[i+r])
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}

func inferPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	k := n.ints("kernel_shape", nil)
	if len(k) == 0 || len(k) != len(x)-2 {
		return nil, fmt.Errorf("kernel_shape %v does not match input %v", k, x)
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	if n.op == "AveragePool" {
		n.delAttr("dilations") // not an AveragePool attribute before opset 19
		for _, v := range d {
			if v != 1 {
				return nil, fmt.Errorf("AveragePool with dilations is not supported")
			}
		}
	}
	ceil := n.int("ceil_mode", 0) != 0
	r := len(k)
	out := []int64{x[0], x[1]}
	for i := 0; i < r; i++ {
		num := x[2+i] + p[i] + p[i+r] - d[i]*(k[i]-1) - 1
		o := num/s[i] + 1
		if ceil {
			o = (num+s[i]-1)/s[i] + 1
			// the last window must start inside the input or left padding
			if (o-1)*s[i] >= x[2+i]+p[i] {
				o--
			}
		}
		out = append(out, o)
	}
	t := &tinfo{dt: ins[0].dt, shape: out}
	return []*tinfo{t, {dt: onnx.Int64, shape: clone64(out)}}, nil
}

func inferGlobalPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := clone64(ins[0].shape)
	for i := 2; i < len(x); i++ {
		x[i] = 1
	}
	return []*tinfo{{dt: ins[0].dt, shape: x}}, nil
}

func inferGemm(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	a, b := ins[0].shape, ins[1].shape
	if len(a) != 2 || len(b) != 2 {
		return nil, fmt.Errorf("Gemm needs 2-D inputs, got %v and %v", a, b)
	}
	m, k := a[0], a[1]
	if n.int("transA", 0) != 0 {
		m, k = k, m
	}
	k2, nn := b[0], b[1]
	if n.int("transB", 0) != 0 {
		k2, nn = nn, k2
	}
	if k != k2 {
		return nil, fmt.Errorf("Gemm inner dimensions %d and %d differ", k, k2)
	}
	return []*tinfo{{dt: ins[0].dt, shape: []int64{m, nn}}}, nil
}

func inferMatMul(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	a, b := ins[0].shape, ins[1].shape
	if len(a) < 2 || len(b) < 2 {
		return nil, fmt.Errorf("MatMul with 1-D operands is not supported (shapes %v, %v)", a, b)
	}
	if a[len(a)-1] != b[len(b)-2] {
		return nil, fmt.Errorf("MatMul inner dimensions of %v and %v differ", a, b)
	}
	batch, err := broadcast(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: append(batch, a[len(a)-2], b[len(b)-1])}}, nil
}

func inferFlatten(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	ax := n.int("axis", 1)
	if ax < 0 {
		ax += int64(len(x))
	}
	if ax < 0 || ax > int64(len(x)) {
		return nil, fmt.Errorf("axis %d out of range", ax)
	}
	return []*tinfo{{dt: ins[0].dt, shape: []int64{onnx.NumElements(x[:ax]), onnx.NumElements(x[ax:])}}}, nil
}

func reshapeTarget(x, want []int64, allowzero bool) ([]int64, error) {
	out := clone64(want)
	neg := -1
	known := int64(1)
	for i, d := range out {
		switch {
		case d == 0 && !allowzero:
			if i >= len(x) {
				return nil, fmt.Errorf("reshape %v to %v: 0 beyond the input's rank", x, want)
			}
			out[i] = x[i]
			known *= out[i]
		case d == -1:
			if neg >= 0 {
				return nil, fmt.Errorf("reshape to %v: two -1s", want)
			}
			neg = i
		case d < 0:
			return nil, fmt.Errorf("reshape to %v: bad dimension", want)
		default:
			known *= d
		}
	}
	total := onnx.NumElements(x)
	if neg >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", x, want)
		}
		out[neg] = total / known
	}
	if onnx.NumElements(out) != total {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", x, total, want)
	}
	return out, nil
}

func inferReshape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	want, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	out, err := reshapeTarget(ins[0].shape, want, n.int("allowzero", 0) != 0)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func transposePerm(n *node, rank int) ([]int64, error) {
	perm := n.ints("perm", nil)
	if perm == nil {
		for i := rank - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != rank {
		return nil, fmt.Errorf("perm %v does not match rank %d", perm, rank)
	}
	return perm, nil
}

func inferTranspose(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	perm, err := transposePerm(n, len(x))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(x))
	for i, p := range perm {
		out[i] = x[p]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferSqueeze(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	var axes []int64
	if n.input(1) != "" {
		a, err := g.constInts(n.input(1))
		if err != nil {
			return nil, err
		}
		if axes, err = normAxes(a, len(x)); err != nil {
			return nil, err
		}
	} else {
		for i, d := range x {
			if d == 1 {
				axes = append(axes, int64(i))
			}
		}
	}
	var out []int64
	for i, d := range x {
		if contains(axes, int64(i)) {
			if d != 1 {
				return nil, fmt.Errorf("cannot squeeze axis %d of size %d", i, d)
			}
			continue
		}
		out = append(out, d)
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferUnsqueeze(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	a, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	r := len(x) + len(a)
	axes, err := normAxes(a, r)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if contains(axes, int64(i)) {
			out = append(out, 1)
		} else {
			out = append(out, x[j])
			j++
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferConcat(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	var out []int64
	var ax int64
	for i, t := range ins {
		if t == nil {
			continue
		}
		if out == nil {
			var err error
			if ax, err = normAxis(n.int("axis", 0), len(t.shape)); err != nil {
				return nil, err
			}
			out = clone64(t.shape)
			continue
		}
		if len(t.shape) != len(out) {
			return nil, fmt.Errorf("input %d has rank %d, want %d", i, len(t.shape), len(out))
		}
		out[ax] += t.shape[ax]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

// splitSizes returns the sizes of a Split node's outputs.
func (g *fgraph) splitSizes(n *node, x []int64) (int64, []int64, error) {
	ax, err := normAxis(n.int("axis", 0), len(x))
	if err != nil {
		return 0, nil, err
	}
	if n.input(1) != "" {
		s, err := g.constInts(n.input(1))
		return ax, s, err
	}
	k := int64(len(n.out))
	if a := n.attr("num_outputs"); a != nil {
		k = a.GetI()
	}
	size := (x[ax] + k - 1) / k
	var s []int64
	left := x[ax]
	for i := int64(0); i < k; i++ {
		v := size
		if left < v {
			v = left
		}
		s = append(s, v)
		left -= v
	}
	return ax, s, nil
}

func inferSplit(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	ax, sizes, err := g.splitSizes(n, ins[0].shape)
	if err != nil {
		return nil, err
	}
	var outs []*tinfo
	for _, s := range sizes {
		sh := clone64(ins[0].shape)
		sh[ax] = s
		outs = append(outs, &tinfo{dt: ins[0].dt, shape: sh})
	}
	return outs, nil
}

// sliceSpec resolves a Slice node into per-axis start, end (exclusive) and
// step, clamped like ONNX does.
type sliceAxis struct{ axis, start, end, step int64 }

func (g *fgraph) sliceSpec(n *node, x []int64) ([]sliceAxis, []int64, error) {
	starts, err := g.constInts(n.input(1))
	if err != nil {
		return nil, nil, err
	}
	ends, err := g.constInts(n.input(2))
	if err != nil {
		return nil, nil, err
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if n.input(3) != "" {
		if axes, err = g.constInts(n.input(3)); err != nil {
			return nil, nil, err
		}
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if n.input(4) != "" {
		if steps, err = g.constInts(n.input(4)); err != nil {
			return nil, nil, err
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, nil, fmt.Errorf("starts/ends/axes/steps lengths differ")
	}
	out := clone64(x)
	var spec []sliceAxis
	for i := range starts {
		ax, err := normAxis(axes[i], len(x))
		if err != nil {
			return nil, nil, err
		}
		d, st, en, sp := x[ax], starts[i], ends[i], steps[i]
		if sp == 0 {
			return nil, nil, fmt.Errorf("slice step 0")
		}
		if st < 0 {
			st += d
		}
		if en < 0 {
			en += d
		}
		if sp > 0 {
			st = clamp(st, 0, d)
			en = clamp(en, 0, d)
			out[ax] = 0
			if en > st {
				out[ax] = (en - st + sp - 1) / sp
			}
		} else {
			st = clamp(st, 0, d-1)
			en = clamp(en, -1, d-1)
			out[ax] = 0
			if st > en {
				out[ax] = (st - en - sp - 1) / -sp
			}
		}
		spec = append(spec, sliceAxis{ax, st, en, sp})
	}
	return spec, out, nil
}

func clamp(v, lo, hi int64) int64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func inferSlice(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	_, out, err := g.sliceSpec(n, ins[0].shape)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

// padSpec returns the full begin/end pads of a Pad node for a rank-r input.
func (g *fgraph) padSpec(n *node, r int) ([]int64, error) {
	p, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	axes := make([]int64, r)
	for i := range axes {
		axes[i] = int64(i)
	}
	if n.input(3) != "" {
		a, err := g.constInts(n.input(3))
		if err != nil {
			return nil, err
		}
		if axes, err = normAxes(a, r); err != nil {
			return nil, err
		}
	}
	if len(p) != 2*len(axes) {
		return nil, fmt.Errorf("pads %v do not match %d axes", p, len(axes))
	}
	full := make([]int64, 2*r)
	for i, a := range axes {
		full[a] = p[i]
		full[int64(r)+a] = p[len(axes)+i]
	}
	return full, nil
}

func inferPad(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	p, err := g.padSpec(n, len(x))
	if err != nil {
		return nil, err
	}
	out := clone64(x)
	for i := range out {
		out[i] += p[i] + p[i+len(x)]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferGather(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	ax, err := normAxis(n.int("axis", 0), len(x))
	if err != nil {
		return nil, err
	}
	out := append(clone64(x[:ax]), ins[1].shape...)
	out = append(out, x[ax+1:]...)
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferExpand(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	s, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	out, err := broadcast(ins[0].shape, s)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferTile(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	rep, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	if len(rep) != len(ins[0].shape) {
		return nil, fmt.Errorf("repeats %v do not match rank %d", rep, len(ins[0].shape))
	}
	out := clone64(ins[0].shape)
	for i := range out {
		out[i] *= rep[i]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
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

func inferTopK(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	k, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(n.int("axis", -1), len(ins[0].shape))
	if err != nil {
		return nil, err
	}
	out := clone64(ins[0].shape)
	out[ax] = k[0]
	return []*tinfo{{dt: ins[0].dt, shape: out}, {dt: onnx.Int64, shape: clone64(out)}}, nil
}

func inferShape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	r := int64(len(x))
	st, en := n.int("start", 0), n.int("end", r)
	if st < 0 {
		st += r
	}
	if en < 0 {
		en += r
	}
	st, en = clamp(st, 0, r), clamp(en, 0, r)
	if en < st {
		en = st
	}
	v := clone64(x[st:en])
	return []*tinfo{{dt: onnx.Int64, shape: []int64{int64(len(v))}, isConst: true, ci: v}}, nil
}

func inferConstantOfShape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	s, err := g.constInts(n.input(0))
	if err != nil {
		return nil, err
	}
	t := &tinfo{dt: onnx.Float, shape: clone64(s), isConst: true}
	var val *tinfo
	if a := n.attr("value"); a != nil {
		if val, err = decodeTensor(a.GetT()); err != nil {
			return nil, err
		}
		t.dt = val.dt
	}
	cnt := onnx.NumElements(s)
	if t.dt == onnx.Float {
		t.cf = make([]float32, cnt)
		if val != nil {
			for i := range t.cf {
				t.cf[i] = val.cf[0]
			}
		}
	} else {
		t.ci = make([]int64, cnt)
		for i := range t.ci {
			t.ci[i] = val.ci[0]
		}
	}
	return []*tinfo{t}, nil
}

func inferRange(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	for i := 0; i < 3; i++ {
		if ins[i] == nil || !ins[i].isConst {
			return nil, fmt.Errorf("Range needs constant inputs")
		}
	}
	if ins[0].dt == onnx.Float {
		st, lim, d := ins[0].cf[0], ins[1].cf[0], ins[2].cf[0]
		cnt := int64(math.Max(math.Ceil(float64((lim-st)/d)), 0))
		t := &tinfo{dt: onnx.Float, shape: []int64{cnt}, isConst: true}
		for i := int64(0); i < cnt; i++ {
			t.cf = append(t.cf, st+float32(i)*d)
		}
		return []*tinfo{t}, nil
	}
	st, lim, d := ins[0].ci[0], ins[1].ci[0], ins[2].ci[0]
	if d == 0 {
		return nil, fmt.Errorf("Range with delta 0")
	}
	cnt := int64(math.Max(math.Ceil(float64(lim-st)/float64(d)), 0))
	t := &tinfo{dt: ins[0].dt, shape: []int64{cnt}, isConst: true}
	for i := int64(0); i < cnt; i++ {
		t.ci = append(t.ci, st+i*d)
	}
	return []*tinfo{t}, nil
}

// foldable ops are evaluated at derive time when all their inputs are
// integer constants.
var foldable = map[string]bool{
	"Gather": true, "Unsqueeze": true, "Squeeze": true, "Concat": true, "Cast": true, "Slice": true,
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Equal": true, "Where": true, "Reshape": true,
	"Identity": true, "Neg": true, "ReduceProd": true, "Flatten": true, "Abs": true, "Max": true, "Min": true,
	"Less": true, "Greater": true, "Not": true, "Expand": true, "Floor": true, "Ceil": true,
}

// fold computes n's output at derive time if every input is a constant and
// the output is an integer (shape arithmetic), or n has no runtime inputs.
func (g *fgraph) fold(n *node, ins []*tinfo) {
	if n.op == "Shape" || n.op == "ConstantOfShape" || n.op == "Range" || n.op == "Size" {
		if n.op == "Size" {
			g.info[n.out[0]] = &tinfo{dt: onnx.Int64, isConst: true, ci: []int64{ins[0].numel()}}
		}
		n.folded = true
		return
	}
	if !foldable[n.op] {
		return
	}
	for _, t := range ins {
		if t != nil && !t.isConst {
			return
		}
	}
	out := g.info[n.out[0]]
	if out.dt == onnx.Float && n.op != "Cast" {
		return // float arithmetic runs in the graph
	}
	v, ok := evalConst(g, n, ins, out)
	if !ok {
		return
	}
	*out = *v
	out.isConst = true
	n.folded = true
}

// evalConst evaluates a foldable node on constants.
func evalConst(g *fgraph, n *node, ins []*tinfo, out *tinfo) (*tinfo, bool) {
	vals := func(t *tinfo) []float64 {
		r := make([]float64, t.numel())
		for i := range r {
			if t.cf != nil {
				r[i] = float64(t.cf[i])
			} else {
				r[i] = float64(t.ci[i])
			}
		}
		return r
	}
	res := &tinfo{dt: out.dt, shape: clone64(out.shape)}
	put := func(v []float64) {
		if res.dt == onnx.Float {
			res.cf = make([]float32, len(v))
			for i, x := range v {
				res.cf[i] = float32(x)
			}
		} else {
			res.ci = make([]int64, len(v))
			for i, x := range v {
				res.ci[i] = int64(x)
			}
		}
	}
	x := ins[0]
	switch n.op {
	case "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten":
		put(vals(x))
	case "Cast":
		v := vals(x)
		if res.dt == onnx.Bool {
			for i := range v {
				if v[i] != 0 {
					v[i] = 1
				}
			}
		} else if res.dt != onnx.Float {
			for i := range v {
				v[i] = math.Trunc(v[i])
			}
		}
		put(v)
	case "Neg", "Abs", "Floor", "Ceil", "Not":
		v := vals(x)
		for i := range v {
			switch n.op {
			case "Neg":
				v[i] = -v[i]
			case "Abs":
				v[i] = math.Abs(v[i])
			case "Floor":
				v[i] = math.Floor(v[i])
			case "Ceil":
				v[i] = math.Ceil(v[i])
			case "Not":
				v[i] = b2f(v[i] == 0)
			}
		}
		put(v)
	case "ReduceProd":
		if len(x.shape) != 1 || n.int("keepdims", 1) != 0 && len(out.shape) != 1 {
			return nil, false
		}
		p := 1.0
		for _, v := range vals(x) {
			p *= v
		}
		put([]float64{p})
	case "Gather":
		idx := vals(ins[1])
		if len(x.shape) != 1 {
			return nil, false
		}
		v := vals(x)
		r := make([]float64, len(idx))
		for i, j := range idx {
			k := int64(j)
			if k < 0 {
				k += x.shape[0]
			}
			if k < 0 || k >= x.shape[0] {
				return nil, false
			}
			r[i] = v[k]
		}
		put(r)
	case "Concat":
		if len(out.shape) != 1 {
			return nil, false
		}
		var r []float64
		for _, t := range ins {
			if t != nil {
				r = append(r, vals(t)...)
			}
		}
		put(r)
	case "Slice":
		if len(x.shape) != 1 {
			return nil, false
		}
		spec, _, err := g.sliceSpec(n, x.shape)
		if err != nil || len(spec) != 1 {
			return nil, false
		}
		v := vals(x)
		var r []float64
		s := spec[0]
		for i := s.start; (s.step > 0 && i < s.end) || (s.step < 0 && i > s.end); i += s.step {
			r = append(r, v[i])
		}
		put(r)
	case "Expand":
		if len(x.shape) > 1 || len(out.shape) != 1 {
			return nil, false
		}
		v := vals(x)
		r := make([]float64, out.shape[0])
		for i := range r {
			r[i] = v[int64(i)%int64(len(v))]
		}
		put(r)
	default: // broadcasting binary / ternary
		// only same-shape or scalar operands
		size := out.numel()
		get := func(t *tinfo) func(int64) float64 {
			v := vals(t)
			if int64(len(v)) == size {
				return func(i int64) float64 { return v[i] }
			}
			if len(v) == 1 {
				return func(int64) float64 { return v[0] }
			}
			return nil
		}
		fs := make([]func(int64) float64, len(ins))
		for i, t := range ins {
			if fs[i] = get(t); fs[i] == nil {
				return nil, false
			}
		}
		r := make([]float64, size)
		intDiv := res.dt != onnx.Float
		for i := int64(0); i < size; i++ {
			a := fs[0](i)
			var b float64
			if len(fs) > 1 {
				b = fs[1](i)
			}
			switch n.op {
			case "Add":
				r[i] = a + b
			case "Sub":
				r[i] = a - b
			case "Mul":
				r[i] = a * b
			case "Div":
				if b == 0 {
					return nil, false
				}
				r[i] = a / b
				if intDiv {
					r[i] = math.Trunc(r[i])
				}
			case "Max":
				r[i] = math.Max(a, b)
			case "Min":
				r[i] = math.Min(a, b)
			case "Equal":
				r[i] = b2f(a == b)
			case "Less":
				r[i] = b2f(a < b)
			case "Greater":
				r[i] = b2f(a > b)
			case "Where":
				if a != 0 {
					r[i] = b
				} else {
					r[i] = fs[2](i)
				}
			default:
				return nil, false
			}
		}
		put(r)
	}
	return res, true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ = onnxpb.TensorProto_FLOAT
