package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/sweep"
)

// tinySweep is the flags of a sweep that takes a second or two: the zoo mlp
// on synthetic 1×8×8 data, 2 methods (one with a SLAT-only axis) × 2 ε × 2
// seeds, one epoch each.
func tinySweep(out string, extra ...string) []string {
	args := []string{"sweep", "--model", "mlp", "--data", "synthetic:1x8x8", "--methods", "slat,fgsm", "--eps", "0.05,8/255",
		"--seeds", "0,1", "--epochs", "1", "--train-n", "256", "--val-n", "100", "--batch", "32", "--log-every", "2",
		"--grid", "latent-radius=auto,0.1", "--attacks", "pgd-5", "--test-n", "64", "--eval-batch", "32", "--threads", "1", "--out", out}
	return append(args, extra...)
}

// TestSweepHelperProcess is not a test: it is the slatrun process the
// sharding test starts (with SLATRUN_SWEEP_ARGS set).
func TestSweepHelperProcess(t *testing.T) {
	raw := os.Getenv("SLATRUN_SWEEP_ARGS")
	if raw == "" {
		t.Skip("helper process only")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Exit(3)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("slatrun %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

func TestSweepCLI(t *testing.T) {
	root := t.TempDir()
	one := filepath.Join(root, "one")
	out := runOK(t, tinySweep(one, "--workers", "2")...)
	// slat: 2 ε × 2 radii × 2 seeds; fgsm: 2 ε × 2 seeds.
	if !strings.Contains(out, "12 cells") || !strings.Contains(out, "12 trained") || !strings.Contains(out, "report.md") {
		t.Fatalf("first run:\n%s", out)
	}
	for _, f := range []string{"report.md", "report.json", "plots/robust-vs-eps.png", "plots/probe.png", "plots/tap-grads.png",
		"cells/slat_eps=8%2F255_latent-radius=0.1_seed=1/model.onnx", "cells/fgsm_eps=0.05_seed=0/eval-final.json"} {
		if _, err := os.Stat(filepath.Join(one, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	md, _ := os.ReadFile(filepath.Join(one, "report.md"))
	for _, want := range []string{"| slat latent-radius=auto |", "| slat latent-radius=0.1 |", "| fgsm |", "ε = 8/255", "Collapsed runs", "![probe](plots/probe.png)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// A cell is an ordinary run directory: train --resume takes it.
	runOK(t, "train", "--resume", filepath.Join(one, "cells", "fgsm_eps=0.05_seed=0"))

	// Again: nothing to do.
	out = runOK(t, tinySweep(one)...)
	if !strings.Contains(out, "0 trained, 0 resumed, 12 already done; 0 checkpoints evaluated") {
		t.Errorf("second run redid work:\n%s", out)
	}

	// 3 shards as 3 processes, merged: the same report.
	var procs []*exec.Cmd
	var outs []*bytes.Buffer
	var dirs []string
	for i := range 3 {
		dir := filepath.Join(root, fmt.Sprintf("shard%d", i))
		dirs = append(dirs, dir)
		args, _ := json.Marshal(tinySweep(dir, "--shard", fmt.Sprintf("%d/3", i)))
		cmd := exec.Command(os.Args[0], "-test.run=^TestSweepHelperProcess$")
		cmd.Env = append(os.Environ(), "SLATRUN_SWEEP_ARGS="+string(args))
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs, outs = append(procs, cmd), append(outs, &b)
	}
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("shard %d: %v\n%s", i, err, outs[i])
		}
		if !strings.Contains(outs[i].String(), "4 in shard") {
			t.Errorf("shard %d:\n%s", i, outs[i])
		}
	}
	var errb bytes.Buffer
	if code := run([]string{"sweep", "--merge", dirs[0], dirs[1]}, &bytes.Buffer{}, &errb); code == 0 || !strings.Contains(errb.String(), "not finished") {
		t.Errorf("merging 2 of 3 shards: exit %d, %s", code, errb.String())
	}
	merged := filepath.Join(root, "merged")
	runOK(t, append([]string{"sweep", "--merge", "--out", merged}, dirs...)...)
	if a, b := reportNumbers(t, one), reportNumbers(t, merged); a != b {
		t.Errorf("merged report differs:\none    %s\nmerged %s", a, b)
	}

	// --confirm: pgd-10 on the best setting of each method at each ε (seed
	// 0 by default), cached in the cells.
	confirmed := filepath.Join(root, "confirmed")
	out = runOK(t, "sweep", "--merge", one, "--out", confirmed, "--confirm", "pgd-10", "--threads", "1")
	if n := strings.Count(out, "sweep: confirmed "); n != 4 { // (slat's best radius, fgsm) × 2 ε
		t.Errorf("--confirm evaluated %d checkpoints, want 4:\n%s", n, out)
	}
	var rep sweep.Report
	if b, err := os.ReadFile(filepath.Join(confirmed, "report.json")); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report.json: %v", err)
	}
	if rep.Confirm == nil || rep.Confirm.Attacks != "pgd-10" || len(rep.Confirmed) != 4 {
		t.Fatalf("report.json confirmation: %+v, %d rows", rep.Confirm, len(rep.Confirmed))
	}
	for _, c := range rep.Confirmed {
		if c.Seed != 0 || c.Confirmed > c.Clean || c.Attacks["pgd-10"] != c.Confirmed {
			t.Errorf("confirmed row %+v", c)
		}
		if _, err := os.Stat(filepath.Join(one, "cells", c.Cell, sweep.ConfirmFile)); err != nil {
			t.Errorf("no %s in %s", sweep.ConfirmFile, c.Cell)
		}
	}
	if md, _ := os.ReadFile(filepath.Join(confirmed, "report.md")); !strings.Contains(string(md), "## Confirmation: pgd-10 on the best setting") {
		t.Errorf("report.md has no confirmation table:\n%s", md)
	}
	if out = runOK(t, "sweep", "--merge", one, "--out", confirmed, "--confirm", "pgd-10", "--threads", "1"); strings.Contains(out, "sweep: confirmed ") {
		t.Errorf("a second --confirm evaluated again:\n%s", out)
	}
	// --confirm-workers 0: the cached evaluations only; another attack is
	// cached nowhere, so nothing is confirmed and all four are listed.
	cached := filepath.Join(root, "cached")
	if out = runOK(t, "sweep", "--merge", one, "--out", cached, "--confirm", "pgd-12", "--confirm-workers", "0"); strings.Contains(out, "sweep: confirmed ") {
		t.Errorf("--confirm-workers 0 evaluated:\n%s", out)
	}
	rep = sweep.Report{}
	if b, err := os.ReadFile(filepath.Join(cached, "report.json")); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report.json: %v", err)
	}
	if len(rep.Confirmed) != 0 || len(rep.Unconfirmed) != 4 {
		t.Errorf("--confirm-workers 0: %d confirmed, %d unconfirmed; want 0 and 4", len(rep.Confirmed), len(rep.Unconfirmed))
	}

	// slatrun plot, on a sweep and on runs.
	out = runOK(t, "plot", "--out", filepath.Join(root, "p"), one, filepath.Join(one, "cells", "slat_eps=0.05_latent-radius=auto_seed=0"), filepath.Join(one, "cells", "fgsm_eps=0.05_seed=1"))
	for _, f := range []string{"one/probe.png", "one/robust-vs-eps.png", "probe.png", "tap-grads.png"} {
		checkPNG(t, filepath.Join(root, "p", f))
	}
	if !strings.Contains(out, "wrote") {
		t.Errorf("plot printed %q", out)
	}
}

// reportNumbers is report.json without wall-clock times.
func reportNumbers(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	json.Unmarshal(b, &v)
	var strip func(any)
	strip = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.Contains(k, "seconds") {
					delete(x, k)
				} else {
					strip(e)
				}
			}
		case []any:
			for _, e := range x {
				strip(e)
			}
		}
	}
	strip(v)
	s, _ := json.Marshal(v)
	return string(s)
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

func TestSweepK8sAndErrors(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	args := append(tinySweep(filepath.Join(root, "fmnist")), "--emit-k8s", "-", "--k8s-shards", "3", "--k8s-image", "reg/slatrun:1", "--workers", "2")
	if code := run(args, &out, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var job struct {
		Spec struct {
			CompletionMode           string `json:"completionMode"`
			Completions, Parallelism int
			Template                 struct {
				Spec struct {
					Containers []struct {
						Image string   `json:"image"`
						Args  []string `json:"args"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out.Bytes(), &job); err != nil {
		t.Fatalf("manifest is not JSON: %v\n%s", err, out.String())
	}
	s := job.Spec
	if s.CompletionMode != "Indexed" || s.Completions != 3 || s.Parallelism != 3 || s.Template.Spec.Containers[0].Image != "reg/slatrun:1" {
		t.Errorf("manifest: %+v", s)
	}
	joined := strings.Join(s.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"sweep ", "--grid=latent-radius=auto,0.1", "--workers=2", "--eps=0.05,8/255", "--shard=env/3", "--out=/results/fmnist"} {
		if !strings.Contains(joined, want) {
			t.Errorf("pod args %q lack %q", joined, want)
		}
	}
	// The pod's command line is a valid sweep: run its first shard here.
	podArgs := s.Template.Spec.Containers[0].Args
	for i, a := range podArgs {
		if strings.HasPrefix(a, "--out=") {
			podArgs[i] = "--out=" + filepath.Join(root, "pod0")
		}
	}
	t.Setenv(sweep.IndexEnv, "0")
	if o := runOK(t, podArgs...); !strings.Contains(o, "in shard 0/3") {
		t.Errorf("pod 0:\n%s", o)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sweep", "--model", "mlp", "--data", "synthetic:1x8x8"}, "--eps is required"},
		{tinySweep(root, "--grid", "method=slat"), "own flag"},
		{tinySweep(root, "--grid", "nope=1,2"), "not a training flag"},
		{tinySweep(root, "--grid", "epochs=1,2"), "also set"},
		{tinySweep(root, "--grid", "lr=x,0.1"), "lr"},
		{tinySweep(root, "--variant", "epochs=2"), "also set"},
		{tinySweep(root, "--variant", "nope=2"), "not a training flag"},
		{tinySweep(root, "--variant", "lr=0.1 lr=0.2"), "twice"},
		{tinySweep(root, "--variant", "lr=x"), "lr"},
		{tinySweep(root, "--seeds", "a"), "--seeds"},
		{tinySweep(root, "--shard", "3/3"), "shard"},
		{tinySweep(root, "--attacks", "pgd-x"), "unknown attack"},
		{tinySweep(root, "--confirm", "pgd-x"), "--confirm"},
		{tinySweep(root, "--method-seeds", "pgd-7=0"), "not in the grid"},
		{tinySweep(root, "--method-seeds", "fgsm"), "want METHOD=S1,S2"},
		{tinySweep(root, "--method-seeds", "fgsm=x"), "not a whole number"},
		{[]string{"sweep", "--merge"}, "needs the sweep"},
	} {
		var errb bytes.Buffer
		if code := run(c.args, &bytes.Buffer{}, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args[len(c.args)-2:], code, errb.String(), c.want)
		}
	}
}
