package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// state.bin layout (version 2), little-endian:
//
//	magic       8 bytes  "SLATSTAT"
//	version     uint32   2
//	settings    bytes    the resolved settings as JSON (config.json's "settings")
//	provenance  bytes    the forward graph's hash and the data's fingerprint as JSON
//	progress    uint64×3 pass (0-based), minibatch index in the pass, optimizer steps
//	sgd         uint8    1 once the momentum buffers hold a step
//	rng         bytes    math/rand/v2 PCG state (MarshalBinary)
//	best        float64×3, int64  best robust, its clean, last clean; best epoch (1-based)
//	window      accum    the metrics window since the last step line
//	epoch       accum    the current epoch's accumulators
//	history     bytes    the finished epochs' metrics as JSON
//	tensors     uint32 count, then per tensor: name bytes, role uint8, uint64 n, n float32
//	checksum    32 bytes sha256 of everything before it
//
// "bytes" is a uint32 length then the bytes; an accum is float64 loss,
// int64 correct, n, passes, batches, float64 seconds, uint32 taps, taps
// float64. Version 1 is the same without provenance; it still decodes, and
// a run resumed from it cannot check its model and data.
const (
	stateMagic   = "SLATSTAT"
	stateVersion = 2
	// stateVersion1 is the format before provenance records.
	stateVersion1 = 1
	// StateFile, ModelFile, BestFile, ConfigFile and MetricsFile are the
	// names of the files in a run directory.
	StateFile   = "state.bin"
	ModelFile   = "model.onnx"
	BestFile    = "best.onnx"
	ConfigFile  = "config.json"
	MetricsFile = "metrics.jsonl"
)

// ErrState is wrapped by every error about a state.bin that cannot be
// resumed from (corrupt, from another version, or from a different run).
var ErrState = errors.New("cannot resume from state")

// Tensor roles in state.bin.
const (
	roleParam uint8 = iota
	roleStat
	roleMomentum
	roleDelta
)

// savedTensor is a tensor of state.bin.
type savedTensor struct {
	name string
	role uint8
	data []float32
}

// snapshot is everything state.bin holds: the run state (but its last
// train pass's values), the settings, the provenance, whether SGD has
// started, the random generator and the tensors.
type snapshot struct {
	runState
	settings   []byte
	provenance []byte // nil: a version-1 file, which has none
	sgdStarted bool
	rng        []byte
	tensors    []savedTensor
}

type stateWriter struct{ bytes.Buffer }

