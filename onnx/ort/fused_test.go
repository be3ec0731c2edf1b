package ort

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

// tapModel is SLAT's domain clip of pre + delta, either as the one TapClip
// node or as the plain ONNX ops graphs emits without kernels.
func tapModel(shape []int64, kernel bool) *onnx.Model {
	b := onnx.NewBuilder("tap")
	b.Input("pre", onnx.Float, shape...)
	b.Input("delta", onnx.Float, shape...)
	if kernel {
		b.NodeIn(KernelDomain, onnx.TapClip, []string{"pre", "delta"}, []string{"h"})
	} else {
		axes := []int64{1}
		if len(shape) > 2 {
			axes = nil
			for i := 2; i < len(shape); i++ {
				axes = append(axes, int64(i))
			}
		}
		ax := b.Ints(axes...)
		lo := b.Op("ReduceMin", []string{"pre", ax}, onnx.AttrInt("keepdims", 1))
		hi := b.Op("ReduceMax", []string{"pre", ax}, onnx.AttrInt("keepdims", 1))
		b.Node("Max", []string{b.Op("Min", []string{b.Op("Add", []string{"pre", "delta"}), hi}), lo}, []string{"h"})
	}
	b.Output("h", onnx.Float, shape...)
	return b.Model()
}

// TestTapClip: the kernel equals the plain ops bit for bit, clips to each
// plane's own range (checked directly too), and on every thread count.
func TestTapClip(t *testing.T) {
	needKernels(t)
	for ci, c := range []struct {
		name    string
		shape   []int64
		scale   float32 // of delta: large values clip most entries
		threads int
	}{
		{"nchw small delta", []int64{3, 4, 5, 6}, 0.1, 1},
		{"nchw large delta", []int64{3, 4, 5, 6}, 3, 2},
		{"nf rows", []int64{5, 33}, 2, 3},
		{"rank 5, one-element planes", []int64{2, 3, 1, 1, 1}, 1, 2},
		{"convnet tap", []int64{16, 16, 28, 28}, 0.5, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 11))
			k, err := NewSession(tapModel(c.shape, true), Options{Threads: c.threads, Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			p, err := NewSession(tapModel(c.shape, false), Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pre, delta := k.Float("pre"), k.Float("delta")
			fill(r, pre)
			for i := range delta {
				delta[i] = c.scale * float32(r.NormFloat64())
			}
			copy(p.Float("pre"), pre)
			copy(p.Float("delta"), delta)
			if err := k.Run(); err != nil {
				t.Fatal(err)
			}
			if err := p.Run(); err != nil {
				t.Fatal(err)
			}
			got, want := k.Float("h"), p.Float("h")
			S := len(pre) / int(c.shape[0])
			if len(c.shape) > 2 {
				S /= int(c.shape[1])
			}
			clipped := 0
			var lo, hi float32
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("h[%d] = %g, the plain ops give %g", i, got[i], want[i])
				}
				if i%S == 0 {
					plane := pre[i : i+S]
					lo, hi = plane[0], plane[0]
					for _, v := range plane {
						lo, hi = min(lo, v), max(hi, v)
					}
				}
				v := pre[i] + delta[i]
				if v < lo || v > hi {
					clipped++
				}
				if e := min(max(v, lo), hi); got[i] != e {
					t.Fatalf("h[%d] = %g, want clamp(%g, %g, %g) = %g", i, got[i], v, lo, hi, e)
				}
			}
			if c.scale >= 1 && clipped == 0 {
				t.Fatalf("no entry was clipped; the case tests nothing")
			}
		})
	}
}

func TestTapClipErrors(t *testing.T) {
	needKernels(t)
	for _, c := range []struct {
		name       string
		pre, delta []int64
		want       string
	}{
		{"rank 1", []int64{6}, []int64{6}, "rank >= 2"},
		{"shapes differ", []int64{2, 3, 4, 4}, []int64{2, 3, 4, 5}, "delta must have pre's shape"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("tap")
			b.Input("pre", onnx.Float, c.pre...)
			b.Input("delta", onnx.Float, c.delta...)
			b.NodeIn(KernelDomain, onnx.TapClip, []string{"pre", "delta"}, []string{"h"})
			b.Output("h", onnx.Float, c.pre...)
			s, err := NewSession(b.Model(), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "TapClip") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want TapClip and %q", err, c.want)
			}
		})
	}
}
