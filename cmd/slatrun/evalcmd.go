package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/slatrun/slatrun/dataset"
	"github.com/slatrun/slatrun/eval"
	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
)

func init() {
	register(command{name: "eval", summary: "measure clean and robust accuracy of a model under attacks", run: runEval})
}

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", "eval --model M.onnx --data SPEC --eps 8/255 --attacks fgsm,pgd-50-10,... [--test-n 1000] [-o|--out eval.json]", stderr)
	model := fs.String("model", "", "a slatrun checkpoint (model.onnx, best.onnx), any ONNX image classifier, or a zoo model name")
	data := fs.String("data", "fashion-mnist", "test data: fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:CxHxW] (C ≤ 16, H, W ≤ 1024, 2000×C×H×W float32 ≤ 1 GiB)")
	split := fs.String("split", "test", "which split of the data: test or train")
	var eps float32
	fracVar(fs, &eps, "eps", 8.0/255, false, "perturbation radius in pixel units, e.g. 8/255 or 0.1")
	norm := fs.String("norm", "linf", "threat model: linf or l2")
	attacks := fs.String("attacks", eval.StandardAttacks, "comma-separated attacks: fgsm, pgd-K[-R], pgd-cw-K[-R], apgd-ce, apgd-t, fab-t, square[-Q], ...; autoattack: AutoAttack's standard cascade (apgd-ce, apgd-t, fab-t, square)")
	n := fs.Int("test-n", 1000, "evaluate the first N examples of the split (0: all)")
	batch := fs.Int("eval-batch", 250, "batch size of the eval graphs")
	seed := fs.Uint64("seed", 0, "seed of the random starts")
	cascade := fs.Bool("cascade", false, "attack only samples every earlier attack left robust (faster; accuracies become cumulative)")
	linearity := fs.Bool("linearity", false, "also report the local-linearity probe (GradAlign's cosine)")
	out := fs.StringP("out", "o", "", "output file: the report as JSON")
	var rt runtimeFlags
	rt.add(fs)
	var z zooFlags
	z.add(fs, false)
	limit(fs, epsBound, "eps")
	limit(fs, nonNegative, "test-n")
	limit(fs, atLeastOne, "eval-batch")
	// The names "slatrun sweep" has for the same settings; the old ones stay.
	aliases(fs, map[string]string{"n": "test-n", "batch": "eval-batch"})
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("eval: unexpected arguments %q", fs.Args())
	}
	if *model == "" {
		return usagef("eval: --model is required")
	}
	if !oneOf(*norm, eval.NormLinf, eval.NormL2) {
		return usagef("eval: --norm %q: want linf or l2", *norm)
	}
	specs, err := eval.ParseAttacks(*attacks)
	if err != nil {
		return usageErr(err)
	}
	if *out != "" {
		if err := checkOutput("out", *out, *out); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	if err := rt.init(); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	fwd, err := loadModel(*model, &z)
	if err != nil {
		return err
	}
	sum, err := modelSHA256(*model, fwd)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if err := checkFinite(fwd, *model); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	set, err := dataset.Open(*data, *split, *seed)
	if err != nil {
		return err
	}
	if err := checkDataFitsModel(set, fwd); err != nil {
		return err
	}
	if *n > 0 && *n < set.N {
		set = set.Slice(0, *n)
	}
	b := min(*batch, set.N)
	evalGraphs, err := graphs.DeriveEval(fwd, b, eval.Heads(specs), rt.options().NCHWc(), rt.options().OneDNN())
	if err != nil {
		return err
	}
	c, err := eval.NewClassifier(evalGraphs, rt.options())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetResize(graphs.EvalAt(fwd, rt.options().NCHWc(), rt.options().OneDNN()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := eval.Config{Eps: eps, Norm: strings.ToLower(*norm), Attacks: specs, Seed: *seed, Cascade: *cascade, Linearity: *linearity}
	if isTerminal(stdout) {
		cfg.Progress = func(attack string, done, total int) {
			fmt.Fprintf(stdout, "\r\033[K%s %d/%d", attack, done, total)
		}
	}
	fmt.Fprintf(stdout, "slatrun eval: %s on %s/%s, %d examples, ε=%.4g (%s)\n", *model, *data, *split, set.N, eps, cfg.Norm)
	rep, err := eval.Evaluate(ctx, c, set.X, set.Y, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stdout, "\r\033[K")
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Table())
	if *out != "" {
		doc := struct {
			Model       string `json:"model"`
			ModelSHA256 string `json:"model_sha256"`
			Data        string `json:"data"`
			Split       string `json:"split"`
			*eval.Report
		}{*model, sum, *data, *split, rep}
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		if err := writeOutput(*out, append(b, '\n')); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
	}
	return nil
}

// modelSHA256 returns the hex SHA-256 of the model file's bytes, or for a
// zoo model (no file) of its encoded ONNX.
func modelSHA256(spec string, m *onnx.Model) (string, error) {
	var b []byte
	var err error
	if slices.Contains(zoo.Names(), spec) { // loadModel takes zoo names first
		b, err = m.Encode()
	} else {
		b, err = os.ReadFile(spec)
	}
	if err != nil {
		return "", fmt.Errorf("model checksum: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}
