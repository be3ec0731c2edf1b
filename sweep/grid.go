package sweep

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/slatrun/slatrun/orchestrator"
)

// Spec is a sweep: the grid and the settings every cell shares.
type Spec struct {
	// Methods, Eps and Seeds are the grid's fixed axes. Eps values are kept
	// as written ("0.1", "8/255"); see ParseNumber.
	Methods []string `json:"methods"`
	Eps     []string `json:"eps"`
	Seeds   []uint64 `json:"seeds"`
	// MethodSeeds gives some methods other seeds than Seeds (say one seed
	// for an expensive reference method).
	MethodSeeds map[string][]uint64 `json:"method_seeds,omitempty"`
	// Axes are further axes: any training flag with a list of values.
	Axes []Axis `json:"axes,omitempty"`
	// Variants are further rows beside the axes' product: flag settings
	// tried one at a time (or a few together) from the base setting, where
	// a full product of two-valued axes would multiply the cells.
	Variants []Variant `json:"variants,omitempty"`
	// Base are the training flags every cell shares ("--model=convnet",
	// "--epochs=3", ...), as "slatrun train" parses them. Runtime flags
	// (threads, provider) are not part of a cell and do not belong here.
	Base []string `json:"base"`
	// Eval is how every checkpoint is evaluated.
	Eval EvalSpec `json:"eval"`
	// Collapse defines a collapsed run (DefaultCollapse).
	Collapse CollapseRule `json:"collapse"`
}

// EvalSpec is the evaluation of every final and best checkpoint: the
// attacks (eval.ParseAttacks) at the cell's ε on the first N test examples
// of Data, with the cell's seed for the random starts (and for synthetic
// test data).
type EvalSpec struct {
	Data    string `json:"data"`
	Attacks string `json:"attacks"`
	N       int    `json:"n"`
	Batch   int    `json:"batch"`
}

// DefaultAttacks is the evaluation a sweep runs unless told otherwise:
// PGD-50-10 (the yardstick of docs/methods.md) at the cell's ε.
const DefaultAttacks = "pgd-50-10"

// Axis is one more dimension of the grid: a training flag and its values.
type Axis struct {
	Flag   string   `json:"flag"`
	Values []string `json:"values"`
	// Methods limits the axis to the cells of these methods; the other
	// methods get one cell without the flag. Empty: every method.
	Methods []string `json:"methods,omitempty"`
}

// MethodScope lists the training flags that only matter to some methods.
// ParseAxis scopes an axis over one of them to those methods unless the
// axis names its methods, so that, say, --grid latent-radius=auto,8/255
// does not train identical FGSM runs twice.
var MethodScope = map[string][]string{
	"taps":             {"slat"},
	"latent-eta":       {"slat"},
	"latent-step":      {"slat"},
	"latent-radius":    {"slat"},
	"domain-clip":      {"slat"},
	"latent-scale":     {"slat"},
	"input-start":      {"slat"},
	"noise-radius":     {"n-fgsm"},
	"trades-beta":      {"trades"},
	"trades-steps":     {"trades"},
	"gradalign-lambda": {"gradalign"},
}

// ParseAxis parses "[METHOD[+METHOD…]:]FLAG=V1,V2,…", for example
// "latent-radius=auto,8/255" or "fgsm+fgsm-rs:schedule=cyclic,piecewise".
// Values are separated by commas, or by semicolons when any value holds a
// comma ("taps=conv1;conv1,layer1").
func ParseAxis(s string) (Axis, error) {
	var a Axis
	flag, vals, ok := strings.Cut(s, "=")
	if !ok || vals == "" {
		return a, fmt.Errorf("sweep: grid axis %q: want FLAG=V1,V2 (for example latent-radius=auto,8/255)", s)
	}
	if scope, f, ok := strings.Cut(flag, ":"); ok {
		a.Methods, flag = parseScope(scope), f
	}
	a.Flag = strings.TrimPrefix(strings.TrimSpace(flag), "--")
	if a.Flag == "" {
		return a, fmt.Errorf("sweep: grid axis %q names no flag", s)
	}
	if a.Methods == nil {
		a.Methods = slices.Clone(MethodScope[a.Flag])
	}
	sep := ","
	if strings.Contains(vals, ";") {
		sep = ";"
	}
	for _, v := range strings.Split(vals, sep) {
		if v = strings.TrimSpace(v); v != "" {
			a.Values = append(a.Values, v)
		}
	}
	if len(a.Values) == 0 {
		return a, fmt.Errorf("sweep: grid axis %q has no values", s)
	}
	return a, nil
}

