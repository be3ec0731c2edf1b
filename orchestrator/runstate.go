package orchestrator

// runState is where a run stands: its position, the metrics accumulators,
// the best probe so far and the finished epochs' metrics, which state.bin
// saves (with the tensors, the settings and the random generator), and the
// values of the last train pass, which it does not (restore recomputes the
// learning rate and momentum from the schedule; the loss and the count
// belong to the step just run).
type runState struct {
	// pass is the epoch (0-based; a pass over the data for free-M), batch
	// the minibatches done in it, global the optimizer steps done.
	pass, batch, global int
	// win accumulates since the last metrics step line, ep over the epoch.
	win, ep accum
	// bestRobust and bestClean are the best probe so far (bestRobust is -1
	// before the first), bestEpoch its epoch (1-based; 0: none); lastClean
	// is the last probe's clean accuracy.
	bestRobust, bestClean, lastClean float64
	bestEpoch                        int
	// history holds the finished epochs' metrics.
	history []EpochMetrics

	// The last train pass: its learning rate, momentum, loss and the
	// examples it classified right.
	lastLR, lastMom float64
	lastLoss        float32
	lastCorrect     int
}

// newRunState is the state before the first step of a run whose method
// perturbs taps latent tensors.
func newRunState(taps int) runState {
	return runState{win: accum{taps: make([]float64, taps)}, ep: accum{taps: make([]float64, taps)}, bestRobust: -1}
}

// trained records a train pass and its optimizer step: the loss, and
// correct of n examples classified right, at learning rate lr and momentum
// mom.
func (s *runState) trained(loss float32, correct, n int, lr, mom float64) {
	s.global++
	s.lastLR, s.lastMom = lr, mom
	s.lastLoss, s.lastCorrect = loss, correct
	for _, a := range [...]*accum{&s.win, &s.ep} {
		a.loss += float64(loss)
		a.correct += int64(correct)
		a.n += int64(n)
		a.passes++
	}
}

// stepped records a finished minibatch step (after batch has counted it)
// of secs seconds, with SLAT's per-tap ‖∂ℓ/∂h‖₁ means tapL1.
func (s *runState) stepped(secs float64, tapL1 []float64) {
	for _, a := range [...]*accum{&s.win, &s.ep} {
		a.batches++
		a.seconds += secs
		for i, v := range tapL1 {
			a.taps[i] += v
		}
	}
}

// probed records the probe of the epoch that is ending and reports
// whether it is the best so far and whether it flags catastrophic
// overfitting (see ProbeConfig: collapse and floor).
func (s *runState) probed(p ProbeResult, collapse, floor float32) (best, catastrophic bool) {
	catastrophic = s.bestRobust >= 0 && p.Robust < float64(collapse)*s.bestRobust &&
		p.Robust < s.bestRobust-float64(floor) &&
		p.Clean >= s.bestClean-float64(floor)
	if betterProbe(p, s.bestRobust, s.bestClean) {
		best = true
		s.bestRobust, s.bestClean, s.bestEpoch = p.Robust, p.Clean, s.pass+1
	}
	s.lastClean = p.Clean
	return best, catastrophic
}

// betterProbe reports whether probe p beats the best so far: by robust
// accuracy, and on a tie (for example 0% throughout standard training) by
// clean accuracy.
func betterProbe(p ProbeResult, bestRobust, bestClean float64) bool {
	return p.Robust > bestRobust || p.Robust == bestRobust && p.Clean > bestClean
}

// endEpoch appends the epoch's metrics and moves to the next pass.
func (s *runState) endEpoch(em EpochMetrics) {
	s.history = append(s.history, em)
	s.pass++
	s.batch = 0
	s.ep.reset()
}

// restore takes the saved state, keeping s's tap accumulators (the values
// are copied; their lengths must agree, which restore checks first).
func (s *runState) restore(saved runState) {
	win, ep := s.win.taps, s.ep.taps
	copy(win, saved.win.taps)
	copy(ep, saved.ep.taps)
	*s = saved
	s.win.taps, s.ep.taps = win, ep
}
