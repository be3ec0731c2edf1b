package predict

import (
	"errors"
	"fmt"
	"strings"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// ErrExternalData is wrapped by the error New and Open return for a model
// that keeps tensor data in an external file.
//
// ONNX lets a tensor say that its bytes lie in another file (external_data
// with a "location"). ONNX Runtime resolves that location against the
// model's directory, or against the process's working directory for a model
// handed over as bytes, as a Predictor's is, and reads the file: a model
// naming "../../etc/passwd" would serve that file's bytes as weights. A
// Predictor therefore refuses any such tensor before ONNX Runtime sees the
// model, as the slatrun command does.
var ErrExternalData = errors.New("external tensor data refused")

// externalTensor is where checkExternalData found a tensor with external
// data. path is filled innermost first, on the way out of the recursion, so
// that nothing is formatted unless such a tensor is found.
type externalTensor struct {
	name, location string
	path           []string
}

func (e *externalTensor) at(where string) *externalTensor {
	e.path = append(e.path, where)
	return e
}

// checkExternalData returns an error wrapping ErrExternalData if any tensor
// of mp keeps its data outside the model: an initializer (dense or sparse)
// or a tensor attribute, in the main graph, in any subgraph (If, Loop, Scan
// bodies), in a model-local function or in training info.
func checkExternalData(mp *onnxpb.ModelProto) error {
	e := graphData(mp.GetGraph())
	if e != nil {
		e.at("the main graph")
	}
	for _, f := range mp.GetFunctions() {
		if e != nil {
			break
		}
		if e = nodesData(f.GetNode()); e != nil {
			e.at(fmt.Sprintf("function %q", f.GetName()))
		}
	}
	for i, ti := range mp.GetTrainingInfo() {
		if e != nil {
			break
		}
		if e = graphData(ti.GetInitialization()); e != nil {
			e.at(fmt.Sprintf("training info %d (initialization)", i))
		} else if e = graphData(ti.GetAlgorithm()); e != nil {
			e.at(fmt.Sprintf("training info %d (algorithm)", i))
		}
	}
	if e == nil {
		return nil
	}
	return fmt.Errorf("predict: %w: tensor %q (%s) keeps its data in an external file (location %q), which slatrun does not read; save the model with its weights inside the .onnx file",
		ErrExternalData, e.name, strings.Join(e.path, " in "), e.location)
}

func graphData(g *onnxpb.GraphProto) *externalTensor {
	for _, t := range g.GetInitializer() {
		if e := tensorData(t); e != nil {
			return e.at("initializer")
		}
	}
	for _, st := range g.GetSparseInitializer() {
		if e := sparseData(st); e != nil {
			return e.at("sparse initializer")
		}
	}
	return nodesData(g.GetNode())
}

func nodesData(nodes []*onnxpb.NodeProto) *externalTensor {
	for _, n := range nodes {
		for _, a := range n.GetAttribute() {
			attr := func() string {
				return fmt.Sprintf("attribute %q of node %q (%s)", a.GetName(), n.GetName(), n.GetOpType())
			}
			e := tensorData(a.GetT())
			for _, t := range a.GetTensors() {
				if e != nil {
					break
				}
				e = tensorData(t)
			}
			if e == nil {
				e = sparseData(a.GetSparseTensor())
			}
			for _, st := range a.GetSparseTensors() {
				if e != nil {
					break
				}
				e = sparseData(st)
			}
			if e != nil {
				return e.at(attr())
			}
			if e = graphData(a.GetG()); e != nil {
				return e.at("the subgraph in " + attr())
			}
			for i, g := range a.GetGraphs() {
				if e = graphData(g); e != nil {
					return e.at(fmt.Sprintf("subgraph %d in %s", i, attr()))
				}
			}
		}
	}
	return nil
}

func sparseData(st *onnxpb.SparseTensorProto) *externalTensor {
	if e := tensorData(st.GetValues()); e != nil {
		return e.at("values")
	}
	if e := tensorData(st.GetIndices()); e != nil {
		return e.at("indices")
	}
	return nil
}

// tensorData reports t if it is marked EXTERNAL or carries external_data
// entries at all (a runtime may honour either).
func tensorData(t *onnxpb.TensorProto) *externalTensor {
	if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL && len(t.GetExternalData()) == 0 {
		return nil
	}
	e := &externalTensor{name: t.GetName()}
	for _, kv := range t.GetExternalData() {
		if kv.GetKey() == "location" {
			e.location = kv.GetValue()
		}
	}
	return e
}
