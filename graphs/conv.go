package graphs

import (
	"fmt"
	"slices"

	"github.com/slatrun/slatrun/onnx"
)

// Convolutions. Conv's backward uses ConvTranspose (or, stride 1, an NCHWc
// Conv) for dX, or with Spec.Kernels slatrun's oneDNN ConvGradInput kernel
// where it measured faster (kernelInputGradOK), and, for dW of a group-1
// Conv, one Gemm per kernel offset (convWeightGradGemm), or with
// Spec.Kernels slatrun's oneDNN ConvGradWeight kernel (2-D); grouped
// Convs and ConvTranspose's dW use a Conv of the transposed input by the
// transposed output gradient with the forward strides and dilations
// swapped. dW[m, c, k] = Σ_n,o x[n, c, o·s + k·d − p]·dY[n, m, o] is a
// convolution of x with dY as its kernel in which the kernel offset k
// plays the output position (so it steps by the forward dilation d, the
// new stride) and the output position o plays the kernel tap (spread by
// the forward stride s, the new dilation). Without the swap dW is silently
// wrong whenever stride ≠ dilation. docs/onnx-notes.md lists this and the
// other ONNX Runtime facts the rules rely on.

func init() {
	register(map[string]opDef{
		"Conv":          {infer: inferConv, grad: convGrad, forward: convForward},
		"ConvTranspose": {infer: inferConvTranspose, grad: convTransposeGrad},
	})
}

// convGeom is the normalized geometry of a Conv/ConvTranspose/pool node.
type convGeom struct {
	r            int
	k, s, dil, p []int64
	group        int64
}

func geom(n *node, k []int64) convGeom {
	r := len(k)
	g := convGeom{r: r, k: k, group: n.int("group", 1)}
	ones := make([]int64, r)
	for i := range ones {
		ones[i] = 1
	}
	g.s = n.ints("strides", ones)
	g.dil = n.ints("dilations", ones)
	g.p = n.ints("pads", make([]int64, 2*r))
	return g
}

func seq(from, to int) []int64 {
	var a []int64
	for i := from; i < to; i++ {
		a = append(a, int64(i))
	}
	return a
}

// swap01 is the permutation exchanging the first two axes of a rank-r tensor.
func swap01(r int) []int64 { return append([]int64{1, 0}, seq(2, r)...) }

// convWeightGrad computes Σ_n,o in[n, c, o·s + k·dil − p] · g[n, m, o] for
// every (m, c, k), i.e. a Conv weight gradient with in the (unpadded) input
// [N, C, ...] and g the gradient of the output [N, M, ...], group 1..G.
// Returns a [M, C/G, k...] tensor.
func (d *deriver) convWeightGrad(in string, inShape []int64, g string, gShape []int64, cg convGeom) string {
	r, G := cg.r, cg.group
	N, C := inShape[0], inShape[1]
	var xt string
	if G == 1 {
		xt = d.op("Transpose", []string{in}, onnx.AttrInts("perm", swap01(r+2)...))
	} else {
		Cg := C / G
		five := append([]int64{N, G, Cg}, inShape[2:]...)
		perm := append([]int64{2, 1, 0}, seq(3, r+3)...)
		t := d.op("Transpose", []string{d.reshape(in, five)}, onnx.AttrInts("perm", perm...))
		xt = d.reshape(t, append([]int64{Cg, G * N}, inShape[2:]...))
	}
	gt := d.op("Transpose", []string{g}, onnx.AttrInts("perm", swap01(r+2)...))
	full := make([]int64, r)
	need := false
	for i := 0; i < r; i++ {
		full[i] = (inShape[2+i]+cg.p[i]+cg.p[i+r]-cg.s[i]*(gShape[2+i]-1)-1)/cg.dil[i] + 1
		need = need || full[i] != cg.k[i]
	}
	c := d.op("Conv", []string{xt, gt},
		onnx.AttrInts("kernel_shape", gShape[2:]...),
		onnx.AttrInts("strides", cg.dil...), onnx.AttrInts("dilations", cg.s...),
		onnx.AttrInts("pads", cg.p...), onnx.AttrInt("group", G))
	if need {
		c = d.op("Slice", []string{c, d.ints(make([]int64, r)...), d.ints(cg.k...), d.ints(seq(2, r+2)...)})
	}
	return d.op("Transpose", []string{c}, onnx.AttrInts("perm", swap01(r+2)...))
}

