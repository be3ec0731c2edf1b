package ort

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
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

// TestTapClipBlocked: with any of pre, delta and h in nChw16c (attribute
// blocked, every combination), TapClip gives bit for bit what it gives on
// NCHW tensors, on positions that fill whole tiles of 16 and on ones that
// leave a tail, on 1 to 3 threads.
func TestTapClipBlocked(t *testing.T) {
	needKernels(t)
	for ci, shape := range [][]int64{{3, 32, 5, 7}, {2, 16, 8, 8}, {1, 48, 1, 1}} {
		n, c, hw := int(shape[0]), int(shape[1]), int(shape[2]*shape[3])
		r := rand.New(rand.NewPCG(uint64(ci), 12))
		ref, err := NewSession(tapModel(shape, true), Options{Threads: 1, Kernels: true})
		if err != nil {
			t.Fatal(err)
		}
		pre, delta := ref.Float("pre"), ref.Float("delta")
		fill(r, pre)
		for i := range delta {
			delta[i] = 0.7 * float32(r.NormFloat64())
		}
		if err := ref.Run(); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(ref.Float("h"))
		ref.Close()
		for bits := int64(1); bits < 8; bits++ {
			t.Run(fmt.Sprintf("%v/blocked=%d", shape, bits), func(t *testing.T) {
				b := onnx.NewBuilder("tap")
				b.Input("pre", onnx.Float, shape...)
				b.Input("delta", onnx.Float, shape...)
				b.NodeIn(KernelDomain, onnx.TapClip, []string{"pre", "delta"}, []string{"h"}, onnx.AttrInt("blocked", bits))
				b.Output("h", onnx.Float, shape...)
				s, err := NewSession(b.Model(), Options{Threads: 1 + int(bits)%3, Kernels: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				in := func(v []float32, blocked bool) []float32 {
					if blocked {
						return toBlocked(v, n, c, hw)
					}
					return v
				}
				copy(s.Float("pre"), in(pre, bits&1 != 0))
				copy(s.Float("delta"), in(delta, bits&2 != 0))
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
				got := s.Float("h")
				if bits&4 != 0 {
					got = fromBlocked(got, n, c, hw)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("h[%d] = %g, NCHW gives %g", i, got[i], want[i])
					}
				}
			})
		}
	}
}

// TestRelayout: Relayout moves an [N, C, H, W] tensor into nChw16c and
// back bit for bit (the test's own index arithmetic says where each value
// goes), on whole tiles of 16 positions and with a tail, on 1 to 3
// threads; and refuses what it cannot hold blocked.
func TestRelayout(t *testing.T) {
	needKernels(t)
	model := func(shape []int64, to int64) *onnx.Model {
		b := onnx.NewBuilder("relayout")
		b.Input("x", onnx.Float, shape...)
		b.NodeIn(KernelDomain, onnx.Relayout, []string{"x"}, []string{"y"}, onnx.AttrInt("to_blocked", to))
		b.Output("y", onnx.Float, shape...)
		return b.Model()
	}
	for ci, shape := range [][]int64{{2, 32, 4, 4}, {3, 16, 5, 7}, {1, 64, 28, 28}, {2, 16, 1, 1}} {
		for threads := 1; threads <= 3; threads++ {
			t.Run(fmt.Sprintf("%v/%dt", shape, threads), func(t *testing.T) {
				n, c, hw := int(shape[0]), int(shape[1]), int(shape[2]*shape[3])
				r := rand.New(rand.NewPCG(uint64(ci), uint64(threads)))
				x := make([]float32, n*c*hw)
				fill(r, x)
				for to, want := range map[int64][]float32{1: toBlocked(x, n, c, hw), 0: fromBlocked(x, n, c, hw)} {
					s, err := NewSession(model(shape, to), Options{Threads: threads, Kernels: true})
					if err != nil {
						t.Fatal(err)
					}
					copy(s.Float("x"), x)
					err = s.Run()
					got := slices.Clone(s.Float("y"))
					s.Close()
					if err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("to_blocked = %d: y[%d] = %g, want %g", to, i, got[i], want[i])
						}
					}
				}
			})
		}
	}
	for _, c := range []struct {
		name  string
		shape []int64
		to    int64
		want  string
	}{
		{"channels not a multiple of 16", []int64{2, 8, 4, 4}, 1, "X is blocked (nChw16c) but has 8 channels, not a multiple of 16"},
		{"rank 3", []int64{2, 16, 16}, 0, "[N, C, H, W]"},
		{"to_blocked 2", []int64{2, 16, 4, 4}, 2, "attribute to_blocked must be in [0, 1], not 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSession(model(c.shape, c.to), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "Relayout") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want Relayout and %q", err, c.want)
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
		{"blocked, 8 channels", []int64{2, 8, 4, 4}, []int64{2, 8, 4, 4}, "pre is blocked (nChw16c) but has 8 channels, not a multiple of 16"},
		{"blocked 8", []int64{2, 16, 4, 4}, []int64{2, 16, 4, 4}, "attribute blocked must be in [0, 7], not 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("tap")
			b.Input("pre", onnx.Float, c.pre...)
			b.Input("delta", onnx.Float, c.delta...)
			var attrs []*onnxpb.AttributeProto
			switch {
			case strings.HasPrefix(c.name, "blocked 8"):
				attrs = append(attrs, onnx.AttrInt("blocked", 8))
			case strings.HasPrefix(c.name, "blocked"):
				attrs = append(attrs, onnx.AttrInt("blocked", 5))
			}
			b.NodeIn(KernelDomain, onnx.TapClip, []string{"pre", "delta"}, []string{"h"}, attrs...)
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

// TestConv1x1GradInput: the kernel against the definition in float64 (dX
// is dY·W spread onto the stride grid, zero between), with and without
// acc, on even and odd extents and unequal strides, on 1 to 3 threads; and
// against ONNX Runtime's ConvTranspose, the form graphs emits without it.
func TestConv1x1GradInput(t *testing.T) {
	needKernels(t)
	for ci, c := range []struct {
		n, k, c, h, w, s0, s1 int64
		acc                   bool
		threads               int
	}{
		{2, 6, 4, 8, 8, 2, 2, false, 1},
		{3, 5, 3, 7, 9, 2, 3, true, 2},
		{4, 32, 16, 28, 28, 2, 2, true, 3},
		{1, 2, 2, 5, 5, 1, 2, false, 1},
		{2, 3, 4, 70, 70, 1, 1, true, 2}, // C·OH·OW above the stack buffer
	} {
		oh, ow := (c.h-1)/c.s0+1, (c.w-1)/c.s1+1
		b := onnx.NewBuilder("p1")
		b.Input("dy", onnx.Float, c.n, c.k, oh, ow)
		b.Input("w", onnx.Float, c.k, c.c, 1, 1)
		in := []string{"dy", "w"}
		if c.acc {
			b.Input("acc", onnx.Float, c.n, c.c, c.h, c.w)
			in = append(in, "acc")
		}
		b.NodeIn(KernelDomain, onnx.Conv1x1GradInput, in, []string{"dx"},
			onnx.AttrInts("strides", c.s0, c.s1), onnx.AttrInts("input_shape", c.h, c.w))
		b.Output("dx", onnx.Float, c.n, c.c, c.h, c.w)
		s, err := NewSession(b.Model(), Options{Threads: c.threads, Kernels: true})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(ci), 13))
		dy, w := s.Float("dy"), s.Float("w")
		fill(r, dy)
		fill(r, w)
		var acc []float32
		if c.acc {
			acc = s.Float("acc")
			fill(r, acc)
		}
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		got := s.Float("dx")
		want := make([]float64, len(got))
		for n := int64(0); n < c.n; n++ {
			for ch := int64(0); ch < c.c; ch++ {
				for y := int64(0); y < c.h; y++ {
					for x := int64(0); x < c.w; x++ {
						i := ((n*c.c+ch)*c.h+y)*c.w + x
						if acc != nil {
							want[i] = float64(acc[i])
						}
						if y%c.s0 != 0 || x%c.s1 != 0 {
							continue
						}
						for k := int64(0); k < c.k; k++ {
							want[i] += float64(w[k*c.c+ch]) * float64(dy[((n*c.k+k)*oh+y/c.s0)*ow+x/c.s1])
						}
					}
				}
			}
		}
		closeTo(t, "dx", got, want, 1e-5)

		// ONNX Runtime's ConvTranspose (+ acc), as the plain graphs compute it
		pb := onnx.NewBuilder("p1plain")
		pb.Input("dy", onnx.Float, c.n, c.k, oh, ow)
		pb.Input("w", onnx.Float, c.k, c.c, 1, 1)
		op := []int64{c.h - ((oh-1)*c.s0 + 1), c.w - ((ow-1)*c.s1 + 1)}
		ct := pb.Op("ConvTranspose", []string{"dy", "w"}, onnx.AttrInts("kernel_shape", 1, 1),
			onnx.AttrInts("strides", c.s0, c.s1), onnx.AttrInts("output_padding", op...))
		if c.acc {
			pb.Input("acc", onnx.Float, c.n, c.c, c.h, c.w)
			ct = pb.Op("Add", []string{"acc", ct})
		}
		pb.Node("Identity", []string{ct}, []string{"dx"})
		pb.Output("dx", onnx.Float, c.n, c.c, c.h, c.w)
		p, err := NewSession(pb.Model(), Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		copy(p.Float("dy"), dy)
		copy(p.Float("w"), w)
		if c.acc {
			copy(p.Float("acc"), acc)
		}
		if err := p.Run(); err != nil {
			t.Fatal(err)
		}
		ref := make([]float64, len(got))
		for i, v := range p.Float("dx") {
			ref[i] = float64(v)
		}
		closeTo(t, "dx vs ConvTranspose", got, ref, 1e-5)
		p.Close()
		s.Close()
	}
}

func TestConv1x1GradInputErrors(t *testing.T) {
	needKernels(t)
	for _, c := range []struct {
		name    string
		dy, w   []int64
		strides []int64
		hw      []int64
		want    string
	}{
		{"not 1x1", []int64{1, 2, 4, 4}, []int64{2, 3, 3, 3}, []int64{2, 2}, []int64{8, 8}, "W [K, C, 1, 1]"},
		{"K differs", []int64{1, 2, 4, 4}, []int64{5, 3, 1, 1}, []int64{2, 2}, []int64{8, 8}, "same K"},
		{"extent", []int64{1, 2, 4, 4}, []int64{2, 3, 1, 1}, []int64{2, 2}, []int64{10, 8}, "not a 1x1 convolution's output"},
		{"stride 0", []int64{1, 2, 4, 4}, []int64{2, 3, 1, 1}, []int64{0, 2}, []int64{8, 8}, "strides must be two positive values"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("p1")
			b.Input("dy", onnx.Float, c.dy...)
			b.Input("w", onnx.Float, c.w...)
			b.NodeIn(KernelDomain, onnx.Conv1x1GradInput, []string{"dy", "w"}, []string{"dx"},
				onnx.AttrInts("strides", c.strides...), onnx.AttrInts("input_shape", c.hw...))
			b.Output("dx", onnx.Float, c.dy[0], c.w[1], c.hw[0], c.hw[1])
			s, err := NewSession(b.Model(), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "Conv1x1GradInput") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want Conv1x1GradInput and %q", err, c.want)
			}
		})
	}
}

