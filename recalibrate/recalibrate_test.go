package recalibrate

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func convnet(t *testing.T) *onnx.Model {
	t.Helper()
	m, err := zoo.Build("convnet", zoo.Config{Width: 4, Classes: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run returns the logits of one batch x through g (eval or attack kind).
func run(t *testing.T, g *onnx.Model, shared map[string][]float32, set *dataset.Set) []float32 {
	t.Helper()
	s, err := ort.NewSession(g, ort.Options{Threads: 1, Batch: set.N, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	copy(s.Float("x"), set.X)
	copy(s.Int64("y"), set.Y)
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), s.Float("logits")...)
}

// Recalibrated on one batch, the model in inference form (running
// statistics) must give that batch the logits the training form (the
// batch's own statistics) gives it: the running mean is the batch mean, and
// the running variance the batch variance up to the unbiased factor
// n/(n−1), n = batch × H × W ≈ 10⁵, which moves logits by about 1e-5.
func TestOneBatchMatchesTrainingMode(t *testing.T) {
	fwd := convnet(t)
	set := dataset.Synthetic(128, 1, 28, 28, 4, 3)
	rec, rep, err := Model(fwd, set, Options{Batch: 128, Runtime: ort.Options{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Batches != 1 || rep.Images != 128 || len(rep.Stats) == 0 {
		t.Fatalf("report %+v", rep)
	}
	evalRec, err := graphs.Derive(rec, graphs.Spec{Kind: graphs.Eval, Batch: set.N, Taps: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	evalOld, err := graphs.Derive(fwd, graphs.Spec{Kind: graphs.Eval, Batch: set.N, Taps: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	train, err := graphs.Derive(fwd, graphs.Spec{Kind: graphs.Attack, Batch: set.N, Taps: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	params, stats, err := graphs.Parameters(fwd)
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string][]float32{}
	for _, l := range [][]graphs.Tensor{params, stats} {
		for _, p := range l {
			shared[p.Name] = p.Data
		}
	}
	want := run(t, train, shared, set)
	got := run(t, evalRec, nil, set)
	old := run(t, evalOld, nil, set)
	var worst, before float64
	for i := range want {
		worst = max(worst, math.Abs(float64(got[i]-want[i])))
		before = max(before, math.Abs(float64(old[i]-want[i])))
	}
	t.Logf("max |logit difference| to training mode: %.2g recalibrated, %.2g with the initial statistics", worst, before)
	if worst > 1e-3 {
		t.Errorf("recalibrated inference logits differ from training-mode logits by %.3g", worst)
	}
	if before < 100*worst {
		t.Errorf("the initial statistics already gave training-mode logits (%.3g): the test shows nothing", before)
	}
}

// Over several batches each statistic is the mean of the per-batch ones.
func TestAveragesBatches(t *testing.T) {
	fwd := convnet(t)
	set := dataset.Synthetic(96, 1, 28, 28, 4, 5)
	opts := Options{Batch: 32, Runtime: ort.Options{Threads: 1}}
	all, _, err := Model(fwd, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	var parts []map[string][]float32
	for b := range 3 {
		m, _, err := Model(fwd, set.Slice(32*b, 32*(b+1)), opts)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, weights(t, m))
	}
	w := weights(t, all)
	_, stats, _ := graphs.Parameters(fwd)
	for _, st := range stats {
		for j, v := range w[st.Name] {
			mean := (float64(parts[0][st.Name][j]) + float64(parts[1][st.Name][j]) + float64(parts[2][st.Name][j])) / 3
			if math.Abs(float64(v)-mean) > 1e-5*(1+math.Abs(mean)) {
				t.Fatalf("%s[%d] = %v, the mean of the batches' is %v", st.Name, j, v, mean)
			}
		}
	}
}

func weights(t *testing.T, m *onnx.Model) map[string][]float32 {
	t.Helper()
	params, stats, err := graphs.Parameters(m)
	if err != nil {
		t.Fatal(err)
	}
	w := map[string][]float32{}
	for _, l := range [][]graphs.Tensor{params, stats} {
		for _, p := range l {
			w[p.Name] = p.Data
		}
	}
	return w
}

func TestErrors(t *testing.T) {
	mlp, err := zoo.Build("mlp", zoo.Config{Width: 8, Classes: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	conv := convnet(t)
	for _, c := range []struct {
		name string
		m    *onnx.Model
		set  *dataset.Set
		opts Options
		want string
	}{
		{"no data", conv, nil, Options{}, "no data"},
		{"negative N", conv, dataset.Synthetic(8, 1, 28, 28, 4, 1), Options{N: -1}, "N = -1"},
		{"wrong shape", conv, dataset.Synthetic(8, 3, 32, 32, 4, 1), Options{}, "3×32×32"},
		{"label range", conv, dataset.Synthetic(8, 1, 28, 28, 10, 1), Options{}, "outside the model's 4 classes"},
		{"no BN", mlp, dataset.Synthetic(8, 1, 8, 8, 4, 1), Options{}, "no batch-norm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Model(c.m, c.set, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
