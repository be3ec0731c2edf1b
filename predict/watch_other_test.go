//go:build !linux

package predict

import "testing"

// watchOpens has no portable implementation: elsewhere than on Linux it
// reports an open on its first call (TestExternalData's check that it
// works) and none after, so that the test checks only the refusals.
func watchOpens(t *testing.T, path string) func() bool {
	t.Logf("not watching %s for opens on this system", path)
	first := true
	return func() bool {
		seen := first
		first = false
		return seen
	}
}
