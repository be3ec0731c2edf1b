// Package graphs turns a forward ONNX graph into the graphs slatrun's
// training and evaluation run: reverse-mode automatic differentiation over
// ONNX operators, in Go, emitting standard default-domain ONNX ops (opset
// 18), because ONNX Runtime's training API and its gradient kernels are not
// available. One exception, asked for with Spec.NCHWcBlock: convolutions
// (and the input gradients of stride-1 ones) then run in ONNX Runtime's
// CPU-only blocked kernels (domain com.microsoft.nchwc), the weights
// reordered inside the graph, which the runtime's own layout optimizer does
// only for constant weights. The sessions of the orchestrator and eval ask
// for it on the CPU provider; files written by `slatrun derive` and the
// forward kind stay plain ONNX.
//
// Derive takes a forward graph (from the model zoo or torch.onnx.export)
// with one image input [N, C, H, W] and logits [N, K] as its first output,
// and a Spec (kind, concrete batch size, taps), and returns a graph of one
// of the kinds docs/contract.md describes:
//
//   - attack: loss, logits, grad.x, grad.<tap> and <stat>.next, BN on
//     batch statistics, no parameter gradients (SLAT's first pass, and the
//     attack passes of FGSM, FGSM-RS, N-FGSM and PGD-k);
//   - train: loss, logits, grad.<param>, <stat>.next at the point
//     perturbed by delta.<tap> inputs with SLAT's domain clip (second pass);
//   - eval: logits, loss.each (cross-entropy, CW margin or DLR) and grad.x
//     of their sum, BN on running statistics;
//   - forward: the model itself, for checkpoints and inference.
//
// How it works: the forward graph is normalized to opset 18, every tensor
// gets a static shape (the batch is fixed), and integer shape arithmetic is
// folded into constants. The forward nodes are emitted (batch norm in its
// training form for attack and train), a loss head is appended, and the
// nodes are walked in reverse, each emitting its backward nodes; gradients
// that fan in are summed. Everything the deriver knows about an op type
// (its opset upgrade, shape rule, constant folding, gradient rule and
// special forward form) is one entry of the op registry (registry.go),
// registered in the file of the op's family: elementwise.go, linear.go,
// conv.go, pooling.go, norm.go, reduce.go, shape.go, constant.go, loss.go.
// The tensor names and metadata keys of derived graphs are the constants
// of package graphs/contract.
// Only nodes on a path from a differentiated tensor (x, taps or parameters,
// as the kind needs) to the loss get backward nodes. Every rule is checked
// against central finite differences through ONNX Runtime in the tests.
//
// PyTorch models must be exported in training mode with
// training=torch.onnx.TrainingMode.PRESERVE: an eval-mode export folds
// BatchNormalization into the preceding Conv, and the BN parameters and
// running statistics are lost (Derive refuses such a PyTorch graph for the
// training kinds).
//
// Dropout is treated as the identity in every derived graph.
//
// Derived graphs can be differentiated again (docs/second-order.md):
// Differentiate takes any graph of registered default-domain ops with
// static shapes, seeds chosen outputs with cotangent inputs seed.<o> and
// outputs grad2.<t>; DeriveHVP is the attack or eval kind differentiated
// with seed grad.x (Hessian-vector products). Graphs to be differentiated
// again are derived in plain form: the NCHWc and ai.slatrun ops have no
// gradient rules.
//
// What a forward graph may be (docs/models.md says it for users). Derive
// first runs onnx.Model.Validate, the validation step that onnx.Decode and
// onnx.Load run on every model read from bytes, so a model built in memory
// is held to the same rules (node arity, attribute ranges, initializer
// sizes, unique and defined names, no external data). Then:
//
//   - The input may have any name; derived graphs call it x. The output's
//     tensor is called logits. Both are renamed in one pass: a tensor of
//     the graph that already carries the name x or logits is given a
//     fresh name first, so renaming never chains or loops. Tensors that
//     carry a name the derived graph needs for its own inputs and outputs
//     (y, target, loss, loss.each, grad.*, delta.<tap>, <stat>.next) are
//     renamed the same way; a tap cannot be one of the renamed tensors.
//   - If the first output is a Softmax or LogSoftmax over the classes
//     (axis 1 or −1), the losses are computed on the tensor under it: that
//     tensor is the logits, the Softmax is dropped from the derived graphs
//     (it changes no argmax, and cross-entropy on probabilities would be
//     wrong). A Softmax over another axis is refused. The forward kind
//     keeps the model as it is.
//   - The logits must be float [N, K] with 2 ≤ K ≤ 2²⁰; anything else (a
//     feature map, say) is refused with the shape it has.
//   - Taps must be listed once each and name float tensors [N, ...] that a
//     node computes and the logits depend on.
//
// Shape inference checks what it indexes and returns errors rather than
// panicking: every inferred tensor has at most onnx.MaxTensorElements
// elements, kernels, strides and dilations are in [1, onnx.MaxAttrExtent],
// a convolution's or pool's pads are smaller than its dilated kernel, and
// constants larger than 2¹⁶ elements are left to the runtime instead of
// being computed in Go.
package graphs
