package zoo

import (
	"fmt"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

// buildConvNet is the Fashion-MNIST model (1×28×28): stem Conv3×3(w) →
// block(w→w) → block(w→2w, stride 2) → block(2w→4w, stride 2).
// Taps: "stem", "stage1".
func buildConvNet(n *net, x string, cfg Config) string {
	w := int64(cfg.Width)
	h := n.conv("stem", "stem", x, w, 3, 1, 1)
	h = n.block("stage1", "stage1", h, w, 1, 0)
	h = n.block("stage2", "stage2", h, 2*w, 2, 0)
	return n.block("stage3", "stage3", h, 4*w, 2, 0)
}

// stages adds groups of pre-activation blocks named "<name><i>.<j>"; the
// last block of each group is named "<name><i>".
func (n *net) stages(h, name string, widths, strides []int64, blocks int, dropout float32) string {
	for i, w := range widths {
		for j := 0; j < blocks; j++ {
			prefix := fmt.Sprintf("%s%d.%d", name, i+1, j)
			out := prefix
			if j == blocks-1 {
				out = fmt.Sprintf("%s%d", name, i+1)
			}
			stride := int64(1)
			if j == 0 {
				stride = strides[i]
			}
			h = n.block(prefix, out, h, w, stride, dropout)
		}
	}
	return h
}

// buildPreActResNet18 is PreActResNet-18 for 32×32 images (Wong et al.'s
// fast adversarial training variant, with the final BN-ReLU): stem
// Conv3×3(w) "conv1", stages "layer1".."layer4" of two blocks each, widths
// w, 2w, 4w, 8w, strides 1, 2, 2, 2. Taps: "conv1", "layer1".
func buildPreActResNet18(n *net, x string, cfg Config) string {
	w := int64(cfg.Width)
	h := n.conv("conv1", "conv1", x, w, 3, 1, 1)
	return n.stages(h, "layer", []int64{w, 2 * w, 4 * w, 8 * w}, []int64{1, 2, 2, 2}, 2, 0)
}

// buildWRN28 is WideResNet-28-k (k = cfg.Width): stem Conv3×3(16) "conv1",
// groups "block1".."block3" of four blocks each, widths 16k, 32k, 64k,
// strides 1, 2, 2, optional dropout between each block's convolutions.
// Taps: "conv1", "block1".
func buildWRN28(n *net, x string, cfg Config) string {
	k := int64(cfg.Width)
	h := n.conv("conv1", "conv1", x, 16, 3, 1, 1)
	const blocks = (28 - 4) / 6
	return n.stages(h, "block", []int64{16 * k, 32 * k, 64 * k}, []int64{1, 2, 2}, blocks, cfg.Dropout)
}

// buildMLP is the test model (1×8×8): Flatten → Linear(w) "fc1" → ReLU
// "hidden" → Linear(classes) "fc2". Tap: "hidden".
func buildMLP(n *net, x string, cfg Config) string {
	s := n.shapes[x]
	h := n.node("Flatten", "flatten", []string{x}, []int64{-1, s[1] * s[2] * s[3]}, onnx.AttrInt("axis", 1))
	h = n.linear("fc1", "fc1", h, int64(cfg.Width))
	h = n.relu("hidden", h)
	return n.linear("fc2", contract.Logits, h, int64(cfg.Classes))
}
