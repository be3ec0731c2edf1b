package onnx

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// The validation step. Every model slatrun reads from bytes goes through
// Validate (Decode and Load run it), and graphs.Derive runs it again on the
// models it is handed in memory, so that nothing downstream (graph
// derivation, ONNX Runtime, the predictor) sees a model whose nodes have the
// wrong number of inputs, attributes outside their ranges (a stride of 0
// makes ONNX Runtime die of SIGFPE), tensors whose declared size does not
// match their data, names defined twice or never, or data kept in external
// files.

// Limits of the validation step.
const (
	// MaxTensorElements bounds the element count of any one tensor:
	// declared (initializers, Constant values, constant shapes) or, in
	// package graphs, inferred. 2³¹ float32 values are 8 GiB.
	MaxTensorElements = 1 << 31
	// MaxAttrExtent bounds the values of the spatial attributes (kernel
	// sizes, strides, dilations, pads, group, block sizes), far beyond any
	// image model and small enough that shape arithmetic never overflows.
	MaxAttrExtent = 1 << 20
	// MaxNodeArity bounds the inputs and outputs of one node.
	MaxNodeArity = 1 << 12
	// MaxGraphDepth bounds the nesting of subgraphs (If, Loop, Scan).
	MaxGraphDepth = 16
	// MaxRank bounds the rank of any tensor (declared or, in package
	// graphs, inferred) and the length of axis lists.
	MaxRank = 64
)

// More errors returned (wrapped) by Validate, Decode and Load.
var (
	// ErrInvalid: the model breaks a rule of ONNX or one of the limits
	// above; the message names the node, tensor or attribute.
	ErrInvalid = errors.New("invalid model")
	// ErrExternalData: a tensor keeps its data in an external file.
	// slatrun refuses such models everywhere (ONNX Runtime would resolve
	// the file's location against the working directory).
	ErrExternalData = errors.New("external tensor data refused")
)

