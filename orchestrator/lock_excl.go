//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package orchestrator

import (
	"errors"
	"os"
)

// Without flock(2) the lock is the lock file itself, created exclusively:
// a process that dies without Unlock leaves it behind.
const staleLockHint = "; if that process is no longer running, delete the lock file"

func openLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, ErrLocked
	}
	return f, err
}

// tryLock has nothing to do: openLock created the file exclusively.
func tryLock(*os.File) error { return nil }
