package zoo

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
)

// Config chooses a model's size, head, normalization and initialization.
// Zero fields take the model's defaults.
type Config struct {
	// Width is the model's width: the stem's channels for convnet (default
	// 16), the first stage's channels for preactresnet18 (default 64), the
	// widen factor for wrn-28-10 (default 10), the hidden units for mlp
	// (default 32).
	Width int
	// Classes is the number of logits (default 10).
	Classes int
	// Mean and Std normalize each input channel: (x−Mean)/Std. One value is
	// used for every channel; otherwise there must be one per channel.
	Mean, Std []float32
	// Seed drives every random initial weight (math/rand/v2 PCG).
	Seed uint64
	// Dropout is the drop probability between the two convolutions of each
	// wrn-28-10 block (default 0: no Dropout node). Other models reject it.
	Dropout float32
}

// spec describes one model of the zoo.
type spec struct {
	name     string
	input    [3]int // C, H, W
	width    int
	mean     []float32
	std      []float32
	taps     []string
	dropout  bool
	build    func(n *net, x string, cfg Config) string // returns the features before the head
	headless bool                                      // build writes logits itself
}

var (
	cifarMean = []float32{0.4914, 0.4822, 0.4465}
	cifarStd  = []float32{0.2471, 0.2435, 0.2616}
)

// specs lists the models in the order Names reports them.
var specs = []spec{
	{name: "convnet", input: [3]int{1, 28, 28}, width: 16, mean: []float32{0.2860}, std: []float32{0.3530},
		taps: []string{"stem", "stage1"}, build: buildConvNet},
	{name: "preactresnet18", input: [3]int{3, 32, 32}, width: 64, mean: cifarMean, std: cifarStd,
		taps: []string{"conv1", "layer1"}, build: buildPreActResNet18},
	{name: "wrn-28-10", input: [3]int{3, 32, 32}, width: 10, mean: cifarMean, std: cifarStd,
		taps: []string{"conv1", "block1"}, dropout: true, build: buildWRN28},
	{name: "mlp", input: [3]int{1, 8, 8}, width: 32, mean: []float32{0.5}, std: []float32{0.25},
		taps: []string{"hidden"}, build: buildMLP, headless: true},
}

// DefaultClasses is the number of logits when Config.Classes is zero.
const DefaultClasses = 10

// Names lists the models Build knows, in a fixed order.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.name
	}
	return out
}

// DefaultTaps returns the latent tensors SLAT perturbs by default in model
// name (nil for an unknown name).
func DefaultTaps(name string) []string {
	s := lookup(name)
	if s == nil {
		return nil
	}
	return append([]string(nil), s.taps...)
}

func lookup(name string) *spec {
	for i := range specs {
		if specs[i].name == name {
			return &specs[i]
		}
	}
	return nil
}

// Build returns the forward graph of model name with freshly initialized
// weights. Conv and Gemm weights and biases are drawn from
// U(−1/√fan_in, 1/√fan_in) with fan_in = cin/groups·kh·kw (PyTorch's
// default); batch norms start at γ=1, β=0, running mean 0, running var 1.
// The same name and Config give the same bytes.
func Build(name string, cfg Config) (*onnx.Model, error) {
	s := lookup(name)
	if s == nil {
		return nil, fmt.Errorf("zoo: unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	cfg, err := s.resolve(cfg)
	if err != nil {
		return nil, fmt.Errorf("zoo: %s: %w", name, err)
	}
	c, h, w := s.input[0], s.input[1], s.input[2]
	n := newNet(s.name, cfg.Seed)
	n.b.Input(contract.Input, onnx.Float, -1, int64(c), int64(h), int64(w))
	n.shapes[contract.Input] = []int64{-1, int64(c), int64(h), int64(w)}
	x := n.normalize(contract.Input, cfg.Mean, cfg.Std)
	feat := s.build(n, x, cfg)
	if !s.headless {
		feat = n.head(feat, cfg.Classes)
	}
	if n.err != nil {
		return nil, fmt.Errorf("zoo: %s: %w", name, n.err)
	}
	if feat != contract.Logits {
		return nil, fmt.Errorf("zoo: %s: the graph ends in %q, not %s", name, feat, contract.Logits)
	}
	n.b.Output(contract.Logits, onnx.Float, -1, int64(cfg.Classes))
	n.b.SetMetadata(contract.MetaModel, s.name)
	n.b.SetMetadata(contract.MetaTaps, contract.List(s.taps))
	n.b.SetMetadata(contract.MetaInput, fmt.Sprintf("%d,%d,%d", c, h, w))
	n.b.SetMetadata(contract.MetaClasses, strconv.Itoa(cfg.Classes))
	m := n.b.Model()
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("zoo: %s: built an invalid graph: %w", name, err)
	}
	return m, nil
}

// resolve fills in defaults and checks the configuration.
func (s *spec) resolve(cfg Config) (Config, error) {
	if cfg.Width < 0 {
		return cfg, fmt.Errorf("width %d is negative", cfg.Width)
	}
	if cfg.Width == 0 {
		cfg.Width = s.width
	}
	if cfg.Classes < 0 {
		return cfg, fmt.Errorf("classes %d is negative", cfg.Classes)
	}
	if cfg.Classes == 0 {
		cfg.Classes = DefaultClasses
	}
	if !(cfg.Dropout >= 0 && cfg.Dropout < 1) {
		return cfg, fmt.Errorf("dropout %v is not in [0, 1)", cfg.Dropout)
	}
	if cfg.Dropout > 0 && !s.dropout {
		return cfg, fmt.Errorf("dropout is supported only by wrn-28-10")
	}
	c := s.input[0]
	var err error
	if cfg.Mean, err = perChannel("mean", cfg.Mean, s.mean, c); err != nil {
		return cfg, err
	}
	if cfg.Std, err = perChannel("std", cfg.Std, s.std, c); err != nil {
		return cfg, err
	}
	for i, v := range cfg.Mean {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return cfg, fmt.Errorf("mean[%d] = %v is not finite", i, v)
		}
	}
	for i, v := range cfg.Std {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return cfg, fmt.Errorf("std[%d] = %v is not a positive finite number", i, v)
		}
	}
	return cfg, nil
}

// perChannel returns v (or def if v is empty) with one value per channel.
func perChannel(what string, v, def []float32, c int) ([]float32, error) {
	if len(v) == 0 {
		v = def
	}
	switch len(v) {
	case c:
		return append([]float32(nil), v...), nil
	case 1:
		out := make([]float32, c)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s has %d values for %d input channels (want 1 or %d)", what, len(v), c, c)
}
