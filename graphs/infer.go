package graphs

import (
	"errors"
	"fmt"
	"math"
	"slices"

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
	if len(axes) > onnx.MaxRank {
		return nil, fmt.Errorf("%d axes (at most %d)", len(axes), onnx.MaxRank)
	}
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

// maxFoldElements bounds the constants derive computes in Go (shape
// arithmetic, ConstantOfShape, Range); larger ones are computed by the
// runtime.
const maxFoldElements = 1 << 16

// inferAll infers shapes for every node in order and folds constants.
func (g *fgraph) inferAll() error {
	for _, n := range g.nodes {
		err := g.inferNode(n)
		if err == nil {
			err = g.checkOutputs(n)
		}
		if err != nil {
			var u *UnsupportedOpError
			if errors.As(err, &u) {
				return err
			}
			return fmt.Errorf("graphs: derive: %v: %w", n, err)
		}
	}
	return nil
}

// checkOutputs checks the shapes inferred for n's outputs: every dimension
// non-negative, at most onnx.MaxTensorElements elements, no empty float
// tensor computed at run time, constants holding as many values as their
// shape says.
func (g *fgraph) checkOutputs(n *node) error {
	for _, o := range n.out {
		t := g.info[o]
		if o == "" || t == nil {
			continue
		}
		if len(t.shape) > onnx.MaxRank {
			return fmt.Errorf("output %q would have rank %d (at most %d)", o, len(t.shape), onnx.MaxRank)
		}
		cnt, err := onnx.Elements(t.shape)
		if err != nil {
			return fmt.Errorf("output %q: %w", o, err)
		}
		if t.isConst && int64(len(t.ci)+len(t.cf)) != cnt {
			return fmt.Errorf("output %q: constant of shape %v holds %d values", o, t.shape, len(t.ci)+len(t.cf))
		}
		if cnt == 0 && t.isFloat() && !t.isConst {
			return fmt.Errorf("output %q would be empty (shape %v)", o, t.shape)
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
	if err := onnx.CheckArity("", n.op, n.in, n.out); err != nil {
		return err
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
		if err := need(len(ins)); err != nil {
			return err
		}
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
			if len(ins) != 3 {
				return fmt.Errorf("Where needs 3 inputs")
			}
			dt = ins[1].dt
		}
		if boolOut[n.op] {
			dt = onnx.Bool
		}
		if n.op == "PRelu" {
			if !slices.Equal(shape, in0.shape) {
				return fmt.Errorf("PRelu's slope %v does not broadcast to its input %v", ins[1].shape, in0.shape)
			}
		}
		if (n.op == "Div" || n.op == "Mod") && dt != onnx.Float && len(ins) == 2 && ins[1].isConst {
			for _, v := range ins[1].ci {
				if v == 0 {
					return fmt.Errorf("integer division by zero: divisor %q holds a 0", n.in[1])
				}
			}
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
	"Conv":               inferConv,
	"ConvTranspose":      inferConvTranspose,
	"MaxPool":            inferPool,
	"AveragePool":        inferPool,
	"GlobalAveragePool":  inferGlobalPool,
	"GlobalMaxPool":      inferGlobalPool,
	"BatchNormalization": inferBN,
	"Gemm":               inferGemm,
	"MatMul":             inferMatMul,
	"Flatten":            inferFlatten,
	"Reshape":            inferReshape,
	"Transpose":          inferTranspose,
	"Squeeze":            inferSqueeze,
	"Unsqueeze":          inferUnsqueeze,
	"Concat":             inferConcat,
	"Split":              inferSplit,
	"Slice":              inferSlice,
	"Pad":                inferPad,
	"Gather":             inferGather,
	"GatherElements": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		if err := needIns(ins, 2); err != nil {
			return nil, err
		}
		if len(ins[0].shape) != len(ins[1].shape) || len(ins[0].shape) == 0 {
			return nil, fmt.Errorf("GatherElements of %v by indices %v: ranks differ", ins[0].shape, ins[1].shape)
		}
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
		to := onnx.DType(n.int("to", 1))
		if !castTypes[to] {
			return nil, fmt.Errorf("Cast to element type %s is not supported", to)
		}
		return []*tinfo{{dt: to, shape: clone64(ins[0].shape)}}, nil
	},
	"CastLike": func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
		if err := needIns(ins, 2); err != nil {
			return nil, err
		}
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

// castTypes are the element types a Cast may produce in a derived graph.
var castTypes = map[onnx.DType]bool{}

func init() {
	for _, t := range []onnxpb.TensorProto_DataType{onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_UINT8,
		onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_INT32,
		onnxpb.TensorProto_INT64, onnxpb.TensorProto_BOOL, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_DOUBLE,
		onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_BFLOAT16} {
		castTypes[t] = true
	}
}

// needIns checks that the first k inputs are present.
func needIns(ins []*tinfo, k int) error {
	for i := 0; i < k; i++ {
		if i >= len(ins) || ins[i] == nil {
			return fmt.Errorf("missing input %d", i)
		}
	}
	return nil
}

// spatial returns the kernel/stride/dilation/pads of a conv or pool node with
// r spatial axes, resolving auto_pad into explicit pads (written back). It
// checks their ranges: kernel, strides and dilations in [1,
// onnx.MaxAttrExtent], each pad at least 0 and smaller than the dilated
// kernel extent (a larger pad gives outputs that see nothing but padding).
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
	if len(strides) != r || len(dil) != r || len(pads) != 2*r || len(in) != r {
		return nil, nil, nil, fmt.Errorf("strides/dilations/pads do not match %d spatial axes", r)
	}
	for i := 0; i < r; i++ {
		for _, c := range []struct {
			what string
			v    int64
		}{{"kernel", kernel[i]}, {"stride", strides[i]}, {"dilation", dil[i]}, {"input extent", in[i]}} {
			if c.v < 1 || c.v > onnx.MaxAttrExtent {
				return nil, nil, nil, fmt.Errorf("%s %d along spatial axis %d is not in [1, %d]", c.what, c.v, i, onnx.MaxAttrExtent)
			}
		}
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
	for i := 0; i < r; i++ {
		ext := (kernel[i]-1)*dil[i] + 1
		for _, p := range []int64{pads[i], pads[i+r]} {
			if p < 0 || p >= ext || p > onnx.MaxAttrExtent {
				return nil, nil, nil, fmt.Errorf("pads %v: a pad along spatial axis %d must be at least 0 and smaller than the kernel extent %d", pads, i, ext)
			}
		}
	}
	n.delAttr("auto_pad")
	n.setAttr(onnx.AttrInts("pads", pads...))
	n.setAttr(onnx.AttrInts("strides", strides...))
	n.setAttr(onnx.AttrInts("dilations", dil...))
	return strides, dil, pads, nil
}

// kernelAttr checks that a kernel_shape attribute, if any, matches the
// weight's spatial dims k, and records k in it.
func kernelAttr(n *node, k []int64) error {
	if a := n.attr("kernel_shape"); a != nil && !slices.Equal(a.GetInts(), k) {
		return fmt.Errorf("kernel_shape %v does not match the weight's spatial shape %v", a.GetInts(), k)
	}
	n.setAttr(onnx.AttrInts("kernel_shape", k...))
	return nil
}

// group returns a convolution's group after checking it.
func group(n *node) (int64, error) {
	g := n.int("group", 1)
	if g < 1 || g > onnx.MaxAttrExtent {
		return 0, fmt.Errorf("group %d is not in [1, %d]", g, onnx.MaxAttrExtent)
	}
	return g, nil
}

// checkBias checks an optional bias input against its expected shape [m].
func checkBias(ins []*tinfo, m int64) error {
	if len(ins) > 2 && ins[2] != nil && !slices.Equal(ins[2].shape, []int64{m}) {
		return fmt.Errorf("bias has shape %v, want [%d]", ins[2].shape, m)
	}
	return nil
}

func inferConv(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	k := w[2:]
	if err := kernelAttr(n, k); err != nil {
		return nil, err
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	grp, err := group(n)
	if err != nil {
		return nil, err
	}
	if w[0]%grp != 0 {
		return nil, fmt.Errorf("group %d does not divide the weight's %d output channels", grp, w[0])
	}
	if x[1] != w[1]*grp {
		return nil, fmt.Errorf("input has %d channels, weight expects %d×%d", x[1], w[1], grp)
	}
	if err := checkBias(ins, w[0]); err != nil {
		return nil, err
	}
	r := len(k)
	out := []int64{x[0], w[0]}
	for i := 0; i < r; i++ {
		o := (x[2+i]+p[i]+p[i+r]-d[i]*(k[i]-1)-1)/s[i] + 1
		if x[2+i]+p[i]+p[i+r] < d[i]*(k[i]-1)+1 || o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}

func inferConvTranspose(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	if n.attr("output_shape") != nil {
		return nil, fmt.Errorf("ConvTranspose with output_shape is not supported; use pads and output_padding")
	}
	if ap := n.str("auto_pad", "NOTSET"); ap != "NOTSET" && ap != "VALID" && ap != "" {
		return nil, fmt.Errorf("ConvTranspose with auto_pad %s is not supported", ap)
	}
	k := w[2:]
	r := len(k)
	if err := kernelAttr(n, k); err != nil {
		return nil, err
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	op := n.ints("output_padding", make([]int64, r))
	if len(op) != r {
		return nil, fmt.Errorf("output_padding %v does not match %d spatial axes", op, r)
	}
	grp, err := group(n)
	if err != nil {
		return nil, err
	}
	if x[1] != w[0] || w[0]%grp != 0 {
		return nil, fmt.Errorf("input has %d channels, weight %v expects %d in %d groups", x[1], w, w[0], grp)
	}
	if err := checkBias(ins, w[1]*grp); err != nil {
		return nil, err
	}
	out := []int64{x[0], w[1] * grp}
	for i := 0; i < r; i++ {
		if op[i] < 0 || (op[i] >= s[i] && op[i] >= d[i]) {
			return nil, fmt.Errorf("output_padding %v: each must be at least 0 and smaller than the stride or the dilation", op)
		}
		o := s[i]*(x[2+i]-1) + op[i] + (k[i]-1)*d[i] + 1 - p[i] - p[i+r]
		if o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}

func inferPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	k := n.ints("kernel_shape", nil)
	if len(x) < 3 || len(k) != len(x)-2 {
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
		if num < 0 {
			return nil, fmt.Errorf("the kernel %v is larger than the padded input along spatial axis %d", k, i)
		}
		o := num/s[i] + 1
		if ceil {
			o = (num+s[i]-1)/s[i] + 1
			// the last window must start inside the input or left padding
			if (o-1)*s[i] >= x[2+i]+p[i] {
				o--
			}
		}
		if o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	t := &tinfo{dt: ins[0].dt, shape: out}
	return []*tinfo{t, {dt: onnx.Int64, shape: clone64(out)}}, nil
}

func inferGlobalPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := clone64(ins[0].shape)
	if len(x) < 3 {
		return nil, fmt.Errorf("%s needs an input [N, C, spatial...], got %v", n.op, x)
	}
	for i := 2; i < len(x); i++ {
		x[i] = 1
	}
	return []*tinfo{{dt: ins[0].dt, shape: x}}, nil
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

func inferGemm(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
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
	if len(ins) > 2 && ins[2] != nil {
		if c, err := broadcast(ins[2].shape, []int64{m, nn}); err != nil || !slices.Equal(c, []int64{m, nn}) {
			return nil, fmt.Errorf("Gemm's C of shape %v does not broadcast to [%d, %d]", ins[2].shape, m, nn)
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: []int64{m, nn}}}, nil
}

func inferMatMul(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
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
		case d < 0 || d > onnx.MaxTensorElements:
			return nil, fmt.Errorf("reshape to %v: bad dimension %d", want, d)
		default:
			known *= d
		}
		if known > onnx.MaxTensorElements {
			return nil, fmt.Errorf("cannot reshape %v to %v", x, want)
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
	seen := make([]bool, rank)
	for _, p := range perm {
		if p < 0 || p >= int64(rank) || seen[p] {
			return nil, fmt.Errorf("perm %v is not a permutation of the %d axes", perm, rank)
		}
		seen[p] = true
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
	if len(a) > onnx.MaxRank {
		return nil, fmt.Errorf("%d axes to unsqueeze (at most %d)", len(a), onnx.MaxRank)
	}
	r := len(x) + len(a)
	axes, err := normAxes(a, r)
	if err != nil {
		return nil, err
	}
	for i, v := range axes {
		if contains(axes[:i], v) {
			return nil, fmt.Errorf("axes %v repeat axis %d", a, v)
		}
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
		for j := range out {
			if int64(j) != ax && t.shape[j] != out[j] {
				return nil, fmt.Errorf("input %d has shape %v, which does not match %v off axis %d", i, t.shape, out, ax)
			}
		}
		out[ax] += t.shape[ax]
	}
	if out == nil {
		return nil, fmt.Errorf("no inputs")
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
		if err != nil {
			return 0, nil, err
		}
		sum := int64(0)
		for _, v := range s {
			if v < 0 || v > x[ax] {
				return 0, nil, fmt.Errorf("split sizes %v do not add up to %d", s, x[ax])
			}
			sum += v
		}
		if sum != x[ax] {
			return 0, nil, fmt.Errorf("split sizes %v do not add up to %d", s, x[ax])
		}
		return ax, s, nil
	}
	k := int64(len(n.out))
	if a := n.attr("num_outputs"); a != nil {
		k = a.GetI()
	}
	if k < 1 || k > onnx.MaxNodeArity {
		return 0, nil, fmt.Errorf("num_outputs %d", k)
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
	if len(sizes) != len(n.out) {
		return nil, fmt.Errorf("Split into %d parts has %d outputs", len(sizes), len(n.out))
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
	if len(starts) > onnx.MaxRank {
		return nil, nil, fmt.Errorf("%d axes to slice (at most %d)", len(starts), onnx.MaxRank)
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
		// A step longer than the axis selects what a step of the axis'
		// length selects; clamping keeps the arithmetic below in range.
		if lim := max(d, 1); sp > lim {
			sp = lim
		} else if sp < -lim {
			sp = -lim
		}
		if d == 0 {
			out[ax] = 0
			spec = append(spec, sliceAxis{ax, 0, 0, sp})
			continue
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
	for _, v := range p {
		if v < -onnx.MaxTensorElements || v > onnx.MaxTensorElements {
			return nil, fmt.Errorf("pad %d is out of range", v)
		}
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
		if out[i] < 0 {
			return nil, fmt.Errorf("pads %v crop more than the input %v holds", p, x)
		}
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
	if _, err := onnx.Elements(s); err != nil {
		return nil, fmt.Errorf("Expand to %v: %w", s, err)
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
		if rep[i] < 0 || rep[i] > onnx.MaxTensorElements {
			return nil, fmt.Errorf("repeats %v out of range", rep)
		}
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
	if len(k) != 1 || k[0] < 0 || k[0] > ins[0].shape[ax] {
		return nil, fmt.Errorf("TopK's k %v must be one value in [0, %d]", k, ins[0].shape[ax])
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
	cnt, err := onnx.Elements(s)
	if err != nil {
		return nil, fmt.Errorf("shape %v: %w", s, err)
	}
	t := &tinfo{dt: onnx.Float, shape: clone64(s), isConst: cnt <= maxFoldElements}
	var val *tinfo
	if a := n.attr("value"); a != nil {
		if val, err = decodeTensor(a.GetT()); err != nil {
			return nil, err
		}
		if len(val.ci)+len(val.cf) != 1 {
			return nil, fmt.Errorf("ConstantOfShape's value must hold one element, holds %d", len(val.ci)+len(val.cf))
		}
		t.dt = val.dt
	}
	if !t.isConst {
		return []*tinfo{t}, nil // too large to fold: the runtime fills it
	}
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
	if len(ins) != 3 {
		return nil, fmt.Errorf("Range needs 3 inputs")
	}
	for i := 0; i < 3; i++ {
		if ins[i] == nil || !ins[i].isConst || ins[i].numel() != 1 || ins[i].isFloat() != ins[0].isFloat() {
			return nil, fmt.Errorf("Range needs constant scalar inputs of one type")
		}
	}
	// count returns the number of elements, ⌈(limit − start)/delta⌉ ≥ 0.
	count := func(st, lim, d float64) (int64, error) {
		c := math.Ceil((lim - st) / d)
		if math.IsNaN(c) || c > onnx.MaxTensorElements {
			return 0, fmt.Errorf("Range(%v, %v, %v) does not have at most %d elements", st, lim, d, int64(onnx.MaxTensorElements))
		}
		return int64(math.Max(c, 0)), nil
	}
	if ins[0].dt == onnx.Float {
		st, lim, d := ins[0].cf[0], ins[1].cf[0], ins[2].cf[0]
		cnt, err := count(float64(st), float64(lim), float64(d))
		if err != nil {
			return nil, err
		}
		t := &tinfo{dt: onnx.Float, shape: []int64{cnt}, isConst: cnt <= maxFoldElements}
		for i := int64(0); t.isConst && i < cnt; i++ {
			t.cf = append(t.cf, st+float32(i)*d)
		}
		return []*tinfo{t}, nil
	}
	st, lim, d := ins[0].ci[0], ins[1].ci[0], ins[2].ci[0]
	if d == 0 {
		return nil, fmt.Errorf("Range with delta 0")
	}
	cnt, err := count(float64(st), float64(lim), float64(d))
	if err != nil {
		return nil, err
	}
	t := &tinfo{dt: ins[0].dt, shape: []int64{cnt}, isConst: cnt <= maxFoldElements}
	for i := int64(0); t.isConst && i < cnt; i++ {
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
	if len(n.out) == 0 || n.out[0] == "" {
		return
	}
	if n.op == "Shape" || n.op == "ConstantOfShape" || n.op == "Range" || n.op == "Size" {
		if n.op == "Size" {
			g.info[n.out[0]] = &tinfo{dt: onnx.Int64, isConst: true, ci: []int64{ins[0].numel()}}
		}
		if t := g.info[n.out[0]]; t != nil && t.isConst {
			n.folded = true
		}
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
	if out == nil || out.numel() > maxFoldElements {
		return // large constants are computed by the runtime
	}
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
		if len(x.shape) > 1 || len(out.shape) != 1 || x.numel() == 0 {
			return nil, false
		}
		v := vals(x)
		r := make([]float64, out.shape[0])
		for i := range r {
			r[i] = v[int64(i)%int64(len(v))]
		}
		put(r)
	default: // broadcasting binary / ternary
		if len(ins) != 2 && !(n.op == "Where" && len(ins) == 3) {
			return nil, false
		}
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