// Validate checks a model before anything reads it: a graph, a known IR
// version, an opset ONNX Runtime implements, no tensor data in external
// files, and a well-formed graph (see checkGraph). Decode and Load run it;
// it never panics, whatever the model holds.
func (m *Model) Validate() error {
	mp := m.Proto
	if mp == nil {
		return ErrNoGraph
	}
	if mp.IrVersion == nil && mp.Graph == nil {
		return fmt.Errorf("%w (no ir_version and no graph)", ErrNotONNX)
	}
	if mp.GetIrVersion() <= 0 {
		return fmt.Errorf("%w (ir_version %d)", ErrNotONNX, mp.GetIrVersion())
	}
	if mp.GetIrVersion() > MaxIRVersion {
		return fmt.Errorf("%w: IR version %d (at most %d)", ErrUnsupported, mp.GetIrVersion(), MaxIRVersion)
	}
	if mp.Graph == nil {
		return ErrNoGraph
	}
	op := m.Opset()
	if op == 0 {
		return fmt.Errorf("%w (no default-domain opset import)", ErrNotONNX)
	}
	if op > MaxOpset {
		return fmt.Errorf("%w: opset %d (at most %d)", ErrUnsupported, op, MaxOpset)
	}
	domains := map[string]bool{}
	for _, o := range mp.GetOpsetImport() {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if domains[d] {
			return fmt.Errorf("%w: the operator set %q is imported twice", ErrInvalid, o.GetDomain())
		}
		domains[d] = true
		if o.GetVersion() < 1 {
			return fmt.Errorf("%w: the operator set %q has version %d", ErrInvalid, o.GetDomain(), o.GetVersion())
		}
	}
	if err := checkExternal(mp); err != nil {
		return err
	}
	c := &checker{opset: op}
	if err := c.graph(mp.Graph, nil, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// ExternalData reports whether t keeps its data in an external file: it is
// marked EXTERNAL or carries external_data entries at all (a runtime may
// honour either).
func ExternalData(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0
}

func externalError(t *onnxpb.TensorProto, where string) error {
	loc := ""
	for _, kv := range t.GetExternalData() {
		if kv.GetKey() == "location" {
			loc = kv.GetValue()
		}
	}
	if where != "" {
		where = " (" + where + ")"
	}
	return fmt.Errorf("%w: tensor %q%s keeps its data in an external file (location %q), which slatrun does not read; save the model with its weights inside the .onnx file",
		ErrExternalData, t.GetName(), where, loc)
}

// checkExternal refuses any tensor with external data anywhere in the
// model: initializers, sparse initializers, attribute tensors, subgraphs,
// model-local functions and training information.
func checkExternal(mp *onnxpb.ModelProto) error {
	if err := externalInGraph(mp.GetGraph(), "the main graph", 0); err != nil {
		return err
	}
	for _, f := range mp.GetFunctions() {
		if err := externalInNodes(f.GetNode(), fmt.Sprintf("function %q", f.GetName()), 0); err != nil {
			return err
		}
	}
	for i, ti := range mp.GetTrainingInfo() {
		if err := externalInGraph(ti.GetInitialization(), fmt.Sprintf("training info %d (initialization)", i), 0); err != nil {
			return err
		}
		if err := externalInGraph(ti.GetAlgorithm(), fmt.Sprintf("training info %d (algorithm)", i), 0); err != nil {
			return err
		}
	}
	return nil
}

func externalInGraph(g *onnxpb.GraphProto, where string, depth int) error {
	if depth > MaxGraphDepth {
		return fmt.Errorf("%w: subgraphs nested deeper than %d levels in %s", ErrInvalid, MaxGraphDepth, where)
	}
	for _, t := range g.GetInitializer() {
		if ExternalData(t) {
			return externalError(t, "initializer in "+where)
		}
	}
	for _, st := range g.GetSparseInitializer() {
		if err := externalInSparse(st, "sparse initializer in "+where); err != nil {
			return err
		}
	}
	return externalInNodes(g.GetNode(), where, depth)
}

func externalInSparse(st *onnxpb.SparseTensorProto, where string) error {
	if t := st.GetValues(); ExternalData(t) {
		return externalError(t, "values in "+where)
	}
	if t := st.GetIndices(); ExternalData(t) {
		return externalError(t, "indices in "+where)
	}
	return nil
}

func externalInNodes(nodes []*onnxpb.NodeProto, where string, depth int) error {
	for _, n := range nodes {
		for _, a := range n.GetAttribute() {
			at := fmt.Sprintf("attribute %q of node %q (%s) in %s", a.GetName(), n.GetName(), n.GetOpType(), where)
			for _, t := range append([]*onnxpb.TensorProto{a.GetT()}, a.GetTensors()...) {
				if ExternalData(t) {
					return externalError(t, at)
				}
			}
			for _, st := range append([]*onnxpb.SparseTensorProto{a.GetSparseTensor()}, a.GetSparseTensors()...) {
				if err := externalInSparse(st, at); err != nil {
					return err
				}
			}
			if g := a.GetG(); g != nil {
				if err := externalInGraph(g, "the subgraph in "+at, depth+1); err != nil {
					return err
				}
			}
			for i, g := range a.GetGraphs() {
				if err := externalInGraph(g, fmt.Sprintf("subgraph %d in %s", i, at), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Elements returns the number of elements of a tensor with the given dims
// (1 for a scalar), or an error if a dimension is negative or the count
// exceeds MaxTensorElements. It never overflows.
func Elements(dims []int64) (int64, error) {
	n := int64(1)
	for i, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is negative (%d)", i, d)
		}
		if d > MaxTensorElements {
			return 0, fmt.Errorf("dimension %d is %d, more than the %d elements slatrun allows in one tensor", i, d, int64(MaxTensorElements))
		}
		n *= d // both ≤ 2³¹: no overflow
		if n > MaxTensorElements {
			return 0, fmt.Errorf("shape %v has more than the %d elements slatrun allows in one tensor", dims, int64(MaxTensorElements))
		}
	}
	return n, nil
}

// checkTensor checks that a tensor's data matches its element type and
// dims (no allocation: only lengths are compared).
func checkTensor(t *onnxpb.TensorProto) error {
	if t == nil {
		return nil
	}
	what := fmt.Sprintf("tensor %q", t.GetName())
	if ExternalData(t) {
		return externalError(t, "")
	}
	if len(t.GetDims()) > MaxRank {
		return fmt.Errorf("%s has rank %d (at most %d)", what, len(t.GetDims()), MaxRank)
	}
	if t.Segment != nil {
		return fmt.Errorf("%s is segmented, which slatrun does not read", what)
	}
	n, err := Elements(t.GetDims())
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	raw := t.GetRawData()
	// typed: the length of the typed field that holds this type's values,
	// per: values per element in it, size: bytes per element in raw_data.
	var typed, per, size int64
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		typed, per, size = int64(len(t.GetFloatData())), 1, 4
	case onnxpb.TensorProto_COMPLEX64:
		typed, per, size = int64(len(t.GetFloatData())), 2, 8
	case onnxpb.TensorProto_DOUBLE:
		typed, per, size = int64(len(t.GetDoubleData())), 1, 8
	case onnxpb.TensorProto_COMPLEX128:
		typed, per, size = int64(len(t.GetDoubleData())), 2, 16
	case onnxpb.TensorProto_INT64:
		typed, per, size = int64(len(t.GetInt64Data())), 1, 8
	case onnxpb.TensorProto_UINT32:
		typed, per, size = int64(len(t.GetUint64Data())), 1, 4
	case onnxpb.TensorProto_UINT64:
		typed, per, size = int64(len(t.GetUint64Data())), 1, 8
	case onnxpb.TensorProto_INT32:
		typed, per, size = int64(len(t.GetInt32Data())), 1, 4
	case onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		typed, per, size = int64(len(t.GetInt32Data())), 1, 2
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8, onnxpb.TensorProto_BOOL,
		17, 18, 19, 20: // the float8 types
		typed, per, size = int64(len(t.GetInt32Data())), 1, 1
	case 21, 22, 23: // uint4, int4, float4e2m1: two values per byte
		packed := (n + 1) / 2
		if raw != nil {
			if int64(len(raw)) != packed {
				return fmt.Errorf("%s has %d bytes of raw data for %d 4-bit values", what, len(raw), n)
			}
			return nil
		}
		if l := int64(len(t.GetInt32Data())); l != packed && l != n {
			return fmt.Errorf("%s has %d values for shape %v", what, l, t.GetDims())
		}
		return nil
	case onnxpb.TensorProto_STRING:
		if raw != nil {
			return fmt.Errorf("%s is a STRING tensor with raw data", what)
		}
		if l := int64(len(t.GetStringData())); l != n {
			return fmt.Errorf("%s has %d strings for shape %v", what, l, t.GetDims())
		}
		return nil
	default:
		return fmt.Errorf("%s has element type %d, which slatrun does not know", what, t.GetDataType())
	}
	if raw != nil {
		if typed != 0 {
			return fmt.Errorf("%s holds both raw data and typed values", what)
		}
		if int64(len(raw)) != n*size {
			return fmt.Errorf("%s has %d bytes of raw data for shape %v of %s (want %d)", what, len(raw), t.GetDims(), dt, n*size)
		}
		return nil
	}
	if typed != n*per {
		return fmt.Errorf("%s has %d values for shape %v of %s (want %d)", what, typed, t.GetDims(), dt, n*per)
	}
	return nil
}

// scope is what a graph (and the graphs around it) defines.
type scope struct {
	parent *scope
	defs   map[string]string              // name → what defines it
	rank   map[string]int                 // known ranks
	consts map[string]*onnxpb.TensorProto // initializers and Constant values
}

func (s *scope) defined(name string) bool {
	for ; s != nil; s = s.parent {
		if _, ok := s.defs[name]; ok {
			return true
		}
	}
	return false
}

func (s *scope) rankOf(name string) (int, bool) {
	if name == "" {
		return 0, false
	}
	for ; s != nil; s = s.parent {
		if r, ok := s.rank[name]; ok {
			return r, true
		}
		if _, ok := s.defs[name]; ok {
			return 0, false
		}
	}
	return 0, false
}

func (s *scope) constant(name string) *onnxpb.TensorProto {
	if name == "" {
		return nil
	}
	for ; s != nil; s = s.parent {
		if t, ok := s.consts[name]; ok {
			return t
		}
		if _, ok := s.defs[name]; ok {
			return nil
		}
	}
	return nil
}

type checker struct {
	opset int64
}

// graph checks one graph: unique, defined names in topological order,
// nodes (checkNode), initializers (checkTensor) and subgraphs.
func (c *checker) graph(g *onnxpb.GraphProto, outer *scope, depth int) error {
	if depth > MaxGraphDepth {
		return fmt.Errorf("subgraphs are nested deeper than %d levels", MaxGraphDepth)
	}
	if len(g.GetSparseInitializer()) > 0 {
		return fmt.Errorf("sparse initializer %q: slatrun does not read sparse initializers", g.GetSparseInitializer()[0].GetValues().GetName())
	}
	sc := &scope{parent: outer, defs: map[string]string{}, rank: map[string]int{}, consts: map[string]*onnxpb.TensorProto{}}
	for _, vi := range g.GetInput() {
		name := vi.GetName()
		if name == "" {
			return fmt.Errorf("a graph input has no name")
		}
		if _, dup := sc.defs[name]; dup {
			return fmt.Errorf("graph input %q is declared twice", name)
		}
		sc.defs[name] = "graph input"
		if _, dims, ok := ValueShape(vi); ok {
			if len(dims) > MaxRank {
				return fmt.Errorf("graph input %q has rank %d (at most %d)", name, len(dims), MaxRank)
			}
			sc.rank[name] = len(dims)
		}
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		name := t.GetName()
		if name == "" {
			return fmt.Errorf("an initializer has no name")
		}
		if inits[name] {
			return fmt.Errorf("initializer %q is defined twice", name)
		}
		inits[name] = true
		if err := checkTensor(t); err != nil {
			return fmt.Errorf("initializer: %w", err)
		}
		if _, isInput := sc.defs[name]; !isInput {
			sc.defs[name] = "initializer"
			sc.rank[name] = len(t.GetDims())
		}
		sc.consts[name] = t
	}
	for i, n := range g.GetNode() {
		if n.GetOpType() == "" {
			return fmt.Errorf("%w (node %d has no op_type)", ErrNotONNX, i)
		}
		if err := c.node(n, sc, depth); err != nil {
			return fmt.Errorf("%s: %w", nodeName(n, i), err)
		}
		for _, in := range n.GetInput() {
			if in != "" && !sc.defined(in) {
				return fmt.Errorf("%s reads %q, which nothing before it defines", nodeName(n, i), in)
			}
		}
		for _, out := range n.GetOutput() {
			if out == "" {
				continue
			}
			if what, dup := sc.defs[out]; dup {
				return fmt.Errorf("%s outputs %q, which is already defined (%s)", nodeName(n, i), out, what)
			}
			sc.defs[out] = nodeName(n, i)
		}
		propagateRanks(n, sc)
	}
	if depth == 0 && len(g.GetOutput()) == 0 {
		return fmt.Errorf("the graph has no output")
	}
	outs := map[string]bool{}
	for _, vi := range g.GetOutput() {
		name := vi.GetName()
		if name == "" {
			return fmt.Errorf("a graph output has no name")
		}
		if outs[name] {
			return fmt.Errorf("graph output %q is declared twice", name)
		}
		outs[name] = true
		if !sc.defined(name) {
			return fmt.Errorf("graph output %q is not produced by any node", name)
		}
	}
	return nil
}

func nodeName(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), n.GetOpType())
	}
	return fmt.Sprintf("node %d (%s)", i, n.GetOpType())
}

func isDefaultDomain(d string) bool { return d == "" || d == "ai.onnx" }

// arity is the number of inputs and outputs an operator takes, over every
// opset version (the union: Reshape took one input before opset 5, two
// since). max −1: variadic. req: how many leading inputs must be non-empty
// names (−1: all of them).
type arity struct{ minIn, maxIn, minOut, maxOut, req int }

var arities = map[string]arity{}

func init() {
	set := func(a arity, ops ...string) {
		for _, op := range ops {
			arities[op] = a
		}
	}
	one := arity{1, 1, 1, 1, 1}
	set(one, "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Ceil", "Celu", "Cos", "Cosh",
		"Det", "Elu", "Erf", "Exp", "EyeLike", "Floor", "Gelu", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
		"HardSigmoid", "HardSwish", "Hardmax", "Identity", "IsInf", "IsNaN", "LRN", "LeakyRelu", "Log", "LogSoftmax",
		"LpNormalization", "MeanVarianceNormalization", "Mish", "Neg", "NonZero", "Not", "Reciprocal", "Relu", "Round",
		"Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Softmax", "Softplus", "Softsign",
		"SpaceToDepth", "DepthToSpace", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Transpose", "Flatten", "Cast",
		"AveragePool", "LpPool", "ArgMax", "ArgMin", "ConstantOfShape", "RandomNormalLike", "RandomUniformLike",
		"Bernoulli", "Multinomial", "ConcatFromSequence", "SequenceLength", "OptionalGetElement", "StringNormalizer",
		"TfIdfVectorizer", "ImageDecoder", "BlackmanWindow", "HammingWindow", "HannWindow", "RegexFullMatch", "Swish")
	set(arity{2, 2, 1, 1, 2}, "Add", "And", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "CastLike", "Compress",
		"Div", "Equal", "Expand", "Gather", "GatherElements", "GatherND", "Greater", "GreaterOrEqual", "Less",
		"LessOrEqual", "MatMul", "Mod", "Mul", "Or", "PRelu", "Pow", "Sub", "Xor", "GridSample", "MaxRoiPool",
		"SequenceAt", "CenterCropPad", "CumSum", "ReverseSequence", "AffineGrid", "StringConcat", "RMSNormalization")
	set(arity{2, 3, 1, 1, 2}, "Conv", "ConvTranspose", "Gemm", "MaxUnpool", "QuantizeLinear", "DequantizeLinear",
		"NegativeLogLikelihoodLoss", "SequenceInsert", "Tile")
	set(arity{2, 4, 1, 1, 2}, "MatMulInteger", "ConvInteger", "STFT")
	set(arity{3, 3, 1, 1, 3}, "Where", "Range", "OneHot", "Scatter", "ScatterElements", "ScatterND", "RoiAlign",
		"Col2Im", "InstanceNormalization", "GroupNormalization")
	set(arity{3, 4, 1, 1, 3}, "RotaryEmbedding")
	set(arity{3, 5, 1, 1, 3}, "DeformConv")
	set(arity{5, 5, 1, 1, 5}, "MelWeightMatrix")
	set(arity{1, 3, 1, 1, 1}, "Clip", "DFT")
	set(arity{1, 4, 1, 1, 1}, "Pad", "Resize")
	set(arity{1, 5, 1, 1, 1}, "Slice")
	set(arity{1, 2, 1, 1, 1}, "Reshape", "Squeeze", "Unsqueeze", "Upsample", "SplitToSequence", "SequenceErase", "Trilu",
		"ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceLogSum",
		"ReduceLogSumExp", "ReduceSumSquare")
	set(arity{1, 2, 2, 2, 1}, "TopK")
	set(arity{0, 0, 1, 1, 0}, "Constant", "RandomNormal", "RandomUniform", "SequenceEmpty")
	set(arity{0, 1, 1, 1, 0}, "Optional", "OptionalHasElement")
	set(arity{1, 1, 1, 2, 1}, "MaxPool")
	set(arity{1, 3, 1, 2, 1}, "Dropout")
	set(arity{5, 5, 1, 5, 5}, "BatchNormalization")
	set(arity{2, 3, 1, 3, 2}, "LayerNormalization")
	set(arity{1, 2, 1, -1, 1}, "Split")
	set(arity{1, -1, 1, 1, -1}, "Concat", "Sum", "Max", "Min", "Mean", "Einsum", "SequenceConstruct")
	set(arity{2, 5, 1, 1, 2}, "NonMaxSuppression")
	set(arity{1, 1, 3, 3, 1}, "DynamicQuantizeLinear")
	set(arity{8, 9, 1, 1, 8}, "QLinearConv")
	set(arity{8, 8, 1, 1, 8}, "QLinearMatMul")
	set(arity{2, 3, 1, 2, 2}, "SoftmaxCrossEntropyLoss")
	set(arity{3, 8, 0, 3, 3}, "LSTM")
	set(arity{3, 6, 0, 2, 3}, "GRU", "RNN")
	set(arity{1, 1, 1, -1, 1}, "If")
	set(arity{2, -1, 1, -1, 0}, "Loop")
	set(arity{1, -1, 1, -1, 0}, "Scan", "SequenceMap")
	set(arity{1, 1, 1, 4, 1}, "Unique")
	set(arity{1, 1, 2, 2, 1}, "StringSplit")
	set(arity{3, 6, 1, 4, 3}, "Attention")
}

// CheckArity checks a node's inputs and outputs against what op (of
// domain) takes: their counts, the inputs that must be present, and a
// present first output. Ops it does not know get only the MaxNodeArity
// bound. Package graphs runs it on every node it infers.
func CheckArity(domain, op string, inputs, outputs []string) error {
	if len(inputs) > MaxNodeArity || len(outputs) > MaxNodeArity {
		return fmt.Errorf("%d inputs and %d outputs (at most %d each)", len(inputs), len(outputs), MaxNodeArity)
	}
	a, ok := arities[op]
	if !ok || !isDefaultDomain(domain) {
		return nil
	}
	count := func(lo, hi int) string {
		switch {
		case hi < 0:
			return fmt.Sprintf("at least %d", lo)
		case lo == hi:
			return fmt.Sprint(lo)
		}
		return fmt.Sprintf("%d to %d", lo, hi)
	}
	if len(inputs) < a.minIn || (a.maxIn >= 0 && len(inputs) > a.maxIn) {
		return fmt.Errorf("%s takes %s inputs, this node has %d", op, count(a.minIn, a.maxIn), len(inputs))
	}
	if len(outputs) < a.minOut || (a.maxOut >= 0 && len(outputs) > a.maxOut) {
		return fmt.Errorf("%s has %s outputs, this node has %d", op, count(a.minOut, a.maxOut), len(outputs))
	}
	req := a.req
	if req < 0 || req > len(inputs) {
		req = len(inputs)
	}
	for i := 0; i < req; i++ {
		if inputs[i] == "" {
			return fmt.Errorf("input %d of %s is required but empty", i, op)
		}
	}
	if a.minOut > 0 && outputs[0] == "" {
		return fmt.Errorf("the first output of %s is required but empty", op)
	}
	return nil
}

// attrKinds are the types of the attributes slatrun reads, the same for
// every default-domain op that has them (except "value", see attrKind).
var attrKinds = map[string]onnxpb.AttributeProto_AttributeType{}

func init() {
	for _, s := range []string{"strides", "pads", "dilations", "kernel_shape", "perm", "output_padding", "output_shape",
		"split", "starts", "ends", "axes", "value_ints", "consumed_inputs"} {
		attrKinds[s] = onnxpb.AttributeProto_INTS
	}
	for _, s := range []string{"group", "axis", "keepdims", "noop_with_empty_axes", "allowzero", "transA", "transB",
		"ceil_mode", "count_include_pad", "num_outputs", "start", "end", "to", "training_mode", "blocksize",
		"storage_order", "value_int", "largest", "sorted", "select_last_index", "exclusive", "reverse", "spatial",
		"is_test", "size"} {
		attrKinds[s] = onnxpb.AttributeProto_INT
	}
	for _, s := range []string{"alpha", "beta", "epsilon", "momentum", "value_float", "ratio", "gamma", "lambd"} {
		attrKinds[s] = onnxpb.AttributeProto_FLOAT
	}
	for _, s := range []string{"auto_pad", "mode"} {
		attrKinds[s] = onnxpb.AttributeProto_STRING
	}
}

// attrKind is the type attribute name must have on a default-domain op,
// or UNDEFINED if the check does not constrain it.
func attrKind(op, name string) onnxpb.AttributeProto_AttributeType {
	switch {
	case name == "value" && (op == "Constant" || op == "ConstantOfShape"):
		return onnxpb.AttributeProto_TENSOR
	case name == "value" && op == "Pad":
		return onnxpb.AttributeProto_FLOAT
	case (name == "min" || name == "max") && op == "Clip":
		return onnxpb.AttributeProto_FLOAT
	case name == "bias" && (op == "LRN" || op == "Shrink"):
		return onnxpb.AttributeProto_FLOAT
	}
	return attrKinds[name]
}

func attrOf(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// intsAttr returns an INTS attribute's values, or nil, false if absent or
// of another type.
func intsAttr(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	a := attrOf(n, name)
	if a == nil || a.GetType() != onnxpb.AttributeProto_INTS {
		return nil, false
	}
	return a.GetInts(), true
}

func intAttr(n *onnxpb.NodeProto, name string) (int64, bool) {
	a := attrOf(n, name)
	if a == nil || a.GetType() != onnxpb.AttributeProto_INT {
		return 0, false
	}
	return a.GetI(), true
}

// node checks one node: arity, attributes (names, types, ranges, tensors,
// subgraphs) and the op-specific rules.
func (c *checker) node(n *onnxpb.NodeProto, sc *scope, depth int) error {
	op := n.GetOpType()
	def := isDefaultDomain(n.GetDomain())
	if err := CheckArity(n.GetDomain(), op, n.GetInput(), n.GetOutput()); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, a := range n.GetAttribute() {
		name := a.GetName()
		if name == "" {
			return fmt.Errorf("an attribute has no name")
		}
		if seen[name] {
			return fmt.Errorf("attribute %q is given twice", name)
		}
		seen[name] = true
		if a.GetRefAttrName() != "" {
			return fmt.Errorf("attribute %q refers to a function attribute (%q) outside a function", name, a.GetRefAttrName())
		}
		if def {
			if want := attrKind(op, name); want != onnxpb.AttributeProto_UNDEFINED && a.GetType() != want {
				return fmt.Errorf("attribute %q is %s, want %s", name, a.GetType(), want)
			}
		}
		for _, t := range append([]*onnxpb.TensorProto{a.GetT()}, a.GetTensors()...) {
			if err := checkTensor(t); err != nil {
				return fmt.Errorf("attribute %q: %w", name, err)
			}
		}
		for _, st := range append([]*onnxpb.SparseTensorProto{a.GetSparseTensor()}, a.GetSparseTensors()...) {
			if st == nil {
				continue
			}
			if _, err := Elements(st.GetDims()); err != nil {
				return fmt.Errorf("attribute %q: sparse tensor: %w", name, err)
			}
			for _, t := range []*onnxpb.TensorProto{st.GetValues(), st.GetIndices()} {
				if err := checkTensor(t); err != nil {
					return fmt.Errorf("attribute %q: sparse tensor: %w", name, err)
				}
			}
		}
		for _, g := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
			if g == nil {
				continue
			}
			if err := c.graph(g, sc, depth+1); err != nil {
				return fmt.Errorf("subgraph %q in attribute %q: %w", g.GetName(), name, err)
			}
		}
		if err := attrRange(op, def, a, len(n.GetOutput())); err != nil {
			return err
		}
	}
	if !def {
		return nil
	}
	return c.opRules(n, sc)
}

// attrRange checks the value ranges of the attributes slatrun knows by
// name, on ops of any domain (ONNX Runtime's contrib convolutions divide by
// strides too) when the attribute has the expected type.
func attrRange(op string, def bool, a *onnxpb.AttributeProto, nOut int) error {
	name := a.GetName()
	inRange := func(v []int64, lo, hi int64, what string) error {
		for i, x := range v {
			if x < lo || x > hi {
				at := fmt.Sprintf("%s[%d]", name, i)
				if a.GetType() == onnxpb.AttributeProto_INT {
					at = name
				}
				return fmt.Errorf("attribute %s = %d: %s must be in [%d, %d]", at, x, what, lo, hi)
			}
		}
		return nil
	}
	switch a.GetType() {
	case onnxpb.AttributeProto_INTS:
		v := a.GetInts()
		switch name {
		case "strides", "dilations", "kernel_shape":
			return inRange(v, 1, MaxAttrExtent, name)
		case "pads":
			if len(v)%2 != 0 {
				return fmt.Errorf("attribute pads has %d values, an odd number", len(v))
			}
			if def && op == "Pad" { // Pad-2's pads may crop
				return inRange(v, -MaxAttrExtent, MaxAttrExtent, "pads")
			}
			return inRange(v, 0, MaxAttrExtent, "pads")
		case "output_padding", "output_shape":
			return inRange(v, 0, MaxAttrExtent, name)
		case "split":
			return inRange(v, 0, MaxTensorElements, "split sizes")
		case "perm":
			if len(v) > MaxRank {
				return fmt.Errorf("attribute perm has %d values (at most %d)", len(v), MaxRank)
			}
			seen := make([]bool, len(v))
			for i, p := range v {
				if p < 0 || p >= int64(len(v)) || seen[p] {
					return fmt.Errorf("attribute perm %v is not a permutation of 0..%d (entry %d)", v, len(v)-1, i)
				}
				seen[p] = true
			}
		case "axes":
			if len(v) > MaxRank {
				return fmt.Errorf("attribute axes has %d values (at most %d)", len(v), MaxRank)
			}
			seen := map[int64]bool{}
			for _, x := range v {
				if seen[x] {
					return fmt.Errorf("attribute axes %v repeats axis %d", v, x)
				}
				seen[x] = true
			}
		}
	case onnxpb.AttributeProto_INT:
		v := a.GetI()
		switch {
		case name == "group" || name == "blocksize" || (name == "size" && op == "LRN"):
			return inRange([]int64{v}, 1, MaxAttrExtent, name)
		case name == "num_outputs":
			if err := inRange([]int64{v}, 1, MaxNodeArity, name); err != nil {
				return err
			}
			if def && op == "Split" && v != int64(nOut) {
				return fmt.Errorf("attribute num_outputs = %d, but the node has %d outputs", v, nOut)
			}
		}
	case onnxpb.AttributeProto_STRING:
		if name == "auto_pad" {
			switch string(a.GetS()) {
			case "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "":
			default:
				return fmt.Errorf("attribute auto_pad = %q (want NOTSET, SAME_UPPER, SAME_LOWER or VALID)", a.GetS())
			}
		}
	}
	return nil
}

// convOps take input X, weight W ([M, C/group, k...] for Conv,
// [C, M/group, k...] for ConvTranspose) and spatial attributes.
var convOps = map[string]bool{"Conv": true, "ConvTranspose": true, "ConvInteger": true, "DeformConv": true}

var poolOps = map[string]bool{"MaxPool": true, "AveragePool": true, "LpPool": true}

// axisOps: ops with an "axis" attribute over the rank of input 0 (+1 for
// Flatten, whose axis may equal the rank, and OneHot, which adds one).
var axisOps = map[string]int{
	"Softmax": 0, "LogSoftmax": 0, "Hardmax": 0, "Concat": 0, "Gather": 0, "GatherElements": 0,
	"ScatterElements": 0, "ArgMax": 0, "ArgMin": 0, "Split": 0, "TopK": 0, "Compress": 0,
	"LayerNormalization": 0, "LpNormalization": 0, "Flatten": 1, "OneHot": 1,
}

var reduceOps = map[string]bool{"ReduceMax": true, "ReduceMean": true, "ReduceMin": true, "ReduceProd": true,
	"ReduceSum": true, "ReduceL1": true, "ReduceL2": true, "ReduceLogSum": true, "ReduceLogSumExp": true,
	"ReduceSumSquare": true}

func checkAxis(name string, v int64, rank int) error {
	if v < -int64(rank) || v >= int64(rank) {
		return fmt.Errorf("%s %d is out of range for a rank-%d input", name, v, rank)
	}
	return nil
}

// opRules are the checks that need more than one attribute, or the ranks
// and initializers the graph declares.
func (c *checker) opRules(n *onnxpb.NodeProto, sc *scope) error {
	op := n.GetOpType()
	in := n.GetInput()
	input := func(i int) string {
		if i < len(in) {
			return in[i]
		}
		return ""
	}
	xr, xrOK := sc.rankOf(input(0))
	switch {
	case convOps[op] || poolOps[op]:
		if err := spatialAttrs(n, sc, xr, xrOK); err != nil {
			return err
		}
	case op == "BatchNormalization":
		if xrOK && xr < 2 {
			return fmt.Errorf("input %q has rank %d; BatchNormalization needs [N, C, ...]", input(0), xr)
		}
		sizes := map[int64]bool{}
		for i := 1; i < 5; i++ {
			if t := sc.constant(input(i)); t != nil {
				e, _ := Elements(t.GetDims())
				sizes[e] = true
			}
		}
		if len(sizes) > 1 {
			return fmt.Errorf("scale, bias, mean and variance have different sizes")
		}
	case op == "Transpose":
		if perm, ok := intsAttr(n, "perm"); ok && xrOK && len(perm) != xr {
			return fmt.Errorf("perm %v does not match the input's rank %d", perm, xr)
		}
	case op == "Div" || op == "Mod":
		if t := sc.constant(input(1)); t != nil {
			if zero, known := hasIntegerZero(t); known && zero {
				return fmt.Errorf("integer division by zero: divisor %q holds a 0", input(1))
			}
		}
	case op == "Constant":
		if len(n.GetAttribute()) != 1 {
			return fmt.Errorf("a Constant needs exactly one value attribute, has %d", len(n.GetAttribute()))
		}
	case op == "ConstantOfShape" || op == "Expand":
		if t := sc.constant(input(map[string]int{"ConstantOfShape": 0, "Expand": 1}[op])); t != nil {
			if v, known := integerValues(t); known {
				if len(v) > MaxNodeArity {
					return fmt.Errorf("shape of %d dimensions", len(v))
				}
				if op == "ConstantOfShape" {
					if _, err := Elements(v); err != nil {
						return fmt.Errorf("shape %q: %w", input(0), err)
					}
				} else {
					for i, d := range v {
						if d < 0 || d > MaxTensorElements {
							return fmt.Errorf("shape %q: dimension %d is %d", input(1), i, d)
						}
					}
				}
			}
		}
	}
	if extra, ok := axisOps[op]; ok && xrOK {
		if v, ok := intAttr(n, "axis"); ok {
			if err := checkAxis("axis", v, xr+extra); err != nil {
				return err
			}
		}
	}
	if axes, ok := intsAttr(n, "axes"); ok && xrOK {
		r := -1
		switch {
		case reduceOps[op] || op == "Squeeze":
			r = xr
		case op == "Unsqueeze":
			r = xr + len(axes)
		}
		for _, a := range axes {
			if r >= 0 {
				if err := checkAxis("axis", a, r); err != nil {
					return fmt.Errorf("attribute axes: %w", err)
				}
			}
		}
	}
	return nil
}

// spatialAttrs checks a convolution's or pool's attributes against each
// other, the weight (if it is an initializer) and the input's rank.
func spatialAttrs(n *onnxpb.NodeProto, sc *scope, xr int, xrOK bool) error {
	op := n.GetOpType()
	k, hasK := intsAttr(n, "kernel_shape")
	r := -1
	if hasK {
		r = len(k)
	}
	if poolOps[op] && !hasK {
		return fmt.Errorf("%s needs a kernel_shape attribute", op)
	}
	if convOps[op] {
		w := n.GetInput()[1]
		if t := sc.constant(w); t != nil {
			wd := t.GetDims()
			if len(wd) < 3 {
				return fmt.Errorf("weight %q has shape %v; a convolution's weight is [M, C/group, k...]", w, wd)
			}
			if hasK && !slices.Equal(k, wd[2:]) {
				return fmt.Errorf("kernel_shape %v does not match the weight's shape %v", k, wd)
			}
			r = len(wd) - 2
			g := int64(1)
			if v, ok := intAttr(n, "group"); ok {
				g = v
			}
			if g >= 1 && wd[0]%g != 0 {
				return fmt.Errorf("group %d does not divide the weight's first dimension %d", g, wd[0])
			}
			if xrOK && xr != len(wd) {
				return fmt.Errorf("input of rank %d and weight of shape %v", xr, wd)
			}
		}
	}
	if r < 0 && xrOK {
		r = xr - 2
	}
	if xrOK && xr < 3 {
		return fmt.Errorf("input %q has rank %d; %s needs [N, C, spatial...]", n.GetInput()[0], xr, op)
	}
	if r < 0 {
		return nil
	}
	if xrOK && xr != r+2 {
		return fmt.Errorf("kernel of %d spatial axes on an input of rank %d", r, xr)
	}
	for _, c := range []struct {
		name string
		mul  int
	}{{"strides", 1}, {"dilations", 1}, {"pads", 2}, {"output_padding", 1}, {"output_shape", 1}} {
		if v, ok := intsAttr(n, c.name); ok && len(v) != c.mul*r {
			return fmt.Errorf("attribute %s has %d values for %d spatial axes (want %d)", c.name, len(v), r, c.mul*r)
		}
	}
	if poolOps[op] {
		if pads, ok := intsAttr(n, "pads"); ok {
			for i := 0; i < r; i++ {
				if pads[i] >= k[i] || pads[i+r] >= k[i] {
					return fmt.Errorf("pads %v: a pool's padding must be smaller than its kernel %v", pads, k)
				}
			}
		}
	}
	return nil
}

// integerValues returns the values of an integer tensor (known false for
// other element types or data it cannot read). t has passed checkTensor.
func integerValues(t *onnxpb.TensorProto) ([]int64, bool) {
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT32:
		v, err := TensorInt64s(t)
		return v, err == nil
	}
	return nil, false
}

