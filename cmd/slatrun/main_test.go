package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

func TestCLI(t *testing.T) {
	b := onnx.NewBuilder("tiny")
	b.Input("x", onnx.Float, -1, 2)
	b.Node("Relu", []string{"x"}, []string{"logits"})
	b.Output("logits", onnx.Float, -1, 2)
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := b.Model().Save(model); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.onnx")
	os.WriteFile(corrupt, []byte{0x0a, 0xff, 0xff}, 0o644)

	cases := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderr  string
		jsonOut bool
	}{
		{"help", []string{"help"}, 0, "Commands:", "", false},
		{"no args", nil, 0, "Usage: slatrun", "", false},
		{"unknown", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`, false},
		{"version", []string{"version"}, 0, "onnxruntime", "", false},
		{"version bad lib", []string{"version", "--ort-lib", "/nope/libonnxruntime.so"}, 1, "", "", false},
		{"inspect table", []string{"inspect", model}, 0, "Relu", "", false},
		{"inspect json", []string{"inspect", "--json", model}, 0, `"ops"`, "", true},
		{"inspect corrupt", []string{"inspect", corrupt}, 1, "", "truncated or corrupt", false},
		{"inspect missing arg", []string{"inspect"}, 2, "", "want one ONNX file", false},
		{"bad flag", []string{"inspect", "--nope", model}, 2, "", "unknown flag", false},
		{"export", []string{"export", "--model", "mlp", "-o", filepath.Join(dir, "mlp.onnx")}, 0, "wrote", "", false},
		{"export unknown", []string{"export", "--model", "vgg", "-o", filepath.Join(dir, "v.onnx")}, 2, "", "unknown model", false},
		{"derive train", []string{"derive", "--model", "mlp", "--kind", "train", "--batch", "4", "-o", filepath.Join(dir, "t.onnx")}, 0, "train graph, batch 4", "", false},
		{"derive no taps", []string{"derive", "--model", "mlp", "--kind", "attack", "--taps", "none", "-o", filepath.Join(dir, "a.onnx")}, 0, "taps []", "", false},
		{"derive bad kind", []string{"derive", "--model", "mlp", "--kind", "loss", "-o", filepath.Join(dir, "x.onnx")}, 2, "", "want train, attack", false},
		{"derive bad tap", []string{"derive", "--model", "mlp", "--taps", "nope", "-o", filepath.Join(dir, "x.onnx")}, 1, "", "nope", false},
		{"train mlp", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--method", "fgsm-rs", "--epochs", "1", "--val-n", "100", "--train-n", "256", "--batch", "32", "--eps", "8/255", "--out", filepath.Join(dir, "run")}, 0, "best.onnx", "", false},
		{"train again refuses", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--epochs", "1", "--out", filepath.Join(dir, "run")}, 2, "", "--resume", false},
		{"train resume finished", []string{"train", "--resume", filepath.Join(dir, "run")}, 0, "epoch", "", false},
		{"train wrong shape", []string{"train", "--model", "mlp", "--data", "synthetic", "--epochs", "1", "--out", filepath.Join(dir, "run2")}, 1, "", "shape mismatch", false},
		{"train bad method", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--method", "sgd", "--out", filepath.Join(dir, "run3")}, 1, "", "method", false},
		{"eval", []string{"eval", "--model", filepath.Join(dir, "run", "model.onnx"), "--data", "synthetic:1x8x8", "--eps", "0.1", "--attacks", "fgsm,pgd-5,apgd-t-5", "--n", "64", "--batch", "32", "--out", filepath.Join(dir, "eval.json")}, 0, "worst case", "", false},
		{"eval bad eps", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--eps", "8"}, 2, "", "outside [0, 1]", false},
		{"eval bad attack", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--attacks", "pgd-x"}, 2, "", "unknown attack", false},
		{"train cuda here", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--provider", "cuda", "--out", filepath.Join(dir, "run4")}, 1, "", "CUDA provider unavailable", false},
		{"derive corrupt", []string{"derive", "--model", corrupt, "-o", filepath.Join(dir, "x.onnx")}, 1, "", "truncated", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "train cuda here" && ort.CheckCUDA(0) == nil {
				t.Skip("CUDA works on this machine")
			}
			var out, errb bytes.Buffer
			code := run(c.args, &out, &errb)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, c.code, errb.String())
			}
			if !strings.Contains(out.String(), c.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), c.stdout)
			}
			if !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.stderr)
			}
			if c.jsonOut {
				var v map[string]any
				if err := json.Unmarshal(out.Bytes(), &v); err != nil {
					t.Errorf("--json output is not JSON: %v", err)
				}
			}
		})
	}
}
