//go:build !linux

package predict

import "testing"

// watchOpens has no portable implementation: elsewhere than on Linux it
// reports opens as if they had happened for the control and never after, so
// TestExternalData checks only the refusals.
func watchOpens(t *testing.T, path string) func() bool {
	t.Logf("not watching %s for opens on this system", path)
	first := true
	return func() bool {
		seen := first
		first = false
		return seen
	}
}
