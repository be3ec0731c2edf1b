package main

import (
	"io"
	"os"
	"strconv"

	"github.com/spf13/pflag"
)

// fracValue is a float32 flag that also accepts fractions like 8/255.
// "auto" (or a negative number) stands for the method's default.
type fracValue struct {
	p    *float32
	auto bool
}

func (f *fracValue) String() string {
	if f.p == nil {
		return ""
	}
	if f.auto && *f.p < 0 {
		return "auto"
	}
	return strconv.FormatFloat(float64(*f.p), 'g', -1, 32)
}

func (f *fracValue) Set(s string) error {
	if f.auto && s == "auto" {
		*f.p = -1
		return nil
	}
	v, err := parseFraction(s)
	if err != nil {
		return err
	}
	*f.p = v
	return nil
}

func (f *fracValue) Type() string { return "number" }

// fracVar defines a float32 flag that accepts fractions; with auto, the
// value "auto" (stored as -1) means the default of the method.
func fracVar(fs *pflag.FlagSet, p *float32, name string, def float32, auto bool, usage string) {
	*p = def
	fs.Var(&fracValue{p: p, auto: auto}, name, usage)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
