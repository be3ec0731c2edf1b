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
