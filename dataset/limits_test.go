package dataset

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// allocated returns the bytes f allocates (all goroutines; the tests here
// do not run in parallel).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// zeroBomb returns a gzip file (concatenated members, as gzip -c a b
// writes) that decompresses to hdr followed by n MiB of zeros, from about
// 1 KiB a MiB.
func zeroBomb(hdr []byte, n int) []byte {
	var first, rest bytes.Buffer
	zero := make([]byte, 1<<20)
	zw, _ := gzip.NewWriterLevel(&first, gzip.BestCompression)
	zw.Write(hdr)
	zw.Write(zero)
	zw.Close()
	zw, _ = gzip.NewWriterLevel(&rest, gzip.BestCompression)
	zw.Write(zero)
	zw.Close()
	b := first.Bytes()
	for range n - 1 {
		b = append(b, rest.Bytes()...)
	}
	return b
}

// TestLoadIDXBounds: a header is checked against the limits, the file's
// real size and the other file's header before anything is allocated for
// it, and data that is not there fails at the end of the file at the cost
// of what was there.
func TestLoadIDXBounds(t *testing.T) {
	noise := make([]byte, 100<<10) // incompressible: the gzip file is as large
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	lbl := func(n uint32) []byte { return idxBytes(idxLabelsMagic, []uint32{n}, tinyLabels(int(n))) }
	tests := []struct {
		name     string
		img, lbl []byte
		sparse   int64 // if > 0, the image file is extended to this size with a hole
		inImages bool
		want     error
		mention  string
		maxAlloc uint64 // bytes
	}{
		// 1.5 MB that really decompresses to the 1.6 GB it declares.
		{"gzip bomb 1×40000×40000", zeroBomb(idxBytes(idxImagesMagic, []uint32{1, 40000, 40000}, nil), 1526), lbl(1), 0, true,
			ErrLimit, "images of 40000×40000 pixels, larger than the 1024×1024", 4 << 20},
		{"side over the limit", idxBytes(idxImagesMagic, []uint32{3, 28, 1025}, nil), lbl(3), 0, true, ErrHeader, "28×1025", 1 << 20},
		{"data over the limit", idxBytes(idxImagesMagic, []uint32{1400000, 28, 28}, nil), lbl(1400000), 0, true, ErrLimit, "more than the 1073741824 bytes", 1 << 20},
		{"labels over the limit", idxBytes(idxImagesMagic, []uint32{1, 1, 1}, []byte{0}), idxBytes(idxLabelsMagic, []uint32{1<<30 + 1}, nil), 0, false, ErrLimit, "1073741825", 1 << 20},
		{"raw promises more than the file", idxBytes(idxImagesMagic, []uint32{60000, 28, 28}, tinyImages(1, 28, 28)), lbl(60000), 0, true,
			ErrTruncated, "60000 images of 28×28 (47040000 bytes of data) but only 784 follow", 1 << 20},
		{"raw labels promise more than the file", idxBytes(idxImagesMagic, []uint32{2, 1, 1}, []byte{1, 2}), idxBytes(idxLabelsMagic, []uint32{2}, []byte{1}), 0, false,
			ErrTruncated, "2 labels (2 bytes of data) but only 1 follow", 1 << 20},
		{"gzip promises more than it can hold", gzipBytes(idxBytes(idxImagesMagic, []uint32{1000000, 28, 28}, noise[:1000])), lbl(1000000), 0, true,
			ErrTruncated, "-byte gzip file can hold (deflate expands at most 1032-fold)", 1 << 20},
		{"gzip promises more than there is", gzipBytes(idxBytes(idxImagesMagic, []uint32{60000, 28, 28}, noise)), lbl(60000), 0, true,
			ErrTruncated, "60000 images of 28×28 (47040000 bytes of data) but only 102400 follow after gunzip", 4 << 20},
		{"label count checked before the images are read", idxBytes(idxImagesMagic, []uint32{20000, 28, 28}, nil), lbl(19999), 16 + 20000*28*28, false,
			ErrCount, "has 20000 images but", 1 << 20},
		{"labels checked before the images are read", idxBytes(idxImagesMagic, []uint32{20000, 28, 28}, nil), idxBytes(idxLabelsMagic, []uint32{20000}, make([]byte, 19999)), 16 + 20000*28*28, false,
			ErrTruncated, "20000 labels", 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ip := writeFile(t, dir, "images", tc.img)
			lp := writeFile(t, dir, "labels", tc.lbl)
			if tc.sparse > 0 {
				if err := os.Truncate(ip, tc.sparse); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			got := allocated(func() { _, err = LoadIDX(ip, lp) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %v", err, tc.want)
			}
			name := lp
			if tc.inImages {
				name = ip
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "dataset: ") || !strings.Contains(msg, name) || !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q should start with \"dataset: \", name %s and mention %q", msg, name, tc.mention)
			}
			if got > tc.maxAlloc {
				t.Errorf("allocated %d bytes, want at most %d", got, tc.maxAlloc)
			}
		})
	}
}

