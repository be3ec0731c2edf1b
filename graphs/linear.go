package graphs

import (
	"fmt"
	"slices"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Linear layers: Gemm (torch's Linear on 2-D inputs) and MatMul. Their
// gradients are products with the other operand transposed, reduced over
// broadcast batch axes.

func init() {
	register(map[string]opDef{
		"Gemm":   {infer: inferGemm, grad: gemmGrad},
		"MatMul": {infer: inferMatMul, grad: matMulGrad},
	})
}

func inferGemm(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	a, b := ins[0].shape, ins[1].shape
	if len(a) != 2 || len(b) != 2 {
		return nil, fmt.Errorf("Gemm needs 2-D inputs, got %v and %v", a, b)
	}
	m, k := a[0], a[1]
	if n.int("transA", 0) != 0 {
		m, k = k, m
	}
	k2, nn := b[0], b[1]
	if n.int("transB", 0) != 0 {
		k2, nn = nn, k2
	}
	if k != k2 {
		return nil, fmt.Errorf("Gemm inner dimensions %d and %d differ", k, k2)
	}
	if len(ins) > 2 && ins[2] != nil {
		if c, err := broadcast(ins[2].shape, []int64{m, nn}); err != nil || !slices.Equal(c, []int64{m, nn}) {
			return nil, fmt.Errorf("Gemm's C of shape %v does not broadcast to [%d, %d]", ins[2].shape, m, nn)
		}
	}
	return []*tinfo{{dt: ins[0].dt, shape: []int64{m, nn}}}, nil
}

func inferMatMul(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error) {
	if err := needIns(ins, 2); err != nil {
		return nil, err
	}
	a, b := ins[0].shape, ins[1].shape
	if len(a) < 2 || len(b) < 2 {
		return nil, fmt.Errorf("MatMul with 1-D operands is not supported (shapes %v, %v)", a, b)
	}
	if a[len(a)-1] != b[len(b)-2] {
		return nil, fmt.Errorf("MatMul inner dimensions of %v and %v differ", a, b)
	}
	batch, err := broadcast(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	return []*tinfo{{dt: ins[0].dt, shape: append(batch, a[len(a)-2], b[len(b)-1])}}, nil
}

// gemmGrad: Y = α·A'·B' + β·C with A' = transA ? Aᵀ : A (same for B).
func gemmGrad(d *deriver, n *node, dy []string) ([]string, error) {
	a, b, c := n.in[0], n.in[1], n.input(2)
	ta, tb := n.int("transA", 0) != 0, n.int("transB", 0) != 0
	alpha, beta := n.float("alpha", 1), n.float("beta", 1)
	gemm := func(x, y string, tx, ty bool) string {
		attrs := []*onnxpb.AttributeProto{onnx.AttrFloat("alpha", alpha)}
		if tx {
			attrs = append(attrs, onnx.AttrInt("transA", 1))
		}
		if ty {
			attrs = append(attrs, onnx.AttrInt("transB", 1))
		}
		return d.op("Gemm", []string{x, y}, attrs...)
	}
	res := make([]string, 3)
	g := dy[0]
	if d.wants(a) {
		switch {
		case !ta && !tb:
			res[0] = gemm(g, b, false, true)
		case !ta && tb:
			res[0] = gemm(g, b, false, false)
		case ta && !tb:
			res[0] = gemm(b, g, false, true)
		default:
			res[0] = gemm(b, g, true, true)
		}
	}
	if d.wants(b) {
		switch {
		case !tb && !ta:
			res[1] = gemm(a, g, true, false)
		case !tb && ta:
			res[1] = gemm(a, g, false, false)
		case tb && !ta:
			res[1] = gemm(g, a, true, false)
		default:
			res[1] = gemm(g, a, true, true)
		}
	}
	if d.wants(c) {
		gc := d.unbroadcast(g, d.shape(n.out[0]), d.shape(c))
		if beta != 1 {
			gc = d.mul(gc, d.scalar(beta))
		}
		res[2] = gc
	}
	return res, nil
}

// matMulGrad: dA = dY·Bᵀ, dB = Aᵀ·dY, reduced over broadcast batch axes.
func matMulGrad(d *deriver, n *node, dy []string) ([]string, error) {
	a, b := n.in[0], n.in[1]
	as, bs, ys := d.shape(a), d.shape(b), d.shape(n.out[0])
	tr := func(x string, r int) string {
		perm := seq(0, r)
		perm[r-1], perm[r-2] = perm[r-2], perm[r-1]
		return d.op("Transpose", []string{x}, onnx.AttrInts("perm", perm...))
	}
	res := make([]string, 2)
	if d.wants(a) {
		g := d.op("MatMul", []string{dy[0], tr(b, len(bs))})
		full := append(clone64(ys[:len(ys)-2]), as[len(as)-2:]...)
		res[0] = d.unbroadcast(g, full, as)
	}
	if d.wants(b) {
		g := d.op("MatMul", []string{tr(a, len(as)), dy[0]})
		full := append(clone64(ys[:len(ys)-2]), bs[len(bs)-2:]...)
		res[1] = d.unbroadcast(g, full, bs)
	}
	return res, nil
}
