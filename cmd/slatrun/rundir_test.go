package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/orchestrator"
)

// tinyTrain is a "slatrun train" of a second or less into out.
func tinyTrain(out string, extra ...string) []string {
	return append([]string{"train", "--model", "mlp", "--data", "synthetic:1x8x8", "--method", "fgsm-rs", "--epochs", "1",
		"--val-n", "100", "--train-n", "256", "--batch", "32", "--threads", "1", "--out", out}, extra...)
}

// runFails runs slatrun and expects exit code code with want in stderr.
func runFails(t *testing.T, code int, want string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if got := run(args, &out, &errb); got != code || !strings.Contains(errb.String(), want) {
		t.Fatalf("slatrun %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(args, " "), got, errb.String(), code, want)
	}
	return errb.String()
}

// snapshotDir describes every file of dir: name, modification time and
// contents' hash.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fmt.Sprintf("%d %x", info.ModTime().UnixNano(), sha256.Sum256(b))
	}
	return out
}

// TestTrainOverwrite: a failing --overwrite leaves the old run as it was;
// a good one leaves nothing of it (no best.onnx after --val-n 0, no
// evaluation of the old model), and the new run resumes.
func TestTrainOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	runOK(t, tinyTrain(dir)...)
	if err := os.WriteFile(filepath.Join(dir, "eval.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := snapshotDir(t, dir)
	if _, ok := old[orchestrator.BestFile]; !ok {
		t.Fatalf("the first run has no best.onnx: %v", old)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no --overwrite", tinyTrain(dir), "already holds a run"},
		{"bad taps", tinyTrain(dir, "--overwrite", "--method", "slat", "--taps", "nope"), "nope"},
		{"data of another shape", tinyTrain(dir, "--overwrite", "--data", "synthetic:3x8x8"), "shape"},
		{"unknown data", tinyTrain(dir, "--overwrite", "--data", "nope"), "nope"},
		{"with --resume", []string{"train", "--resume", dir, "--overwrite"}, "pass one of them"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(c.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want a failure mentioning %q", code, errb.String(), c.want)
			}
			if now := snapshotDir(t, dir); !reflect.DeepEqual(now, old) {
				t.Errorf("the old run changed:\n%v\nwas\n%v", now, old)
			}
		})
	}

	runOK(t, tinyTrain(dir, "--overwrite", "--val-n", "0")...)
	var names []string
	for n := range snapshotDir(t, dir) {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{argsFile, orchestrator.ConfigFile, orchestrator.MetricsFile, orchestrator.ModelFile, orchestrator.StateFile}; !slices.Equal(names, want) {
		t.Errorf("after --overwrite --val-n 0: %v, want %v", names, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, argsFile))
	var saved []string
	if err := json.Unmarshal(b, &saved); err != nil || slices.Contains(saved, "--overwrite") || !slices.Contains(saved, "0") {
		t.Errorf("cli-args.json %s (%v): want the new command line without --overwrite", b, err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, orchestrator.ConfigFile))
	if !bytes.Contains(b, []byte(`"spec": "synthetic:1x8x8"`)) || !bytes.Contains(b, []byte(`"holdout_n": 0`)) {
		t.Errorf("config.json is not the new run's:\n%s", b)
	}
	runOK(t, "train", "--resume", dir)
}

// TestTrainLockedDirectory: while another holder has a run directory's
// lock, train and train --resume fail naming it and touch nothing.
func TestTrainLockedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	runOK(t, tinyTrain(dir)...)
	lock, err := orchestrator.LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	before := snapshotDir(t, dir)
	holder := fmt.Sprintf("locked by pid %d on host ", os.Getpid())
	runFails(t, 1, holder, tinyTrain(dir, "--overwrite")...)
	runFails(t, 1, holder, "train", "--resume", dir)
	if after := snapshotDir(t, dir); !reflect.DeepEqual(before, after) {
		t.Errorf("the locked run changed:\n%v\nwas\n%v", after, before)
	}
	lock.Unlock()
	runOK(t, "train", "--resume", dir)
}

// TestTrainResumeOtherForward resumes a run whose forward ONNX file was
// changed since (Relu → Tanh: the same parameters, another model): refused,
// naming forward_sha256.
func TestTrainResumeOtherForward(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "mlp.onnx")
	runOK(t, "export", "--model", "mlp", "-o", model)
	dir := filepath.Join(root, "run")
	args := tinyTrain(dir)
	args[2] = model // --model
	runOK(t, args...)
	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "Relu" {
			n.OpType = proto.String("Tanh")
		}
	}
	if err := m.Save(model); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	msg := runFails(t, 1, "forward_sha256 was", "train", "--resume", dir)
	if !strings.Contains(msg, "forward graph differs") {
		t.Errorf("stderr %q does not say that the forward graph differs", msg)
	}
	if after := snapshotDir(t, dir); !reflect.DeepEqual(before, after) {
		t.Error("a refused resume changed the run")
	}
}

