package graphs_test

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// tradesSession derives a kind with DeriveTRADES (or Derive for the
// others) and opens a session fed with the forward's parameters and
// statistics.
func tradesSession(t *testing.T, m *onnx.Model, spec graphs.Spec, opts ort.Options) *ort.Session {
	t.Helper()
	derive := graphs.Derive
	if spec.Kind == graphs.KL || spec.Kind == graphs.TRADES {
		derive = graphs.DeriveTRADES
	}
	d, err := derive(m, spec)
	if err != nil {
		t.Fatalf("derive %s: %v", spec.Kind, err)
	}
	s, err := ort.NewSession(d, opts)
	if err != nil {
		t.Fatalf("session %s: %v", spec.Kind, err)
	}
	t.Cleanup(func() { s.Close() })
	params, stats, err := graphs.Parameters(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(params, stats...) {
		if s.Has(p.Name) {
			copy(s.Float(p.Name), p.Data)
		}
	}
	return s
}

// logSoftmax64 returns log softmax of one row, in float64.
func logSoftmax64(z []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = float64(v) - mx - math.Log(s)
	}
	return out
}

// kl64 is KL(softmax(p) ‖ softmax(q)) of one row of logits, in float64.
func kl64(p, q []float32) float64 {
	lp, lq := logSoftmax64(p), logSoftmax64(q)
	s := 0.0
	for j := range lp {
		s += math.Exp(lp[j]) * (lp[j] - lq[j])
	}
	return s
}

func sum64(v []float32) float64 {
	s := 0.0
	for _, e := range v {
		s += float64(e)
	}
	return s
}

// close32 reports whether a and b agree to rel·max|b| (or 1e-6 absolutely).
func close32(a, b []float32, rel float64) (float64, bool) {
	num, den := 0.0, 1e-6
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den, num <= rel*den
}

