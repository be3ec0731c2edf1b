package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/slatrun/slatrun/onnx"
)

// save writes model.onnx (ckpt), best.onnx (if best) and state.bin, in that
// order, each atomically, then calls OnCheckpoint.
func (t *Trainer) save(ckpt *onnx.Model, best bool) error {
	if err := ckpt.Save(filepath.Join(t.cfg.Out, ModelFile)); err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	if best {
		if err := ckpt.Save(filepath.Join(t.cfg.Out, BestFile)); err != nil {
			return fmt.Errorf("orchestrator: %w", err)
		}
	}
	snap, err := t.snapshot()
	if err != nil {
		return err
	}
	b, err := encodeState(snap)
	if err != nil {
		return fmt.Errorf("orchestrator: encode state: %w", err)
	}
	if err := t.write(StateFile, b); err != nil {
		return err
	}
	if t.cfg.Hooks.OnCheckpoint != nil {
		if err := t.cfg.Hooks.OnCheckpoint(t.cfg.Out, t.pass, best); err != nil {
			return fmt.Errorf("orchestrator: OnCheckpoint hook: %w", err)
		}
	}
	return nil
}

func (t *Trainer) settingsJSON() ([]byte, error) {
	b, err := json.Marshal(t.r)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: encode the settings: %w", err)
	}
	return b, nil
}

// snapshot collects the state to save.
func (t *Trainer) snapshot() (*snapshot, error) {
	rng, err := t.pcg.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("orchestrator: save the random number generator: %w", err)
	}
	settings, err := t.settingsJSON()
	if err != nil {
		return nil, err
	}
	s := &snapshot{settings: settings, provenance: t.provJSON, sgdStarted: t.opt.Started, rng: rng, runState: t.runState}
	for _, p := range t.params {
		s.tensors = append(s.tensors, savedTensor{p.Name, roleParam, p.Data})
	}
	for _, p := range t.stats {
		s.tensors = append(s.tensors, savedTensor{p.Name, roleStat, p.Data})
	}
	for i, p := range t.params {
		s.tensors = append(s.tensors, savedTensor{p.Name, roleMomentum, t.opt.Bufs[i]})
	}
	if t.m.fam == free {
		s.tensors = append(s.tensors, savedTensor{"delta.x", roleDelta, t.delta})
	}
	return s, nil
}

// restore loads state.bin from the run directory into the Trainer.
func (t *Trainer) restore() error {
	path := filepath.Join(t.cfg.Out, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("orchestrator: %w: %s does not exist (was the run started with this Out?)", ErrState, path)
	}
	if err != nil {
		return fmt.Errorf("orchestrator: %w: %w", ErrState, err)
	}
	s, err := decodeState(b, path)
	if err != nil {
		return err
	}
	settings, err := t.settingsJSON()
	if err != nil {
		return err
	}
	var why []string
	if diff := settingsDiff(s.settings, settings); diff != "" {
		why = append(why, "it was saved by a run with other settings: "+diff)
	}
	if len(s.provenance) > 0 {
		if diff := provenanceDiff(s.provenance, t.provJSON); diff != "" {
			why = append(why, "it was saved by a run on another model or other data: "+diff)
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("orchestrator: %w %s: %s", ErrState, path, strings.Join(why, "; and "))
	}

	if s.pass > t.r.Passes || s.batch > t.r.BatchesEpoch {
		return fmt.Errorf("orchestrator: %w %s: position epoch %d step %d is outside the run", ErrState, path, s.pass+1, s.batch)
	}
	if len(s.win.taps) != len(t.taps) || len(s.ep.taps) != len(t.taps) {
		return fmt.Errorf("orchestrator: %w %s: corrupt: tap statistics for %d taps, the run has %d", ErrState, path, len(s.ep.taps), len(t.taps))
	}
	// Every tensor the run needs must be there with the right size.
	type key struct {
		role uint8
		name string
	}
	want := map[key][]float32{}
	add := func(role uint8, name string, dst []float32) { want[key{role, name}] = dst }
	for i, p := range t.params {
		add(roleParam, p.Name, p.Data)
		add(roleMomentum, p.Name, t.opt.Bufs[i])
	}
	for _, p := range t.stats {
		add(roleStat, p.Name, p.Data)
	}
	if t.m.fam == free {
		add(roleDelta, "delta.x", t.delta)
	}
	roleName := [...]string{"parameter", "BN statistic", "momentum buffer", "perturbation"}
	for _, st := range s.tensors {
		if int(st.role) >= len(roleName) {
			return fmt.Errorf("orchestrator: %w %s: corrupt: tensor %q has unknown role %d", ErrState, path, st.name, st.role)
		}
		k := key{st.role, st.name}
		dst, ok := want[k]
		if !ok {
			return fmt.Errorf("orchestrator: %w %s: it holds %s %q, which the model does not have (a different model?)", ErrState, path, roleName[st.role], st.name)
		}
		if len(dst) != len(st.data) {
			return fmt.Errorf("orchestrator: %w %s: %s %q has %d values, the model's has %d (a different model?)", ErrState, path, roleName[st.role], st.name, len(st.data), len(dst))
		}
		copy(dst, st.data)
		delete(want, k)
	}
	for k := range want {
		return fmt.Errorf("orchestrator: %w %s: %s %q is missing (a different model?)", ErrState, path, roleName[k.role], k.name)
	}
	if err := t.pcg.UnmarshalBinary(s.rng); err != nil {
		return fmt.Errorf("orchestrator: %w %s: corrupt random number generator state: %w", ErrState, path, err)
	}
	t.opt.Started = s.sgdStarted
	t.runState.restore(s.runState)
	if t.global > 0 {
		t.lastLR, t.lastMom = t.sched.At(t.global - 1)
	}
	if len(s.provenance) == 0 {
		t.logf("note: %s predates provenance records (state format version %d): the forward graph and the data could not be checked against the saved run's; the next checkpoint records them", path, stateVersion1)
	}
	if t.metrics, err = resumeMetricsLog(t.cfg.Out, t.pass, t.global); err != nil {
		return err
	}
	return nil
}
