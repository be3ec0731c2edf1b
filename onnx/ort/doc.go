// Package ort runs ONNX models in ONNX Runtime through
// github.com/yalue/onnxruntime_go. It is the only package of slatrun that
// uses cgo.
//
// It finds and loads the ONNX Runtime shared library once per process (Init),
// reports its version and the execution providers that actually load, and
// makes sessions whose input and output tensors are allocated once, at
// creation, and reused run after run: callers write inputs in place into the
// slices Input returns and read outputs from the slices Output returns, so a
// steady-state Run allocates nothing on the Go side.
package ort
