package graphs

import (
	"fmt"

	"github.com/slatrun/slatrun/onnx"
)

// Shape and data-movement ops, and reductions: their gradients move dY back
// to where the values came from (Reshape back, inverse Transpose, Split for
// Concat, Pad for Slice, Slice for Pad, scatter-add for gathers).

func init() {
	for _, op := range []string{"Reshape", "Flatten", "Squeeze", "Unsqueeze"} {
		gradRules[op] = reshapeGrad
	}
	for op, f := range map[string]gradRule{
		"Transpose": transposeGrad, "Concat": concatGrad, "Split": splitGrad, "Slice": sliceGrad,
		"Pad": padGrad, "Gather": gatherGrad, "GatherElements": gatherElementsGrad,
		"Expand": expandGrad, "Tile": tileGrad,
		"ReduceSum": reduceGrad, "ReduceMean": reduceGrad, "ReduceMax": reduceGrad, "ReduceMin": reduceGrad,
		"ReduceSumSquare": reduceGrad, "ReduceL2": reduceGrad, "ReduceLogSumExp": reduceGrad,
	} {
		gradRules[op] = f
	}
}

func reshapeGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one1(d.reshape(dy[0], d.shape(n.in[0]))), nil
}

func transposeGrad(d *deriver, n *node, dy []string) ([]string, error) {
	r := len(d.shape(n.in[0]))
	perm, err := transposePerm(n, r)
	if err != nil {
		return nil, err
	}
	inv := make([]int64, r)
	for i, p := range perm {
		inv[p] = int64(i)
	}
	return one1(d.op("Transpose", dy[:1], onnx.AttrInts("perm", inv...))), nil
}

func concatGrad(d *deriver, n *node, dy []string) ([]string, error) {
	ys := d.shape(n.out[0])
	ax, err := normAxis(n.int("axis", 0), len(ys))
	if err != nil {
		return nil, err
	}
	var sizes []int64
	var idx []int
	for i, in := range n.in {
		if in == "" {
			continue
		}
		sizes = append(sizes, d.shape(in)[ax])
		idx = append(idx, i)
	}
	parts := d.b.OpN("Split", []string{dy[0], d.ints(sizes...)}, len(sizes), onnx.AttrInt("axis", ax))
	res := make([]string, len(n.in))
	for j, i := range idx {
		if d.wants(n.in[i]) {
			res[i] = parts[j]
		}
	}
	return res, nil
}

func splitGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs := d.shape(n.in[0])
	ax, sizes, err := d.g.splitSizes(n, xs)
	if err != nil {
		return nil, err
	}
	if len(sizes) != len(n.out) {
		return nil, fmt.Errorf("Split into %d parts has %d outputs", len(sizes), len(n.out))
	}
	parts := make([]string, len(n.out))
	for i := range n.out {
		if dy[i] != "" {
			parts[i] = dy[i]
		} else { // also an omitted output ("")
			sh := clone64(xs)
			sh[ax] = sizes[i]
			parts[i] = d.zeros(sh)
		}
	}
	return one1(d.op("Concat", parts, onnx.AttrInt("axis", ax))), nil
}

func sliceGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs := d.shape(n.in[0])
	spec, _, err := d.g.sliceSpec(n, xs)
	if err != nil {
		return nil, err
	}
	r := len(xs)
	pads := make([]int64, 2*r)
	for _, s := range spec {
		if s.step != 1 {
			return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: fmt.Sprintf("step %d; slatrun differentiates step-1 slices", s.step)}
		}
		end := s.end
		if end < s.start {
			end = s.start
		}
		pads[s.axis] = s.start
		pads[int64(r)+s.axis] = xs[s.axis] - end
	}
	return one1(d.op("Pad", []string{dy[0], d.ints(pads...)})), nil
}

func padGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if m := n.str("mode", "constant"); m != "constant" {
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: "mode " + m + "; slatrun differentiates constant padding"}
	}
	xs := d.shape(n.in[0])
	r := len(xs)
	p, err := d.g.padSpec(n, r)
	if err != nil {
		return nil, err
	}
	starts, ends := make([]int64, r), make([]int64, r)
	for i := 0; i < r; i++ {
		if p[i] < 0 || p[i+r] < 0 {
			return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: "negative pads"}
		}
		starts[i], ends[i] = p[i], p[i]+xs[i]
	}
	return one1(d.op("Slice", []string{dy[0], d.ints(starts...), d.ints(ends...), d.ints(seq(0, r)...)})), nil
}

// gatherGrad scatter-adds dY back along the gathered axis.
func gatherGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, idx := n.in[0], n.in[1]
	xs := d.shape(x)
	ax, err := normAxis(n.int("axis", 0), len(xs))
	if err != nil {
		return nil, err
	}
	m := d.g.info[idx].numel()
	us := append(append(clone64(xs[:ax]), m), xs[ax+1:]...)
	ishape := make([]int64, len(xs))
	for i := range ishape {
		ishape[i] = 1
	}
	ishape[ax] = m
	d.ensure(idx)
	ind := d.op("Expand", []string{d.reshape(idx, ishape), d.ints(us...)})
	dx := d.op("ScatterElements", []string{d.zeros(xs), ind, d.reshape(dy[0], us)}, onnx.AttrInt("axis", ax), onnx.AttrString("reduction", "add"))
	return one1(dx), nil
}

func gatherElementsGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs := d.shape(n.in[0])
	ax, err := normAxis(n.int("axis", 0), len(xs))
	if err != nil {
		return nil, err
	}
	dx := d.op("ScatterElements", []string{d.zeros(xs), n.in[1], dy[0]}, onnx.AttrInt("axis", ax), onnx.AttrString("reduction", "add"))
	return one1(dx), nil
}

func expandGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one1(d.unbroadcast(dy[0], d.shape(n.out[0]), d.shape(n.in[0]))), nil
}

// tileGrad sums the tiles: dY viewed as [r0, d0, r1, d1, ...] summed over
// the repeat axes.
func tileGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs, ys := d.shape(n.in[0]), d.shape(n.out[0])
	var view, axes []int64
	for i := range xs {
		if xs[i] == 0 {
			return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: "an empty input"}
		}
		view = append(view, ys[i]/xs[i], xs[i])
		axes = append(axes, int64(2*i))
	}
	return one1(d.reduceSum(d.reshape(dy[0], view), axes, false)), nil
}

// reduceGrad handles the Reduce* family.
func reduceGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, y := n.in[0], n.out[0]
	xs := d.shape(x)
	axes, err := d.g.reduceAxes(n, len(xs))
	if err != nil {
		return nil, err
	}
	if len(axes) == 0 {
		return dy[:1], nil
	}
	keep := reducedShape(xs, axes, true)
	g := d.reshape(dy[0], keep)
	yk := y
	if n.int("keepdims", 1) == 0 {
		yk = d.reshape(y, keep)
	}
	cnt := int64(1)
	for _, a := range axes {
		cnt *= xs[a]
	}
	expand := func(s string) string { return d.op("Expand", []string{s, d.ints(xs...)}) }
	switch n.op {
	case "ReduceSum":
		return one1(expand(g)), nil
	case "ReduceMean":
		return one1(expand(d.mul(g, d.scalar(1/float32(cnt))))), nil
	case "ReduceSumSquare":
		return one1(d.mul(d.mul(g, d.scalar(2)), x)), nil
	case "ReduceL2":
		return one1(d.mul(g, d.div(x, yk))), nil
	case "ReduceLogSumExp":
		return one1(d.mul(g, d.op("Exp", []string{d.sub(x, yk)}))), nil
	default: // ReduceMax, ReduceMin: split among ties
		mask := d.op("Cast", []string{d.op("Equal", []string{x, yk})}, onnx.AttrInt("to", int64(onnx.Float)))
		ties := d.reduceSum(mask, axes, true)
		return one1(d.mul(mask, d.div(g, ties))), nil
	}
}
