package onnx

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Value describes a graph input or output.
type Value struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Shape []int64 `json:"shape"` // -1 for a symbolic dimension
}

// InitializerInfo describes an initializer.
type InitializerInfo struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Shape    []int64 `json:"shape"`
	Elements int64   `json:"elements"`
}

// Info is a summary of a model, for people (Table) and tools (JSON).
type Info struct {
	IRVersion    int64             `json:"ir_version"`
	Producer     string            `json:"producer"`
	Opsets       map[string]int64  `json:"opsets"`
	Inputs       []Value           `json:"inputs"`
	Outputs      []Value           `json:"outputs"`
	Initializers []InitializerInfo `json:"initializers"`
	Parameters   int64             `json:"initializer_elements"`
	Nodes        int               `json:"nodes"`
	Ops          map[string]int    `json:"ops"`
	Metadata     map[string]string `json:"metadata"`
}

// Inspect summarizes m.
func Inspect(m *Model) Info {
	mp := m.Proto
	g := m.Graph()
	info := Info{
		IRVersion: mp.GetIrVersion(),
		Producer:  strings.TrimSpace(mp.GetProducerName() + " " + mp.GetProducerVersion()),
		Opsets:    map[string]int64{},
		Ops:       map[string]int{},
		Metadata:  map[string]string{},
		Nodes:     len(g.GetNode()),
	}
	for _, o := range mp.GetOpsetImport() {
		d := o.GetDomain()
		if d == "" {
			d = "ai.onnx"
		}
		info.Opsets[d] = o.GetVersion()
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
		n := NumElements(t.GetDims())
		info.Initializers = append(info.Initializers, InitializerInfo{Name: t.GetName(), Type: DType(t.GetDataType()).String(), Shape: t.GetDims(), Elements: n})
		info.Parameters += n
	}
	for _, v := range g.GetInput() {
		if inits[v.GetName()] {
			continue
		}
		t, dims, _ := ValueShape(v)
		info.Inputs = append(info.Inputs, Value{Name: v.GetName(), Type: t.String(), Shape: dims})
	}
	for _, v := range g.GetOutput() {
		t, dims, _ := ValueShape(v)
		info.Outputs = append(info.Outputs, Value{Name: v.GetName(), Type: t.String(), Shape: dims})
	}
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			op = d + "." + op
		}
		info.Ops[op]++
	}
	for _, p := range mp.GetMetadataProps() {
		info.Metadata[p.GetKey()] = p.GetValue()
	}
	return info
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "N"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// WriteTable writes a readable summary; at most maxInits initializers are
// listed (all if maxInits < 0).
func (info Info) WriteTable(w io.Writer, maxInits int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ir_version\t%d\n", info.IRVersion)
	if info.Producer != "" {
		fmt.Fprintf(tw, "producer\t%s\n", info.Producer)
	}
	for _, d := range sortedKeys(info.Opsets) {
		fmt.Fprintf(tw, "opset\t%s %d\n", d, info.Opsets[d])
	}
	fmt.Fprintf(tw, "nodes\t%d\n", info.Nodes)
	fmt.Fprintf(tw, "initializers\t%d (%d elements)\n", len(info.Initializers), info.Parameters)
	for _, k := range sortedKeys(info.Metadata) {
		v := info.Metadata[k]
		if len(v) > 100 {
			v = v[:97] + "..."
		}
		fmt.Fprintf(tw, "meta %s\t%s\n", k, v)
	}
	fmt.Fprintln(tw, "\nINPUT\tTYPE\tSHAPE")
	for _, v := range info.Inputs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, v.Type, shapeString(v.Shape))
	}
	fmt.Fprintln(tw, "\nOUTPUT\tTYPE\tSHAPE")
	for _, v := range info.Outputs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, v.Type, shapeString(v.Shape))
	}
	fmt.Fprintln(tw, "\nOP\tCOUNT")
	for _, op := range sortedKeys(info.Ops) {
		fmt.Fprintf(tw, "%s\t%d\n", op, info.Ops[op])
	}
	fmt.Fprintln(tw, "\nINITIALIZER\tTYPE\tSHAPE\tELEMENTS")
	for i, t := range info.Initializers {
		if maxInits >= 0 && i >= maxInits {
			fmt.Fprintf(tw, "... %d more\t\t\t\n", len(info.Initializers)-i)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", t.Name, t.Type, shapeString(t.Shape), t.Elements)
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
