package orchestrator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCoveredLines: resume keeps the metrics lines the saved state covers.
func TestCoveredLines(t *testing.T) {
	const (
		step1  = `{"kind":"step","epoch":1,"step":3,"global_step":3}`
		epoch1 = `{"kind":"epoch","epoch":1,"global_step":8}`
		step2  = `{"kind":"step","epoch":2,"step":3,"global_step":11}`
		epoch2 = `{"kind":"epoch","epoch":2,"global_step":16}`
	)
	all := step1 + "\n" + epoch1 + "\n" + step2 + "\n" + epoch2 + "\n"
	for _, c := range []struct {
		name         string
		in           string
		pass, global int
		want         string
	}{
		{"everything", all, 2, 16, all},
		{"after epoch 1", all, 1, 8, step1 + "\n" + epoch1 + "\n"},
		{"mid epoch 2", all, 1, 12, step1 + "\n" + epoch1 + "\n" + step2 + "\n"},
		{"torn last line", step1 + "\n" + epoch1 + "\n" + `{"kind":"st`, 1, 8, step1 + "\n" + epoch1 + "\n"},
		{"blank lines, no final newline", "\n" + step1 + "\n\n" + epoch1, 1, 8, step1 + "\n" + epoch1 + "\n"},
		{"empty", "", 0, 0, ""},
	} {
		if got := string(coveredLines([]byte(c.in), c.pass, c.global)); got != c.want {
			t.Errorf("%s: kept\n%q\nwant\n%q", c.name, got, c.want)
		}
	}
}

// TestMetricsLog: lines are appended to the same file (not rewritten
// whole), a fresh log replaces an old file, and a resumed one cuts the
// file back to the saved position before appending.
func TestMetricsLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MetricsFile)
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := os.WriteFile(path, []byte("left over\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newMetricsLog(dir)
	if err := l.append(StepMetrics{Kind: "step", Epoch: 1, Step: 2, GlobalStep: 2}); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.append(EpochMetrics{Kind: "epoch", Epoch: 1, GlobalStep: 4}); err != nil {
		t.Fatal(err)
	}
	if err := l.append(StepMetrics{Kind: "step", Epoch: 2, Step: 2, GlobalStep: 6}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("appending replaced the file")
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(read(), "\n"), "\n")
	if len(lines) != 3 || strings.Contains(lines[0], "left over") || !strings.Contains(lines[1], `"kind":"epoch"`) {
		t.Fatalf("metrics.jsonl after three appends:\n%s", read())
	}

	// A crash after a torn write; the state covers epoch 1 only.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"kind":"step","ep`)
	f.Close()
	r, err := resumeMetricsLog(dir, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := read(), lines[0]+"\n"+lines[1]+"\n"; got != want {
		t.Fatalf("after resume:\n%s\nwant\n%s", got, want)
	}
	if err := r.append(StepMetrics{Kind: "step", Epoch: 2, Step: 2, GlobalStep: 6}); err != nil {
		t.Fatal(err)
	}
	r.close()
	if got, want := read(), strings.Join(lines, "\n")+"\n"; got != want {
		t.Errorf("after resume and an append:\n%s\nwant\n%s", got, want)
	}
	var none *metricsLog
	if err := none.close(); err != nil {
		t.Errorf("closing no log: %v", err)
	}
}
