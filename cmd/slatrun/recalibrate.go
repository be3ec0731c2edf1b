package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/orchestrator"
	"github.com/slatrun/slatrun/recalibrate"
)

func init() {
	register(command{name: "recalibrate", summary: "recompute a model's batch-norm running statistics on clean training images", run: runRecalibrate})
}

func runRecalibrate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("recalibrate", "recalibrate --model M.onnx --data SPEC [--train-n 6400] -o|--out OUT.onnx", stderr)
	model := fs.String("model", "", "the model whose BN running statistics to recompute (model.onnx, best.onnx, any ONNX image classifier with BN)")
	data := fs.String("data", "fashion-mnist", "data: fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:CxHxW]")
	split := fs.String("split", "train", "which split of the data: train or test")
	n := fs.Int("train-n", 6400, "use the first N examples of the split (0: all)")
	batch := fs.Int("batch", 128, "batch size of the training-mode passes (the final incomplete batch is dropped)")
	seed := fs.Uint64("seed", 0, "seed of synthetic data")
	out := fs.StringP("out", "o", "", "output file: the ONNX model with the new statistics")
	var rt runtimeFlags
	rt.add(fs)
	var z zooFlags
	z.add(fs, false)
	limit(fs, nonNegative, "train-n")
	limit(fs, atLeastOne, "batch")
	aliases(fs, map[string]string{"n": "train-n"})
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *model == "":
		return usagef("recalibrate: --model is required")
	case *out == "":
		return usagef("recalibrate: -o/--out is required")
	case *n < 0:
		return usagef("recalibrate: --train-n %d: want ≥ 0 (0: all)", *n)
	case *batch < 1:
		return usagef("recalibrate: --batch %d: want at least 1", *batch)
	case isRunCheckpoint(*out):
		return usagef("recalibrate: -o %s is a checkpoint of the run in %s: write the recalibrated model beside it under another name (a run's model.onnx and best.onnx belong to its state.bin and metrics)", *out, filepath.Dir(*out))
	}
	if err := rt.init(); err != nil {
		return fmt.Errorf("recalibrate: %w", err)
	}
	fwd, err := loadModel(*model, &z)
	if err != nil {
		return err
	}
	set, err := dataset.Open(*data, *split, *seed)
	if err != nil {
		return err
	}
	m, rep, err := recalibrate.Model(fwd, set, recalibrate.Options{N: *n, Batch: *batch, Runtime: rt.options()})
	if err != nil {
		return err
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "slatrun recalibrate: %d BN statistics of %s recomputed on %d %s/%s images (%d batches of %d) → %s\n",
		len(rep.Stats), *model, rep.Images, *data, *split, rep.Batches, rep.Images/max(1, rep.Batches), *out)
	names := append([]string(nil), rep.Stats...)
	sort.Strings(names)
	for _, s := range names {
		fmt.Fprintf(stdout, "  %-32s max |change| %.4g\n", s, rep.MaxShift[s])
	}
	return nil
}

// isRunCheckpoint reports whether path is the model.onnx or best.onnx of a
// run directory (one that holds state.bin).
func isRunCheckpoint(path string) bool {
	base := filepath.Base(path)
	if base != orchestrator.ModelFile && base != orchestrator.BestFile {
		return false
	}
	_, err := os.Stat(filepath.Join(filepath.Dir(path), orchestrator.StateFile))
	return err == nil
}