// TestConv1x1: the kernel against the definition in float64 and against
// ONNX Runtime's Conv, with and without a bias, odd extents, unequal
// strides, a gather buffer above the stack's, 1 to 3 threads.
func TestConv1x1(t *testing.T) {
	needKernels(t)
	for ci, c := range []struct {
		n, c, k, h, w, s0, s1 int64
		bias                  bool
		threads               int
	}{
		{2, 4, 6, 8, 8, 2, 2, false, 1},
		{3, 3, 5, 7, 9, 2, 3, true, 2},
		{4, 16, 32, 28, 28, 2, 2, false, 3},
		{2, 8, 3, 48, 48, 1, 1, true, 2}, // C·OH·OW above the stack buffer
	} {
		oh, ow := (c.h-1)/c.s0+1, (c.w-1)/c.s1+1
		build := func(kernel bool) *onnx.Model {
			b := onnx.NewBuilder("f1")
			b.Input("x", onnx.Float, c.n, c.c, c.h, c.w)
			b.Input("w", onnx.Float, c.k, c.c, 1, 1)
			in := []string{"x", "w"}
			if c.bias {
				b.Input("b", onnx.Float, c.k)
				in = append(in, "b")
			}
			if kernel {
				b.NodeIn(KernelDomain, onnx.Conv1x1, in, []string{"y"}, onnx.AttrInts("strides", c.s0, c.s1))
			} else {
				b.Node("Conv", in, []string{"y"}, onnx.AttrInts("kernel_shape", 1, 1), onnx.AttrInts("strides", c.s0, c.s1))
			}
			b.Output("y", onnx.Float, c.n, c.k, oh, ow)
			return b.Model()
		}
		s, err := NewSession(build(true), Options{Threads: c.threads, Kernels: true})
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewSession(build(false), Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(ci), 17))
		for _, name := range []string{"x", "w", "b"} {
			if name == "b" && !c.bias {
				continue
			}
			fill(r, s.Float(name))
			copy(p.Float(name), s.Float(name))
		}
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		if err := p.Run(); err != nil {
			t.Fatal(err)
		}
		x, w := s.Float("x"), s.Float("w")
		want := make([]float64, len(s.Float("y")))
		for n := int64(0); n < c.n; n++ {
			for k := int64(0); k < c.k; k++ {
				for y := int64(0); y < oh; y++ {
					for z := int64(0); z < ow; z++ {
						v := 0.0
						if c.bias {
							v = float64(s.Float("b")[k])
						}
						for ch := int64(0); ch < c.c; ch++ {
							v += float64(w[k*c.c+ch]) * float64(x[((n*c.c+ch)*c.h+y*c.s0)*c.w+z*c.s1])
						}
						want[((n*c.k+k)*oh+y)*ow+z] = v
					}
				}
			}
		}
		closeTo(t, "y", s.Float("y"), want, 1e-5)
		ref := make([]float64, len(want))
		for i, v := range p.Float("y") {
			ref[i] = float64(v)
		}
		closeTo(t, "y vs Conv", s.Float("y"), ref, 1e-5)
		s.Close()
		p.Close()
	}
}

