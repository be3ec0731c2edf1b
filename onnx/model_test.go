package onnx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// small builds y = Relu(x + b) with metadata.
func small() *Model {
	b := NewBuilder("small")
	b.Input("x", Float, -1, 3)
	bias := b.Floats("b", []int64{3}, []float32{1, -2, 0.5})
	add := b.Op("Add", []string{"x", bias})
	b.Node("Relu", []string{add}, []string{"y"})
	b.Output("y", Float, -1, 3)
	b.SetMetadata("slatrun.kind", "forward")
	return b.Model()
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m := small()
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m.Proto, got.Proto) {
		t.Fatal("loaded model differs from the saved one")
	}
	if v, ok := got.Metadata("slatrun.kind"); !ok || v != "forward" {
		t.Fatalf("metadata slatrun.kind = %q, %v", v, ok)
	}
	vals, err := TensorFloats(got.Graph().GetInitializer()[0])
	if err != nil || len(vals) != 3 || vals[1] != -2 {
		t.Fatalf("initializer = %v, %v", vals, err)
	}
	// No temporary files are left beside the model.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after Save, want 1", len(entries))
	}
	// Readable by others (a server or a merging shard may run as another user).
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("saved file mode %v (%v), want -rw-r--r--", fi.Mode(), err)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	good, err := small().Encode()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(*onnxpb.ModelProto)) []byte {
		m := small()
		f(m.Proto)
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		data []byte
		is   error
		msg  string
	}{
		{"empty", nil, ErrEmpty, "empty"},
		{"json", []byte(`{"model": 1}`), ErrNotONNX, "text"},
		{"lfs pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"), ErrNotONNX, "text"},
		{"truncated", good[:len(good)/2], ErrTruncated, "truncated"},
		{"random bytes", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}, ErrTruncated, "truncated"},
		{"no graph", mutate(func(m *onnxpb.ModelProto) { m.Graph = nil }), ErrNoGraph, "no graph"},
		{"ir too new", mutate(func(m *onnxpb.ModelProto) { m.IrVersion = proto.Int64(99) }), ErrUnsupported, "IR version 99"},
		{"opset too new", mutate(func(m *onnxpb.ModelProto) { m.OpsetImport[0].Version = proto.Int64(40) }), ErrUnsupported, "opset 40"},
		{"no opset", mutate(func(m *onnxpb.ModelProto) { m.OpsetImport = nil }), ErrNotONNX, "opset"},
		{"dangling input", mutate(func(m *onnxpb.ModelProto) { m.Graph.Node[0].Input[1] = "ghost" }), nil, `"ghost"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.data)
			if err == nil {
				t.Fatal("Decode accepted bad input")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, want errors.Is %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to mention %q", err, c.msg)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.onnx")
	if err := os.WriteFile(path, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.onnx")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestInspect(t *testing.T) {
	info := Inspect(small())
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "x" || info.Inputs[0].Shape[0] != -1 {
		t.Errorf("inputs = %+v", info.Inputs)
	}
	if info.Ops["Add"] != 1 || info.Ops["Relu"] != 1 || info.Nodes != 2 {
		t.Errorf("ops = %v, nodes = %d", info.Ops, info.Nodes)
	}
	if info.Parameters != 3 || info.Opsets["ai.onnx"] != DefaultOpset {
		t.Errorf("parameters = %d, opsets = %v", info.Parameters, info.Opsets)
	}
	var buf bytes.Buffer
	if err := info.WriteTable(&buf, -1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[N,3]", "Relu", "slatrun.kind", "forward"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestBuilderFreshNames(t *testing.T) {
	b := NewBuilder("g")
	b.Input("x", Float, 1)
	seen := map[string]bool{"x": true}
	for i := 0; i < 5; i++ {
		n := b.Fresh("x")
		if seen[n] {
			t.Fatalf("Fresh returned %q twice", n)
		}
		seen[n] = true
	}
	e := Edit(small())
	if n := e.Fresh("y"); n == "y" {
		t.Fatal("Edit did not reserve the existing name y")
	}
}

func TestTensorRoundTrips(t *testing.T) {
	f := FloatTensor("f", []int64{2, 2}, []float32{1, -1, 0.5, 3})
	got, err := TensorFloats(f)
	if err != nil || len(got) != 4 || got[3] != 3 {
		t.Fatalf("TensorFloats = %v, %v", got, err)
	}
	i := Int64Tensor("i", []int64{3}, []int64{7, -8, 9})
	gi, err := TensorInt64s(i)
	if err != nil || gi[1] != -8 {
		t.Fatalf("TensorInt64s = %v, %v", gi, err)
	}
	f.RawData = f.RawData[:5]
	if _, err := TensorFloats(f); err == nil {
		t.Fatal("short raw_data accepted")
	}
	if _, err := TensorFloats(i); err == nil {
		t.Fatal("int64 tensor read as floats")
	}
}

// FuzzDecode checks that Decode never panics, whatever the bytes.
func FuzzDecode(f *testing.F) {
	good, _ := small().Encode()
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err == nil {
			// A model that decodes must also encode and describe itself.
			if _, err := m.Encode(); err != nil {
				t.Fatalf("decoded model does not encode: %v", err)
			}
			_ = Inspect(m)
		}
	})
}
