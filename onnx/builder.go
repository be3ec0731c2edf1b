package onnx

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Builder assembles a graph node by node. Names handed out by Fresh and Op
// never collide with names already in the graph.
type Builder struct {
	g     *onnxpb.GraphProto
	opset int64
	doms  []*onnxpb.OperatorSetIdProto // imports of non-default domains
	meta  [][2]string
	used  map[string]bool
	next  int
}

// NewBuilder starts an empty graph with the given name, using DefaultOpset.
func NewBuilder(name string) *Builder {
	return &Builder{g: &onnxpb.GraphProto{Name: proto.String(name)}, opset: DefaultOpset, used: map[string]bool{}}
}

// Edit returns a Builder that appends to a copy of m's graph; its names are
// reserved.
func Edit(m *Model) *Builder {
	c := m.Clone()
	b := &Builder{g: c.Proto.Graph, opset: m.Opset(), used: map[string]bool{}}
	for _, o := range c.Proto.GetOpsetImport() {
		if d := o.GetDomain(); d != "" && d != "ai.onnx" {
			b.doms = append(b.doms, o)
		}
	}
	for _, p := range c.Proto.GetMetadataProps() {
		b.meta = append(b.meta, [2]string{p.GetKey(), p.GetValue()})
	}
	for _, v := range b.g.GetInput() {
		b.used[v.GetName()] = true
	}
	for _, t := range b.g.GetInitializer() {
		b.used[t.GetName()] = true
	}
	for _, n := range b.g.GetNode() {
		b.used[n.GetName()] = true
		for _, o := range n.GetOutput() {
			b.used[o] = true
		}
	}
	return b
}

// Graph returns the graph under construction (for callers that edit protos
// directly).
func (b *Builder) Graph() *onnxpb.GraphProto { return b.g }

// Reserve marks name as used, so Fresh will not return it.
func (b *Builder) Reserve(name string) { b.used[name] = true }

// Fresh returns an unused name that starts with prefix.
func (b *Builder) Fresh(prefix string) string {
	if !b.used[prefix] {
		b.used[prefix] = true
		return prefix
	}
	for {
		b.next++
		name := fmt.Sprintf("%s_%d", prefix, b.next)
		if !b.used[name] {
			b.used[name] = true
			return name
		}
	}
}

// Input declares a graph input; a negative dim is the symbolic batch "N".
func (b *Builder) Input(name string, t DType, shape ...int64) string {
	b.used[name] = true
	b.g.Input = append(b.g.Input, ValueInfo(name, t, shape...))
	return name
}

// Output declares a graph output.
func (b *Builder) Output(name string, t DType, shape ...int64) {
	b.g.Output = append(b.g.Output, ValueInfo(name, t, shape...))
}

// Initializer adds a tensor as an initializer and returns its name.
func (b *Builder) Initializer(t *onnxpb.TensorProto) string {
	b.used[t.GetName()] = true
	b.g.Initializer = append(b.g.Initializer, t)
	return t.GetName()
}

// Floats adds a float32 initializer under a fresh name derived from name.
func (b *Builder) Floats(name string, shape []int64, data []float32) string {
	return b.Initializer(FloatTensor(b.Fresh(name), shape, data))
}

// Int64s adds an int64 initializer under a fresh name derived from name.
func (b *Builder) Int64s(name string, shape []int64, data []int64) string {
	return b.Initializer(Int64Tensor(b.Fresh(name), shape, data))
}

// Scalar adds a float32 scalar constant (shape []) and returns its name.
func (b *Builder) Scalar(v float32) string {
	return b.Floats("const", nil, []float32{v})
}

// Ints adds a 1-D int64 constant and returns its name.
func (b *Builder) Ints(vals ...int64) string {
	return b.Int64s("ints", []int64{int64(len(vals))}, vals)
}

// Node appends a node with the given outputs.
func (b *Builder) Node(op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	for _, o := range outputs {
		b.used[o] = true
	}
	n := &onnxpb.NodeProto{
		OpType:    proto.String(op),
		Name:      proto.String(b.Fresh(op)),
		Input:     append([]string(nil), inputs...),
		Output:    append([]string(nil), outputs...),
		Attribute: attrs,
	}
	b.g.Node = append(b.g.Node, n)
	return n
}

