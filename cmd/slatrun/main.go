// Command slatrun trains image classifiers adversarially (SLAT and its
// baselines) with ONNX Runtime doing the tensor work, evaluates their
// robustness, and inspects, exports and derives the ONNX graphs involved.
//
// Run "slatrun help" for the commands.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/slatrun/slatrun/onnx/ort"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// command is one subcommand of the CLI.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// usageError is a mistake in how the command was called (exit status 2).
type usageError struct {
	msg string
	err error // the error it reports, if any (errors.Is and As see it)
}

func (e usageError) Error() string { return e.msg }

func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, args ...any) error { return usageError{msg: fmt.Sprintf(format, args...)} }

// usageErr reports err, a mistake in the command line found by a parser
// of its values, as a usageError that wraps it.
func usageErr(err error) error { return usageError{msg: err.Error(), err: err} }

func usage(w io.Writer) {
	fmt.Fprintln(w, "slatrun: fast adversarial training (SLAT and baselines) on ONNX Runtime")
	fmt.Fprintln(w, "\nUsage: slatrun COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun \"slatrun COMMAND --help\" for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return exitCode(c.run([]string{"--help"}, stdout, stderr), stderr)
			}
		}
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "slatrun: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return exitCode(c.run(args[1:], stdout, stderr), stderr)
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "slatrun: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "slatrun: %v\n", err)
		return 1
	}
}

// newFlags returns a flag set that prints its usage to stderr on --help.
func newFlags(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: slatrun %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parsing, if set (by tests), sees every flag set parse is given.
var parsing func(fs *pflag.FlagSet)

// parse parses flags and turns pflag's errors into usage errors.
func parse(fs *pflag.FlagSet, args []string) error {
	if parsing != nil {
		parsing(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

// aliases makes fs accept each old flag name (a key of old) as the flag it
// was renamed to, so that scripts and saved command lines (cli-args.json)
// keep working. The old names are hidden: --help lists only the new ones,
// and the parsed flag is the new one (fs.Lookup, fs.Changed and error
// messages use its name).
func aliases(fs *pflag.FlagSet, old map[string]string) {
	prev := fs.GetNormalizeFunc()
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if n, ok := old[name]; ok {
			name = n
		}
		return prev(f, name)
	})
}

// runtimeFlags are the flags every command that runs ONNX Runtime takes;
// add (or, for a command that makes no session, addLib) declares them, and
// no command declares them itself.
type runtimeFlags struct {
	ortLib   string
	provider string
	device   int
	threads  int
	spinning bool
	nchwc    bool
	kernels  string
}

// options are the ONNX Runtime session options the flags select.
func (r *runtimeFlags) options() ort.Options {
	return ort.Options{Provider: r.provider, DeviceID: r.device, Threads: r.threads, Spinning: r.spinning, PlainConv: !r.nchwc,
		Kernels: r.kernels != "ort", DirectConv: r.kernels == "onednn-direct"}
}

// addLib declares --ort-lib alone.
func (r *runtimeFlags) addLib(fs *pflag.FlagSet) {
	fs.StringVar(&r.ortLib, "ort-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, then the one tools/install-ort.sh installed)")
}

// add declares every runtime flag.
func (r *runtimeFlags) add(fs *pflag.FlagSet) {
	r.addLib(fs)
	r.provider = ort.ProviderCPU
	fs.Var(&enumValue{p: &r.provider, allowed: []string{ort.ProviderCPU, ort.ProviderCUDA}}, "provider", "execution provider: cpu or cuda (checked at start-up)")
	fs.IntVar(&r.device, "device", 0, "CUDA device id")
	fs.IntVar(&r.threads, "threads", 0, "intra-op threads (0 = ONNX Runtime's choice)")
	fs.BoolVar(&r.spinning, "spinning", false, "let idle ONNX Runtime threads spin (faster on an otherwise idle machine)")
	fs.BoolVar(&r.nchwc, "nchwc", true, "CPU: run eligible convolutions in ONNX Runtime's blocked NCHWc kernels (--nchwc=false: plain NCHW)")
	r.kernels = "onednn"
	fs.Var(&enumValue{p: &r.kernels, allowed: []string{"onednn", "onednn-direct", "ort"}}, "kernels", "CPU training kernels: onednn (slatrun's oneDNN kernels where oneDNN is installed, 3x3 stride-1 convolutions of 64 channels or more in Winograd F(4x4,3x3); see slatrun version), onednn-direct (the same, every convolution in oneDNN's direct algorithm: rounding closer to PyTorch's) or ort (ONNX Runtime's own only)")
	limit(fs, nonNegative, "device", "threads")
}

// init loads ONNX Runtime and, if the flags ask for CUDA, checks that a
// CUDA session can be made, so that an unusable provider is one clear
// error (in ONNX Runtime's words too) before any work starts. Every
// command that makes sessions calls it.
func (r *runtimeFlags) init() error {
	if err := ort.Init(r.ortLib); err != nil {
		return err
	}
	if o := r.options(); o.OnCUDA() {
		if err := ort.CheckCUDA(o.DeviceID); err != nil {
			return fmt.Errorf("--provider %s: %w", r.provider, err)
		}
	}
	return nil
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return true
		}
	}
	return false
}
