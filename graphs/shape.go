package graphs

import (
	"fmt"

	"github.com/slatrun/slatrun/onnx"
)

// Shape and data-movement ops: their gradients move dY back to where the
// values came from (Reshape back, inverse Transpose, Split for Concat, Pad
// for Slice, Slice for Pad, scatter-add for gathers). The integer ones fold
// to constants (the shape arithmetic of torch.onnx.export's flatten/view).

func init() {
	register(map[string]opDef{
		"Reshape":         {infer: inferReshape, fold: foldCopy, grad: reshapeGrad},
		"Flatten":         {infer: inferFlatten, fold: foldCopy, grad: reshapeGrad},
		"Squeeze":         {upgrade: axesToInput(13), infer: inferSqueeze, fold: foldCopy, grad: reshapeGrad},
		"Unsqueeze":       {upgrade: axesToInput(13), infer: inferUnsqueeze, fold: foldCopy, grad: reshapeGrad},
		"Transpose":       {infer: inferTranspose, grad: transposeGrad},
		"Concat":          {infer: inferConcat, fold: foldConcat, grad: concatGrad},
		"Split":           {upgrade: upgradeSplit, infer: inferSplit, grad: splitGrad},
		"Slice":           {upgrade: upgradeSlice, infer: inferSlice, fold: foldSlice, grad: sliceGrad},
		"Pad":             {upgrade: upgradePad, infer: inferPad, grad: padGrad},
		"Gather":          {infer: inferGather, fold: foldGather, grad: gatherGrad},
		"GatherElements":  {infer: inferGatherElements, grad: gatherElementsGrad},
		"ScatterElements": {infer: sameShape, grad: scatterElementsGrad},
		"Expand":          {infer: inferExpand, fold: foldExpand, grad: expandGrad},
		"Tile":            {infer: inferTile, grad: tileGrad},
		"Upsample":        {upgrade: refuseUpsample},
	})
}

// upgradeSplit moves the split sizes to input 1 (opset 13) and records the
// number of outputs where it is implicit.
func upgradeSplit(g *fgraph, n *node) error {
	if g.opset < 13 {
		g.attrToInput(n, "split", 1)
	}
	if n.input(1) == "" && n.attr("num_outputs") == nil {
		n.setAttr(onnx.AttrInt("num_outputs", int64(len(n.out))))
	}
	return nil
}

// upgradeSlice moves starts, ends and axes to inputs (opset 10).
func upgradeSlice(g *fgraph, n *node) error {
	if g.opset < 10 {
		g.attrToInput(n, "starts", 1)
		g.attrToInput(n, "ends", 2)
		g.attrToInput(n, "axes", 3)
	}
	return nil
}

// upgradePad moves the pads and the constant value to inputs (opset 11).
func upgradePad(g *fgraph, n *node) error {
	if g.opset < 11 {
		g.attrToInput(n, "pads", 1)
		g.floatAttrToInput(n, "value", 2)
	}
	return nil
}

// refuseUpsample refuses the deprecated Upsample.
func refuseUpsample(g *fgraph, n *node) error {
	return fmt.Errorf("op Upsample (deprecated) is not supported; export with a newer opset (Resize)")
}

func reshapeGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.reshape(dy[0], d.shape(n.in[0]))), nil
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
	return one(d.op("Transpose", dy[:1], onnx.AttrInts("perm", inv...))), nil
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
	return one(d.op("Concat", parts, onnx.AttrInt("axis", ax))), nil
}

