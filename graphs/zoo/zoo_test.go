package zoo

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
)

// Parameter counts (BN affine included, running statistics excluded) of the
// same architectures written in PyTorch 1.13 and counted with
// sum(p.numel() for p in model.parameters()).
const (
	paramsConvNet16      = 77_562
	paramsPreActResNet18 = 11_172_170 // Wong et al.'s PreActResNet18 (final BN); 11,171,146 without it
	paramsWRN2810        = 36_479_194
	paramsWRN281         = 369_498
	paramsMLP            = 2_410
)

var buildCases = []struct {
	name    string
	cfg     Config
	params  int64
	input   []int64 // C, H, W
	classes int64
	taps    []string
	blocks  int // pre-activation blocks (Add nodes)
}{
	{"convnet", Config{}, paramsConvNet16, []int64{1, 28, 28}, 10, []string{"stem", "stage1"}, 3},
	{"convnet", Config{Width: 8}, 19_714, []int64{1, 28, 28}, 10, []string{"stem", "stage1"}, 3},
	{"preactresnet18", Config{}, paramsPreActResNet18, []int64{3, 32, 32}, 10, []string{"conv1", "layer1"}, 8},
	{"preactresnet18", Config{Width: 16}, 701_018, []int64{3, 32, 32}, 10, []string{"conv1", "layer1"}, 8},
	{"wrn-28-10", Config{}, paramsWRN2810, []int64{3, 32, 32}, 10, []string{"conv1", "block1"}, 12},
	{"wrn-28-10", Config{Width: 1}, paramsWRN281, []int64{3, 32, 32}, 10, []string{"conv1", "block1"}, 12},
	{"mlp", Config{}, paramsMLP, []int64{1, 8, 8}, 10, []string{"hidden"}, 0},
	{"mlp", Config{Width: 16, Classes: 3}, 64*16 + 16 + 16*3 + 3, []int64{1, 8, 8}, 3, []string{"hidden"}, 0},
}

// cache builds each (name, cfg) once per test binary; wrn-28-10 is big.
var cache sync.Map

