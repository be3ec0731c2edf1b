package orchestrator_test

import (
	"context"
	"fmt"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/orchestrator"
)

// Training embedded in a Go program: a config struct, Run(ctx), nothing
// written to stdout or stderr (Logger nil, Out empty), and hooks that
// collect the metrics the host wants — here a snapshot the host could serve
// from another goroutine. Cancel ctx to stop early (with Out set, the run
// is checkpointed and can resume).
func ExampleTrainer_Run() {
	if err := ort.Init(""); err != nil { // once per process
		fmt.Println(err)
		return
	}
	model, err := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := orchestrator.DefaultConfig()
	cfg.Forward = model
	cfg.Train = dataset.Synthetic(256, 1, 8, 8, 4, 1)
	cfg.Holdout = dataset.Synthetic(64, 1, 8, 8, 4, 2)
	cfg.Method, cfg.Epochs, cfg.Batch, cfg.Eps = "slat", 2, 32, 0.05
	cfg.Runtime = ort.Options{Threads: 1} // Provider: "cuda", DeviceID: 0 for a GPU
	cfg.Logger = nil                      // silent; os.Stderr prints progress lines

	var steps int
	var losses []float32
	var probes []float64
	cfg.Hooks = orchestrator.Hooks{
		OnStep: func(s orchestrator.StepInfo) error {
			steps++
			losses = append(losses, s.Loss)
			return nil // an error here stops the run with it
		},
		OnEpoch: func(e orchestrator.EpochMetrics) error {
			probes = append(probes, e.Probe.Robust)
			return nil
		},
	}
	tr, err := orchestrator.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	res, err := tr.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("steps seen by OnStep:", steps, "of", res.Steps)
	fmt.Println("probes seen by OnEpoch:", len(probes))
	fmt.Println("loss went down:", losses[len(losses)-1] < losses[0])
	fmt.Println("robust accuracy in [0,1]:", res.Final().Probe.Robust >= 0 && res.Final().Probe.Robust <= 1)
	// Output:
	// steps seen by OnStep: 16 of 16
	// probes seen by OnEpoch: 2
	// loss went down: true
	// robust accuracy in [0,1]: true
}
