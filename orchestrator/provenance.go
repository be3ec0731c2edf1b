package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/dataset"
)

// provenance is what a run was trained on: the forward graph and the data.
// state.bin (from format version 2) records it and a resume compares it;
// config.json records it too, with the data's spec.
type provenance struct {
	// Forward is the sha256 (hex) of the forward graph's encoding, initial
	// weights included (Config.Forward).
	Forward string `json:"forward_sha256"`
	// Data fingerprints the examples the run sees.
	Data dataFingerprint `json:"data"`
}

// dataFingerprint fingerprints Config.Train and Config.Holdout.
type dataFingerprint struct {
	Train   setFingerprint  `json:"train"`
	Holdout *setFingerprint `json:"holdout,omitempty"`
}

// setFingerprint identifies a data set: its size and a hash of its
// contents.
type setFingerprint struct {
	N       int    `json:"n"`
	Shape   [3]int `json:"shape"` // C, H, W
	Classes int    `json:"classes"`
	// SHA256 is the sha256 (hex) of the examples as the loader sees them:
	// the N·C·H·W pixels as little-endian float32 (example-major, NCHW),
	// then the N labels as little-endian int64.
	SHA256 string `json:"sha256"`
}

// fingerprintSet hashes s.
func fingerprintSet(s *dataset.Set) setFingerprint {
	h := sha256.New()
	buf := make([]byte, 0, 1<<16)
	flush := func(h hash.Hash) {
		h.Write(buf)
		buf = buf[:0]
	}
	for _, v := range s.X {
		if len(buf)+4 > cap(buf) {
			flush(h)
		}
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	for _, y := range s.Y {
		if len(buf)+8 > cap(buf) {
			flush(h)
		}
		buf = binary.LittleEndian.AppendUint64(buf, uint64(y))
	}
	flush(h)
	return setFingerprint{N: s.N, Shape: [3]int{s.C, s.H, s.W}, Classes: s.Classes, SHA256: hex.EncodeToString(h.Sum(nil))}
}

// fingerprintData fingerprints the training set and, if not nil, the
// held-out set, the two at once.
func fingerprintData(train, holdout *dataset.Set) dataFingerprint {
	var d dataFingerprint
	done := make(chan setFingerprint, 1)
	if holdout != nil {
		go func() { done <- fingerprintSet(holdout) }()
	}
	d.Train = fingerprintSet(train)
	if holdout != nil {
		h := <-done
		d.Holdout = &h
	}
	return d
}

// provenanceDiff explains how two provenance records (JSON) differ; "" if
// they are equal.
func provenanceDiff(saved, now []byte) string {
	var a, b map[string]any
	if json.Unmarshal(saved, &a) != nil || json.Unmarshal(now, &b) != nil {
		if bytes.Equal(saved, now) {
			return ""
		}
		return "the provenance records differ"
	}
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", a, fa)
	flatten("", b, fb)
	var forward, data []string
	for _, k := range unionKeys(fa, fb) {
		va, ok := fa[k]
		if !ok {
			va = "(none)"
		}
		vb, ok := fb[k]
		if !ok {
			vb = "(none)"
		}
		if va == vb {
			continue
		}
		d := fmt.Sprintf("%s was %s, now %s", k, shortHex(va), shortHex(vb))
		if k == "forward_sha256" {
			forward = append(forward, d)
		} else {
			data = append(data, d)
		}
	}
	var parts []string
	if len(forward) > 0 {
		parts = append(parts, "the forward graph differs (a different model, or the same parameter shapes with other operations): "+strings.Join(forward, "; "))
	}
	if len(data) > 0 {
		parts = append(parts, "the data fingerprint differs (other examples, labels, order or split): "+strings.Join(data, "; "))
	}
	return strings.Join(parts, "; and ")
}

// flatten turns nested JSON objects into dotted keys (data.train.sha256)
// with their values as JSON.
func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, sub := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, sub, out)
		}
		return
	}
	b, _ := json.Marshal(v) // a decoded JSON value: cannot fail
	out[prefix] = string(b)
}

// shortHex shortens a JSON string holding a sha256 digest for messages.
func shortHex(v string) string {
	if s, err := strconv.Unquote(v); err == nil && len(s) == 64 {
		if _, err := hex.DecodeString(s); err == nil {
			return strconv.Quote(s[:16] + "…")
		}
	}
	return v
}

func unionKeys(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
