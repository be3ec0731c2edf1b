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
			var ok bool
			if c, h, w, ok = parseCHW(arg); !ok {
				return nil, fmt.Errorf("dataset: %w %q: want synthetic or synthetic:CxHxW, for example synthetic:3x32x32", ErrSpec, spec)
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

// parseCHW parses "3x32x32" (or with ×) into positive sizes.
func parseCHW(s string) (c, h, w int, ok bool) {
	parts := strings.Split(strings.ReplaceAll(s, "×", "x"), "x")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 4096 {
			return 0, 0, 0, false
		}
		v[i] = n
	}
	return v[0], v[1], v[2], true
}