func build(t testing.TB, name string, cfg Config) *onnx.Model {
	t.Helper()
	key := fmt.Sprintf("%s %+v", name, cfg)
	if m, ok := cache.Load(key); ok {
		return m.(*onnx.Model)
	}
	m, err := Build(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cache.Store(key, m)
	return m
}

// caseName names a subtest after the model and its non-default settings.
func caseName(name string, cfg Config) string {
	var parts []string
	if cfg.Width != 0 {
		parts = append(parts, fmt.Sprintf("width=%d", cfg.Width))
	}
	if cfg.Classes != 0 {
		parts = append(parts, fmt.Sprintf("classes=%d", cfg.Classes))
	}
	if len(parts) == 0 {
		return name
	}
	return name + "/" + strings.Join(parts, ",")
}

func isStat(name string) bool {
	return strings.HasSuffix(name, ".running_mean") || strings.HasSuffix(name, ".running_var")
}

func countParams(m *onnx.Model) int64 {
	var n int64
	for _, t := range m.Graph().GetInitializer() {
		if !isStat(t.GetName()) {
			n += onnx.NumElements(t.GetDims())
		}
	}
	return n
}

func TestNames(t *testing.T) {
	want := []string{"convnet", "preactresnet18", "wrn-28-10", "mlp"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if DefaultTaps("nope") != nil {
		t.Fatal("DefaultTaps of an unknown model is not nil")
	}
	taps := DefaultTaps("convnet")
	taps[0] = "changed"
	if DefaultTaps("convnet")[0] != "stem" {
		t.Fatal("DefaultTaps returns the package's own slice")
	}
}

func TestBuild(t *testing.T) {
	for _, c := range buildCases {
		t.Run(caseName(c.name, c.cfg), func(t *testing.T) {
			m := build(t, c.name, c.cfg)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if m.Opset() != onnx.DefaultOpset {
				t.Errorf("opset %d, want %d", m.Opset(), onnx.DefaultOpset)
			}
			if got := countParams(m); got != c.params {
				t.Errorf("parameters: %d, want %d", got, c.params)
			}
			if !slices.Equal(DefaultTaps(c.name), c.taps) {
				t.Errorf("DefaultTaps = %v, want %v", DefaultTaps(c.name), c.taps)
			}
			g := m.Graph()
			checkIO(t, g, c.input, c.classes)
			for k, v := range map[string]string{
				"slatrun.model":   c.name,
				"slatrun.taps":    strings.Join(c.taps, ","),
				"slatrun.input":   fmt.Sprintf("%d,%d,%d", c.input[0], c.input[1], c.input[2]),
				"slatrun.classes": fmt.Sprint(c.classes),
			} {
				if got, ok := m.Metadata(k); !ok || got != v {
					t.Errorf("metadata %s = %q, want %q", k, got, v)
				}
			}
			checkStructure(t, g, c.taps, c.blocks)
		})
	}
}

func checkIO(t *testing.T, g *onnxpb.GraphProto, input []int64, classes int64) {
	t.Helper()
	if len(g.GetInput()) != 1 || g.GetInput()[0].GetName() != "x" {
		t.Fatalf("inputs %v, want just x", g.GetInput())
	}
	dt, dims, _ := onnx.ValueShape(g.GetInput()[0])
	if dt != onnx.Float || !slices.Equal(dims, append([]int64{-1}, input...)) {
		t.Errorf("x is %s %v, want FLOAT [N %v]", dt, dims, input)
	}
	if p := g.GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0].GetDimParam(); p == "" {
		t.Error("x has no symbolic batch dimension")
	}
	if len(g.GetOutput()) != 1 || g.GetOutput()[0].GetName() != "logits" {
		t.Fatalf("outputs %v, want just logits", g.GetOutput())
	}
	dt, dims, _ = onnx.ValueShape(g.GetOutput()[0])
	if dt != onnx.Float || !slices.Equal(dims, []int64{-1, classes}) {
		t.Errorf("logits is %s %v, want FLOAT [N %d]", dt, dims, classes)
	}
}

// checkStructure checks the conventions the graphs package relies on.
func checkStructure(t *testing.T, g *onnxpb.GraphProto, taps []string, blocks int) {
	t.Helper()
	inits := map[string]bool{}
	for _, init := range g.GetInitializer() {
		inits[init.GetName()] = true
		if onnx.DType(init.GetDataType()) != onnx.Float {
			t.Errorf("initializer %s is %s", init.GetName(), onnx.DType(init.GetDataType()))
		}
	}
	infos := map[string]bool{}
	for _, vi := range g.GetValueInfo() {
		infos[vi.GetName()] = true
	}
	outputs := map[string]bool{}
	adds := 0
	for i, n := range g.GetNode() {
		op := n.GetOpType()
		if len(n.GetOutput()) != 1 || n.GetName() != n.GetOutput()[0] {
			t.Errorf("node %s (%s) has outputs %v; want one, named like the node", n.GetName(), op, n.GetOutput())
		}
		for _, o := range n.GetOutput() {
			outputs[o] = true
			if o != "logits" && !infos[o] {
				t.Errorf("tensor %s has no value_info", o)
			}
		}
		switch op {
		case "Sub":
			if i != 2 || n.GetInput()[0] != "x" {
				t.Errorf("Sub node %d reads %v; normalization must come first (after its two constants)", i, n.GetInput())
			}
		case "Div", "Constant", "Relu", "Conv", "GlobalAveragePool", "Flatten", "Dropout":
		case "Add":
			adds++
		case "BatchNormalization":
			in := n.GetInput()
			if len(in) != 5 {
				t.Errorf("BN %s has %d inputs", n.GetName(), len(in))
				continue
			}
			for j, suffix := range []string{".weight", ".bias", ".running_mean", ".running_var"} {
				if in[j+1] != n.GetName()+suffix || !inits[in[j+1]] {
					t.Errorf("BN %s input %d is %q, want initializer %q", n.GetName(), j+1, in[j+1], n.GetName()+suffix)
				}
			}
			if e := onnx.AttrFloatOr(n, "epsilon", 0); e != 1e-5 {
				t.Errorf("BN %s epsilon %v", n.GetName(), e)
			}
			if mo := onnx.AttrFloatOr(n, "momentum", 0); mo != 0.9 {
				t.Errorf("BN %s momentum %v", n.GetName(), mo)
			}
			if onnx.Attr(n, "training_mode") != nil {
				t.Errorf("BN %s has training_mode; zoo graphs are in inference form", n.GetName())
			}
		case "Gemm":
			if onnx.AttrIntOr(n, "transB", 0) != 1 || len(n.GetInput()) != 3 {
				t.Errorf("Gemm %s: transB %d, %d inputs", n.GetName(), onnx.AttrIntOr(n, "transB", 0), len(n.GetInput()))
			}
		default:
			t.Errorf("unexpected op %s (%s)", op, n.GetName())
		}
		if op == "Sub" || op == "Div" {
			for _, in := range n.GetInput() {
				if inits[in] {
					t.Errorf("normalization reads initializer %s; constants must be Constant nodes", in)
				}
			}
		}
	}
	if adds != blocks {
		t.Errorf("%d residual Adds, want %d", adds, blocks)
	}
	for _, tap := range taps {
		if !outputs[tap] {
			t.Errorf("tap %s is not a node output", tap)
		}
	}
}

func initOnce(t testing.TB) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
}

