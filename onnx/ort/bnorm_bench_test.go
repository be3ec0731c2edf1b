package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/slatrun/slatrun/onnx"
)

// The forms of training-mode BN timed by TestBatchNormTrainAB.
const (
	bnComposed  = iota // standard ops, as graphs/norm.go's bnForward and bnGrad emit them
	bnFused            // BatchNormTrain, BatchNormTrainGrad
	bnFusedRelu        // the same with relu = 1
)

// bnFwdModel is the forward of one form, with a ReLU after it when relu is
// set (a separate Relu node, except in bnFusedRelu). Its outputs are y and
// what the backward of that form takes from the forward.
func bnFwdModel(shape []int64, form int, relu bool) *onnx.Model {
	C := shape[1]
	b := onnx.NewBuilder("bn_fwd")
	b.Input("x", onnx.Float, shape...)
	b.Input("g", onnx.Float, C)
	b.Input("b", onnx.Float, C)
	y := "ypre"
	if !relu || form == bnFusedRelu {
		y = "y"
	}
	switch form {
	case bnComposed:
		// bnForward: μ, xc = x − μ, σ² = mean(xc²), invstd = 1/√(σ² + ε),
		// k = invstd·γ, y = xc·k + β; xc, invstd and k are saved.
		axes, bs := b.Ints(bnAxes(len(shape))...), b.Ints(bnBcast(shape)...)
		mu := b.Op("ReduceMean", []string{"x", axes}, onnx.AttrInt("keepdims", 1))
		b.Node("Sub", []string{"x", mu}, []string{"xc"})
		v := b.Op("ReduceMean", []string{b.Op("Mul", []string{"xc", "xc"}), axes}, onnx.AttrInt("keepdims", 1))
		b.Node("Reciprocal", []string{b.Op("Sqrt", []string{b.Op("Add", []string{v, b.Scalar(1e-5)})})}, []string{"invstd"})
		b.Node("Mul", []string{"invstd", b.Op("Reshape", []string{"g", bs})}, []string{"k"})
		b.Node("Add", []string{b.Op("Mul", []string{"xc", "k"}), b.Op("Reshape", []string{"b", bs})}, []string{y})
		b.Output("xc", onnx.Float, shape...)
		b.Output("invstd", onnx.Float, bnBcast(shape)...)
		b.Output("k", onnx.Float, bnBcast(shape)...)
		// The running statistics' inputs (Reshape of μ and σ² to [C]) are
		// left out here as in the fused form.
	case bnFused, bnFusedRelu:
		a := (&bnCase{relu: form == bnFusedRelu}).attrs(false)
		b.NodeIn(KernelDomain, BatchNormTrainOp, []string{"x", "g", "b"}, []string{y, "mean", "var", "invstd"}, a...)
		b.Output("mean", onnx.Float, C)
		b.Output("var", onnx.Float, C)
		b.Output("invstd", onnx.Float, C)
	}
	if y != "y" {
		b.Node("Relu", []string{y}, []string{"y"})
	}
	b.Output("y", onnx.Float, shape...)
	return b.Model()
}

// bnBwdModel is the backward of one form: dy (and what the forward saved)
// → dx, dg, db; with relu, dy is first masked by y > 0 (Cast(Greater) · dy
// as graphs/elementwise.go's reluGrad emits it, except in bnFusedRelu).
func bnBwdModel(shape []int64, form int, relu bool) *onnx.Model {
	C := shape[1]
	cnt := float32(1)
	for i, d := range shape {
		if i != 1 {
			cnt *= float32(d)
		}
	}
	b := onnx.NewBuilder("bn_bwd")
	b.Input("dy", onnx.Float, shape...)
	if relu {
		b.Input("y", onnx.Float, shape...)
	}
	dy := "dy"
	if relu && form != bnFusedRelu {
		mask := b.Op("Cast", []string{b.Op("Greater", []string{"y", b.Scalar(0)})}, onnx.AttrInt("to", int64(onnx.Float)))
		dy = b.Op("Mul", []string{"dy", mask})
	}
	switch form {
	case bnComposed:
		// bnGrad: s1 = Σ dy, s2 = Σ dy·xc, dβ = s1, dγ = s2·invstd,
		// dx = (dy − s1/cnt − xc·s2·invstd²/cnt)·k.
		b.Input("xc", onnx.Float, shape...)
		b.Input("invstd", onnx.Float, bnBcast(shape)...)
		b.Input("k", onnx.Float, bnBcast(shape)...)
		axes, cs := b.Ints(bnAxes(len(shape))...), b.Ints(C)
		s1 := b.Op("ReduceSum", []string{dy, axes}, onnx.AttrInt("keepdims", 1))
		s2 := b.Op("ReduceSum", []string{b.Op("Mul", []string{dy, "xc"}), axes}, onnx.AttrInt("keepdims", 1))
		b.Node("Reshape", []string{s1, cs}, []string{"db"})
		b.Node("Reshape", []string{b.Op("Mul", []string{s2, "invstd"}), cs}, []string{"dg"})
		inv := b.Scalar(1 / cnt)
		c1 := b.Op("Mul", []string{s1, inv})
		c2 := b.Op("Mul", []string{s2, b.Op("Mul", []string{b.Op("Mul", []string{"invstd", "invstd"}), inv})})
		b.Node("Mul", []string{b.Op("Sub", []string{b.Op("Sub", []string{dy, c1}), b.Op("Mul", []string{"xc", c2})}), "k"}, []string{"dx"})
	case bnFused, bnFusedRelu:
		b.Input("x", onnx.Float, shape...)
		b.Input("g", onnx.Float, C)
		b.Input("mean", onnx.Float, C)
		b.Input("invstd", onnx.Float, C)
		in := []string{dy, "x", "g", "mean", "invstd"}
		if form == bnFusedRelu {
			in = append(in, "y")
		}
		a := (&bnCase{relu: form == bnFusedRelu}).attrs(false)
		b.NodeIn(KernelDomain, BatchNormTrainGradOp, in, []string{"dx", "dg", "db"}, a...)
	}
	b.Output("dx", onnx.Float, shape...)
	b.Output("dg", onnx.Float, C)
	b.Output("db", onnx.Float, C)
	return b.Model()
}