// TestTRADESKinds checks the kl and trades kinds of zoo models against
// the existing kinds and float64 arithmetic: the kl kind's logits are the
// eval kind's, its loss.each the KL divergence and its grad.x the
// directional derivative of Σ loss.each; the trades kind's two logits are
// the attack kind's at x and x.adv, its loss CE + β·KL, its <stat>.next the
// attack kind's three updates chained (x, x.adv, x), its parameter
// gradients the train kind's at β = 0 and the directional derivative of
// its loss otherwise.
func TestTRADESKinds(t *testing.T) {
	const B = 4
	kernels, _ := ort.Kernels()
	for _, c := range []struct {
		name    string
		model   string
		cfg     zoo.Config
		kernels bool
	}{
		{"convnet", "convnet", zoo.Config{Width: 4, Seed: 3}, false},
		{"convnet-kernels", "convnet", zoo.Config{Width: 4, Seed: 3}, true},
		{"smooth", "", zoo.Config{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.kernels && !kernels {
				t.Skip("slatrun's kernels are not available here")
			}
			m := smoothBN()
			if c.model != "" {
				var err error
				if m, err = zoo.Build(c.model, c.cfg); err != nil {
					t.Fatal(err)
				}
			}
			// The central differences need a smooth function: the zoo
			// models' ReLUs and max pools switch under the steps.
			smooth := c.model == ""
			opts := ort.Options{Threads: 1, Kernels: c.kernels, PlainConv: true}
			r := rand.New(rand.NewSource(7))
			kl := tradesSession(t, m, graphs.Spec{Kind: graphs.KL, Batch: B, Kernels: c.kernels}, opts)
			ev := tradesSession(t, m, graphs.Spec{Kind: graphs.Eval, Batch: B, Taps: []string{}}, opts)
			x := kl.Float(contract.Input)
			for i := range x {
				x[i] = r.Float32()
			}
			K := len(kl.Float(contract.Logits)) / B
			ref := kl.Float(contract.RefLogits)
			for i := range ref {
				ref[i] = float32(r.NormFloat64())
			}
			if err := kl.Run(); err != nil {
				t.Fatal(err)
			}
			copy(ev.Float(contract.Input), x)
			if err := ev.Run(); err != nil {
				t.Fatal(err)
			}
			z := kl.Float(contract.Logits)
			if e, ok := close32(z, ev.Float(contract.Logits), 1e-5); !ok {
				t.Errorf("kl logits differ from the eval kind's by %.3g", e)
			}
			each := kl.Float(contract.LossEach)
			for i := range B {
				want := kl64(ref[i*K:(i+1)*K], z[i*K:(i+1)*K])
				if math.Abs(float64(each[i])-want) > 1e-5*math.Max(1, want) {
					t.Errorf("kl loss.each[%d] = %v, want %v", i, each[i], want)
				}
			}
			// grad.x against a central difference along a random direction.
			gx := append([]float32(nil), kl.Float(contract.InputGrad)...)
			x0 := append([]float32(nil), x...)
			v := make([]float32, len(x))
			dot := 0.0
			for i := range v {
				v[i] = float32(r.NormFloat64())
				dot += float64(gx[i]) * float64(v[i])
			}
			const h = 1e-2
			at := func(s float32) float64 {
				for i := range x {
					x[i] = x0[i] + s*v[i]
				}
				if err := kl.Run(); err != nil {
					t.Fatal(err)
				}
				return sum64(kl.Float(contract.LossEach))
			}
			if fd := (at(h) - at(-h)) / (2 * h); smooth && math.Abs(fd-dot) > 1e-3*math.Abs(fd)+1e-4 {
				t.Errorf("kl grad.x·v = %v, central difference %v", dot, fd)
			}

			// The trades kind.
			const beta = 6
			tr := tradesSession(t, m, graphs.Spec{Kind: graphs.TRADES, Batch: B, Beta: beta, Kernels: c.kernels}, opts)
			at2 := tradesSession(t, m, graphs.Spec{Kind: graphs.Attack, Batch: B, Taps: []string{}, Kernels: c.kernels}, opts)
			xa := tr.Float(contract.AdvInput)
			copy(tr.Float(contract.Input), x0)
			for i := range xa {
				xa[i] = r.Float32() // far from x, so that the KL term weighs

			}
			y := tr.Int64(contract.Labels)
			for i := range y {
				y[i] = int64(r.Intn(K))
			}
			if err := tr.Run(); err != nil {
				t.Fatal(err)
			}
			_, stats, err := graphs.Parameters(m)
			if err != nil {
				t.Fatal(err)
			}
			// The attack kind, three times: x, x.adv, x, each pass starting
			// from the statistics the one before left.
			var zc, za []float32
			for i, in := range [][]float32{x0, xa, x0} {
				copy(at2.Float(contract.Input), in)
				copy(at2.Int64(contract.Labels), y)
				if err := at2.Run(); err != nil {
					t.Fatal(err)
				}
				switch i {
				case 0:
					zc = append([]float32(nil), at2.Float(contract.Logits)...)
				case 1:
					za = append([]float32(nil), at2.Float(contract.Logits)...)
				}
				for _, st := range stats {
					copy(at2.Float(st.Name), at2.Float(contract.NextName(st.Name)))
				}
			}
			if e, ok := close32(tr.Float(contract.Logits), zc, 1e-5); !ok {
				t.Errorf("trades logits differ from the attack kind's at x by %.3g", e)
			}
			if e, ok := close32(tr.Float(contract.AdvLogits), za, 1e-5); !ok {
				t.Errorf("trades logits.adv differ from the attack kind's at x.adv by %.3g", e)
			}
			if len(stats) == 0 {
				t.Fatal("the model has no BN statistics to check")
			}
			for _, st := range stats {
				if e, ok := close32(tr.Float(contract.NextName(st.Name)), at2.Float(st.Name), 1e-6); !ok {
					t.Errorf("%s.next differs from three chained updates by %.3g", st.Name, e)
				}
			}
			want := 0.0
			for i := range B {
				want += -logSoftmax64(zc[i*K : (i+1)*K])[y[i]]
				want += beta * kl64(zc[i*K:(i+1)*K], za[i*K:(i+1)*K])
			}
			want /= B
			if got := float64(tr.Float(contract.Loss)[0]); math.Abs(got-want) > 1e-5*math.Max(1, want) {
				t.Errorf("trades loss = %v, want %v", got, want)
			}

			// β = 0: the parameter gradients are the train kind's.
			tr0 := tradesSession(t, m, graphs.Spec{Kind: graphs.TRADES, Batch: B, Kernels: c.kernels}, opts)
			trn := tradesSession(t, m, graphs.Spec{Kind: graphs.Train, Batch: B, Taps: []string{}, Kernels: c.kernels}, opts)
			copy(tr0.Float(contract.Input), x0)
			copy(tr0.Float(contract.AdvInput), xa)
			copy(tr0.Int64(contract.Labels), y)
			copy(trn.Float(contract.Input), x0)
			copy(trn.Int64(contract.Labels), y)
			if err := tr0.Run(); err != nil {
				t.Fatal(err)
			}
			if err := trn.Run(); err != nil {
				t.Fatal(err)
			}
			params, _, err := graphs.Parameters(m)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range params {
				g := contract.GradName(p.Name)
				if e, ok := close32(tr0.Float(g), trn.Float(g), 1e-5); !ok {
					t.Errorf("β = 0: %s differs from the train kind's by %.3g", g, e)
				}
			}

			// β = 6: Σ_p grad.p·v_p against a central difference of loss.
			dot = 0
			vs := make([][]float32, len(params))
			for k, p := range params {
				vs[k] = make([]float32, len(p.Data))
				g := tr.Float(contract.GradName(p.Name))
				for i := range vs[k] {
					vs[k][i] = float32(r.NormFloat64())
					dot += float64(g[i]) * float64(vs[k][i])
				}
			}
			loss := func(s float32) float64 {
				for k, p := range params {
					w := tr.Float(p.Name)
					for i := range w {
						w[i] = p.Data[i] + s*vs[k][i]
					}
				}
				if err := tr.Run(); err != nil {
					t.Fatal(err)
				}
				return float64(tr.Float(contract.Loss)[0])
			}
			const hp = 1e-2
			if fd := (loss(hp) - loss(-hp)) / (2 * hp); smooth && math.Abs(fd-dot) > 1e-3*math.Abs(fd)+1e-4 {
				t.Errorf("trades Σ grad·v = %v, central difference %v", dot, fd)
			}
		})
	}
}