// fillImages writes a deterministic pattern in [0,1].
func fillImages(x []float32) {
	for i := range x {
		x[i] = float32((i*37)%101) / 100
	}
}

// withAllOutputs returns a copy of m whose every value_info tensor is also a
// graph output, so a session checks each declared shape against ONNX
// Runtime's.
func withAllOutputs(m *onnx.Model) *onnx.Model {
	c := m.Clone()
	g := c.Graph()
	g.Output = append(g.Output, g.ValueInfo...)
	g.ValueInfo = nil
	return c
}

func TestRunsInONNXRuntime(t *testing.T) {
	initOnce(t)
	cases := []struct {
		name string
		cfg  Config
		all  bool // fetch every tensor, checking its declared shape
	}{
		{"convnet", Config{}, true},
		{"preactresnet18", Config{}, true},
		{"wrn-28-10", Config{Width: 1}, true},
		{"wrn-28-10", Config{}, false},
		{"mlp", Config{}, true},
	}
	for _, c := range cases {
		t.Run(caseName(c.name, c.cfg), func(t *testing.T) {
			if testing.Short() && c.name == "wrn-28-10" && c.cfg.Width == 0 {
				t.Skip("wrn-28-10 at full width in -short mode")
			}
			m := build(t, c.name, c.cfg)
			if c.all {
				m = withAllOutputs(m)
			}
			s, err := ort.NewSession(m, ort.Options{Batch: 2, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fillImages(s.Float("x"))
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
			if got := s.Shape("logits"); !slices.Equal(got, []int64{2, 10}) {
				t.Fatalf("logits shape %v", got)
			}
			logits := s.Float("logits")
			for _, v := range logits {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logits %v are not finite", logits)
				}
			}
			if slices.Equal(logits[:10], logits[10:]) {
				t.Errorf("two different images give the same logits %v", logits[:10])
			}
			if c.name == "convnet" {
				// Fresh BN is y = x/√(1+ε) in inference form.
				in, out := s.Float("stem"), s.Float("stage1.bn1")
				for i := range in {
					if want := in[i] / float32(math.Sqrt(1+1e-5)); math.Abs(float64(out[i]-want)) > 1e-6*(1+math.Abs(float64(want))) {
						t.Fatalf("stage1.bn1[%d] = %v, want %v", i, out[i], want)
					}
				}
			}
		})
	}
}

// TestMLPMatchesReference recomputes the mlp's logits in Go from its
// initializers: normalization, Gemm with transB, ReLU.
func TestMLPMatchesReference(t *testing.T) {
	initOnce(t)
	m := build(t, "mlp", Config{Seed: 7})
	w := map[string][]float32{}
	for _, init := range m.Graph().GetInitializer() {
		v, err := onnx.TensorFloats(init)
		if err != nil {
			t.Fatal(err)
		}
		w[init.GetName()] = v
	}
	s, err := ort.NewSession(m, ort.Options{Batch: 2, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := s.Float("x")
	fillImages(x)
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	dense := func(in, weight, bias []float32, units int) []float32 {
		out := make([]float32, units)
		for o := range out {
			acc := float64(bias[o])
			for i, v := range in {
				acc += float64(weight[o*len(in)+i]) * float64(v)
			}
			out[o] = float32(acc)
		}
		return out
	}
	for n := 0; n < 2; n++ {
		in := make([]float32, 64)
		for i := range in {
			in[i] = (x[n*64+i] - 0.5) / 0.25
		}
		h := dense(in, w["fc1.weight"], w["fc1.bias"], 32)
		for i := range h {
			h[i] = max(h[i], 0)
		}
		want := dense(h, w["fc2.weight"], w["fc2.bias"], 10)
		got := s.Float("logits")[n*10 : n*10+10]
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("example %d: logits %v, want %v", n, got, want)
			}
		}
	}
}

func TestSeed(t *testing.T) {
	for _, name := range []string{"convnet", "preactresnet18", "wrn-28-10", "mlp"} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Seed: 1}
			if name == "wrn-28-10" {
				cfg.Width = 1
			}
			a, b := build(t, name, cfg), build(t, name, cfg)
			a2, err := Build(name, cfg) // not from the cache
			if err != nil {
				t.Fatal(err)
			}
			ea, _ := a.Encode()
			eb, _ := a2.Encode()
			if !bytes.Equal(ea, eb) {
				t.Fatal("two builds with the same seed differ")
			}
			cfg.Seed = 2
			c := build(t, name, cfg)
			cinits := map[string]*onnxpb.TensorProto{}
			for _, init := range c.Graph().GetInitializer() {
				cinits[init.GetName()] = init
			}
			for _, init := range b.Graph().GetInitializer() {
				other := cinits[init.GetName()]
				if other == nil {
					t.Fatalf("seed 2 has no initializer %s", init.GetName())
				}
				same := bytes.Equal(init.GetRawData(), other.GetRawData())
				random := strings.HasSuffix(init.GetName(), "conv1.weight") || strings.HasPrefix(init.GetName(), "fc") ||
					init.GetName() == "stem.weight" || strings.HasSuffix(init.GetName(), "conv2.weight") || strings.HasSuffix(init.GetName(), "shortcut.weight")
				if random && same {
					t.Errorf("%s is the same under seeds 1 and 2", init.GetName())
				}
				if !random && !same {
					t.Errorf("%s depends on the seed", init.GetName())
				}
			}
		})
	}
}