// Op appends a node with one fresh output and returns the output's name.
func (b *Builder) Op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.Fresh(op + "_out")
	b.Node(op, inputs, []string{out}, attrs...)
	return out
}

// NCHWcDomain is the operator domain of ONNX Runtime's blocked-layout CPU
// kernels (ReorderInput, ReorderOutput, Conv, pooling).
const NCHWcDomain = "com.microsoft.nchwc"

// KernelDomain is the operator domain of slatrun's own CPU kernels
// (onnx/ort registers them; docs/kernels.md lists them).
const KernelDomain = "ai.slatrun"

// ConvGradWeight is KernelDomain's 2-D convolution weight gradient: inputs
// X [N,C,H,W] and dY [N,K,OH,OW], outputs dW [K,C,kh,kw] and, optionally,
// dB [K]; attributes kernel_shape (required), strides, pads, dilations and
// group (1) as on ONNX Conv.
const ConvGradWeight = "ConvGradWeight"

// ConvGradInput is KernelDomain's 2-D convolution input gradient: inputs
// dY [N,K,OH,OW], W [K,C,kh,kw] and, optionally, X [N,C,H,W] (only its
// shape is read); output dX [N,C,H,W]. Attributes as ConvGradWeight, plus
// input_shape [H, W] for when X is not given (without either, the smallest
// H, W a convolution maps to OH, OW).
const ConvGradInput = "ConvGradInput"

// ConvForward is KernelDomain's 2-D convolution (oneDNN's forward
// primitive): inputs X, W and, optionally, B [K]; output Y; attributes as
// ConvGradWeight. The deriver emits it where it emits ConvGradInput.
//
// The three convolution kernels also take the attribute blocked, a bit mask
// of input 0 (1), input 1 (2) and output 0 (4): the activations so marked
// are in oneDNN's nChw16c layout ([N][C/16][H][W][16], C a multiple of 16)
// instead of NCHW, so that no reorder runs on that side.
const ConvForward = "ConvForward"

// BatchNormTrain is KernelDomain's fused training-mode batch normalization:
// inputs X [N,C,...] (rank 2 to 8), scale and bias [C]; outputs Y (X's
// shape) and, optionally, the batch mean, the biased batch variance and
// invstd = 1/√(var + ε), each [C]; attributes epsilon and relu (0/1: Y =
// max(0, BN(X))). All float32.
const BatchNormTrain = "BatchNormTrain"

// BatchNormTrainGrad is BatchNormTrain's backward: inputs dY, X, scale,
// mean, invstd and, with relu = 1, the forward's Y (dY is masked by Y > 0);
// outputs dX, dscale, dbias, each optional (empty name); attribute relu.
// Both batch-norm kernels take the attribute blocked (0/1): with 1 every
// [N, C, H, W] tensor (X, Y, dY, dX, acc) is in nChw16c (see ConvForward).
const BatchNormTrainGrad = "BatchNormTrainGrad"

// TapClip is KernelDomain's SLAT domain clip at a latent tap: inputs pre
// and delta (same shape, [N, C, spatial...] or [N, F]), output h =
// Max(Min(pre + delta, hi), lo) with lo, hi pre's minimum and maximum per
// (sample, channel) plane ([N, F]: per sample), bit-identical to those ONNX
// ops. All float32. Attribute blocked: a bit mask of pre (1), delta (2) and
// h (4) in nChw16c (see ConvForward).
const TapClip = "TapClip"

// Relayout is KernelDomain's layout conversion of an [N, C, H, W] float32
// tensor, C a multiple of 16: input X, output Y, the same values in the
// other layout: NCHW to nChw16c with attribute to_blocked = 1, back with 0
// (see ConvForward).
const Relayout = "Relayout"

// Conv1x1 is KernelDomain's 1×1, pad-0, group-1 2-D convolution: inputs X
// [N,C,H,W], W [K,C,1,1] and, optionally, B [K]; output Y [N,K,OH,OW];
// attribute strides (required); attribute blocked: a bit mask of X (1) and Y
// (4) in nChw16c (see ConvForward). All float32.
const Conv1x1 = "Conv1x1"