// parseScope parses an axis's or variant's "METHOD[+METHOD…]" (lower case).
func parseScope(scope string) []string {
	var methods []string
	for _, m := range strings.Split(scope, "+") {
		if m = strings.TrimSpace(m); m != "" {
			methods = append(methods, strings.ToLower(m))
		}
	}
	return methods
}

// String is the axis in ParseAxis's syntax.
func (a Axis) String() string {
	s := a.Flag + "=" + strings.Join(a.Values, ",")
	if strings.Contains(strings.Join(a.Values, ""), ",") {
		s = a.Flag + "=" + strings.Join(a.Values, ";")
	}
	if len(a.Methods) > 0 {
		s = strings.Join(a.Methods, "+") + ":" + s
	}
	return s
}

func (a Axis) applies(method string) bool {
	return len(a.Methods) == 0 || slices.Contains(a.Methods, strings.ToLower(method))
}

// Variant is one more row of a method's cells: the base setting (every
// axis combination) with these flags changed.
type Variant struct {
	Settings []Setting `json:"settings"`
	// Methods limits the variant to these methods, as Axis.Methods.
	Methods []string `json:"methods,omitempty"`
}

// ParseVariant parses "[METHOD[+METHOD…]:]FLAG=V[ FLAG=V…]", for example
// "latent-eta=8/255" or "slat:input-start=uniform latent-scale=range":
// one value per flag, the pairs separated by spaces. Without a method
// scope the variant applies to the methods MethodScope gives its flags
// (which must agree), or to every method.
func ParseVariant(s string) (Variant, error) {
	var v Variant
	body := s
	if scope, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(scope, "=") {
		v.Methods, body = parseScope(scope), rest
	}
	scoped := v.Methods != nil
	for i, pair := range strings.Fields(body) {
		flag, val, ok := strings.Cut(pair, "=")
		flag = strings.TrimPrefix(flag, "--")
		if !ok || flag == "" || val == "" {
			return v, fmt.Errorf("sweep: variant %q: want FLAG=V pairs separated by spaces (for example latent-eta=8/255)", s)
		}
		if slices.ContainsFunc(v.Settings, func(st Setting) bool { return st.Flag == flag }) {
			return v, fmt.Errorf("sweep: variant %q sets --%s twice", s, flag)
		}
		v.Settings = append(v.Settings, Setting{flag, val})
		if scoped {
			continue
		}
		if i == 0 {
			v.Methods = slices.Clone(MethodScope[flag])
		} else if !slices.Equal(v.Methods, MethodScope[flag]) {
			return v, fmt.Errorf("sweep: variant %q: its flags matter to different methods; name them (METHOD:FLAG=V …)", s)
		}
	}
	if len(v.Settings) == 0 {
		return v, fmt.Errorf("sweep: variant %q sets no flag", s)
	}
	return v, nil
}

// String is the variant in ParseVariant's syntax.
func (v Variant) String() string {
	parts := make([]string, len(v.Settings))
	for i, st := range v.Settings {
		parts[i] = st.String()
	}
	s := strings.Join(parts, " ")
	if len(v.Methods) > 0 {
		s = strings.Join(v.Methods, "+") + ":" + s
	}
	return s
}

func (v Variant) applies(method string) bool {
	return len(v.Methods) == 0 || slices.Contains(v.Methods, strings.ToLower(method))
}

// Setting is one axis value of a cell: --Flag=Value.
type Setting struct {
	Flag  string `json:"flag"`
	Value string `json:"value"`
}

func (s Setting) String() string { return s.Flag + "=" + s.Value }