// smoothBN is a small smooth model with batch norm: Conv, BN, Tanh, global
// average pool, Gemm; 2×4×4 inputs, 5 classes.
func smoothBN() *onnx.Model {
	r := rand.New(rand.NewSource(11))
	b := onnx.NewBuilder("smooth")
	b.Input("img", onnx.Float, -1, 2, 4, 4)
	w := b.Floats("conv.w", []int64{3, 2, 3, 3}, normals(r, 54, 0.5))
	cb := b.Floats("conv.b", []int64{3}, normals(r, 3, 0.1))
	h := b.Op("Conv", []string{"img", w, cb}, onnx.AttrInts("pads", 1, 1, 1, 1))
	sc := b.Floats("bn.scale", []int64{3}, []float32{1, 0.8, 1.2})
	bi := b.Floats("bn.bias", []int64{3}, []float32{0.1, -0.1, 0})
	mean := b.Floats("bn.mean", []int64{3}, []float32{0.1, 0, -0.2})
	vr := b.Floats("bn.var", []int64{3}, []float32{1, 0.5, 2})
	h = b.Op("BatchNormalization", []string{h, sc, bi, mean, vr})
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{b.Op("Tanh", []string{h})})})
	fw := b.Floats("fc.w", []int64{5, 3}, normals(r, 15, 1))
	fb := b.Floats("fc.b", []int64{5}, normals(r, 5, 0.1))
	b.Node("Gemm", []string{h, fw, fb}, []string{"out"}, onnx.AttrInt("transB", 1))
	b.Output("out", onnx.Float, -1, 5)
	return b.Model()
}

func normals(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64()) * scale
	}
	return v
}

// TestTRADESMetadata checks what the derived graphs say about themselves
// and the errors of DeriveTRADES.
func TestTRADESMetadata(t *testing.T) {
	m, err := zoo.Build("convnet", zoo.Config{Width: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec     graphs.Spec
		loss     string
		beta     string
		inputs   []string
		outputs  []string
		errMatch string
	}{
		{spec: graphs.Spec{Kind: graphs.KL, Batch: 2}, loss: contract.HeadKL,
			inputs: []string{contract.Input, contract.RefLogits}, outputs: []string{contract.Logits, contract.LossEach, contract.InputGrad}},
		{spec: graphs.Spec{Kind: graphs.TRADES, Batch: 2, Beta: 6}, loss: contract.HeadTRADES, beta: "6",
			inputs: []string{contract.Input, contract.Labels, contract.AdvInput}, outputs: []string{contract.Loss, contract.Logits, contract.AdvLogits}},
		{spec: graphs.Spec{Kind: graphs.TRADES, Batch: 2, Beta: float32(math.NaN())}, errMatch: "Beta"},
		{spec: graphs.Spec{Kind: graphs.TRADES, Batch: 0}, errMatch: "Batch"},
		{spec: graphs.Spec{Kind: graphs.KL, Batch: 2, Taps: []string{"stem"}}, errMatch: "no taps"},
		{spec: graphs.Spec{Kind: graphs.Train, Batch: 2}, errMatch: "kl and trades"},
	} {
		d, err := graphs.DeriveTRADES(m, c.spec)
		if c.errMatch != "" {
			if err == nil || !strings.Contains(err.Error(), c.errMatch) {
				t.Errorf("%+v: err = %v, want one mentioning %q", c.spec, err, c.errMatch)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.spec.Kind, err)
		}
		info := graphs.ReadInfo(d)
		if info.Kind != c.spec.Kind || info.Loss != c.loss || info.Batch != 2 || len(info.Taps) != 0 {
			t.Errorf("%s: metadata %+v", c.spec.Kind, info)
		}
		if v, _ := d.Metadata(contract.MetaBeta); v != c.beta {
			t.Errorf("%s: %s = %q, want %q", c.spec.Kind, contract.MetaBeta, v, c.beta)
		}
		names := map[string]bool{}
		for _, vi := range d.Graph().GetInput() {
			names["in:"+vi.GetName()] = true
		}
		for _, vi := range d.Graph().GetOutput() {
			names["out:"+vi.GetName()] = true
		}
		for _, n := range c.inputs {
			if !names["in:"+n] {
				t.Errorf("%s: no input %q", c.spec.Kind, n)
			}
		}
		for _, n := range c.outputs {
			if !names["out:"+n] {
				t.Errorf("%s: no output %q", c.spec.Kind, n)
			}
		}
		for _, st := range info.Stats {
			if got := names["out:"+contract.NextName(st)]; got != (c.spec.Kind == graphs.TRADES) {
				t.Errorf("%s: output %s.next present = %v", c.spec.Kind, st, got)
			}
		}
	}
}
