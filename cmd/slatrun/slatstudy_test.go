package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/slatrun/slatrun/orchestrator"
)

// TestTrainSLATRangeUniform trains SLAT with --latent-scale range and
// --input-start uniform (the mlp's tap is 2-D, one range per sample), finds
// both in config.json, resumes the finished run, and refuses to resume it
// under the reference rule; a default SLAT run records the reference rule.
func TestTrainSLATRangeUniform(t *testing.T) {
	dir := t.TempDir()
	runOK(t, tinyTrain(dir, "--method", "slat", "--latent-scale", "range", "--input-start", "uniform")...)
	b, err := os.ReadFile(filepath.Join(dir, orchestrator.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"method": "slat"`, `"latent_scale": "range"`, `"input_start": "uniform"`, `"attack": "`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, b)
		}
	}
	m, err := os.ReadFile(filepath.Join(dir, orchestrator.MetricsFile))
	if err != nil || !bytes.Contains(m, []byte(`"probe"`)) {
		t.Errorf("metrics.jsonl has no probed epoch (%v):\n%s", err, m)
	}
	runOK(t, "train", "--resume", dir)
	runFails(t, 1, `latent_scale was "range", now "abs"`, "train", "--resume", dir, "--latent-scale", "abs")
	runFails(t, 1, `input_start was "uniform", now "zero"`, "train", "--resume", dir, "--input-start", "zero")
	runFails(t, 1, `LatentScale "rel"`, tinyTrain(t.TempDir(), "--method", "slat", "--latent-scale", "rel")...)
	runFails(t, 1, "only slat does", tinyTrain(t.TempDir(), "--input-start", "uniform")...)

	ref := t.TempDir()
	runOK(t, tinyTrain(ref, "--method", "slat")...)
	b, _ = os.ReadFile(filepath.Join(ref, orchestrator.ConfigFile))
	for _, want := range []string{`"latent_scale": "abs"`, `"input_start": "zero"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("a default slat run's config.json lacks %s:\n%s", want, b)
		}
	}
}
