package graphs_test

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

type torchExpected struct {
	X         []float64            `json:"x"`
	XShape    []int64              `json:"x_shape"`
	Y         []int64              `json:"y"`
	Loss      float64              `json:"loss"`
	Logits    []float64            `json:"logits"`
	GradX     []float64            `json:"grad_x"`
	Grads     map[string][]float64 `json:"grads"`
	StatsNext map[string][]float64 `json:"stats_next"`
}

// relErr is max|a−e| / max|e|, the max-norm relative error of a tensor.
// A tensor that is zero in exact arithmetic (the bias of a Conv followed by
// BN: ~1e-17 in the float64 reference, float32 cancellation noise ~1e-7
// here) is compared absolutely, scaled by 1e-2.
func relErr(a []float32, e []float64) float64 {
	num, den := 0.0, 0.0
	for i := range e {
		num = math.Max(num, math.Abs(float64(a[i])-e[i]))
		den = math.Max(den, math.Abs(e[i]))
	}
	if den < 1e-12 {
		return num / 1e-2
	}
	return num / den
}

// session derives kind from m and opens a session fed with the forward's
// parameters and statistics.
func session(t *testing.T, m *onnx.Model, spec graphs.Spec) *ort.Session {
	t.Helper()
	d, err := graphs.Derive(m, spec)
	if err != nil {
		t.Fatalf("derive %s: %v", spec.Kind, err)
	}
	s, err := ort.NewSession(d, ort.Options{Threads: 1})
	if err != nil {
		t.Fatalf("session %s: %v", spec.Kind, err)
	}
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

// TestTorchFixture checks the train and attack kinds of a PyTorch export
// (BN preserved, opset 17) against PyTorch's own step (float64 reference).
func TestTorchFixture(t *testing.T) {
	m, err := onnx.Load("testdata/torch_cnn.onnx")
	if err != nil {
		t.Skipf("fixture not available: %v", err)
	}
	raw, err := os.ReadFile("testdata/torch_cnn_expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var want torchExpected
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	B := int(want.XShape[0])
	const tol = 1e-4
	check := func(name string, got []float32, exp []float64) {
		t.Helper()
		if len(got) != len(exp) {
			t.Errorf("%s: %d values, want %d", name, len(got), len(exp))
			return
		}
		if e := relErr(got, exp); e > tol {
			t.Errorf("%s: relative error %.3g > %g", name, e, tol)
		} else {
			t.Logf("%-22s rel err %.2e", name, e)
		}
	}
	feed := func(s *ort.Session) {
		for i, v := range want.X {
			s.Float("x")[i] = float32(v)
		}
		copy(s.Int64("y"), want.Y)
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
	}

	s := session(t, m, graphs.Spec{Kind: graphs.Train, Batch: B, InputGrad: true})
	defer s.Close()
	feed(s)
	check("loss", s.Float("loss"), []float64{want.Loss})
	check("logits", s.Float("logits"), want.Logits)
	check("grad.x", s.Float("grad.x"), want.GradX)
	params, stats, _ := graphs.Parameters(m)
	if len(params) != len(want.Grads) || len(stats) != len(want.StatsNext) {
		t.Errorf("found %d params and %d stats, the fixture has %d and %d", len(params), len(stats), len(want.Grads), len(want.StatsNext))
	}
	for name, g := range want.Grads {
		check("grad."+name, s.Float("grad."+name), g)
	}
	for name, v := range want.StatsNext {
		check(name+".next", s.Float(name+".next"), v)
	}

	a := session(t, m, graphs.Spec{Kind: graphs.Attack, Batch: B})
	defer a.Close()
	feed(a)
	check("attack loss", a.Float("loss"), []float64{want.Loss})
	check("attack grad.x", a.Float("grad.x"), want.GradX)
}
