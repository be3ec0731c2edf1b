package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/slatrun/slatrun/onnx"
)

// metricsLog is a run's metrics.jsonl, grown one line at a time: each line
// is one write to the file opened for appending, synced before append
// returns, so every line a later state.bin covers is on disk before
// state.bin is written, and a long run writes each line once instead of the
// whole file per line. A crash can leave a torn last line after the last
// checkpoint; resume (open with the saved position) drops it and every
// other line the saved state does not cover.
type metricsLog struct {
	path string
	f    *os.File // opened on the first append
	// fresh truncates the file on the first open (a new run's log
	// replaces whatever was there, as the old atomic rewrite did).
	fresh bool
}

// newMetricsLog is the log of a fresh run in dir.
func newMetricsLog(dir string) *metricsLog {
	return &metricsLog{path: filepath.Join(dir, MetricsFile), fresh: true}
}

// resumeMetricsLog is the log of a run resumed in dir at pass (finished
// epochs) and global (optimizer steps): it keeps the lines up to that
// point and, if the file held more (steps logged after the last
// checkpoint, or a torn line), rewrites it atomically with just those, so
// that what metrics.jsonl holds is what an uninterrupted run's would.
func resumeMetricsLog(dir string, pass, global int) (*metricsLog, error) {
	l := &metricsLog{path: filepath.Join(dir, MetricsFile)}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orchestrator: read %s: %w", MetricsFile, err)
	}
	keep := coveredLines(b, pass, global)
	if !bytes.Equal(keep, b) {
		if err := onnx.WriteFileAtomic(l.path, keep); err != nil {
			return nil, fmt.Errorf("orchestrator: write %s: %w", MetricsFile, err)
		}
	}
	return l, nil
}

// coveredLines returns the lines of metrics.jsonl text b that a state saved
// after pass epochs and global optimizer steps covers, each ending in a
// newline; blank and unreadable lines (a torn last line) are dropped.
func coveredLines(b []byte, pass, global int) []byte {
	var keep []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		var head struct {
			Kind       string `json:"kind"`
			Epoch      int    `json:"epoch"`
			GlobalStep int    `json:"global_step"`
		}
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &head) != nil {
			continue // a torn last line, or blank
		}
		if head.Kind == "epoch" && head.Epoch > pass || head.Kind == "step" && head.GlobalStep > global {
			continue
		}
		keep = append(keep, bytes.TrimRight(line, "\n")...)
		keep = append(keep, '\n')
	}
	return keep
}

// append writes v as one JSON line and syncs the file.
func (l *metricsLog) append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("orchestrator: encode a %s line: %w", MetricsFile, err)
	}
	if l.f == nil {
		flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
		if l.fresh {
			flags |= os.O_TRUNC
		}
		f, err := os.OpenFile(l.path, flags, 0o644)
		if err != nil {
			return fmt.Errorf("orchestrator: open %s: %w", MetricsFile, err)
		}
		l.f, l.fresh = f, false
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("orchestrator: append to %s: %w", MetricsFile, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("orchestrator: sync %s: %w", MetricsFile, err)
	}
	return nil
}

// close closes the file if append opened it; nil is a log that writes
// nothing.
func (l *metricsLog) close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("orchestrator: close %s: %w", MetricsFile, err)
	}
	return nil
}
