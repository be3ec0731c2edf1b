package predict

import "github.com/slatrun/slatrun/onnx"

// ErrExternalData is wrapped by the error New and Open return for a model
// that keeps tensor data in an external file.
//
// ONNX lets a tensor say that its bytes lie in another file (external_data
// with a "location"). ONNX Runtime resolves that location against the
// model's directory, or against the process's working directory for a model
// handed over as bytes, as a Predictor's is, and reads the file: a model
// naming "../../etc/passwd" would serve that file's bytes as weights. A
// Predictor therefore refuses any such tensor before ONNX Runtime sees the
// model, through the same check as the slatrun command (onnx.Model.Validate,
// which looks at every tensor: initializers, attributes, subgraphs,
// functions and training info).
var ErrExternalData = onnx.ErrExternalData