// TestNotRegular: the readers refuse what is not a regular file (after
// symbolic links) instead of reading without end or blocking.
func TestNotRegular(t *testing.T) {
	good := func(dir string) {
		writeFile(t, dir, "test_batch.bin", cifarBytes(2, 1))
		writeFile(t, dir, "t10k-images-idx3-ubyte", idxBytes(idxImagesMagic, []uint32{2, 1, 1}, []byte{0, 1}))
		writeFile(t, dir, "t10k-labels-idx1-ubyte", idxBytes(idxLabelsMagic, []uint32{2}, []byte{0, 1}))
	}
	tests := []struct {
		name    string
		file    string                       // replaced by make
		make    func(t *testing.T, p string) // makes p something other than a regular file
		load    func(dir string) error
		mention string
	}{
		{"CIFAR batch links to /dev/zero", "test_batch.bin", symlinkTo("/dev/zero"), loadCIFAR10Test, "a symbolic link to /dev/zero, a character device"},
		{"CIFAR batch is a named pipe", "test_batch.bin", mkfifo, loadCIFAR10Test, "a named pipe"},
		{"CIFAR batch is a directory", "test_batch.bin", mkdir, loadCIFAR10Test, "a directory"},
		{"IDX images link to /dev/zero", "t10k-images-idx3-ubyte", symlinkTo("/dev/zero"), loadMNISTTest, "a symbolic link to /dev/zero, a character device"},
		{"IDX images are a named pipe", "t10k-images-idx3-ubyte", mkfifo, loadMNISTTest, "a named pipe"},
		{"IDX labels are a named pipe", "t10k-labels-idx1-ubyte", mkfifo, loadMNISTTest, "a named pipe"},
		{"IDX labels link to a named pipe", "t10k-labels-idx1-ubyte", func(t *testing.T, p string) {
			mkfifo(t, p+".fifo")
			symlinkTo(p+".fifo")(t, p)
		}, loadMNISTTest, ".fifo, a named pipe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			good(dir)
			if err := tc.load(dir); err != nil {
				t.Fatalf("before %s is replaced: %v", tc.file, err)
			}
			p := filepath.Join(dir, tc.file)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			tc.make(t, p)
			done := make(chan error, 1)
			go func() { done <- tc.load(dir) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("still reading %s after 20 s", p)
			}
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("error %v is not %v", err, ErrNotRegular)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "dataset: "+p+": not a regular file") || !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q should name %s and mention %q", msg, p, tc.mention)
			}
		})
	}
}

func loadCIFAR10Test(dir string) error { _, err := LoadCIFAR10(dir, "test"); return err }
func loadMNISTTest(dir string) error   { _, err := LoadMNISTDir(dir, "test"); return err }

func symlinkTo(target string) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		if _, err := os.Stat(target); err != nil && !strings.HasSuffix(target, ".fifo") {
			t.Skipf("no %s: %v", target, err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
	}
}

func mkdir(t *testing.T, p string) {
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCIFARLimit: files that add up to more pixels than MaxDataBytes are
// refused before they are read (the file here is a hole, read as zeros).
func TestCIFARLimit(t *testing.T) {
	dir := t.TempDir()
	const records = MaxDataBytes/cifarPixels + 1
	p := writeFile(t, dir, "train.bin", nil)
	if err := os.Truncate(p, records*(2+cifarPixels)); err != nil {
		t.Fatal(err)
	}
	var err error
	got := allocated(func() { _, err = LoadCIFAR100(dir, "train") })
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "349526 records") {
		t.Errorf("got %v, want an ErrLimit naming %s and the record count", err, dir)
	}
	if got > 1<<20 {
		t.Errorf("allocated %d bytes, want at most 1 MiB", got)
	}
}