// convWeightGradGemm computes the weight gradient of a group-1 Conv as one
// Gemm per kernel offset k:
//
//	dW[:, :, k] = dYᵀ · S_k,   dYᵀ [M, N·O], S_k [C, N·O]
//
// where S_k is the padded input, channels first ([C, N, H, W]), sliced at
// offset k·dil with step s: exactly the input values that kernel tap k
// multiplies into each output position. Unlike the Conv of the transposed
// tensors (convWeightGrad), whose "kernel" is the whole output map and whose
// im2col buffer has one tiny row per (n, c, position), every Gemm here has a
// long reduction over N·O, no strided positions are wasted (the dilated
// Conv computes a (k−1)·s+1 window and slices it), and the only large copies
// are one transpose of x and of dY and the slices.
func (d *deriver) convWeightGradGemm(in string, inShape []int64, g string, gShape []int64, cg convGeom) string {
	r := cg.r
	N, C, M := inShape[0], inShape[1], gShape[1]
	O := onnx.NumElements(gShape[2:])
	xt := d.op("Transpose", []string{in}, onnx.AttrInts("perm", swap01(r+2)...)) // [C, N, ...]
	padded := false
	for _, p := range cg.p {
		padded = padded || p != 0
	}
	ext := clone64(inShape[2:])
	if padded {
		pads := make([]int64, 2*(r+2))
		for i := 0; i < r; i++ {
			pads[2+i], pads[r+4+i] = cg.p[i], cg.p[r+i]
			ext[i] += cg.p[i] + cg.p[r+i]
		}
		xt = d.op("Pad", []string{xt, d.ints(pads...)})
	}
	gt := d.reshape(d.op("Transpose", []string{g}, onnx.AttrInts("perm", swap01(r+2)...)), []int64{M, N * O})
	axes := seq(2, r+2)
	var parts []string
	k := make([]int64, r) // the kernel offset, last axis fastest
	for {
		starts, ends := make([]int64, r), make([]int64, r)
		whole := true
		for i := 0; i < r; i++ {
			starts[i] = k[i] * cg.dil[i]
			ends[i] = starts[i] + cg.s[i]*(gShape[2+i]-1) + 1
			whole = whole && starts[i] == 0 && ends[i] == ext[i] && cg.s[i] == 1
		}
		sl := xt
		if !whole {
			sl = d.op("Slice", []string{xt, d.ints(starts...), d.ints(ends...), d.ints(axes...), d.ints(cg.s...)})
		}
		gk := d.op("Gemm", []string{gt, d.reshape(sl, []int64{C, N * O})}, onnx.AttrInt("transB", 1)) // [M, C]
		parts = append(parts, gk)
		i := r - 1
		for ; i >= 0; i-- {
			if k[i]++; k[i] < cg.k[i] {
				break
			}
			k[i] = 0
		}
		if i < 0 {
			break
		}
	}
	kn := int64(len(parts))
	if kn == 1 {
		return d.reshape(parts[0], append([]int64{M, C}, cg.k...))
	}
	// [K, M, C] → [M, C, K] → [M, C, k...]
	stacked := d.op("Concat", parts, onnx.AttrInt("axis", 0))
	t := d.op("Transpose", []string{d.reshape(stacked, []int64{kn, M, C})}, onnx.AttrInts("perm", 1, 2, 0))
	return d.reshape(t, append([]int64{M, C}, cg.k...))
}

