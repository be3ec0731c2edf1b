package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/slatrun/slatrun/graphs"
	"github.com/slatrun/slatrun/perturb"
)

func init() {
	register(command{name: "derive", summary: "derive a train, attack, eval, forward, kl or trades graph from a forward graph", run: runDerive})
}

func runDerive(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("derive", "derive --model (NAME | forward.onnx) --kind train|attack|eval|forward|kl|trades [--taps a,b] [--trades-beta B] [--batch N] -o|--out out.onnx", stderr)
	model := fs.String("model", "", "zoo model name or forward ONNX file")
	kind := fs.String("kind", "train", "graph kind: train, attack, eval, forward, kl (TRADES's inner maximization) or trades (its outer loss)")
	beta := fs.Float32("trades-beta", perturb.DefaultTRADESBeta, "trades kind: weight β of the KL term")
	taps := fs.String("taps", "", "comma-separated latent tensors to perturb (default: the model's own taps; \"none\" for no taps)")
	batch := fs.Int("batch", 128, "batch size the derived graph is specialized to")
	loss := fs.String("loss", "ce", "eval kind's per-example loss: ce, cw, dlr or dlr-t")
	noClip := fs.Bool("no-domain-clip", false, "train kind: add latent perturbations without SLAT's domain clip")
	inputGrad := fs.Bool("input-grad", false, "train kind: also output grad.x (Free-m)")
	tapRange := fs.Bool("tap-range", false, "attack kind: also output range.<tap>, hi − lo of each tap per sample and channel (SLAT's --latent-scale range)")
	out := fs.StringP("out", "o", "", "output file: the derived ONNX graph")
	var z zooFlags
	z.add(fs, true)
	limit(fs, atLeastOne, "batch")
	limit(fs, nonNegative, "trades-beta")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *model == "" || *out == "" {
		return usagef("derive: --model and -o/--out are required")
	}
	if !oneOf(*kind, "train", "attack", "eval", "forward", "kl", "trades") {
		return usagef("derive: --kind %q: want train, attack, eval, forward, kl or trades", *kind)
	}
	fwd, err := loadModel(*model, &z)
	if err != nil {
		return err
	}
	spec := graphs.Spec{Kind: graphs.Kind(strings.ToLower(*kind)), Batch: *batch, Taps: parseTaps(*taps),
		NoDomainClip: *noClip, InputGrad: *inputGrad, TapRange: *tapRange, Loss: *loss, Beta: *beta}
	m, err := graphs.Derive(fwd, spec)
	if err != nil {
		return err
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	info := graphs.ReadInfo(m)
	fmt.Fprintf(stdout, "wrote %s: %s graph, batch %d, %d nodes, %d params, %d stats, taps [%s]\n",
		*out, info.Kind, info.Batch, len(m.Graph().GetNode()), len(info.Params), len(info.Stats), strings.Join(info.Taps, ","))
	return nil
}

// parseTaps turns the --taps flag into a tap list: "" is nil (the model's
// default taps), "none" is an empty, non-nil list.
func parseTaps(s string) []string {
	switch strings.TrimSpace(s) {
	case "":
		return nil
	case "none":
		return []string{}
	}
	var taps []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			taps = append(taps, t)
		}
	}
	return taps
}
