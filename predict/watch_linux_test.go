package predict

import (
	"errors"
	"syscall"
	"testing"
)

// watchOpens watches path with inotify and returns a function reporting
// whether the file was opened or read since the last call.
func watchOpens(t *testing.T, path string) func() bool {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_OPEN|syscall.IN_ACCESS); err != nil {
		t.Fatalf("inotify watch %s: %v", path, err)
	}
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.PathMax))
	return func() bool {
		seen := false
		for {
			n, err := syscall.Read(fd, buf)
			if errors.Is(err, syscall.EAGAIN) {
				return seen
			}
			if err != nil {
				t.Fatalf("inotify read: %v", err)
			}
			seen = seen || n > 0
		}
	}
}
