package graphs_test

import (
	"fmt"
	"math"
	"math/rand"
	"sort"
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

func fill(s *ort.Session, r *rand.Rand, classes int) {
	for i := range s.Float("x") {
		s.Float("x")[i] = r.Float32()
	}
	for i := range s.Int64("y") {
		s.Int64("y")[i] = int64(r.Intn(classes))
	}
}

func finite(t *testing.T, what string, v []float32) {
	t.Helper()
	for i, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			t.Fatalf("%s[%d] = %v", what, i, f)
		}
	}
}

// TestZooDerivesAllKinds derives every kind of every zoo model and runs it.
func TestZooDerivesAllKinds(t *testing.T) {
	type tc struct {
		name  string
		cfg   zoo.Config
		batch int
		long  bool
	}
	cases := []tc{
		{"convnet", zoo.Config{Width: 4}, 4, false},
		{"mlp", zoo.Config{}, 4, false},
		{"preactresnet18", zoo.Config{Width: 8}, 2, false},
		{"wrn-28-10", zoo.Config{Width: 1}, 2, false},
		{"preactresnet18", zoo.Config{}, 2, true},
		{"wrn-28-10", zoo.Config{}, 2, true},
	}
	for _, c := range cases {
		c := c
		t.Run(fmt.Sprintf("%s-w%d", c.name, c.cfg.Width), func(t *testing.T) {
			if c.long && testing.Short() {
				t.Skip("full-size model; skipped with -short")
			}
			m, err := zoo.Build(c.name, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(1))
			for _, spec := range []graphs.Spec{
				{Kind: graphs.Forward, Batch: c.batch},
				{Kind: graphs.Attack, Batch: c.batch},
				{Kind: graphs.Train, Batch: c.batch},
				{Kind: graphs.Train, Batch: c.batch, InputGrad: true, NoDomainClip: true},
				{Kind: graphs.Eval, Batch: c.batch},
				{Kind: graphs.Eval, Batch: c.batch, Loss: "cw"},
				{Kind: graphs.Eval, Batch: c.batch, Loss: "dlr"},
			} {
				d, err := graphs.Derive(m, spec)
				if err != nil {
					t.Fatalf("%s: %v", spec.Kind, err)
				}
				info := graphs.ReadInfo(d)
				if info.Kind != spec.Kind || info.Batch != c.batch || len(info.Taps) == 0 {
					t.Errorf("%s: metadata %+v", spec.Kind, info)
				}
				if spec.Kind != graphs.Forward {
					for _, n := range d.Graph().GetNode() {
						if n.GetDomain() != "" {
							t.Fatalf("%s: node %s in domain %s", spec.Kind, n.GetOpType(), n.GetDomain())
						}
					}
				}
				s, err := ort.NewSession(d, ort.Options{Threads: 1, Batch: c.batch})
				if err != nil {
					t.Fatalf("%s: %v", spec.Kind, err)
				}
				params, stats, _ := graphs.Parameters(m)
				for _, p := range append(params, stats...) {
					if s.Has(p.Name) {
						copy(s.Float(p.Name), p.Data)
					}
				}
				if s.Has("y") {
					fill(s, r, 10)
				}
				if err := s.Run(); err != nil {
					t.Fatalf("%s: run: %v", spec.Kind, err)
				}
				for _, o := range s.Outputs() {
					finite(t, string(spec.Kind)+" "+o, s.Float(o))
				}
				if spec.Kind == graphs.Train {
					for _, p := range params {
						if !s.Has("grad." + p.Name) {
							t.Errorf("train: no grad.%s", p.Name)
						}
					}
					for _, st := range stats {
						if !s.Has(st.Name + ".next") {
							t.Errorf("train: no %s.next", st.Name)
						}
					}
				}
				s.Close()
			}
		})
	}
}

// ce is the mean cross-entropy of logits [B,K] in float64.
func ce(logits []float32, y []int64) float64 {
	each := ceEach(logits, y)
	s := 0.0
	for _, v := range each {
		s += v
	}
	return s / float64(len(y))
}

