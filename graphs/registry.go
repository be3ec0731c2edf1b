package graphs

// The op registry. Every ONNX op type Derive handles has one opDef, which
// holds all the deriver knows about it: how an older opset's form is
// rewritten, its shape rule, how it folds to a constant, its gradient rule
// and, where the forward node is emitted in another form, its forward
// rule. Each family file registers its ops from its init function
// (elementwise.go, linear.go, conv.go, pooling.go, norm.go, reduce.go,
// shape.go, constant.go, loss.go), so adding an op means adding its entry
// and rules to one of them, and a case to that file's tests.

// opDef is the one definition of an ONNX op type. Only infer is needed for
// an op to appear in a forward graph; a nil grad means the op has no
// gradient rule (Derive refuses it on a differentiated path), which is not
// the same as noGrad (its outputs are piecewise constant: no gradient
// flows).
type opDef struct {
	// upgrade rewrites a node of an older opset into its opset-18 form
	// (attributes that became inputs, ...); nil: the form did not change.
	upgrade upgradeRule
	// infer is the shape rule.
	infer inferRule
	// nullary: the op takes no inputs (Constant).
	nullary bool
	// fold computes the output at derive time when every input is a
	// constant and the output is an integer (shape arithmetic); nil: the
	// op is never folded. An op whose shape rule already returns a
	// constant (Shape, Size, ConstantOfShape, Range) needs none.
	fold foldRule
	// foldFloat: fold also float outputs (Cast).
	foldFloat bool
	// grad is the gradient rule.
	grad gradRule
	// forward emits the forward node in a form other than a plain copy
	// (BN in training mode, MaxPool with indices, NCHWc convolutions);
	// nil: the node is copied.
	forward forwardRule
}

// upgradeRule rewrites n, in place, from the forward graph's opset
// (g.opset) to opset 18.
type upgradeRule func(g *fgraph, n *node) error

// inferRule returns the element types and static shapes of n's outputs
// given those of its inputs (ins[i] is nil for an omitted input); an
// output it returns as a constant (tinfo.isConst) makes n folded.
type inferRule func(g *fgraph, n *node, ins []*tinfo) ([]*tinfo, error)

// foldRule returns the values of n's output out (whose type and shape
// inference has set) computed from its constant inputs, or false if it
// cannot (the runtime then computes it).
type foldRule func(g *fgraph, n *node, ins []*tinfo, out *tinfo) ([]float64, bool)

// gradRule emits the backward nodes of one forward node. dy[i] is the
// gradient of output i ("" when no gradient reaches it). It returns one
// gradient per input ("" for none); it should compute only the gradients of
// inputs for which d.wants is true.
type gradRule func(d *deriver, n *node, dy []string) ([]string, error)

// forwardRule emits a forward node in a form other than a plain copy.
type forwardRule func(d *deriver, n *node) error

// noGrad is the gradient rule of ops whose outputs are piecewise constant.
func noGrad(d *deriver, n *node, dy []string) ([]string, error) { return nil, nil }

// ops is the registry: op type → its definition.
var ops = map[string]*opDef{}

// duplicateOps lists op types registered more than once (a test checks
// that there are none; the last registration wins).
var duplicateOps []string

// register adds a family's op definitions to the registry.
func register(family map[string]opDef) {
	for name, def := range family {
		if _, dup := ops[name]; dup {
			duplicateOps = append(duplicateOps, name)
		}
		def := def
		ops[name] = &def
	}
}
