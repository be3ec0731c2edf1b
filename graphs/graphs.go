package graphs

import (
	"fmt"
	"strconv"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Kind names what a derived graph computes (docs/contract.md).
type Kind string

// The graph kinds.
const (
	// Forward is the plain model: weights as initializers, batch made
	// concrete, metadata recorded.
	Forward Kind = contract.KindForward
	// Attack runs in training mode (BN on batch statistics) and outputs
	// loss, logits, grad.x, grad.<tap> and <stat>.next (the BN running
	// statistics updated by this pass); no parameter gradients.
	Attack Kind = contract.KindAttack
	// Train runs in training mode at the perturbed point (delta.<tap>
	// inputs, SLAT's domain clip) and outputs loss, logits, grad.<param>
	// and <stat>.next.
	Train Kind = contract.KindTrain
	// Eval runs with BN on running statistics and outputs logits,
	// loss.each and grad.x of the summed per-example loss.
	Eval Kind = contract.KindEval
	// KL is TRADES's inner maximization (DeriveTRADES): parameters and
	// running statistics as inputs, BN on the running statistics (the
	// reference attacks in eval mode), input logits.ref; outputs
	// loss.each (the per-example KL divergence), logits and grad.x of
	// Σ loss.each.
	KL Kind = contract.KindKL
	// TRADES is TRADES's outer loss (DeriveTRADES): the network on x and
	// on x.adv with shared parameters, each pass with its own batch
	// statistics; outputs loss (CE + β·KL), logits, logits.adv,
	// grad.<param> and <stat>.next.
	TRADES Kind = contract.KindTRADES
)

// Metadata keys written into every derived graph: aliases of the
// constants of package contract, where they are defined, kept for callers
// that use these names.
const (
	MetaKind   = contract.MetaKind
	MetaTaps   = contract.MetaTaps
	MetaParams = contract.MetaParams
	MetaStats  = contract.MetaStats
	MetaBatch  = contract.MetaBatch
	MetaLoss   = contract.MetaLoss
)

// Spec says which graph Derive builds.
type Spec struct {
	Kind Kind
	// Batch is the concrete batch size; derived graphs are specialized to
	// it and all their shapes are static.
	Batch int
	// Taps are tensor names of the forward graph to perturb (train) or
	// differentiate (attack); nil means the forward's slatrun.taps
	// metadata, if any; an empty, non-nil slice means no taps.
	Taps []string
	// NoDomainClip turns SLAT's domain clip off (train kind): the tap is
	// then h + δ.
	NoDomainClip bool
	// InputGrad adds grad.x to the train kind's outputs (Free-m needs it).
	InputGrad bool
	// TapRange adds range.<tap> to the attack kind's outputs: hi − lo of
	// each tap per sample and channel, over the axes of the domain clip
	// (SLAT's --latent-scale range).
	TapRange bool
	// TapL1 adds l1.<tap> to the attack kind's outputs: Σ|grad.<tap>|
	// over the batch (ReduceL1, float32; SLAT's logged ‖∂ℓ/∂h‖₁, taken on
	// ONNX Runtime's threads instead of the Go side).
	TapL1 bool
	// Loss is the eval kind's per-example loss, one of the heads of
	// package contract: "ce" (default), "cw" (the
	// CW margin max_{j≠y} z_j − z_y) or "dlr" (Croce & Hein's
	// difference-of-logits ratio, −(z_y − max_{j≠y} z_j)/(z_π1 − z_π3)) or
	// "dlr-t" (its targeted form −(z_y − z_t)/(z_π1 − (z_π3+z_π4)/2), with
	// an extra int64 input "target" [Batch]).
	Loss string
	// Beta is the trades kind's weight β of the KL term (0 means the
	// clean cross-entropy alone).
	Beta float32
	// BNMomentum is the running-statistics momentum in PyTorch's
	// convention (new = (1−m)·old + m·batch); 0 means 0.1.
	BNMomentum float32
	// NCHWcBlock, if positive, runs every eligible convolution (2-D,
	// group 1, channel counts multiples of it; and, for the input gradient,
	// stride and dilation 1) in ONNX Runtime's blocked NCHWc CPU kernels
	// with this channel block size, the weights reordered inside the graph.
	// It must equal the loaded library's block size (ort.NCHWcBlock); such
	// graphs run only on ONNX Runtime's CPU provider.
	NCHWcBlock int
	// Kernels emits slatrun's own CPU kernels (domain onnx.KernelDomain)
	// where they apply: the weight gradient of every 2-D, group-1 Conv
	// becomes one ConvGradWeight node (oneDNN's backward-weights
	// convolution) instead of a Gemm per kernel offset, and in the
	// training kinds every float32 BatchNormalization becomes one
	// BatchNormTrain node forward and one BatchNormTrainGrad node backward,
	// with a Relu that is its output's only consumer fused into both
	// (the eval kind keeps inference-form BN). Such graphs run
	// only in sessions with ort.Options.Kernels on the CPU provider where
	// ort.Kernels() is true (ort.Options.OneDNN gives the value).
	Kernels bool
}

// Info is what a derived graph's metadata says about it.
type Info struct {
	Kind   Kind
	Batch  int
	Loss   string
	Taps   []string
	Params []string
	Stats  []string
}

// ReadInfo reads a graph's slatrun.* metadata.
func ReadInfo(m *onnx.Model) Info {
	var in Info
	if v, ok := m.Metadata(contract.MetaKind); ok {
		in.Kind = Kind(v)
	}
	if v, ok := m.Metadata(contract.MetaBatch); ok {
		in.Batch, _ = strconv.Atoi(v)
	}
	in.Loss, _ = m.Metadata(contract.MetaLoss)
	v, _ := m.Metadata(contract.MetaTaps)
	in.Taps = contract.SplitList(v)
	v, _ = m.Metadata(contract.MetaParams)
	in.Params = contract.SplitList(v)
	v, _ = m.Metadata(contract.MetaStats)
	in.Stats = contract.SplitList(v)
	return in
}

// Tensor is a named float32 tensor (a parameter or a running statistic).
type Tensor struct {
	Name  string
	Shape []int64
	Data  []float32
}

// Parameters returns the forward graph's trainable parameters (float
// initializers in weight and bias slots: Conv/ConvTranspose W and B, Gemm B
// and C, MatMul operands and the bias Add after a MatMul, PRelu slopes,
// BatchNormalization scale and bias) and its batch-norm running statistics
// (mean, var), each in order of first use. The order is stable: it is the
// order of slatrun.params and slatrun.stats in derived graphs.
func Parameters(forward *onnx.Model) (params, stats []Tensor, err error) {
	if forward == nil || forward.Graph() == nil {
		return nil, nil, fmt.Errorf("graphs: parameters: %w", onnx.ErrNoGraph)
	}
	ps, ss := classifyNames(forward)
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range forward.Graph().GetInitializer() {
		inits[t.GetName()] = t
	}
	get := func(names []string) ([]Tensor, error) {
		var out []Tensor
		for _, n := range names {
			t := inits[n]
			d, err := onnx.TensorFloats(t)
			if err != nil {
				return nil, fmt.Errorf("graphs: parameters: %w", err)
			}
			out = append(out, Tensor{Name: n, Shape: append([]int64{}, t.GetDims()...), Data: d})
		}
		return out, nil
	}
	if params, err = get(ps); err != nil {
		return nil, nil, err
	}
	if stats, err = get(ss); err != nil {
		return nil, nil, err
	}
	return params, stats, nil
}

// classifyNames runs the parameter classification on the raw graph (no shape
// inference needed).
func classifyNames(m *onnx.Model) (params, stats []string) {
	g := &fgraph{info: map[string]*tinfo{}, inits: map[string]*onnxpb.TensorProto{}}
	for _, t := range m.Graph().GetInitializer() {
		g.inits[t.GetName()] = t
		g.info[t.GetName()] = &tinfo{dt: onnx.DType(t.GetDataType())}
	}
	for _, pn := range m.Graph().GetNode() {
		g.nodes = append(g.nodes, &node{op: pn.GetOpType(), in: pn.GetInput(), out: pn.GetOutput()})
	}
	g.classify()
	return g.params, g.stats
}

// WithWeights returns a copy of forward whose initializers named in values
// hold the given data (a checkpoint). A name that is not an initializer, or
// data whose size does not match the initializer's shape, is an error.
func WithWeights(forward *onnx.Model, values map[string][]float32) (*onnx.Model, error) {
	if forward == nil || forward.Graph() == nil {
		return nil, fmt.Errorf("graphs: with weights: %w", onnx.ErrNoGraph)
	}
	m := forward.Clone()
	inits := m.Graph().GetInitializer()
	found := map[string]bool{}
	for i, t := range inits {
		v, ok := values[t.GetName()]
		if !ok {
			continue
		}
		found[t.GetName()] = true
		if onnx.DType(t.GetDataType()) != onnx.Float {
			return nil, fmt.Errorf("graphs: with weights: %q is %s, not FLOAT", t.GetName(), onnx.DType(t.GetDataType()))
		}
		if n := onnx.NumElements(t.GetDims()); n != int64(len(v)) {
			return nil, fmt.Errorf("graphs: with weights: %q has shape %v (%d values), got %d values", t.GetName(), t.GetDims(), n, len(v))
		}
		inits[i] = onnx.FloatTensor(t.GetName(), t.GetDims(), v)
	}
	for name := range values {
		if !found[name] {
			return nil, fmt.Errorf("graphs: with weights: the forward graph has no initializer %q", name)
		}
	}
	return m, nil
}

// UnsupportedOpError reports a node on a differentiated path whose op has
// no gradient rule (or that slatrun cannot handle at all).
type UnsupportedOpError struct {
	Node, Op string
	Detail   string
}

func (e *UnsupportedOpError) Error() string {
	s := fmt.Sprintf("graphs: derive: node %q: no gradient rule for op %s", e.Node, e.Op)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}
