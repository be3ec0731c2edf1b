package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/slatrun/slatrun/perturb"
)

// TestSLATScaleStartValidate: LatentScale and InputStart take their values,
// and only slat takes the non-default ones.
func TestSLATScaleStartValidate(t *testing.T) {
	for _, tc := range []struct {
		method, scale, start, want string
	}{
		{"slat", LatentScaleRange, InputStartUniform, ""},
		{"slat", "", "", ""},
		{"fgsm", LatentScaleAbs, InputStartZero, ""},
		{"slat", "rel", "", `LatentScale "rel"`},
		{"slat", "", "gauss", `InputStart "gauss"`},
		{"fgsm", LatentScaleRange, "", "only slat does"},
		{"fgsm-rs", "", InputStartUniform, "only slat does"},
	} {
		c := testConfig(t, "mlp", tc.method)
		c.LatentScale, c.InputStart = tc.scale, tc.start
		err := c.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s scale %q start %q: %v, want %q", tc.method, tc.scale, tc.start, err, tc.want)
		}
	}
}

// TestSLATScaleStartRecorded: slat records its latent scale and input start
// in the settings (config.json, state.bin), defaults included; other
// methods record neither.
func TestSLATScaleStartRecorded(t *testing.T) {
	for _, tc := range []struct {
		method, scale, start string
		want                 map[string]any
	}{
		{"slat", "", "", map[string]any{"latent_scale": "abs", "input_start": "zero"}},
		{"slat", LatentScaleRange, InputStartUniform, map[string]any{"latent_scale": "range", "input_start": "uniform"}},
		{"fgsm", LatentScaleAbs, InputStartZero, map[string]any{"latent_scale": nil, "input_start": nil}},
	} {
		c := testConfig(t, "mlp", tc.method)
		c.LatentScale, c.InputStart = tc.scale, tc.start
		m, _ := parseMethod(tc.method)
		b, err := json.Marshal(resolve(&c, m, []string{"hidden"}))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s %q/%q: settings[%s] = %v, want %v", tc.method, tc.scale, tc.start, k, got[k], v)
			}
		}
	}
}

// TestSLATScaleStartLegacy: a run saved before latent_scale and input_start
// existed ran the reference rule: it resumes under the defaults and is
// refused under the new settings, naming them.
func TestSLATScaleStartLegacy(t *testing.T) {
	legacy := `{"method":"slat","bn_stats":"all","latent_eta":0.1}`
	for _, tc := range []struct{ now, want string }{
		{`{"method":"slat","bn_stats":"all","latent_eta":0.1,"latent_scale":"abs","input_start":"zero"}`, ""},
		{`{"method":"slat","bn_stats":"all","latent_eta":0.1,"latent_scale":"range","input_start":"zero"}`, `latent_scale was "abs", now "range"`},
		{`{"method":"slat","bn_stats":"all","latent_eta":0.1,"latent_scale":"abs","input_start":"uniform"}`, `input_start was "zero", now "uniform"`},
	} {
		if d := settingsDiff([]byte(legacy), []byte(tc.now)); d != tc.want {
			t.Errorf("legacy run against %s: diff %q, want %q", tc.now, d, tc.want)
		}
	}
	if d := settingsDiff([]byte(`{"method":"fgsm","bn_stats":"all"}`), []byte(`{"method":"fgsm","bn_stats":"all"}`)); d != "" {
		t.Errorf("fgsm: diff %q", d)
	}
}