// maxGemmTaps bounds the kernel offsets of convWeightGradGemm (one Gemm
// each); convolutions with larger kernels use convWeightGrad.
const maxGemmTaps = 1024

func convGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, w, b := n.in[0], n.in[1], n.input(2)
	xs, ws, ys := d.shape(x), d.shape(w), d.shape(n.out[0])
	cg := geom(n, ws[2:])
	r := cg.r
	res := make([]string, 3)
	if d.wants(x) && d.pointwiseGradOK(n, cg) {
		// X's one other gradient contribution, if any, is added inside
		in := []string{dy[0], w}
		if acc := d.takeGrad(x); acc != "" {
			in = append(in, acc)
		}
		res[0] = d.b.OpIn(onnx.KernelDomain, onnx.Conv1x1GradInput, in,
			onnx.AttrInts("strides", cg.s...), onnx.AttrInts("input_shape", xs[2:]...))
	}
	if res[0] == "" && d.wants(x) && d.kernelInputGradOK(n, cg, xs, ws) {
		res[0] = d.b.OpIn(onnx.KernelDomain, onnx.ConvGradInput, []string{dy[0], w},
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
			onnx.AttrInts("dilations", cg.dil...), onnx.AttrInts("pads", cg.p...),
			onnx.AttrInts("input_shape", xs[2:]...))
	}
	if res[0] == "" && d.wants(x) && d.narrowOK(n, cg, xs) {
		res[0] = d.b.OpIn(onnx.KernelDomain, onnx.ConvGradInputNarrow, []string{dy[0], w},
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
			onnx.AttrInts("pads", cg.p...), onnx.AttrInts("input_shape", xs[2:]...))
	}
	if res[0] == "" && d.wants(x) {
		res[0] = d.nchwcInputGrad(n, dy[0], w, xs, ws, cg)
	}
	if res[0] == "" && d.wants(x) {
		op := make([]int64, r)
		for i := 0; i < r; i++ {
			op[i] = xs[2+i] - (cg.s[i]*(ys[2+i]-1) + (cg.k[i]-1)*cg.dil[i] + 1 - cg.p[i] - cg.p[i+r])
		}
		res[0] = d.op("ConvTranspose", []string{dy[0], w},
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
			onnx.AttrInts("dilations", cg.dil...), onnx.AttrInts("pads", cg.p...),
			onnx.AttrInt("group", cg.group), onnx.AttrInts("output_padding", op...))
	}
	if d.wants(w) {
		switch {
		case d.kernelOK(n, cg):
			// (its optional dB output is left unused: the ReduceSum
			// below gives the bias gradient exactly as the plain graphs do)
			res[1] = d.b.OpIn(onnx.KernelDomain, onnx.ConvGradWeight, []string{x, dy[0]},
				onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
				onnx.AttrInts("dilations", cg.dil...), onnx.AttrInts("pads", cg.p...))
		case cg.group == 1 && onnx.NumElements(cg.k) <= maxGemmTaps:
			res[1] = d.convWeightGradGemm(x, xs, dy[0], ys, cg)
		default:
			res[1] = d.convWeightGrad(x, xs, dy[0], ys, cg)
		}
	}
	if d.wants(b) {
		res[2] = d.reduceSum(dy[0], append([]int64{0}, seq(2, r+2)...), false)
	}
	return res, nil
}