// sliceGrad places dY back where the slice took it. A step-s slice
// (s > 1) spreads dY first: each element followed by s − 1 zeros (a
// reshape to [..., m, 1, ...], a Pad of the new axis, a reshape back and a
// Slice to (m − 1)·s + 1); a negative step reverses dY first and is then a
// positive-step slice from its lowest index. One Pad then puts the result
// at its offset. (Strided slices are the weight-gradient form of strided
// convolutions, so second-order graphs differentiate them.)
func sliceGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs, ys := d.shape(n.in[0]), d.shape(n.out[0])
	spec, _, err := d.g.sliceSpec(n, xs)
	if err != nil {
		return nil, err
	}
	r := len(xs)
	g := dy[0]
	cur := clone64(ys)
	pads := make([]int64, 2*r)
	padded := false
	for _, s := range spec {
		ax, m := s.axis, cur[s.axis]
		if m == 0 {
			pads[int64(r)+ax] = xs[ax]
			padded = true
			continue
		}
		lo, step := s.start, s.step
		if step < 0 {
			lo, step = s.start+(m-1)*step, -step
			g = d.op("Slice", []string{g, d.ints(-1), d.ints(int64(-1) << 62), d.ints(ax), d.ints(-1)})
		}
		if step > 1 {
			wide := append(append(clone64(cur[:ax+1]), 1), cur[ax+1:]...)
			g = d.reshape(g, wide)
			sp := make([]int64, 2*(r+1))
			sp[int64(r+1)+ax+1] = step - 1
			g = d.op("Pad", []string{g, d.ints(sp...)})
			next := clone64(cur)
			next[ax] = m * step
			g = d.reshape(g, next)
			span := (m-1)*step + 1
			g = d.op("Slice", []string{g, d.ints(0), d.ints(span), d.ints(ax)})
			next[ax] = span
			cur = next
		}
		pads[ax] = lo
		pads[int64(r)+ax] = xs[ax] - lo - cur[ax]
		padded = padded || lo != 0 || pads[int64(r)+ax] != 0
	}
	if !padded {
		return one(g), nil
	}
	return one(d.op("Pad", []string{g, d.ints(pads...)})), nil
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
	return one(d.op("Slice", []string{dy[0], d.ints(starts...), d.ints(ends...), d.ints(seq(0, r)...)})), nil
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
	return one(dx), nil
}

func gatherElementsGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs := d.shape(n.in[0])
	ax, err := normAxis(n.int("axis", 0), len(xs))
	if err != nil {
		return nil, err
	}
	dx := d.op("ScatterElements", []string{d.zeros(xs), n.in[1], dy[0]}, onnx.AttrInt("axis", ax), onnx.AttrString("reduction", "add"))
	return one(dx), nil
}

// scatterElementsGrad: the updates' gradient gathers dY at the scattered
// positions; the data's is dY with reduction add, and dY with those
// positions zeroed with reduction none (indices unique, as ONNX requires).
// Other reductions have no rule. The MaxPool backward (a scatter-add into
// zeros) is differentiated by it in second-order graphs.
func scatterElementsGrad(d *deriver, n *node, dy []string) ([]string, error) {
	data, idx, upd := n.in[0], n.in[1], n.in[2]
	ax, err := normAxis(n.int("axis", 0), len(d.shape(data)))
	if err != nil {
		return nil, err
	}
	res := make([]string, 3)
	switch red := n.str("reduction", "none"); red {
	case "add":
		if d.wants(data) {
			res[0] = dy[0]
		}
	case "none":
		if d.wants(data) {
			res[0] = d.op("ScatterElements", []string{dy[0], idx, d.zeros(d.shape(upd))}, onnx.AttrInt("axis", ax))
		}
	default:
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: "reduction " + red}
	}
	if d.wants(upd) {
		res[2] = d.op("GatherElements", []string{dy[0], idx}, onnx.AttrInt("axis", ax))
	}
	return res, nil
}

func expandGrad(d *deriver, n *node, dy []string) ([]string, error) {
	return one(d.unbroadcast(dy[0], d.shape(n.out[0]), d.shape(n.in[0]))), nil
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
	return one(d.reduceSum(d.reshape(dy[0], view), axes, false)), nil
}

func reshapeTarget(x, want []int64, allowzero bool) ([]int64, error) {
	out := clone64(want)
	neg := -1
	known := int64(1)
	for i, d := range out {
		switch {
		case d == 0 && !allowzero:
			if i >= len(x) {
				return nil, fmt.Errorf("reshape %v to %v: 0 beyond the input's rank", x, want)
			}
			out[i] = x[i]
			known *= out[i]
		case d == -1:
			if neg >= 0 {
				return nil, fmt.Errorf("reshape to %v: two -1s", want)
			}
			neg = i
		case d < 0 || d > onnx.MaxTensorElements:
			return nil, fmt.Errorf("reshape to %v: bad dimension %d", want, d)
		default:
			known *= d
		}
		if known > onnx.MaxTensorElements {
			return nil, fmt.Errorf("cannot reshape %v to %v", x, want)
		}
	}
	total := onnx.NumElements(x)
	if neg >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", x, want)
		}
		out[neg] = total / known
	}
	if onnx.NumElements(out) != total {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", x, total, want)
	}
	return out, nil
}

