package graphs

import (
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

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
