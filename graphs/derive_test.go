package graphs

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// tapNet: x [N,2,5,5] → Conv → h (tap) → Relu → GlobalAveragePool →
// Flatten → Gemm → logits [N,3].
func tapNet(r *rand.Rand) *onnx.Model {
	b := onnx.NewBuilder("tapnet")
	b.Input("x", onnx.Float, -1, 2, 5, 5)
	b.Node("Conv", []string{"x", param(b, r, "W", 3, 2, 3, 3), param(b, r, "B", 3)}, []string{"h"}, onnx.AttrInts("pads", 1, 1, 1, 1))
	g := b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{"h"})})
	b.Node("Gemm", []string{b.Op("Flatten", []string{g}), param(b, r, "F", 3, 3)}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 3)
	b.SetMetadata("slatrun.taps", "h")
	return b.Model()
}

// TestDomainClip checks SLAT's domain clip in the train kind: h + clipped δ
// stays within the per-sample, per-channel range of h, equals h + δ where δ
// is inside it, and no gradient flows through the clip (the gradients equal
// those of the unclipped graph fed the clipped δ as a constant).
func TestDomainClip(t *testing.T) {
	const B = 3
	r := rand.New(rand.NewSource(11))
	fwd := tapNet(r)
	m, err := Derive(fwd, Spec{Kind: Train, Batch: B})
	if err != nil {
		t.Fatal(err)
	}
	// expose the unperturbed (the forward node's output, renamed h.pre…)
	// and the perturbed tap
	pre := ""
	for _, n := range m.Graph().GetNode() {
		if o := n.GetOutput()[0]; strings.HasPrefix(o, "h.pre") {
			pre = o
		}
	}
	if pre == "" {
		t.Fatal("no h.pre tensor in the train graph")
	}
	m.Graph().Output = append(m.Graph().Output, onnx.ValueInfo(pre, onnx.Float, B, 3, 5, 5), onnx.ValueInfo("h", onnx.Float, B, 3, 5, 5))
	s, err := ort.NewSession(m, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	params, _, _ := Parameters(fwd)
	for _, p := range params {
		copy(s.Float(p.Name), p.Data)
	}
	copy(s.Float("x"), randn(r, len(s.Float("x")), 1))
	copy(s.Int64("y"), []int64{0, 2, 1})
	delta := s.Float("delta.h")
	for i := range delta {
		delta[i] = float32(r.NormFloat64())
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	hp, hh := s.Float(pre), s.Float("h")
	inside, clipped := 0, 0
	for bc := 0; bc < B*3; bc++ {
		lo, hi := math.Inf(1), math.Inf(-1)
		for k := 0; k < 25; k++ {
			v := float64(hp[bc*25+k])
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		for k := 0; k < 25; k++ {
			i := bc*25 + k
			got := float64(hh[i])
			if got < lo-1e-5 || got > hi+1e-5 {
				t.Fatalf("perturbed tap %v outside [%v, %v]", got, lo, hi)
			}
			want := float64(hp[i]) + float64(delta[i])
			if want >= lo && want <= hi {
				inside++
				if math.Abs(got-want) > 1e-5 {
					t.Fatalf("δ inside the range was changed: %v, want %v", got, want)
				}
			} else {
				clipped++
			}
		}
	}
	if inside == 0 || clipped == 0 {
		t.Fatalf("test needs both clipped (%d) and unclipped (%d) entries", clipped, inside)
	}
	// Stop-gradient: same loss and gradients as the graph without the clip,
	// fed the clipped δ.
	nc, err := Derive(fwd, Spec{Kind: Train, Batch: B, NoDomainClip: true})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ort.NewSession(nc, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, p := range params {
		copy(s2.Float(p.Name), p.Data)
	}
	copy(s2.Float("x"), s.Float("x"))
	copy(s2.Int64("y"), s.Int64("y"))
	for i := range hh {
		s2.Float("delta.h")[i] = hh[i] - hp[i]
	}
	if err := s2.Run(); err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(s.Float("loss")[0] - s2.Float("loss")[0])); d > 1e-5 {
		t.Errorf("loss differs by %g", d)
	}
	for _, p := range params {
		a, b := s.Float("grad."+p.Name), s2.Float("grad."+p.Name)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5 {
				t.Fatalf("grad.%s[%d]: %v with the clip, %v with the clipped δ as a constant", p.Name, i, a[i], b[i])
			}
		}
	}
}

// TestBNStatsNext checks <stat>.next against the batch statistics computed
// here (PyTorch's rule: unbiased variance, momentum 0.1, and a custom one).
func TestBNStatsNext(t *testing.T) {
	const B, C = 5, 3
	r := rand.New(rand.NewSource(2))
	b := onnx.NewBuilder("bn")
	b.Input("x", onnx.Float, -1, C)
	b.Node("BatchNormalization", []string{"x", param(b, r, "g", C), param(b, r, "b", C),
		b.Initializer(onnx.FloatTensor("rm", []int64{C}, []float32{0.1, -0.2, 0.3})),
		b.Initializer(onnx.FloatTensor("rv", []int64{C}, []float32{1, 2, 0.5}))}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, C)
	fwd := b.Model()
	for _, mom := range []float32{0, 0.3} {
		m, err := Derive(fwd, Spec{Kind: Train, Batch: B, BNMomentum: mom})
		if err != nil {
			t.Fatal(err)
		}
		info := ReadInfo(m)
		if len(info.Stats) != 2 || info.Stats[0] != "rm" || info.Stats[1] != "rv" {
			t.Fatalf("stats %v", info.Stats)
		}
		s, err := ort.NewSession(m, ort.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		x := randn(r, B*C, 2)
		copy(s.Float("x"), x)
		copy(s.Float("rm"), []float32{0.1, -0.2, 0.3})
		copy(s.Float("rv"), []float32{1, 2, 0.5})
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		m64 := float64(mom)
		if mom == 0 {
			m64 = 0.1
		}
		for c := 0; c < C; c++ {
			mean, sq := 0.0, 0.0
			for i := 0; i < B; i++ {
				mean += float64(x[i*C+c])
			}
			mean /= B
			for i := 0; i < B; i++ {
				d := float64(x[i*C+c]) - mean
				sq += d * d
			}
			unbiased := sq / (B - 1)
			wantM := (1-m64)*float64(s.Float("rm")[c]) + m64*mean
			wantV := (1-m64)*float64(s.Float("rv")[c]) + m64*unbiased
			if got := float64(s.Float("rm.next")[c]); math.Abs(got-wantM) > 1e-5 {
				t.Errorf("m=%v rm.next[%d] = %v, want %v", mom, c, got, wantM)
			}
			if got := float64(s.Float("rv.next")[c]); math.Abs(got-wantV) > 1e-5 {
				t.Errorf("m=%v rv.next[%d] = %v, want %v", mom, c, got, wantV)
			}
		}
		s.Close()
	}
}

// TestWithWeightsAndParameters covers the checkpoint helpers.
func TestWithWeightsAndParameters(t *testing.T) {
	fwd := tapNet(rand.New(rand.NewSource(1)))
	params, stats, err := Parameters(fwd)
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 3 || params[0].Name != "W" || params[1].Name != "B" || params[2].Name != "F" || len(stats) != 0 {
		t.Fatalf("params %v stats %v", params, stats)
	}
	m, err := WithWeights(fwd, map[string][]float32{"B": {1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	p2, _, _ := Parameters(m)
	if p2[1].Data[2] != 3 {
		t.Errorf("B = %v", p2[1].Data)
	}
	if _, err := WithWeights(fwd, map[string][]float32{"B": {1, 2}}); err == nil {
		t.Error("size mismatch accepted")
	}
	if _, err := WithWeights(fwd, map[string][]float32{"nope": {1}}); err == nil {
		t.Error("unknown name accepted")
	}
}