// convTransposeGrad: dX = Conv(dY, W) with the same geometry; dW by the
// weight-gradient Conv with the roles of X and dY exchanged.
func convTransposeGrad(d *deriver, n *node, dy []string) ([]string, error) {
	x, w, b := n.in[0], n.in[1], n.input(2)
	xs, ws, ys := d.shape(x), d.shape(w), d.shape(n.out[0])
	cg := geom(n, ws[2:])
	r := cg.r
	res := make([]string, 3)
	if d.wants(x) {
		res[0] = d.op("Conv", []string{dy[0], w},
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
			onnx.AttrInts("dilations", cg.dil...), onnx.AttrInts("pads", cg.p...),
			onnx.AttrInt("group", cg.group))
	}
	if d.wants(w) {
		// Σ_n,i x[n,ci,i]·dY[n,co,i·s + k·dil − p]: a weight gradient of
		// "dY as input, X as output gradient" giving [Cin, Cout, k]; a
		// grouped ConvTranspose (the input gradient of a grouped Conv,
		// differentiated in second-order graphs) takes it group by group
		// from channel slices and concatenates along Cin.
		if cg.group == 1 {
			res[1] = d.convWeightGradT(dy[0], ys, x, xs, cg)
		} else {
			res[1] = d.groupedConvWeightGradT(dy[0], ys, x, xs, cg)
		}
	}
	if d.wants(b) {
		res[2] = d.reduceSum(dy[0], append([]int64{0}, seq(2, r+2)...), false)
	}
	return res, nil
}

// groupedConvWeightGradT is convWeightGradT for a ConvTranspose of G
// groups: W [Cin, Cout/G, k], group i maps input channels
// [i·Cin/G, (i+1)·Cin/G) to output channels [i·Cout/G, (i+1)·Cout/G).
func (d *deriver) groupedConvWeightGradT(g string, gShape []int64, x string, xShape []int64, cg convGeom) string {
	G := cg.group
	ci, co := xShape[1]/G, gShape[1]/G
	one := cg
	one.group = 1
	parts := make([]string, G)
	for i := int64(0); i < G; i++ {
		xi := d.op("Slice", []string{x, d.ints(i * ci), d.ints((i + 1) * ci), d.ints(1)})
		gi := d.op("Slice", []string{g, d.ints(i * co), d.ints((i + 1) * co), d.ints(1)})
		xsi, gsi := clone64(xShape), clone64(gShape)
		xsi[1], gsi[1] = ci, co
		parts[i] = d.convWeightGradT(gi, gsi, xi, xsi, one)
	}
	if G == 1 {
		return parts[0]
	}
	return d.op("Concat", parts, onnx.AttrInt("axis", 0))
}

// convWeightGradT computes W'[ci, co, k] = Σ_n,i x[n,ci,i]·g[n,co,i·s+k·dil−p]
// (ConvTranspose weight gradient, group 1) with g [N, Cout, ...] and x
// [N, Cin, ...].
func (d *deriver) convWeightGradT(g string, gShape []int64, x string, xShape []int64, cg convGeom) string {
	r := cg.r
	gt := d.op("Transpose", []string{g}, onnx.AttrInts("perm", swap01(r+2)...)) // [Cout, N, ...]
	xt := d.op("Transpose", []string{x}, onnx.AttrInts("perm", swap01(r+2)...)) // [Cin, N, ...]
	full := make([]int64, r)
	need := false
	for i := 0; i < r; i++ {
		full[i] = (gShape[2+i]+cg.p[i]+cg.p[i+r]-cg.s[i]*(xShape[2+i]-1)-1)/cg.dil[i] + 1
		need = need || full[i] != cg.k[i]
	}
	c := d.op("Conv", []string{gt, xt}, // [Cout, Cin, k']
		onnx.AttrInts("kernel_shape", xShape[2:]...),
		onnx.AttrInts("strides", cg.dil...), onnx.AttrInts("dilations", cg.s...),
		onnx.AttrInts("pads", cg.p...))
	if need {
		c = d.op("Slice", []string{c, d.ints(make([]int64, r)...), d.ints(cg.k...), d.ints(seq(2, r+2)...)})
	}
	return d.op("Transpose", []string{c}, onnx.AttrInts("perm", swap01(r+2)...))
}

// NCHWc convolutions. ONNX Runtime's CPU provider has blocked-layout
// ("NCHWc") convolution kernels, which its optimizer uses only for Convs
// with constant weights; the training graphs take the weights as inputs, so
// with Spec.NCHWcBlock set the deriver emits the blocked form itself:
// ReorderInput → com.microsoft.nchwc Conv → ReorderOutput, with the weight
// reordered in the graph. On the convnet's 28×28×16 layers this runs a
// convolution about 1.7× faster than the plain Conv with runtime weights.

