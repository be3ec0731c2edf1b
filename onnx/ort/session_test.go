package ort

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
)

func TestMain(m *testing.M) {
	if err := Init(""); err != nil {
		// Every test here needs the library; say how to get it.
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// affine builds y = relu(x·W + b) and loss = ReduceSum(y) (0-d).
func affine(t testing.TB) *onnx.Model {
	b := onnx.NewBuilder("affine")
	b.Input("x", onnx.Float, -1, 3)
	w := b.Floats("W", []int64{3, 2}, []float32{1, -1, 2, 0.5, -3, 1})
	bias := b.Floats("b", []int64{2}, []float32{0.5, -0.25})
	mm := b.Op("MatMul", []string{"x", w})
	add := b.Op("Add", []string{mm, bias})
	b.Node("Relu", []string{add}, []string{"y"})
	b.Node("ReduceSum", []string{"y"}, []string{"loss"}, onnx.AttrInt("keepdims", 0))
	b.Output("y", onnx.Float, -1, 2)
	b.Output("loss", onnx.Float)
	return b.Model()
}

func TestBuiltGraphRuns(t *testing.T) {
	s, err := NewSession(affine(t), Options{Batch: 2, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	copy(s.Float("x"), []float32{1, 2, 3, -1, 0, 1})
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	// Row 1: [1,2,3]·W = [1+4-9, -1+1+3] = [-4, 3] → +b → [-3.5, 2.75] → relu [0, 2.75]
	// Row 2: [-1,0,1]·W = [-1-3, 1+1] = [-4, 2] → [-3.5, 1.75] → [0, 1.75]
	want := []float32{0, 2.75, 0, 1.75}
	for i, v := range s.Float("y") {
		if v != want[i] {
			t.Fatalf("y = %v, want %v", s.Float("y"), want)
		}
	}
	if got := s.Float("loss")[0]; got != 4.5 {
		t.Fatalf("loss = %v, want 4.5", got)
	}
	// In-place input writes are seen by the next run.
	copy(s.Float("x"), []float32{0, 0, 0, 0, 0, 0})
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	if got := s.Float("loss")[0]; got != 1 {
		t.Fatalf("loss after rewrite = %v, want 1 (two rows of relu(b))", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Run(); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

func TestSessionOptions(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{Batch: 1}, ""},
		{"two threads spinning", Options{Batch: 1, Threads: 2, Spinning: true}, ""},
		{"no optimization", Options{Batch: 1, OptLevel: "none"}, ""},
		{"bad level", Options{Batch: 1, OptLevel: "max"}, "optimization level"},
		{"bad provider", Options{Batch: 1, Provider: "tpu"}, "unknown provider"},
		{"provider in upper case", Options{Batch: 1, Provider: "CPU"}, ""},
		{"no batch", Options{}, "symbolic dimension"},
		{"missing output", Options{Batch: 1, Outputs: []string{"nope"}}, "not a graph output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSession(affine(t), c.opts)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, c.wantErr)
			}
		})
	}
}

func TestCUDAUnavailableIsOneClearError(t *testing.T) {
	err := CheckCUDA(0)
	if err == nil {
		t.Skip("CUDA works here")
	}
	if !errors.Is(err, ErrCUDAUnavailable) {
		t.Fatalf("err = %v, want ErrCUDAUnavailable", err)
	}
	msg := err.Error()
	for _, want := range []string{"libonnxruntime_providers_cuda.so", "--ort-lib", "--provider cpu"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	// ONNX Runtime's own error is kept, in its words, behind the sentinel.
	var ce *cudaError
	if !errors.As(err, &ce) || ce.err == nil {
		t.Fatalf("err = %v, want a *cudaError wrapping ONNX Runtime's error", err)
	}
	if !errors.Is(err, ce.err) {
		t.Errorf("errors.Is(err, ONNX Runtime's error) = false")
	}
	if words := oneLine(ce.err.Error()); !strings.Contains(msg, words) {
		t.Errorf("message %q lacks ONNX Runtime's words %q", msg, words)
	}
	t.Logf("CheckCUDA: %v", err)
	for _, p := range []string{"cuda", "CUDA", " Cuda "} {
		_, err = NewSession(affine(t), Options{Batch: 1, Provider: p})
		if !errors.Is(err, ErrCUDAUnavailable) {
			t.Fatalf("NewSession(Provider %q) err = %v, want ErrCUDAUnavailable", p, err)
		}
	}
	if got := Providers(); len(got) != 1 || got[0] != "cpu" {
		t.Fatalf("Providers() = %v, want [cpu]", got)
	}
}

func TestInitErrors(t *testing.T) {
	if err := Init(""); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if err := Init("/nonexistent/libonnxruntime.so"); err == nil {
		t.Fatal("Init with another library after the first succeeded")
	}
	if v := Version(); v != LibraryVersion {
		t.Logf("ONNX Runtime %s (expected %s)", v, LibraryVersion)
	}
}

func TestRunShapeErrorIsReported(t *testing.T) {
	b := onnx.NewBuilder("reshape")
	b.Input("x", onnx.Float, 2, 3)
	shape := b.Ints(4, 2)
	b.Node("Reshape", []string{"x", shape}, []string{"y"})
	b.Output("y", onnx.Float, 4, 2)
	s, err := NewSession(b.Model(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Run(); err == nil {
		t.Fatal("a reshape of 6 values to 8 ran without error")
	}
}

// BenchmarkRun shows that a steady-state Run allocates nothing.
func BenchmarkRun(b *testing.B) {
	s, err := NewSession(affine(b), Options{Batch: 128, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	x := s.Float("x")
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRunDoesNotAllocate(t *testing.T) {
	s, err := NewSession(affine(t), Options{Batch: 16, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a := testing.AllocsPerRun(100, func() {
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Run allocates %v times per call", a)
	}
}

func TestSharedInputs(t *testing.T) {
	x := []float32{1, 2, 3}
	a, err := NewSession(affine(t), Options{Batch: 1, Shared: map[string][]float32{"x": x}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewSession(affine(t), Options{Batch: 1, Shared: map[string][]float32{"x": x}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	x[0] = -1 // one write, seen by both sessions
	for _, s := range []*Session{a, b} {
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
		// [-1,2,3]·W = [-1+4-9, 1+1+3] = [-6, 5] → +b → [-5.5, 4.75] → relu → sum 4.75
		if got := s.Float("loss")[0]; got != 4.75 {
			t.Fatalf("loss = %v, want 4.75", got)
		}
	}
	if _, err := NewSession(affine(t), Options{Batch: 2, Shared: map[string][]float32{"x": x}}); err == nil {
		t.Fatal("a shared slice of the wrong size was accepted")
	}
}

// TestExecutionProvider: the provider name is normalized once, in any
// letter case, and the options derived from it agree.
func TestExecutionProvider(t *testing.T) {
	for _, c := range []struct {
		provider, want string
		cpu, cuda      bool
	}{
		{"", ProviderCPU, true, false},
		{"cpu", ProviderCPU, true, false},
		{"CPU", ProviderCPU, true, false},
		{" Cpu", ProviderCPU, true, false},
		{"cuda", ProviderCUDA, false, true},
		{"CUDA", ProviderCUDA, false, true},
		{"tpu", "", false, false},
	} {
		o := Options{Provider: c.provider}
		got, err := o.ExecutionProvider()
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("Provider %q: ExecutionProvider() = %q, %v; want %q", c.provider, got, err, c.want)
		}
		if o.OnCPU() != c.cpu || o.OnCUDA() != c.cuda {
			t.Errorf("Provider %q: OnCPU %v, OnCUDA %v; want %v, %v", c.provider, o.OnCPU(), o.OnCUDA(), c.cpu, c.cuda)
		}
		if want := (Options{}).NCHWc(); c.cpu && o.NCHWc() != want {
			t.Errorf("Provider %q: NCHWc() = %d, want %d as for the default provider", c.provider, o.NCHWc(), want)
		}
		k := Options{Provider: c.provider, Kernels: true}
		if want := (Options{Kernels: true}).OneDNN(); c.cpu && k.OneDNN() != want {
			t.Errorf("Provider %q: OneDNN() = %v, want %v as for the default provider", c.provider, k.OneDNN(), want)
		}
		if !c.cpu && (o.NCHWc() != 0 || k.OneDNN()) {
			t.Errorf("Provider %q: NCHWc %d, OneDNN %v; want both off", c.provider, o.NCHWc(), k.OneDNN())
		}
	}
}
