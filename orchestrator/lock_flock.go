//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package orchestrator

import (
	"errors"
	"os"
	"syscall"
)

// staleLockHint follows the "locked by" error: nothing here, since the
// kernel releases a dead process's flock.
const staleLockHint = ""

func openLock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// tryLock takes an exclusive flock(2) on f without waiting; ErrLocked if
// another open file holds it.
func tryLock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
	}
}
