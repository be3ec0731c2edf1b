package metrics_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/metrics"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/orchestrator"
	"github.com/slatrun/slatrun/predict"
)

// A host registers the metrics in its own registry and wires them into the
// training hooks and a Predictor; serving the registry (promhttp) is the
// host's business.
func Example() {
	if err := ort.Init(""); err != nil {
		fmt.Println(err)
		return
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(metrics.Options{ConstLabels: prometheus.Labels{"run": "demo"}})
	reg.MustRegister(m)

	model, _ := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	cfg := orchestrator.DefaultConfig()
	cfg.Forward = model
	cfg.Train = dataset.Synthetic(256, 1, 8, 8, 4, 1)
	cfg.Holdout = dataset.Synthetic(64, 1, 8, 8, 4, 2)
	cfg.Method, cfg.Epochs, cfg.Batch, cfg.Eps = "fgsm-rs", 2, 32, 0.05
	cfg.Runtime = ort.Options{Threads: 1}
	cfg.Hooks = m.Hooks(cfg.Hooks) // keeps any hooks already set
	tr, err := orchestrator.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	if _, err := tr.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	ckpt, _ := tr.Checkpoint() // the forward graph with the trained weights
	p, err := predict.New(ckpt, predict.Options{Observe: m.ObservePrediction})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	x := dataset.Synthetic(5, 1, 8, 8, 4, 3).X
	p.Predict(context.Background(), x, 5)
	p.Predict(context.Background(), x[:10], 1) // wrong size: counted as bad_input

	s := m.Snapshot()
	fmt.Println("steps:", s.Steps, "epochs:", s.Epochs, "predictions:", s.Predictions, "errors:", s.PredictErrors)
	fmt.Println("slatrun_train_steps_total:", testutil.ToFloat64(m.TrainSteps))
	fmt.Println("slatrun_clean_accuracy_ratio > 0.5:", testutil.ToFloat64(m.CleanAccuracy) > 0.5)
	fmt.Println("series:", testutil.CollectAndCount(m))
	err = testutil.CollectAndCompare(m, strings.NewReader(`
# HELP slatrun_predictions_total Predict calls, by outcome (ok, bad_input, canceled, closed, error).
# TYPE slatrun_predictions_total counter
slatrun_predictions_total{outcome="bad_input",run="demo"} 1
slatrun_predictions_total{outcome="canceled",run="demo"} 0
slatrun_predictions_total{outcome="closed",run="demo"} 0
slatrun_predictions_total{outcome="error",run="demo"} 0
slatrun_predictions_total{outcome="ok",run="demo"} 1
# HELP slatrun_prediction_images_total Images classified by successful Predict calls.
# TYPE slatrun_prediction_images_total counter
slatrun_prediction_images_total{run="demo"} 5
`), "slatrun_predictions_total", "slatrun_prediction_images_total")
	fmt.Println("compare:", err)
	// Output:
	// steps: 16 epochs: 2 predictions: 2 errors: 1
	// slatrun_train_steps_total: 16
	// slatrun_clean_accuracy_ratio > 0.5: true
	// series: 18
	// compare: <nil>
}
