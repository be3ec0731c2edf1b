package main

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// TestEveryNumericFlagBounded: every int or float flag of every command
// refuses values outside its range when parsed (limit); only the uint64
// seeds, for which every value is valid, go without.
func TestEveryNumericFlagBounded(t *testing.T) {
	var sets []*pflag.FlagSet
	parsing = func(fs *pflag.FlagSet) { sets = append(sets, fs) }
	defer func() { parsing = nil }()
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		sets = nil
		if code := run([]string{name, "--help"}, io.Discard, io.Discard); code != 0 {
			t.Errorf("%s --help: exit %d", name, code)
		}
		if len(sets) == 0 {
			t.Errorf("%s: parsed no flags through parse", name)
		}
		for _, fs := range sets {
			fs.VisitAll(func(f *pflag.Flag) {
				switch f.Value.Type() {
				case "int", "int32", "int64", "float32", "float64", "number":
					if _, ok := f.Value.(*boundedValue); !ok {
						t.Errorf("slatrun %s --%s (%s) has no range: give it one with limit(fs, ...)", name, f.Name, f.Value.Type())
					}
				}
			})
		}
	}
}

// TestFlagBounds parses values at and beyond the edges of the ranges.
func TestFlagBounds(t *testing.T) {
	newTrain := func() *pflag.FlagSet {
		fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var tf trainFlags
		tf.add(fs)
		return fs
	}
	for _, tc := range []struct {
		args []string
		want string // "" for accepted, else text of the error
	}{
		{[]string{"--threads", "-1"}, `invalid argument "-1" for "--threads" flag: want a value ≥ 0`},
		{[]string{"--threads", "0"}, ""},
		{[]string{"--device", "-2"}, `"--device" flag: want a value ≥ 0`},
		{[]string{"--train-n", "-5"}, `invalid argument "-5" for "--train-n" flag: want a value ≥ 0`},
		{[]string{"--train-n", "0"}, ""},
		{[]string{"--val-n", "-1"}, `"--val-n" flag: want a value ≥ 0`},
		{[]string{"--epochs", "0"}, `"--epochs" flag: want a value ≥ 1`},
		{[]string{"--batch", "-128"}, `"--batch" flag: want a value ≥ 1`},
		{[]string{"--probe-steps", "0"}, `"--probe-steps" flag: want a value ≥ 1`},
		{[]string{"--log-every", "-1"}, `"--log-every" flag: want a value ≥ 0`},
		{[]string{"--lr", "0"}, `"--lr" flag: want a value > 0`},
		{[]string{"--lr", "NaN"}, `"--lr" flag: want a value > 0`},
		{[]string{"--lr", "1/1000"}, ""},
		{[]string{"--momentum", "1"}, `"--momentum" flag: 1 is outside [0, 1)`},
		{[]string{"--momentum", "0"}, ""},
		{[]string{"--weight-decay", "-5e-4"}, `"--weight-decay" flag: want a value ≥ 0`},
		{[]string{"--wd", "-5e-4"}, `"--weight-decay" flag: want a value ≥ 0`}, // the old name
		{[]string{"--eps", "8"}, `"--eps" flag: 8 is outside [0, 1] (pixel units; 8/255 is written 8/255)`},
		{[]string{"--eps", "-0.1"}, `"--eps" flag: -0.1 is outside [0, 1]`},
		{[]string{"--eps", "8/255"}, ""},
		{[]string{"--eps", "1"}, ""},
		{[]string{"--input-step", "-0.5"}, `"--input-step" flag: want a value ≥ 0, or auto`},
		{[]string{"--input-step", "auto"}, ""},
		{[]string{"--latent-radius", "0"}, ""},
		{[]string{"--latent-eta", "-1"}, `"--latent-eta" flag: want a value ≥ 0, or auto`},
		{[]string{"--width", "-3"}, `"--width" flag: want a value ≥ 0`},
		{[]string{"--classes", "-10"}, `"--classes" flag: want a value ≥ 0`},
		{[]string{"--threads", "x"}, `invalid argument "x" for "--threads" flag`},
	} {
		err := newTrain().Parse(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want no error", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	// A refused value leaves the flag as it was.
	fs := newTrain()
	fs.Parse([]string{"--train-n", "7", "--train-n", "-7"})
	if got := fs.Lookup("train-n").Value.String(); got != "7" {
		t.Errorf("--train-n after a refused -7: %s, want 7", got)
	}
}

// nanModel writes the mlp zoo model with a NaN in its first float
// initializer and returns its path.
func nanModel(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "mlp.onnx")
	if code := run([]string{"export", "--model", "mlp", "-o", p}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("export: exit %d", code)
	}
	m, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range m.Graph().GetInitializer() {
		if onnx.DType(init.GetDataType()) != onnx.Float {
			continue
		}
		v, err := onnx.TensorFloats(init)
		if err != nil {
			t.Fatal(err)
		}
		v[len(v)/2] = float32(math.NaN())
		nt := onnx.FloatTensor(init.GetName(), init.GetDims(), v)
		init.RawData, init.FloatData = nt.RawData, nil
		p = filepath.Join(dir, "nan.onnx")
		if err := m.Save(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Fatal("the mlp has no float initializer")
	return ""
}

func TestCheckFinite(t *testing.T) {
	dir := t.TempDir()
	p := nanModel(t, dir)
	m, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	inf := onnx.FloatTensor("inf", []int64{2}, []float32{1, float32(math.Inf(-1))})
	plain := onnx.FloatTensor("fine", []int64{2}, []float32{1, 2})
	for _, tc := range []struct {
		name  string
		inits []*onnxpb.TensorProto
		want  string
	}{
		{"nan", m.Graph().GetInitializer(), "holds NaN (element"},
		{"inf", []*onnxpb.TensorProto{plain, inf}, `initializer "inf" holds -Inf (element 1 of 2)`},
		{"finite", []*onnxpb.TensorProto{plain}, ""},
		{"int64s are not looked at", []*onnxpb.TensorProto{onnx.Int64Tensor("shape", []int64{1}, []int64{-1})}, ""},
	} {
		mm := m.Clone()
		mm.Graph().Initializer = tc.inits
		err := checkFinite(mm, "m.onnx")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "model m.onnx: ")):
			t.Errorf("%s: error %v, want one naming m.onnx and containing %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "x.json"), ""},
		{file, ""}, // an existing file is replaced
		{filepath.Join(dir, "missing", "x.json"), "--out " + filepath.Join(dir, "missing", "x.json") + ": stat " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{filepath.Join(file, "x.json"), "is not a directory"},
		{dir, "is a directory; give a file name"},
	} {
		err := checkOutput("out", tc.path, tc.path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.path, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("checkOutput left files behind: %v", entries)
	}
	// A write that fails names the file asked for, not the temporary one.
	missing := filepath.Join(dir, "missing", "x.json")
	if err := writeOutput(missing, []byte("{}")); err == nil || err.Error() != "open "+missing+": no such file or directory" {
		t.Errorf("writeOutput: %v, want open %s: no such file or directory", err, missing)
	}
	if err := writeOutput(file, []byte("{}")); err != nil {
		t.Errorf("writeOutput: %v", err)
	}
}

// TestEarlyErrors: mistakes in the command line are reported before any
// work, with exit status 2, naming the flag; a broken model is refused
// before it is evaluated.
func TestEarlyErrors(t *testing.T) {
	dir := t.TempDir()
	nan := nanModel(t, dir)
	missing := filepath.Join(dir, "missing")
	runDir := filepath.Join(dir, "oldrun") // a run directory: it has a state.bin
	if err := os.MkdirAll(runDir, 0o755); err != nil || os.WriteFile(filepath.Join(runDir, "state.bin"), nil, 0o644) != nil {
		t.Fatal("cannot make the run directory")
	}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"recalibrate -o over a run's model.onnx", []string{"recalibrate", "--model", "mlp", "-o", filepath.Join(runDir, "model.onnx")},
			2, "is a checkpoint of the run in " + runDir},
		{"eval --out in a missing directory", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--out", filepath.Join(missing, "x.json")},
			2, "eval: --out " + filepath.Join(missing, "x.json") + ": stat " + missing + ": no such file or directory"},
		{"eval --out a directory", []string{"eval", "--model", "mlp", "--data", "synthetic:1x8x8", "--out", dir}, 2, "is a directory"},
		{"eval NaN weights", []string{"eval", "--model", nan, "--data", "synthetic:1x8x8", "--n", "8", "--batch", "8"}, 1,
			"eval: model " + nan + ": initializer"},
		{"eval --threads -1", []string{"eval", "--model", "mlp", "--threads", "-1"}, 2, `"--threads" flag: want a value ≥ 0`},
		{"eval --test-n -1", []string{"eval", "--model", "mlp", "--test-n", "-1"}, 2, `"--test-n" flag: want a value ≥ 0`},
		{"eval --n -1 (old name)", []string{"eval", "--model", "mlp", "--n", "-1"}, 2, `"--test-n" flag: want a value ≥ 0`},
		{"eval --eval-batch 0", []string{"eval", "--model", "mlp", "--eval-batch", "0"}, 2, `"--eval-batch" flag: want a value ≥ 1`},
		{"eval --batch 0 (old name)", []string{"eval", "--model", "mlp", "--batch", "0"}, 2, `"--eval-batch" flag: want a value ≥ 1`},
		{"eval --eps 8", []string{"eval", "--model", "mlp", "--eps", "8"}, 2, "8 is outside [0, 1]"},
		{"eval stray argument", []string{"eval", "--model", "mlp", "model.onnx"}, 2, `unexpected arguments ["model.onnx"]`},
		{"eval huge synthetic", []string{"eval", "--model", "mlp", "--data", "synthetic:4096x4096x4096"}, 1, "4096 channels; synthetic data has at most 16"},
		{"train --train-n -5", []string{"train", "--model", "mlp", "--train-n", "-5", "--out", filepath.Join(dir, "run")}, 2, `"--train-n" flag: want a value ≥ 0`},
		{"train --threads -1", []string{"train", "--model", "mlp", "--threads", "-1", "--out", filepath.Join(dir, "run")}, 2, `"--threads" flag: want a value ≥ 0`},
		{"train huge synthetic", []string{"train", "--model", "mlp", "--data", "synthetic:1x1024x1024", "--out", filepath.Join(dir, "run")}, 1, "synthetic data takes at most 1073741824"},
		{"bench --profile in a missing directory", []string{"bench", "--model", "mlp", "--profile", filepath.Join(missing, "p")}, 2,
			"bench: --profile " + filepath.Join(missing, "p") + ": stat " + missing + ": no such file or directory"},
		{"bench --warmup -1", []string{"bench", "--model", "mlp", "--warmup", "-1"}, 2, `"--warmup" flag: want a value ≥ 0`},
		{"bench --eps -1", []string{"bench", "--model", "mlp", "--eps", "-1"}, 2, `"--eps" flag: -1 is outside [0, 1]`},
		{"bench batch too large", []string{"bench", "--model", "mlp", "--batch", "100000000"}, 2, "bytes of float32, more than the 1073741824"},
		{"bench NaN weights", []string{"bench", "--model", nan}, 1, "bench: model " + nan + ": initializer"},
		{"derive --batch 0", []string{"derive", "--model", "mlp", "--batch", "0", "-o", filepath.Join(dir, "d.onnx")}, 2, `"--batch" flag: want a value ≥ 1`},
		{"export --width -3", []string{"export", "--model", "mlp", "--width", "-3", "-o", filepath.Join(dir, "e.onnx")}, 2, `"--width" flag: want a value ≥ 0`},
		{"sweep --workers 0", []string{"sweep", "--model", "mlp", "--eps", "0.1", "--workers", "0"}, 2, `"--workers" flag: want a value ≥ 1`},
		{"sweep --collapse-share 2", []string{"sweep", "--model", "mlp", "--eps", "0.1", "--collapse-share", "2"}, 2, "2 is outside [0, 1]"},
		{"sweep --train-n -5", []string{"sweep", "--model", "mlp", "--eps", "0.1", "--train-n", "-5"}, 2, `"--train-n" flag: want a value ≥ 0`},
		{"sweep --grid train-n=-5", []string{"sweep", "--model", "mlp", "--eps", "0.1", "--grid", "train-n=100,-5"}, 2, `"--train-n" flag: want a value ≥ 0`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(c.args, &out, &errb)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.stderr)
			}
			if strings.Contains(out.String(), "slatrun eval:") || strings.Contains(out.String(), "slatrun train:") {
				t.Errorf("the work started: %s", out.String())
			}
			if _, err := os.Stat(missing); err == nil {
				t.Errorf("%s was created", missing)
			}
		})
	}
}

// TestBenchProfile: --profile writes one profile per session and says so.
func TestBenchProfile(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "prof")
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--model", "mlp", "--methods", "standard,fgsm-rs", "--batch", "8", "--steps", "1", "--warmup", "0",
		"--threads", "1", "--profile", prefix, "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, m := range []string{"standard", "fgsm-rs"} {
		files, _ := filepath.Glob(prefix + "-" + m + "-*.json")
		if len(files) == 0 {
			t.Errorf("no profile of %s", m)
		}
		for _, f := range files {
			if !strings.Contains(errb.String(), f) {
				t.Errorf("stderr %q does not name %s", errb.String(), f)
			}
		}
	}
	// Nothing new: profilesSince says which method has none.
	before := profileFiles(prefix, []string{"standard", "slat"})
	if _, err := profilesSince(prefix, []string{"standard", "slat"}, before); err == nil || !strings.Contains(err.Error(), "no profile for standard, slat") {
		t.Errorf("profilesSince with nothing new: %v", err)
	}
}
