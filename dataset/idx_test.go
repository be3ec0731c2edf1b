package dataset

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadIDXRoundTrip(t *testing.T) {
	const n, h, w = 5, 3, 4
	pix := tinyImages(n, h, w)
	lab := tinyLabels(n)
	img := idxBytes(idxImagesMagic, []uint32{n, h, w}, pix)
	lbl := idxBytes(idxLabelsMagic, []uint32{n}, lab)
	for _, tc := range []struct {
		name       string
		imgGz, lGz bool
	}{
		{"raw", false, false},
		{"gzip", true, true},
		{"gzip images, raw labels", true, false},
		{"raw images, gzip labels", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ib, lb := img, lbl
			if tc.imgGz {
				ib = gzipBytes(ib)
			}
			if tc.lGz {
				lb = gzipBytes(lb)
			}
			// Names deliberately say nothing: the format is found by content.
			s, err := LoadIDX(writeFile(t, dir, "a", ib), writeFile(t, dir, "b", lb))
			if err != nil {
				t.Fatal(err)
			}
			checkSet(t, s)
			if s.Shape() != [4]int{n, 1, h, w} || s.Classes != 10 {
				t.Fatalf("got %v", s)
			}
			for i, b := range pix {
				if s.X[i] != float32(b)/255 {
					t.Fatalf("pixel %d: got %v, want %v", i, s.X[i], float32(b)/255)
				}
			}
			for i, b := range lab {
				if s.Y[i] != int64(b) {
					t.Fatalf("label %d: got %d, want %d", i, s.Y[i], b)
				}
			}
		})
	}
}

func TestLoadIDXErrors(t *testing.T) {
	const n, h, w = 4, 2, 3
	img := idxBytes(idxImagesMagic, []uint32{n, h, w}, tinyImages(n, h, w))
	lbl := idxBytes(idxLabelsMagic, []uint32{n}, tinyLabels(n))
	badCRC := gzipBytes(img)
	badCRC[len(badCRC)-8] ^= 0xff // the CRC-32 in the gzip trailer
	tests := []struct {
		name     string
		img, lbl []byte
		inImages bool   // the error must name the image file (else the label file)
		want     error  // sentinel
		mention  string // text the message must contain
	}{
		{"empty images", nil, lbl, true, ErrEmpty, "empty"},
		{"wrong image magic", idxBytes(0x00000804, []uint32{n, h, w, 1}, tinyImages(n, h, w)), lbl, true, ErrMagic, "0x00000804"},
		{"not IDX", []byte("<html>not found</html>"), lbl, true, ErrMagic, "not an IDX file"},
		{"float IDX", idxBytes(0x00000d03, []uint32{n, h, w}, nil), lbl, true, ErrMagic, "element type 0x0d"},
		{"swapped", lbl, img, true, ErrMagic, "swapped"},
		{"wrong label magic", img, idxBytes(0x00000803, []uint32{n, 1, 1}, tinyLabels(n)), false, ErrMagic, "swapped"},
		{"header truncated", img[:9], lbl, true, ErrTruncated, "too short for the 16-byte IDX header"},
		{"magic truncated", img[:3], lbl, true, ErrTruncated, "too short"},
		{"images truncated", img[:len(img)-1], lbl, true, ErrTruncated, "4 images of 2×3 (24 bytes of data) but only 23 follow"},
		{"labels truncated", img, lbl[:len(lbl)-2], false, ErrTruncated, "4 labels"},
		{"gzip truncated", gzipBytes(img)[:20], lbl, true, ErrTruncated, "truncated"},
		{"gzip checksum", badCRC, lbl, true, ErrCorrupt, "checksum"},
		{"gzip garbage after", append(gzipBytes(img), "not a gzip member"...), lbl, true, ErrCorrupt, "corrupt gzip"},
		{"gzip trailer cut", func() []byte { b := gzipBytes(img); return b[:len(b)-3] }(), lbl, true, ErrTruncated, "gzip stream ends early"},
		{"trailing data", append(img[:len(img):len(img)], 0), lbl, true, ErrTrailing, "more data than the 4 images of 2×3"},
		{"zero dimension", idxBytes(idxImagesMagic, []uint32{n, 0, w}, nil), lbl, true, ErrHeader, "4×0×3"},
		{"huge header", idxBytes(idxImagesMagic, []uint32{1 << 31, 1 << 16, 1 << 16}, nil), lbl, true, ErrHeader, "more than"},
		{"count mismatch", img, idxBytes(idxLabelsMagic, []uint32{n - 1}, tinyLabels(n-1)), false, ErrCount, "has 4 images but"},
		{"bad label", img, idxBytes(idxLabelsMagic, []uint32{n}, []byte{0, 1, 10, 3}), false, ErrLabel, "label 10 of example 2, want 0..9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ip := writeFile(t, dir, "images.idx", tc.img)
			lp := writeFile(t, dir, "labels.idx", tc.lbl)
			s, err := LoadIDX(ip, lp)
			if err == nil {
				t.Fatalf("no error; got %v", s)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			msg := err.Error()
			name := lp
			if tc.inImages {
				name = ip
			}
			if !strings.HasPrefix(msg, "dataset: ") || !strings.Contains(msg, name) || !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q should start with \"dataset: \" and mention %q and %q", msg, name, tc.mention)
			}
		})
	}
}

func TestLoadIDXMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadIDX(filepath.Join(dir, "nope"), filepath.Join(dir, "nope2"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("got %v", err)
	}
	// A directory is not a file.
	_, err = LoadIDX(dir, dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("got %v", err)
	}
}

func TestLoadMNISTDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, magic uint32, dims []uint32, data []byte, gz bool) {
		b := idxBytes(magic, dims, data)
		if gz {
			b = gzipBytes(b)
			name += ".gz"
		}
		writeFile(t, dir, name, b)
	}
	write("train-images-idx3-ubyte", idxImagesMagic, []uint32{6, 28, 28}, tinyImages(6, 28, 28), true)
	write("train-labels-idx1-ubyte", idxLabelsMagic, []uint32{6}, tinyLabels(6), true)
	write("t10k-images-idx3-ubyte", idxImagesMagic, []uint32{3, 28, 28}, tinyImages(3, 28, 28), false)
	write("t10k-labels-idx1-ubyte", idxLabelsMagic, []uint32{3}, tinyLabels(3), false)
	for split, n := range map[string]int{"train": 6, "test": 3} {
		s, err := LoadMNISTDir(dir, split)
		if err != nil {
			t.Fatal(err)
		}
		if s.Shape() != [4]int{n, 1, 28, 28} {
			t.Errorf("%s: got %v", split, s)
		}
		s2, err := Open("mnist:"+dir, split, 0)
		if err != nil || s2.N != n {
			t.Errorf("Open mnist:%s %s: %v, %v", dir, split, s2, err)
		}
		s3, err := Open("fashion-mnist:"+dir, split, 0)
		if err != nil || s3.N != n {
			t.Errorf("Open fashion-mnist:%s %s: %v, %v", dir, split, s3, err)
		}
	}
	if _, err := LoadMNISTDir(dir, "validation"); !errors.Is(err, ErrSplit) || !strings.Contains(err.Error(), `"validation"`) {
		t.Errorf("bad split: %v", err)
	}
	os.Remove(filepath.Join(dir, "t10k-labels-idx1-ubyte"))
	_, err := LoadMNISTDir(dir, "test")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "t10k-labels-idx1-ubyte.gz") || !strings.Contains(err.Error(), dir) {
		t.Errorf("missing file: %v", err)
	}
}

// TestFashionMNIST reads the real data where Debian's dataset-fashion-mnist
// is installed.
func TestFashionMNIST(t *testing.T) {
	if _, err := os.Stat(FashionMNISTDir); err != nil {
		t.Skipf("no Fashion-MNIST: %v", err)
	}
	for split, n := range map[string]int{"train": 60000, "test": 10000} {
		s, err := LoadFashionMNIST(split)
		if err != nil {
			t.Fatal(err)
		}
		if s.Shape() != [4]int{n, 1, 28, 28} || s.Classes != 10 {
			t.Fatalf("%s: got %v", split, s)
		}
		if err := CheckShape(s, 1, 28, 28); err != nil {
			t.Fatal(err)
		}
		checkSet(t, s)
		var perClass [10]int
		for _, y := range s.Y {
			perClass[y]++
		}
		for k, c := range perClass {
			if c != n/10 {
				t.Errorf("%s: class %d has %d examples, want %d", split, k, c, n/10)
			}
		}
		var top float32
		for _, v := range s.X {
			top = max(top, v)
		}
		if top != 1 {
			t.Errorf("%s: brightest pixel is %v, want 1", split, top)
		}
	}
}
