package graphs

import (
	"github.com/slatrun/slatrun/onnx"
)

// Constant folding: integer shape arithmetic is computed at derive time,
// so the shapes it feeds (Reshape targets, Slice bounds, ...) are known.
// The ops' fold rules are in the registry (opDef.fold); this file is the
// driver and the helpers they share.

// maxFoldElements bounds the constants derive computes in Go (shape
// arithmetic, ConstantOfShape, Range); larger ones are computed by the
// runtime.
const maxFoldElements = 1 << 16

// fold marks n folded if its shape rule gave a constant output, or
// computes its output with def's fold rule if every input is a constant and
// the output is an integer (or def.foldFloat).
func (g *fgraph) fold(n *node, def *opDef, ins []*tinfo) {
	if len(n.out) == 0 || n.out[0] == "" {
		return
	}
	out := g.info[n.out[0]]
	if out != nil && out.isConst {
		n.folded = true
		return
	}
	if def.fold == nil {
		return
	}
	for _, t := range ins {
		if t != nil && !t.isConst {
			return
		}
	}
	if out == nil || out.numel() > maxFoldElements {
		return // large constants are computed by the runtime
	}
	if out.dt == onnx.Float && !def.foldFloat {
		return // float arithmetic runs in the graph
	}
	v, ok := def.fold(g, n, ins, out)
	if !ok {
		return
	}
	*out = *constOf(out.dt, out.shape, v)
	n.folded = true
}

// constOf returns a constant of type dt and the given shape holding v.
func constOf(dt onnx.DType, shape []int64, v []float64) *tinfo {
	t := &tinfo{dt: dt, shape: clone64(shape), isConst: true}
	if dt == onnx.Float {
		t.cf = make([]float32, len(v))
		for i, x := range v {
			t.cf[i] = float32(x)
		}
	} else {
		t.ci = make([]int64, len(v))
		for i, x := range v {
			t.ci[i] = int64(x)
		}
	}
	return t
}

// values returns a constant's values as float64s.
func values(t *tinfo) []float64 {
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

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// foldCopy is the fold rule of ops that only change the shape: the values
// stay as they are.
func foldCopy(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	return values(ins[0]), true
}

// foldMap returns the fold rule of a one-input elementwise op.
func foldMap(f func(float64) float64) foldRule {
	return func(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
		v := values(ins[0])
		for i := range v {
			v[i] = f(v[i])
		}
		return v, true
	}
}

// foldBinary returns the fold rule of a two-operand broadcasting op; f
// reports false where the result is not defined (division by zero).
func foldBinary(f func(a, b float64) (float64, bool)) foldRule {
	return func(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
		if len(ins) != 2 {
			return nil, false
		}
		return zipConst(ins, out.numel(), func(v []float64) (float64, bool) { return f(v[0], v[1]) })
	}
}

// zipConst applies f to the operands' values at each of size positions.
// Only operands of the output's size or scalars are handled (no general
// broadcasting).
func zipConst(ins []*tinfo, size int64, f func(v []float64) (float64, bool)) ([]float64, bool) {
	get := make([]func(int64) float64, len(ins))
	for i, t := range ins {
		if t == nil {
			return nil, false
		}
		v := values(t)
		switch {
		case int64(len(v)) == size:
			get[i] = func(j int64) float64 { return v[j] }
		case len(v) == 1:
			get[i] = func(int64) float64 { return v[0] }
		default:
			return nil, false
		}
	}
	r := make([]float64, size)
	args := make([]float64, len(ins))
	for j := int64(0); j < size; j++ {
		for i := range get {
			args[i] = get[i](j)
		}
		x, ok := f(args)
		if !ok {
			return nil, false
		}
		r[j] = x
	}
	return r, true
}
