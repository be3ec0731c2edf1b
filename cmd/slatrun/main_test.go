package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs/contract"
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
		{"derive kl", []string{"derive", "--model", "mlp", "--kind", "kl", "--batch", "4", "-o", filepath.Join(dir, "kl.onnx")}, 0, "kl graph, batch 4", "", false},
		{"derive trades", []string{"derive", "--model", "convnet", "--width", "4", "--kind", "trades", "--trades-beta", "2", "--batch", "4", "-o", filepath.Join(dir, "trades.onnx")}, 0, "trades graph, batch 4", "", false},
		{"derive trades taps", []string{"derive", "--model", "mlp", "--kind", "trades", "--taps", "fc1", "-o", filepath.Join(dir, "x.onnx")}, 1, "", "perturbs no taps", false},
		{"derive bad kind", []string{"derive", "--model", "mlp", "--kind", "loss", "-o", filepath.Join(dir, "x.onnx")}, 2, "", "want train, attack", false},
		{"derive bad tap", []string{"derive", "--model", "mlp", "--taps", "nope", "-o", filepath.Join(dir, "x.onnx")}, 1, "", "nope", false},
		{"train mlp", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--method", "fgsm-rs", "--epochs", "1", "--val-n", "100", "--train-n", "256", "--batch", "32", "--eps", "8/255", "--out", filepath.Join(dir, "run")}, 0, "best.onnx", "", false},
		{"train again refuses", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--epochs", "1", "--out", filepath.Join(dir, "run")}, 2, "", "--resume", false},
		{"train resume finished", []string{"train", "--resume", filepath.Join(dir, "run")}, 0, "epoch", "", false},
		{"train wrong shape", []string{"train", "--model", "mlp", "--data", "synthetic", "--epochs", "1", "--out", filepath.Join(dir, "run2")}, 1, "", "shape mismatch", false},
		{"train bad method", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--method", "sgd", "--out", filepath.Join(dir, "run3")}, 1, "", "method", false},
		{"eval", []string{"eval", "--model", filepath.Join(dir, "run", "model.onnx"), "--data", "synthetic:1x8x8", "--eps", "0.1", "--attacks", "fgsm,pgd-5,apgd-t-5", "--test-n", "64", "--eval-batch", "32", "-o", filepath.Join(dir, "eval.json")}, 0, "worst case", "", false},
		{"eval cpu in capitals", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--attacks", "fgsm", "--n", "16", "--batch", "16", "--provider", "CPU"}, 0, "worst case", "", false},
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

// TestFlagAliases: every command writes its output with -o/--out, and the
// old names of renamed flags still set the new flags (hidden from --help).
func TestFlagAliases(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		args  []string // each fails with a usage error after parsing
		flag  string   // the flag the args set
		value string
	}{
		{"train -o", []string{"train", "-o", dir, "extra"}, "out", dir},
		{"sweep -o", []string{"sweep", "-o", dir, "extra"}, "out", dir},
		{"plot -o", []string{"plot", "-o", dir}, "out", dir},
		{"eval -o", []string{"eval", "-o", "e.json"}, "out", "e.json"},
		{"derive -o", []string{"derive", "-o", "d.onnx"}, "out", "d.onnx"},
		{"export --out", []string{"export", "--out", "f.onnx"}, "out", "f.onnx"},
		{"recalibrate -o", []string{"recalibrate", "-o", "r.onnx"}, "out", "r.onnx"},
		{"train --weight-decay", []string{"train", "--weight-decay", "1e-3", "extra"}, "weight-decay", "0.001"},
		{"train --wd", []string{"train", "--wd", "1e-3", "extra"}, "weight-decay", "0.001"},
		{"sweep --wd", []string{"sweep", "--wd", "2e-3", "extra"}, "weight-decay", "0.002"},
		{"eval --test-n", []string{"eval", "--test-n", "7"}, "test-n", "7"},
		{"eval --n", []string{"eval", "--n", "7"}, "test-n", "7"},
		{"eval --eval-batch", []string{"eval", "--eval-batch", "9"}, "eval-batch", "9"},
		{"eval --batch", []string{"eval", "--batch", "9"}, "eval-batch", "9"},
		{"sweep --test-n", []string{"sweep", "--test-n", "7", "--eval-batch", "9", "extra"}, "test-n", "7"},
		{"bench --provider CUDA", []string{"bench", "--provider", "CUDA", "extra"}, "provider", "cuda"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got *pflag.FlagSet
			parsing = func(fs *pflag.FlagSet) { got = fs }
			defer func() { parsing = nil }()
			var errb bytes.Buffer
			if code := run(c.args, io.Discard, &errb); code != 2 {
				t.Fatalf("exit %d, want 2 (a usage error after parsing); stderr: %s", code, errb.String())
			}
			f := got.Lookup(c.flag)
			if f == nil || !f.Changed || f.Value.String() != c.value {
				t.Fatalf("--%s = %v, want %q, set", c.flag, f, c.value)
			}
		})
	}
	for cmd, old := range map[string][]string{"train": {"wd"}, "sweep": {"wd"}, "eval": {"n", "batch"}} {
		var errb bytes.Buffer
		run([]string{cmd, "--help"}, io.Discard, &errb)
		for _, o := range old {
			if strings.Contains(errb.String(), "--"+o+" ") {
				t.Errorf("%s --help lists the old name --%s", cmd, o)
			}
		}
		if !strings.Contains(errb.String(), "-o, --out") {
			t.Errorf("%s --help lacks -o, --out", cmd)
		}
	}
}

// TestCUDACheck: every command that runs ONNX Runtime checks --provider
// cuda (in any letter case) before any work, and where CUDA cannot run it
// fails fast with one line that keeps ONNX Runtime's own words.
func TestCUDACheck(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	cudaErr := ort.CheckCUDA(0)
	if cudaErr == nil {
		t.Skip("CUDA works on this machine")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"bench", []string{"bench", "--model", "mlp", "--provider", "cuda"}},
		{"bench in capitals", []string{"bench", "--model", "mlp", "--provider", "CUDA"}},
		{"train", []string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--provider", "cuda", "-o", filepath.Join(dir, "run")}},
		{"eval", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--provider", "cuda"}},
		{"sweep", []string{"sweep", "--model", "mlp", "--data", "synthetic:1x8x8", "--eps", "0.1", "--provider", "cuda", "-o", filepath.Join(dir, "sweep")}},
		{"recalibrate", []string{"recalibrate", "--model", "mlp", "--data", "synthetic:1x8x8", "--provider", "Cuda", "-o", filepath.Join(dir, "r.onnx")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			start := time.Now()
			code := run(c.args, &out, &errb)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, errb.String())
			}
			msg := errb.String()
			if !strings.Contains(msg, "--provider cuda: "+cudaErr.Error()) {
				t.Errorf("stderr %q lacks --provider cuda: and ONNX Runtime's error %q", msg, cudaErr)
			}
			if strings.Count(msg, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", msg)
			}
			if out.Len() > 0 {
				t.Errorf("the work started: %s", out.String())
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
}

// TestRuntimeFlags: the runtime flags are declared once (runtimeFlags),
// every command that makes ONNX Runtime sessions takes all of them, and
// --provider takes any letter case.
func TestRuntimeFlags(t *testing.T) {
	ref := pflag.NewFlagSet("ref", pflag.ContinueOnError)
	var rt runtimeFlags
	rt.add(ref)
	want := []string{"ort-lib", "provider", "device", "threads", "spinning", "nchwc", "kernels"}
	if !slices.Equal(runtimeFlagNames, want) {
		t.Errorf("runtimeFlagNames = %v, want %v", runtimeFlagNames, want)
	}
	var sets []*pflag.FlagSet
	parsing = func(fs *pflag.FlagSet) { sets = append(sets, fs) }
	defer func() { parsing = nil }()
	sessions := []string{"bench", "eval", "recalibrate", "sweep", "train"}
	for name := range commands {
		sets = nil
		run([]string{name, "--help"}, io.Discard, io.Discard)
		for _, fs := range sets {
			n := 0
			for _, r := range runtimeFlagNames {
				f := fs.Lookup(r)
				if f == nil {
					continue
				}
				n++
				if f.Usage != ref.Lookup(r).Usage || f.DefValue != ref.Lookup(r).DefValue {
					t.Errorf("slatrun %s declares --%s itself (%q); use runtimeFlags", name, r, f.Usage)
				}
			}
			if slices.Contains(sessions, name) && n != len(runtimeFlagNames) {
				t.Errorf("slatrun %s has %d of the %d runtime flags", name, n, len(runtimeFlagNames))
			}
		}
	}
	for _, c := range []struct {
		provider, want string
		cuda           bool
	}{{"cpu", "cpu", false}, {"CPU", "cpu", false}, {"Cuda", "cuda", true}, {"gpu", "", false}} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var r runtimeFlags
		r.add(fs)
		err := fs.Parse([]string{"--provider", c.provider})
		if c.want == "" {
			if err == nil || !strings.Contains(err.Error(), "want one of cpu, cuda") {
				t.Errorf("--provider %s: %v, want a usage error", c.provider, err)
			}
			continue
		}
		o := r.options()
		if err != nil || r.provider != c.want || o.OnCUDA() != c.cuda {
			t.Errorf("--provider %s: %v, provider %q, OnCUDA %v", c.provider, err, r.provider, o.OnCUDA())
		}
		if !c.cuda && o.NCHWc() != (ort.Options{}).NCHWc() {
			t.Errorf("--provider %s: NCHWc %d, want %d as with the default provider", c.provider, o.NCHWc(), (ort.Options{}).NCHWc())
		}
	}
}

// TestUsageErrorsWrap: a usage error found by a value parser keeps that
// parser's error for errors.Is.
func TestUsageErrorsWrap(t *testing.T) {
	err := runEval([]string{"--model", "mlp", "--attacks", "pgd-x"}, io.Discard, io.Discard)
	if !errors.As(err, new(usageError)) || !errors.Is(err, eval.ErrAttack) {
		t.Errorf("eval --attacks pgd-x: %v (%T), want a usageError wrapping eval.ErrAttack", err, err)
	}
}

// TestDeriveTRADESKinds: slatrun derive --kind kl|trades goes through
// graphs.DeriveTRADES, and the trades graph records --trades-beta.
func TestDeriveTRADESKinds(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ kind, beta, wantBeta string }{
		{"kl", "", ""},
		{"trades", "", "6"},
		{"trades", "2.5", "2.5"},
	} {
		out := filepath.Join(dir, c.kind+c.beta+".onnx")
		args := []string{"derive", "--model", "mlp", "--kind", c.kind, "--batch", "3", "-o", out}
		if c.beta != "" {
			args = append(args, "--trades-beta", c.beta)
		}
		runOK(t, args...)
		m, err := onnx.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := m.Metadata(contract.MetaKind); got != c.kind {
			t.Errorf("--kind %s: the graph's kind is %q", c.kind, got)
		}
		if got, ok := m.Metadata(contract.MetaBeta); got != c.wantBeta || ok != (c.wantBeta != "") {
			t.Errorf("--kind %s --trades-beta %q: slatrun.beta = %q (present %v), want %q", c.kind, c.beta, got, ok, c.wantBeta)
		}
	}
}
