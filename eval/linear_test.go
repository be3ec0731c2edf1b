package eval

// Test models: a linear softmax classifier over flattened 1×6×6 images,
// logits = Flatten(x)·W + b, as hand-built eval graphs with hand-written
// gradients for every loss head, plus a float64 reference of the same
// functions in Go, seeded synthetic data and a small trainer.

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

const (
	imgC, imgH, imgW = 1, 6, 6
	imgD             = imgC * imgH * imgW
)

var (
	ortOnce sync.Once
	ortErr  error
)

// needORT initializes ONNX Runtime or fails the test with the reason.
func needORT(t testing.TB) {
	t.Helper()
	ortOnce.Do(func() { ortErr = ort.Init("") })
	if ortErr != nil {
		t.Fatalf("ONNX Runtime: %v", ortErr)
	}
}

// linModel is logits = x·W + b with W [D,K] row-major.
type linModel struct {
	K int
	W []float32 // D×K
	b []float32 // K
}

// logits64 computes the logits in float64 from float64 pixels.
func (m *linModel) logits64(x []float64) []float64 {
	z := make([]float64, m.K)
	for j := range z {
		z[j] = float64(m.b[j])
	}
	for i, v := range x {
		for j := range z {
			z[j] += v * float64(m.W[i*m.K+j])
		}
	}
	return z
}

func to64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// refLoss is each head's loss in float64 (the definitions of doc.go).
func refLoss(head string, z []float64, y, t int) float64 {
	sorted := append([]float64(nil), z...)
	sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
	maxOther := math.Inf(-1)
	for j, v := range z {
		if j != y {
			maxOther = math.Max(maxOther, v)
		}
	}
	switch head {
	case HeadCE:
		m := sorted[0]
		s := 0.0
		for _, v := range z {
			s += math.Exp(v - m)
		}
		return m + math.Log(s) - z[y]
	case HeadCW:
		return maxOther - z[y]
	case HeadDLR:
		return -(z[y] - maxOther) / (sorted[0] - sorted[2] + 1e-12)
	case HeadDLRT:
		return -(z[y] - z[t]) / (sorted[0] - (sorted[2]+sorted[3])/2 + 1e-12)
	case HeadDiffT:
		return z[t] - z[y]
	}
	panic("unknown head " + head)
}

