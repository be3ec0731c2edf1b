// Package onnx is the ONNX model as a Go value: decoding and encoding with
// errors that name what is wrong (not ONNX, truncated, no graph, an IR version
// or opset this runtime cannot run), a small Builder for nodes, initializers,
// typed inputs and outputs and metadata, and Inspect, which summarizes a model
// for people and for the CLI.
//
// Validate is the one validation step between bytes and anything that reads
// a model: Decode and Load run it, and graphs.Derive runs it on models built
// in memory. It checks every node's number of inputs and outputs against its
// operator (CheckArity), the types and ranges of the attributes slatrun and
// ONNX Runtime compute with (kernel sizes, strides, dilations, pads, group,
// axes, permutations), initializer sizes against their dims without
// overflow (Elements), that every name is defined once and before it is
// read, and it refuses tensors kept in external files (ErrExternalData). A
// model it accepts may still be one graphs cannot derive, but none that
// makes slatrun panic, loop or allocate without bound.
//
// The protobuf types themselves live in package onnxpb; this package adds the
// checks and conveniences the rest of slatrun needs.
package onnx