func ceEach(logits []float32, y []int64) []float64 {
	B := len(y)
	K := len(logits) / B
	out := make([]float64, B)
	for i := 0; i < B; i++ {
		row := logits[i*K : (i+1)*K]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		s := 0.0
		for _, v := range row {
			s += math.Exp(float64(v) - mx)
		}
		out[i] = mx + math.Log(s) - float64(row[y[i]])
	}
	return out
}

// dlrEach is Croce & Hein's DLR loss per example; with target ≥ 0 the
// targeted form (z_t − z_y)/(z_π1 − (z_π3+z_π4)/2).
func dlrEach(logits []float32, y, target []int64) []float64 {
	B := len(y)
	K := len(logits) / B
	out := make([]float64, B)
	for i := 0; i < B; i++ {
		row := make([]float64, K)
		for j := range row {
			row[j] = float64(logits[i*K+j])
		}
		sorted := append([]float64(nil), row...)
		sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
		if target == nil {
			out[i] = (cwEach(logits[i*K:(i+1)*K], y[i:i+1])[0]) / (sorted[0] - sorted[2] + 1e-12)
		} else {
			out[i] = (row[target[i]] - row[y[i]]) / (sorted[0] - (sorted[2]+sorted[3])/2 + 1e-12)
		}
	}
	return out
}

func cwEach(logits []float32, y []int64) []float64 {
	B := len(y)
	K := len(logits) / B
	out := make([]float64, B)
	for i := 0; i < B; i++ {
		row := logits[i*K : (i+1)*K]
		mx := math.Inf(-1)
		for j, v := range row {
			if int64(j) != y[i] {
				mx = math.Max(mx, float64(v))
			}
		}
		out[i] = mx - float64(row[y[i]])
	}
	return out
}

// fdCheck compares grad, the analytic gradient of f with respect to v, with
// central differences of f (which reruns a session and computes the loss in
// float64 from its outputs): along sign(grad) and 2 random ±1 directions,
// which sum the signal of every coordinate while float32 noise stays that of
// one run, and on the 3 coordinates with the largest gradient.
func fdCheck(t *testing.T, what string, r *rand.Rand, v, grad []float32, h float32, f func() float64, tol float64) {
	t.Helper()
	f() // the outputs of the unperturbed point
	grad = append([]float32(nil), grad...)
	orig := append([]float32(nil), v...)
	l1 := 0.0
	for _, g := range grad {
		l1 += math.Abs(float64(g))
	}
	worst, where := 0.0, ""
	check := func(label string, a, fd, floor float64) {
		if e := math.Abs(a-fd) / math.Max(math.Max(math.Abs(a), math.Abs(fd)), floor); e > worst {
			worst, where = e, fmt.Sprintf("%s: analytic %.6g fd %.6g", label, a, fd)
		}
	}
	for k := 0; k < 3; k++ {
		// k = 0: along sign(grad) (all the signal); then random ±1
		u := make([]float32, len(v))
		a := 0.0
		for i := range u {
			u[i] = float32(2*r.Intn(2) - 1)
			if k == 0 && grad[i] < 0 {
				u[i] = -1
			} else if k == 0 {
				u[i] = 1
			}
			a += float64(grad[i]) * float64(u[i])
		}
		for i := range v {
			v[i] = orig[i] + h*u[i]
		}
		fp := f()
		for i := range v {
			v[i] = orig[i] - h*u[i]
		}
		fm := f()
		copy(v, orig)
		check(fmt.Sprintf("direction %d", k), a, (fp-fm)/float64(2*h), 0.05*l1)
	}
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return math.Abs(float64(grad[idx[i]])) > math.Abs(float64(grad[idx[j]])) })
	const hc = 1e-2 // one coordinate: a larger step keeps float32 noise down
	for _, i := range idx[:min(3, len(idx))] {
		v[i] = orig[i] + hc
		fp := f()
		v[i] = orig[i] - hc
		fm := f()
		v[i] = orig[i]
		check(fmt.Sprintf("[%d]", i), float64(grad[i]), (fp-fm)/float64(2*hc), 0)
	}
	if worst > tol {
		t.Errorf("%s: max relative error %.3g > %g at %s", what, worst, tol, where)
	} else {
		t.Logf("%-28s max relative error %.2e", what, worst)
	}
}