// graph builds the eval graph of head for batch size bs. With paramInputs,
// W and Wᵀ are graph inputs (set with SetInput) instead of initializers.
func (m *linModel) graph(head string, bs int, paramInputs bool) *onnx.Model {
	k := int64(m.K)
	B := int64(bs)
	g := onnx.NewBuilder("linear-" + head)
	g.Input(contract.Input, onnx.Float, B, imgC, imgH, imgW)
	g.Input(contract.Labels, onnx.Int64, B)
	if contract.Targeted(head) {
		g.Input(contract.Target, onnx.Int64, B)
	}
	wt := make([]float32, len(m.W))
	for i := range imgD {
		for j := range m.K {
			wt[j*imgD+i] = m.W[i*m.K+j]
		}
	}
	var W, Wt string
	if paramInputs {
		W, Wt = g.Input("W", onnx.Float, imgD, k), g.Input("Wt", onnx.Float, k, imgD)
	} else {
		W, Wt = g.Floats("W", []int64{imgD, k}, m.W), g.Floats("Wt", []int64{k, imgD}, wt)
	}
	bias := g.Floats("b", []int64{k}, m.b)
	flat := g.Op("Flatten", []string{contract.Input}, onnx.AttrInt("axis", 1))
	mm := g.Op("MatMul", []string{flat, W})
	g.Node("Add", []string{mm, bias}, []string{contract.Logits})
	z := contract.Logits
	if head == HeadLogits {
		g.Output(contract.Logits, onnx.Float, B, k)
		return g.Model()
	}

	depth := g.Int64s("depth", []int64{1}, []int64{k})
	offOn := g.Floats("off_on", []int64{2}, []float32{0, 1})
	axis1 := g.Ints(1)
	oneHot := func(idx string) string { // int64 [B] → float [B,K]
		return g.Op("OneHot", []string{idx, depth, offOn}, onnx.AttrInt("axis", -1))
	}
	unsq := func(v string) string { return g.Op("Unsqueeze", []string{v, axis1}) }
	pick := func(v, idx string) string { // v[b, idx[b]] → [B]
		ge := g.Op("GatherElements", []string{v, unsq(idx)}, onnx.AttrInt("axis", 1))
		return g.Op("Squeeze", []string{ge, axis1})
	}
	col := func(v string, i int64) string { // v[:, i] → [B]
		return g.Op("Gather", []string{v, g.Int64s("col", nil, []int64{i})}, onnx.AttrInt("axis", 1))
	}
	op := func(name string, in ...string) string { return g.Op(name, in) }
	ohy := oneHot(contract.Labels)
	zy := pick(z, contract.Labels)
	// maxOther: argmax over j ≠ y.
	argmaxOther := func() string {
		masked := op("Sub", z, op("Mul", ohy, g.Scalar(1e30)))
		return g.Op("ArgMax", []string{masked}, onnx.AttrInt("axis", 1), onnx.AttrInt("keepdims", 0))
	}
	topk := func(n int64) (vals, idx string) {
		o := g.OpN("TopK", []string{z, g.Ints(n)}, 2, onnx.AttrInt("axis", 1))
		return o[0], o[1]
	}
	var loss, dz string
	switch head {
	case HeadCE:
		lse := g.Op("ReduceLogSumExp", []string{z, axis1}, onnx.AttrInt("keepdims", 0))
		loss = op("Sub", lse, zy)
		p := g.Op("Softmax", []string{z}, onnx.AttrInt("axis", 1))
		dz = op("Sub", p, ohy)
	case HeadCW:
		jm := argmaxOther()
		loss = op("Sub", pick(z, jm), zy)
		dz = op("Sub", oneHot(jm), ohy)
	case HeadDiffT:
		loss = op("Sub", pick(z, contract.Target), zy)
		dz = op("Sub", oneHot(contract.Target), ohy)
	case HeadDLR, HeadDLRT:
		// loss = num/den; dz = (onehot(a) − onehot(y))/den − num/den²·∂den/∂z
		var other string
		var den, dden string
		if head == HeadDLR {
			other = argmaxOther()
			vals, idx := topk(3)
			den = op("Add", op("Sub", col(vals, 0), col(vals, 2)), g.Scalar(1e-12))
			dden = op("Sub", oneHot(col(idx, 0)), oneHot(col(idx, 2)))
		} else {
			other = contract.Target
			vals, idx := topk(4)
			half := g.Scalar(0.5)
			den = op("Add", op("Sub", col(vals, 0), op("Mul", op("Add", col(vals, 2), col(vals, 3)), half)), g.Scalar(1e-12))
			dden = op("Sub", oneHot(col(idx, 0)), op("Mul", op("Add", oneHot(col(idx, 2)), oneHot(col(idx, 3))), half))
		}
		num := op("Sub", pick(z, other), zy)
		loss = op("Div", num, den)
		dnum := op("Sub", oneHot(other), ohy)
		dz = op("Sub", op("Div", dnum, unsq(den)), op("Mul", unsq(op("Div", num, op("Mul", den, den))), dden))
	default:
		panic("unknown head " + head)
	}
	g.Node("Identity", []string{loss}, []string{contract.LossEach})
	gflat := op("MatMul", dz, Wt)
	g.Node("Reshape", []string{gflat, g.Ints(B, imgC, imgH, imgW)}, []string{contract.InputGrad})
	g.Output(contract.Logits, onnx.Float, B, k)
	g.Output(contract.LossEach, onnx.Float, B)
	g.Output(contract.InputGrad, onnx.Float, B, imgC, imgH, imgW)
	return g.Model()
}

// heads returns the loss heads a model with K classes supports.
func (m *linModel) heads() []string {
	if m.K >= 4 {
		return []string{HeadCE, HeadCW, HeadDLR, HeadDLRT, HeadDiffT}
	}
	return []string{HeadCE, HeadCW, HeadDiffT}
}

