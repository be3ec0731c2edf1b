package graphs

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// TestRegistry checks the op registry's invariants: each op registered
// once, and every op that can appear in a normalized forward graph (every
// op with a gradient, forward or fold rule) has a shape rule. An op without
// one must be rewritten by its upgrade rule (Dropout becomes Identity) or
// refused by it (Upsample).
func TestRegistry(t *testing.T) {
	if len(duplicateOps) > 0 {
		t.Errorf("ops registered more than once: %v", duplicateOps)
	}
	names := make([]string, 0, len(ops))
	for name := range ops {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		def := ops[name]
		for _, c := range []struct {
			rule string
			has  bool
		}{
			{"gradient", def.grad != nil},
			{"forward", def.forward != nil},
			{"fold", def.fold != nil},
		} {
			if c.has && def.infer == nil {
				t.Errorf("op %s has a %s rule but no shape rule", name, c.rule)
			}
		}
		if def.infer == nil && def.upgrade == nil {
			t.Errorf("op %s has neither a shape rule nor an upgrade rule", name)
		}
		if def.foldFloat && def.fold == nil {
			t.Errorf("op %s folds float outputs but has no fold rule", name)
		}
	}
}

// inferDerived runs the shape rules over a derived graph (default-domain
// ops only), from its inputs' declared shapes and its initializers, and
// returns what they infer for every tensor.
func inferDerived(t *testing.T, m *onnx.Model) map[string]*tinfo {
	t.Helper()
	g := &fgraph{info: map[string]*tinfo{}, inits: map[string]*onnxpb.TensorProto{}, used: map[string]bool{}, opset: onnx.DefaultOpset}
	for _, in := range m.Graph().GetInitializer() {
		ti, err := decodeTensor(in)
		if err != nil {
			t.Fatalf("initializer %q: %v", in.GetName(), err)
		}
		g.info[in.GetName()] = ti
	}
	for _, vi := range m.Graph().GetInput() {
		dt, dims, ok := onnx.ValueShape(vi)
		if !ok {
			t.Fatalf("input %q has no static shape", vi.GetName())
		}
		g.info[vi.GetName()] = &tinfo{dt: dt, shape: dims}
	}
	for _, pn := range m.Graph().GetNode() {
		n := &node{op: pn.GetOpType(), name: pn.GetName(), in: pn.GetInput(), out: pn.GetOutput()}
		for _, a := range pn.GetAttribute() {
			n.attrs = append(n.attrs, proto.Clone(a).(*onnxpb.AttributeProto))
		}
		if err := g.inferNode(n); err != nil {
			t.Fatalf("%v (outputs %v): %v", n, n.out, err)
		}
	}
	return g.info
}

// TestGradShapes checks, over the zoo models and the PyTorch export, that
// in every derived graph each grad.<t> output is computed with the shape
// of <t> (the shape rules, run over the backward nodes the gradient rules
// emit, agree) and is declared with it.
func TestGradShapes(t *testing.T) {
	torch, err := onnx.Load(filepath.Join("testdata", "torch_cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	models := []struct {
		name  string
		model func() (*onnx.Model, error)
	}{
		{"convnet", func() (*onnx.Model, error) { return zoo.Build("convnet", zoo.Config{Width: 4}) }},
		{"mlp", func() (*onnx.Model, error) { return zoo.Build("mlp", zoo.Config{}) }},
		{"preactresnet18", func() (*onnx.Model, error) { return zoo.Build("preactresnet18", zoo.Config{Width: 8}) }},
		{"wrn-28-10", func() (*onnx.Model, error) { return zoo.Build("wrn-28-10", zoo.Config{Width: 1}) }},
		{"torch", func() (*onnx.Model, error) { return torch, nil }},
	}
	specs := []Spec{
		{Kind: Attack, Batch: 3},
		{Kind: Train, Batch: 3},
		{Kind: Train, Batch: 2, InputGrad: true, NoDomainClip: true},
		{Kind: Eval, Batch: 2},
		{Kind: Eval, Batch: 2, Loss: contract.HeadDLRT},
	}
	for _, mc := range models {
		t.Run(mc.name, func(t *testing.T) {
			fwd, err := mc.model()
			if err != nil {
				t.Fatal(err)
			}
			for _, spec := range specs {
				if spec.Loss == contract.HeadDLRT && mc.name == "torch" {
					continue // its logits have too few classes
				}
				m, err := Derive(fwd, spec)
				if err != nil {
					t.Fatalf("%s: %v", spec.Kind, err)
				}
				info := inferDerived(t, m)
				grads := 0
				for _, o := range m.Graph().GetOutput() {
					name := o.GetName()
					x, ok := strings.CutPrefix(name, contract.GradPrefix)
					if !ok {
						continue
					}
					grads++
					_, declared, _ := onnx.ValueShape(o)
					gi, xi := info[name], info[x]
					switch {
					case gi == nil || xi == nil:
						t.Errorf("%s %s: no inferred shape for %s or %s", spec.Kind, spec.Loss, name, x)
					case !slices.Equal(gi.shape, xi.shape):
						t.Errorf("%s %s: %s has shape %v, %s has %v", spec.Kind, spec.Loss, name, gi.shape, x, xi.shape)
					case !slices.Equal(declared, xi.shape):
						t.Errorf("%s %s: %s is declared %v, %s has %v", spec.Kind, spec.Loss, name, declared, x, xi.shape)
					}
				}
				if grads == 0 {
					t.Errorf("%s %s: no gradient outputs", spec.Kind, spec.Loss)
				}
			}
		})
	}
}
