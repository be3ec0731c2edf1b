package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockFile is the name of a run directory's lock file (see LockRun).
const LockFile = "lock"

// ErrLocked is wrapped by the error LockRun (and New) return when another
// process, or another RunLock in this one, holds the run directory's lock.
var ErrLocked = errors.New("run directory is in use")

// lockHolder is what a lock file says about the process that holds it.
type lockHolder struct {
	PID     int    `json:"pid"`
	Host    string `json:"host"`
	Since   string `json:"since"` // RFC 3339, UTC
	Command string `json:"command,omitempty"`
}

func (h lockHolder) String() string {
	s := fmt.Sprintf("pid %d on host %s since %s", h.PID, h.Host, h.Since)
	if h.Command != "" {
		s += " (" + h.Command + ")"
	}
	return s
}

// RunLock is the exclusive lock on a run directory that keeps two trainers
// (two slatrun processes, two sweep workers) out of one directory. Make it
// with LockRun and release it with Unlock. On Unix it is a flock(2) on the
// directory's lock file, which the kernel releases when the process dies,
// however it dies; the file's contents (pid, host, start time) only serve
// the error message of the process that finds the lock taken.
type RunLock struct {
	dir  string
	path string
	f    *os.File
}

// LockRun takes the lock of run directory dir, which must exist. If
// another process or RunLock holds it, it returns at once with an error
// that wraps ErrLocked and names the holder (pid, host, since when). A
// lock is not re-entrant: a second LockRun of the same directory fails
// even in the same process, so pass the RunLock on (Config.Lock) instead.
func LockRun(dir string) (*RunLock, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: lock run directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("orchestrator: lock run directory: %s is not a directory", dir)
	}
	path := filepath.Join(dir, LockFile)
	// A holder that unlocks removes the file; a process that opened it just
	// before then locks a file that is gone, notices, and tries again.
	for range 10 {
		f, err := openLock(path)
		if err == nil {
			if err = tryLock(f); err != nil {
				f.Close()
			}
		}
		if errors.Is(err, ErrLocked) {
			b, _ := os.ReadFile(path)
			return nil, fmt.Errorf("orchestrator: %w: %s is locked by %s (lock file %s)%s", ErrLocked, dir, describeHolder(b), path, staleLockHint)
		}
		if err != nil {
			return nil, fmt.Errorf("orchestrator: lock run directory %s: %w", dir, err)
		}
		ours, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("orchestrator: lock run directory: %w", err)
		}
		if now, err := os.Stat(path); err != nil || !os.SameFile(ours, now) {
			f.Close() // released and removed meanwhile
			continue
		}
		l := &RunLock{dir: dir, path: path, f: f}
		if err := l.writeHolder(); err != nil {
			l.Unlock()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("orchestrator: lock run directory: %s keeps being replaced by other processes", path)
}

// describeHolder turns a lock file's contents into words.
func describeHolder(b []byte) string {
	var h lockHolder
	if len(b) == 0 || json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return "another process (its lock file does not say which yet)"
	}
	return h.String()
}

func (l *RunLock) writeHolder() error {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	h := lockHolder{PID: os.Getpid(), Host: host, Since: time.Now().UTC().Format(time.RFC3339)}
	if len(os.Args) > 0 {
		h.Command = strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:min(len(os.Args), 3)]...), " ")
	}
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("orchestrator: lock file: %w", err)
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("orchestrator: lock file: %w", err)
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("orchestrator: lock file: %w", err)
	}
	return nil
}

// Dir returns the locked run directory.
func (l *RunLock) Dir() string { return l.dir }

// Unlock removes the lock file and releases the lock. It is safe to call
// twice.
func (l *RunLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path) // while still holding it: see LockRun
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("orchestrator: unlock run directory: %w", err)
	}
	return nil
}

// held reports whether l is a held lock on directory dir.
func (l *RunLock) held(dir string) bool {
	if l == nil || l.f == nil {
		return false
	}
	a, err1 := os.Stat(l.dir)
	b, err2 := os.Stat(dir)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