// TestTrainRefusesLeftovers: the files of a run that never checkpointed
// are not resumable, and a new run goes beside them only with --overwrite.
func TestTrainRefusesLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{orchestrator.ConfigFile, orchestrator.MetricsFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runFails(t, 2, "cannot be resumed (metrics.jsonl, config.json, but no state.bin)", tinyTrain(dir)...)
	runOK(t, tinyTrain(dir, "--overwrite")...)
	if b, _ := os.ReadFile(filepath.Join(dir, orchestrator.MetricsFile)); bytes.Contains(b, []byte("old")) {
		t.Errorf("metrics.jsonl keeps the old run's lines:\n%s", b)
	}
}

// writeIDX writes an MNIST-format directory of n 8×8 training images
// (raw IDX files) whose pixels and labels come from fill.
func writeIDX(t *testing.T, dir string, n int, fill func(i int) (pixel, label byte)) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	be := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	images, labels := be(0x803, uint32(n), 8, 8), be(0x801, uint32(n))
	for i := range n {
		p, l := fill(i)
		images = append(images, bytes.Repeat([]byte{p}, 64)...)
		labels = append(labels, l)
	}
	for name, b := range map[string][]byte{"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte": labels} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTrainResumeOtherData resumes a run with --data pointing at other data
// of the same size and shape: refused, naming the data fingerprint; the
// same data under another path resumes.
func TestTrainResumeOtherData(t *testing.T) {
	root := t.TempDir()
	const n = 400
	orig := func(i int) (byte, byte) { return byte(i * 37), byte(i % 10) }
	writeIDX(t, filepath.Join(root, "a"), n, orig)
	writeIDX(t, filepath.Join(root, "copy"), n, orig)
	writeIDX(t, filepath.Join(root, "pixels"), n, func(i int) (byte, byte) { return byte(i*37 + 1), byte(i % 10) })
	writeIDX(t, filepath.Join(root, "labels"), n, func(i int) (byte, byte) { return byte(i * 37), byte((i + 1) % 10) })
	dir := filepath.Join(root, "run")
	args := tinyTrain(dir)
	args[4] = "mnist:" + filepath.Join(root, "a") // --data
	runOK(t, args...)
	before := snapshotDir(t, dir)
	for _, c := range []struct{ data, want string }{
		{"pixels", "data.train.sha256 was"},
		{"labels", "data.train.sha256 was"},
	} {
		t.Run(c.data, func(t *testing.T) {
			msg := runFails(t, 1, c.want, "train", "--resume", dir, "--data", "mnist:"+filepath.Join(root, c.data))
			if !strings.Contains(msg, "data fingerprint differs") {
				t.Errorf("stderr %q does not name the data fingerprint", msg)
			}
			if after := snapshotDir(t, dir); !reflect.DeepEqual(before, after) {
				t.Error("a refused resume changed the run")
			}
		})
	}
	runOK(t, "train", "--resume", dir, "--data", "mnist:"+filepath.Join(root, "copy"))
}

// TestTrainTRADES trains with --method trades and its flags, and finds
// them in config.json; a resume of the finished run keeps them.
func TestTrainTRADES(t *testing.T) {
	dir := t.TempDir()
	args := tinyTrain(dir, "--method", "trades", "--trades-beta", "3", "--trades-steps", "2", "--input-step", "0.02", "--val-n", "0")
	runOK(t, args...)
	b, err := os.ReadFile(filepath.Join(dir, orchestrator.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"method": "trades"`, `"trades_beta": 3`, `"trades_steps": 2`, `"input_step": 0.02`, `"kl": "`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, b)
		}
	}
	runOK(t, "train", "--resume", dir)
	runFails(t, 2, "trades-steps", tinyTrain(t.TempDir(), "--method", "trades", "--trades-steps", "-1")...)
}

// TestTrainGradAlign trains with --method gradalign and its flag, finds
// them and the hvp graph in config.json, and resumes the finished run.
func TestTrainGradAlign(t *testing.T) {
	dir := t.TempDir()
	args := tinyTrain(dir, "--method", "gradalign", "--gradalign-lambda", "0.5", "--val-n", "0")
	runOK(t, args...)
	b, err := os.ReadFile(filepath.Join(dir, orchestrator.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"method": "gradalign"`, `"gradalign_lambda": 0.5`, `"hvp": "`, `"attack": "`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, b)
		}
	}
	runOK(t, "train", "--resume", dir)
	runFails(t, 2, "gradalign-lambda", tinyTrain(t.TempDir(), "--method", "gradalign", "--gradalign-lambda", "-1")...)
}
