package orchestrator

// SlowDecayDrop is how far, in accuracy (0.15 = 15 points), a run's probe
// robust accuracy must fall below its best so far to count as a slow decay:
// robustness lost over several epochs rather than in the one collapse that
// ProbeConfig's Collapse and Floor flag. It is the one definition, read by
// the per-epoch flag (EpochMetrics.Decayed) and by the sweep report (final
// probe against the run's best). docs/sweeps.md says why 15 points.
const SlowDecayDrop = 0.15

// SlowDecay reports whether the probe robust accuracy robust lies at least
// SlowDecayDrop below best (both in [0, 1]; a negative best means no probe
// yet). The comparison allows for rounding: 0.45 − 0.30 counts.
func SlowDecay(best, robust float64) bool {
	return best >= 0 && best-robust >= SlowDecayDrop-1e-9
}

// flags records the probe of the epoch that is ending (probed) and returns
// the epoch's flags: best, catastrophic (a collapse, ProbeConfig) and
// decayed (SlowDecay against the best so far, when not catastrophic).
func (s *runState) flags(p ProbeResult, collapse, floor float32) (best, catastrophic, decayed bool) {
	best, catastrophic = s.probed(p, collapse, floor)
	decayed = !catastrophic && SlowDecay(s.bestRobust, p.Robust)
	return best, catastrophic, decayed
}
