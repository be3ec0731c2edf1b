package predict

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
	"github.com/slatrun/slatrun/onnx/ort"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const classes = 4

func model(t testing.TB, name string, width int) *onnx.Model {
	t.Helper()
	m, err := zoo.Build(name, zoo.Config{Classes: classes, Width: width, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// reference runs m one image at a time in a plain batch-1 session.
func reference(t testing.TB, m *onnx.Model, x []float32, d int) []float32 {
	t.Helper()
	s, err := ort.NewSession(m, ort.Options{Batch: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var z []float32
	for lo := 0; lo < len(x); lo += d {
		copy(s.Float("x"), x[lo:lo+d])
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		z = append(z, s.Float("logits")...)
	}
	return z
}

func closeTo(t testing.TB, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func checkProbs(t testing.TB, logits, probs []float32, k int) {
	t.Helper()
	for lo := 0; lo < len(probs); lo += k {
		var sum float64
		for _, v := range probs[lo : lo+k] {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("probabilities of row %d sum to %v", lo/k, sum)
		}
		if Argmax(probs[lo:lo+k]) != Argmax(logits[lo:lo+k]) {
			t.Fatalf("row %d: argmax of probabilities and logits differ", lo/k)
		}
	}
}

var modes = []Mode{Pool, MicroBatch}

// variants are the scheduling designs the tests run.
var variants = []struct {
	name string
	opts Options
}{
	{"pool", Options{Mode: Pool}},
	{"micro-batch", Options{Mode: MicroBatch}},
	{"micro-batch-ladder", Options{Mode: MicroBatch, Ladder: true}},
}

func TestPredictMatchesReference(t *testing.T) {
	for _, name := range []string{"mlp", "convnet"} {
		m := model(t, name, 4)
		set := dataset.Synthetic(23, 1, map[string]int{"mlp": 8, "convnet": 28}[name], map[string]int{"mlp": 8, "convnet": 28}[name], classes, 1)
		d := set.C * set.H * set.W
		want := reference(t, m, set.X, d)
		for _, v := range variants {
			t.Run(name+"/"+v.name, func(t *testing.T) {
				o := v.opts
				o.Batch, o.Sessions = 8, 2
				p, err := New(m, o)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				if c, h, w := p.Shape(); c != set.C || h != set.H || w != set.W || p.Classes() != classes || p.Batch() != 8 {
					t.Fatalf("shape %d×%d×%d, %d classes, batch %d", c, h, w, p.Classes(), p.Batch())
				}
				for _, n := range []int{1, 8, 23} { // one row, one full batch, three batches with padding
					logits, probs, err := p.Predict(context.Background(), set.X[:n*d], n)
					if err != nil {
						t.Fatal(err)
					}
					closeTo(t, fmt.Sprintf("n=%d logits", n), logits, want[:n*classes], 1e-4)
					checkProbs(t, logits, probs, classes)
				}
				st := p.Stats()
				if !o.Ladder && (st.Requests != 3 || st.Rows != 32 || st.Runs != 5 || st.Padding != 7+1) {
					t.Errorf("stats %+v; want 3 requests, 32 rows, 5 runs, 8 padded rows", st)
				}
			})
		}
	}
}

func TestInputErrors(t *testing.T) {
	p, err := New(model(t, "mlp", 4), Options{Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct {
		n, len int
		want   string
	}{
		{1, 63, "got 63 values for n = 1 images; want n×C×H×W = 1×1×8×8 = 64"},
		{2, 64, "got 64 values for n = 2 images; want n×C×H×W = 2×1×8×8 = 128"},
		{0, 0, "(n ≥ 1)"},
	} {
		_, _, err := p.Predict(context.Background(), make([]float32, c.len), c.n)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("n=%d, %d values: error %v; want ErrInput saying %q", c.n, c.len, err, c.want)
		}
	}
}

func TestModelErrors(t *testing.T) {
	fixed := model(t, "mlp", 4)
	// Fix the batch at 4, as a PyTorch export without dynamic axes does.
	for _, vi := range append(fixed.Graph().GetInput(), fixed.Graph().GetOutput()...) {
		vi.GetType().GetTensorType().GetShape().GetDim()[0].Value = dimValue(4)
	}
	p, err := New(fixed, Options{Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Batch() != 4 {
		t.Errorf("batch %d, want the model's 4", p.Batch())
	}
	p.Close()
	if _, err := New(fixed, Options{Batch: 8}); err == nil || !strings.Contains(err.Error(), "fixed at 4") {
		t.Errorf("batch 8 on a batch-4 model: %v", err)
	}
	if _, err := New(model(t, "mlp", 4), Options{Output: "probs"}); err == nil || !strings.Contains(err.Error(), `no output "probs"`) {
		t.Errorf("missing output: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none.onnx"), Options{}); err == nil {
		t.Error("Open of a missing file succeeded")
	}
	// Open reads through onnx.Load, New checks with Model.Validate: what
	// the slatrun command refuses, a Predictor refuses before ONNX Runtime.
	text := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(text, []byte(`{"not": "onnx"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(text, Options{}); !errors.Is(err, onnx.ErrNotONNX) {
		t.Errorf("Open of a JSON file: %v; want onnx.ErrNotONNX", err)
	}
	broken := model(t, "mlp", 4)
	nodes := broken.Graph().GetNode()
	last := nodes[len(nodes)-1]
	last.Input[0] = "nowhere"
	if _, err := New(broken, Options{}); err == nil || !strings.Contains(err.Error(), `reads "nowhere", which nothing before it defines`) {
		t.Errorf("New of a graph reading an undefined value: %v", err)
	}
}

// TestTrainingModeBN: a BatchNormalization exported in training mode runs
// on its running statistics, so a row's result does not depend on the rows
// batched with it.
func TestTrainingModeBN(t *testing.T) {
	m := model(t, "convnet", 4)
	plain := m.Clone()
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "BatchNormalization" {
			n.Attribute = append(n.Attribute, onnx.AttrInt("training_mode", 1))
		}
	}
	set := dataset.Synthetic(8, 1, 28, 28, classes, 5)
	want := reference(t, plain, set.X, 28*28)
	p, err := New(m, Options{Batch: 8, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, n := range []int{1, 8} {
		got, _, err := p.Predict(context.Background(), set.X[:n*28*28], n)
		if err != nil {
			t.Fatal(err)
		}
		closeTo(t, fmt.Sprintf("n=%d", n), got, want[:n*classes], 1e-4)
	}
}

// TestConcurrent hammers both modes from many goroutines with requests of
// mixed sizes and checks every answer; run it with -race.
func TestConcurrent(t *testing.T) {
	m := model(t, "mlp", 8)
	set := dataset.Synthetic(64, 1, 8, 8, classes, 2)
	const d = 64
	want := reference(t, m, set.X, d)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var observed sync.Map
			var calls, obsRows int64
			var obsMu sync.Mutex
			opts := v.opts
			opts.Batch, opts.Sessions = 8, 2
			p, err := New(m, opts)
			if err != nil {
				t.Fatal(err)
			}
			p.observe = func(o Observation) {
				obsMu.Lock()
				calls++
				obsRows += int64(o.Rows)
				obsMu.Unlock()
				if o.Err != nil {
					observed.Store(o.Err.Error(), true)
				}
			}
			const goroutines, each = 16, 40
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 7))
					for range each {
						lo := r.IntN(64)
						n := 1 + r.IntN(min(20, 64-lo))
						if r.IntN(3) > 0 {
							n = 1
						}
						logits, probs, err := p.Predict(context.Background(), set.X[lo*d:(lo+n)*d], n)
						if err != nil {
							errs <- err
							return
						}
						for i := range logits {
							if math.Abs(float64(logits[i]-want[lo*classes+i])) > 1e-4 {
								errs <- fmt.Errorf("rows %d..%d: logit %d = %v, want %v", lo, lo+n, i, logits[i], want[lo*classes+i])
								return
							}
						}
						checkProbs(t, logits, probs, classes)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			observed.Range(func(k, _ any) bool { t.Errorf("observed error %v", k); return true })
			st := p.Stats()
			if st.Requests != goroutines*each || calls != goroutines*each || obsRows != st.Rows {
				t.Errorf("stats %+v, %d observations of %d rows; want %d requests", st, calls, obsRows, goroutines*each)
			}
			t.Logf("%s: %d requests, %d rows in %d runs (%.1f rows/run, %d padded)", v.name, st.Requests, st.Rows, st.Runs, float64(st.Rows)/float64(st.Runs), st.Padding)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCloseAndCancel(t *testing.T) {
	m := model(t, "mlp", 4)
	x := dataset.Synthetic(1, 1, 8, 8, classes, 1).X
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			p, err := New(m, Options{Mode: mode, Sessions: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, _, err := p.Predict(ctx, x, 1); !errors.Is(err, context.Canceled) {
				t.Errorf("canceled context: %v", err)
			}
			// Close while requests run: they finish or see ErrClosed.
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 50 {
						if _, _, err := p.Predict(context.Background(), x, 1); err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Error(err)
							}
							return
						}
					}
				})
			}
			time.Sleep(2 * time.Millisecond)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, _, err := p.Predict(context.Background(), x, 1); !errors.Is(err, ErrClosed) {
				t.Errorf("Predict after Close: %v", err)
			}
		})
	}
}

// TestCancelQueued cancels requests that wait behind a busy micro-batch
// collector: they return the context's error and are never run.
func TestCancelQueued(t *testing.T) {
	p, err := New(model(t, "convnet", 16), Options{Mode: MicroBatch, Sessions: 1, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	x := dataset.Synthetic(1, 1, 28, 28, classes, 1).X
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, canceled int
	for range 64 {
		wg.Go(func() {
			_, _, err := p.Predict(ctx, x, 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, context.DeadlineExceeded):
				canceled++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok+canceled != 64 {
		t.Errorf("%d ok, %d canceled", ok, canceled)
	}
	if st := p.Stats(); st.Runs < int64(ok) || st.Runs > int64(ok)+1 {
		t.Errorf("%d runs for %d answered requests: canceled requests ran", st.Runs, ok)
	}
	t.Logf("%d answered, %d canceled", ok, canceled)
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"": Pool, "pool": Pool, "micro-batch": MicroBatch, "micro": MicroBatch} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("batch"); err == nil {
		t.Error("ParseMode(batch) succeeded")
	}
}

func dimValue(v int64) *onnxpb.TensorShapeProto_Dimension_DimValue {
	return &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
}

// TestNonFinite: a non-finite input is a bad input; an input so large that
// the model's logits overflow is an error (ErrNonFinite), observed as one,
// never a result with NaN probabilities.
func TestNonFinite(t *testing.T) {
	m := model(t, "mlp", 4)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var obs []Observation
			var mu sync.Mutex
			opts := v.opts
			opts.Sessions = 1
			opts.Observe = func(o Observation) { mu.Lock(); obs = append(obs, o); mu.Unlock() }
			p, err := New(m, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			fill := func(v float32) []float32 {
				x := dataset.Synthetic(2, 1, 8, 8, classes, 1).X
				for i := 64; i < 128; i++ {
					x[i] = v
				}
				return x
			}
			for _, c := range []struct {
				name string
				x    []float32
				want error
				msg  string
			}{
				{"NaN", fill(float32(math.NaN())), ErrInput, "value 64 (image 1) is NaN; want finite values"},
				{"+Inf", fill(float32(math.Inf(1))), ErrInput, "value 64 (image 1) is +Inf"},
				{"-Inf", fill(float32(math.Inf(-1))), ErrInput, "value 64 (image 1) is -Inf"},
				{"3e38", fill(3e38), ErrNonFinite, "image 1, logit 0 is"},
				{"-3e38", fill(-3e38), ErrNonFinite, "image 1, logit 0 is"},
			} {
				mu.Lock()
				obs = obs[:0]
				mu.Unlock()
				logits, probs, err := p.Predict(context.Background(), c.x, 2)
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || logits != nil || probs != nil {
					t.Errorf("%s: %d logits, %d probabilities, error %v; want %v saying %q", c.name, len(logits), len(probs), err, c.want, c.msg)
				}
				mu.Lock()
				if len(obs) != 1 || !errors.Is(obs[0].Err, c.want) {
					t.Errorf("%s: observed %+v; want one observation of %v", c.name, obs, c.want)
				}
				mu.Unlock()
			}
			if st := p.Stats(); st.Requests != 0 {
				t.Errorf("stats %+v: refused requests counted as answered", st)
			}
			// A finite input still works after.
			if _, _, err := p.Predict(context.Background(), fill(0.5), 2); err != nil {
				t.Error(err)
			}
		})
	}
}
