package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// toBlocked returns x, [n, c, hw] in NCHW order, in the nChw16c layout
// ([n][c/16][hw][16]) of the kernels' blocked tensors.
func toBlocked(x []float32, n, c, hw int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for p := 0; p < hw; p++ {
				out[((i*(c/16)+ch/16)*hw+p)*16+ch%16] = x[(i*c+ch)*hw+p]
			}
		}
	}
	return out
}

// fromBlocked is toBlocked's inverse.
func fromBlocked(b []float32, n, c, hw int) []float32 {
	out := make([]float32, len(b))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for p := 0; p < hw; p++ {
				out[(i*c+ch)*hw+p] = b[((i*(c/16)+ch/16)*hw+p)*16+ch%16]
			}
		}
	}
	return out
}

// TestConvBlocked runs each convolution kernel with its activations in
// nChw16c (attribute blocked, every combination of its activation roles)
// and checks that the result is bit-identical to the kernel's on plain
// NCHW tensors: the layout only moves oneDNN's reorders out of the kernel.
func TestConvBlocked(t *testing.T) {
	needKernels(t)
	cases := []convCase{
		{name: "16to32_s2_3threads", n: 5, c: 16, h: 10, w: 10, k: 32, kh: 3, kw: 3, stride: [2]int{2, 2}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, threads: 3},
		{name: "32to16_s1_2threads", n: 4, c: 32, h: 7, w: 7, k: 16, kh: 3, kw: 3, stride: [2]int{1, 1}, dil: [2]int{1, 1}, pads: [4]int{1, 1, 1, 1}, threads: 2},
	}
	type tensor struct {
		name       string
		n, c, hw   int // the tensor's [n, c, hw]
		activation bool
	}
	for ci, cc := range cases {
		oh, ow := cc.out()
		x := tensor{"x", cc.n, cc.c, cc.h * cc.w, true}
		y := tensor{"y", cc.n, cc.k, oh * ow, true}
		w := tensor{"w", cc.k, cc.c, cc.kh * cc.kw, false}
		for _, op := range []struct {
			name     string
			ins      []tensor
			out      tensor
			outShape []int64
		}{
			{ConvForwardOp, []tensor{x, w}, y, []int64{int64(cc.n), int64(cc.k), int64(oh), int64(ow)}},
			{ConvGradInputOp, []tensor{y, w}, x, []int64{int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w)}},
			{ConvGradWeightOp, []tensor{x, y}, w, []int64{int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw)}},
		} {
			roles := append(append([]tensor(nil), op.ins...), op.out)
			run := func(t *testing.T, blocked int, data map[string][]float32) []float32 {
				t.Helper()
				b := onnx.NewBuilder("blocked")
				var in []string
				for _, r := range op.ins {
					in = append(in, r.name)
					switch r.name {
					case "x":
						b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
					case "y":
						b.Input("y", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
					case "w":
						b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
					}
				}
				attrs := append(cc.attrs(), onnx.AttrInt("blocked", int64(blocked)))
				if op.name == ConvGradInputOp {
					attrs = append(attrs, onnx.AttrInts("input_shape", int64(cc.h), int64(cc.w)))
				}
				b.NodeIn(KernelDomain, op.name, in, []string{"out"}, attrs...)
				b.Output("out", onnx.Float, op.outShape...)
				s, err := NewSession(b.Model(), Options{Threads: cc.threads, Kernels: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				for j, r := range op.ins {
					v := data[r.name]
					if blocked>>j&1 == 1 {
						v = toBlocked(v, r.n, r.c, r.hw)
					}
					copy(s.Float(r.name), v)
				}
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
				got := append([]float32(nil), s.Float("out")...)
				if blocked>>2&1 == 1 {
					got = fromBlocked(got, op.out.n, op.out.c, op.out.hw)
				}
				return got
			}
			r := rand.New(rand.NewPCG(uint64(ci), 17))
			data := map[string][]float32{}
			for _, v := range []tensor{x, y, w} {
				data[v.name] = make([]float32, v.n*v.c*v.hw)
				fill(r, data[v.name])
			}
			t.Run(cc.name+"/"+op.name, func(t *testing.T) {
				plain := run(t, 0, data)
				for mask := 1; mask < 8; mask++ {
					ok := true
					for j, r := range roles {
						if mask>>j&1 == 1 && !r.activation {
							ok = false
						}
					}
					if !ok {
						continue
					}
					got := run(t, mask, data)
					for i := range plain {
						if math.Float32bits(got[i]) != math.Float32bits(plain[i]) {
							t.Fatalf("blocked %03b: element %d is %g, %g on plain tensors", mask, i, got[i], plain[i])
						}
					}
				}
			})
		}
	}
}

// TestConvBlockedErrors: a blocked weight, a blocked tensor whose channels
// are not a multiple of 16 and a mask out of range fail with the kernel's
// words.
func TestConvBlockedErrors(t *testing.T) {
	needKernels(t)
	cc := convCases[1] // 3 → 5 channels
	for _, c := range []struct {
		blocked int64
		model   *onnx.Model
		want    string
	}{
		{2, cc.forwardModel(), "weight tensor"},
		{1, cc.forwardModel(), "not a multiple of 16"},
		{8, cc.forwardModel(), "bit mask"},
		{4, cc.gradModel(), "weight tensor"},
	} {
		t.Run(fmt.Sprint(c.blocked, c.want), func(t *testing.T) {
			c.model.Graph().GetNode()[0].Attribute = append(c.model.Graph().GetNode()[0].Attribute, onnx.AttrInt("blocked", c.blocked))
			s, err := NewSession(c.model, Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("blocked %d: %v, want %q", c.blocked, err, c.want)
			}
		})
	}
}

// TestBatchNormTrainBlocked runs BatchNormTrain and BatchNormTrainGrad with
// attribute blocked (every [N, C, H, W] tensor in nChw16c) against the same
// kernels on plain tensors: equal to float32 rounding (the sums run in
// another order), and bit-identical across thread counts.
func TestBatchNormTrainBlocked(t *testing.T) {
	needKernels(t)
	for ci, bc := range []struct {
		bnCase
		acc bool
	}{
		{bnCase: bnCase{name: "16ch_relu", shape: []int64{5, 16, 7, 7}, relu: true}},
		{bnCase: bnCase{name: "32ch", shape: []int64{3, 32, 5, 4}}, acc: true},
		{bnCase: bnCase{name: "48ch_relu_acc_many_rows", shape: []int64{37, 48, 3, 3}, relu: true}, acc: true},
	} {
		t.Run(bc.name, func(t *testing.T) {
			n, c := int(bc.shape[0]), int(bc.shape[1])
			hw := int(bc.shape[2] * bc.shape[3])
			model := func(blocked bool) *onnx.Model {
				m := bc.fusedModel()
				g := m.Graph()
				if bc.acc {
					g.Input = append(g.Input, onnx.ValueInfo("acc", onnx.Float, bc.shape...))
					grad := g.GetNode()[1]
					if !bc.relu {
						grad.Input = append(grad.Input, "")
					}
					grad.Input = append(grad.Input, "acc")
				}
				if blocked {
					for _, node := range g.GetNode() {
						node.Attribute = append(node.Attribute, onnx.AttrInt("blocked", 1))
					}
				}
				return m
			}
			r := rand.New(rand.NewPCG(uint64(ci), 23))
			in := map[string][]float32{}
			{
				s, err := NewSession(model(false), Options{Threads: 1, Kernels: true})
				if err != nil {
					t.Fatal(err)
				}
				bnFill(r, s)
				names := []string{"x", "g", "b", "dy"}
				if bc.acc {
					fill(r, s.Float("acc"))
					names = append(names, "acc")
				}
				for _, name := range names {
					in[name] = slices.Clone(s.Float(name))
				}
				s.Close()
			}
			spatial := map[string]bool{"x": true, "dy": true, "acc": true, "y": true, "dx": true}
			run := func(blocked bool, threads int) map[string][]float32 {
				laid := map[string][]float32{}
				for name, v := range in {
					if blocked && spatial[name] {
						v = toBlocked(v, n, c, hw)
					}
					laid[name] = v
				}
				s := runWith(t, model(blocked), Options{Threads: threads, Kernels: true}, laid)
				defer s.Close()
				out := map[string][]float32{}
				for _, o := range []string{"y", "mean", "var", "invstd", "dx", "dg", "db"} {
					v := slices.Clone(s.Float(o))
					if blocked && spatial[o] {
						v = fromBlocked(v, n, c, hw)
					}
					out[o] = v
				}
				return out
			}
			plain := run(false, 1)
			one, three := run(true, 1), run(true, 3)
			for o, want := range plain {
				w := make([]float64, len(want))
				for i, v := range want {
					w[i] = float64(v)
				}
				closeTo(t, o+" blocked vs plain", one[o], w, 1e-5)
				for i := range one[o] {
					if math.Float32bits(one[o][i]) != math.Float32bits(three[o][i]) {
						t.Fatalf("%s[%d]: %g on 1 thread, %g on 3", o, i, one[o][i], three[o][i])
					}
				}
			}
		})
	}
	// A blocked batch norm needs [N, C, H, W] with C a multiple of 16.
	bad := bnCase{shape: []int64{2, 8, 3, 3}}.fusedModel()
	for _, node := range bad.Graph().GetNode() {
		node.Attribute = append(node.Attribute, onnx.AttrInt("blocked", 1))
	}
	s, err := NewSession(bad, Options{Threads: 1, Kernels: true})
	if err == nil {
		err = s.Run()
		s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "multiple of 16") {
		t.Errorf("8 channels blocked: %v", err)
	}
	// Flags other than 0 and 1 are refused when the session is made.
	for _, a := range []string{"blocked", "relu"} {
		m := bnCase{shape: []int64{2, 16, 3, 3}}.fusedModel()
		m.Graph().GetNode()[0].Attribute = append(m.Graph().GetNode()[0].Attribute, onnx.AttrInt(a, 3))
		s, err := NewSession(m, Options{Threads: 1, Kernels: true})
		if err == nil {
			err = s.Run()
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "attribute "+a+" must be in [0, 1], not 3") {
			t.Errorf("%s = 3: %v", a, err)
		}
	}
}