// bnForm is one form's forward and backward sessions, fed the same data.
type bnForm struct {
	name     string
	fwd, bwd *Session
}

func newBNForm(tb testing.TB, shape []int64, form int, relu bool, threads int) bnForm {
	tb.Helper()
	names := []string{"composed", "fused", "fused relu=1"}
	f := bnForm{name: names[form]}
	if relu && form != bnFusedRelu {
		f.name += " + Relu"
	}
	var err error
	o := Options{Threads: threads, Kernels: form != bnComposed}
	if f.fwd, err = NewSession(bnFwdModel(shape, form, relu), o); err != nil {
		tb.Fatal(err)
	}
	if f.bwd, err = NewSession(bnBwdModel(shape, form, relu), o); err != nil {
		f.fwd.Close()
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	fill(r, f.fwd.Float("x"))
	for i := range f.fwd.Float("g") {
		f.fwd.Float("g")[i] = float32(0.5 + r.Float64())
	}
	fill(r, f.fwd.Float("b"))
	fill(r, f.bwd.Float("dy"))
	if err := f.fwd.Run(); err != nil {
		tb.Fatal(err)
	}
	// The backward's inputs from the forward's outputs.
	for _, in := range f.bwd.Inputs() {
		if in != "dy" {
			copy(f.bwd.Float(in), f.fwd.Float(in))
		}
	}
	return f
}

func (f bnForm) close() { f.fwd.Close(); f.bwd.Close() }

// bnShapes are the BatchNormalization inputs of the zoo's convnet at batch
// 128.
var bnShapes = [][]int64{{128, 16, 28, 28}, {128, 32, 14, 14}, {128, 64, 7, 7}}

// TestBatchNormTrainAB interleaves forward and backward runs of the
// composed standard-op form and the fused kernels (with and without a ReLU)
// and logs medians; it runs only with SLATRUN_AB=<rounds> set (timings are
// never asserted).
func TestBatchNormTrainAB(t *testing.T) {
	rounds := 0
	fmt.Sscan(os.Getenv("SLATRUN_AB"), &rounds)
	if rounds <= 0 {
		t.Skip("set SLATRUN_AB=<rounds> to time composed batch normalization against the fused kernels")
	}
	needKernels(t)
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e6
	}
	for _, shape := range bnShapes {
		for _, threads := range []int{1, 2} {
			for _, relu := range []bool{false, true} {
				forms := []bnForm{newBNForm(t, shape, bnComposed, relu, threads), newBNForm(t, shape, bnFused, relu, threads)}
				if relu {
					forms = append(forms, newBNForm(t, shape, bnFusedRelu, relu, threads))
				}
				checkBNForms(t, forms)
				tf, tb := make([][]time.Duration, len(forms)), make([][]time.Duration, len(forms))
				for range rounds {
					for i, f := range forms {
						t0 := time.Now()
						if err := f.fwd.Run(); err != nil {
							t.Fatal(err)
						}
						t1 := time.Now()
						if err := f.bwd.Run(); err != nil {
							t.Fatal(err)
						}
						tf[i] = append(tf[i], t1.Sub(t0))
						tb[i] = append(tb[i], time.Since(t1))
					}
				}
				line := fmt.Sprintf("%v threads %d:", shape, threads)
				for i, f := range forms {
					line += fmt.Sprintf("  %s fwd %.2f bwd %.2f ms;", f.name, med(tf[i]), med(tb[i]))
				}
				t.Log(line)
				for _, f := range forms {
					f.close()
				}
			}
		}
	}
}

// checkBNForms checks that every form computes what the first one does
// (y, dx, dg, db to 1e-4 of each output's largest entry).
func checkBNForms(tb testing.TB, forms []bnForm) {
	tb.Helper()
	for _, f := range forms[1:] {
		for _, o := range []struct {
			s    *Session
			name string
		}{{f.fwd, "y"}, {f.bwd, "dx"}, {f.bwd, "dg"}, {f.bwd, "db"}} {
			ref := forms[0].fwd
			if o.s == f.bwd {
				ref = forms[0].bwd
			}
			a, b := ref.Float(o.name), o.s.Float(o.name)
			scale := 0.0
			for _, v := range a {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > 1e-4*scale {
					tb.Fatalf("%s: %s[%d] = %g, %s gives %g", f.name, o.name, i, b[i], forms[0].name, a[i])
				}
			}
		}
	}
}
