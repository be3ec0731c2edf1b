package graphs

import (
	"slices"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// The blocked layout between kernels. oneDNN's convolutions compute in
// nChw16c (channels in blocks of 16, innermost) and, on plain NCHW
// tensors, reorder every activation in and every result out. blockLayouts
// keeps tensors in nChw16c wherever that saves reorders: the convolution
// kernels take a bit per activation (attribute blocked), the batch-norm
// kernels one flag for all of theirs, TapClip and the 1×1 kernels a bit per
// tensor (Conv1x1GradInput's acc takes bit 1, W's elsewhere), and an
// elementwise Add or Sum of equal shapes works on either layout as long as
// its inputs and output share it. A batch norm or an Add couples its tensors:
// they are blocked together or not at all, so in a residual network a
// stage's residual stream, its batch norms' inputs and outputs and their
// gradients form one group. Each group is decided by counting reorders:
// left plain, every convolution kernel that touches one of its tensors
// reorders it; blocked, a Relayout node converts each tensor that an
// operator without a blocked form writes (to nChw16c) or reads, or that is a
// graph output (to NCHW, once per tensor). A group is blocked when that
// costs fewer conversions, or as many and the group holds a batch norm's
// tensors: the batch-norm kernels run faster on nChw16c (convnet's SLAT
// attack pass at 1 thread spent 13.4 ms in them with its first stage plain,
// 11.0 ms blocked), and a Relayout is cheaper than the oneDNN reorder it
// replaces. All of a group's tensors have one shape, so the
// counts compare like with like. Nothing outside the kernels ever sees a
// blocked tensor: graph outputs keep their names and NCHW.

// Bits of the kernels' "blocked" attribute: input 0, input 1, output 0 in
// nChw16c (the batch-norm kernels use 1 for all their tensors).
const (
	blockedIn0 int64 = 1 << iota
	blockedIn1
	blockedOut
)

// A layoutSlot says how one input or output of a node may hold a blocked
// tensor.
type layoutSlot int

const (
	slotPlain   layoutSlot = iota // NCHW only
	slotShape                     // only the shape is read: either layout
	slotBit                       // its own bit of the attribute blocked
	slotCoupled                   // one layout for all the node's coupled slots
)

// layoutRule gives slot i of node n (an output if out): its kind, its bit
// (slotBit), and whether the kernel reorders that tensor itself when it is
// NCHW (the oneDNN convolutions do; the others have a loop for each layout).
func layoutRule(n *onnxpb.NodeProto, out bool, i int) (kind layoutSlot, bit int64, reorders bool) {
	if n.GetDomain() == "" && (n.GetOpType() == "Add" || n.GetOpType() == "Sum") {
		return slotCoupled, 0, false
	}
	if n.GetDomain() != onnx.KernelDomain {
		return slotPlain, 0, false
	}
	switch op := n.GetOpType(); {
	case op == onnx.ConvForward && !out && i == 0, op == onnx.ConvGradInput && !out && i == 0,
		op == onnx.ConvGradWeight && !out && i == 0:
		return slotBit, blockedIn0, true
	case op == onnx.ConvGradWeight && !out && i == 1:
		return slotBit, blockedIn1, true
	case (op == onnx.ConvForward || op == onnx.ConvGradInput) && out && i == 0:
		return slotBit, blockedOut, true
	case op == onnx.ConvGradInput && !out && i == 2:
		return slotShape, 0, false
	case (op == onnx.Conv1x1 || op == onnx.Conv1x1GradInput || op == onnx.TapClip) && i == 0:
		if out {
			return slotBit, blockedOut, false
		}
		return slotBit, blockedIn0, false
	case op == onnx.Conv1x1GradInput && !out && i == 2:
		return slotBit, blockedIn1, false // acc takes W's bit: W is never blocked
	case op == onnx.TapClip && !out && i == 1:
		return slotBit, blockedIn1, false
	case op == onnx.BatchNormTrain && i == 0:
		return slotCoupled, 0, false
	case op == onnx.BatchNormTrainGrad && (out && i == 0 || !out && (i <= 1 || i >= 5)):
		return slotCoupled, 0, false // dY, X, Y, acc; dX
	}
	return slotPlain, 0, false
}

// slotRef names input or output slot of node.
type slotRef struct {
	node, slot int
	out        bool
}

// blockLayouts chooses the blocked tensors of b's graph (see above), sets
// the kernel nodes' blocked attributes and inserts the Relayout nodes. shape
// gives a tensor's shape (nil if unknown).
func blockLayouts(b *onnx.Builder, shape func(string) []int64) {
	g := b.Graph()
	nodes := g.GetNode()
	prod := map[string]slotRef{}
	cons := map[string][]slotRef{}
	for i, n := range nodes {
		for j, o := range n.GetOutput() {
			if o != "" {
				prod[o] = slotRef{i, j, true}
			}
		}
		for j, in := range n.GetInput() {
			if in != "" {
				cons[in] = append(cons[in], slotRef{i, j, false})
			}
		}
	}
	output := map[string]bool{}
	for _, o := range g.GetOutput() {
		output[o.GetName()] = true
	}
	// An Add or Sum couples its tensors only when it does not broadcast: on
	// a blocked tensor, broadcasting would pair the wrong elements.
	broadcasts := map[int]bool{}
	for i, n := range nodes {
		if n.GetDomain() == "" && (n.GetOpType() == "Add" || n.GetOpType() == "Sum") {
			o := shape(n.GetOutput()[0])
			for _, in := range n.GetInput() {
				broadcasts[i] = broadcasts[i] || o == nil || !slices.Equal(shape(in), o)
			}
		}
	}
	rule := func(r slotRef) (layoutSlot, int64, bool) {
		if broadcasts[r.node] {
			return slotPlain, 0, false
		}
		return layoutRule(nodes[r.node], r.out, r.slot)
	}
	// producer gives the rule of t's producing slot (plain for graph inputs
	// and initializers).
	producer := func(t string) (layoutSlot, bool) {
		p, has := prod[t]
		if !has {
			return slotPlain, false
		}
		k, _, reorders := rule(p)
		return k, reorders
	}
	// readPlain reports whether an operator without a blocked form reads t
	// or t is a graph output: blocked, it then needs an NCHW copy.
	readPlain := func(t string) bool {
		for _, c := range cons[t] {
			if k, _, _ := rule(c); k == slotPlain {
				return true
			}
		}
		return output[t]
	}

	// Union the tensors each node couples; every tensor that some slot could
	// hold blocked is a candidate.
	parent := map[string]string{}
	var find func(string) string
	find = func(t string) string {
		p, ok := parent[t]
		if !ok {
			parent[t] = t
			return t
		}
		if p == t {
			return t
		}
		r := find(p)
		parent[t] = r
		return r
	}
	var cand []string
	for i, n := range nodes {
		var coupled []string
		visit := func(t string, out bool, j int) {
			k, _, _ := rule(slotRef{i, j, out})
			if t == "" || k != slotBit && k != slotCoupled {
				return
			}
			if _, seen := parent[t]; !seen {
				cand = append(cand, t)
				find(t)
			}
			if k == slotCoupled {
				coupled = append(coupled, t)
			}
		}
		for j, t := range n.GetInput() {
			visit(t, false, j)
		}
		for j, t := range n.GetOutput() {
			visit(t, true, j)
		}
		for _, t := range coupled[min(1, len(coupled)):] {
			if a, b := find(coupled[0]), find(t); a != b {
				parent[b] = a
			}
		}
	}

	// Count each group's conversions both ways. A group's tensors share one
	// shape; the gradients whose shapes the deriver did not record take it
	// from the others.
	type tally struct {
		ok             bool
		shape          []int64
		plain, blocked int  // conversions if left plain, if blocked
		bn             bool // a batch-norm kernel reads or writes one of its tensors
	}
	// batchNorm reports whether slot r is a batch-norm kernel's (the only
	// kernels whose slots are coupled).
	batchNorm := func(r slotRef) bool {
		k, _, _ := rule(r)
		return k == slotCoupled && nodes[r.node].GetDomain() == onnx.KernelDomain
	}
	groups := map[string]*tally{}
	for _, t := range cand {
		r := find(t)
		gr := groups[r]
		if gr == nil {
			gr = &tally{ok: true}
			groups[r] = gr
		}
		if s := shape(t); s != nil {
			gr.ok = gr.ok && (gr.shape == nil || slices.Equal(s, gr.shape))
			gr.shape = s
		}
		switch k, reorders := producer(t); {
		case k == slotPlain:
			gr.blocked++ // written NCHW: converted once
		case reorders:
			gr.plain++
		}
		if p, has := prod[t]; has && batchNorm(p) {
			gr.bn = true
		}
		for _, c := range cons[t] {
			if _, _, reorders := rule(c); reorders {
				gr.plain++
			}
			gr.bn = gr.bn || batchNorm(c)
		}
		if readPlain(t) {
			gr.blocked++
		}
	}

	bits := map[int]int64{}
	after := map[int][]*onnxpb.NodeProto{} // Relayouts to insert after node i (-1: before all)
	relayout := func(at int, from, to string, toBlocked int64) {
		// NodeIn appends; the node list is rebuilt below with it in place.
		nd := b.NodeIn(onnx.KernelDomain, onnx.Relayout, []string{from}, []string{to}, onnx.AttrInt("to_blocked", toBlocked))
		after[at] = append(after[at], nd)
	}
	// mark renames slot r to the blocked tensor tb and sets its node's bit
	// (the batch-norm kernels' flag is 1; an Add takes no attribute).
	mark := func(r slotRef, tb string) {
		k, bit, _ := rule(r)
		n := nodes[r.node]
		if r.out {
			n.Output[r.slot] = tb
		} else {
			n.Input[r.slot] = tb
		}
		switch {
		case k == slotBit:
			bits[r.node] |= bit
		case k == slotCoupled && n.GetDomain() == onnx.KernelDomain:
			bits[r.node] = 1
		}
	}
	for _, gr := range groups {
		s := gr.shape
		gr.ok = gr.ok && len(s) == 4 && s[1] > 0 && s[1]%16 == 0
	}
	for _, t := range cand {
		gr := groups[find(t)]
		if !gr.ok || gr.blocked > gr.plain || gr.blocked == gr.plain && !gr.bn {
			continue
		}
		tb := b.Fresh(t + ".nChw16c")
		copyBack := readPlain(t)
		for _, c := range cons[t] {
			if k, _, _ := rule(c); k != slotPlain {
				mark(c, tb)
			}
		}
		p, has := prod[t]
		switch k, _ := producer(t); {
		case k != slotPlain:
			mark(p, tb)
			if copyBack {
				relayout(p.node, tb, t, 0)
			}
		case has:
			relayout(p.node, t, tb, 1)
		default: // a graph input or initializer
			relayout(-1, t, tb, 1)
		}
	}
	out := make([]*onnxpb.NodeProto, 0, len(nodes))
	out = append(out, after[-1]...)
	for i, n := range nodes {
		if bit := bits[i]; bit != 0 {
			n.Attribute = append(n.Attribute, onnx.AttrInt("blocked", bit))
		}
		out = append(out, n)
		out = append(out, after[i]...)
	}
	g.Node = out
}
