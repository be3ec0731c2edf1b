package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// LibraryVersion is the ONNX Runtime version tools/install-ort.sh installs and
// whose C API headers onnxruntime_go v1.27.0 carries.
const LibraryVersion = "1.24.1"

// ErrNotInitialized is returned when a session is requested before Init.
var ErrNotInitialized = errors.New("ort: ONNX Runtime is not initialized (call ort.Init)")

var (
	envMu   sync.Mutex
	envLib  string
	envDone bool
)

// DefaultLibraryPath is where tools/install-ort.sh puts the library:
// ${SLATRUN_CACHE:-$HOME/.cache/slatrun}/onnxruntime-<LibraryVersion>/libonnxruntime.so.1.
func DefaultLibraryPath() string {
	cache := os.Getenv("SLATRUN_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		cache = filepath.Join(home, ".cache", "slatrun")
	}
	return filepath.Join(cache, "onnxruntime-"+LibraryVersion, "libonnxruntime.so.1")
}

// ResolveLibrary picks the library path: flag (if not empty), then
// $ONNXRUNTIME_LIB, then DefaultLibraryPath.
func ResolveLibrary(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("ONNXRUNTIME_LIB"); env != "" {
		return env
	}
	return DefaultLibraryPath()
}

// Init loads the ONNX Runtime library (see ResolveLibrary for how lib is
// chosen) and creates the process's environment. It may be called more than
// once; calls after the first successful one return nil if they name the same
// library (or none) and an error otherwise.
func Init(lib string) error {
	envMu.Lock()
	defer envMu.Unlock()
	path := ResolveLibrary(lib)
	if envDone {
		if lib != "" && lib != envLib {
			return fmt.Errorf("ort: already initialized with %s, cannot switch to %s", envLib, lib)
		}
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("ort: ONNX Runtime library not found at %s: run tools/install-ort.sh, or pass --ort-lib / set ONNXRUNTIME_LIB", path)
	}
	ortgo.SetSharedLibraryPath(path)
	if err := ortgo.InitializeEnvironment(ortgo.WithLogLevelFatal()); err != nil {
		return fmt.Errorf("ort: load %s: %w", path, err)
	}
	envLib, envDone = path, true
	return nil
}

// Library returns the path of the loaded library ("" before Init).
func Library() string {
	envMu.Lock()
	defer envMu.Unlock()
	return envLib
}

// Version returns the loaded ONNX Runtime's version ("" before Init).
func Version() string {
	if !ortgo.IsInitialized() {
		return ""
	}
	return ortgo.GetVersion()
}

// Providers returns the execution providers that actually load in this
// process: "cpu" always, "cuda" only if a CUDA session can be created.
func Providers() []string {
	ps := []string{"cpu"}
	if CheckCUDA(0) == nil {
		ps = append(ps, "cuda")
	}
	return ps
}
