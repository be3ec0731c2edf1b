package dataset

import (
	"fmt"
	"strconv"
	"strings"
)

// Sizes of the "synthetic" data spec.
const (
	SyntheticTrain = 2000
	SyntheticTest  = 500
)

// specForms lists the data specs Open accepts, for its errors.
const specForms = `"fashion-mnist", "fashion-mnist:DIR", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "synthetic", "synthetic:CxHxW"`

// Open returns split ("train" or "test") of the data named by spec:
//
//	fashion-mnist       Fashion-MNIST from FashionMNISTDir (Debian's dataset-fashion-mnist)
//	fashion-mnist:DIR   Fashion-MNIST IDX files in DIR (see LoadMNISTDir)
//	mnist:DIR           MNIST IDX files in DIR (see LoadMNISTDir)
//	cifar10:DIR         CIFAR-10 binary version in DIR (see LoadCIFAR10)
//	cifar100:DIR        CIFAR-100 binary version in DIR (see LoadCIFAR100)
//	synthetic           Synthetic 1×28×28, 10 classes, 2000 train / 500 test examples
//	synthetic:CxHxW     the same with C×H×W images, for example synthetic:3x32x32
//	                    (C ≤ SyntheticMaxChannels, H, W ≤ MaxSide, at most
//	                    SyntheticMaxBytes of float32 for the training split)
//
// seed only matters for synthetic data, where train and test are different
// samples of the same task.
func Open(spec, split string, seed uint64) (*Set, error) {
	if err := checkSplit(split); err != nil {
		return nil, err
	}
	name, arg, hasArg := strings.Cut(spec, ":")
	if hasArg && arg == "" {
		return nil, fmt.Errorf("dataset: data spec %q has nothing after the colon", spec)
	}
	switch name {
	case "fashion-mnist":
		if !hasArg {
			return LoadFashionMNIST(split)
		}
		return LoadMNISTDir(arg, split)
	case "mnist", "cifar10", "cifar100":
		if !hasArg {
			return nil, fmt.Errorf("dataset: data spec %q needs a directory: %s:DIR", spec, name)
		}
		switch name {
		case "mnist":
			return LoadMNISTDir(arg, split)
		case "cifar10":
			return LoadCIFAR10(arg, split)
		default:
			return LoadCIFAR100(arg, split)
		}
	case "synthetic":
		c, h, w := 1, 28, 28
		if hasArg {
			var err error
			if c, h, w, err = parseCHW(arg); err != nil {
				return nil, fmt.Errorf("dataset: %s: %w", spec, err)
			}
		}
		n, part := SyntheticTrain, uint64(0)
		if split == "test" {
			n, part = SyntheticTest, 1
		}
		r := seeded(seed, domainSplit, part, 0)
		return Synthetic(n, c, h, w, 10, r.next()), nil
	}
	return nil, fmt.Errorf("dataset: %w %q; want one of %s", ErrSpec, spec, specForms)
}

// parseCHW parses "3x32x32" (or with ×) into positive sizes within the
// limits of synthetic data: at most SyntheticMaxChannels channels, MaxSide
// pixels a side, and SyntheticMaxBytes of float32 for the training split.
func parseCHW(s string) (c, h, w int, err error) {
	parts := strings.Split(strings.ReplaceAll(s, "×", "x"), "x")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("%w: want synthetic or synthetic:CxHxW, for example synthetic:3x32x32", ErrSpec)
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return 0, 0, 0, fmt.Errorf("%w: %q is not a positive whole number; want synthetic:CxHxW, for example synthetic:3x32x32", ErrSpec, p)
		}
		v[i] = n
	}
	c, h, w = v[0], v[1], v[2]
	switch {
	case c > SyntheticMaxChannels:
		return 0, 0, 0, fmt.Errorf("%w: %d channels; synthetic data has at most %d", ErrLimit, c, SyntheticMaxChannels)
	case h > MaxSide || w > MaxSide:
		return 0, 0, 0, fmt.Errorf("%w: images of %d×%d; synthetic data is at most %d×%d", ErrLimit, h, w, MaxSide, MaxSide)
	}
	if bytes := int64(SyntheticTrain) * int64(c*h*w) * 4; bytes > SyntheticMaxBytes {
		return 0, 0, 0, fmt.Errorf("%w: %d training images of %d×%d×%d are %d bytes of float32; synthetic data takes at most %d (C×H×W ≤ %d)",
			ErrLimit, SyntheticTrain, c, h, w, bytes, SyntheticMaxBytes, SyntheticMaxBytes/4/SyntheticTrain)
	}
	return c, h, w, nil
}