// Conv1x1GradInput is KernelDomain's input gradient of a 1×1, pad-0,
// group-1 2-D convolution: inputs dY [N,K,OH,OW], W [K,C,1,1] and,
// optionally, acc [N,C,H,W] (added to the result); output dX [N,C,H,W];
// attributes strides and input_shape [H, W] (both required); attribute
// blocked: a bit mask of dY (1), acc (2) and dX (4) in nChw16c (see
// ConvForward). All float32.
const Conv1x1GradInput = "Conv1x1GradInput"

// ConvGradInputNarrow is KernelDomain's input gradient of a group-1,
// dilation-1 2-D convolution, meant for inputs of few channels (the stems):
// inputs dY [N,K,OH,OW] and W [K,C,KH,KW]; output dX [N,C,H,W]; attributes
// kernel_shape, strides, pads and input_shape [H, W] (all required). All
// float32.
const ConvGradInputNarrow = "ConvGradInputNarrow"

// ConvNarrow is KernelDomain's group-1, dilation-1 2-D convolution for
// inputs of few channels (the stems; ConvGradInputNarrow's forward): inputs
// X [N,C,H,W], W [K,C,KH,KW] and, optionally, B [K]; output Y
// [N,K,OH,OW]; attributes kernel_shape, strides and pads (all required).
// All float32.
const ConvNarrow = "ConvNarrow"

// OpIn appends a node of a non-default operator domain (for example ONNX
// Runtime's "com.microsoft.nchwc") with one fresh output; the model imports
// that domain at version 1.
func (b *Builder) OpIn(domain, op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.Fresh(op + "_out")
	b.NodeIn(domain, op, inputs, []string{out}, attrs...)
	return out
}

// NodeIn is Node for an op of a non-default domain (see OpIn).
func (b *Builder) NodeIn(domain, op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := b.Node(op, inputs, outputs, attrs...)
	n.Domain = proto.String(domain)
	for _, d := range b.doms {
		if d.GetDomain() == domain {
			return n
		}
	}
	b.doms = append(b.doms, &onnxpb.OperatorSetIdProto{Domain: proto.String(domain), Version: proto.Int64(1)})
	return n
}

// OpN appends a node with n fresh outputs.
func (b *Builder) OpN(op string, inputs []string, n int, attrs ...*onnxpb.AttributeProto) []string {
	outs := make([]string, n)
	for i := range outs {
		outs[i] = b.Fresh(fmt.Sprintf("%s_out%d", op, i))
	}
	b.Node(op, inputs, outs, attrs...)
	return outs
}

// SetMetadata records a metadata_props entry for the built model.
func (b *Builder) SetMetadata(key, value string) {
	for i := range b.meta {
		if b.meta[i][0] == key {
			b.meta[i][1] = value
			return
		}
	}
	b.meta = append(b.meta, [2]string{key, value})
}

// Model returns the built model (IR version IRVersion, default-domain opset
// of the builder). The builder must not be used afterwards.
func (b *Builder) Model() *Model {
	mp := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(IRVersion),
		ProducerName: proto.String("slatrun"),
		Graph:        b.g,
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(b.opset)}},
	}
	mp.OpsetImport = append(mp.OpsetImport, b.doms...)
	for _, kv := range b.meta {
		mp.MetadataProps = append(mp.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(kv[0]), Value: proto.String(kv[1])})
	}
	return &Model{Proto: mp}
}

// AttrInt returns an INT attribute.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// AttrInts returns an INTS attribute.
func AttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: append([]int64(nil), v...)}
}

// AttrFloat returns a FLOAT attribute.
func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// AttrString returns a STRING attribute.
func AttrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// AttrTensor returns a TENSOR attribute.
func AttrTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

// Attr finds a node's attribute by name (nil if absent).
func Attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrIntOr returns the INT attribute name of n, or def if absent.
func AttrIntOr(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := Attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

// AttrFloatOr returns the FLOAT attribute name of n, or def if absent.
func AttrFloatOr(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := Attr(n, name); a != nil {
		return a.GetF()
	}
	return def
}

// AttrIntsOr returns the INTS attribute name of n, or def if absent.
func AttrIntsOr(n *onnxpb.NodeProto, name string, def []int64) []int64 {
	if a := Attr(n, name); a != nil {
		return a.GetInts()
	}
	return def
}

// AttrStringOr returns the STRING attribute name of n, or def if absent.
func AttrStringOr(n *onnxpb.NodeProto, name, def string) string {
	if a := Attr(n, name); a != nil {
		return string(a.GetS())
	}
	return def
}
