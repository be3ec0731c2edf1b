package graphs

import (
	"slices"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// The blocked layout between kernels. oneDNN's convolutions compute in
// nChw16c (channels in blocks of 16, innermost) and, on plain NCHW
// tensors, reorder every activation in and every result out: about a third
// of the time spent in oneDNN on the convnet (docs/performance.md). A batch
// norm that sits between two convolution kernels — its input the output of
// a ConvForward, its (ReLU-fused) output read only by convolutions, and in
// the backward its output gradient the result of a ConvGradInput and its
// input gradient read only by convolutions — can keep all of those tensors
// in nChw16c: the batch-norm kernels run on that layout directly (attribute
// blocked = 1) and the convolution kernels skip the reorders on those
// sides (attribute blocked, a bit per activation role). In a pre-activation
// residual block that is the inner batch norm, between its two
// convolutions. Nothing outside the kernels ever sees a blocked tensor: the
// rule only blocks tensors whose every producer and consumer is one of
// these kernels, and never a graph output.

// Bits of the convolution kernels' "blocked" attribute: input 0, input 1,
// output 0 in nChw16c.
const (
	blockedIn0 int64 = 1 << iota
	blockedIn1
	blockedOut
)

type slotRef struct{ node, slot int }

// blockInnerBN sets the blocked attributes on g's kernel nodes for every
// batch norm that qualifies (see above; shape gives a tensor's shape, C must
// be a multiple of 16).
func blockInnerBN(g *onnxpb.GraphProto, shape func(string) []int64) {
	nodes := g.GetNode()
	prod := map[string]slotRef{}
	cons := map[string][]slotRef{}
	for i, n := range nodes {
		for j, o := range n.GetOutput() {
			if o != "" {
				prod[o] = slotRef{i, j}
			}
		}
		for j, in := range n.GetInput() {
			if in != "" {
				cons[in] = append(cons[in], slotRef{i, j})
			}
		}
	}
	output := map[string]bool{}
	for _, o := range g.GetOutput() {
		output[o.GetName()] = true
	}
	is := func(r slotRef, op string, slot int) bool {
		n := nodes[r.node]
		return n.GetDomain() == onnx.KernelDomain && n.GetOpType() == op && r.slot == slot
	}
	input := func(n *onnxpb.NodeProto, i int) string {
		if i < len(n.GetInput()) {
			return n.GetInput()[i]
		}
		return ""
	}
	bits := map[int]int64{}
	bn := map[int]bool{}
	for i, n := range nodes {
		if n.GetDomain() != onnx.KernelDomain || n.GetOpType() != onnx.BatchNormTrain {
			continue
		}
		x, y := input(n, 0), n.GetOutput()[0]
		if s := shape(x); len(s) != 4 || s[1]%16 != 0 || output[x] || output[y] {
			continue
		}
		if p, ok := prod[x]; !ok || !is(p, onnx.ConvForward, 0) {
			continue
		}
		ok := true
		var grads []int
		for _, c := range cons[x] {
			switch {
			case c.node == i && c.slot == 0:
			case is(c, onnx.BatchNormTrainGrad, 1):
				grads = append(grads, c.node)
			default:
				ok = false
			}
		}
		for _, c := range cons[y] {
			ok = ok && (is(c, onnx.ConvForward, 0) || is(c, onnx.ConvGradWeight, 0) ||
				is(c, onnx.BatchNormTrainGrad, 5) && slices.Contains(grads, c.node))
		}
		for _, gi := range grads {
			gn := nodes[gi]
			dy, dx := input(gn, 0), gn.GetOutput()[0]
			p, has := prod[dy]
			ok = ok && input(gn, 6) == "" && has && is(p, onnx.ConvGradInput, 0) && !output[dy] && !output[dx]
			for _, c := range cons[dy] {
				ok = ok && c.node == gi && c.slot == 0
			}
			for _, c := range cons[dx] {
				ok = ok && (is(c, onnx.ConvGradInput, 0) || is(c, onnx.ConvGradWeight, 1))
			}
		}
		if !ok {
			continue
		}
		bn[i] = true
		bits[prod[x].node] |= blockedOut
		for _, c := range cons[y] {
			if c.slot == 0 { // ConvForward's or ConvGradWeight's X
				bits[c.node] |= blockedIn0
			}
		}
		for _, gi := range grads {
			bn[gi] = true
			gn := nodes[gi]
			bits[prod[input(gn, 0)].node] |= blockedOut
			for _, c := range cons[gn.GetOutput()[0]] {
				if c.slot == 0 { // ConvGradInput's dY
					bits[c.node] |= blockedIn0
				} else { // ConvGradWeight's dY
					bits[c.node] |= blockedIn1
				}
			}
		}
	}
	for i := range nodes {
		switch {
		case bn[i]:
			nodes[i].Attribute = append(nodes[i].Attribute, onnx.AttrInt("blocked", 1))
		case bits[i] != 0:
			nodes[i].Attribute = append(nodes[i].Attribute, onnx.AttrInt("blocked", bits[i]))
		}
	}
}
