package dataset

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestLoadCIFAR10(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 5; i++ {
		writeFile(t, dir, "data_batch_"+string(rune('0'+i))+".bin", cifarBytes(i, 1))
	}
	writeFile(t, dir, "test_batch.bin", cifarBytes(4, 1))
	train, err := LoadCIFAR10(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, train)
	if train.Shape() != [4]int{15, 3, 32, 32} || train.Classes != 10 {
		t.Fatalf("got %v", train)
	}
	// Files are read in order: batch 1 (1 record), batch 2 (2), ...
	k := 0
	for f := 1; f <= 5; f++ {
		for i := range f {
			if train.Y[k] != int64(i%10) {
				t.Fatalf("example %d: label %d, want %d", k, train.Y[k], i%10)
			}
			for _, j := range []int{0, 1, 1024, cifarPixels - 1} {
				if want := float32(byte(i+j)) / 255; train.X[k*cifarPixels+j] != want {
					t.Fatalf("example %d pixel %d: %v, want %v", k, j, train.X[k*cifarPixels+j], want)
				}
			}
			k++
		}
	}
	test, err := Open("cifar10:"+dir, "test", 0)
	if err != nil || test.N != 4 {
		t.Fatalf("test: %v, %v", test, err)
	}
}

func TestLoadCIFAR100(t *testing.T) {
	dir := t.TempDir()
	// The extracted tarball's folder is found too.
	writeFile(t, dir, "cifar-100-binary/train.bin", cifarBytes(7, 2))
	writeFile(t, dir, "cifar-100-binary/test.bin", cifarBytes(2, 2))
	s, err := LoadCIFAR100(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s)
	if s.Shape() != [4]int{7, 3, 32, 32} || s.Classes != 100 {
		t.Fatalf("got %v", s)
	}
	for i, y := range s.Y {
		if y != int64(3*i%100) {
			t.Fatalf("example %d: fine label %d, want %d", i, y, 3*i%100)
		}
	}
	if s, err := Open("cifar100:"+dir, "test", 0); err != nil || s.N != 2 {
		t.Fatalf("test: %v, %v", s, err)
	}
}

func TestLoadCIFARErrors(t *testing.T) {
	badLabel := cifarBytes(3, 1)
	badLabel[2*(1+cifarPixels)] = 10
	badCoarse := cifarBytes(3, 2)
	badCoarse[1*(2+cifarPixels)] = 20
	badFine := cifarBytes(3, 2)
	badFine[2*(2+cifarPixels)+1] = 100
	tests := []struct {
		name    string
		hundred bool
		data    []byte
		want    error
		mention string
	}{
		{"empty", false, nil, ErrEmpty, "empty"},
		{"size", false, cifarBytes(2, 1)[:6000], ErrSize, "6000 bytes is not a whole number of 3073-byte CIFAR-10 records"},
		{"cifar-100 given as 10", false, cifarBytes(2, 2), ErrSize, "looks like CIFAR-100"},
		{"cifar-10 given as 100", true, cifarBytes(2, 1), ErrSize, "looks like CIFAR-10"},
		{"label", false, badLabel, ErrLabel, "record 2 has label 10, want 0..9"},
		{"coarse label", true, badCoarse, ErrLabel, "record 1 has coarse label 20, want 0..19"},
		{"fine label", true, badFine, ErrLabel, "record 2 has label 100, want 0..99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var err error
			var path string
			if tc.hundred {
				path = writeFile(t, dir, "test.bin", tc.data)
				_, err = LoadCIFAR100(dir, "test")
			} else {
				path = writeFile(t, dir, "test_batch.bin", tc.data)
				_, err = LoadCIFAR10(dir, "test")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %v", err, tc.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "dataset: "+path+": ") || !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q should name %s and mention %q", msg, path, tc.mention)
			}
		})
	}
	dir := t.TempDir()
	writeFile(t, dir, "data_batch_1.bin", cifarBytes(1, 1))
	if _, err := LoadCIFAR10(dir, "train"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "data_batch_2.bin") {
		t.Errorf("missing batch file: %v", err)
	}
	if _, err := LoadCIFAR10(dir, "val"); !errors.Is(err, ErrSplit) {
		t.Errorf("bad split: %v", err)
	}
}
