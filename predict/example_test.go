package predict_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx/ort"
	"github.com/slatrun/slatrun/predict"
)

// Serve a checkpoint: Open its model.onnx once, then call Predict from as
// many goroutines as you like.
func ExampleOpen() {
	if err := ort.Init(""); err != nil { // once per process
		fmt.Println(err)
		return
	}
	// A stand-in for runs/NAME/model.onnx.
	dir, _ := os.MkdirTemp("", "predict")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.onnx")
	m, _ := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	if err := m.Save(path); err != nil {
		fmt.Println(err)
		return
	}

	p, err := predict.Open(path, predict.Options{}) // a pool of CPU sessions
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	c, h, w := p.Shape()
	fmt.Printf("input %d×%d×%d, %d classes\n", c, h, w, p.Classes())

	x := dataset.Synthetic(3, 1, 8, 8, 4, 1).X // three images, NCHW in [0,1]
	logits, probs, err := p.Predict(context.Background(), x, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(logits), "logits,", len(probs), "probabilities")
	fmt.Println("classes agree:", fmt.Sprint(predict.Classify(logits, 4)) == fmt.Sprint(predict.Classify(probs, 4)))

	_, _, err = p.Predict(context.Background(), x[:100], 1)
	fmt.Println(err)
	// Output:
	// input 1×8×8, 4 classes
	// 12 logits, 12 probabilities
	// classes agree: true
	// predict: bad input: got 100 values for n = 1 images; want n×C×H×W = 1×1×8×8 = 64 (n ≥ 1)
}

// Robustness evaluates a forward graph under attacks in one call.
func ExampleRobustness() {
	if err := ort.Init(""); err != nil {
		fmt.Println(err)
		return
	}
	forward, _ := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1}) // or onnx.Load("runs/NAME/model.onnx")
	attacks, _ := eval.ParseAttacks("fgsm,pgd-10")
	test := dataset.Synthetic(64, 1, 8, 8, 4, 9)
	rep, err := predict.Robustness(context.Background(), forward, test.X, test.Y,
		eval.Config{Eps: 0.05, Attacks: attacks, Seed: 1},
		predict.EvalOptions{Batch: 32, Runtime: ort.Options{Threads: 1}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("examples:", rep.N, "attacks:", len(rep.Attacks))
	fmt.Println("worst case ≤ clean:", rep.WorstCase <= rep.Clean)
	// Output:
	// examples: 64 attacks: 2
	// worst case ≤ clean: true
}
