package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/graphs/zoo"
	"github.com/slatrun/slatrun/onnx"
)

func init() {
	register(command{name: "export", summary: "write a model-zoo forward graph to an ONNX file", run: runExport})
}

// zooFlags are the flags that shape a zoo model.
type zooFlags struct {
	width   int
	classes int
	mean    string
	std     string
	seed    uint64
}

// add defines the flags; withSeed adds --seed (commands with a seed of their
// own pass false and set z.seed themselves).
func (z *zooFlags) add(fs *pflag.FlagSet, withSeed bool) {
	fs.IntVar(&z.width, "width", 0, "model width (convnet: stem channels, default 16; wrn-28-10: widen factor)")
	fs.IntVar(&z.classes, "classes", 0, "number of classes (default 10)")
	fs.StringVar(&z.mean, "mean", "", "per-channel input mean, comma-separated (default: the model's data set)")
	fs.StringVar(&z.std, "std", "", "per-channel input std, comma-separated")
	limit(fs, nonNegative, "width", "classes")
	if withSeed {
		fs.Uint64Var(&z.seed, "seed", 0, "seed of the initial weights")
	}
}

func (z *zooFlags) config() (zoo.Config, error) {
	mean, err := parseFloats(z.mean)
	if err != nil {
		return zoo.Config{}, usagef("--mean: %v", err)
	}
	std, err := parseFloats(z.std)
	if err != nil {
		return zoo.Config{}, usagef("--std: %v", err)
	}
	return zoo.Config{Width: z.width, Classes: z.classes, Mean: mean, Std: std, Seed: z.seed}, nil
}

// loadModel returns the forward graph named by spec: a zoo model name or an
// ONNX file.
func loadModel(spec string, z *zooFlags) (*onnx.Model, error) {
	for _, n := range zoo.Names() {
		if spec == n {
			cfg, err := z.config()
			if err != nil {
				return nil, err
			}
			return zoo.Build(spec, cfg)
		}
	}
	if _, err := os.Stat(spec); err != nil {
		return nil, fmt.Errorf("--model %q is neither a zoo model (%s) nor a readable ONNX file", spec, strings.Join(zoo.Names(), ", "))
	}
	return onnx.Load(spec)
}

func parseFloats(s string) ([]float32, error) {
	if s == "" {
		return nil, nil
	}
	var out []float32
	for _, p := range strings.Split(s, ",") {
		v, err := parseFraction(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// parseFraction parses "0.1", "8/255" or "1e-3".
func parseFraction(s string) (float32, error) {
	if num, den, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(num, 64)
		d, err2 := strconv.ParseFloat(den, 64)
		if err1 != nil || err2 != nil || d == 0 {
			return 0, fmt.Errorf("%q is not a number or fraction like 8/255", s)
		}
		return float32(n / d), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number or fraction like 8/255", s)
	}
	return float32(v), nil
}

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "export --model NAME [--width --classes --mean --std --seed] -o|--out forward.onnx", stderr)
	model := fs.String("model", "", "zoo model: "+strings.Join(zoo.Names(), ", "))
	out := fs.StringP("out", "o", "", "output file: the forward ONNX graph")
	var z zooFlags
	z.add(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *model == "" || *out == "" {
		return usagef("export: --model and -o/--out are required")
	}
	known := false
	for _, n := range zoo.Names() {
		known = known || n == *model
	}
	if !known {
		return usagef("export: unknown model %q (zoo: %s)", *model, strings.Join(zoo.Names(), ", "))
	}
	m, err := loadModel(*model, &z)
	if err != nil {
		return err
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	info := onnx.Inspect(m)
	fmt.Fprintf(stdout, "wrote %s: %s, %d nodes, %d parameters (incl. BN statistics)\n", *out, *model, info.Nodes, info.Parameters)
	return nil
}
