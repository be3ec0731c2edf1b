package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/slatrun/slatrun/onnx/ort"
)

func init() {
	register(command{name: "version", summary: "print versions: slatrun, Go, ONNX Runtime, providers that load", run: runVersion})
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	var rt runtimeFlags
	fs := newFlags("version", "version [--ort-lib PATH]", stderr)
	rt.addLib(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "slatrun       %s\n", version)
	fmt.Fprintf(stdout, "go            %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err := ort.Init(rt.ortLib); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "onnxruntime   %s (%s)\n", ort.Version(), ort.Library())
	fmt.Fprintf(stdout, "providers     %s\n", strings.Join(ort.Providers(), ", "))
	if b := ort.NCHWcBlock(); b > 0 {
		fmt.Fprintf(stdout, "nchwc         CPU convolutions in blocks of %d channels (--nchwc=false: plain NCHW)\n", b)
	} else {
		fmt.Fprintf(stdout, "nchwc         unavailable: plain NCHW convolutions\n")
	}
	if ok, why := ort.Kernels(); ok {
		fmt.Fprintf(stdout, "kernels       oneDNN training kernels on the CPU (%s), 3x3 stride-1 convolutions of 64+ channels in Winograd F(4x4,3x3) (--kernels onednn-direct: direct only; --kernels ort: ONNX Runtime's own)\n", ort.KernelsInfo())
	} else {
		fmt.Fprintf(stdout, "kernels       ONNX Runtime's own only: %s\n", why)
	}
	return nil
}
