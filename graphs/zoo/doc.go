// Package zoo builds the forward graphs slatrun trains: small and standard
// image classifiers written out node by node with onnx.Builder (opset
// onnx.DefaultOpset), with weights initialized from a seed the way PyTorch
// initializes them.
//
// Every model reads x, float32 [N,C,H,W] in [0,1] with a symbolic batch, and
// writes logits, float32 [N,classes]. Per-channel normalization ((x−mean)/std,
// with mean and std as Constant nodes shaped [1,C,1,1]) is the first thing in
// the graph, so perturbation budgets are in pixel units.
//
// What the graphs package can rely on:
//   - Initializers are exactly the model's state: trainable parameters
//     ("stem.weight", "layer1.0.bn1.weight", "fc.bias", ...) and batch-norm
//     running statistics (names ending in ".running_mean" and
//     ".running_var"). Constants (normalization, the dropout ratio) are
//     Constant nodes, not initializers.
//   - BatchNormalization nodes are in inference form: five inputs (X, scale,
//     B, input_mean, input_var), one output, epsilon 1e-5, momentum 0.9 (ONNX
//     convention: running = 0.9·running + 0.1·batch), no training_mode.
//   - Linear layers are Gemm with transB=1, weight [out, in] and bias [out].
//     The CNNs end in BN → ReLU → GlobalAveragePool → Flatten (axis 1) →
//     Gemm; mlp flattens its normalized input.
//   - Every tensor other than x and logits has a value_info entry with its
//     shape (batch dimension symbolic), and every node is named after its
//     output tensor.
//   - Tap tensors (latent perturbation points) have stable names; DefaultTaps
//     lists each model's, and the model's metadata_props record them
//     (slatrun.taps) with slatrun.model, slatrun.input ("C,H,W") and
//     slatrun.classes.
//
// Tensor names follow the PyTorch module that computes them: a block's
// tensors are "<block>.bn1", "<block>.relu1", "<block>.shortcut",
// "<block>.conv1", ..., and its output is named after the block, except that
// the last block of a stage carries the stage's name ("layer1", "block1",
// "stage1").
package zoo
