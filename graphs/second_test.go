package graphs

import (
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// firstOrderGraphs derives every kind (plain form) of the zoo models and
// the PyTorch fixture, the TRADES kinds included, that second-order
// derivation must handle.
func firstOrderGraphs(t *testing.T) map[string]*onnx.Model {
	t.Helper()
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
		{"preactresnet18", func() (*onnx.Model, error) { return zoo.Build("preactresnet18", zoo.Config{Width: 4}) }},
		{"torch", func() (*onnx.Model, error) { return torch, nil }},
	}
	specs := []Spec{
		{Kind: Attack, Batch: 2},
		{Kind: Train, Batch: 2},
		{Kind: Train, Batch: 2, InputGrad: true, NoDomainClip: true},
		{Kind: Eval, Batch: 2},
		{Kind: Eval, Batch: 2, Loss: contract.HeadCW},
		{Kind: Eval, Batch: 2, Loss: contract.HeadDLR},
		{Kind: Eval, Batch: 2, Loss: contract.HeadDLRT},
		{Kind: Eval, Batch: 2, Loss: contract.HeadDiffT},
	}
	out := map[string]*onnx.Model{}
	for _, mc := range models {
		fwd, err := mc.model()
		if err != nil {
			t.Fatal(err)
		}
		k := int(ReadInfoClasses(t, fwd))
		for _, spec := range specs {
			if spec.Kind == Eval && k < contract.MinClasses(spec.Loss) {
				continue
			}
			m, err := Derive(fwd, spec)
			if err != nil {
				t.Fatalf("%s %s %s: %v", mc.name, spec.Kind, spec.Loss, err)
			}
			out[fmt.Sprintf("%s/%s%s in %v nd %v", mc.name, spec.Kind, spec.Loss, spec.InputGrad, spec.NoDomainClip)] = m
		}
		for _, spec := range []Spec{{Kind: KL, Batch: 2}, {Kind: TRADES, Batch: 2, Beta: 6}} {
			m, err := DeriveTRADES(fwd, spec)
			if err != nil {
				t.Fatalf("%s %s: %v", mc.name, spec.Kind, err)
			}
			out[mc.name+"/"+string(spec.Kind)] = m
		}
	}
	return out
}

// ReadInfoClasses returns the class count of a forward graph's logits.
func ReadInfoClasses(t *testing.T, fwd *onnx.Model) int64 {
	t.Helper()
	g, err := loadGraph(fwd, 1)
	if err != nil {
		t.Fatal(err)
	}
	return g.info[g.output].shape[1]
}

// TestSecondOrderCoverage checks that every op of every first-order graph
// of the zoo models and the PyTorch fixture has a gradient rule (noGrad
// counts: an explicit registration that no gradient flows), and that
// Differentiate, seeding every float output, differentiates each graph
// with respect to every float input: the grad2.<t> outputs have t's shape
// by the shape rules run over the second-order graph.
func TestSecondOrderCoverage(t *testing.T) {
	graphs := firstOrderGraphs(t)
	names := make([]string, 0, len(graphs))
	for k := range graphs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		m := graphs[name]
		for _, n := range m.Graph().GetNode() {
			if def := ops[n.GetOpType()]; n.GetDomain() != "" || def == nil || def.grad == nil {
				t.Errorf("%s: node %q: op %s (domain %q) has no gradient rule", name, n.GetName(), n.GetOpType(), n.GetDomain())
			}
		}
		var seeds, wrt []string
		for _, o := range m.Graph().GetOutput() {
			if dt, _, _ := onnx.ValueShape(o); dt == onnx.Float {
				seeds = append(seeds, o.GetName())
			}
		}
		for _, in := range m.Graph().GetInput() {
			if dt, _, _ := onnx.ValueShape(in); dt == onnx.Float {
				wrt = append(wrt, in.GetName())
			}
		}
		m2, err := Differentiate(m, seeds, wrt)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		info := inferDerived(t, m2)
		for _, w := range wrt {
			if gi := info[contract.Grad2Name(w)]; gi == nil || !slices.Equal(gi.shape, info[w].shape) {
				t.Errorf("%s: %s missing or of the wrong shape", name, contract.Grad2Name(w))
			}
		}
		if v, _ := m2.Metadata(contract.MetaKind); v != contract.KindSecondOrder {
			t.Errorf("%s: kind %q", name, v)
		}
	}
}

