package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

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

// bound is the range of values a numeric flag accepts.
type bound struct {
	lo, hi         float64
	openLo, openHi bool   // whether lo, hi themselves are excluded
	hint           string // added to the error, e.g. how to write the value
}

var (
	nonNegative = bound{lo: 0, hi: math.Inf(1)}
	atLeastOne  = bound{lo: 1, hi: math.Inf(1)}
	positive    = bound{lo: 0, openLo: true, hi: math.Inf(1)}
	unit        = bound{lo: 0, hi: 1}
	unitOpen    = bound{lo: 0, hi: 1, openHi: true}
	epsBound    = bound{lo: 0, hi: 1, hint: "pixel units; 8/255 is written 8/255"}
)

func (b bound) contains(v float64) bool {
	return (v > b.lo || !b.openLo && v == b.lo) && (v < b.hi || !b.openHi && v == b.hi)
}

// explain says why v is out of b, e.g. "want a value ≥ 0" or "8 is
// outside [0, 1]".
func (b bound) explain(v string) string {
	var msg string
	switch {
	case math.IsInf(b.hi, 1) && b.openLo:
		msg = fmt.Sprintf("want a value > %g", b.lo)
	case math.IsInf(b.hi, 1):
		msg = fmt.Sprintf("want a value ≥ %g", b.lo)
	default:
		l, r := "[", "]"
		if b.openLo {
			l = "("
		}
		if b.openHi {
			r = ")"
		}
		msg = fmt.Sprintf("%s is outside %s%g, %g%s", v, l, b.lo, b.hi, r)
	}
	if b.hint != "" {
		msg += " (" + b.hint + ")"
	}
	return msg
}

// boundedValue is a numeric flag value that refuses numbers outside its
// bound when set, so that a bad value is a usage error naming the flag
// before any work starts (pflag's message: invalid argument "-1" for
// "--threads" flag: want a value ≥ 0).
type boundedValue struct {
	pflag.Value
	b bound
}

func (v *boundedValue) Set(s string) error {
	prev := v.Value.String()
	if err := v.Value.Set(s); err != nil {
		return err
	}
	got := v.Value.String()
	if got == "auto" && s == "auto" {
		return nil
	}
	x, err := strconv.ParseFloat(got, 64)
	if err != nil || got == "auto" || !v.b.contains(x) {
		v.Value.Set(prev)
		if got == "auto" { // a negative number given to a flag that takes auto
			return fmt.Errorf("%s, or auto", v.b.explain(s))
		}
		return errors.New(v.b.explain(s))
	}
	return nil
}

// limit makes the named numeric flags of fs refuse values outside b. Every
// numeric flag of every command gets a bound; TestFlagBounds checks that.
func limit(fs *pflag.FlagSet, b bound, names ...string) {
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			panic("limit: no flag --" + n) // a mistake in this program, caught by its tests
		}
		f.Value = &boundedValue{Value: f.Value, b: b}
	}
}

// enumValue is a string flag that takes one of a fixed set of values.
type enumValue struct {
	p       *string
	allowed []string
}

func (e *enumValue) String() string {
	if e.p == nil {
		return ""
	}
	return *e.p
}

func (e *enumValue) Set(s string) error {
	for _, a := range e.allowed {
		if strings.EqualFold(s, a) {
			*e.p = a
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(e.allowed, ", "))
}

func (e *enumValue) Type() string { return "string" }