// Cell is one training run of the grid.
type Cell struct {
	// Index is the cell's position in the grid (Expand's order); shards
	// split the grid by it.
	Index int `json:"index"`
	// Name is the cell's directory name under cells/, unique in the grid,
	// made of its method, ε, axis values and seed, for example
	// "slat_eps=0.1_latent-radius=8%2F255_seed=0".
	Name   string    `json:"name"`
	Method string    `json:"method"`
	Eps    string    `json:"eps"`
	Seed   uint64    `json:"seed"`
	Axes   []Setting `json:"axes,omitempty"`
	// Args is the cell's training command line: Spec.Base, then --method,
	// --eps, --seed and the axis flags.
	Args []string `json:"args"`
}

// Variant names the cell's row in the report: the method and the axis
// values, for example "slat latent-radius=8/255".
func (c Cell) Variant() string {
	parts := []string{c.Method}
	for _, s := range c.Axes {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " ")
}

// EpsValue is the cell's ε as a number.
func (c Cell) EpsValue() float64 {
	v, _ := ParseNumber(c.Eps)
	return v
}

// Validate checks the spec's grid (not the training flags, which only
// Options.Train understands).
func (s *Spec) Validate() error {
	var errs []error
	if len(s.Methods) == 0 {
		errs = append(errs, errors.New("no methods"))
	}
	if len(s.Eps) == 0 {
		errs = append(errs, errors.New("no ε values"))
	}
	for _, e := range s.Eps {
		if v, err := ParseNumber(e); err != nil || v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("ε %q: want a number in [0, 1] such as 0.1 or 8/255", e))
		}
	}
	if len(s.Seeds) == 0 {
		errs = append(errs, errors.New("no seeds"))
	}
	for m, seeds := range s.MethodSeeds {
		if !slices.Contains(s.Methods, m) {
			errs = append(errs, fmt.Errorf("seeds for method %q, which is not in the grid", m))
		}
		if len(seeds) == 0 {
			errs = append(errs, fmt.Errorf("no seeds for method %q", m))
		}
	}
	seen := map[string]bool{"method": true, "eps": true, "seed": true}
	for _, a := range s.Axes {
		if seen[a.Flag] {
			errs = append(errs, fmt.Errorf("grid axis --%s: the flag is already an axis (methods, ε and seeds have their own flags)", a.Flag))
		}
		seen[a.Flag] = true
		if len(a.Values) == 0 {
			errs = append(errs, fmt.Errorf("grid axis --%s has no values", a.Flag))
		}
	}
	for _, v := range s.Variants {
		for _, st := range v.Settings {
			if seen[st.Flag] {
				errs = append(errs, fmt.Errorf("variant %s: --%s is an axis (or has its own flag)", v, st.Flag))
			}
		}
	}
	for _, d := range []struct {
		name string
		list []string
	}{{"method", s.Methods}, {"ε", s.Eps}} {
		if dup := firstDup(d.list); dup != "" {
			errs = append(errs, fmt.Errorf("%s %q is listed twice", d.name, dup))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// One line, "a; b; c", that still wraps every problem (errors.Is).
	args := make([]any, len(errs))
	for i, e := range errs {
		args[i] = e
	}
	return fmt.Errorf("sweep: "+strings.TrimSuffix(strings.Repeat("%w; ", len(errs)), "; "), args...)
}

func firstDup(list []string) string {
	seen := map[string]bool{}
	for _, v := range list {
		if seen[v] {
			return v
		}
		seen[v] = true
	}
	return ""
}

// Cells expands the grid, in a fixed order: methods, then ε, then the
// values of each axis that applies to the method, then the method's
// variants, then seeds (so the seeds of one report row are neighbours).
func (s *Spec) Cells() ([]Cell, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var cells []Cell
	names := map[string]bool{}
	for _, m := range s.Methods {
		var axes []Axis
		for _, a := range s.Axes {
			if a.applies(m) {
				axes = append(axes, a)
			}
		}
		combos := product(axes)
		for _, v := range s.Variants {
			if v.applies(m) {
				for _, base := range product(axes) {
					combos = append(combos, append(base, v.Settings...))
				}
			}
		}
		for _, e := range s.Eps {
			for _, combo := range combos {
				for _, seed := range s.SeedsOf(m) {
					c := Cell{Index: len(cells), Method: m, Eps: e, Seed: seed, Axes: combo}
					c.Name = cellName(c)
					if names[c.Name] {
						return nil, fmt.Errorf("sweep: two cells are named %s (a value listed twice?)", c.Name)
					}
					names[c.Name] = true
					c.Args = append(slices.Clone(s.Base), "--method="+m, "--eps="+e, "--seed="+strconv.FormatUint(seed, 10))
					for _, st := range combo {
						c.Args = append(c.Args, "--"+st.Flag+"="+st.Value)
					}
					c.Args = withDefaultFlags(c.Args)
					cells = append(cells, c)
				}
			}
		}
	}
	return cells, nil
}

// SeedsOf returns the seeds of method m's cells: MethodSeeds[m], or Seeds.
func (s *Spec) SeedsOf(m string) []uint64 {
	if seeds, ok := s.MethodSeeds[m]; ok {
		return seeds
	}
	return s.Seeds
}

// recordedDefaults are training flags every cell's Args name even when the
// spec leaves them to the default: settings whose default changed, so that
// a cell trained under the old default is never mistaken for one of today
// (checkCell refuses it).
var recordedDefaults = [][2]string{
	{"bn-stats", orchestrator.BNStatsAll},
}

// withDefaultFlags appends each recorded default args does not set.
func withDefaultFlags(args []string) []string {
	for _, fv := range recordedDefaults {
		set := slices.ContainsFunc(args, func(a string) bool {
			return a == "--"+fv[0] || strings.HasPrefix(a, "--"+fv[0]+"=")
		})
		if !set {
			args = append(args, "--"+fv[0]+"="+fv[1])
		}
	}
	return args
}

// product returns every combination of the axes' values (one empty
// combination for no axes).
func product(axes []Axis) [][]Setting {
	out := [][]Setting{nil}
	for _, a := range axes {
		var next [][]Setting
		for _, prefix := range out {
			for _, v := range a.Values {
				next = append(next, append(slices.Clone(prefix), Setting{a.Flag, v}))
			}
		}
		out = next
	}
	return out
}

func cellName(c Cell) string {
	var b strings.Builder
	b.WriteString(escape(strings.ToLower(c.Method)))
	b.WriteString("_eps=" + escape(c.Eps))
	for _, s := range c.Axes {
		b.WriteString("_" + escape(s.Flag) + "=" + escape(s.Value))
	}
	b.WriteString("_seed=" + strconv.FormatUint(c.Seed, 10))
	return b.String()
}

// escape keeps letters, digits, '.', '+' and '-' and writes every other
// byte as %XX, so a name is one safe path element ("8/255" → "8%2F255").
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '+' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ParseNumber parses a number or a fraction such as 8/255.
func ParseNumber(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if num, den, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(num, 64)
		d, err2 := strconv.ParseFloat(den, 64)
		if err1 != nil || err2 != nil || d == 0 {
			return 0, fmt.Errorf("%q is not a number or a fraction like 8/255", s)
		}
		return n / d, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number or a fraction like 8/255", s)
	}
	return v, nil
}

