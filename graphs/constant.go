package graphs

import (
	"fmt"
	"math"

	"github.com/slatrun/slatrun/onnx"
)

// Ops that make constants: Constant, and Shape, Size, ConstantOfShape and
// Range, whose shape rules compute their values (small ones: see
// maxFoldElements) so that the nodes fold. No gradient flows through them.

func init() {
	register(map[string]opDef{
		"Constant":        {infer: inferConstant, nullary: true},
		"Shape":           {infer: inferShape, grad: noGrad},
		"Size":            {infer: inferSize, grad: noGrad},
		"ConstantOfShape": {infer: inferConstantOfShape, grad: noGrad},
		"Range":           {infer: inferRange},
	})
}

// inferConstant decodes a Constant node's value; the node is folded.
func inferConstant(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	t, err := constantAttr(n)
	if err != nil {
		return nil, err
	}
	n.folded = true
	return []*tinfo{t}, nil
}

// inferSize: the element count, a constant.
func inferSize(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	return []*tinfo{{dt: onnx.Int64, isConst: true, ci: []int64{ins[0].numel()}}}, nil
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