// TestConv1x1Blocked: Conv1x1 and Conv1x1GradInput with every combination
// of blocked tensors give the NCHW kernels' results bit for bit (the test's
// toBlocked and fromBlocked say where each value goes), with position tails
// (OH·OW not a multiple of 16), task buffers above the stack's, 1 to 3
// threads; a blocked tensor whose channels are not a multiple of 16, or a
// bit naming Conv1x1's W, is refused.
func TestConv1x1Blocked(t *testing.T) {
	needKernels(t)
	type dims struct{ n, c, k, h, w, s int64 } // X [n, c, h, w], Y [n, k, oh, ow]
	run := func(t *testing.T, m *onnx.Model, threads int, in map[string][]float32, out string) []float32 {
		t.Helper()
		s := runWith(t, m, Options{Threads: threads, Kernels: true}, in)
		defer s.Close()
		return slices.Clone(s.Float(out))
	}
	same := func(t *testing.T, what string, got, want []float32) {
		t.Helper()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s[%d] = %g, NCHW gives %g", what, i, got[i], want[i])
			}
		}
	}
	lay := func(v []float32, blocked bool, n, c, hw int64) []float32 {
		if blocked {
			return toBlocked(v, int(n), int(c), int(hw))
		}
		return v
	}
	unlay := func(v []float32, blocked bool, n, c, hw int64) []float32 {
		if blocked {
			return fromBlocked(v, int(n), int(c), int(hw))
		}
		return v
	}
	// the last: (C + K)·OH·OW above the stack buffer
	for ci, d := range []dims{{2, 16, 32, 9, 9, 2}, {3, 32, 16, 28, 28, 2}, {2, 32, 64, 14, 14, 2}, {1, 16, 16, 6, 6, 1}, {2, 64, 64, 32, 32, 2}} {
		r := rand.New(rand.NewPCG(uint64(ci), 19))
		oh, ow := (d.h-1)/d.s+1, (d.w-1)/d.s+1
		hw, ohw := d.h*d.w, oh*ow
		x, w, b := make([]float32, d.n*d.c*hw), make([]float32, d.k*d.c), make([]float32, d.k)
		dy, acc := make([]float32, d.n*d.k*ohw), make([]float32, d.n*d.c*hw)
		for _, v := range [][]float32{x, w, b, dy, acc} {
			fill(r, v)
		}
		fwd := func(bits int64) *onnx.Model {
			mb := onnx.NewBuilder("f1")
			mb.Input("x", onnx.Float, d.n, d.c, d.h, d.w)
			mb.Input("w", onnx.Float, d.k, d.c, 1, 1)
			mb.Input("b", onnx.Float, d.k)
			mb.NodeIn(KernelDomain, onnx.Conv1x1, []string{"x", "w", "b"}, []string{"y"},
				onnx.AttrInts("strides", d.s, d.s), onnx.AttrInt("blocked", bits))
			mb.Output("y", onnx.Float, d.n, d.k, oh, ow)
			return mb.Model()
		}
		want := run(t, fwd(0), 1, map[string][]float32{"x": x, "w": w, "b": b}, "y")
		for _, bits := range []int64{1, 4, 5} {
			t.Run(fmt.Sprintf("Conv1x1/%d/blocked=%d", ci, bits), func(t *testing.T) {
				got := run(t, fwd(bits), 1+int(bits)%3, map[string][]float32{"x": lay(x, bits&1 != 0, d.n, d.c, hw), "w": w, "b": b}, "y")
				same(t, "y", unlay(got, bits&4 != 0, d.n, d.k, ohw), want)
			})
		}
		grad := func(bits int64, withAcc bool) *onnx.Model {
			mb := onnx.NewBuilder("p1")
			mb.Input("dy", onnx.Float, d.n, d.k, oh, ow)
			mb.Input("w", onnx.Float, d.k, d.c, 1, 1)
			in := []string{"dy", "w"}
			if withAcc {
				mb.Input("acc", onnx.Float, d.n, d.c, d.h, d.w)
				in = append(in, "acc")
			}
			mb.NodeIn(KernelDomain, onnx.Conv1x1GradInput, in, []string{"dx"}, onnx.AttrInts("strides", d.s, d.s),
				onnx.AttrInts("input_shape", d.h, d.w), onnx.AttrInt("blocked", bits))
			mb.Output("dx", onnx.Float, d.n, d.c, d.h, d.w)
			return mb.Model()
		}
		for _, withAcc := range []bool{false, true} {
			in := map[string][]float32{"dy": dy, "w": w}
			if withAcc {
				in["acc"] = acc
			}
			want := run(t, grad(0, withAcc), 1, in, "dx")
			for bits := int64(1); bits < 8; bits++ {
				if bits&2 != 0 && !withAcc {
					continue
				}
				t.Run(fmt.Sprintf("Conv1x1GradInput/%d/acc=%v/blocked=%d", ci, withAcc, bits), func(t *testing.T) {
					in := map[string][]float32{"dy": lay(dy, bits&1 != 0, d.n, d.k, ohw), "w": w}
					if withAcc {
						in["acc"] = lay(acc, bits&2 != 0, d.n, d.c, hw)
					}
					got := run(t, grad(bits, withAcc), 1+int(bits)%3, in, "dx")
					same(t, "dx", unlay(got, bits&4 != 0, d.n, d.c, hw), want)
				})
			}
		}
	}
	// one is a stride-2 model of op from in (X or dY) and w to out (Y or dX)
	one := func(op string, in, w, out []int64, bits int64) *onnx.Model {
		mb := onnx.NewBuilder("one")
		mb.Input("in", onnx.Float, in...)
		mb.Input("w", onnx.Float, w...)
		attrs := []*onnxpb.AttributeProto{onnx.AttrInts("strides", 2, 2), onnx.AttrInt("blocked", bits)}
		if op == onnx.Conv1x1GradInput {
			attrs = append(attrs, onnx.AttrInts("input_shape", out[2], out[3]))
		}
		mb.NodeIn(KernelDomain, op, []string{"in", "w"}, []string{"out"}, attrs...)
		mb.Output("out", onnx.Float, out...)
		return mb.Model()
	}
	for _, c := range []struct {
		name string
		m    *onnx.Model
		want string
	}{
		{"Conv1x1 X of 8 channels", one(onnx.Conv1x1, []int64{1, 8, 4, 4}, []int64{16, 8, 1, 1}, []int64{1, 16, 2, 2}, 1), "X is blocked (nChw16c) but has 8 channels"},
		{"Conv1x1 W bit", one(onnx.Conv1x1, []int64{1, 16, 4, 4}, []int64{16, 16, 1, 1}, []int64{1, 16, 2, 2}, 2), "bit 1 names W"},
		{"Conv1x1GradInput dY of 8 channels", one(onnx.Conv1x1GradInput, []int64{1, 8, 2, 2}, []int64{8, 16, 1, 1}, []int64{1, 16, 4, 4}, 1), "dY is blocked (nChw16c) but has 8 channels"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSession(c.m, Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestConv1x1Errors(t *testing.T) {
	needKernels(t)
	for _, c := range []struct {
		name    string
		x, w, b []int64
		want    string
	}{
		{"not 1x1", []int64{1, 3, 8, 8}, []int64{2, 3, 3, 3}, nil, "W [K, C, 1, 1]"},
		{"C differs", []int64{1, 3, 8, 8}, []int64{2, 4, 1, 1}, nil, "same C"},
		{"bias size", []int64{1, 3, 8, 8}, []int64{2, 3, 1, 1}, []int64{3}, "B must be [K] = [2]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("f1")
			b.Input("x", onnx.Float, c.x...)
			b.Input("w", onnx.Float, c.w...)
			in := []string{"x", "w"}
			if c.b != nil {
				b.Input("b", onnx.Float, c.b...)
				in = append(in, "b")
			}
			b.NodeIn(KernelDomain, onnx.Conv1x1, in, []string{"y"}, onnx.AttrInts("strides", 2, 2))
			b.Output("y", onnx.Float, c.x[0], c.w[0], 4, 4)
			s, err := NewSession(b.Model(), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "Conv1x1") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want Conv1x1 and %q", err, c.want)
			}
		})
	}
}

// narrowCases are convolutions from few input channels, ConvGradInputNarrow's
// shapes: the zoo's grayscale stem, a colour stem, an ImageNet-style 7×7
// stride-2 stem, asymmetric pads and strides, kernels wider than the image,
// pad-free ones, and the batch split unevenly over 1 to 3 threads.
var narrowCases = []convCase{
	{name: "gray_3x3_s1_p1", n: 3, c: 1, h: 28, w: 28, k: 16, kh: 3, kw: 3, pads: [4]int{1, 1, 1, 1}, fdSamples: 60},
	{name: "rgb_3x3_s1_p1_2threads", n: 5, c: 3, h: 9, w: 8, k: 6, kh: 3, kw: 3, pads: [4]int{1, 1, 1, 1}, threads: 2},
	{name: "rgb_7x7_s2_p3_3threads", n: 4, c: 3, h: 15, w: 13, k: 8, kh: 7, kw: 7, stride: [2]int{2, 2}, pads: [4]int{3, 3, 3, 3}, threads: 3},
	{name: "asym_pads_strides", n: 2, c: 2, h: 7, w: 9, k: 3, kh: 3, kw: 2, stride: [2]int{2, 3}, pads: [4]int{1, 0, 0, 2}},
	{name: "kernel_wider_than_image", n: 2, c: 4, h: 3, w: 2, k: 5, kh: 5, kw: 5, pads: [4]int{2, 2, 2, 2}},
	{name: "no_pads", n: 2, c: 1, h: 6, w: 7, k: 4, kh: 3, kw: 3},
	// one output row's columns (3·49·60) above the kernel's stack buffer
	{name: "rgb_7x7_s2_wide_rows", n: 2, c: 3, h: 119, w: 119, k: 4, kh: 7, kw: 7, stride: [2]int{2, 2}, pads: [4]int{3, 3, 3, 3}, fdSamples: 30, threads: 2},
}

// TestConvGradInputNarrow: the kernel against the float64 definition
// (refConv), central differences through ONNX's Conv, and ONNX Runtime's
// ConvTranspose, the form the graphs emit without it; two runs per session.
func TestConvGradInputNarrow(t *testing.T) {
	needKernels(t)
	for ci, cc := range narrowCases {
		if cc.stride == [2]int{} {
			cc.stride = [2]int{1, 1}
		}
		cc.dil = [2]int{1, 1}
		t.Run(cc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 17))
			oh, ow := cc.out()
			model := func(op string, plain bool) *onnx.Model {
				b := onnx.NewBuilder("narrow")
				b.Input("dy", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
				b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
				pads := onnx.AttrInts("pads", int64(cc.pads[0]), int64(cc.pads[1]), int64(cc.pads[2]), int64(cc.pads[3]))
				ks := onnx.AttrInts("kernel_shape", int64(cc.kh), int64(cc.kw))
				st := onnx.AttrInts("strides", int64(cc.stride[0]), int64(cc.stride[1]))
				if plain {
					// output_padding: the rows and columns the forward's
					// floor division dropped
					op0 := cc.h + cc.pads[0] + cc.pads[2] - ((oh-1)*cc.stride[0] + cc.kh)
					op1 := cc.w + cc.pads[1] + cc.pads[3] - ((ow-1)*cc.stride[1] + cc.kw)
					b.Node(op, []string{"dy", "w"}, []string{"dx"}, ks, st, pads, onnx.AttrInts("output_padding", int64(op0), int64(op1)))
				} else {
					b.NodeIn(KernelDomain, op, []string{"dy", "w"}, []string{"dx"}, ks, st, pads,
						onnx.AttrInts("input_shape", int64(cc.h), int64(cc.w)))
				}
				b.Output("dx", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
				return b.Model()
			}
			threads := max(cc.threads, 1)
			s, err := NewSession(model(onnx.ConvGradInputNarrow, false), Options{Threads: threads, Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			dy, w := s.Float("dy"), s.Float("w")
			fill(r, dy)
			fill(r, w)
			want := make([]float64, cc.n*cc.c*cc.h*cc.w)
			cc.refConv(func(xi, wi, yi int) { want[xi] += float64(w[wi]) * float64(dy[yi]) })
			for run := 0; run < 2; run++ {
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
				closeTo(t, "dX vs float64 reference", s.Float("dx"), want, 1e-5)
			}
			closeToSampled(t, "dX vs central differences", s.Float("dx"), cc.finiteDiffX(t, dy, w, r), 1e-4)

			p, err := NewSession(model("ConvTranspose", true), Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			copy(p.Float("dy"), dy)
			copy(p.Float("w"), w)
			if err := p.Run(); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "dX vs ConvTranspose", s.Float("dx"), float64s(p.Float("dx")), 1e-5)
		})
	}
}

func TestConvGradInputNarrowErrors(t *testing.T) {
	needKernels(t)
	for _, c := range []struct {
		name   string
		dy, w  []int64
		ks, hw []int64
		pads   []int64
		want   string
	}{
		{"K differs", []int64{1, 2, 4, 4}, []int64{5, 1, 3, 3}, []int64{3, 3}, []int64{4, 4}, []int64{1, 1, 1, 1}, "same K"},
		{"kernel", []int64{1, 2, 4, 4}, []int64{2, 1, 3, 3}, []int64{5, 5}, []int64{4, 4}, []int64{1, 1, 1, 1}, "is not kernel_shape"},
		{"extent", []int64{1, 2, 4, 4}, []int64{2, 1, 3, 3}, []int64{3, 3}, []int64{6, 4}, []int64{1, 1, 1, 1}, "not the convolution's output"},
		{"pads count", []int64{1, 2, 4, 4}, []int64{2, 1, 3, 3}, []int64{3, 3}, []int64{4, 4}, []int64{1, 1}, "pads must be four values"},
		{"negative pad", []int64{1, 2, 4, 4}, []int64{2, 1, 3, 3}, []int64{3, 3}, []int64{4, 4}, []int64{1, -1, 1, 1}, "pads must be in"},
		{"kernel 0", []int64{1, 2, 4, 4}, []int64{2, 1, 3, 3}, []int64{0, 3}, []int64{4, 4}, []int64{1, 1, 1, 1}, "kernel_shape must be two positive values"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("narrow")
			b.Input("dy", onnx.Float, c.dy...)
			b.Input("w", onnx.Float, c.w...)
			b.NodeIn(KernelDomain, onnx.ConvGradInputNarrow, []string{"dy", "w"}, []string{"dx"},
				onnx.AttrInts("kernel_shape", c.ks...), onnx.AttrInts("strides", 1, 1),
				onnx.AttrInts("pads", c.pads...), onnx.AttrInts("input_shape", c.hw...))
			b.Output("dx", onnx.Float, c.dy[0], c.w[1], c.hw[0], c.hw[1])
			s, err := NewSession(b.Model(), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "ConvGradInputNarrow") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ConvGradInputNarrow and %q", err, c.want)
			}
		})
	}
}

