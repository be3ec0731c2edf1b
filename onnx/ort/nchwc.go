package ort

import (
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/slatrun/slatrun/onnx"
)

var nchwc struct {
	once  sync.Once
	block int
}

// NCHWcBlock returns the channel block size of the loaded library's NCHWc
// kernels (MLAS picks it from the CPU: 16 with AVX-512, 8 with AVX2), or 0
// if the library has none or Init has not run. It is found once per process
// by running ReorderInput on a four-channel tensor (its smallest input),
// whose output has the channel count rounded up to the block size.
func NCHWcBlock() int {
	if !ortgo.IsInitialized() {
		return 0
	}
	nchwc.once.Do(func() { nchwc.block = probeNCHWc() })
	return nchwc.block
}

func probeNCHWc() int {
	b := onnx.NewBuilder("nchwc_probe")
	x := b.Input("x", onnx.Float, 1, 4, 1, 1)
	y := b.OpIn(onnx.NCHWcDomain, "ReorderInput", []string{x})
	b.Output(y, onnx.Float, 1, -1, 1, 1)
	data, err := b.Model().Encode()
	if err != nil {
		return 0
	}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return 0
	}
	defer so.Destroy()
	if so.SetIntraOpNumThreads(1) != nil {
		return 0
	}
	sess, err := ortgo.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{y}, so)
	if err != nil {
		return 0
	}
	defer sess.Destroy()
	in, err := ortgo.NewTensor(ortgo.NewShape(1, 4, 1, 1), []float32{1, 2, 3, 4})
	if err != nil {
		return 0
	}
	defer in.Destroy()
	out := []ortgo.Value{nil}
	if sess.Run([]ortgo.Value{in}, out) != nil || out[0] == nil {
		return 0
	}
	defer out[0].Destroy()
	s := out[0].GetShape()
	if len(s) != 4 || s[1] < 4 {
		return 0
	}
	return int(s[1])
}

// OneDNN reports whether graphs derived for a session with these options
// should use slatrun's oneDNN kernels (graphs.Spec.Kernels): Kernels is set,
// the provider is the CPU and the kernels can run here (Kernels()).
func (o Options) OneDNN() bool {
	if !o.Kernels || !o.OnCPU() {
		return false
	}
	ok, _ := Kernels()
	return ok
}

// NCHWc returns the block size graphs derived for a session with these
// options should use for NCHWc convolutions: NCHWcBlock on the CPU
// provider unless PlainConv is set, 0 otherwise.
func (o Options) NCHWc() int {
	if o.PlainConv || !o.OnCPU() {
		return 0
	}
	return NCHWcBlock()
}