func (w *stateWriter) u8(v uint8)     { w.WriteByte(v) }
func (w *stateWriter) u32(v uint32)   { w.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (w *stateWriter) u64(v uint64)   { w.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (w *stateWriter) i64(v int64)    { w.u64(uint64(v)) }
func (w *stateWriter) f64(v float64)  { w.u64(math.Float64bits(v)) }
func (w *stateWriter) bytes(b []byte) { w.u32(uint32(len(b))); w.Write(b) }
func (w *stateWriter) accum(a *accum) {
	w.f64(a.loss)
	w.i64(a.correct)
	w.i64(a.n)
	w.i64(a.passes)
	w.i64(a.batches)
	w.f64(a.seconds)
	w.u32(uint32(len(a.taps)))
	for _, v := range a.taps {
		w.f64(v)
	}
}

// encodeState serializes s.
func encodeState(s *snapshot) ([]byte, error) {
	hist, err := json.Marshal(s.history)
	if err != nil {
		return nil, err
	}
	var w stateWriter
	w.WriteString(stateMagic)
	w.u32(stateVersion)
	w.bytes(s.settings)
	w.bytes(s.provenance)
	w.u64(uint64(s.pass))
	w.u64(uint64(s.batch))
	w.u64(uint64(s.global))
	if s.sgdStarted {
		w.u8(1)
	} else {
		w.u8(0)
	}
	w.bytes(s.rng)
	w.f64(s.bestRobust)
	w.f64(s.bestClean)
	w.f64(s.lastClean)
	w.i64(int64(s.bestEpoch))
	w.accum(&s.win)
	w.accum(&s.ep)
	w.bytes(hist)
	w.u32(uint32(len(s.tensors)))
	for _, t := range s.tensors {
		w.bytes([]byte(t.name))
		w.u8(t.role)
		w.u64(uint64(len(t.data)))
		buf := make([]byte, 4*len(t.data))
		for i, v := range t.data {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		w.Write(buf)
	}
	sum := sha256.Sum256(w.Bytes())
	w.Write(sum[:])
	return w.Bytes(), nil
}

type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *stateReader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *stateReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *stateReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *stateReader) i64() int64   { return int64(r.u64()) }
func (r *stateReader) f64() float64 { return math.Float64frombits(r.u64()) }
func (r *stateReader) bytes() []byte {
	n := r.u32()
	return r.take(int(n))
}

// count reads a uint64 count and checks that count·size bytes remain.
func (r *stateReader) count(size int) int {
	n := r.u64()
	if r.err == nil && n > uint64(len(r.b)/size) {
		r.err = errors.New("truncated")
		return 0
	}
	return int(n)
}

func (r *stateReader) accum(a *accum) {
	a.loss = r.f64()
	a.correct = r.i64()
	a.n = r.i64()
	a.passes = r.i64()
	a.batches = r.i64()
	a.seconds = r.f64()
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(r.b)/8) {
		r.err = errors.New("truncated")
		return
	}
	a.taps = make([]float64, n)
	for i := range a.taps {
		a.taps[i] = r.f64()
	}
}

// decodeState parses state.bin; path is for messages.
func decodeState(b []byte, path string) (*snapshot, error) {
	fail := func(format string, args ...any) (*snapshot, error) {
		return nil, fmt.Errorf("orchestrator: %w %s: %s", ErrState, path, fmt.Sprintf(format, args...))
	}
	if len(b) < len(stateMagic)+4+sha256.Size || string(b[:len(stateMagic)]) != stateMagic {
		return fail("not a slatrun state file (no %q header)", stateMagic)
	}
	v := binary.LittleEndian.Uint32(b[len(stateMagic):])
	if v != stateVersion && v != stateVersion1 {
		return fail("state format version %d; this slatrun reads versions %d and %d", v, stateVersion1, stateVersion)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return fail("corrupt: the checksum does not match (a torn or edited file)")
	}
	r := &stateReader{b: body[len(stateMagic)+4:]}
	s := &snapshot{}
	s.settings = append([]byte(nil), r.bytes()...)
	if v >= 2 {
		s.provenance = append([]byte{}, r.bytes()...)
	}
	s.pass = int(r.u64())
	s.batch = int(r.u64())
	s.global = int(r.u64())
	s.sgdStarted = r.u8() == 1
	s.rng = append([]byte(nil), r.bytes()...)
	s.bestRobust = r.f64()
	s.bestClean = r.f64()
	s.lastClean = r.f64()
	s.bestEpoch = int(r.i64())
	r.accum(&s.win)
	r.accum(&s.ep)
	hist := r.bytes()
	nt := r.u32()
	for i := uint32(0); i < nt && r.err == nil; i++ {
		name := string(r.bytes())
		role := r.u8()
		n := r.count(4)
		raw := r.take(4 * n)
		if r.err != nil {
			break
		}
		data := make([]float32, n)
		for j := range data {
			data[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		s.tensors = append(s.tensors, savedTensor{name: name, role: role, data: data})
	}
	if r.err != nil {
		return fail("corrupt: %v", r.err)
	}
	if len(r.b) != 0 {
		return fail("corrupt: %d unexpected bytes at the end", len(r.b))
	}
	if err := json.Unmarshal(hist, &s.history); err != nil {
		return fail("corrupt epoch history: %v", err)
	}
	return s, nil
}

// legacySettings are the values of settings that runs saved before the
// setting existed had: a saved run without the key ran with that value.
var legacySettings = map[string]any{
	"bn_stats": BNStatsTrain, // every pass updates BN statistics since 2026-12
	// SLAT's latent scale and input start, recorded since 2026-12; a run
	// saved before had the reference rule (a run of another method records
	// neither, before or after).
	"latent_scale": LatentScaleAbs,
	"input_start":  InputStartZero,
}

// settingsDiff explains how two resolved settings (JSON) differ, naming
// each differing field with both values; "" if they are equal.
func settingsDiff(saved, now []byte) string {
	var a, b map[string]any
	if json.Unmarshal(saved, &a) != nil || json.Unmarshal(now, &b) != nil {
		if bytes.Equal(saved, now) {
			return ""
		}
		return "the settings differ"
	}
	for k, v := range legacySettings {
		for _, m := range []map[string]any{a, b} {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diffs []string
	for k := range keys {
		va, _ := json.Marshal(a[k])
		vb, _ := json.Marshal(b[k])
		if !bytes.Equal(va, vb) {
			diffs = append(diffs, fmt.Sprintf("%s was %s, now %s", k, va, vb))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}
