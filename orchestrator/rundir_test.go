package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/dataset"
)

// trainRun trains cfg to its end (or to the error of a hook) and closes the
// Trainer, releasing the run directory.
func trainRun(t *testing.T, cfg Config) error {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, err = tr.Run(context.Background())
	return err
}

// dirState describes every entry of dir: name, mode, modification time and
// a hash of the contents.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = fmt.Sprintf("%v %s %x", fi.Mode(), fi.ModTime().Format("15:04:05.000000000"), sum[:8])
	}
	return out
}

func TestLockRun(t *testing.T) {
	dir := t.TempDir()
	l, err := LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	var h lockHolder
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if err := json.Unmarshal(b, &h); err != nil || h.PID != os.Getpid() || h.Host != host || h.Since == "" {
		t.Errorf("lock file %q (%v), want this process's pid %d and host %s", b, err, os.Getpid(), host)
	}
	_, err = LockRun(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d on host %s since ", os.Getpid(), host)) {
		t.Errorf("second lock: %v, want ErrLocked naming pid %d on host %s", err, os.Getpid(), host)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file is still there after Unlock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	l, err = LockRun(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l.Unlock()
	if _, err := LockRun(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock of a missing directory: %v", err)
	}
}

// TestLockHelperProcess is not a test: it is the process that
// TestLockAcrossProcesses starts to hold a lock.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("SLATRUN_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	if _, err := LockRun(dir); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("locked", os.Getpid())
	bufio.NewReader(os.Stdin).ReadString('\n') // hold it until killed
	os.Exit(0)
}

// TestLockAcrossProcesses holds a run directory's lock in another process:
// LockRun here fails naming that process, and once it is killed (no Unlock)
// the lock is free again.
func TestLockAcrossProcesses(t *testing.T) {
	if staleLockHint != "" {
		t.Skip("no flock on this system: a killed holder leaves its lock")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "SLATRUN_TEST_LOCK_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if want := fmt.Sprintf("locked %d\n", cmd.Process.Pid); err != nil || line != want {
		t.Fatalf("helper said %q (%v), want %q", line, err, want)
	}
	_, err = LockRun(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d on host ", cmd.Process.Pid)) {
		t.Fatalf("lock held by the helper: %v, want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	t.Log(err)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	l, err := LockRun(dir)
	if err != nil {
		t.Fatalf("lock after its holder was killed: %v", err)
	}
	l.Unlock()
}

// TestTwoTrainersOneDirectory starts a second Trainer on the directory of a
// running one: it fails naming this process, whatever it was asked to do,
// and the first run finishes unharmed.
func TestTwoTrainersOneDirectory(t *testing.T) {
	cfg := testConfig(t, "mlp", "standard")
	cfg.Epochs = 1
	cfg.Out = t.TempDir()
	first := newTrainer(t, cfg)
	before := dirState(t, cfg.Out)
	for _, c := range []struct {
		name string
		edit func(*Config)
	}{
		{"fresh", func(*Config) {}},
		{"overwrite", func(c *Config) { c.Overwrite = true }},
		{"resume", func(c *Config) { c.Resume = true }},
	} {
		second := cfg
		c.edit(&second)
		tr, err := New(second)
		if err == nil {
			tr.Close()
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("locked by pid %d on host", os.Getpid())) {
			t.Errorf("%s: second trainer: %v, want ErrLocked naming pid %d", c.name, err, os.Getpid())
		}
	}
	if after := dirState(t, cfg.Out); !reflect.DeepEqual(before, after) {
		t.Errorf("the second trainers changed the directory:\n%v\nwas\n%v", after, before)
	}
	if _, err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close()
	resume := cfg
	resume.Resume = true
	if err := trainRun(t, resume); err != nil {
		t.Errorf("resume once the first trainer closed: %v", err)
	}
}

// TestResumeChecksProvenance resumes a run with another forward graph of the
// same parameter shapes, and with other data of the same size: both are
// refused, naming what differs.
func TestResumeChecksProvenance(t *testing.T) {
	cfg := testConfig(t, "mlp", "fgsm")
	cfg.Epochs = 1
	cfg.Out = t.TempDir()
	cfg.DataSpec = "synthetic:1x8x8"
	if err := trainRun(t, cfg); err != nil {
		t.Fatal(err)
	}
	// config.json records what the run trained on.
	var conf struct {
		Forward string `json:"forward_sha256"`
		Data    struct {
			Spec    string          `json:"spec"`
			Train   setFingerprint  `json:"train"`
			Holdout *setFingerprint `json:"holdout"`
		} `json:"data"`
	}
	b, _ := os.ReadFile(filepath.Join(cfg.Out, ConfigFile))
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	fb, _ := cfg.Forward.Encode()
	sum := sha256.Sum256(fb)
	if want := fingerprintSet(cfg.Train); conf.Forward != hex.EncodeToString(sum[:]) || conf.Data.Spec != "synthetic:1x8x8" ||
		conf.Data.Train != want || conf.Data.Train.N != 256 || conf.Data.Train.Shape != [3]int{1, 8, 8} ||
		conf.Data.Holdout == nil || conf.Data.Holdout.N != 64 {
		t.Errorf("config.json's provenance: %+v", conf)
	}

	// The mlp with Tanh for Relu: parameters of the same shapes, another
	// function.
	tanh := cfg.Forward.Clone()
	swapped := 0
	for _, n := range tanh.Graph().GetNode() {
		if n.GetOpType() == "Relu" {
			n.OpType = proto.String("Tanh")
			swapped++
		}
	}
	if swapped == 0 {
		t.Fatal("the mlp has no Relu to swap")
	}
	relabeled := dataset.Synthetic(256, 1, 8, 8, testClasses, 1)
	for i := range relabeled.Y {
		if relabeled.Y[i] != relabeled.Y[0] {
			relabeled.Y[0], relabeled.Y[i] = relabeled.Y[i], relabeled.Y[0]
			break
		}
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want []string // in the error; none: the resume works
	}{
		{"same model and data", func(*Config) {}, nil},
		{"same data under another spec", func(c *Config) { c.DataSpec = "synthetic:1x8x8 moved" }, nil},
		{"forward graph with other ops, same shapes", func(c *Config) { c.Forward = tanh },
			[]string{"forward_sha256 was", "forward graph differs"}},
		{"other training data of the same size", func(c *Config) { c.Train = dataset.Synthetic(256, 1, 8, 8, testClasses, 7) },
			[]string{"data fingerprint differs", "data.train.sha256 was"}},
		{"two labels swapped", func(c *Config) { c.Train = relabeled },
			[]string{"data fingerprint differs", "data.train.sha256 was"}},
		{"other held-out data of the same size", func(c *Config) { c.Holdout = dataset.Synthetic(64, 1, 8, 8, testClasses, 9) },
			[]string{"data fingerprint differs", "data.holdout.sha256 was"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resume := cfg
			resume.Resume = true
			c.edit(&resume)
			before := dirState(t, cfg.Out)
			tr, err := New(resume)
			if err == nil {
				tr.Close()
			}
			if c.want == nil {
				if err != nil {
					t.Fatalf("resume: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrState) {
				t.Fatalf("resume: %v, want ErrState", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if !reflect.DeepEqual(before, dirState(t, cfg.Out)) {
				t.Error("a refused resume changed the run directory")
			}
			t.Log(err)
		})
	}
}

// TestResumeVersion1State resumes from a state.bin of format version 1,
// which has no provenance: the run goes on, the log says that nothing could
// be checked, and the next checkpoint records the provenance.
func TestResumeVersion1State(t *testing.T) {
	cfg := testConfig(t, "mlp", "fgsm-rs")
	cfg.Epochs = 2
	cfg.Out = t.TempDir()
	stop := errors.New("stop after epoch 1")
	first := cfg
	first.Hooks.OnEpoch = func(EpochMetrics) error { return stop }
	if err := trainRun(t, first); !errors.Is(err, stop) {
		t.Fatalf("first run: %v", err)
	}
	path := filepath.Join(cfg.Out, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, toVersion1(t, b), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	resume := cfg
	resume.Resume, resume.Logger = true, &log
	resume.Forward = cfg.Forward.Clone() // a changed graph could not be told either
	if err := trainRun(t, resume); err != nil {
		t.Fatalf("resume from a version-1 state: %v", err)
	}
	if !strings.Contains(log.String(), "the forward graph and the data could not be checked") {
		t.Errorf("the log does not say that provenance was not checked:\n%s", log.String())
	}
	b, _ = os.ReadFile(path)
	s, err := decodeState(b, path)
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(b[len(stateMagic):]); v != stateVersion || len(s.provenance) == 0 || s.pass != 2 {
		t.Errorf("after the resumed run: state version %d, provenance %q, pass %d", v, s.provenance, s.pass)
	}
	// Now recorded, the data is checked.
	again := cfg
	again.Resume = true
	again.Train = dataset.Synthetic(256, 1, 8, 8, testClasses, 5)
	if tr, err := New(again); err == nil || !strings.Contains(err.Error(), "data fingerprint") {
		if err == nil {
			tr.Close()
		}
		t.Errorf("resume with other data after the upgrade: %v", err)
	}
}

// oldRun trains a run with a probe (so best.onnx) into a fresh directory
// and adds what tools put beside it: evaluations, the command line, a note
// of the user's and the leftover of a torn write.
func oldRun(t *testing.T) (Config, string) {
	cfg := testConfig(t, "mlp", "fgsm")
	cfg.Epochs = 1
	cfg.Out = t.TempDir()
	if err := trainRun(t, cfg); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"eval.json": "{}", "eval-final.json": "{}", "eval-best.json": "{}", ArgsFile: "[]",
		"notes.txt": "mine", "." + ModelFile + ".tmp123": "torn",
	} {
		if err := os.WriteFile(filepath.Join(cfg.Out, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, BestFile)); err != nil {
		t.Fatal(err)
	}
	return cfg, cfg.Out
}

// TestOverwrite replaces a run that has best.onnx with one without a probe:
// none of the old run's files is left, the user's file is.
func TestOverwrite(t *testing.T) {
	cfg, dir := oldRun(t)
	fresh := cfg
	fresh.Overwrite = true
	fresh.Holdout = nil
	fresh.Method = "standard"
	var log bytes.Buffer
	fresh.Logger = &log
	tr, err := New(fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	names := func() []string { return slices.Sorted(maps.Keys(dirState(t, dir))) }
	// After New: the new config.json, the lock, the user's note; nothing old.
	if got, want := names(), []string{ConfigFile, LockFile, "notes.txt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after New: %v, want %v", got, want)
	}
	if !strings.Contains(log.String(), "removed the earlier run's "+StateFile+", ") {
		t.Errorf("log: %s", log.String())
	}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if got, want := names(), []string{ConfigFile, MetricsFile, ModelFile, "notes.txt", StateFile}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the new run: %v, want %v (no %s)", got, want, BestFile)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if !bytes.Contains(conf, []byte(`"method": "standard"`)) {
		t.Errorf("config.json is not the new run's:\n%s", conf)
	}
}

// TestRefusedStartLeavesOldRun starts runs in a directory that holds one:
// without Overwrite, and with Overwrite but inputs that fail, each is
// refused and the old run is untouched (names, contents and times).
func TestRefusedStartLeavesOldRun(t *testing.T) {
	cfg, dir := oldRun(t)
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no overwrite", func(*Config) {}, "holds " + StateFile},
		{"overwrite with bad taps", func(c *Config) { c.Overwrite, c.Method, c.Taps = true, "slat", []string{"nope"} }, "nope"},
		{"overwrite with labels the model lacks", func(c *Config) {
			c.Overwrite = true
			c.Train = dataset.Synthetic(256, 1, 8, 8, 2*testClasses, 1)
		}, "outside the model's"},
		{"overwrite with images of another shape", func(c *Config) {
			c.Overwrite = true
			c.Train, c.Holdout = dataset.Synthetic(256, 1, 9, 9, testClasses, 1), nil
		}, "shape"},
		{"overwrite with invalid settings", func(c *Config) { c.Overwrite, c.LR = true, -1 }, "LR"},
		{"overwrite and resume", func(c *Config) { c.Overwrite, c.Resume = true, true }, "Overwrite needs Out and no Resume"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := dirState(t, dir)
			run := cfg
			c.edit(&run)
			tr, err := New(run)
			if err == nil {
				tr.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
			if after := dirState(t, dir); !reflect.DeepEqual(before, after) {
				t.Errorf("the old run changed:\n%v\nwas\n%v", after, before)
			}
		})
	}
}

// TestNewRemovesDirItMade checks that a New that fails leaves no empty run
// directory behind when it made it.
func TestNewRemovesDirItMade(t *testing.T) {
	cfg := testConfig(t, "mlp", "slat")
	cfg.Taps = []string{"nope"}
	cfg.Out = filepath.Join(t.TempDir(), "run")
	if _, err := New(cfg); err == nil {
		t.Fatal("New succeeded with a tap the model lacks")
	}
	if _, err := os.Stat(cfg.Out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run directory New made is still there: %v", err)
	}
}

func TestRunFiles(t *testing.T) {
	for _, c := range []struct {
		name      string
		run, temp bool
	}{
		{StateFile, true, false}, {ModelFile, true, false}, {BestFile, true, false}, {ConfigFile, true, false},
		{MetricsFile, true, false}, {ArgsFile, true, false}, {"eval.json", true, false}, {"eval-best.json", true, false},
		{".state.bin.tmp4711", false, true}, {".eval-final.json.tmp1", false, true},
		{"evaluation.json", false, false}, {"eval-final.txt", false, false}, {"notes.txt", false, false},
		{LockFile, false, false}, {"cell.json", false, false}, {"train.log", false, false}, {".notes.tmp1", false, false},
	} {
		if got := isRunFile(c.name); got != c.run {
			t.Errorf("isRunFile(%q) = %v", c.name, got)
		}
		if got := isRunTemp(c.name); got != c.temp {
			t.Errorf("isRunTemp(%q) = %v", c.name, got)
		}
	}
	// clearRun removes state.bin first and config.json last.
	dir := t.TempDir()
	for _, n := range []string{ConfigFile, "eval-best.json", ModelFile, StateFile, ".model.onnx.tmp1", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := runFiles(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0] != StateFile || got[len(got)-1] != ConfigFile {
		t.Errorf("removal order %v: want %s first, %s last, and not notes.txt", got, StateFile, ConfigFile)
	}
}

// TestResumeFinishedRun resumes a run that had trained all its epochs: it
// trains nothing, and the log says so rather than "epoch 2/1".
func TestResumeFinishedRun(t *testing.T) {
	cfg := testConfig(t, "mlp", "fgsm")
	cfg.Epochs = 1
	cfg.Out = t.TempDir()
	if err := trainRun(t, cfg); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(cfg.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	again := cfg
	again.Resume, again.Logger = true, &log
	if err := trainRun(t, again); err != nil {
		t.Fatalf("resume of a finished run: %v", err)
	}
	if !strings.Contains(log.String(), "nothing to train") || strings.Contains(log.String(), "epoch 2/1") {
		t.Errorf("log of the resumed finished run:\n%s", log.String())
	}
	after, _ := os.ReadFile(filepath.Join(cfg.Out, ModelFile))
	if !bytes.Equal(before, after) {
		t.Error("resuming a finished run changed model.onnx")
	}
}
