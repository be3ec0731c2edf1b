package main

import (
	"encoding/json"
	"io"

	"github.com/slatrun/slatrun/onnx"
)

func init() {
	register(command{name: "inspect", summary: "describe an ONNX model: inputs, outputs, ops, parameters, slatrun metadata", run: runInspect})
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "inspect [--json] [--all] FILE.onnx", stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	all := fs.Bool("all", false, "list every initializer (default: the first 20)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("inspect: want one ONNX file, got %d arguments", fs.NArg())
	}
	m, err := onnx.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	info := onnx.Inspect(m)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	limit := 20
	if *all {
		limit = -1
	}
	return info.WriteTable(stdout, limit)
}
