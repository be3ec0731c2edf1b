package graphs

import (
	"fmt"

	"github.com/slatrun/slatrun/onnx"
)

// reduceOps lists the Reduce* operators; their axes moved from an attribute
// to an input in opset 18 (ReduceSum: opset 13).
var reduceOps = map[string]bool{
	"ReduceMean": true, "ReduceSum": true, "ReduceMax": true, "ReduceMin": true,
	"ReduceProd": true, "ReduceL1": true, "ReduceL2": true, "ReduceLogSum": true,
	"ReduceLogSumExp": true, "ReduceSumSquare": true,
}

// upgrade rewrites a node of the forward graph's opset into its opset-18 form
// where the operator's signature changed (attributes that became inputs,
// training-only outputs), so derived graphs can use opset 18 throughout.
func (g *fgraph) upgrade(n *node) error {
	v := g.opset
	moveInts := func(attr string, at int) {
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
	moveFloat := func(attr string, at int) {
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
	switch {
	case reduceOps[n.op]:
		if (n.op == "ReduceSum" && v < 13) || (n.op != "ReduceSum" && v < 18) {
			moveInts("axes", 1)
		}
	case n.op == "Squeeze" || n.op == "Unsqueeze":
		if v < 13 {
			moveInts("axes", 1)
		}
	case n.op == "Split":
		if v < 13 {
			moveInts("split", 1)
		}
		if n.input(1) == "" && n.attr("num_outputs") == nil {
			n.setAttr(onnx.AttrInt("num_outputs", int64(len(n.out))))
		}
	case n.op == "Pad":
		if v < 11 {
			moveInts("pads", 1)
			moveFloat("value", 2)
		}
	case n.op == "Slice":
		if v < 10 {
			moveInts("starts", 1)
			moveInts("ends", 2)
			moveInts("axes", 3)
		}
	case n.op == "Clip":
		if v < 11 {
			moveFloat("min", 1)
			moveFloat("max", 2)
		}
	case n.op == "Dropout":
		// Dropout is the identity in every derived graph (its inference
		// semantics); a consumer of its mask output is an error later.
		n.op, n.in, n.out, n.attrs = "Identity", n.in[:1], n.out[:1], nil
	case n.op == "BatchNormalization":
		// training_mode (opsets 14/15) and the running-stat outputs are
		// replaced by slatrun's own training form and <stat>.next outputs.
		n.delAttr("training_mode")
		n.delAttr("spatial")
		n.delAttr("is_test")
		n.delAttr("consumed_inputs")
		n.out = n.out[:1]
	case n.op == "Softmax" || n.op == "LogSoftmax" || n.op == "Hardmax":
		if v < 13 {
			// old semantics: coerce to 2-D at axis (default 1); the same
			// as the new one when axis is the last axis (checked at shape
			// inference).
			n.setAttr(onnx.AttrInt("axis", n.int("axis", 1)))
			n.setAttr(onnx.AttrInt("__legacy", 1))
		}
	case n.op == "Upsample":
		return fmt.Errorf("op Upsample (deprecated) is not supported; export with a newer opset (Resize)")
	}
	return nil
}