// kernelOK reports whether the weight gradient of Conv node n runs in
// slatrun's ConvGradWeight kernel (Spec.Kernels; 2-D, group 1, explicit
// pads).
func (d *deriver) kernelOK(n *node, cg convGeom) bool {
	if !d.spec.Kernels || cg.r != 2 || cg.group != 1 {
		return false
	}
	ap := n.str("auto_pad", "NOTSET")
	return ap == "NOTSET" || ap == ""
}

// pointwiseGradOK reports whether the input gradient of Conv node n runs in
// slatrun's Conv1x1GradInput kernel: as kernelOK, a 1×1 kernel, no pads and
// a stride above 1 (the residual shortcuts), where ONNX Runtime's
// ConvTranspose ran single-threaded and slower than the convolution.
func (d *deriver) pointwiseGradOK(n *node, cg convGeom) bool {
	if !d.kernelOK(n, cg) || cg.k[0] != 1 || cg.k[1] != 1 || cg.s[0]*cg.s[1] == 1 {
		return false
	}
	for _, p := range cg.p {
		if p != 0 {
			return false
		}
	}
	return true
}

// kernelInputGradOK reports whether the input gradient of Conv node n runs
// in slatrun's ConvGradInput kernel: only where oneDNN measured faster than
// the NCHWc Conv and ConvTranspose forms (docs/kernels.md, "Speed"): as
// kernelOK, with dilation 1, a kernel larger than 1×1 (1×1 strided ones
// were faster or slower by shape) and both channel counts multiples of 16
// (the stems, with 1 or 3 input channels, were 2–20× slower in oneDNN).
func (d *deriver) kernelInputGradOK(n *node, cg convGeom, xs, ws []int64) bool {
	if !d.kernelOK(n, cg) || cg.dil[0] != 1 || cg.dil[1] != 1 || cg.k[0]*cg.k[1] == 1 {
		return false
	}
	return xs[1]%16 == 0 && ws[0]%16 == 0
}

// narrowOK reports whether Conv node n runs in slatrun's ConvNarrow kernel
// and its input gradient in ConvGradInputNarrow: as kernelOK, dilation 1
// and at most maxNarrowChannels input channels (the stems), where oneDNN
// was slower than ONNX Runtime's Conv and ConvTranspose, and those ran
// single-threaded.
func (d *deriver) narrowOK(n *node, cg convGeom, xs []int64) bool {
	return d.kernelOK(n, cg) && cg.dil[0] == 1 && cg.dil[1] == 1 && xs[1] <= maxNarrowChannels
}

// maxNarrowChannels bounds the input channels of the narrow kernels'
// convolutions: grayscale and colour stems.
const maxNarrowChannels = 4

// nchwcOK reports whether a 2-D, group-1 convolution from c to m channels
// can run in the NCHWc kernels.
func (d *deriver) nchwcOK(n *node, c, m int64, cg convGeom) bool {
	B := int64(d.spec.NCHWcBlock)
	if B <= 0 || cg.r != 2 || cg.group != 1 || c%B != 0 || m%B != 0 {
		return false
	}
	ap := n.str("auto_pad", "NOTSET")
	return ap == "NOTSET" || ap == ""
}

// nchwcWeight reorders w [M, C, kh, kw] into the OIHWBiBo layout of the
// NCHWc Conv kernel ([M/B, C/B, kh, kw, Bi, Bo] in memory), keeping the
// 4-D shape the kernel checks.
func (d *deriver) nchwcWeight(w string, ws []int64) string {
	B := int64(d.spec.NCHWcBlock)
	M, C, kh, kw := ws[0], ws[1], ws[2], ws[3]
	r := d.reshape(w, []int64{M / B, B, C / B, B, kh, kw})
	t := d.op("Transpose", []string{r}, onnx.AttrInts("perm", 0, 2, 4, 5, 3, 1))
	return d.reshape(t, ws)
}

