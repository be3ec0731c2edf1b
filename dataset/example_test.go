package dataset_test

import (
	"fmt"

	"github.com/slatrun/slatrun/dataset"
)

func ExampleNewLoader() {
	set := dataset.Synthetic(10, 1, 28, 28, 10, 1)
	l := dataset.NewLoader(set, 4, true, 7)
	l.Augment = dataset.DefaultAugment()
	x := make([]float32, 4*1*28*28) // one batch, NCHW
	y := make([]int64, 4)
	for epoch := range 2 {
		l.Epoch(epoch)
		for l.Next(x, y) {
			fmt.Print(l.Count(), " ")
		}
		fmt.Println("of", l.Batches(), "batches")
	}
	l.DropLast = true
	fmt.Println("drop last:", l.Batches(), "batches")
	// Output:
	// 4 4 2 of 3 batches
	// 4 4 2 of 3 batches
	// drop last: 2 batches
}

func ExampleLoader_Seek() {
	set := dataset.Synthetic(100, 1, 8, 8, 10, 1)
	l := dataset.NewLoader(set, 10, true, 1)
	x, y := make([]float32, 10*64), make([]int64, 10)
	l.Epoch(3)
	l.Next(x, y)
	l.Next(x, y)
	epoch, batch := l.Position() // what a checkpoint records
	l.Next(x, y)
	want := y[0]

	resumed := dataset.NewLoader(set, 10, true, 1)
	resumed.Seek(epoch, batch)
	resumed.Next(x, y)
	fmt.Println(epoch, batch, y[0] == want)
	// Output: 3 2 true
}

func ExampleOpen() {
	train, err := dataset.Open("synthetic", "train", 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	train, held := dataset.Split(train, 200)
	fmt.Println(train)
	fmt.Println(held)
	fmt.Println(dataset.CheckShape(train, 3, 32, 32))
	_, err = dataset.Open("imagenet", "train", 1)
	fmt.Println(err)
	// Output:
	// 1800×1×28×28, 10 classes
	// 200×1×28×28, 10 classes
	// dataset: shape mismatch: data is 1×28×28 but the model expects 3×32×32
	// dataset: unknown data spec "imagenet"; want one of "fashion-mnist", "fashion-mnist:DIR", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "synthetic", "synthetic:CxHxW"
}