// Shard is the share of the grid one process runs: the cells whose index
// is I mod N. The zero value (N ≤ 1) is the whole grid.
type Shard struct{ I, N int }

// ParseShard parses "I/N" with 0 ≤ I < N. I may be "env": the index is
// then read from the environment variable JOB_COMPLETION_INDEX, which a
// Kubernetes Indexed Job sets in each pod (getenv is os.Getenv).
func ParseShard(s string, getenv func(string) string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("sweep: shard %q: want I/N, for example 0/3 (or env/3 for $JOB_COMPLETION_INDEX)", s)
	}
	if is == "env" {
		is = getenv(IndexEnv)
		if is == "" {
			return Shard{}, fmt.Errorf("sweep: shard %q: $%s is not set (it is set in the pods of a Kubernetes Indexed Job)", s, IndexEnv)
		}
	}
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("sweep: shard %q: want I/N with whole numbers 0 ≤ I < N", s)
	}
	return Shard{I: i, N: n}, nil
}

// IndexEnv is the environment variable a Kubernetes Indexed Job sets to the
// pod's completion index.
const IndexEnv = "JOB_COMPLETION_INDEX"

// Has reports whether the shard runs cell c.
func (s Shard) Has(c Cell) bool { return s.N <= 1 || c.Index%s.N == s.I }

func (s Shard) String() string {
	if s.N <= 1 {
		return "all"
	}
	return fmt.Sprintf("%d/%d", s.I, s.N)
}
