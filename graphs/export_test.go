package graphs

import "github.com/slatrun/slatrun/onnx"

// linearObjective is the objective of the finite-difference tests: the
// loss is Σ w ⊙ logits and the gradients of wrt (the input x and/or
// initializers, which become graph inputs) are the outputs.
type linearObjective struct {
	w   []float32
	wrt []string
}

func (o linearObjective) sources(d *deriver) []string { return o.wrt }

func (o linearObjective) inputs(d *deriver) {
	for _, p := range o.wrt {
		if _, ok := d.g.inits[p]; ok {
			d.input(p, onnx.Float, d.g.info[p].shape)
		}
	}
}

func (o linearObjective) seed(d *deriver) (string, error) {
	shape := d.g.info[d.g.output].shape
	seed := d.floats("linear", shape, o.w)
	d.output(d.g.output, shape)
	return seed, nil
}

func (o linearObjective) outputs(d *deriver) {
	for _, w := range o.wrt {
		d.gradOutput(w)
	}
}

// deriveLinear builds the gradient graph of the loss Σ w ⊙ out (out: the
// forward's first output, w given) with respect to the tensors wrt.
// training selects BN on batch statistics.
func deriveLinear(forward *onnx.Model, batch int, training bool, wrt []string, w []float32) (*onnx.Model, error) {
	g, err := loadGraph(forward, int64(batch))
	if err != nil {
		return nil, err
	}
	kind := Eval
	if training {
		kind = Attack
	}
	return newDeriver(g, Spec{Kind: kind, Batch: batch}, nil, linearObjective{w: w, wrt: wrt}).build()
}
