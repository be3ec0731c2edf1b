package graphs

import (
	"math"
	"math/rand"
	"testing"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestTapL1 checks the attack kind's l1.<tap> outputs (Spec.TapL1): Σ|g| of
// grad.<tap> over the batch, to float32 summation, shaped [1, 1, 1, 1].
func TestTapL1(t *testing.T) {
	const B = 3
	r := rand.New(rand.NewSource(6))
	fwd := tapNet(r)
	m, err := Derive(fwd, Spec{Kind: Attack, Batch: B, TapL1: true})
	if err != nil {
		t.Fatal(err)
	}
	s := runTapNet(t, r, fwd, m)
	defer s.Close()
	if sh := s.Shape(contract.L1Name("h")); len(sh) != 4 || sh[0]*sh[1]*sh[2]*sh[3] != 1 {
		t.Fatalf("l1.h has shape %v, want [1 1 1 1]", sh)
	}
	want := 0.0
	for _, v := range s.Float(contract.GradName("h")) {
		want += math.Abs(float64(v))
	}
	if got := float64(s.Float(contract.L1Name("h"))[0]); want <= 0 || math.Abs(got-want) > 1e-5*want {
		t.Fatalf("l1.h = %v, Σ|grad.h| = %v", got, want)
	}
}

// TestTapRange checks the attack kind's range.<tap> outputs (Spec.TapRange):
// hi − lo of the tap per sample and channel, [N, C, 1, 1], against the tap's
// own values; without TapRange there is no such output.
func TestTapRange(t *testing.T) {
	const B = 3
	r := rand.New(rand.NewSource(5))
	fwd := tapNet(r)
	plain, err := Derive(fwd, Spec{Kind: Attack, Batch: B})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range plain.Graph().GetOutput() {
		if o.GetName() == contract.RangeName("h") {
			t.Fatal("range.h without Spec.TapRange")
		}
	}
	m, err := Derive(fwd, Spec{Kind: Attack, Batch: B, TapRange: true})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range m.Graph().GetOutput() {
		if o.GetName() == contract.RangeName("h") {
			found = true
			var dims []int64
			for _, d := range o.GetType().GetTensorType().GetShape().GetDim() {
				dims = append(dims, d.GetDimValue())
			}
			if len(dims) != 4 || dims[0] != B || dims[1] != 3 || dims[2] != 1 || dims[3] != 1 {
				t.Fatalf("range.h has shape %v, want [%d 3 1 1]", dims, B)
			}
		}
	}
	if !found {
		t.Fatal("no range.h output")
	}
	m.Graph().Output = append(m.Graph().Output, onnx.ValueInfo("h", onnx.Float, B, 3, 5, 5))
	s := runTapNet(t, r, fwd, m)
	defer s.Close()
	h, rg := s.Float("h"), s.Float(contract.RangeName("h"))
	if len(rg) != B*3 {
		t.Fatalf("len(range.h) = %d, want %d", len(rg), B*3)
	}
	for k := range rg {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range h[k*25 : (k+1)*25] {
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
		if want := hi - lo; want <= 0 || math.Abs(float64(rg[k])-want) > 1e-6*want {
			t.Errorf("range.h[%d] = %v, want %v", k, rg[k], want)
		}
	}
}

// runTapNet runs m, a graph derived from tapNet's fwd for a batch of 3, in
// a session with fwd's weights, random images and fixed labels.
func runTapNet(t *testing.T, r *rand.Rand, fwd, m *onnx.Model) *ort.Session {
	t.Helper()
	s, err := ort.NewSession(m, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	params, _, _ := Parameters(fwd)
	for _, p := range params {
		copy(s.Float(p.Name), p.Data)
	}
	copy(s.Float("x"), randn(r, len(s.Float("x")), 1))
	copy(s.Int64("y"), []int64{0, 2, 1})
	if err := s.Run(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}
