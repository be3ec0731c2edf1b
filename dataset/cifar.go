package dataset

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cifarPixels is the size of one CIFAR image: 3×32×32 bytes, CHW.
const cifarPixels = 3 * 32 * 32

// LoadCIFAR10 reads split ("train" or "test") of the CIFAR-10 binary version
// from dir: data_batch_1.bin … data_batch_5.bin for train, test_batch.bin for
// test. Each record is one label byte (0..9) and 3072 pixel bytes (CHW). If
// dir holds the extracted folder cifar-10-batches-bin instead, that is used.
func LoadCIFAR10(dir, split string) (*Set, error) {
	if err := checkSplit(split); err != nil {
		return nil, err
	}
	names := []string{"test_batch.bin"}
	if split == "train" {
		names = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
	}
	return loadCIFAR(resolveDir(dir, "cifar-10-batches-bin", names[0]), names, 1, 10)
}

// LoadCIFAR100 reads split ("train" or "test") of the CIFAR-100 binary
// version from dir: train.bin or test.bin. Each record is a coarse label byte
// (0..19), a fine label byte (0..99) and 3072 pixel bytes (CHW); the Set uses
// the fine labels. If dir holds the extracted folder cifar-100-binary
// instead, that is used.
func LoadCIFAR100(dir, split string) (*Set, error) {
	if err := checkSplit(split); err != nil {
		return nil, err
	}
	name := split + ".bin"
	return loadCIFAR(resolveDir(dir, "cifar-100-binary", name), []string{name}, 2, 100)
}

// resolveDir returns dir/sub if first is missing from dir but present there.
func resolveDir(dir, sub, first string) string {
	if _, err := os.Stat(filepath.Join(dir, first)); err != nil {
		if _, err := os.Stat(filepath.Join(dir, sub, first)); err == nil {
			return filepath.Join(dir, sub)
		}
	}
	return dir
}

func loadCIFAR(dir string, names []string, labelBytes, classes int) (*Set, error) {
	rec := labelBytes + cifarPixels
	paths := make([]string, len(names))
	var size int64
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
		fi, err := os.Stat(paths[i])
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, notRegular(paths[i], fi.Mode())
		}
		size += fi.Size()
	}
	if pix := size / int64(rec) * cifarPixels; pix > MaxDataBytes {
		return nil, fmt.Errorf("dataset: %s: %w: %s hold %d bytes, %d records of %d pixels, more than the %d pixel bytes of a split this reader accepts",
			dir, ErrLimit, strings.Join(names, ", "), size, size/int64(rec), cifarPixels, int64(MaxDataBytes))
	}
	s := &Set{C: 3, H: 32, W: 32, Classes: classes}
	s.X = make([]float32, 0, size/int64(rec)*cifarPixels)
	s.Y = make([]int64, 0, size/int64(rec))
	// What the files add up to may not grow between the Stat and the read.
	left := size
	for _, p := range paths {
		b, err := readRegular(p, left, "CIFAR data left for this split")
		if err != nil {
			return nil, err
		}
		left -= int64(len(b))
		if s.X, s.Y, err = appendCIFAR(s.X, s.Y, b, p, labelBytes, classes); err != nil {
			return nil, err
		}
	}
	s.N = len(s.Y)
	return s, nil
}

// decodeCIFAR decodes one CIFAR binary file held in b.
func decodeCIFAR(b []byte, name string, labelBytes, classes int) (*Set, error) {
	x, y, err := appendCIFAR(nil, nil, b, name, labelBytes, classes)
	if err != nil {
		return nil, err
	}
	return &Set{N: len(y), C: 3, H: 32, W: 32, Classes: classes, X: x, Y: y}, nil
}

// appendCIFAR checks the CIFAR records in b (labelBytes label bytes, the last
// of which is the label, then 3072 pixels) and appends them to x and y.
func appendCIFAR(x []float32, y []int64, b []byte, name string, labelBytes, classes int) ([]float32, []int64, error) {
	rec := labelBytes + cifarPixels
	if len(b) == 0 {
		return x, y, fmt.Errorf("dataset: %s: %w", name, ErrEmpty)
	}
	if len(b)%rec != 0 {
		kind, other := "CIFAR-10", "CIFAR-100"
		if labelBytes == 2 {
			kind, other = other, kind
		}
		hint := ""
		if len(b)%(3-labelBytes+cifarPixels) == 0 {
			hint = fmt.Sprintf("; it looks like %s data", other)
		}
		return x, y, fmt.Errorf("dataset: %s: %w: %d bytes is not a whole number of %d-byte %s records (%d label byte(s) + %d pixels)%s",
			name, ErrSize, len(b), rec, kind, labelBytes, cifarPixels, hint)
	}
	n := len(b) / rec
	for i := 0; i < n; i++ {
		r := b[i*rec:]
		if labelBytes == 2 && r[0] >= 20 {
			return x, y, fmt.Errorf("dataset: %s: %w: record %d has coarse label %d, want 0..19", name, ErrLabel, i, r[0])
		}
		if l := int(r[labelBytes-1]); l >= classes {
			return x, y, fmt.Errorf("dataset: %s: %w: record %d has label %d, want 0..%d", name, ErrLabel, i, l, classes-1)
		}
	}
	x0 := len(x)
	x = append(x, make([]float32, n*cifarPixels)...)
	for i := 0; i < n; i++ {
		r := b[i*rec : (i+1)*rec]
		y = append(y, int64(r[labelBytes-1]))
		bytesToUnit(x[x0+i*cifarPixels:], r[labelBytes:])
	}
	return x, y, nil
}
