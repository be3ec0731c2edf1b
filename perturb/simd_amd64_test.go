//go:build !purego

package perturb

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// TestVectorLoops checks that a build for amd64 without the purego tag
// takes the AVX2 loops on a processor that has AVX2 (the element-wise
// tests then compare them with Go's loops), and only for the inputs they
// are meant for.
func TestVectorLoops(t *testing.T) {
	if !cpu.X86.HasAVX2 {
		t.Skip("this processor has no AVX2: Go's loops do the work")
	}
	d, g, x := make([]float32, 40), make([]float32, 40), make([]float32, 40)
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"signFill 40", signFillVec(d, g, 0.1), 32},
		{"signFill 31", signFillVec(d[:31], g, 0.1), 0},
		{"SLATInput 40", slatInputVec(d, g, x, 0.1, 0.2), 32},
		{"SLATInput 20", slatInputVec(d[:20], g, x, 0.1, 0.2), 16},
		{"SLATInput zero step", slatInputVec(d, g, x, 0, 0.2), 0},
		{"SLATInput zero radius", slatInputVec(d, g, x, 0.1, 0), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: the vector loop set %d elements, want %d", tc.name, tc.got, tc.want)
		}
	}
}
