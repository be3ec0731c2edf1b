package graphs

import (
	"github.com/slatrun/slatrun/onnx"
)

// Opset normalization: a forward graph of any opset is rewritten into the
// opset-18 form of its operators, so derived graphs use opset 18
// throughout. The per-op rewrites are the registry's upgrade rules
// (opDef.upgrade); this file is the driver and the helpers they share.

// upgrade rewrites a node of the forward graph's opset into its opset-18
// form where the operator's signature changed (attributes that became
// inputs, training-only outputs).
func (g *fgraph) upgrade(n *node) error {
	if def := ops[n.op]; def != nil && def.upgrade != nil {
		return def.upgrade(g, n)
	}
	return nil
}

// attrToInput moves the ints attribute attr of n, if it has one, to a
// constant input at position at.
func (g *fgraph) attrToInput(n *node, attr string, at int) {
	a := n.attr(attr)
	if a == nil {
		return
	}
	for len(n.in) < at {
		n.in = append(n.in, "")
	}
	name := g.addConstInts(attr, a.GetInts())
	if len(n.in) == at {
		n.in = append(n.in, name)
	} else {
		n.in[at] = name
	}
	n.delAttr(attr)
}

// floatAttrToInput moves the float attribute attr of n, if it has one, to
// a constant scalar input at position at.
func (g *fgraph) floatAttrToInput(n *node, attr string, at int) {
	a := n.attr(attr)
	if a == nil {
		return
	}
	for len(n.in) <= at {
		n.in = append(n.in, "")
	}
	name := g.fresh(attr)
	g.info[name] = &tinfo{dt: onnx.Float, isConst: true, cf: []float32{a.GetF()}}
	n.in[at] = name
	n.delAttr(attr)
}

// axesToInput returns the upgrade rule of an op whose axes attribute became
// input 1 in opset since.
func axesToInput(since int64) upgradeRule {
	return func(g *fgraph, n *node) error {
		if g.opset < since {
			g.attrToInput(n, "axes", 1)
		}
		return nil
	}
}
