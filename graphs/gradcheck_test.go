package graphs

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	code := m.Run()
	if testing.Verbose() && len(fdReport) > 0 {
		printFDReport()
	}
	os.Exit(code)
}

// fdCase is one finite-difference check of a small graph x → ... → out.
type fdCase struct {
	name  string
	x     []int64 // input shape (x[0] is the batch)
	build func(b *onnx.Builder, r *rand.Rand) string
	// wrt lists the differentiated tensors; nil means x and every float
	// initializer whose name starts with "p".
	wrt      []string
	training bool
	h        float64
	tol      float64
	// xgen fills x (default: values away from 0, see awayFromZero).
	xgen func(r *rand.Rand, n int) []float32
}

// awayFromZero returns values in ±[0.2, 1.2], so ReLU-like kinks at 0 are
// more than h away.
func awayFromZero(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		a := 0.2 + r.Float32()
		if r.Intn(2) == 0 {
			a = -a
		}
		v[i] = a
	}
	return v
}

// distinct returns a random permutation of well-separated values (gap 0.05),
// so max/min selections do not change under ±h for h < 0.025.
func distinct(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i, p := range r.Perm(n) {
		v[i] = float32(p)*0.05 - float32(n)*0.025
	}
	return v
}

func randn(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64()) * scale
	}
	return v
}

// param adds an initializer named p<i> with random values.
func param(b *onnx.Builder, r *rand.Rand, name string, shape ...int64) string {
	return b.Initializer(onnx.FloatTensor(name, shape, randn(r, int(onnx.NumElements(shape)), 0.5)))
}

// fdResult is the outcome of a check: the largest relative error.
type fdResult struct {
	maxRel float64
	where  string
}

// buildCase returns the forward model of a case.
func buildCase(c fdCase, r *rand.Rand) *onnx.Model {
	b := onnx.NewBuilder(c.name)
	b.Input("x", onnx.Float, append([]int64{-1}, c.x[1:]...)...)
	out := c.build(b, r)
	b.Node("Identity", []string{out}, []string{"out"})
	b.Output("out", onnx.Float)
	return b.Model()
}

// checkFD derives the gradient graph of Σ w⊙out and compares every
// differentiated tensor's gradient with central differences on up to 12
// random coordinates, computed through ONNX Runtime with the loss
// accumulated in float64.
func checkFD(t *testing.T, c fdCase) fdResult {
	t.Helper()
	r := rand.New(rand.NewSource(int64(len(c.name)) * 7919))
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
	// shape of out, from a first derivation with a dummy seed
	g, err := loadGraph(fwd, c.x[0])
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	outShape := g.info["logits"].shape
	w := randn(r, int(onnx.NumElements(outShape)), 1)
	m, err := deriveLinear(fwd, int(c.x[0]), c.training, wrt, w)
	if err != nil {
		t.Fatalf("%s: derive: %v", c.name, err)
	}
	s, err := ort.NewSession(m, ort.Options{Threads: 1})
	if err != nil {
		t.Fatalf("%s: session: %v", c.name, err)
	}
	defer s.Close()
	xgen := c.xgen
	if xgen == nil {
		xgen = awayFromZero
	}
	copy(s.Float("x"), xgen(r, len(s.Float("x"))))
	for _, p := range wrt {
		if p == "x" {
			continue
		}
		for _, in := range fwd.Graph().GetInitializer() {
			if in.GetName() == p {
				v, _ := onnx.TensorFloats(in)
				copy(s.Float(p), v)
			}
		}
	}
	if err := s.Run(); err != nil {
		t.Fatalf("%s: run: %v", c.name, err)
	}
	grads := map[string][]float32{}
	for _, p := range wrt {
		grads[p] = append([]float32(nil), s.Float("grad."+p)...)
	}
	loss := func() float64 {
		if err := s.Run(); err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		sum := 0.0
		for i, v := range s.Float("logits") {
			sum += float64(w[i]) * float64(v)
		}
		return sum
	}
	h := c.h
	if h == 0 {
		h = 1e-2
	}
	res := fdResult{}
	for _, p := range wrt {
		g := grads[p]
		v := s.Float(p)
		rms := 0.0
		for _, a := range g {
			rms += float64(a) * float64(a)
		}
		rms = math.Sqrt(rms / float64(len(g)))
		idx := r.Perm(len(v))
		if len(idx) > 12 {
			idx = idx[:12]
		}
		for _, i := range idx {
			old := v[i]
			v[i] = old + float32(h)
			hp := float64(v[i]) - float64(old)
			fp := loss()
			v[i] = old - float32(h)
			hm := float64(old) - float64(v[i])
			fm := loss()
			v[i] = old
			fd := (fp - fm) / (hp + hm)
			a := float64(g[i])
			den := math.Max(math.Max(math.Abs(a), math.Abs(fd)), 0.05*rms+1e-6)
			if e := math.Abs(a-fd) / den; e > res.maxRel {
				res.maxRel = e
				res.where = fmt.Sprintf("%s[%d]: analytic %.6g, fd %.6g", p, i, a, fd)
			}
		}
	}
	return res
}

// fdReport collects the largest error per op for the coverage summary.
var fdReport = map[string]float64{}

func runFD(t *testing.T, cases []fdCase) {
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			res := checkFD(t, c)
			tol := c.tol
			if tol == 0 {
				tol = 1e-2
			}
			op := c.name
			for i, ch := range op {
				if ch == '/' {
					op = op[:i]
					break
				}
			}
			if old, ok := fdReport[op]; !ok || res.maxRel > old {
				fdReport[op] = res.maxRel
			}
			if res.maxRel > tol {
				t.Errorf("max relative error %.3g > %.3g at %s", res.maxRel, tol, res.where)
			} else {
				t.Logf("max relative error %.3g", res.maxRel)
			}
		})
	}
}

// printFDReport prints the per-op maximum FD error (with -v).
func printFDReport() {
	var ops []string
	for op := range fdReport {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	fmt.Println("finite-difference check, largest relative error per op:")
	for _, op := range ops {
		fmt.Printf("  %-22s %.2e\n", op, fdReport[op])
	}
}