func inferReshape(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	want, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	out, err := reshapeTarget(ins[0].shape, want, n.int("allowzero", 0) != 0)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferFlatten(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	ax := n.int("axis", 1)
	if ax < 0 {
		ax += int64(len(x))
	}
	if ax < 0 || ax > int64(len(x)) {
		return nil, fmt.Errorf("axis %d out of range", ax)
	}
	return []*tinfo{{dt: ins[0].dt, shape: []int64{onnx.NumElements(x[:ax]), onnx.NumElements(x[ax:])}}}, nil
}

func transposePerm(n *node, rank int) ([]int64, error) {
	perm := n.ints("perm", nil)
	if perm == nil {
		for i := rank - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != rank {
		return nil, fmt.Errorf("perm %v does not match rank %d", perm, rank)
	}
	seen := make([]bool, rank)
	for _, p := range perm {
		if p < 0 || p >= int64(rank) || seen[p] {
			return nil, fmt.Errorf("perm %v is not a permutation of the %d axes", perm, rank)
		}
		seen[p] = true
	}
	return perm, nil
}

func inferTranspose(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	perm, err := transposePerm(n, len(x))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(x))
	for i, p := range perm {
		out[i] = x[p]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferSqueeze(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	var axes []int64
	if n.input(1) != "" {
		a, err := g.constInts(n.input(1))
		if err != nil {
			return nil, err
		}
		if axes, err = normAxes(a, len(x)); err != nil {
			return nil, err
		}
	} else {
		for i, d := range x {
			if d == 1 {
				axes = append(axes, int64(i))
			}
		}
	}
	var out []int64
	for i, d := range x {
		if contains(axes, int64(i)) {
			if d != 1 {
				return nil, fmt.Errorf("cannot squeeze axis %d of size %d", i, d)
			}
			continue
		}
		out = append(out, d)
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferUnsqueeze(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	a, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	if len(a) > onnx.MaxRank {
		return nil, fmt.Errorf("%d axes to unsqueeze (at most %d)", len(a), onnx.MaxRank)
	}
	r := len(x) + len(a)
	axes, err := normAxes(a, r)
	if err != nil {
		return nil, err
	}
	for i, v := range axes {
		if contains(axes[:i], v) {
			return nil, fmt.Errorf("axes %v repeat axis %d", a, v)
		}
	}
	out := make([]int64, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if contains(axes, int64(i)) {
			out = append(out, 1)
		} else {
			out = append(out, x[j])
			j++
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferConcat(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	var out []int64
	var ax int64
	for i, t := range ins {
		if t == nil {
			continue
		}
		if out == nil {
			var err error
			if ax, err = normAxis(n.int("axis", 0), len(t.shape)); err != nil {
				return nil, err
			}
			out = clone64(t.shape)
			continue
		}
		if len(t.shape) != len(out) {
			return nil, fmt.Errorf("input %d has rank %d, want %d", i, len(t.shape), len(out))
		}
		for j := range out {
			if int64(j) != ax && t.shape[j] != out[j] {
				return nil, fmt.Errorf("input %d has shape %v, which does not match %v off axis %d", i, t.shape, out, ax)
			}
		}
		out[ax] += t.shape[ax]
	}
	if out == nil {
		return nil, fmt.Errorf("no inputs")
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

// splitSizes returns the sizes of a Split node's outputs.
func (g *fgraph) splitSizes(n *node, x []int64) (int64, []int64, error) {
	ax, err := normAxis(n.int("axis", 0), len(x))
	if err != nil {
		return 0, nil, err
	}
	if n.input(1) != "" {
		s, err := g.constInts(n.input(1))
		if err != nil {
			return 0, nil, err
		}
		sum := int64(0)
		for _, v := range s {
			if v < 0 || v > x[ax] {
				return 0, nil, fmt.Errorf("split sizes %v do not add up to %d", s, x[ax])
			}
			sum += v
		}
		if sum != x[ax] {
			return 0, nil, fmt.Errorf("split sizes %v do not add up to %d", s, x[ax])
		}
		return ax, s, nil
	}
	k := int64(len(n.out))
	if a := n.attr("num_outputs"); a != nil {
		k = a.GetI()
	}
	if k < 1 || k > onnx.MaxNodeArity {
		return 0, nil, fmt.Errorf("num_outputs %d", k)
	}
	size := (x[ax] + k - 1) / k
	var s []int64
	left := x[ax]
	for i := int64(0); i < k; i++ {
		v := size
		if left < v {
			v = left
		}
		s = append(s, v)
		left -= v
	}
	return ax, s, nil
}

func inferSplit(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	ax, sizes, err := g.splitSizes(n, ins[0].shape)
	if err != nil {
		return nil, err
	}
	if len(sizes) != len(n.out) {
		return nil, fmt.Errorf("Split into %d parts has %d outputs", len(sizes), len(n.out))
	}
	var outs []*tinfo
	for _, s := range sizes {
		sh := clone64(ins[0].shape)
		sh[ax] = s
		outs = append(outs, &tinfo{dt: ins[0].dt, shape: sh})
	}
	return outs, nil
}

// sliceAxis is what a Slice takes of one axis: start, end (exclusive) and
// step, clamped like ONNX does.
type sliceAxis struct{ axis, start, end, step int64 }

// sliceSpec resolves a Slice node of an input of shape x into its axes,
// and returns the output shape.
func (g *fgraph) sliceSpec(n *node, x []int64) ([]sliceAxis, []int64, error) {
	starts, err := g.constInts(n.input(1))
	if err != nil {
		return nil, nil, err
	}
	ends, err := g.constInts(n.input(2))
	if err != nil {
		return nil, nil, err
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if n.input(3) != "" {
		if axes, err = g.constInts(n.input(3)); err != nil {
			return nil, nil, err
		}
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if n.input(4) != "" {
		if steps, err = g.constInts(n.input(4)); err != nil {
			return nil, nil, err
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, nil, fmt.Errorf("starts/ends/axes/steps lengths differ")
	}
	if len(starts) > onnx.MaxRank {
		return nil, nil, fmt.Errorf("%d axes to slice (at most %d)", len(starts), onnx.MaxRank)
	}
	out := clone64(x)
	var spec []sliceAxis
	for i := range starts {
		ax, err := normAxis(axes[i], len(x))
		if err != nil {
			return nil, nil, err
		}
		d, st, en, sp := x[ax], starts[i], ends[i], steps[i]
		if sp == 0 {
			return nil, nil, fmt.Errorf("slice step 0")
		}
		// A step longer than the axis selects what a step of the axis'
		// length selects; clamping keeps the arithmetic below in range.
		if lim := max(d, 1); sp > lim {
			sp = lim
		} else if sp < -lim {
			sp = -lim
		}
		if d == 0 {
			out[ax] = 0
			spec = append(spec, sliceAxis{ax, 0, 0, sp})
			continue
		}
		if st < 0 {
			st += d
		}
		if en < 0 {
			en += d
		}
		if sp > 0 {
			st = clamp(st, 0, d)
			en = clamp(en, 0, d)
			out[ax] = 0
			if en > st {
				out[ax] = (en - st + sp - 1) / sp
			}
		} else {
			st = clamp(st, 0, d-1)
			en = clamp(en, -1, d-1)
			out[ax] = 0
			if st > en {
				out[ax] = (st - en - sp - 1) / -sp
			}
		}
		spec = append(spec, sliceAxis{ax, st, en, sp})
	}
	return spec, out, nil
}

func inferSlice(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	_, out, err := g.sliceSpec(n, ins[0].shape)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

// padSpec returns the full begin/end pads of a Pad node for a rank-r input.
func (g *fgraph) padSpec(n *node, r int) ([]int64, error) {
	p, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	axes := make([]int64, r)
	for i := range axes {
		axes[i] = int64(i)
	}
	if n.input(3) != "" {
		a, err := g.constInts(n.input(3))
		if err != nil {
			return nil, err
		}
		if axes, err = normAxes(a, r); err != nil {
			return nil, err
		}
	}
	if len(p) != 2*len(axes) {
		return nil, fmt.Errorf("pads %v do not match %d axes", p, len(axes))
	}
	for _, v := range p {
		if v < -onnx.MaxTensorElements || v > onnx.MaxTensorElements {
			return nil, fmt.Errorf("pad %d is out of range", v)
		}
	}
	full := make([]int64, 2*r)
	for i, a := range axes {
		full[a] = p[i]
		full[int64(r)+a] = p[len(axes)+i]
	}
	return full, nil
}

func inferPad(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	p, err := g.padSpec(n, len(x))
	if err != nil {
		return nil, err
	}
	out := clone64(x)
	for i := range out {
		out[i] += p[i] + p[i+len(x)]
		if out[i] < 0 {
			return nil, fmt.Errorf("pads %v crop more than the input %v holds", p, x)
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferGather(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	ax, err := normAxis(n.int("axis", 0), len(x))
	if err != nil {
		return nil, err
	}
	out := append(clone64(x[:ax]), ins[1].shape...)
	out = append(out, x[ax+1:]...)
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferExpand(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	s, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	if _, err := onnx.Elements(s); err != nil {
		return nil, fmt.Errorf("Expand to %v: %w", s, err)
	}
	out, err := broadcast(ins[0].shape, s)
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferTile(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	rep, err := g.constInts(n.input(1))
	if err != nil {
		return nil, err
	}
	if len(rep) != len(ins[0].shape) {
		return nil, fmt.Errorf("repeats %v do not match rank %d", rep, len(ins[0].shape))
	}
	out := clone64(ins[0].shape)
	for i := range out {
		if rep[i] < 0 || rep[i] > onnx.MaxTensorElements {
			return nil, fmt.Errorf("repeats %v out of range", rep)
		}
		out[i] *= rep[i]
	}
	return []*tinfo{{dt: ins[0].dt, shape: out}}, nil
}

func inferGatherElements(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	if len(ins[0].shape) != len(ins[1].shape) || len(ins[0].shape) == 0 {
		return nil, fmt.Errorf("GatherElements of %v by indices %v: ranks differ", ins[0].shape, ins[1].shape)
	}
	return []*tinfo{{dt: ins[0].dt, shape: clone64(ins[1].shape)}}, nil
}

// foldGather gathers from a 1-D constant.
func foldGather(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	x := ins[0]
	idx := values(ins[1])
	if len(x.shape) != 1 {
		return nil, false
	}
	v := values(x)
	r := make([]float64, len(idx))
	for i, j := range idx {
		k := int64(j)
		if k < 0 {
			k += x.shape[0]
		}
		if k < 0 || k >= x.shape[0] {
			return nil, false
		}
		r[i] = v[k]
	}
	return r, true
}

// foldConcat concatenates 1-D constants.
func foldConcat(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	if len(out.shape) != 1 {
		return nil, false
	}
	var r []float64
	for _, t := range ins {
		if t != nil {
			r = append(r, values(t)...)
		}
	}
	return r, true
}

// foldSlice slices a 1-D constant.
func foldSlice(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	x := ins[0]
	if len(x.shape) != 1 {
		return nil, false
	}
	spec, _, err := g.sliceSpec(n, x.shape)
	if err != nil || len(spec) != 1 {
		return nil, false
	}
	v := values(x)
	var r []float64
	s := spec[0]
	for i := s.start; (s.step > 0 && i < s.end) || (s.step < 0 && i > s.end); i += s.step {
		r = append(r, v[i])
	}
	return r, true
}

// foldExpand expands a scalar or 1-D constant to a 1-D one.
func foldExpand(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool) {
	x := ins[0]
	if len(x.shape) > 1 || len(out.shape) != 1 || x.numel() == 0 {
		return nil, false
	}
	v := values(x)
	r := make([]float64, out.shape[0])
	for i := range r {
		r[i] = v[int64(i)%int64(len(v))]
	}
	return r, true
}