// TestInitRanges checks PyTorch's default initialization: weights and biases
// in U(−1/√fan_in, 1/√fan_in), BN γ=1, β=0, running mean 0, var 1.
func TestInitRanges(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"convnet", Config{}}, {"preactresnet18", Config{}}, {"wrn-28-10", Config{Width: 1}}, {"mlp", Config{}}} {
		t.Run(c.name, func(t *testing.T) {
			m := build(t, c.name, c.cfg)
			fanIn := map[string]int64{} // initializer → fan_in, from its consumer
			bnInput := map[string]int{} // initializer → BN input index
			dims := map[string][]int64{}
			for _, init := range m.Graph().GetInitializer() {
				dims[init.GetName()] = init.GetDims()
			}
			for _, n := range m.Graph().GetNode() {
				in := n.GetInput()
				switch n.GetOpType() {
				case "Conv":
					d := dims[in[1]]
					fanIn[in[1]] = d[1] * d[2] * d[3]
				case "Gemm":
					fanIn[in[1]] = dims[in[1]][1]
					fanIn[in[2]] = dims[in[1]][1]
				case "BatchNormalization":
					for j := 1; j < 5; j++ {
						bnInput[in[j]] = j
					}
				}
			}
			for _, init := range m.Graph().GetInitializer() {
				name := init.GetName()
				v, err := onnx.TensorFloats(init)
				if err != nil {
					t.Fatal(err)
				}
				if j, ok := bnInput[name]; ok {
					want := float32([]float64{0, 1, 0, 0, 1}[j])
					for _, x := range v {
						if x != want {
							t.Fatalf("BN input %d %s has %v, want all %v", j, name, x, want)
						}
					}
					continue
				}
				f, ok := fanIn[name]
				if !ok {
					t.Fatalf("initializer %s feeds no Conv, Gemm or BN", name)
				}
				bound := 1 / math.Sqrt(float64(f))
				var maxAbs, sum float64
				for _, x := range v {
					a := math.Abs(float64(x))
					if a > float64(float32(bound)) {
						t.Fatalf("%s has %v outside ±%v (fan_in %d)", name, x, bound, f)
					}
					maxAbs = max(maxAbs, a)
					sum += float64(x)
				}
				if len(v) >= 200 {
					mean := sum / float64(len(v))
					if maxAbs < 0.95*bound || math.Abs(mean) > 0.2*bound {
						t.Errorf("%s (%d values): max |w| %.4g, mean %.4g; want about U(±%.4g)", name, len(v), maxAbs, mean, bound)
					}
				}
			}
		})
	}
}