// TestConvNarrow: the forward kernel against the float64 definition
// (refConv) and ONNX Runtime's Conv, with and without a bias, on
// narrowCases; two runs per session.
func TestConvNarrow(t *testing.T) {
	needKernels(t)
	for ci, cc := range narrowCases {
		if cc.stride == [2]int{} {
			cc.stride = [2]int{1, 1}
		}
		cc.dil = [2]int{1, 1}
		cc.bias = ci%2 == 0
		t.Run(cc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 19))
			oh, ow := cc.out()
			b := onnx.NewBuilder("narrow_fwd")
			b.Input("x", onnx.Float, int64(cc.n), int64(cc.c), int64(cc.h), int64(cc.w))
			b.Input("w", onnx.Float, int64(cc.k), int64(cc.c), int64(cc.kh), int64(cc.kw))
			in := []string{"x", "w"}
			if cc.bias {
				b.Input("b", onnx.Float, int64(cc.k))
				in = append(in, "b")
			}
			b.NodeIn(KernelDomain, onnx.ConvNarrow, in, []string{"y"},
				onnx.AttrInts("kernel_shape", int64(cc.kh), int64(cc.kw)),
				onnx.AttrInts("strides", int64(cc.stride[0]), int64(cc.stride[1])),
				onnx.AttrInts("pads", int64(cc.pads[0]), int64(cc.pads[1]), int64(cc.pads[2]), int64(cc.pads[3])))
			b.Output("y", onnx.Float, int64(cc.n), int64(cc.k), int64(oh), int64(ow))
			s, err := NewSession(b.Model(), Options{Threads: max(cc.threads, 1), Kernels: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			x, w := s.Float("x"), s.Float("w")
			fill(r, x)
			fill(r, w)
			var bias []float32
			if cc.bias {
				bias = s.Float("b")
				fill(r, bias)
			}
			want := make([]float64, cc.n*cc.k*oh*ow)
			if bias != nil {
				for i := range want {
					want[i] = float64(bias[i/(oh*ow)%cc.k])
				}
			}
			cc.refConv(func(xi, wi, yi int) { want[yi] += float64(w[wi]) * float64(x[xi]) })
			for run := 0; run < 2; run++ {
				if err := s.Run(); err != nil {
					t.Fatal(err)
				}
				closeTo(t, "Y vs float64 reference", s.Float("y"), want, 1e-4)
			}

			p, err := NewSession(cc.convModel(), Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			copy(p.Float("x"), x)
			copy(p.Float("w"), w)
			pb := p.Float("b")
			for i := range pb {
				pb[i] = 0
			}
			copy(pb, bias)
			if err := p.Run(); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "Y vs ONNX Runtime's Conv", s.Float("y"), float64s(p.Float("y")), 1e-4)
		})
	}
}

