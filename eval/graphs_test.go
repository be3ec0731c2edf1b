package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/graphs/contract"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// TestGraphsMatchReference checks the hand-built test graphs before anything
// trusts them: logits and loss.each against the float64 reference, and
// grad.x against central finite differences of the float64 reference loss.
func TestGraphsMatchReference(t *testing.T) {
	needORT(t)
	ten, two := tasks()
	for _, tc := range []struct {
		name string
		tk   task
	}{{"K=10", ten}, {"K=2", two}} {
		m := tc.tk.m
		for _, head := range m.heads() {
			t.Run(tc.name+"/"+head, func(t *testing.T) {
				const bs = 8
				s, err := ort.NewSession(m.graph(head, bs, false), ort.Options{Threads: 1})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				r := rand.New(rand.NewPCG(7, 7))
				x, y := s.Float(contract.Input), s.Int64(contract.Labels)
				copy(x, tc.tk.x[:bs*imgD])
				for i := range y {
					y[i] = int64(r.IntN(m.K)) // wrong labels too: every branch of the heads
				}
				var target []int64
				if contract.Targeted(head) {
					target = s.Int64(contract.Target)
					for i := range target {
						target[i] = (y[i] + 1 + int64(r.IntN(m.K-1))) % int64(m.K)
					}
				}
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
				z, loss, grad := s.Float(contract.Logits), s.Float(contract.LossEach), s.Float(contract.InputGrad)
				// Float32 rounding of the logit-space gradient (e.g. softmax − 1
				// near p = 1) limits grad.x to a few ulp(1)·Σ_j |W_ij| absolutely; the rest
				// must agree to 1e-3 of the gradient's scale.
				wmax := 0.0
				for i := range imgD {
					row := 0.0
					for j := range m.K {
						row += math.Abs(float64(m.W[i*m.K+j]))
					}
					wmax = math.Max(wmax, row)
				}
				atol := 4e-7 * wmax
				worst := 0.0
				for b := range bs {
					tb := 0
					if target != nil {
						tb = int(target[b])
					}
					xb := to64(x[b*imgD : (b+1)*imgD])
					f := func(xv []float64) float64 { return refLoss(head, m.logits64(xv), int(y[b]), tb) }
					zr := m.logits64(xb)
					for j := range m.K {
						if d := math.Abs(float64(z[b*m.K+j]) - zr[j]); d > 1e-4*(1+math.Abs(zr[j])) {
							t.Fatalf("row %d logit %d = %v, reference %v", b, j, z[b*m.K+j], zr[j])
						}
					}
					lr := f(xb)
					if d := math.Abs(float64(loss[b]) - lr); d > 1e-4*(1+math.Abs(lr)) {
						t.Fatalf("row %d loss.each = %v, reference %v", b, loss[b], lr)
					}
					// Central differences in float64.
					const h = 1e-6
					scale := 0.0
					fd := make([]float64, imgD)
					for i := range xb {
						old := xb[i]
						xb[i] = old + h
						up := f(xb)
						xb[i] = old - h
						down := f(xb)
						xb[i] = old
						fd[i] = (up - down) / (2 * h)
						scale = math.Max(scale, math.Abs(fd[i]))
					}
					for i := range fd {
						diff := math.Abs(float64(grad[b*imgD+i]) - fd[i])
						worst = math.Max(worst, diff/(scale+1e-12))
						e := max(diff-atol, 0) / (scale + 1e-12)
						if e > 1e-3 {
							t.Fatalf("row %d grad.x[%d] = %v, finite difference %v (scale %v, atol %v)", b, i, grad[b*imgD+i], fd[i], scale, atol)
						}
					}
				}
				t.Logf("worst grad.x error relative to the row's largest gradient: %.2g", worst)
			})
		}
	}
}

