package graphs

import (
	"errors"
	"fmt"

	"github.com/slatrun/slatrun/onnx"
)

// Static shape inference. With the batch size fixed, every tensor of a
// supported forward graph has a concrete shape, and the integer shape
// arithmetic torch.onnx.export emits for flatten/view (Shape → Gather →
// Unsqueeze → Concat → Reshape) folds to constants (fold.go). The shape
// rules are those of the registry (registry.go); this file is the driver
// and the helpers they share.

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

// inferNode runs n's shape rule, records its outputs' types and shapes and
// folds n if it can.
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
	if err := onnx.CheckArity("", n.op, n.in, n.out); err != nil {
		return err
	}
	def := ops[n.op]
	if def == nil || def.infer == nil {
		if len(ins) == 0 {
			return fmt.Errorf("no inputs")
		}
		return &UnsupportedOpError{Node: n.name, Op: n.op}
	}
	if !def.nullary {
		if len(ins) == 0 {
			return fmt.Errorf("no inputs")
		}
		if err := needIns(ins, 1); err != nil {
			return err
		}
	}
	outs, err := def.infer(g, n, ins)
	if err != nil {
		return err
	}
	for i, t := range outs {
		if i < len(n.out) && n.out[i] != "" {
			g.info[n.out[i]] = t
		}
	}
	g.fold(n, def, ins)
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

// constInts returns the constant integer values of tensor s (converting
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

// needIns checks that the first k inputs are present.
func needIns(ins []*tinfo, k int) error {
	for i := 0; i < k; i++ {
		if i >= len(ins) || ins[i] == nil {
			return fmt.Errorf("missing input %d", i)
		}
	}
	return nil
}

// broadcast returns the numpy-broadcast shape of a and b.
func broadcast(a, b []int64) ([]int64, error) {
	r := max(len(a), len(b))
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

// normAxis returns axis a of a rank-r tensor in [0, rank).
func normAxis(a int64, rank int) (int64, error) {
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, rank)
	}
	return a, nil
}

// normAxes normalizes a list of axes with normAxis.
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

func clamp(v, lo, hi int64) int64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// sameShape is the shape rule of elementwise ops with one input: the
// output has the input's type and shape.
func sameShape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	return []*tinfo{{dt: ins[0].dt, shape: clone64(ins[0].shape)}}, nil
}