// nchwcConv emits out = Conv(x, w[, bias]) (2-D, group 1) through the NCHWc
// kernels; wb is w already reordered by nchwcWeight and m its output
// channel count. out "" gives a fresh name.
func (d *deriver) nchwcConv(x, wb, bias string, m int64, k, s, dil, pads []int64, out string) string {
	key := "nchwc in " + x // a tensor feeding several convolutions is reordered once
	xc, ok := d.cache[key]
	if !ok {
		xc = d.b.OpIn(onnx.NCHWcDomain, "ReorderInput", []string{x})
		d.cache[key] = xc
	}
	in := []string{xc, wb}
	if bias != "" {
		in = append(in, bias)
	}
	y := d.b.OpIn(onnx.NCHWcDomain, "Conv", in,
		onnx.AttrInts("kernel_shape", k...), onnx.AttrInts("strides", s...),
		onnx.AttrInts("dilations", dil...), onnx.AttrInts("pads", pads...))
	if out == "" {
		return d.b.OpIn(onnx.NCHWcDomain, "ReorderOutput", []string{y}, onnx.AttrInt("channels", m))
	}
	d.b.NodeIn(onnx.NCHWcDomain, "ReorderOutput", []string{y}, []string{out}, onnx.AttrInt("channels", m))
	return out
}

// convForward emits a forward Conv as slatrun's Conv1x1 kernel where its
// input gradient runs in Conv1x1GradInput (the strided 1×1 shortcuts), as
// ConvNarrow where its input is narrow (narrowOK: the stems), as its
// ConvForward kernel where its input gradient runs in ConvGradInput
// (the same rule, kernelInputGradOK: oneDNN measured faster there and needs
// no NCHWc reorders of the activations or the weights), else in the NCHWc
// kernels when it can, and unchanged otherwise.
func convForward(d *deriver, n *node) error {
	xs, ws := d.shape(n.in[0]), d.shape(n.in[1])
	cg := geom(n, ws[2:])
	if d.pointwiseGradOK(n, cg) {
		d.b.NodeIn(onnx.KernelDomain, onnx.Conv1x1, n.in, n.out[:1], onnx.AttrInts("strides", cg.s...))
		return nil
	}
	if d.narrowOK(n, cg, xs) {
		d.b.NodeIn(onnx.KernelDomain, onnx.ConvNarrow, n.in, n.out[:1],
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...), onnx.AttrInts("pads", cg.p...))
		return nil
	}
	if d.kernelInputGradOK(n, cg, xs, ws) {
		d.b.NodeIn(onnx.KernelDomain, onnx.ConvForward, n.in, n.out[:1],
			onnx.AttrInts("kernel_shape", cg.k...), onnx.AttrInts("strides", cg.s...),
			onnx.AttrInts("dilations", cg.dil...), onnx.AttrInts("pads", cg.p...))
		return nil
	}
	if !d.nchwcOK(n, xs[1], ws[0], cg) {
		d.copyNode(n)
		return nil
	}
	d.nchwcConv(n.in[0], d.nchwcWeight(n.in[1], ws), n.input(2), ws[0], cg.k, cg.s, cg.dil, cg.p, n.out[0])
	return nil
}

