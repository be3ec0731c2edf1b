package orchestrator_test

import (
	"context"
	"fmt"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/orchestrator"
)

// Train the zoo's small MLP with SLAT for two epochs on synthetic data,
// probing a held-out slice after each epoch. (ort.Init must have been
// called; this package's TestMain does it.)
func Example() {
	model, err := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	if err != nil {
		panic(err)
	}
	cfg := orchestrator.DefaultConfig()
	cfg.Forward = model
	cfg.Train = dataset.Synthetic(512, 1, 8, 8, 4, 1)
	cfg.Holdout = dataset.Synthetic(64, 1, 8, 8, 4, 2)
	cfg.Method, cfg.Epochs, cfg.Batch, cfg.Eps = "slat", 2, 32, 0.05
	cfg.Runtime = ort.Options{Threads: 1}
	// cfg.Out = "runs/example" would write the run directory.
	tr, err := orchestrator.New(cfg)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	res, err := tr.Run(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println("taps:", tr.Taps())
	fmt.Println("optimizer steps:", res.Steps)
	fmt.Println("epochs:", len(res.Epochs))
	fmt.Println("probe clean accuracy above 80%:", res.Final().Probe.Clean > 0.8)
	// Output:
	// taps: [hidden]
	// optimizer steps: 32
	// epochs: 2
	// probe clean accuracy above 80%: true
}
