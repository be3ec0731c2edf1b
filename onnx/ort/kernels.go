package ort

/*
#cgo CFLAGS: -O2 -std=gnu11 -Wall
#cgo LDFLAGS: -ldl -lpthread -lm
#include <stdlib.h>
#include "kernels.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"unsafe"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/slatrun/slatrun/onnx"
)

// KernelDomain is the operator domain of slatrun's own kernels, registered
// into a session when Options.Kernels is set (see docs/kernels.md).
const KernelDomain = onnx.KernelDomain

// ConvGradWeightOp is the name of the 2-D convolution weight-gradient kernel
// in KernelDomain (onnx.ConvGradWeight says what it takes).
const ConvGradWeightOp = onnx.ConvGradWeight

// ConvGradInputOp and ConvForwardOp are the 2-D convolution input gradient
// and forward convolution in KernelDomain (onnx.ConvGradInput and
// onnx.ConvForward say what they take).
const (
	ConvGradInputOp = onnx.ConvGradInput
	ConvForwardOp   = onnx.ConvForward
)

// BatchNormTrainOp and BatchNormTrainGradOp are KernelDomain's fused
// training-mode batch normalization, forward and backward
// (onnx.BatchNormTrain and onnx.BatchNormTrainGrad say what they take;
// docs/kernels.md has the formulas).
const (
	BatchNormTrainOp     = onnx.BatchNormTrain
	BatchNormTrainGradOp = onnx.BatchNormTrainGrad
)

// KernelNotice receives, once per process, the one-sentence notice that a
// session asked for the fast kernels but they are off here. Set it to nil to
// silence it.
var KernelNotice io.Writer = os.Stderr

var kern struct {
	once    sync.Once
	ok      bool
	why     string
	desc    string
	notice  sync.Once
	mu      sync.Mutex
	domains map[domainKey]unsafe.Pointer // never released
}

// domainKey tells the kernel domains apart: each is made for one intra-op
// thread count and one convolution algorithm choice.
type domainKey struct {
	threads int
	direct  bool
}

func cErr(buf []C.char) string { return C.GoString(&buf[0]) }

// Kernels reports whether slatrun's oneDNN kernels can be used in this
// process and, when they cannot, why and how to get them. It needs Init.
func Kernels() (available bool, why string) {
	if !ortgo.IsInitialized() {
		return false, "ONNX Runtime is not initialized (call ort.Init)"
	}
	kern.once.Do(loadKernels)
	return kern.ok, kern.why
}

// KernelsInfo describes the oneDNN library in use and the implementation
// oneDNN chose for the last convolution primitive built (for example
// "jit:avx512_core"), or "" when the kernels are off.
func KernelsInfo() string {
	if ok, _ := Kernels(); !ok {
		return ""
	}
	buf := make([]C.char, 256)
	C.slat_impl_info(&buf[0], C.size_t(len(buf)))
	if impl := cErr(buf); impl != "" {
		return kern.desc + ", last convolution primitive: " + impl
	}
	return kern.desc
}

func loadKernels() {
	buf := make([]C.char, 512)
	if err := checkSessionOptionsLayout(); err != nil {
		kern.why = "fast kernels off: " + err.Error()
		return
	}
	lib := C.CString(Library())
	defer C.free(unsafe.Pointer(lib))
	if C.slat_ort_bind(lib, &buf[0], C.size_t(len(buf))) != 0 {
		kern.why = "fast kernels off: cannot reach ONNX Runtime's C API: " + cErr(buf)
		return
	}
	if C.slat_ort_selftest(&buf[0], C.size_t(len(buf))) != 0 {
		kern.why = "fast kernels off: ONNX Runtime's C API does not behave as declared: " + cErr(buf)
		return
	}
	if C.slat_dnnl_load(&buf[0], C.size_t(len(buf))) != 0 {
		kern.why = "fast kernels off: oneDNN 2.x not usable (" + cErr(buf) + "); install it with `apt-get install libdnnl2` (or libdnnl-dev)"
		return
	}
	kern.ok = true
	kern.desc = C.GoString(C.slat_dnnl_describe())
	kern.domains = map[domainKey]unsafe.Pointer{}
}

// apiVersionString returns ONNX Runtime's version as read through the
// OrtApiBase this layer found (tests compare it with onnxruntime_go's).
func apiVersionString() string {
	Kernels()
	return C.GoString(C.slat_ort_version())
}

// checkSessionOptionsLayout verifies that onnxruntime_go's SessionOptions is
// still a struct holding only the C OrtSessionOptions pointer, which
// sessionOptionsPtr reads.
func checkSessionOptionsLayout() error {
	t := reflect.TypeFor[ortgo.SessionOptions]()
	if t.Kind() != reflect.Struct || t.NumField() != 1 || t.Field(0).Name != "o" ||
		t.Field(0).Type.Kind() != reflect.Pointer || t.Field(0).Offset != 0 {
		return fmt.Errorf("onnxruntime_go.SessionOptions changed layout (%d fields); onnx/ort/kernels.go must be updated", t.NumField())
	}
	return nil
}

// sessionOptionsPtr returns the OrtSessionOptions* inside so.
func sessionOptionsPtr(so *ortgo.SessionOptions) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(so))
}

// addKernels registers KernelDomain in so for a session with the given
// intra-op thread count (0: ONNX Runtime's default, and OpenMP's default for
// oneDNN), its convolutions in oneDNN's direct algorithm only when direct
// is set (Options.DirectConv). If the kernels are unavailable it writes the notice once and
// returns nil: graphs that need them then fail to load with ONNX Runtime's
// own error, and graph builders should check Kernels first.
func addKernels(so *ortgo.SessionOptions, threads int, direct bool) error {
	ok, why := Kernels()
	if !ok {
		kern.notice.Do(func() {
			if KernelNotice != nil {
				fmt.Fprintln(KernelNotice, "slatrun: "+why)
			}
		})
		return nil
	}
	kern.mu.Lock()
	defer kern.mu.Unlock()
	buf := make([]C.char, 512)
	key := domainKey{threads, direct}
	dom, have := kern.domains[key]
	if !have {
		var p unsafe.Pointer
		winograd := C.int(1)
		if direct {
			winograd = 0
		}
		if C.slat_domain_new(C.int(threads), winograd, &p, &buf[0], C.size_t(len(buf))) != 0 {
			return fmt.Errorf("ort: kernels: %s", cErr(buf))
		}
		kern.domains[key] = p
		dom = p
	}
	ptr := sessionOptionsPtr(so)
	if ptr == nil {
		return errors.New("ort: kernels: session options are not initialized")
	}
	if C.slat_domain_add(ptr, dom, &buf[0], C.size_t(len(buf))) != 0 {
		return fmt.Errorf("ort: kernels: %s", cErr(buf))
	}
	return nil
}