func TestDropout(t *testing.T) {
	initOnce(t)
	plain := build(t, "wrn-28-10", Config{Width: 1, Seed: 3})
	drop := build(t, "wrn-28-10", Config{Width: 1, Seed: 3, Dropout: 0.3})
	if countParams(drop) != paramsWRN281 {
		t.Fatalf("dropout changed the parameter count to %d", countParams(drop))
	}
	consts := map[string][]float32{}
	drops := 0
	for _, n := range drop.Graph().GetNode() {
		switch n.GetOpType() {
		case "Constant":
			v, err := onnx.TensorFloats(onnx.Attr(n, "value").GetT())
			if err != nil {
				t.Fatal(err)
			}
			consts[n.GetOutput()[0]] = v
		case "Dropout":
			drops++
			if in := n.GetInput(); len(in) != 2 || len(consts[in[1]]) != 1 || consts[in[1]][0] != 0.3 {
				t.Errorf("Dropout %s inputs %v, want data and a constant ratio 0.3", n.GetName(), in)
			}
			if !strings.HasSuffix(n.GetInput()[0], ".relu2") {
				t.Errorf("Dropout %s reads %s, want a block's relu2", n.GetName(), n.GetInput()[0])
			}
		}
	}
	if drops != 12 {
		t.Fatalf("%d Dropout nodes, want 12", drops)
	}
	var logits [][]float32
	for _, m := range []*onnx.Model{plain, drop} {
		s, err := ort.NewSession(m, ort.Options{Batch: 2, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		fillImages(s.Float("x"))
		if err := s.Run(); err != nil {
			s.Close()
			t.Fatal(err)
		}
		logits = append(logits, slices.Clone(s.Float("logits")))
		s.Close()
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Fatalf("inference-form dropout changed the logits: %v vs %v", logits[0], logits[1])
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"resnet50", Config{}, "convnet, preactresnet18, wrn-28-10, mlp"},
		{"convnet", Config{Width: -1}, "width"},
		{"convnet", Config{Classes: -2}, "classes"},
		{"preactresnet18", Config{Mean: []float32{0.5, 0.5}}, "mean has 2 values for 3"},
		{"preactresnet18", Config{Std: []float32{0.2, 0, 0.2}}, "std[1]"},
		{"mlp", Config{Mean: []float32{float32(math.NaN())}}, "mean[0]"},
		{"convnet", Config{Dropout: 0.2}, "only by wrn-28-10"},
		{"wrn-28-10", Config{Width: 1, Dropout: 1}, "dropout"},
		{"wrn-28-10", Config{Width: 1, Dropout: -0.1}, "dropout"},
	}
	for _, c := range cases {
		_, err := Build(c.name, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build(%q, %+v): err = %v, want it to mention %q", c.name, c.cfg, err, c.want)
		}
	}
}

func TestSingleMeanBroadcasts(t *testing.T) {
	m := build(t, "preactresnet18", Config{Width: 4, Mean: []float32{0.5}, Std: []float32{0.25}})
	for _, n := range m.Graph().GetNode()[:2] {
		v, err := onnx.TensorFloats(onnx.Attr(n, "value").GetT())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(onnx.Attr(n, "value").GetT().GetDims(), []int64{1, 3, 1, 1}) || v[0] != v[1] || v[1] != v[2] {
			t.Errorf("%s = %v %v, want one value for each of 3 channels", n.GetName(), onnx.Attr(n, "value").GetT().GetDims(), v)
		}
	}
}

func ExampleBuild() {
	m, err := Build("mlp", Config{Seed: 1})
	if err != nil {
		panic(err)
	}
	taps, _ := m.Metadata("slatrun.taps")
	fmt.Println("taps:", taps)
	for _, init := range m.Graph().GetInitializer() {
		fmt.Println(init.GetName(), init.GetDims())
	}
	// Output:
	// taps: hidden
	// fc1.weight [32 64]
	// fc1.bias [32]
	// fc2.weight [10 32]
	// fc2.bias [10]
}