// classifier builds a Classifier with every supported head at batch bs.
func (m *linModel) classifier(t testing.TB, bs int) *Classifier {
	t.Helper()
	needORT(t)
	graphs := map[string]*onnx.Model{}
	for _, h := range m.heads() {
		graphs[h] = m.graph(h, bs, false)
	}
	c, err := NewClassifier(graphs, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// smallClassifier is classifier with the HeadLogits graph too and every
// smaller batch (SetResize), as Square uses them.
func (m *linModel) smallClassifier(t testing.TB, bs int) *Classifier {
	t.Helper()
	needORT(t)
	graphs := map[string]*onnx.Model{HeadLogits: m.graph(HeadLogits, bs, false)}
	for _, h := range m.heads() {
		graphs[h] = m.graph(h, bs, false)
	}
	c, err := NewClassifier(graphs, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.SetResize(func(head string, b int) (*onnx.Model, error) { return m.graph(head, b, false), nil })
	t.Cleanup(func() { c.Close() })
	return c
}

// synth draws n images of k classes: class prototypes with values in
// [0.2, 0.8] (fixed by seed) plus Gaussian noise of σ = noise, clipped to
// [0,1]. Labels are balanced and shuffled.
func synth(seed uint64, n, k int, noise float64) ([]float32, []int64) {
	pr := rand.New(rand.NewPCG(seed, 1))
	protos := make([]float64, k*imgD)
	for i := range protos {
		protos[i] = 0.2 + 0.6*pr.Float64()
	}
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	x := make([]float32, n*imgD)
	y := make([]int64, n)
	for i := range n {
		c := i % k
		y[i] = int64(c)
		for j := range imgD {
			v := protos[c*imgD+j] + noise*r.NormFloat64()
			x[i*imgD+j] = float32(min(max(v, 0), 1))
		}
	}
	r.Shuffle(n, func(a, b int) {
		y[a], y[b] = y[b], y[a]
		for j := range imgD {
			x[a*imgD+j], x[b*imgD+j] = x[b*imgD+j], x[a*imgD+j]
		}
	})
	return x, y
}

// train fits softmax regression by full-batch gradient descent with a
// little weight decay, in float64.
func train(x []float32, y []int64, k, iters int, lr, decay float64) *linModel {
	n := len(y)
	W := make([]float64, imgD*k)
	b := make([]float64, k)
	gW := make([]float64, len(W))
	gb := make([]float64, k)
	z := make([]float64, k)
	for range iters {
		clear(gW)
		clear(gb)
		for s := range n {
			xs := x[s*imgD : (s+1)*imgD]
			copy(z, b)
			for i, v := range xs {
				for j := range k {
					z[j] += float64(v) * W[i*k+j]
				}
			}
			m := math.Inf(-1)
			for _, v := range z {
				m = math.Max(m, v)
			}
			sum := 0.0
			for j := range z {
				z[j] = math.Exp(z[j] - m)
				sum += z[j]
			}
			for j := range z {
				z[j] /= sum
			}
			z[y[s]]--
			for i, v := range xs {
				for j := range k {
					gW[i*k+j] += float64(v) * z[j]
				}
			}
			for j := range k {
				gb[j] += z[j]
			}
		}
		for i := range W {
			W[i] -= lr * (gW[i]/float64(n) + decay*W[i])
		}
		for j := range b {
			b[j] -= lr * gb[j] / float64(n)
		}
	}
	m := &linModel{K: k, W: make([]float32, len(W)), b: make([]float32, k)}
	for i, v := range W {
		m.W[i] = float32(v)
	}
	for j, v := range b {
		m.b[j] = float32(v)
	}
	return m
}

// task is a trained model with its held-out test data.
type task struct {
	m *linModel
	x []float32
	y []int64
}

var (
	tasksOnce sync.Once
	task10    task // 10 classes, 200 test samples
	task10big task // the same model, 1000 other test samples
	task2     task // 2 classes
)

// tasks trains the two test models once per test binary.
func tasks() (ten, two task) {
	tasksOnce.Do(func() {
		x, y := synth(1, 2000, 10, 0.25)
		task10.m = train(x, y, 10, 300, 2, 1e-3)
		task10.x, task10.y = synth(1, 200, 10, 0.25) // same prototypes, other draws
		task10big.m = task10.m
		task10big.x, task10big.y = synth(1, 1000, 10, 0.25)
		x, y = synth(2, 1000, 2, 0.3)
		task2.m = train(x, y, 2, 300, 2, 1e-3)
		task2.x, task2.y = synth(2, 200, 2, 0.3)
	})
	return task10, task2
}

// cleanAcc is the float64 reference clean accuracy.
func (tk task) cleanAcc() float64 {
	ok := 0
	for i := range tk.y {
		z := tk.m.logits64(to64(tk.x[i*imgD : (i+1)*imgD]))
		if correctRef(z, int(tk.y[i])) {
			ok++
		}
	}
	return float64(ok) / float64(len(tk.y))
}

func correctRef(z []float64, y int) bool {
	for j, v := range z {
		if j != y && !(z[y] > v) {
			return false
		}
	}
	return true
}