// nchwcInputGrad computes dX of a stride-1, dilation-1 Conv as an NCHWc
// Conv of dY with the kernel transposed and flipped and pads k−1−p, or
// returns "" when that form does not apply.
func (d *deriver) nchwcInputGrad(n *node, dy, w string, xs, ws []int64, cg convGeom) string {
	if !d.nchwcOK(n, xs[1], ws[0], cg) {
		return ""
	}
	pads := make([]int64, 4)
	for i := 0; i < 2; i++ {
		if cg.s[i] != 1 || cg.dil[i] != 1 || cg.p[i] > cg.k[i]-1 || cg.p[i+2] > cg.k[i]-1 {
			return ""
		}
		pads[i], pads[i+2] = cg.k[i]-1-cg.p[i], cg.k[i]-1-cg.p[i+2]
	}
	key := "nchwc dX " + w
	wb, ok := d.cache[key]
	if !ok {
		wt := d.op("Transpose", []string{w}, onnx.AttrInts("perm", 1, 0, 2, 3)) // [C, M, kh, kw]
		if cg.k[0] > 1 || cg.k[1] > 1 {
			end := int64(-1) << 62
			wt = d.op("Slice", []string{wt, d.ints(-1, -1), d.ints(end, end), d.ints(2, 3), d.ints(-1, -1)})
		}
		wb = d.nchwcWeight(wt, []int64{ws[1], ws[0], ws[2], ws[3]})
		d.cache[key] = wb
	}
	return d.nchwcConv(dy, wb, "", xs[1], cg.k, cg.s, cg.dil, pads, "")
}

// spatial returns the kernel/stride/dilation/pads of a conv or pool node with
// r spatial axes, resolving auto_pad into explicit pads (written back). It
// checks their ranges: kernel, strides and dilations in [1,
// onnx.MaxAttrExtent], each pad at least 0 and smaller than the dilated
// kernel extent (a larger pad gives outputs that see nothing but padding).
func spatial(n *node, in []int64, kernel []int64) (strides, dil, pads []int64, err error) {
	r := len(kernel)
	ones := func() []int64 {
		o := make([]int64, r)
		for i := range o {
			o[i] = 1
		}
		return o
	}
	strides = n.ints("strides", ones())
	dil = n.ints("dilations", ones())
	pads = n.ints("pads", make([]int64, 2*r))
	if len(strides) != r || len(dil) != r || len(pads) != 2*r || len(in) != r {
		return nil, nil, nil, fmt.Errorf("strides/dilations/pads do not match %d spatial axes", r)
	}
	for i := 0; i < r; i++ {
		for _, c := range []struct {
			what string
			v    int64
		}{{"kernel", kernel[i]}, {"stride", strides[i]}, {"dilation", dil[i]}, {"input extent", in[i]}} {
			if c.v < 1 || c.v > onnx.MaxAttrExtent {
				return nil, nil, nil, fmt.Errorf("%s %d along spatial axis %d is not in [1, %d]", c.what, c.v, i, onnx.MaxAttrExtent)
			}
		}
	}
	switch ap := n.str("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
	case "VALID":
		pads = make([]int64, 2*r)
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < r; i++ {
			out := (in[i] + strides[i] - 1) / strides[i]
			total := (out-1)*strides[i] + (kernel[i]-1)*dil[i] + 1 - in[i]
			if total < 0 {
				total = 0
			}
			small, big := total/2, total-total/2
			if ap == "SAME_UPPER" {
				pads[i], pads[i+r] = small, big
			} else {
				pads[i], pads[i+r] = big, small
			}
		}
	default:
		return nil, nil, nil, fmt.Errorf("unknown auto_pad %q", ap)
	}
	for i := 0; i < r; i++ {
		ext := (kernel[i]-1)*dil[i] + 1
		for _, p := range []int64{pads[i], pads[i+r]} {
			if p < 0 || p >= ext || p > onnx.MaxAttrExtent {
				return nil, nil, nil, fmt.Errorf("pads %v: a pad along spatial axis %d must be at least 0 and smaller than the kernel extent %d", pads, i, ext)
			}
		}
	}
	n.delAttr("auto_pad")
	n.setAttr(onnx.AttrInts("pads", pads...))
	n.setAttr(onnx.AttrInts("strides", strides...))
	n.setAttr(onnx.AttrInts("dilations", dil...))
	return strides, dil, pads, nil
}

