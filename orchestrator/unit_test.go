package orchestrator

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/onnx"
)

func TestParseMethod(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      string
	}{
		{"slat", "slat", ""}, {"SLAT", "slat", ""}, {"fgsm", "fgsm", ""}, {"fgsm-rs", "fgsm-rs", ""},
		{"n-fgsm", "n-fgsm", ""}, {"standard", "standard", ""}, {"pgd-7", "pgd-7", ""}, {"free-8", "free-8", ""},
		{"pgd", "", "unknown method"}, {"pgd-0", "", "N ≥ 1"}, {"pgd-x", "", "whole number"}, {"adam", "", "unknown method"},
	} {
		m, err := parseMethod(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.err == "" && m.String() != c.want:
			t.Errorf("%q parsed as %q", c.in, m)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: err %v, want it to mention %q", c.in, err, c.err)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Forward = &onnx.Model{}
		c.Train = dataset.Synthetic(100, 1, 8, 8, 4, 1)
		c.Batch = 10
		c.Epochs = 2
		return c
	}
	if c := base(); c.Validate() != nil {
		t.Fatalf("valid config rejected: %v", c.Validate())
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no model", func(c *Config) { c.Forward = nil }, "Forward is nil"},
		{"no data", func(c *Config) { c.Train = nil }, "Train is nil"},
		{"method", func(c *Config) { c.Method = "sgd" }, "unknown method"},
		{"epochs", func(c *Config) { c.Epochs = 0 }, "Epochs = 0"},
		{"free epochs", func(c *Config) { c.Method = "free-8" }, "at least 8"},
		{"batch", func(c *Config) { c.Batch = 101 }, "larger than the training set"},
		{"lr", func(c *Config) { c.LR = float32(math.NaN()) }, "LR = NaN"},
		{"schedule", func(c *Config) { c.Schedule = "onecycle" }, "Schedule \"onecycle\""},
		{"momentum", func(c *Config) { c.Momentum = 1 }, "Momentum = 1"},
		{"eps", func(c *Config) { c.Eps = 8 }, "Eps = 8"},
		{"latent radius", func(c *Config) { c.LatentRadius = -2 }, "LatentRadius = -2"},
		{"probe steps", func(c *Config) { c.Probe.Steps = 0 }, "Probe.Steps = 0"},
		{"resume", func(c *Config) { c.Resume = true }, "Resume needs Out"},
		{"taps", func(c *Config) { c.Method = "fgsm"; c.Taps = []string{"stem"} }, "only slat"},
		{"holdout shape", func(c *Config) { c.Holdout = dataset.Synthetic(10, 3, 8, 8, 4, 1) }, "Holdout images are 3×8×8"},
	} {
		cfg := base()
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// Every problem is reported at once.
	cfg := base()
	cfg.Epochs, cfg.LR = 0, 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "Epochs") || !strings.Contains(err.Error(), "LR") {
		t.Errorf("two problems: %v", err)
	}
}

func TestResolveDefaults(t *testing.T) {
	c := DefaultConfig()
	c.Train = dataset.Synthetic(1000, 1, 8, 8, 4, 1)
	c.Eps = 0.1
	for _, tc := range []struct {
		method string
		step   float32
	}{{"slat", 0.09}, {"fgsm", 0.1}, {"fgsm-rs", 0.125}, {"n-fgsm", 0.1}, {"pgd-10", 0.025}, {"free-2", 0.1}} {
		m, _ := parseMethod(tc.method)
		r := resolve(&c, m, []string{"a"})
		if math.Abs(float64(r.InputStep-tc.step)) > 1e-7 {
			t.Errorf("%s: input step %v, want %v", tc.method, r.InputStep, tc.step)
		}
	}
	m, _ := parseMethod("slat")
	r := resolve(&c, m, []string{"a"})
	if r.LatentEta != 0.1 || math.Abs(float64(r.LatentStep-0.18)) > 1e-7 || r.LatentRadius != 0.1 || r.ProbeStep != 0.025 {
		t.Errorf("slat defaults: %+v", r)
	}
	c.LatentRadius = 0
	if r := resolve(&c, m, nil); r.LatentRadius != 0 {
		t.Errorf("LatentRadius 0 (no clip) resolved to %v", r.LatentRadius)
	}
	m, _ = parseMethod("n-fgsm")
	if r := resolve(&c, m, nil); math.Abs(float64(r.NoiseRadius-0.2)) > 1e-7 {
		t.Errorf("n-fgsm noise radius %v", r.NoiseRadius)
	}
	c.Epochs = 17
	m, _ = parseMethod("free-8")
	if r := resolve(&c, m, nil); r.Passes != 2 || r.TotalSteps != 2*7*8 {
		t.Errorf("free-8 over 17 epochs: %d passes, %d steps", r.Passes, r.TotalSteps)
	}
}

