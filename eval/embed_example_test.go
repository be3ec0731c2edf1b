package eval_test

import (
	"context"
	"fmt"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

// Evaluation as a library call: derive one eval graph per loss head the
// attacks need from a forward graph (a checkpoint's model.onnx via
// onnx.Load, or here a zoo model), then Evaluate. predict.Robustness does
// the same in one call.
func ExampleEvaluate() {
	if err := ort.Init(""); err != nil {
		fmt.Println(err)
		return
	}
	forward, err := zoo.Build("mlp", zoo.Config{Classes: 4, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	attacks, err := eval.ParseAttacks("fgsm,pgd-10,pgd-cw-10")
	if err != nil {
		fmt.Println(err)
		return
	}
	const batch = 32
	heads := map[string]*onnx.Model{}
	for _, head := range []string{eval.HeadCE, eval.HeadCW} {
		g, err := graphs.Derive(forward, graphs.Spec{Kind: graphs.Eval, Batch: batch, Loss: head})
		if err != nil {
			fmt.Println(err)
			return
		}
		heads[head] = g
	}
	c, err := eval.NewClassifier(heads, ort.Options{Threads: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	test := dataset.Synthetic(100, 1, 8, 8, 4, 9)
	rep, err := eval.Evaluate(context.Background(), c, test.X, test.Y, eval.Config{Eps: 0.05, Attacks: attacks, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("examples:", rep.N, "batch:", rep.Batch)
	for _, a := range rep.Attacks {
		fmt.Printf("%s: accuracy ≤ clean: %v\n", a.Name, a.Accuracy <= rep.Clean)
	}
	fmt.Println("worst case ≤ every attack:", rep.WorstCase <= rep.Attacks[1].Accuracy && rep.WorstCase <= rep.Attacks[2].Accuracy)
	// Output:
	// examples: 100 batch: 32
	// fgsm: accuracy ≤ clean: true
	// pgd-10: accuracy ≤ clean: true
	// pgd-cw-10: accuracy ≤ clean: true
	// worst case ≤ every attack: true
}
