package graphs_test

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestKernelsMatchPlain checks that graphs derived with Spec.Kernels
// (weight gradients in slatrun's oneDNN ConvGradWeight, input gradients of
// the 3×3 Convs between 16-multiple channel counts in ConvGradInput; training-mode batch
// norms in BatchNormTrain/BatchNormTrainGrad, with the Relu that is a BN
// output's only consumer fused in) compute what the plain graphs compute,
// output by output, with and without NCHWc, and that the kernels were
// emitted where they apply and nowhere else: every group-1 2-D Conv's
// weight gradient, every BN of the training kinds (forward and backward;
// in the attack kind without dscale and dbias), none in the eval kind
// (inference-form BN), and the expected number of fused Relus, which then
// leave the graph.
func TestKernelsMatchPlain(t *testing.T) {
	if ok, why := ort.Kernels(); !ok {
		t.Skip(why)
	}
	fixture, err := onnx.Load("testdata/torch_cnn.onnx")
	if err != nil {
		t.Fatal(err)
	}
	zooModel := func(name string, width int) *onnx.Model {
		m, err := zoo.Build(name, zoo.Config{Width: width, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	convnet, preact, wrn, mlp := zooModel("convnet", 16), zooModel("preactresnet18", 16), zooModel("wrn-28-10", 1), zooModel("mlp", 8)
	edge := bnEdgeModel()
	type tc struct {
		name   string
		m      *onnx.Model
		batch  int
		kind   graphs.Kind
		nchwc  bool
		taps   []string // nil: the model's
		convs  int      // weight gradients expected in the kernel (at least; train kind)
		dxs    int      // input gradients expected in ConvGradInput (every kind)
		narrow int      // input gradients expected in ConvGradInputNarrow (convolutions from ≤ 4 channels)
		// forwards expected in ConvNarrow (the same convolutions, every kind)
		narrowFwd int
		bns       int  // BatchNormalization nodes (all in the kernel in the training kinds)
		fused     int  // Relus fused into them (training kinds)
		blocked   int  // batch norms kept in nChw16c (training kinds; blocked.go)
		relayouts int  // Relayout nodes where blocked tensors meet NCHW ones
		direct    bool // oneDNN's direct algorithm only (ort.Options.DirectConv)
	}
	cases := []tc{
		{name: "convnet/train plain conv", m: convnet, batch: 4, kind: graphs.Train, convs: 9, dxs: 6, narrowFwd: 1, bns: 7, fused: 7, blocked: 7, relayouts: 2},
		{name: "edge/train", m: edge, batch: 4, kind: graphs.Train, convs: 2, narrow: 1, narrowFwd: 2, bns: 4, fused: 2},
		{name: "edge/attack", m: edge, batch: 4, kind: graphs.Attack, narrow: 2, narrowFwd: 2, bns: 4, fused: 2},
		// a tap on a BN output keeps its Relu apart (and its tensor)
		{name: "edge/train tap on bn output", m: edge, batch: 4, kind: graphs.Train, taps: []string{"b2"}, convs: 2, narrow: 1, narrowFwd: 2, bns: 4, fused: 1},
		{name: "edge/attack tap on bn output", m: edge, batch: 4, kind: graphs.Attack, taps: []string{"b2"}, narrow: 2, narrowFwd: 2, bns: 4, fused: 1},
		{name: "edge/eval", m: edge, batch: 4, kind: graphs.Eval, narrow: 2, narrowFwd: 2, bns: 4},
	}
	for _, z := range []struct {
		name                         string
		m                            *onnx.Model
		batch                        int
		convs, dxs, narrow, bns, fus int
		// blocked batch norms and Relayouts in the train and attack kinds
		blocked, relayouts [2]int
	}{
		// ConvGradInput: the 3×3 Convs between 16-multiple channel counts
		// (not the stems, not the 1×1 shortcuts); ConvGradInputNarrow:
		// the stems (1 input channel), whose input gradient only the
		// attack and eval kinds take (grad.x), and the fixture's second
		// convolution (from 4 channels) in every kind.
		//
		// Blocked: every batch norm of the residual networks, in both
		// training kinds. Relayouts: the attack kinds convert the stem's
		// output (ConvNarrow writes NCHW), the two grad outputs, and the
		// last batch norm's output and input gradient (the pooling and its
		// gradient are NCHW): 5; the train kinds only the last two (their
		// first tap takes the stem's NCHW output into a blocked h). The 1×1
		// shortcuts' kernels read and write either layout.
		{"convnet", convnet, 4, 9, 6, 1, 7, 7, [2]int{7, 7}, [2]int{2, 5}},
		{"preactresnet18", preact, 2, 20, 16, 1, 17, 17, [2]int{17, 17}, [2]int{2, 5}},
		{"wrn-28-10", wrn, 2, 27, 24, 1, 25, 25, [2]int{25, 25}, [2]int{2, 5}},
		{"mlp", mlp, 4, 0, 0, 0, 0, 0, [2]int{}, [2]int{}},
		{"torch fixture", fixture, 3, 1, 0, 2, 2, 2, [2]int{}, [2]int{}},
	} {
		for i, k := range []graphs.Kind{graphs.Train, graphs.Attack, graphs.Eval} {
			narrow := z.narrow
			if k == graphs.Train && narrow > 0 {
				narrow-- // no grad.x
			}
			c := tc{name: z.name + "/" + string(k), m: z.m, batch: z.batch, kind: k, nchwc: true,
				convs: z.convs, dxs: z.dxs, narrow: narrow, narrowFwd: z.narrow, bns: z.bns, fused: z.fus}
			if i < 2 {
				c.blocked, c.relayouts = z.blocked[i], z.relayouts[i]
			}
			cases = append(cases, c)
		}
	}
	// Winograd is the default; the direct algorithm on two of them too
	for _, c := range cases {
		if c.name == "preactresnet18/train" || c.name == "convnet/attack" {
			c.name += " direct"
			c.direct = true
			cases = append(cases, c)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			block := 0
			if c.nchwc {
				block = ort.NCHWcBlock()
			}
			plain := graphs.Spec{Kind: c.kind, Batch: c.batch, NCHWcBlock: block, Taps: c.taps}
			kern := plain
			kern.Kernels = true
			// The kernels split the batch over the session's threads
			// (docs/kernels.md, "Threads"): 3 threads give convnet's
			// batch of 4 uneven parts.
			threads := 1
			if strings.HasPrefix(c.name, "convnet/") {
				threads = 3
			}
			g := matchGraphs(t, c.m, plain, ort.Options{Threads: 1}, kern, ort.Options{Threads: threads, Kernels: true, DirectConv: c.direct})
			training := c.kind != graphs.Eval

			n := countOps(g, onnx.KernelDomain, onnx.ConvGradWeight)
			convs := countOps(c.m, "", "Conv")
			if c.kind == graphs.Train && (n != convs || n < c.convs) {
				t.Errorf("%d ConvGradWeight nodes for %d Convs, want one each (at least %d)", n, convs, c.convs)
			}
			if c.kind != graphs.Train && n != 0 {
				t.Errorf("%d ConvGradWeight nodes in a graph without weight gradients", n)
			}

			// every kind has input gradients (the eval kind's grad.x too)
			if got := countOps(g, onnx.KernelDomain, onnx.ConvGradInput); got != c.dxs {
				t.Errorf("%d ConvGradInput nodes, want %d", got, c.dxs)
			}
			if got := countOps(g, onnx.KernelDomain, onnx.ConvGradInputNarrow); got != c.narrow {
				t.Errorf("%d ConvGradInputNarrow nodes, want %d", got, c.narrow)
			}
			// the forward of every narrow Conv runs in ConvNarrow, in every
			// kind, whether or not its input gradient is taken
			if got := countOps(g, onnx.KernelDomain, onnx.ConvNarrow); got != c.narrowFwd {
				t.Errorf("%d ConvNarrow nodes, want %d", got, c.narrowFwd)
			}
			// the forward of the same Convs runs in ConvForward (same rule)
			if got := countOps(g, onnx.KernelDomain, onnx.ConvForward); got != c.dxs {
				t.Errorf("%d ConvForward nodes, want %d (one per ConvGradInput Conv)", got, c.dxs)
			}
			if got := countOps(c.m, "", "BatchNormalization"); got != c.bns {
				t.Fatalf("the model has %d BatchNormalization nodes, the case says %d", got, c.bns)
			}
			wantBN, wantFused := 0, 0
			if training {
				wantBN, wantFused = c.bns, c.fused
			}
			fwd, fwdRelu := countBNKernel(g, onnx.BatchNormTrain)
			bwd, bwdRelu := countBNKernel(g, onnx.BatchNormTrainGrad)
			if fwd != wantBN || bwd != wantBN {
				t.Errorf("%d BatchNormTrain and %d BatchNormTrainGrad nodes, want %d each", fwd, bwd, wantBN)
			}
			if fwdRelu != wantFused || bwdRelu != wantFused {
				t.Errorf("%d BatchNormTrain and %d BatchNormTrainGrad nodes with relu = 1, want %d each", fwdRelu, bwdRelu, wantFused)
			}
			// batch norms run in nChw16c where that saves reorders, with
			// Relayouts where blocked tensors meet NCHW ones (blocked.go)
			if f, b := countBlocked(g, onnx.BatchNormTrain), countBlocked(g, onnx.BatchNormTrainGrad); f != c.blocked || b != c.blocked {
				t.Errorf("%d BatchNormTrain and %d BatchNormTrainGrad nodes blocked, want %d each", f, b, c.blocked)
			}
			if got := countOps(g, onnx.KernelDomain, onnx.Relayout); got != c.relayouts {
				t.Errorf("%d Relayout nodes, want %d", got, c.relayouts)
			}
			if training && countOps(g, "", "BatchNormalization") != 0 {
				t.Errorf("a BatchNormalization node is left in a %s graph", c.kind)
			}
			if !training && countOps(g, "", "BatchNormalization") != c.bns {
				t.Errorf("%d BatchNormalization nodes in the eval graph, want %d (inference form)", countOps(g, "", "BatchNormalization"), c.bns)
			}
			// each fused Relu leaves the graph, forward and backward
			pg, err := graphs.Derive(c.m, plain)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := countOps(g, "", "Relu"), countOps(pg, "", "Relu")-wantFused; got != want {
				t.Errorf("%d Relu nodes, want %d (the plain graph's less the fused)", got, want)
			}
			if got, want := countOps(g, "", "Greater"), countOps(pg, "", "Greater")-wantFused; got != want {
				t.Errorf("%d Greater nodes (Relu masks), want %d (the plain graph's less the fused)", got, want)
			}
			// SLAT's domain clip: one TapClip per latent input, no plain
			// clip ops left
			deltas := 0
			for _, in := range g.Graph().GetInput() {
				if strings.HasPrefix(in.GetName(), "delta.") {
					deltas++
				}
			}
			if got := countOps(g, onnx.KernelDomain, onnx.TapClip); got != deltas {
				t.Errorf("%d TapClip nodes for %d latent inputs", got, deltas)
			}
			if deltas > 0 && countOps(g, "", "ReduceMin")+countOps(g, "", "ReduceMax") != 0 {
				t.Errorf("plain domain-clip reductions left beside TapClip")
			}
			for _, node := range g.Graph().GetNode() {
				if node.GetDomain() != onnx.KernelDomain || node.GetOpType() != onnx.BatchNormTrainGrad {
					continue
				}
				outs := node.GetOutput()
				if c.kind == graphs.Attack && (len(outs) != 1 || outs[0] == "") {
					t.Errorf("attack graph: BatchNormTrainGrad outputs %q, want dX only", outs)
				}
				if c.kind == graphs.Train && (len(outs) != 3 || outs[1] == "" || outs[2] == "") {
					t.Errorf("train graph: BatchNormTrainGrad outputs %q, want dX, dscale and dbias", outs)
				}
			}
		})
	}
}

// countBNKernel counts the nodes of KernelDomain's op and those of them
// with relu = 1.
func countBNKernel(m *onnx.Model, op string) (n, relu int) {
	for _, node := range m.Graph().GetNode() {
		if node.GetDomain() != onnx.KernelDomain || node.GetOpType() != op {
			continue
		}
		n++
		if onnx.AttrIntOr(node, "relu", 0) == 1 {
			relu++
		}
	}
	return n, relu
}

// bnEdgeModel puts batch norms of ranks 4, 3 and 2 where a following Relu
// can and cannot be fused (4 BNs, 2 fusable Relus; x [N,3,6,6] → logits
// [N,4]):
//
//	c1 = Conv(x) → b1 = BN → r1 = Relu; s = r1 + b1  (b1 has two consumers)
//	c2 = Conv(s, stride 2) [N,6,3,3] → Reshape [N,6,9] → b2 = BN → Relu  (fused)
//	ReduceMean over 9 → [N,6] → b3 = BN → Sigmoid  (not a Relu)
//	Gemm → [N,5] → b4 = BN → Relu (fused) → Gemm → logits
//
// Its tap is r1.
func bnEdgeModel() *onnx.Model {
	r := rand.New(rand.NewSource(5))
	b := onnx.NewBuilder("bnedge")
	b.Input("x", onnx.Float, -1, 3, 6, 6)
	floats := randomFloats(b, r)
	bn := func(x, out string, c int64) {
		vr := make([]float32, c)
		for i := range vr {
			vr[i] = 0.5 + r.Float32()
		}
		b.Node("BatchNormalization", []string{x, floats(out+".weight", 0.5, c), floats(out+".bias", 0.5, c),
			floats(out+".running_mean", 0.3, c), b.Floats(out+".running_var", []int64{c}, vr)},
			[]string{out}, onnx.AttrFloat("epsilon", 1e-3))
	}
	b.Node("Conv", []string{"x", floats("c1.weight", 0.3, 4, 3, 3, 3), floats("c1.bias", 0.1, 4)}, []string{"c1"}, onnx.AttrInts("pads", 1, 1, 1, 1))
	bn("c1", "b1", 4)
	b.Node("Relu", []string{"b1"}, []string{"r1"})
	s := b.Op("Add", []string{"r1", "b1"})
	b.Node("Conv", []string{s, floats("c2.weight", 0.3, 6, 4, 3, 3)}, []string{"c2"}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2))
	bn(b.Op("Reshape", []string{"c2", b.Ints(0, 6, 9)}), "b2", 6)
	r2 := b.Op("Relu", []string{"b2"})
	bn(b.Op("ReduceMean", []string{r2, b.Ints(2)}, onnx.AttrInt("keepdims", 0)), "b3", 6)
	g := b.Op("Gemm", []string{b.Op("Sigmoid", []string{"b3"}), floats("f1.weight", 0.5, 6, 5)})
	bn(g, "b4", 5)
	b.Node("Gemm", []string{b.Op("Relu", []string{"b4"}), floats("f2.weight", 0.5, 5, 4)}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 4)
	b.SetMetadata("slatrun.taps", "r1")
	return b.Model()
}

// randomFloats returns a function that adds a float constant of the given
// shape to b, normal values times scale drawn from r, and returns its name.
func randomFloats(b *onnx.Builder, r *rand.Rand) func(name string, scale float32, shape ...int64) string {
	return func(name string, scale float32, shape ...int64) string {
		v := make([]float32, onnx.NumElements(shape))
		for i := range v {
			v[i] = float32(r.NormFloat64()) * scale
		}
		return b.Floats(name, shape, v)
	}
}

// countBlocked counts g's KernelDomain nodes of op with attribute blocked set.
func countBlocked(g *onnx.Model, op string) int {
	n := 0
	for _, node := range g.Graph().GetNode() {
		if node.GetDomain() != onnx.KernelDomain || node.GetOpType() != op {
			continue
		}
		for _, a := range node.GetAttribute() {
			if a.GetName() == "blocked" && a.GetI() != 0 {
				n++
			}
		}
	}
	return n
}

// TestBlockedBroadcastAdd: an Add that broadcasts (a per-channel constant
// on a 16-channel activation) never sees a blocked tensor — the layout
// pass gives it an NCHW copy — while an Add of equal shapes next to it
// works on the blocked tensors directly; the graphs compute what the plain
// ones compute.
func TestBlockedBroadcastAdd(t *testing.T) {
	if ok, why := ort.Kernels(); !ok {
		t.Skip(why)
	}
	r := rand.New(rand.NewSource(7))
	b := onnx.NewBuilder("bcast")
	b.Input("x", onnx.Float, -1, 16, 6, 6)
	floats := randomFloats(b, r)
	conv := func(x, out string) {
		b.Node("Conv", []string{x, floats(out+".weight", 0.2, 16, 16, 3, 3)}, []string{out}, onnx.AttrInts("pads", 1, 1, 1, 1))
	}
	// c1 feeds two convolutions, so blocking it pays even with the
	// broadcasting Add reading an NCHW copy
	conv("x", "c1")
	b.Node("Add", []string{"c1", floats("shift", 0.5, 1, 16, 1, 1)}, []string{"a"})
	conv("a", "c2")
	conv("c1", "c3")
	b.Node("Add", []string{"c2", "c3"}, []string{"s"})
	conv("s", "c4")
	pool := b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{"c4"})})
	b.Node("Gemm", []string{pool, floats("fc.weight", 0.3, 16, 4)}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 4)
	b.SetMetadata("slatrun.taps", "")
	m := b.Model()
	for _, kind := range []graphs.Kind{graphs.Train, graphs.Attack} {
		t.Run(string(kind), func(t *testing.T) {
			plain := graphs.Spec{Kind: kind, Batch: 3, Taps: []string{}}
			kern := plain
			kern.Kernels = true
			g := matchGraphs(t, m, plain, ort.Options{Threads: 1}, kern, ort.Options{Threads: 2, Kernels: true})
			blockedAdds := 0
			for _, n := range g.Graph().GetNode() {
				if n.GetOpType() != "Add" || n.GetDomain() != "" || len(n.GetInput()) != 2 {
					continue
				}
				in := n.GetInput()
				switch {
				case in[0] == "c1" || strings.HasPrefix(in[0], "c1."):
					if in[0] != "c1" {
						t.Errorf("the broadcasting Add reads %q, want the NCHW c1", in[0])
					}
				case strings.HasSuffix(in[0], ".nChw16c") && strings.HasSuffix(in[1], ".nChw16c"):
					blockedAdds++
				}
			}
			if blockedAdds != 1 {
				t.Errorf("%d Adds of equal shapes on blocked tensors, want 1 (c2 + c3)", blockedAdds)
			}
			copied := false
			for _, n := range g.Graph().GetNode() {
				copied = copied || n.GetOpType() == onnx.Relayout && n.GetInput()[0] == "c1.nChw16c" && n.GetOutput()[0] == "c1"
			}
			if !copied {
				t.Errorf("c1 should be blocked, with an NCHW copy for the broadcasting Add")
			}
		})
	}
}