func run(t *testing.T, s *ort.Session) {
	t.Helper()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
}

// TestConvNetWholeGraph checks the derived graphs of the zoo convnet
// (width 4, batch 4) against finite differences of the whole model. The
// ReLUs are swapped for Softplus: with BN on batch statistics every
// activation of the batch moves when one weight does, and a ReLU network's
// loss has kinks closer than any usable h (the central difference converges
// to the analytic value only for h ≲ 3e-4, where float32 noise dominates).
// ReLU itself is checked op by op and, in a whole network, against PyTorch
// (TestTorchFixture).
func TestConvNetWholeGraph(t *testing.T) {
	const B = 4
	m, err := zoo.Build("convnet", zoo.Config{Width: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "Relu" {
			n.OpType = protoString("Softplus")
		}
	}
	taps := zoo.DefaultTaps("convnet")
	r := rand.New(rand.NewSource(5))
	tr := session(t, m, graphs.Spec{Kind: graphs.Train, Batch: B, InputGrad: true})
	defer tr.Close()
	fill(tr, r, 10)
	x := append([]float32(nil), tr.Float("x")...)
	y := append([]int64(nil), tr.Int64("y")...)
	run(t, tr)
	if got, want := float64(tr.Float("loss")[0]), ce(tr.Float("logits"), y); math.Abs(got-want) > 1e-5*want {
		t.Errorf("loss %v, cross-entropy of the logits %v", got, want)
	}
	loss := func() float64 { run(t, tr); return ce(tr.Float("logits"), y) }
	params, _, _ := graphs.Parameters(m)
	seen := map[int]int{}
	for _, p := range params {
		// a few parameters of each kind: conv weights (rank 4), fc weight
		// (rank 2), BN γ/β and biases (rank 1)
		if seen[len(p.Shape)] >= 3 {
			continue
		}
		seen[len(p.Shape)]++
		fdCheck(t, "train grad."+p.Name, r, tr.Float(p.Name), tr.Float("grad."+p.Name), 2e-3, loss, 2e-2)
	}
	fdCheck(t, "train grad.x", r, tr.Float("x"), tr.Float("grad.x"), 1e-3, loss, 2e-2)

	// attack: grad.x equals train's at δ = 0; grad.<tap> vs FD of delta.<tap>
	at := session(t, m, graphs.Spec{Kind: graphs.Attack, Batch: B})
	defer at.Close()
	copy(at.Float("x"), x)
	copy(at.Int64("y"), y)
	run(t, at)
	run(t, tr)
	if e := maxDiff(at.Float("grad.x"), tr.Float("grad.x")); e > 1e-6 {
		t.Errorf("attack grad.x differs from train grad.x at δ=0 by %g", e)
	}
	if math.Abs(float64(at.Float("loss")[0]-tr.Float("loss")[0])) > 1e-6 {
		t.Errorf("attack loss %v, train loss %v", at.Float("loss")[0], tr.Float("loss")[0])
	}
	fdCheck(t, "attack grad.x", r, at.Float("x"), at.Float("grad.x"), 1e-3, func() float64 { run(t, at); return ce(at.Float("logits"), y) }, 2e-2)
	nc := session(t, m, graphs.Spec{Kind: graphs.Train, Batch: B, NoDomainClip: true})
	defer nc.Close()
	copy(nc.Float("x"), x)
	copy(nc.Int64("y"), y)
	for _, tap := range taps {
		fdCheck(t, "attack grad."+tap, r, nc.Float("delta."+tap), at.Float("grad."+tap), 1e-3,
			func() float64 { run(t, nc); return ce(nc.Float("logits"), y) }, 2e-2)
	}

	// eval: logits equal the forward graph's (running statistics); grad.x
	// vs FD of Σ loss.each for CE and CW.
	fw := session(t, m, graphs.Spec{Kind: graphs.Forward, Batch: B})
	defer fw.Close()
	copy(fw.Float("x"), x)
	run(t, fw)
	target := make([]int64, len(y))
	for i := range y {
		target[i] = (y[i] + 1) % 10
	}
	for _, lossName := range []string{"ce", "cw", "dlr", "dlr-t", "diff-t"} {
		ev := session(t, m, graphs.Spec{Kind: graphs.Eval, Batch: B, Loss: lossName})
		copy(ev.Float("x"), x)
		copy(ev.Int64("y"), y)
		if lossName == "dlr-t" || lossName == "diff-t" {
			copy(ev.Int64("target"), target)
		}
		run(t, ev)
		if e := maxDiff(ev.Float("logits"), fw.Float("logits")); e > 1e-5 {
			t.Errorf("eval logits differ from the forward graph's by %g", e)
		}
		each := ceEach
		switch lossName {
		case "cw":
			each = cwEach
		case "dlr":
			each = func(z []float32, y []int64) []float64 { return dlrEach(z, y, nil) }
		case "dlr-t":
			each = func(z []float32, y []int64) []float64 { return dlrEach(z, y, target) }
		case "diff-t":
			each = func(z []float32, y []int64) []float64 { return diffEach(z, y, target) }
		}
		want := each(ev.Float("logits"), y)
		for i, v := range ev.Float("loss.each") {
			if math.Abs(float64(v)-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
				t.Errorf("eval %s loss.each[%d] = %v, want %v", lossName, i, v, want[i])
			}
		}
		sum := func() float64 {
			run(t, ev)
			s := 0.0
			for _, v := range each(ev.Float("logits"), y) {
				s += v
			}
			return s
		}
		fdCheck(t, "eval "+lossName+" grad.x", r, ev.Float("x"), ev.Float("grad.x"), 1e-3, sum, 2e-2)
		ev.Close()
	}
}

// diffEach is the diff-t head: z_t − z_y per row.
func diffEach(z []float32, y, target []int64) []float64 {
	k := len(z) / len(y)
	out := make([]float64, len(y))
	for i := range y {
		out[i] = float64(z[i*k+int(target[i])]) - float64(z[i*k+int(y[i])])
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TestUnsupportedOp: the error names the node and the op type.
func TestUnsupportedOp(t *testing.T) {
	b := onnx.NewBuilder("bad")
	b.Input("x", onnx.Float, -1, 4)
	h := b.Op("Relu", []string{"x"})
	b.Node("Celu", []string{h}, []string{"c"})
	b.Node("Gemm", []string{"c", b.Floats("W", []int64{4, 3}, make([]float32, 12))}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 3)
	m := b.Model()
	m.Graph().GetNode()[1].Name = protoString("my_celu")
	_, err := graphs.Derive(m, graphs.Spec{Kind: graphs.Attack, Batch: 2})
	want := `graphs: derive: node "my_celu": no gradient rule for op Celu`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	b = onnx.NewBuilder("bad2")
	b.Input("x", onnx.Float, -1, 4)
	b.Node("NonZero", []string{"x"}, []string{"nz"})
	b.Node("Gemm", []string{"x", b.Floats("W", []int64{4, 3}, make([]float32, 12))}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 3)
	m = b.Model()
	_, err = graphs.Derive(m, graphs.Spec{Kind: graphs.Attack, Batch: 2})
	if err == nil || err.Error() != `graphs: derive: node "NonZero": no gradient rule for op NonZero` {
		t.Fatalf("err = %v", err)
	}
}

func protoString(s string) *string { return &s }
