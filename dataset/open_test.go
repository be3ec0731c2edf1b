package dataset

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestOpenSynthetic(t *testing.T) {
	train, err := Open("synthetic", "train", 1)
	if err != nil {
		t.Fatal(err)
	}
	test, err := Open("synthetic", "test", 1)
	if err != nil {
		t.Fatal(err)
	}
	if train.Shape() != [4]int{2000, 1, 28, 28} || test.Shape() != [4]int{500, 1, 28, 28} || train.Classes != 10 {
		t.Fatalf("got %v and %v", train, test)
	}
	if slices.Equal(train.X[:784], test.X[:784]) {
		t.Fatal("train and test start with the same example")
	}
	again, _ := Open("synthetic", "train", 1)
	other, _ := Open("synthetic", "train", 2)
	if !slices.Equal(train.X, again.X) || slices.Equal(train.X, other.X) {
		t.Fatal("synthetic data is not fixed by the seed")
	}
	for _, spec := range []string{"synthetic:3x32x32", "synthetic:3×32×32"} {
		s, err := Open(spec, "test", 1)
		if err != nil || s.Shape() != [4]int{500, 3, 32, 32} {
			t.Fatalf("%s: %v, %v", spec, s, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		spec, split string
		want        error
		mention     string
	}{
		{"imagenet", "train", ErrSpec, `"imagenet"; want one of "fashion-mnist", "fashion-mnist:DIR", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "synthetic"`},
		{"", "train", ErrSpec, "want one of"},
		{"synthetic:3x32", "train", ErrSpec, "synthetic:CxHxW"},
		{"synthetic:0x32x32", "train", ErrSpec, "synthetic:CxHxW"},
		{"synthetic:4096x4096x4096", "train", ErrLimit, "4096 channels; synthetic data has at most 16"},
		{"synthetic:1x4096x28", "train", ErrLimit, "images of 4096×28; synthetic data is at most 1024×1024"},
		{"synthetic:3x256x256", "test", ErrLimit, "2000 training images of 3×256×256 are 1572864000 bytes of float32; synthetic data takes at most 1073741824 (C×H×W ≤ 134217)"},
		{"synthetic:1x99999999999999999999x1", "train", ErrSpec, `"99999999999999999999" is not a positive whole number`},
		{"synthetic:1x-8x8", "train", ErrSpec, `"-8" is not a positive whole number`},
		{"synthetic", "valid", ErrSplit, `"valid": want "train" or "test"`},
		{"mnist", "train", nil, "needs a directory: mnist:DIR"},
		{"cifar10", "train", nil, "needs a directory: cifar10:DIR"},
		{"cifar100:", "train", nil, "nothing after the colon"},
		{"cifar10:/nonexistent/dir", "test", nil, "/nonexistent/dir/test_batch.bin"},
	} {
		s, err := Open(tc.spec, tc.split, 0)
		if err == nil {
			t.Errorf("Open(%q, %q): no error, got %v", tc.spec, tc.split, s)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Open(%q, %q): %v is not %v", tc.spec, tc.split, err, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "dataset: ") || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("Open(%q, %q): %q should mention %q", tc.spec, tc.split, err, tc.mention)
		}
	}
}

// TestParseCHW: the limits of synthetic:CxHxW, at their edges.
func TestParseCHW(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		want    [3]int
		wantErr error
	}{
		{"3x32x32", [3]int{3, 32, 32}, nil},
		{"16x8x8", [3]int{16, 8, 8}, nil},
		{"17x8x8", [3]int{}, ErrLimit},
		{"1x1024x1", [3]int{1, 1024, 1}, nil},
		{"1x1x1025", [3]int{}, ErrLimit},
		{"1x366x366", [3]int{1, 366, 366}, nil}, // 133956 values an image
		{"1x367x366", [3]int{}, ErrLimit},       // 134322
		{"3x211x211", [3]int{3, 211, 211}, nil},
		{"3x212x212", [3]int{}, ErrLimit},
		{"0x8x8", [3]int{}, ErrSpec},
		{"3x32", [3]int{}, ErrSpec},
		{"axbxc", [3]int{}, ErrSpec},
	} {
		c, h, w, err := parseCHW(tc.arg)
		if !errors.Is(err, tc.wantErr) || err == nil && [3]int{c, h, w} != tc.want {
			t.Errorf("parseCHW(%q) = %d, %d, %d, %v; want %v, %v", tc.arg, c, h, w, err, tc.want, tc.wantErr)
		}
	}
}
