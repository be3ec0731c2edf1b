package graphs

import (
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

// l1Outputs declares l1.<t> for every tap t (Spec.TapL1): Σ|grad.<t>| over
// all axes, kept as size-1 dimensions.
func (d *deriver) l1Outputs() {
	for _, t := range d.taps {
		out := contract.L1Name(t)
		d.b.Node("ReduceL1", []string{contract.GradName(t)}, []string{out}, onnx.AttrInt("keepdims", 1))
		ones := clone64(d.shape(t))
		for i := range ones {
			ones[i] = 1
		}
		d.output(out, ones)
	}
}

// rangeOutputs declares range.<t> for every tap t (Spec.TapRange): hi − lo
// of t, with lo and hi its minimum and maximum over the axes of the domain
// clip (tapAxes), kept as size-1 dimensions: [N, C, 1, 1] for an NCHW tap,
// [N, 1] for a 2-D one. These are the bounds emitTap clips to, at the
// tensor the attack pass differentiates.
func (d *deriver) rangeOutputs() {
	for _, t := range d.taps {
		shape := d.shape(t)
		axes := tapAxes(len(shape))
		lo := d.op("ReduceMin", []string{t, d.ints(axes...)}, onnx.AttrInt("keepdims", 1))
		hi := d.op("ReduceMax", []string{t, d.ints(axes...)}, onnx.AttrInt("keepdims", 1))
		out := contract.RangeName(t)
		d.b.Node("Sub", []string{hi, lo}, []string{out})
		kept := clone64(shape)
		for _, a := range axes {
			kept[a] = 1
		}
		d.output(out, kept)
	}
}
