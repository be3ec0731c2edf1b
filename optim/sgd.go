package optim

import "fmt"

// SGD is PyTorch's torch.optim.SGD (dampening 0, no Nesterov) over
// parameters held in caller-owned slices, updated in place in float32:
//
//	d = g + wd·p
//	buf = d on the first step, else buf = μ·buf + d
//	p = p − lr·buf
//
// The learning rate and momentum are given per step, so schedules can
// change them like PyTorch's schedulers change the optimizer's param groups.
type SGD struct {
	// Params and Grads are the parameters and their gradients, one slice
	// per tensor, pairwise of equal length.
	Params, Grads [][]float32
	// Bufs are the momentum buffers, allocated by NewSGD.
	Bufs [][]float32
	// WeightDecay is the L2 weight decay.
	WeightDecay float32
	// Started is false until the first Step (PyTorch's "buffer is None").
	Started bool
}

// NewSGD returns an SGD over params and grads with zeroed momentum buffers.
// params and grads must pair up: as many gradients as parameters, each of
// its parameter's length.
func NewSGD(params, grads [][]float32, weightDecay float32) (*SGD, error) {
	if len(grads) != len(params) {
		return nil, fmt.Errorf("optim: NewSGD: %d parameters but %d gradients", len(params), len(grads))
	}
	o := &SGD{Params: params, Grads: grads, WeightDecay: weightDecay}
	o.Bufs = make([][]float32, len(params))
	for i, p := range params {
		if len(grads[i]) != len(p) {
			return nil, fmt.Errorf("optim: NewSGD: parameter %d has %d values but its gradient %d", i, len(p), len(grads[i]))
		}
		o.Bufs[i] = make([]float32, len(p))
	}
	return o, nil
}

// Step updates every parameter in place.
func (o *SGD) Step(lr, momentum float32) {
	wd := o.WeightDecay
	for k, p := range o.Params {
		g, buf := o.Grads[k][:len(p)], o.Bufs[k][:len(p)]
		if o.Started && momentum != 0 {
			for i := range p {
				d := g[i] + float32(wd*p[i])
				buf[i] = float32(momentum*buf[i]) + d
				p[i] -= float32(lr * buf[i])
			}
			continue
		}
		for i := range p {
			d := g[i] + float32(wd*p[i])
			buf[i] = d
			p[i] -= float32(lr * d)
		}
	}
	o.Started = true
}