// kernelAttr checks that a kernel_shape attribute, if any, matches the
// weight's spatial dims k, and records k in it.
func kernelAttr(n *node, k []int64) error {
	if a := n.attr("kernel_shape"); a != nil && !slices.Equal(a.GetInts(), k) {
		return fmt.Errorf("kernel_shape %v does not match the weight's spatial shape %v", a.GetInts(), k)
	}
	n.setAttr(onnx.AttrInts("kernel_shape", k...))
	return nil
}

// group returns a convolution's group after checking it.
func group(n *node) (int64, error) {
	g := n.int("group", 1)
	if g < 1 || g > onnx.MaxAttrExtent {
		return 0, fmt.Errorf("group %d is not in [1, %d]", g, onnx.MaxAttrExtent)
	}
	return g, nil
}

// checkBias checks an optional bias input against its expected shape [m].
func checkBias(ins []*tinfo, m int64) error {
	if len(ins) > 2 && ins[2] != nil && !slices.Equal(ins[2].shape, []int64{m}) {
		return fmt.Errorf("bias has shape %v, want [%d]", ins[2].shape, m)
	}
	return nil
}

func inferConv(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	k := w[2:]
	if err := kernelAttr(n, k); err != nil {
		return nil, err
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	grp, err := group(n)
	if err != nil {
		return nil, err
	}
	if w[0]%grp != 0 {
		return nil, fmt.Errorf("group %d does not divide the weight's %d output channels", grp, w[0])
	}
	if x[1] != w[1]*grp {
		return nil, fmt.Errorf("input has %d channels, weight expects %d×%d", x[1], w[1], grp)
	}
	if err := checkBias(ins, w[0]); err != nil {
		return nil, err
	}
	r := len(k)
	out := []int64{x[0], w[0]}
	for i := 0; i < r; i++ {
		o := (x[2+i]+p[i]+p[i+r]-d[i]*(k[i]-1)-1)/s[i] + 1
		if x[2+i]+p[i]+p[i+r] < d[i]*(k[i]-1)+1 || o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}

func inferConvTranspose(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	x, w := ins[0].shape, ins[1].shape
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v ranks do not match", x, w)
	}
	if n.attr("output_shape") != nil {
		return nil, fmt.Errorf("ConvTranspose with output_shape is not supported; use pads and output_padding")
	}
	if ap := n.str("auto_pad", "NOTSET"); ap != "NOTSET" && ap != "VALID" && ap != "" {
		return nil, fmt.Errorf("ConvTranspose with auto_pad %s is not supported", ap)
	}
	k := w[2:]
	r := len(k)
	if err := kernelAttr(n, k); err != nil {
		return nil, err
	}
	s, d, p, err := spatial(n, x[2:], k)
	if err != nil {
		return nil, err
	}
	op := n.ints("output_padding", make([]int64, r))
	if len(op) != r {
		return nil, fmt.Errorf("output_padding %v does not match %d spatial axes", op, r)
	}
	grp, err := group(n)
	if err != nil {
		return nil, err
	}
	if x[1] != w[0] || w[0]%grp != 0 {
		return nil, fmt.Errorf("input has %d channels, weight %v expects %d in %d groups", x[1], w, w[0], grp)
	}
	if err := checkBias(ins, w[1]*grp); err != nil {
		return nil, err
	}
	out := []int64{x[0], w[1] * grp}
	for i := 0; i < r; i++ {
		if op[i] < 0 || (op[i] >= s[i] && op[i] >= d[i]) {
			return nil, fmt.Errorf("output_padding %v: each must be at least 0 and smaller than the stride or the dilation", op)
		}
		o := s[i]*(x[2+i]-1) + op[i] + (k[i]-1)*d[i] + 1 - p[i] - p[i+r]
		if o <= 0 {
			return nil, fmt.Errorf("empty output along spatial axis %d", i)
		}
		if o > onnx.MaxAttrExtent {
			return nil, fmt.Errorf("output extent %d along spatial axis %d is more than %d", o, i, onnx.MaxAttrExtent)
		}
		out = append(out, o)
	}
	return []*tinfo{{dt: onnx.Float, shape: out}}, nil
}