func TestConvNarrowErrors(t *testing.T) {
	needKernels(t)
	for _, c := range []struct {
		name string
		x, w []int64
		ks   []int64
		pads []int64
		bias int64
		want string
	}{
		{"C differs", []int64{1, 2, 4, 4}, []int64{3, 1, 3, 3}, []int64{3, 3}, []int64{1, 1, 1, 1}, 0, "same C"},
		{"kernel", []int64{1, 1, 4, 4}, []int64{3, 1, 3, 3}, []int64{5, 5}, []int64{1, 1, 1, 1}, 0, "is not kernel_shape"},
		{"too large", []int64{1, 1, 2, 2}, []int64{3, 1, 5, 5}, []int64{5, 5}, []int64{0, 0, 0, 0}, 0, "larger than the padded"},
		{"bias", []int64{1, 1, 4, 4}, []int64{3, 1, 3, 3}, []int64{3, 3}, []int64{1, 1, 1, 1}, 4, "B must be [K] = [3]"},
		{"pads", []int64{1, 1, 4, 4}, []int64{3, 1, 3, 3}, []int64{3, 3}, []int64{1, 1, 1}, 0, "pads must be four values"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := onnx.NewBuilder("narrow_fwd")
			b.Input("x", onnx.Float, c.x...)
			b.Input("w", onnx.Float, c.w...)
			in := []string{"x", "w"}
			if c.bias > 0 {
				b.Input("b", onnx.Float, c.bias)
				in = append(in, "b")
			}
			b.NodeIn(KernelDomain, onnx.ConvNarrow, in, []string{"y"},
				onnx.AttrInts("kernel_shape", c.ks...), onnx.AttrInts("strides", 1, 1), onnx.AttrInts("pads", c.pads...))
			b.Output("y", onnx.Float, c.x[0], c.w[0], c.x[2], c.x[3])
			s, err := NewSession(b.Model(), Options{Threads: 1, Kernels: true})
			if err == nil {
				err = s.Run()
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "ConvNarrow") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ConvNarrow and %q", err, c.want)
			}
		})
	}
}

// float64s widens v.
func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
