package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/slatrun/slatrun/onnx"
)

// checkOutput returns a usage error unless a file can be written at path,
// which --flag value asks for (path is value itself for an output file, a
// name that starts with it for a prefix): its directory exists and takes
// new files, and path is not a directory. Commands call it before their
// work, so that a typo in an output path does not cost a whole evaluation.
func checkOutput(flag, value, path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return usagef("--%s %s: %v", flag, value, err)
	}
	if !st.IsDir() {
		return usagef("--%s %s: %s is not a directory", flag, value, dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usagef("--%s %s: %s is a directory; give a file name", flag, value, path)
	}
	f, err := os.CreateTemp(dir, ".slatrun-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the probe's own name would only confuse
		}
		return usagef("--%s %s: cannot create files in %s: %v", flag, value, dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// writeOutput writes data to path atomically (onnx.WriteFileAtomic) and
// reports a failure under path, not under the temporary file the write
// went through.
func writeOutput(path string, data []byte) error {
	err := onnx.WriteFileAtomic(path, data)
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return &fs.PathError{Op: pe.Op, Path: path, Err: pe.Err}
	case errors.As(err, &le):
		return &fs.PathError{Op: le.Op, Path: path, Err: le.Err}
	}
	return fmt.Errorf("%s: %w", path, err)
}

// checkFinite refuses a model (read from name) whose weights hold a NaN or
// an infinity (onnx.Model.CheckFinite), before any work.
func checkFinite(m *onnx.Model, name string) error {
	if err := m.CheckFinite(); err != nil {
		return fmt.Errorf("model %s: %w, so it cannot be used", name, err)
	}
	return nil
}
