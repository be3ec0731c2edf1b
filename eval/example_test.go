package eval_test

import (
	"context"
	"fmt"
	"os"

	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/onnx"
	"github.com/slatrun/slatrun/onnx/ort"
)

func ExampleParseAttacks() {
	specs, err := eval.ParseAttacks("fgsm, pgd-50-10, pgd-cw-50, apgd-ce, apgd-t")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range specs {
		fmt.Printf("%-10s %-6s %-5s steps %3d, restarts %2d, step %gε, targets %d\n", s.Name, s.Kind, s.Loss, s.Steps, s.Restarts, s.Step, s.Targets)
	}
	_, err = eval.ParseAttacks("pgd50")
	fmt.Println(err != nil)
	// Output:
	// fgsm       fgsm   ce    steps   1, restarts  1, step 1ε, targets 0
	// pgd-50-10  pgd    ce    steps  50, restarts 10, step 0.25ε, targets 0
	// pgd-cw-50  pgd    cw    steps  50, restarts  1, step 0.25ε, targets 0
	// apgd-ce    apgd   ce    steps 100, restarts  1, step 2ε, targets 0
	// apgd-t     apgd-t dlr-t steps 100, restarts  1, step 2ε, targets 9
	// true
}

// Example shows a whole evaluation: eval graphs in (one per loss head, here
// loaded from files that graphs would derive), a report out.
func Example() {
	if err := ort.Init(""); err != nil {
		fmt.Println(err)
		return
	}
	graphs := map[string]*onnx.Model{}
	for _, head := range []string{eval.HeadCE, eval.HeadCW, eval.HeadDLRT} {
		m, err := onnx.Load("runs/demo/eval-" + head + ".onnx")
		if err != nil {
			fmt.Println(err)
			return
		}
		graphs[head] = m
	}
	c, err := eval.NewClassifier(graphs, ort.Options{Threads: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	attacks, err := eval.ParseAttacks(eval.StandardAttacks)
	if err != nil {
		fmt.Println(err)
		return
	}
	var x []float32 // N×C×H×W pixels in [0,1], e.g. a dataset.Set's X
	var y []int64   // its labels, e.g. the Set's Y
	rep, err := eval.Evaluate(context.Background(), c, x, y, eval.Config{Eps: 0.1, Attacks: attacks, Seed: 0, N: 1000})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(rep.Table())
	fmt.Fprintf(os.Stderr, "worst case %.2f%%\n", 100*rep.WorstCase)
}
