package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/slatrun/slatrun/sweep"
)

func init() {
	register(command{name: "plot", summary: "draw PNG plots (probe accuracy per epoch, SLAT tap gradients, robust accuracy vs ε) of runs and sweeps", run: runPlot})
}

func runPlot(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plot", "plot [-o|--out DIR] RUN_OR_SWEEP_DIR...", stderr)
	out := fs.StringP("out", "o", "", "output directory: where the PNG files go (default: DIR/plots for one directory, ./plots for several runs)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("plot: give run or sweep directories")
	}
	var runs []string
	for _, d := range fs.Args() {
		if _, err := os.Stat(filepath.Join(d, sweep.SweepFile)); err == nil {
			rep, err := sweep.Collect(d)
			if err != nil {
				return err
			}
			dst := filepath.Join(d, "plots")
			if *out != "" {
				dst = filepath.Join(*out, filepath.Base(filepath.Clean(d)))
			}
			files, err := sweep.PlotReport(rep, dst)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(filepath.Dir(dst), f))
			}
			continue
		}
		runs = append(runs, d)
	}
	if len(runs) == 0 {
		return nil
	}
	dst := *out
	if dst == "" {
		dst = "plots"
		if len(runs) == 1 {
			dst = filepath.Join(runs[0], "plots")
		}
	}
	files, err := sweep.PlotRuns(runs, dst)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	return nil
}