// hasIntegerZero reports whether an integer tensor holds a zero (known
// false for float tensors: a float division by zero is no crash).
func hasIntegerZero(t *onnxpb.TensorProto) (zero, known bool) {
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	switch dt {
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT32:
		v, ok := integerValues(t)
		if !ok {
			return false, false
		}
		for _, x := range v {
			if x == 0 {
				return true, true
			}
		}
		return false, true
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16,
		onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		if raw := t.GetRawData(); raw != nil {
			size := map[onnxpb.TensorProto_DataType]int{onnxpb.TensorProto_UINT8: 1, onnxpb.TensorProto_INT8: 1,
				onnxpb.TensorProto_UINT16: 2, onnxpb.TensorProto_INT16: 2, onnxpb.TensorProto_UINT32: 4, onnxpb.TensorProto_UINT64: 8}[dt]
			for i := 0; i+size <= len(raw); i += size {
				z := true
				for _, b := range raw[i : i+size] {
					z = z && b == 0
				}
				if z {
					return true, true
				}
			}
			return false, true
		}
		for _, x := range t.GetInt32Data() {
			if x == 0 {
				return true, true
			}
		}
		for _, x := range t.GetUint64Data() {
			if x == 0 {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// sameRank are ops whose (first) output has the rank of their first input.
var sameRank = map[string]bool{}

func init() {
	for _, op := range strings.Fields(`Abs Acos Acosh Asin Asinh Atan Atanh BitwiseNot Ceil Celu Cos Cosh Elu Erf Exp
		Floor Gelu HardSigmoid HardSwish Hardmax Identity IsInf IsNaN LRN LeakyRelu Log LogSoftmax LpNormalization
		MeanVarianceNormalization Mish Neg Not Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh Softmax
		Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Cast CastLike Clip Dropout BatchNormalization
		InstanceNormalization GroupNormalization LayerNormalization Conv ConvTranspose MaxPool AveragePool LpPool
		GlobalAveragePool GlobalMaxPool GlobalLpPool Transpose Slice Pad Tile PRelu Swish`) {
		sameRank[op] = true
	}
}

var broadcastRank = map[string]bool{}

func init() {
	for _, op := range strings.Fields(`Add Sub Mul Div Pow Max Min Sum Mean And Or Xor Equal Less Greater
		LessOrEqual GreaterOrEqual Where Mod BitShift BitwiseAnd BitwiseOr BitwiseXor`) {
		broadcastRank[op] = true
	}
}

// propagateRanks records the ranks of n's outputs where they follow from
// its inputs' ranks without shape inference.
func propagateRanks(n *onnxpb.NodeProto, sc *scope) {
	if !isDefaultDomain(n.GetDomain()) {
		return
	}
	op, in, out := n.GetOpType(), n.GetInput(), n.GetOutput()
	set := func(i, r int) {
		if i < len(out) && out[i] != "" && r >= 0 {
			sc.rank[out[i]] = r
		}
	}
	r0, ok0 := 0, false
	if len(in) > 0 {
		r0, ok0 = sc.rankOf(in[0])
	}
	switch {
	case op == "Constant":
		a := n.GetAttribute()
		if len(a) != 1 {
			return
		}
		switch a[0].GetName() {
		case "value":
			if t := a[0].GetT(); t != nil {
				set(0, len(t.GetDims()))
				sc.consts[out[0]] = t
			}
		case "value_ints", "value_floats", "value_strings":
			set(0, 1)
		case "value_int", "value_float", "value_string":
			set(0, 0)
		}
	case sameRank[op]:
		if ok0 {
			set(0, r0)
			if op == "MaxPool" {
				set(1, r0)
			}
		}
	case op == "Split":
		if ok0 {
			for i := range out {
				set(i, r0)
			}
		}
	case op == "Concat":
		for _, s := range in {
			if r, ok := sc.rankOf(s); ok {
				set(0, r)
				return
			}
		}
	case op == "TopK":
		if ok0 {
			set(0, r0)
			set(1, r0)
		}
	case broadcastRank[op]:
		m := 0
		for _, s := range in {
			r, ok := sc.rankOf(s)
			if !ok {
				return
			}
			m = max(m, r)
		}
		set(0, m)
	case op == "Flatten" || op == "Gemm" || op == "NonZero":
		set(0, 2)
	case op == "Shape":
		set(0, 1)
	case op == "Size":
		set(0, 0)
	case op == "MatMul" && len(in) > 1:
		r1, ok1 := sc.rankOf(in[1])
		if ok0 && ok1 && r0 >= 2 && r1 >= 2 {
			set(0, max(r0, r1))
		}
	case op == "Gather" && len(in) > 1:
		r1, ok1 := sc.rankOf(in[1])
		if ok0 && ok1 && r0 >= 1 {
			set(0, r0+r1-1)
		}
	case op == "GatherElements" && len(in) > 1:
		if r1, ok1 := sc.rankOf(in[1]); ok1 {
			set(0, r1)
		}
	case op == "Reshape":
		if len(in) > 1 {
			if t := sc.constant(in[1]); t != nil && len(t.GetDims()) == 1 && t.GetDims()[0] <= math.MaxInt32 {
				set(0, int(t.GetDims()[0]))
			}
		}
	case (reduceOps[op] || op == "ArgMax" || op == "ArgMin") && ok0:
		if k, ok := intAttr(n, "keepdims"); !ok || k != 0 {
			set(0, r0)
		}
	}
}

// CheckFinite returns an error naming the first float initializer that
// holds a NaN or an infinity. Such a model's outputs are meaningless (a
// diverged training run or a corrupt file), so the CLI and the trainer
// refuse it before any work instead of failing later with a cause that
// points elsewhere.
func (m *Model) CheckFinite() error {
	for _, t := range m.Graph().GetInitializer() {
		if DType(t.GetDataType()) != Float || ExternalData(t) {
			continue
		}
		v, err := TensorFloats(t)
		if err != nil {
			return err
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("initializer %q holds %v (element %d of %d): its weights are broken (a diverged training run or a corrupt file)", t.GetName(), x, i, len(v))
			}
		}
	}
	return nil
}