// TestDifferentiateRefuses checks Differentiate's argument errors and its
// refusal of graphs with NCHWc or slatrun kernels.
func TestDifferentiateRefuses(t *testing.T) {
	fwd, err := zoo.Build("convnet", zoo.Config{Width: 16})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Derive(fwd, Spec{Kind: Attack, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	kern, err := Derive(fwd, Spec{Kind: Attack, Batch: 2, Kernels: true})
	if err != nil {
		t.Fatal(err)
	}
	eval, err := Derive(fwd, Spec{Kind: Eval, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	trainingBN := eval.Clone()
	for _, n := range trainingBN.Graph().GetNode() {
		if n.GetOpType() == "BatchNormalization" {
			n.Attribute = append(n.Attribute, onnx.AttrInt("training_mode", 1))
			break
		}
	}
	cases := []struct {
		name        string
		m           *onnx.Model
		seeds, wrt  []string
		errContains string
	}{
		{"kernels", kern, []string{contract.InputGrad}, []string{contract.Input}, "plain form"},
		{"training-mode BN", trainingBN, []string{contract.InputGrad}, []string{contract.Input}, "training_mode"},
		{"no seeds", plain, nil, []string{contract.Input}, "at least one"},
		{"unknown seed", plain, []string{"nope"}, []string{contract.Input}, "not an output"},
		{"seed twice", plain, []string{contract.Loss, contract.Loss}, []string{contract.Input}, "twice"},
		{"int wrt", plain, []string{contract.Loss}, []string{contract.Labels}, "not a float"},
		{"unknown wrt", plain, []string{contract.Loss}, []string{"nope"}, "neither an input"},
	}
	for _, c := range cases {
		_, err := Differentiate(c.m, c.seeds, c.wrt)
		if err == nil || !strings.Contains(err.Error(), c.errContains) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.errContains)
		}
	}
	if _, err := DeriveHVP(fwd, Spec{Kind: Attack, Batch: 2, NCHWcBlock: 8}); err == nil {
		t.Errorf("DeriveHVP accepted Spec.NCHWcBlock")
	}
	if _, err := DeriveHVP(fwd, Spec{Kind: Train, Batch: 2}); err == nil {
		t.Errorf("DeriveHVP accepted the train kind")
	}
}

// hvpCheck is a finite-difference check of second-order quantities: first
// is a first-order graph whose outputs grad.<t> are the gradients of some
// loss; second is Differentiate(first, [grad.<t>...], wrt) and its
// outputs grad2.<p> are ∂f/∂p of f = Σ_t ⟨v_t, grad.<t>⟩. Central
// differences of f, run through first at p ± h on single coordinates and
// along one random direction over every wrt tensor, are compared with
// grad2.<p>.
type hvpCheck struct {
	name   string
	first  *onnx.Model
	wrt    []string             // inputs of first to differentiate
	values map[string][]float32 // inputs of first (the rest: zeros)
	labels []int64              // y, if first takes it
	coords int                  // coordinates per wrt tensor (default 8)
	h      float64
	// rules replaces gradient rules while the second-order graph is
	// derived (the broken-rule test).
	rules map[string]gradRule
}

// run returns the largest relative error.
func (c hvpCheck) run(t *testing.T, r *rand.Rand) fdResult {
	t.Helper()
	var seeds []string
	for _, o := range c.first.Graph().GetOutput() {
		if strings.HasPrefix(o.GetName(), contract.GradPrefix) {
			seeds = append(seeds, o.GetName())
		}
	}
	saved := map[string]gradRule{}
	for op, rule := range c.rules {
		saved[op] = ops[op].grad
		ops[op].grad = rule
	}
	second, err := Differentiate(c.first, seeds, c.wrt)
	for op, rule := range saved {
		ops[op].grad = rule
	}
	if err != nil {
		t.Fatalf("%s: differentiate: %v", c.name, err)
	}
	s1, err := ort.NewSession(c.first, ort.Options{Threads: 1})
	if err != nil {
		t.Fatalf("%s: session: %v", c.name, err)
	}
	defer s1.Close()
	s2, err := ort.NewSession(second, ort.Options{Threads: 1})
	if err != nil {
		t.Fatalf("%s: session: %v", c.name, err)
	}
	defer s2.Close()
	for name, v := range c.values {
		copy(s1.Float(name), v)
		copy(s2.Float(name), v)
	}
	if c.labels != nil {
		copy(s1.Int64(contract.Labels), c.labels)
		copy(s2.Int64(contract.Labels), c.labels)
	}
	seedv := map[string][]float32{}
	for _, o := range seeds {
		seedv[o] = randn(r, len(s2.Float(contract.SeedName(o))), 1)
		copy(s2.Float(contract.SeedName(o)), seedv[o])
	}
	if err := s2.Run(); err != nil {
		t.Fatalf("%s: run: %v", c.name, err)
	}
	hvp := map[string][]float32{}
	for _, p := range c.wrt {
		hvp[p] = append([]float32(nil), s2.Float(contract.Grad2Name(p))...)
	}
	scale := 0.0 // Σ |v ⊙ grad|: the size of f's rounding error
	f := func() float64 {
		if err := s1.Run(); err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		sum, abs := 0.0, 0.0
		for _, o := range seeds {
			for i, g := range s1.Float(o) {
				sum += float64(seedv[o][i]) * float64(g)
				abs += math.Abs(float64(seedv[o][i]) * float64(g))
			}
		}
		scale = abs
		return sum
	}
	f()
	h := c.h
	if h == 0 {
		h = 1e-2
	}
	noise := 200 * 6e-8 * scale / h
	res := fdResult{}
	compare := func(what string, a, fd, rms float64) {
		den := math.Max(math.Max(math.Abs(a), math.Abs(fd)), 0.05*rms+noise)
		if e := math.Abs(a-fd) / den; e > res.maxRel {
			res.maxRel = e
			res.where = fmt.Sprintf("%s: analytic %.6g, fd %.6g", what, a, fd)
		}
	}
	coords := c.coords
	if coords == 0 {
		coords = 8
	}
	for _, p := range c.wrt {
		v := s1.Float(p)
		rms := 0.0
		for _, a := range hvp[p] {
			rms += float64(a) * float64(a)
		}
		rms = math.Sqrt(rms / float64(len(v)))
		idx := r.Perm(len(v))
		if len(idx) > coords {
			idx = idx[:coords]
		}
		for _, i := range idx {
			old := v[i]
			v[i] = old + float32(h)
			hp := float64(v[i]) - float64(old)
			fp := f()
			v[i] = old - float32(h)
			hm := float64(old) - float64(v[i])
			fm := f()
			v[i] = old
			compare(fmt.Sprintf("%s[%d]", p, i), float64(hvp[p][i]), (fp-fm)/(hp+hm), rms)
		}
	}
	// one direction u over every wrt tensor: ⟨grad2, u⟩ against
	// (f(θ+hu) − f(θ−hu)) / 2h
	u := map[string][]float32{}
	dot, norm := 0.0, 0.0
	for _, p := range c.wrt {
		u[p] = randn(r, len(hvp[p]), 1)
		for i, a := range hvp[p] {
			dot += float64(a) * float64(u[p][i])
			norm += float64(a) * float64(a)
		}
	}
	base := map[string][]float32{}
	move := func(sign float64) {
		for _, p := range c.wrt {
			v := s1.Float(p)
			if base[p] == nil {
				base[p] = append([]float32(nil), v...)
			}
			for i := range v {
				v[i] = base[p][i] + float32(sign*h)*u[p][i]
			}
		}
	}
	move(1)
	fp := f()
	move(-1)
	fm := f()
	move(0)
	compare("direction", dot, (fp-fm)/(2*h), math.Sqrt(norm))
	return res
}

// linearFirstOrder returns the first-order graph of an fdCase (the loss
// Σ w ⊙ out, outputs grad.<t> of the differentiated tensors) and the
// values of its inputs.
func linearFirstOrder(t *testing.T, c fdCase, r *rand.Rand) (*onnx.Model, []string, map[string][]float32) {
	t.Helper()
	fwd := buildCase(c, r)
	wrt := c.wrt
	if wrt == nil {
		wrt = []string{"x"}
		for _, in := range fwd.Graph().GetInitializer() {
			if in.GetName()[0] == 'p' && onnx.DType(in.GetDataType()) == onnx.Float {
				wrt = append(wrt, in.GetName())
			}
		}
	}
	g, err := loadGraph(fwd, c.x[0])
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	w := randn(r, int(onnx.NumElements(g.info["logits"].shape)), 1)
	m, err := deriveLinear(fwd, int(c.x[0]), c.training, wrt, w)
	if err != nil {
		t.Fatalf("%s: derive: %v", c.name, err)
	}
	xgen := c.xgen
	if xgen == nil {
		xgen = awayFromZero
	}
	values := map[string][]float32{"x": xgen(r, int(onnx.NumElements(g.info["x"].shape)))}
	for _, in := range fwd.Graph().GetInitializer() {
		if slices.Contains(wrt, in.GetName()) {
			values[in.GetName()], _ = onnx.TensorFloats(in)
		}
	}
	return m, wrt, values
}

// secondOrderSkips are the fdCases whose second-order check does not
// apply, with the reason.
var secondOrderSkips = map[string]string{}

// squared returns c with its output squared: for an op that is linear
// (or piecewise linear) in what it differentiates, the Hessian of the
// linear objective is zero, while that of Σ w ⊙ out² is 2·Jᵀ diag(w) J,
// which the second-order graph computes by differentiating the op's
// backward nodes with respect to the gradient they carry.
func squared(c fdCase) fdCase {
	build := c.build
	c.name += " squared"
	c.build = func(b *onnx.Builder, r *rand.Rand) string {
		o := build(b, r)
		return b.Op("Mul", []string{o, o})
	}
	return c
}

// runHVP runs the second-order check on every case of an op family, as
// is and squared: the linear objective's first-order graph,
// differentiated again.
func runHVP(t *testing.T, cases []fdCase) {
	var all []fdCase
	for _, c := range cases {
		all = append(all, c, squared(c))
	}
	for _, c := range all {
		c := c
		t.Run(c.name, func(t *testing.T) {
			if why, ok := secondOrderSkips[c.name]; ok {
				t.Skip(why)
			}
			r := rand.New(rand.NewSource(int64(len(c.name)) * 104729))
			first, wrt, values := linearFirstOrder(t, c, r)
			res := hvpCheck{name: c.name, first: first, wrt: wrt, values: values, h: c.h}.run(t, r)
			tol := 2e-2
			if res.maxRel > tol {
				t.Errorf("max relative error %.3g > %.3g at %s", res.maxRel, tol, res.where)
			} else {
				t.Logf("max relative error %.3g", res.maxRel)
			}
		})
	}
}

// TestSecondOrderFD checks Hessian-vector products, op family by op
// family, on the cases of the first-order finite-difference tests.
func TestSecondOrderFD(t *testing.T) {
	for _, fam := range []struct {
		name  string
		cases []fdCase
	}{
		{"elementwise", elementwiseCases}, {"conv", convCases}, {"pooling", poolingCases},
		{"norm", normCases}, {"shape", shapeCases}, {"loss", lossCases},
	} {
		t.Run(fam.name, func(t *testing.T) { runHVP(t, fam.cases) })
	}
}

// findCase returns the fdCase of the given name.
func findCase(t *testing.T, cases []fdCase, name string) fdCase {
	t.Helper()
	for _, c := range cases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no case %q", name)
	return fdCase{}
}

// TestSecondOrderFDCatchesWrongRules proves the second-order checker can
// fail: a rule broken only while the second-order graph is derived (the
// first-order graph is right) must exceed the tolerance.
func TestSecondOrderFDCatchesWrongRules(t *testing.T) {
	cases := []struct {
		op   string
		rule gradRule
		c    fdCase
	}{
		{"ScatterElements", func(d *deriver, n *node, dy []string) ([]string, error) {
			// the updates' gradient with its sign flipped
			res, err := scatterElementsGrad(d, n, dy)
			if err == nil && res[2] != "" {
				res[2] = d.op("Neg", []string{res[2]})
			}
			return res, err
		}, squared(findCase(t, poolingCases, "MaxPool/3x3 s2 p1 (overlapping)"))},
		{"ConvTranspose", func(d *deriver, n *node, dy []string) ([]string, error) {
			// the weight gradient doubled
			res, err := convTransposeGrad(d, n, dy)
			if err == nil && res[1] != "" {
				res[1] = d.mul(res[1], d.scalar(2))
			}
			return res, err
		}, findCase(t, convCases, "Conv/3x3 pad1")},
		{"Reciprocal", func(d *deriver, n *node, dy []string) ([]string, error) {
			// +dY/x² instead of −dY/x²
			return one(d.op("Div", []string{dy[0], d.mul(n.in[0], n.in[0])})), nil
		}, findCase(t, normCases, "BatchNormalization/training")},
	}
	for _, c := range cases {
		r := rand.New(rand.NewSource(7))
		first, wrt, values := linearFirstOrder(t, c.c, r)
		res := hvpCheck{name: c.c.name, first: first, wrt: wrt, values: values, h: c.c.h,
			rules: map[string]gradRule{c.op: c.rule}}.run(t, r)
		if res.maxRel < 0.1 {
			t.Errorf("%s with a wrong %s rule: the second-order check did not catch it (max error %.3g)", c.c.name, c.op, res.maxRel)
		} else {
			t.Logf("%s with a wrong %s rule: caught, max relative error %.3g at %s", c.c.name, c.op, res.maxRel, res.where)
		}
	}
}

// smooth returns a copy of a forward graph with every Relu replaced by
// Softplus. A whole ReLU network's gradient is piecewise smooth with
// pieces so small (every parameter moves thousands of pre-activations)
// that a step of 1e-4 already crosses kinks, and float32 central
// differences cannot use a smaller one; with Softplus the Hessian is
// continuous, and every other op of the graph, and the second-order path
// through each of them, is the same. ReLU's own second-order rules are
// checked op by op (TestSecondOrderFD).
func smooth(m *onnx.Model) *onnx.Model {
	c := m.Clone()
	for _, n := range c.Graph().GetNode() {
		if n.GetOpType() == "Relu" {
			n.OpType = proto.String("Softplus")
		}
	}
	return c
}

// TestSecondOrderWholeModels checks Hessian-vector products of whole
// models (small width, batch 2, ReLU made smooth): the attack graph (BN on
// batch statistics) and the eval graph (BN on running statistics)
// differentiated again with seed grad.x, against central differences of
// ⟨v, grad.x⟩ through the first-order graph, with respect to x and (attack)
// a few parameters: the stem, a BN scale, a deep convolution, the head. It
// also checks DeriveHVP's interface on the original models.
func TestSecondOrderWholeModels(t *testing.T) {
	for _, mc := range []struct {
		name string
		cfg  zoo.Config
		kind Kind
		wrt  []int // parameter indices, from the end when negative
	}{
		{"convnet", zoo.Config{Width: 4}, Attack, []int{0, 1, 4, -2}},
		{"convnet", zoo.Config{Width: 4}, Eval, nil},
		{"preactresnet18", zoo.Config{Width: 4}, Attack, []int{0, 1, 10, -2}},
	} {
		t.Run(mc.name+"/"+string(mc.kind), func(t *testing.T) {
			orig, err := zoo.Build(mc.name, mc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			fwd := smooth(orig)
			spec := Spec{Kind: mc.kind, Batch: 2, Taps: []string{}}
			first, err := Derive(fwd, spec)
			if err != nil {
				t.Fatal(err)
			}
			params, stats, err := Parameters(fwd)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(11))
			values := map[string][]float32{}
			if mc.kind != Eval {
				for _, p := range append(params, stats...) {
					values[p.Name] = p.Data
				}
			}
			g, err := loadGraph(fwd, 2)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, onnx.NumElements(g.info[contract.Input].shape))
			for i := range x {
				x[i] = r.Float32()
			}
			values[contract.Input] = x
			classes := g.info[g.output].shape[1]
			labels := []int64{r.Int63n(classes), r.Int63n(classes)}
			wrt := []string{contract.Input}
			for _, i := range mc.wrt {
				if i < 0 {
					i += len(params)
				}
				wrt = append(wrt, params[i].Name)
			}
			res := hvpCheck{name: mc.name, first: first, wrt: wrt, values: values, labels: labels, coords: 6, h: 1e-3}.run(t, r)
			if res.maxRel > 2e-2 {
				t.Errorf("max relative error %.3g > 2e-2 at %s", res.maxRel, res.where)
			} else {
				t.Logf("max relative error %.3g at %s", res.maxRel, res.where)
			}

			hvp, err := DeriveHVP(orig, spec)
			if err != nil {
				t.Fatal(err)
			}
			ins, outs := map[string]bool{}, map[string]bool{}
			for _, vi := range hvp.Graph().GetInput() {
				ins[vi.GetName()] = true
			}
			for _, vi := range hvp.Graph().GetOutput() {
				outs[vi.GetName()] = true
			}
			want := []string{contract.Grad2Name(contract.Input), contract.InputGrad}
			wantIn := []string{contract.Input, contract.Labels, contract.SeedName(contract.InputGrad)}
			if mc.kind == Attack {
				want = append(want, contract.Loss)
				for _, p := range params {
					want = append(want, contract.Grad2Name(p.Name))
				}
				wantIn = append(wantIn, params[0].Name)
			}
			for _, o := range want {
				if !outs[o] {
					t.Errorf("DeriveHVP: no output %s", o)
				}
			}
			for _, in := range wantIn {
				if !ins[in] {
					t.Errorf("DeriveHVP: no input %s", in)
				}
			}
		})
	}
}
