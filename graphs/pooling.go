package graphs

import (
	"fmt"

	"github.com/slatrun/slatrun/onnx"
)

// Pooling. MaxPool with non-overlapping windows (kernel = stride, no
// padding, exact tiling) routes the gradient by comparing the input with the
// pooled value through a reshape (no Indices, no scatter); overlapping
// windows use the forward's Indices output and a ScatterElements add.
// AveragePool with kernel = stride tiles dY with Expand; otherwise a
// depthwise ConvTranspose with a ones kernel spreads dY divided by each
// window's element count (computed here, so count_include_pad and borders
// are exact).

func init() {
	register(map[string]opDef{
		"MaxPool":           {infer: inferPool, grad: maxPoolGrad, forward: maxPoolForward},
		"AveragePool":       {infer: inferPool, grad: avgPoolGrad},
		"GlobalAveragePool": {infer: inferGlobalPool, grad: globalAvgPoolGrad},
		"GlobalMaxPool":     {infer: inferGlobalPool, grad: globalMaxPoolGrad},
	})
}

// tiles reports whether a pool node's windows tile its 2-D input exactly
// (kernel = stride, no padding, no dilation).
func tiles(n *node, xs []int64) bool {
	k := n.ints("kernel_shape", nil)
	if len(k) != 2 || len(xs) != 4 {
		return false
	}
	cg := geom(n, k)
	for i := 0; i < 2; i++ {
		if cg.s[i] != k[i] || cg.dil[i] != 1 || cg.p[i] != 0 || cg.p[i+2] != 0 || xs[2+i]%k[i] != 0 {
			return false
		}
	}
	return true
}

func maxPoolForward(d *deriver, n *node) error {
	if !d.wants(n.in[0]) || tiles(n, d.shape(n.in[0])) {
		d.copyNode(n)
		return nil
	}
	out := n.out
	idx := ""
	if len(out) > 1 && out[1] != "" {
		idx = out[1]
	} else {
		idx = d.b.Fresh(n.out[0] + ".indices")
		out = []string{n.out[0], idx}
	}
	d.b.Node("MaxPool", n.in, out, n.attrs...)
	d.saved[n] = map[string]string{"indices": idx}
	return nil
}

func maxPoolGrad(d *deriver, n *node, dy []string) ([]string, error) {
	if dy[0] == "" {
		return nil, nil
	}
	x, y := n.in[0], n.out[0]
	xs, ys := d.shape(x), d.shape(y)
	if tiles(n, xs) {
		k := n.ints("kernel_shape", nil)
		six := []int64{xs[0], xs[1], ys[2], k[0], ys[3], k[1]}
		cells := []int64{xs[0], xs[1], ys[2], 1, ys[3], 1}
		mask := d.op("Equal", []string{d.reshape(x, six), d.reshape(y, cells)})
		dx := d.op("Where", []string{mask, d.reshape(dy[0], cells), d.scalar(0)})
		return one(d.reshape(dx, xs)), nil
	}
	idx := d.saved[n]["indices"]
	total := onnx.NumElements(xs)
	flat := d.op("ScatterElements", []string{d.zeros([]int64{total}), d.reshape(idx, []int64{-1}), d.reshape(dy[0], []int64{-1})},
		onnx.AttrInt("axis", 0), onnx.AttrString("reduction", "add"))
	return one(d.reshape(flat, xs)), nil
}

// windowCounts returns, per output position, the number of elements a pool
// window averages over: elements inside [0, in) or, with count_include_pad,
// inside [−pb, in + pe).
func windowCounts(in, out, k, s, pb, pe int64, includePad bool) []float32 {
	lo, hi := int64(0), in
	if includePad {
		lo, hi = -pb, in+pe
	}
	c := make([]float32, out)
	for o := range c {
		st := int64(o)*s - pb
		en := st + k
		if st < lo {
			st = lo
		}
		if en > hi {
			en = hi
		}
		if en > st {
			c[o] = float32(en - st)
		}
	}
	return c
}

// maxPoolPositions bounds the output positions per channel of an
// overlapping average pool: their window counts are a constant built in Go.
const maxPoolPositions = 1 << 22

func avgPoolGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x := n.in[0]
	xs, ys := d.shape(x), d.shape(n.out[0])
	k := n.ints("kernel_shape", nil)
	cg := geom(n, k)
	r := cg.r
	if tiles(n, xs) {
		six := []int64{xs[0], xs[1], ys[2], k[0], ys[3], k[1]}
		cells := []int64{xs[0], xs[1], ys[2], 1, ys[3], 1}
		g := d.mul(d.reshape(dy[0], cells), d.scalar(1/float32(k[0]*k[1])))
		return one(d.reshape(d.op("Expand", []string{g, d.ints(six...)}), xs)), nil
	}
	include := n.int("count_include_pad", 0) != 0
	if positions := onnx.NumElements(ys[2:]); positions > maxPoolPositions {
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: fmt.Sprintf("%d output positions per channel; slatrun differentiates average pools with at most %d", positions, maxPoolPositions)}
	}
	// counts [1,1,out...] as the outer product of per-axis counts
	counts := []float32{1}
	for i := 0; i < r; i++ {
		ci := windowCounts(xs[2+i], ys[2+i], k[i], cg.s[i], cg.p[i], cg.p[i+r], include)
		next := make([]float32, 0, len(counts)*len(ci))
		for _, a := range counts {
			for _, b := range ci {
				next = append(next, a*b)
			}
		}
		counts = next
	}
	inv := make([]float32, len(counts))
	for i, c := range counts {
		if c > 0 {
			inv[i] = 1 / c
		}
	}
	scaled := d.mul(dy[0], d.floats("pool_inv_counts", append([]int64{1, 1}, ys[2:]...), inv))
	C := xs[1]
	ws := append([]int64{C, 1}, k...)
	if _, err := onnx.Elements(ws); err != nil {
		return nil, &UnsupportedOpError{Node: n.name, Op: n.op, Detail: fmt.Sprintf("kernel %v over %d channels: %v", k, C, err)}
	}
	w := d.op("ConstantOfShape", []string{d.ints(ws...)}, onnx.AttrTensor("value", onnx.FloatTensor("value", []int64{1}, []float32{1})))
	pads := append([]int64(nil), cg.p...)
	op := make([]int64, r)
	for i := 0; i < r; i++ {
		op[i] = xs[2+i] - (cg.s[i]*(ys[2+i]-1) + k[i] - pads[i] - pads[i+r])
		if op[i] < 0 { // ceil_mode windows past the end: crop them
			pads[i+r] -= op[i]
			op[i] = 0
		}
	}
	dx := d.op("ConvTranspose", []string{scaled, w},
		onnx.AttrInts("kernel_shape", k...), onnx.AttrInts("strides", cg.s...),
		onnx.AttrInts("pads", pads...), onnx.AttrInt("group", C), onnx.AttrInts("output_padding", op...))
	return one(dx), nil
}

func globalAvgPoolGrad(d *deriver, n *node, dy []string) ([]string, error) {
	xs := d.shape(n.in[0])
	hw := onnx.NumElements(xs[2:])
	// dY [N, C, 1, …] times a [1, 1, H, …] constant 1/hw: a broadcasting Mul
	// that ONNX Runtime runs in parallel, where Expand ran single-threaded.
	shape := append([]int64{1, 1}, xs[2:]...)
	w := make([]float32, hw)
	for i := range w {
		w[i] = 1 / float32(hw)
	}
	return one(d.mul(dy[0], d.floats("gap_grad", shape, w))), nil
}

func globalMaxPoolGrad(d *deriver, n *node, dy []string) ([]string, error) {
	mask := d.op("Equal", []string{n.in[0], n.out[0]})
	return one(d.op("Where", []string{mask, dy[0], d.scalar(0)})), nil
}

func inferPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := ins[0].shape
	k := n.ints("kernel_shape", nil)
	if len(x) < 3 || len(k) != len(x)-2 {
		return nil, fmt.Errorf("kernel_shape %v does not match input %v", k, x)
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	if n.op == "AveragePool" {
		n.delAttr("dilations") // not an AveragePool attribute before opset 19
		for _, v := range d {
			if v != 1 {
				return nil, fmt.Errorf("AveragePool with dilations is not supported")
			}
		}
	}
	ceil := n.int("ceil_mode", 0) != 0
	r := len(k)
	out := []int64{x[0], x[1]}
	for i := 0; i < r; i++ {
		num := x[2+i] + p[i] + p[i+r] - d[i]*(k[i]-1) - 1
		if num < 0 {
			return nil, fmt.Errorf("the kernel %v is larger than the padded input along spatial axis %d", k, i)
		}
		o := num/s[i] + 1
		if ceil {
			o = (num+s[i]-1)/s[i] + 1
			// the last window must start inside the input or left padding
			if (o-1)*s[i] >= x[2+i]+p[i] {
				o--
			}
		}
		if o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	t := &tinfo{dt: ins[0].dt, shape: out}
	return []*tinfo{t, {dt: onnx.Int64, shape: clone64(out)}}, nil
}

func inferGlobalPool(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	x := clone64(ins[0].shape)
	if len(x) < 3 {
		return nil, fmt.Errorf("%s needs an input [N, C, spatial...], got %v", n.op, x)
	}
	for i := 2; i < len(x); i++ {
		x[i] = 1
	}
	return []*tinfo{{dt: ins[0].dt, shape: x}}, nil
}
