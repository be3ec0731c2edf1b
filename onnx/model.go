package onnx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// Limits of the ONNX Runtime build slatrun targets (1.24.1).
const (
	MaxIRVersion = 13
	MaxOpset     = 25
	// DefaultOpset is the opset the model zoo and derived graphs use.
	DefaultOpset = 18
	// IRVersion is the IR version written by the Builder.
	IRVersion = 9
)

// Errors returned (wrapped) by Decode and Load. Test with errors.Is.
var (
	ErrEmpty       = errors.New("empty input")
	ErrNotONNX     = errors.New("not an ONNX model")
	ErrTruncated   = errors.New("truncated or corrupt protobuf")
	ErrNoGraph     = errors.New("model has no graph")
	ErrUnsupported = errors.New("not supported by this ONNX Runtime")
)

// Model is a decoded ONNX model.
type Model struct {
	Proto *onnxpb.ModelProto
}

// Graph returns the model's main graph.
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.GetGraph() }

// Opset returns the version of the default ("" or "ai.onnx") operator set, or
// 0 if the model imports none.
func (m *Model) Opset() int64 {
	for _, o := range m.Proto.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// Metadata returns the metadata_props value for key and whether it is set.
func (m *Model) Metadata(key string) (string, bool) {
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() == key {
			return p.GetValue(), true
		}
	}
	return "", false
}

// SetMetadata sets (or replaces) a metadata_props entry.
func (m *Model) SetMetadata(key, value string) {
	for _, p := range m.Proto.MetadataProps {
		if p.GetKey() == key {
			p.Value = proto.String(value)
			return
		}
	}
	m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
}

// Clone returns a deep copy of the model.
func (m *Model) Clone() *Model {
	return &Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto)}
}

// Encode serializes the model.
func (m *Model) Encode() ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil, fmt.Errorf("onnx: encode: %w", err)
	}
	return b, nil
}

// Save writes the model to path atomically: it writes a temporary file in the
// same directory and renames it, so a crash never leaves a torn file.
func (m *Model) Save(path string) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(path, b); err != nil {
		return fmt.Errorf("onnx: save %s: %w", path, err)
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path. The file is readable by all (0644), like one
// written by os.WriteFile under the usual umask, so a checkpoint can be
// served or merged by another user (os.CreateTemp alone would leave 0600).
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Load reads and decodes an ONNX file, validating it like Decode.
func Load(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load: %w", err)
	}
	m, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("onnx: load %s: %w", path, err)
	}
	return m, nil
}

// Decode parses serialized ONNX bytes and validates the result (Validate):
// a model it returns is one ONNX Runtime 1.24 can load and every part of
// slatrun can read without panicking. It never panics on bad input.
func Decode(b []byte) (*Model, error) {
	m, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("onnx: decode: %w", err)
	}
	return m, nil
}

func decode(b []byte) (*Model, error) {
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	if looksLikeText(b) {
		return nil, fmt.Errorf("%w (the data is text, not a protobuf)", ErrNotONNX)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	m := &Model{Proto: mp}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// looksLikeText reports whether b starts like a text file (JSON, a script, a
// Git LFS pointer), which an ONNX model never does: its first byte is a
// protobuf tag.
func looksLikeText(b []byte) bool {
	head := b
	if len(head) > 64 {
		head = head[:64]
	}
	for _, p := range [][]byte{[]byte("{"), []byte("version https://git-lfs"), []byte("<"), []byte("#")} {
		if bytes.HasPrefix(head, p) {
			return true
		}
	}
	return false
}
