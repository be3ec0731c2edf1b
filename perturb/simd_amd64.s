//go:build !purego

#include "textflag.h"

// The AVX2 loops of signFill and SLATInput (simd_amd64.go). Each takes
// 32 floats (four YMM registers) per turn and works on integer bits where
// the rule is about bits, so that MXCSR's denormals-are-zero mode, which
// ONNX Runtime may leave set on a thread, changes nothing.

DATA magbits<>+0(SB)/4, $0x7fffffff
GLOBL magbits<>(SB), RODATA|NOPTR, $4
DATA infbits<>+0(SB)/4, $0x7f800000
GLOBL infbits<>(SB), RODATA|NOPTR, $4
DATA onebits<>+0(SB)/4, $0x3f800000
GLOBL onebits<>(SB), RODATA|NOPTR, $4

// SIGNSTEP leaves step·sign(g) (0 for ±0 and NaN) in out, from g in in.
// Y5 holds 0x7fffffff, Y4 0x7f800000, Y7 the step's bits, Y6 zero;
// t1 and t2 are scratch. In turn: the magnitude bits m = g & 0x7fffffff;
// m > 0 (not ±0); g's sign bit alone, g ^ m; m > 0x7f800000 (NaN); the
// sign bit xor the step; keep = not NaN and not zero; the masked result.
#define SIGNSTEP(in, out, t1, t2) \
	VPAND    Y5, in, t1   \
	VPCMPGTD Y6, t1, t2   \
	VPXOR    in, t1, out  \
	VPCMPGTD Y4, t1, t1   \
	VPXOR    Y7, out, out \
	VPANDN   t2, t1, t1   \
	VPAND    t1, out, out

// SIGNCONSTS loads the constants SIGNSTEP reads besides the step.
#define SIGNCONSTS \
	VBROADCASTSS magbits<>(SB), Y5 \
	VBROADCASTSS infbits<>(SB), Y4 \
	VPXOR        Y6, Y6, Y6

// func signFillAVX2(delta, grad *float32, n int, step float32)
// n is a positive multiple of 32.
TEXT ·signFillAVX2(SB), NOSPLIT, $0-28
	MOVQ         delta+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS step+24(FP), Y7
	SIGNCONSTS

signloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	SIGNSTEP(Y0, Y8, Y9, Y10)
	SIGNSTEP(Y1, Y11, Y12, Y13)
	SIGNSTEP(Y2, Y14, Y9, Y10)
	SIGNSTEP(Y3, Y15, Y12, Y13)
	VMOVDQU Y8, (DI)
	VMOVDQU Y11, 32(DI)
	VMOVDQU Y14, 64(DI)
	VMOVDQU Y15, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JNZ     signloop
	VZEROUPPER
	RET

// BOX01 leaves min(max(s, max(−r, 0−x)), min(r, 1−x)) in s, x in x.
// Y3 holds −r, Y2 r, Y1 1.0, Y6 zero; t is scratch. In turn: 0−x;
// lo = max(−r, 0−x); max(s, lo); 1−x; hi = min(r, 1−x); min(·, hi). The
// operand that may be NaN is always the second source of VMAXPS and
// VMINPS, which they return when either is NaN, so that NaN spreads as
// Go's min and max spread it.
#define BOX01(x, s, t) \
	VSUBPS x, Y6, t \
	VMAXPS t, Y3, t \
	VMAXPS t, s, s  \
	VSUBPS x, Y1, t \
	VMINPS t, Y2, t \
	VMINPS t, s, s

// func slatInputAVX2(delta, grad, x *float32, n int, step, r float32)
// n is a positive multiple of 16; step and r are positive.
TEXT ·slatInputAVX2(SB), NOSPLIT, $0-40
	MOVQ         delta+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         x+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS step+32(FP), Y7
	VBROADCASTSS r+36(FP), Y2
	SIGNCONSTS
	VBROADCASTSS onebits<>(SB), Y1
	VSUBPS       Y2, Y6, Y3 // −r

boxloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y8
	SIGNSTEP(Y0, Y9, Y10, Y11)
	SIGNSTEP(Y8, Y12, Y13, Y14)
	VMOVUPS (DX), Y0
	VMOVUPS 32(DX), Y8
	BOX01(Y0, Y9, Y10)
	BOX01(Y8, Y12, Y13)
	VMOVUPS Y9, (DI)
	VMOVUPS Y12, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DX
	ADDQ    $64, DI
	SUBQ    $16, CX
	JNZ     boxloop
	VZEROUPPER
	RET