func testSnapshot() *snapshot {
	return &snapshot{
		settings: []byte(`{"method":"slat","seed":1}`), provenance: []byte(`{"forward_sha256":"ab"}`), sgdStarted: true,
		rng: []byte{1, 2, 3},
		runState: runState{pass: 2, batch: 7, global: 99, bestRobust: 0.5, bestClean: 0.75, lastClean: 0.7, bestEpoch: 2,
			win:     accum{loss: 1.5, correct: 3, n: 4, passes: 5, batches: 6, seconds: 0.25, taps: []float64{1, 2}},
			ep:      accum{loss: 2.5, taps: []float64{3, 4}},
			history: []EpochMetrics{{Kind: "epoch", Epoch: 1, Loss: 1}, {Kind: "epoch", Epoch: 2, Loss: 0.5}}},
		tensors: []savedTensor{{"w", roleParam, []float32{1, 2, 3}}, {"w", roleMomentum, []float32{-1, 0, float32(math.Inf(1))}}},
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := testSnapshot()
	b, err := encodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState(b, "state.bin")
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := encodeState(got)
	if string(b) != string(b2) {
		t.Fatal("state does not survive a round trip")
	}
	if string(got.provenance) != `{"forward_sha256":"ab"}` || got.pass != 2 || got.batch != 7 || got.global != 99 || !got.sgdStarted || got.bestEpoch != 2 ||
		got.win.taps[1] != 2 || got.history[1].Loss != 0.5 || got.tensors[1].data[2] != float32(math.Inf(1)) {
		t.Fatalf("decoded %+v", got)
	}
}

// toVersion1 rewrites a version-2 state.bin as version 1 wrote it: no
// provenance record.
func toVersion1(t testing.TB, b []byte) []byte {
	t.Helper()
	body := b[:len(b)-sha256.Size]
	at := len(stateMagic) + 4
	settingsLen := int(binary.LittleEndian.Uint32(body[at:]))
	at += 4 + settingsLen // the provenance's length is next
	provLen := int(binary.LittleEndian.Uint32(body[at:]))
	out := append([]byte(nil), body[:at]...)
	binary.LittleEndian.PutUint32(out[len(stateMagic):], stateVersion1)
	out = append(out, body[at+4+provLen:]...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

// TestStateVersion1 decodes a state.bin of format version 1 (before
// provenance records): everything but the provenance is there.
func TestStateVersion1(t *testing.T) {
	b, err := encodeState(testSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	old := toVersion1(t, b)
	if v := binary.LittleEndian.Uint32(old[len(stateMagic):]); v != 1 || len(old) >= len(b) {
		t.Fatalf("toVersion1 made version %d, %d bytes from %d", v, len(old), len(b))
	}
	got, err := decodeState(old, "state.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := testSnapshot()
	want.provenance = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("version 1 decoded as\n%+v\nwant\n%+v", got, want)
	}
}

func TestStateRejectsBadFiles(t *testing.T) {
	good, _ := encodeState(testSnapshot())
	flip := append([]byte(nil), good...)
	flip[40] ^= 1
	version := append([]byte(nil), good...)
	version[8] = 9
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a slatrun state file"},
		{"text", []byte("hello, this is not a state file at all, not at all, no"), "not a slatrun state file"},
		{"truncated", good[:len(good)-5], "checksum"},
		{"bit flip", flip, "checksum"},
		{"version", version, "version 9"},
	} {
		_, err := decodeState(c.b, "run/state.bin")
		if err == nil || !errors.Is(err, ErrState) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "run/state.bin") {
			t.Errorf("%s: err = %v, want ErrState mentioning %q and the path", c.name, err, c.want)
		}
	}
}

func TestSettingsDiff(t *testing.T) {
	if d := settingsDiff([]byte(`{"a":1,"b":"x"}`), []byte(`{"a":1,"b":"x"}`)); d != "" {
		t.Errorf("equal settings differ: %s", d)
	}
	d := settingsDiff([]byte(`{"method":"slat","eps":0.1}`), []byte(`{"method":"fgsm","eps":0.1}`))
	if d != `method was "slat", now "fgsm"` {
		t.Errorf("diff %q", d)
	}
	// A run saved before bn_stats existed updated the statistics in the
	// train passes only.
	for _, c := range []struct{ now, want string }{
		{`{"method":"slat","bn_stats":"train"}`, ""},
		{`{"method":"slat","bn_stats":"all"}`, `bn_stats was "train", now "all"`},
	} {
		if d := settingsDiff([]byte(`{"method":"slat"}`), []byte(c.now)); d != c.want {
			t.Errorf("legacy run against %s: diff %q, want %q", c.now, d, c.want)
		}
	}
}

func TestBetterProbe(t *testing.T) {
	cases := []struct {
		name               string
		p                  ProbeResult
		bestRobust, bestCl float64
		want               bool
	}{
		{"first epoch", ProbeResult{Robust: 0, Clean: 0.5}, -1, 0, true},
		{"more robust", ProbeResult{Robust: 0.4, Clean: 0.6}, 0.3, 0.9, true},
		{"less robust", ProbeResult{Robust: 0.2, Clean: 0.99}, 0.3, 0.5, false},
		{"tie, cleaner", ProbeResult{Robust: 0, Clean: 0.93}, 0, 0.79, true},
		{"tie, not cleaner", ProbeResult{Robust: 0.5, Clean: 0.7}, 0.5, 0.7, false},
	}
	for _, c := range cases {
		if got := betterProbe(c.p, c.bestRobust, c.bestCl); got != c.want {
			t.Errorf("%s: betterProbe = %v, want %v", c.name, got, c.want)
		}
	}
}
