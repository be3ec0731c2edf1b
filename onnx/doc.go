// Package onnx is the ONNX model as a Go value: decoding and encoding with
// errors that name what is wrong (not ONNX, truncated, no graph, an IR version
// or opset this runtime cannot run), a small Builder for nodes, initializers,
// typed inputs and outputs and metadata, and Inspect, which summarizes a model
// for people and for the CLI.
//
// The protobuf types themselves live in package onnxpb; this package adds the
// checks and conveniences the rest of slatrun needs.
package onnx
