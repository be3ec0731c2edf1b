package ort

import "testing"

func TestNCHWcBlock(t *testing.T) {
	b := NCHWcBlock()
	t.Logf("NCHWc block size %d", b)
	switch b {
	case 0, 4, 8, 16:
	default:
		t.Errorf("NCHWcBlock() = %d, want 0, 4, 8 or 16", b)
	}
	if (Options{Provider: "cuda"}).NCHWc() != 0 || (Options{PlainConv: true}).NCHWc() != 0 {
		t.Error("NCHWc must be off for CUDA and with PlainConv")
	}
}
