//go:build !amd64 || purego

package perturb

// Without the amd64 assembly (another architecture, or -tags purego) the Go
// loops do all the work.

func signFillVec(delta, g []float32, step float32) int { return 0 }

func slatInputVec(delta, g, x []float32, step, r float32) int { return 0 }
