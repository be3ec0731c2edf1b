package dataset

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Limits of what the readers and the synthetic spec accept. A header or a
// spec beyond them is reported before anything is allocated for it.
const (
	// MaxSide is the largest image height or width an IDX header or a
	// synthetic:CxHxW spec may give (MNIST is 28, CIFAR 32).
	MaxSide = 1024
	// MaxDataBytes is the most pixel bytes the readers take from the files
	// of one split: 1 GiB, 1,073,741,824 images×pixels (Fashion-MNIST's
	// training split is 47 MB, CIFAR-10's 157 MB). The Set holds them as
	// float32, four times that.
	MaxDataBytes = 1 << 30
	// SyntheticMaxChannels is the most channels a synthetic:CxHxW spec may give.
	SyntheticMaxChannels = 16
	// SyntheticMaxBytes bounds a synthetic split's float32 pixels: the
	// training split (SyntheticTrain images of C×H×W) may take at most
	// 1 GiB, so C×H×W is at most 134217 (3×211×211, 1×366×366).
	SyntheticMaxBytes = 1 << 30
)

// maxDeflateRatio is the most a deflate stream expands: a length-258 match
// coded in one bit and its distance in another, 258 bytes from 2 bits. A
// gzip file of S bytes (its members, headers included) therefore holds at
// most maxDeflateRatio×S bytes, whatever its header claims.
const maxDeflateRatio = 1032

// ErrNotRegular is the error of a data path that is not a regular file
// (a directory, a device such as /dev/zero, a named pipe, a socket), which
// the readers refuse rather than read without end or block on.
var ErrNotRegular = errors.New("not a regular file")

// ErrLimit is the error of a header or spec beyond the limits above.
var ErrLimit = errors.New("over the size limit")

// openRegular opens path for reading if it is, after following symbolic
// links, a regular file, and returns it with its size. It stats first and
// opens without blocking, so a named pipe is refused instead of waited on,
// then checks the opened file again in case path changed in between.
func openRegular(path string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("dataset: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, notRegular(path, st.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("dataset: %w", err)
	}
	st, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("dataset: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, notRegular(path, st.Mode())
	}
	return f, st.Size(), nil
}

// notRegular explains an ErrNotRegular: what path is, and where a symbolic
// link points.
func notRegular(path string, mode fs.FileMode) error {
	what := "not a plain file"
	switch {
	case mode.IsDir():
		what = "a directory"
	case mode&fs.ModeNamedPipe != 0:
		what = "a named pipe"
	case mode&fs.ModeSocket != 0:
		what = "a socket"
	case mode&fs.ModeCharDevice != 0:
		what = "a character device"
	case mode&fs.ModeDevice != 0:
		what = "a device"
	}
	if target, err := os.Readlink(path); err == nil {
		what = fmt.Sprintf("a symbolic link to %s, %s", target, what)
	}
	return fmt.Errorf("dataset: %s: %w (it is %s)", path, ErrNotRegular, what)
}

// readRegular reads the whole of path, a regular file (see openRegular) of
// at most limit bytes; a larger one is an ErrLimit error naming what.
func readRegular(path string, limit int64, what string) ([]byte, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > limit {
		return nil, fmt.Errorf("dataset: %s: %w: %d bytes, more than the %d bytes of %s this reader accepts", path, ErrLimit, size, limit, what)
	}
	b := make([]byte, size)
	if n, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("dataset: %s: %w: %d of its %d bytes could be read (did it change while being read?)", path, ErrTruncated, n, size)
		}
		return nil, fmt.Errorf("dataset: %s: %w", path, err)
	}
	return b, nil
}