// TestSLATRangeUniformStep runs one SLAT step with LatentScale range and
// InputStart uniform and checks what reached the train graph: δx is the
// input step from the same uniform draw the step made (replayed from a copy
// of the generator), and each tap's δ is SLATLatentRange of pass 1's
// gradient and range.<tap>, which are hi − lo per sample and channel. The
// step allocates nothing.
func TestSLATRangeUniformStep(t *testing.T) {
	c := testConfig(t, "convnet", "slat")
	c.Holdout = nil
	c.LatentScale, c.InputStart = LatentScaleRange, InputStartUniform
	tr := newTrainer(t, c)
	if tr.attack.ranges == nil || len(tr.attack.ranges) != len(tr.taps) {
		t.Fatalf("the attack session has %d range outputs for %d taps", len(tr.attack.ranges), len(tr.taps))
	}
	tr.loader.Epoch(0)
	tr.loader.Next(tr.x, tr.y)
	state, err := tr.pcg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var pcg rand.PCG
	if err := pcg.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	if err := tr.step(); err != nil {
		t.Fatal(err)
	}
	a, trn := tr.attack, tr.train
	wantDX := make([]float32, len(tr.x))
	perturb.RandomStart(rand.New(&pcg), wantDX, tr.x, tr.r.Eps)
	started := 0
	for i, v := range wantDX {
		if a.x[i] != tr.x[i]+v {
			t.Fatalf("pass 1 ran at x[%d] = %v, want x+δ0 = %v", i, a.x[i], tr.x[i]+v)
		}
		if v != 0 {
			started++
		}
	}
	if started < len(wantDX)/2 {
		t.Fatalf("only %d of %d start elements are non-zero", started, len(wantDX))
	}
	perturb.SLATInputFrom(wantDX, a.gradX, tr.x, tr.r.Eps, tr.r.inputFrac)
	for i := range wantDX {
		if math.Float32bits(tr.delta[i]) != math.Float32bits(wantDX[i]) {
			t.Fatalf("δx[%d] = %v, want %v", i, tr.delta[i], wantDX[i])
		}
		if d := tr.delta[i]; !(d >= -tr.r.Eps && d <= tr.r.Eps) {
			t.Fatalf("δx[%d] = %v outside ±ε", i, d)
		}
	}
	for i, g := range a.taps {
		rg := a.ranges[i]
		if len(g)%len(rg) != 0 || len(rg) < c.Batch {
			t.Fatalf("tap %s: %d ranges for %d elements", tr.taps[i], len(rg), len(g))
		}
		positive := 0
		for _, r := range rg {
			if !(r >= 0) {
				t.Fatalf("tap %s: range %v", tr.taps[i], r)
			}
			if r > 0 {
				positive++
			}
		}
		if positive == 0 {
			t.Fatalf("tap %s: every range is 0", tr.taps[i])
		}
		want := make([]float32, len(g))
		if err := perturb.SLATLatentRange(want, g, rg, tr.r.LatentStep, tr.r.LatentRadius); err != nil {
			t.Fatal(err)
		}
		hw := len(g) / len(rg)
		for j := range want {
			if trn.taps[i][j] != want[j] {
				t.Fatalf("tap %s: δ[%d] = %v, want %v", tr.taps[i], j, trn.taps[i][j], want[j])
			}
			if lim := tr.r.LatentRadius * rg[j/hw]; !(trn.taps[i][j] >= -lim && trn.taps[i][j] <= lim) {
				t.Fatalf("tap %s: δ[%d] = %v outside ±η·r = ±%v", tr.taps[i], j, trn.taps[i][j], lim)
			}
		}
	}
	tr.afterStep(0)
	if n := testing.AllocsPerRun(5, stepper(t, tr)); n != 0 {
		t.Errorf("%v allocations per step", n)
	}
}

// TestSLATRangeUniformResume: a run with LatentScale range and InputStart
// uniform, interrupted in its first epoch and resumed, ends with the
// weights and metrics of the uninterrupted run (the uniform starts come
// from the saved generator).
func TestSLATRangeUniformResume(t *testing.T) {
	cfg := testConfig(t, "convnet", "slat")
	cfg.LatentScale, cfg.InputStart = LatentScaleRange, InputStartUniform
	cfg.Epochs = 2
	cfg.Out = t.TempDir()
	straight := newTrainer(t, cfg)
	want, err := straight.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Out = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	first := cfg
	first.Hooks.OnStep = func(s StepInfo) error {
		if s.Epoch == 1 && s.Step == 3 {
			cancel()
		}
		return nil
	}
	tr := newTrainer(t, first)
	if _, err := tr.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	cancel()
	tr.Close()
	again := cfg
	again.Resume = true
	tr = newTrainer(t, again)
	got, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sameAsStraight(t, got, want, tr, straight)
	tr.Close()
	// The same directory refuses the reference rule.
	ref := cfg
	ref.Resume, ref.LatentScale = true, LatentScaleAbs
	if other, err := New(ref); err == nil || !strings.Contains(err.Error(), `latent_scale was "range", now "abs"`) {
		t.Errorf("resume under another latent scale: %v", err)
		if err == nil {
			other.Close()
		}
	}
}