// TestNewClassifierErrors checks that graphs off the contract are refused
// with an error that names the head and the problem.
func TestNewClassifierErrors(t *testing.T) {
	needORT(t)
	ten, two := tasks()
	m := ten.m
	noGrad := func() *onnx.Model {
		g := m.graph(HeadCE, 8, false)
		g.Graph().Output = g.Graph().Output[:2]
		return g
	}
	cases := []struct {
		name   string
		graphs map[string]*onnx.Model
		opts   ort.Options
		want   string
	}{
		{"none", nil, ort.Options{}, "no eval graphs"},
		{"unknown head", map[string]*onnx.Model{"xent": m.graph(HeadCE, 8, false)}, ort.Options{}, `unknown loss head "xent"`},
		{"batch differs", map[string]*onnx.Model{HeadCE: m.graph(HeadCE, 8, false), HeadCW: m.graph(HeadCW, 4, false)}, ort.Options{}, "differ"},
		{"classes differ", map[string]*onnx.Model{HeadCE: m.graph(HeadCE, 8, false), HeadCW: two.m.graph(HeadCW, 8, false)}, ort.Options{}, "differ"},
		{"batch option", map[string]*onnx.Model{HeadCE: m.graph(HeadCE, 8, false)}, ort.Options{Batch: 16}, "ort.Options.Batch"},
		{"no grad.x", map[string]*onnx.Model{HeadCE: noGrad()}, ort.Options{}, `"grad.x"`},
		{"dlr-t without target", map[string]*onnx.Model{HeadDLRT: m.graph(HeadDLR, 8, false)}, ort.Options{}, `"target"`},
		{"target on ce", map[string]*onnx.Model{HeadCE: m.graph(HeadDLRT, 8, false)}, ort.Options{}, `only the dlr-t and diff-t heads`},
		{"dlr with two classes", map[string]*onnx.Model{HeadDLR: two.m.graph(HeadCW, 8, false)}, ort.Options{}, "at least 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClassifier(tc.graphs, tc.opts)
			if err == nil {
				c.Close()
				t.Fatalf("no error, want one mentioning %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %s", err, tc.want)
			}
		})
	}
}

// TestSetInput runs graphs that take their weights as inputs, the form of
// graphs derived during training, and checks they give the same report as
// the graphs with the weights inside.
func TestSetInput(t *testing.T) {
	needORT(t)
	ten, _ := tasks()
	m := ten.m
	graphs := map[string]*onnx.Model{}
	for _, h := range m.heads() {
		graphs[h] = m.graph(h, 32, true)
	}
	c, err := NewClassifier(graphs, ort.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	attacks, _ := ParseAttacks("pgd-5,apgd-t-5")
	cfg := Config{Eps: 0.1, Attacks: attacks, Seed: 3}
	if _, err := Evaluate(t.Context(), c, ten.x, ten.y, cfg); err == nil || !strings.Contains(err.Error(), "SetInput") {
		t.Fatalf("Evaluate without the weights: err = %v, want one that says to call SetInput", err)
	}
	if err := c.SetInput("W", m.W[:5]); err == nil {
		t.Fatal("SetInput accepted a value of the wrong length")
	}
	if err := c.SetInput("nope", nil); err == nil {
		t.Fatal("SetInput accepted an input no graph has")
	}
	wt := make([]float32, len(m.W))
	for i := range imgD {
		for j := range m.K {
			wt[j*imgD+i] = m.W[i*m.K+j]
		}
	}
	if err := c.SetInput("W", m.W); err != nil {
		t.Fatal(err)
	}
	if err := c.SetInput("Wt", wt); err != nil {
		t.Fatal(err)
	}
	got, err := Evaluate(t.Context(), c, ten.x, ten.y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Evaluate(t.Context(), m.classifier(t, 32), ten.x, ten.y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := summary(got), summary(want); a != b {
		t.Fatalf("weights as inputs: %s\nweights inside: %s", a, b)
	}
}

// summary prints a report's numbers without its timings.
func summary(r *Report) string {
	s := fmt.Sprintf("clean %d", r.CleanCorrect)
	for _, a := range r.Attacks {
		s += fmt.Sprintf(", %s %d/%d (attacked %d, runs %d)", a.Name, a.Robust, r.N, a.Attacked, a.Runs)
	}
	return s + fmt.Sprintf(", worst %d", r.WorstRobust)
}
