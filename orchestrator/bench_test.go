package orchestrator

import (
	"context"
	"testing"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
)

// benchConfig is the recipe on a Fashion-MNIST-shaped synthetic
// set: convnet width 16, batch 128, ε = 0.1.
func benchConfig(b *testing.B, method string, train *dataset.Set) Config {
	m, err := zoo.Build("convnet", zoo.Config{Width: 16, Seed: 0})
	if err != nil {
		b.Fatal(err)
	}
	c := DefaultConfig()
	c.Forward, c.Train, c.Method = m, train, method
	c.Epochs, c.Batch, c.Eps, c.LogEvery = 1, 128, 0.1, 0
	c.Runtime = ort.Options{}
	return c
}

// BenchmarkStep measures one training step of each method, with the
// convolutions in ONNX Runtime's NCHWc kernels (the CPU default) and in the
// plain NCHW ones (ns/op is one minibatch of 128; allocs/op must be 0).
func BenchmarkStep(b *testing.B) {
	train := dataset.Synthetic(1280, 1, 28, 28, 10, 1)
	for _, method := range []string{"standard", "fgsm", "fgsm-rs", "slat"} {
		for _, layout := range []string{"nchwc", "plain"} {
			b.Run(method+"/"+layout, func(b *testing.B) {
				cfg := benchConfig(b, method, train)
				cfg.Runtime.PlainConv = layout == "plain"
				benchStep(b, cfg)
			})
		}
	}
}

func benchStep(b *testing.B, cfg Config) {
	tr, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	next := func() {
		if !tr.loader.Next(tr.x, tr.y) {
			tr.loader.Epoch(0)
			tr.loader.Next(tr.x, tr.y)
		}
	}
	next()
	if err := tr.step(); err != nil { // warm up
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		next()
		if err := tr.step(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEpochFashionMNIST trains one epoch on the first 10000
// Fashion-MNIST training images (skipped when the data is not installed)
// and reports seconds per epoch.
func BenchmarkEpochFashionMNIST(b *testing.B) {
	set, err := dataset.Open("fashion-mnist", "train", 0)
	if err != nil {
		b.Skip(err)
	}
	train := set.Slice(0, 10000)
	for _, method := range []string{"fgsm-rs", "slat"} {
		b.Run(method, func(b *testing.B) {
			for b.Loop() {
				tr, err := New(benchConfig(b, method, train))
				if err != nil {
					b.Fatal(err)
				}
				res, err := tr.Run(context.Background())
				tr.Close()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.Final().Seconds, "s/epoch")
				b.ReportMetric(res.Final().MsPerStep, "ms/step")
			}
		})
	}
}
