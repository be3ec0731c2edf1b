// slatrun's plain-C operators for ONNX Runtime's CPU provider besides batch
// norm (bnorm.c), in the ai.slatrun domain (see docs/kernels.md), each run on
// the session's intra-op pool:
//
//   TapClip(pre, delta) -> h
//   Relayout(X) -> Y                       (below)
//   Conv1x1(X, W[, B]) -> Y                (below)
//   Conv1x1GradInput(dY, W[, acc]) -> dX   (below)
//   ConvGradInputNarrow(dY, W) -> dX       (below)
//   ConvNarrow(X, W[, B]) -> Y             (below)
//
// SLAT's domain clip at a latent tap: h = min(max(pre + delta, lo), hi)
// written as ONNX's Max(Min(pre + delta, hi), lo), with lo and hi the
// minimum and maximum of pre over each plane: per (sample, channel) over the
// spatial axes of a [N, C, spatial...] tensor, per sample over F of an
// [N, F] one. The plain graph spends five passes on it (ReduceMin,
// ReduceMax, Add, Min, Max); here one plane at a time is read twice while
// it is in cache and written once, and the planes are spread over ONNX
// Runtime's intra-op pool. The float operations are the plain graph's, in
// its order, so h is bit-identical to it. Attribute blocked (bit 0: pre,
// bit 1: delta, bit 2: h) says which of the [N, C, H, W] tensors are in
// oneDNN's nChw16c layout (C a multiple of 16); the work is then split by
// sample and block of 16 channels.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_abi.h"
#include "kernels_internal.h"

#define FU_DOMAIN "ai.slatrun"
#define FUF(idx, ret, ...) ((ret(*)(__VA_ARGS__))slat_ort_table()[idx])

// The 64-byte vector helpers are static and inlined; no vector crosses an
// ABI boundary, so GCC's warning about AVX-512 arguments is moot.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__)
#define FU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef FU_CLONES
#define FU_CLONES
#endif

// fu_gemm sets out[o·ldo + i] = Σ_r coef[o·so + r·sr]·in[r·ld + i] for
// o < nout, i < len (rows ldo ≥ len and ld ≥ len floats apart): a small
// matrix product, four output rows by 16 floats at a time held in
// registers, so each input vector is loaded once per four multiply-adds.
// Summation over r runs in order.
typedef float fu_v16 __attribute__((vector_size(64)));

#define fu_load(p) ({ fu_v16 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define fu_store(p, v)                                                                                     \
	do {                                                                                                   \
		fu_v16 v_ = (v);                                                                                   \
		memcpy((p), &v_, sizeof v_);                                                                       \
	} while (0)

FU_CLONES
static void fu_gemm(float *out, int64_t ldo, int64_t nout, const float *in, int64_t nin, int64_t len, int64_t ld,
                    const float *coef, int64_t so, int64_t sr) {
	const int64_t L16 = len & ~(int64_t)15;
	int64_t o = 0;
	for (; o + 4 <= nout; o += 4) {
		const float *c0 = coef + o * so, *c1 = c0 + so, *c2 = c1 + so, *c3 = c2 + so;
		for (int64_t i = 0; i < L16; i += 16) {
			fu_v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
			for (int64_t r = 0; r < nin; r++) {
				fu_v16 v = fu_load(in + r * ld + i);
				a0 += c0[r * sr] * v;
				a1 += c1[r * sr] * v;
				a2 += c2[r * sr] * v;
				a3 += c3[r * sr] * v;
			}
			fu_store(out + o * ldo + i, a0);
			fu_store(out + (o + 1) * ldo + i, a1);
			fu_store(out + (o + 2) * ldo + i, a2);
			fu_store(out + (o + 3) * ldo + i, a3);
		}
		for (int64_t i = L16; i < len; i++) {
			float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
			for (int64_t r = 0; r < nin; r++) {
				float v = in[r * ld + i];
				a0 += c0[r * sr] * v, a1 += c1[r * sr] * v, a2 += c2[r * sr] * v, a3 += c3[r * sr] * v;
			}
			out[o * ldo + i] = a0, out[(o + 1) * ldo + i] = a1, out[(o + 2) * ldo + i] = a2, out[(o + 3) * ldo + i] = a3;
		}
	}
	for (; o < nout; o++) {
		const float *c0 = coef + o * so;
		for (int64_t i = 0; i < L16; i += 16) {
			fu_v16 a0 = {0};
			for (int64_t r = 0; r < nin; r++) a0 += c0[r * sr] * fu_load(in + r * ld + i);
			fu_store(out + o * ldo + i, a0);
		}
		for (int64_t i = L16; i < len; i++) {
			float a0 = 0;
			for (int64_t r = 0; r < nin; r++) a0 += c0[r * sr] * in[r * ld + i];
			out[o * ldo + i] = a0;
		}
	}
}

// fu_bias adds b[k] to the k-th of y's K rows of len floats (nothing when b
// is NULL).
static void fu_bias(float *y, int64_t K, int64_t len, const float *b) {
	if (!b) return;
	for (int64_t k = 0; k < K; k++)
		for (int64_t i = 0; i < len; i++) y[k * len + i] += b[k];
}

typedef struct {
	int64_t S; // plane length
	const float *pre, *delta;
	float *h;
	int blocked; // bit 0: pre, bit 1: delta, bit 2: h in nChw16c
} TapJob;

FU_CLONES __attribute__((optimize("tree-vectorize")))
static void tap_plane(void *p, size_t plane) {
	const TapJob *j = p;
	const int64_t S = j->S, o = (int64_t)plane * S;
	const float *pre = j->pre + o, *d = j->delta + o;
	float *h = j->h + o;
	float lo = pre[0], hi = pre[0];
	for (int64_t i = 1; i < S; i++) {
		lo = pre[i] < lo ? pre[i] : lo;
		hi = pre[i] > hi ? pre[i] : hi;
	}
	for (int64_t i = 0; i < S; i++) {
		float v = pre[i] + d[i];
		v = v < hi ? v : hi;
		h[i] = v > lo ? v : lo;
	}
}

// The 16 channels of block cb of sample n occupy floats [item·16·S,
// (item+1)·16·S) of an [N, C, H, W] tensor (item = n·C/16 + cb) in both
// layouts: channel lane l at position s is at l·S + s in NCHW and at
// s·16 + l in nChw16c. The blocked kernels below work on tiles of 16
// positions × 16 lanes, held as 16 vectors, one per position (the nChw16c
// order); an NCHW tile is loaded as 16 lane rows and transposed in registers.

typedef int32_t fu_i16 __attribute__((vector_size(64)));

#if defined(__clang__)
#define FU_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define FU_SHUF(a, b, ...) __builtin_shuffle(a, b, (fu_i16){__VA_ARGS__})
#endif

// Shuffle indices of the transpose's rounds: the low and high result of
// each pair of rows (indices 16-31 name the second row's lanes).
#define FU_L8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define FU_H8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define FU_L4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define FU_H4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define FU_L2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define FU_H2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define FU_L1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define FU_H1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31


// fu_tr16 transposes the 16 × 16 tile r in place: four rounds, each
// swapping the off-diagonal sub-blocks of size 8, 4, 2 and 1.
#define FU_TR_ROUND(B, LO, HI)                                                                             \
	_Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                                                  \
		if (!(i & B)) {                                                                                    \
			fu_v16 a = r[i], b = r[i + B];                                                                 \
			r[i] = FU_SHUF(a, b, LO);                                                                      \
			r[i + B] = FU_SHUF(a, b, HI);                                                                  \
		}
static inline __attribute__((always_inline)) void fu_tr16(fu_v16 r[16]) {
	FU_TR_ROUND(8, FU_L8, FU_H8)
	FU_TR_ROUND(4, FU_L4, FU_H4)
	FU_TR_ROUND(2, FU_L2, FU_H2)
	FU_TR_ROUND(1, FU_L1, FU_H1)
}
// fu_tile_load reads positions [i0, i0+16) of a 16-lane block (p; S floats
// per lane row when plain) into r: one vector per position when pos is set,
// one per lane (16 positions) when not, transposed when the tensor's layout
// holds the other.
static inline __attribute__((always_inline)) void fu_tile_load(fu_v16 r[16], const float *p, int blk, int64_t S,
                                                               int64_t i0, int pos) {
	if (blk) {
		_Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) r[i] = fu_load(p + (i0 + i) * 16);
	} else {
		_Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) r[l] = fu_load(p + l * S + i0);
	}
	if (blk != pos) fu_tr16(r);
}

// fu_tile_store writes r (oriented as pos says, as for fu_tile_load) to
// positions [i0, i0+16).
static inline __attribute__((always_inline)) void fu_tile_store(fu_v16 r[16], float *p, int blk, int64_t S,
                                                                int64_t i0, int pos) {
	if (blk != pos) fu_tr16(r);
	if (blk) {
		_Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) fu_store(p + (i0 + i) * 16, r[i]);
	} else {
		_Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) fu_store(p + l * S + i0, r[l]);
	}
}

// fu_at is element (lane l, position i) of a 16-lane block.
static inline int64_t fu_at(int blk, int64_t S, int l, int64_t i) { return blk ? i * 16 + l : l * S + i; }

// fu_sel picks a where m is set (a lane comparison's result), else b (a
// macro: a vector argument of an inline function draws GCC's ABI note).
// fu_sel(v < lo, v, lo) is tap_plane's v < lo ? v : lo, lane by lane.
#define fu_sel(m, a, b) ((fu_v16)(((fu_i16)(a) & (m)) | ((fu_i16)(b) & ~(m))))

// tap_block is tap_plane for the 16 channels of one block of one sample,
// each tensor in its layout, with tap_plane's operations in its order per
// lane (so the same floats). lo and hi are lane vectors updated position
// by position. The clamp runs on the orientation of pre: one vector per
// position when pre is blocked, one per lane (16 positions) when it is
// NCHW, with delta's tile and h's transposed to match where needed.
FU_CLONES
static void tap_block(void *p, size_t item) {
	const TapJob *j = p;
	const int64_t S = j->S, o = (int64_t)item * 16 * S, S16 = S & ~(int64_t)15;
	const int bp = j->blocked & 1, bd = j->blocked >> 1 & 1, bh = j->blocked >> 2 & 1;
	const float *pre = j->pre + o, *d = j->delta + o;
	float *h = j->h + o;
	fu_v16 r[16];
	float lo_[16], hi_[16];
	for (int l = 0; l < 16; l++) lo_[l] = hi_[l] = pre[fu_at(bp, S, l, 0)];
	fu_v16 lo = fu_load(lo_), hi = fu_load(hi_);
	for (int64_t i0 = 0; i0 < S16; i0 += 16) {
		fu_tile_load(r, pre, bp, S, i0, 1);
		_Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) {
			lo = fu_sel(r[i] < lo, r[i], lo);
			hi = fu_sel(r[i] > hi, r[i], hi);
		}
	}
	fu_store(lo_, lo);
	fu_store(hi_, hi);
	for (int64_t i = S16; i < S; i++)
		for (int l = 0; l < 16; l++) {
			float v = pre[fu_at(bp, S, l, i)];
			lo_[l] = v < lo_[l] ? v : lo_[l];
			hi_[l] = v > hi_[l] ? v : hi_[l];
		}
	lo = fu_load(lo_), hi = fu_load(hi_);
	for (int64_t i0 = 0; i0 < S16; i0 += 16) {
		fu_tile_load(r, d, bd, S, i0, bp); // delta in pre's orientation
		if (bp) { // one vector per position
			_Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) {
				fu_v16 v = fu_load(pre + (i0 + i) * 16) + r[i];
				v = fu_sel(v < hi, v, hi);
				r[i] = fu_sel(v > lo, v, lo);
			}
		} else { // one vector per lane
			_Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) {
				const fu_v16 lv = (fu_v16){0} + lo_[l], hv = (fu_v16){0} + hi_[l];
				fu_v16 v = fu_load(pre + l * S + i0) + r[l];
				v = fu_sel(v < hv, v, hv);
				r[l] = fu_sel(v > lv, v, lv);
			}
		}
		fu_tile_store(r, h, bh, S, i0, bp);
	}
	for (int64_t i = S16; i < S; i++)
		for (int l = 0; l < 16; l++) {
			float v = pre[fu_at(bp, S, l, i)] + d[fu_at(bd, S, l, i)];
			v = v < hi_[l] ? v : hi_[l];
			h[fu_at(bh, S, l, i)] = v > lo_[l] ? v : lo_[l];
		}
}

// ---------------------------------------------------------------------------
//   Relayout(X) -> Y; attribute to_blocked
//
// The same [N, C, H, W] tensor (C a multiple of 16) in the other layout:
// NCHW to oneDNN's nChw16c (to_blocked = 1) or back (0). The graph puts one
// where a tensor kept blocked between kernels meets an operator that reads
// or writes NCHW (graphs/blocked.go). One task per sample and block of 16
// channels, a transpose of 16 × H·W floats within the same range, 16 × 16
// at a time in registers.

typedef struct {
	int64_t S;
	const float *x;
	float *y;
	int to_blocked;
} RlJob;

// fu_relayout moves one 16-channel block of S positions from x to y in the
// other layout (to nChw16c when to_blocked is set, else back to NCHW).
FU_CLONES
static void fu_relayout(const float *x, float *y, int64_t S, int to_blocked) {
	const int64_t S16 = S & ~(int64_t)15;
	const int bx = !to_blocked, by = to_blocked;
	fu_v16 r[16];
	for (int64_t i0 = 0; i0 < S16; i0 += 16) {
		fu_tile_load(r, x, bx, S, i0, bx);
		fu_tile_store(r, y, by, S, i0, bx);
	}
	for (int64_t i = S16; i < S; i++)
		for (int l = 0; l < 16; l++) y[fu_at(by, S, l, i)] = x[fu_at(bx, S, l, i)];
}

// fu_relayout_image moves C channels (a multiple of 16) of S positions.
static void fu_relayout_image(const float *x, float *y, int64_t C, int64_t S, int to_blocked) {
	for (int64_t cb = 0; cb < C / 16; cb++) fu_relayout(x + cb * 16 * S, y + cb * 16 * S, S, to_blocked);
}

// fu_grid moves values between the stride grid of one nChw16c block (blk:
// positions (oh·s0, ow·s1), row pitch W) and 16 contiguous rows of OH·OW
// (rows): gathers the grid into the rows, or, with to_grid, sets the grid
// to the rows (adds them, with add); it writes only rows when gathering,
// only blk with to_grid. 16 positions at a time, transposed in registers.
FU_CLONES
static void fu_grid(float *blk, float *rows, int64_t OH, int64_t OW, int64_t s0, int64_t s1, int64_t W, int to_grid,
                    int add) {
	const int64_t OHW = OH * OW, OHW16 = OHW & ~(int64_t)15;
	int64_t oh = 0, ow = 0; // position i's
	fu_v16 r[16];
	for (int64_t i = 0; i < OHW16; i += 16) {
		if (to_grid) {
			_Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) r[l] = fu_load(rows + l * OHW + i);
			fu_tr16(r);
		}
		for (int q = 0; q < 16; q++) {
			float *e = blk + (oh * s0 * W + ow * s1) * 16;
			if (!to_grid)
				r[q] = fu_load(e);
			else
				fu_store(e, add ? fu_load(e) + r[q] : r[q]);
			if (++ow == OW) ow = 0, oh++;
		}
		if (!to_grid) {
			fu_tr16(r);
			_Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) fu_store(rows + l * OHW + i, r[l]);
		}
	}
	for (int64_t i = OHW16; i < OHW; i++) {
		float *e = blk + (oh * s0 * W + ow * s1) * 16;
		for (int l = 0; l < 16; l++) {
			float *v = rows + l * OHW + i;
			if (!to_grid)
				*v = e[l];
			else
				e[l] = add ? e[l] + *v : *v;
		}
		if (++ow == OW) ow = 0, oh++;
	}
}

static void rl_block(void *p, size_t item) {
	const RlJob *j = p;
	const int64_t o = (int64_t)item * 16 * j->S;
	fu_relayout(j->x + o, j->y + o, j->S, j->to_blocked);
}

// A kernel instance: its operator (FU_*), the attributes it read, and the
// node's name for messages.
enum { FU_TAPCLIP, FU_CONV1X1, FU_CONV1X1_GRAD, FU_NARROW_GRAD, FU_NARROW, FU_RELAYOUT, FU_KINDS };
typedef struct {
	int kind;
	int64_t flag;        // TapClip, Conv1x1, Conv1x1GradInput: attribute blocked; Relayout: to_blocked
	int64_t s[2], hw[2]; // strides; input_shape (the two input gradients)
	int64_t ks[2], p[4]; // kernel_shape, pads (the narrow convolutions)
	char name[160];
} FuKernel;

static int tap_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor pre, delta;
	if (kt_input(ctx, 0, 1, &pre, err, n, "pre") || kt_input(ctx, 1, 1, &delta, err, n, "delta")) return -1;
	if (pre.rank < 2) {
		kt_seterr(err, n, "pre must have rank >= 2 ([N, F] or [N, C, spatial...]), not %zu", pre.rank);
		return -1;
	}
	if (!kt_same_shape(&pre, &delta)) {
		kt_seterr(err, n, "delta must have pre's shape");
		return -1;
	}
	if (k->flag && kt_check_blocked(pre.dims, pre.rank, "pre", err, n)) return -1;
	int64_t planes = pre.dims[0], S = 1;
	if (pre.rank == 2) {
		S = pre.dims[1];
	} else {
		planes *= pre.dims[1];
		for (size_t i = 2; i < pre.rank; i++) S *= pre.dims[i];
	}
	float *pp, *pd, *ph;
	if (kt_data(pre.v, &pp, err, n, "pre") || kt_data(delta.v, &pd, err, n, "delta") ||
	    kt_output(ctx, 0, pre.dims, pre.rank, &ph, err, n, "output h"))
		return -1;
	if (!ph) {
		kt_seterr(err, n, "output h is required");
		return -1;
	}
	if (planes == 0 || S == 0) return 0;
	TapJob j = {.S = S, .pre = pp, .delta = pd, .h = ph, .blocked = (int)k->flag};
	if (k->flag) return kt_parallel(ctx, tap_block, planes / 16, &j, err, n);
	return kt_parallel(ctx, tap_plane, planes, &j, err, n);
}

static int rl_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor x;
	float *px, *py;
	if (kt_input(ctx, 0, 1, &x, err, n, "X") || kt_check_blocked(x.dims, x.rank, "X", err, n) || kt_data(x.v, &px, err, n, "X") ||
	    kt_output(ctx, 0, x.dims, x.rank, &py, err, n, "output Y"))
		return -1;
	if (!py) {
		kt_seterr(err, n, "output Y is required");
		return -1;
	}
	const int64_t S = x.dims[2] * x.dims[3];
	if (x.count == 0) return 0;
	RlJob j = {.S = S, .x = px, .y = py, .to_blocked = (int)k->flag};
	return kt_parallel(ctx, rl_block, x.dims[0] * (x.dims[1] / 16), &j, err, n);
}

// ---------------------------------------------------------------------------
//   Conv1x1GradInput(dY, W[, acc]) -> dX; attributes strides, input_shape
//
// The input gradient of a 1×1, pad-0, group-1 convolution with strides
// (s0, s1) from X [N, C, H, W] to Y [N, K, OH, OW]:
//
//   dX[n, c, oh·s0, ow·s1] = Σ_k W[k, c]·dY[n, k, oh, ow], 0 elsewhere
//
// (+ acc, when given: X's other gradient contributions). ONNX Runtime's
// ConvTranspose form of it ran single-threaded and, on convnet's strided
// shortcuts, cost more than the convolution; here each image is one task on
// the intra-op pool: Wᵀ times dY's [K, OH·OW] rows (fu_gemm) into a
// contiguous [C, OH·OW] buffer, then spread into dX's strided grid.
// Attribute blocked (bit 0: dY, bit 1: acc, bit 2: dX; channels a multiple
// of 16) says which tensors are in nChw16c: a blocked dY is moved into NCHW
// in the task's buffer first, a blocked dX gets the same sums at the same
// places, so the result is the NCHW one's, bit for bit.

typedef struct {
	int64_t C, K, H, W, OH, OW, s0, s1;
	int blocked;
	int64_t scratch; // floats per task
	const float *dy, *w, *acc;
	float *dx;
	float *tmp; // per task: scratch floats, when the stack buffer is too small
} P1Job;

// P1_STACK is the floats of a task's buffer on its stack (64 KB): convnet's shortcuts,
// blocked, need up to 9408; larger buffers come from one malloc per run.
#define P1_STACK 16384

static void p1_image(void *p, size_t img) {
	const P1Job *j = p;
	const int64_t C = j->C, K = j->K, HW = j->H * j->W, OHW = j->OH * j->OW;
	float stack[P1_STACK];
	float *tmp = j->scratch <= P1_STACK ? stack : j->tmp + (int64_t)img * j->scratch;
	const float *dy = j->dy + (int64_t)img * K * OHW;
	if (j->blocked & 1) {
		fu_relayout_image(dy, tmp + C * OHW, K, OHW, 0);
		dy = tmp + C * OHW;
	}
	// tmp[c][i] = Σ_k W[k, c]·dY[k][i]
	fu_gemm(tmp, OHW, C, dy, K, OHW, OHW, j->w, 1, C);
	// dX = acc (in dX's layout) or 0, then tmp[c][oh·OW + ow] added at
	// (c, oh·s0, ow·s1) — set, without acc, so that a −0 stays −0
	const int ba = j->blocked >> 1 & 1, bd = j->blocked >> 2 & 1;
	const int64_t o = (int64_t)img * C * HW;
	float *dx = j->dx + o;
	if (!j->acc)
		memset(dx, 0, (size_t)(C * HW) * sizeof(float));
	else if (ba == bd)
		memcpy(dx, j->acc + o, (size_t)(C * HW) * sizeof(float));
	else
		fu_relayout_image(j->acc + o, dx, C, HW, bd);
	if (bd) {
		for (int64_t cb = 0; cb < C / 16; cb++)
			fu_grid(dx + cb * 16 * HW, tmp + cb * 16 * OHW, j->OH, j->OW, j->s0, j->s1, j->W, 1, j->acc != NULL);
		return;
	}
	for (int64_t c = 0; c < C; c++) {
		const float *t = tmp + c * OHW;
		float *row = dx + c * HW;
		for (int64_t oh = 0; oh < j->OH; oh++)
			for (int64_t ow = 0; ow < j->OW; ow++) {
				float *e = row + oh * j->s0 * j->W + ow * j->s1;
				*e = j->acc ? *e + t[oh * j->OW + ow] : t[oh * j->OW + ow];
			}
	}
}

static int p1_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor dy, w, acc;
	if (kt_input(ctx, 0, 1, &dy, err, n, "dY") || kt_input(ctx, 1, 1, &w, err, n, "W") ||
	    kt_input(ctx, 2, 0, &acc, err, n, "acc"))
		return -1;
	if (dy.rank != 4 || w.rank != 4 || w.dims[2] != 1 || w.dims[3] != 1 || w.dims[0] != dy.dims[1]) {
		kt_seterr(err, n, "want dY [N, K, OH, OW] and W [K, C, 1, 1] with the same K");
		return -1;
	}
	const int64_t N = dy.dims[0], K = dy.dims[1], C = w.dims[1], H = k->hw[0], W = k->hw[1];
	const int64_t OH = dy.dims[2], OW = dy.dims[3];
	if (OH != (H - 1) / k->s[0] + 1 || OW != (W - 1) / k->s[1] + 1) {
		kt_seterr(err, n, "dY's %lldx%lld is not a 1x1 convolution's output of %lldx%lld at strides %lldx%lld",
		          (long long)OH, (long long)OW, (long long)H, (long long)W, (long long)k->s[0], (long long)k->s[1]);
		return -1;
	}
	const int64_t dims[4] = {N, C, H, W};
	if (acc.v && (acc.rank != 4 || memcmp(acc.dims, dims, sizeof dims) != 0)) {
		kt_seterr(err, n, "acc must be dX's shape [N, C, H, W]");
		return -1;
	}
	if ((k->flag & 1 && kt_check_blocked(dy.dims, 4, "dY", err, n)) ||
	    (k->flag & 6 && kt_check_blocked(dims, 4, "acc or dX", err, n)))
		return -1;
	P1Job j = {.C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .s0 = k->s[0], .s1 = k->s[1],
	           .blocked = (int)k->flag, .scratch = C * OH * OW + (k->flag & 1 ? K * OH * OW : 0)};
	float *pdy, *pw, *pacc = NULL, *pdx;
	if (kt_data(dy.v, &pdy, err, n, "dY") || kt_data(w.v, &pw, err, n, "W") ||
	    (acc.v && kt_data(acc.v, &pacc, err, n, "acc")) || kt_output(ctx, 0, dims, 4, &pdx, err, n, "output dX"))
		return -1;
	if (!pdx) {
		kt_seterr(err, n, "output dX is required");
		return -1;
	}
	if (N == 0 || C == 0 || H * W == 0) return 0;
	j.dy = pdy, j.w = pw, j.acc = pacc, j.dx = pdx;
	if (j.scratch > P1_STACK) {
		j.tmp = malloc((size_t)(N * j.scratch) * sizeof(float));
		if (!j.tmp) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
	}
	int rc = kt_parallel(ctx, p1_image, N, &j, err, n);
	free(j.tmp);
	return rc;
}

// ---------------------------------------------------------------------------
//   Conv1x1(X, W[, B]) -> Y; attribute strides
//
// A 1×1, pad-0, group-1 2-D convolution with strides (s0, s1) from X
// [N, C, H, W] to Y [N, K, OH, OW]: Y[n, k, oh, ow] = Σ_c W[k, c]·X[n, c,
// oh·s0, ow·s1] (+ B[k]). The residual shortcuts' forward: ONNX Runtime runs
// it as an NCHWc Conv with a reorder of X in and of Y out, which cost more
// than the convolution. Each image is one task on the intra-op pool: X's
// strided grid is gathered into a contiguous [C, OH·OW] buffer, then Y is
// W times it (fu_gemm; summation over c in channel order), then the bias.
// Attribute blocked (bit 0: X, bit 2: Y; channels a multiple of 16) says
// which are in nChw16c: the gather reads a blocked X in place, a blocked Y
// is computed in NCHW in the task's buffer and moved, so the result is the
// NCHW one's, bit for bit.

typedef struct {
	int64_t C, K, H, W, OH, OW, s0, s1;
	int blocked;
	int64_t scratch; // floats per task
	const float *x, *w, *b;
	float *y;
	float *tmp; // per task: scratch floats, when the stack buffer is too small
} F1Job;

static void f1_image(void *p, size_t img) {
	const F1Job *j = p;
	const int64_t C = j->C, K = j->K, HW = j->H * j->W, OHW = j->OH * j->OW;
	float stack[P1_STACK];
	float *tmp = j->scratch <= P1_STACK ? stack : j->tmp + (int64_t)img * j->scratch;
	const float *x = j->x + (int64_t)img * C * HW;
	if (j->blocked & 1)
		for (int64_t cb = 0; cb < C / 16; cb++)
			fu_grid((float *)x + cb * 16 * HW, tmp + cb * 16 * OHW, j->OH, j->OW, j->s0, j->s1, j->W, 0, 0);
	else
		for (int64_t c = 0; c < C; c++)
			for (int64_t oh = 0; oh < j->OH; oh++) {
				const float *src = x + c * HW + oh * j->s0 * j->W;
				float *dst = tmp + c * OHW + oh * j->OW;
				for (int64_t ow = 0; ow < j->OW; ow++) dst[ow] = src[ow * j->s1];
			}
	// Y[k][i] = Σ_c W[k, c]·tmp[c][i] (+ B[k])
	float *y = j->y + (int64_t)img * K * OHW, *yp = j->blocked & 4 ? tmp + C * OHW : y;
	fu_gemm(yp, OHW, K, tmp, C, OHW, OHW, j->w, C, 1);
	fu_bias(yp, K, OHW, j->b);
	if (yp != y) fu_relayout_image(yp, y, K, OHW, 1);
}

// fu_forward_data fetches a forward convolution's X, W and optional B data
// and allocates its output Y with dims (required).
static int fu_forward_data(SlatOrtKernelContext *ctx, const KtTensor *x, const KtTensor *w, const KtTensor *b,
                           const int64_t dims[4], float **px, float **pw, float **pb, float **py, char *err, size_t n) {
	if (kt_data(x->v, px, err, n, "X") || kt_data(w->v, pw, err, n, "W") || (b->v && kt_data(b->v, pb, err, n, "B")) ||
	    kt_output(ctx, 0, dims, 4, py, err, n, "output Y"))
		return -1;
	if (!*py) {
		kt_seterr(err, n, "output Y is required");
		return -1;
	}
	return 0;
}

static int f1_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor x, w, b;
	if (kt_input(ctx, 0, 1, &x, err, n, "X") || kt_input(ctx, 1, 1, &w, err, n, "W") ||
	    kt_input(ctx, 2, 0, &b, err, n, "B"))
		return -1;
	if (x.rank != 4 || w.rank != 4 || w.dims[2] != 1 || w.dims[3] != 1 || w.dims[1] != x.dims[1]) {
		kt_seterr(err, n, "want X [N, C, H, W] and W [K, C, 1, 1] with the same C");
		return -1;
	}
	const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3], K = w.dims[0];
	if (b.v && (b.rank != 1 || b.dims[0] != K)) {
		kt_seterr(err, n, "B must be [K] = [%lld]", (long long)K);
		return -1;
	}
	const int64_t OH = H > 0 ? (H - 1) / k->s[0] + 1 : 0, OW = W > 0 ? (W - 1) / k->s[1] + 1 : 0;
	const int64_t dims[4] = {N, K, OH, OW};
	if ((k->flag & 1 && kt_check_blocked(x.dims, 4, "X", err, n)) || (k->flag & 4 && kt_check_blocked(dims, 4, "Y", err, n)))
		return -1;
	float *px, *pw, *pb = NULL, *py;
	if (fu_forward_data(ctx, &x, &w, &b, dims, &px, &pw, &pb, &py, err, n)) return -1;
	if (N == 0 || K == 0 || OH * OW == 0) return 0;
	F1Job j = {.C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .s0 = k->s[0], .s1 = k->s[1],
	           .blocked = (int)k->flag, .scratch = C * OH * OW + (k->flag & 4 ? K * OH * OW : 0),
	           .x = px, .w = pw, .b = pb, .y = py};
	if (j.scratch > P1_STACK) {
		j.tmp = malloc((size_t)(N * j.scratch) * sizeof(float));
		if (!j.tmp) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
	}
	int rc = kt_parallel(ctx, f1_image, N, &j, err, n);
	free(j.tmp);
	return rc;
}

// ---------------------------------------------------------------------------
//   ConvGradInputNarrow(dY, W) -> dX; attributes kernel_shape, strides, pads,
//   input_shape
//
// The input gradient of a group-1, dilation-1 2-D convolution from X
// [N, C, H, W] to Y [N, K, OH, OW] with a kernel [K, C, KH, KW], written
// for the stems, whose input has 1 or 3 channels:
//
//   dX[n, c, oh·s0 − p0 + i, ow·s1 − p1 + j] += W[k, c, i, j]·dY[n, k, oh, ow]
//
// summed over k, oh, ow, i, j. oneDNN ran these narrow shapes 2–20× slower
// than ONNX Runtime's ConvTranspose, which ran them on one thread. Here each
// image is one task on the intra-op pool, a few output rows at a time
// (ng_columns): their columns Wᵀ·dY ([C·KH·KW, rows·OW], fu_gemm; summation
// over k in order) and then, for each (c, i, j) in order, its column row
// added onto dX's shifted grid (col2im).

typedef struct {
	int64_t C, K, H, W, OH, OW, KH, KW, s0, s1, p0, p1;
	int64_t rows;   // output rows per chunk of columns
	int64_t colrow; // C·KH·KW·OW: the columns of one output row
	const float *dy, *w; // ConvGradInputNarrow's dY; both kernels' W
	float *dx;
	const float *x, *b; // ConvNarrow's X and B
	float *y;
	float *heap; // per task colrow floats, when one row's columns overflow the stack buffer
} NGJob;

#define NG_STACK 8192

// ng_span gives the output columns [*ow0, *ow1) whose input column
// ow·s1 − p1 + jj lies inside [0, W) (empty: *ow0 == *ow1).
static void ng_span(const NGJob *j, int64_t jj, int64_t *ow0, int64_t *ow1) {
	const int64_t off = jj - j->p1;
	*ow0 = off < 0 ? (-off + j->s1 - 1) / j->s1 : 0;
	*ow1 = j->W - 1 - off >= 0 ? (j->W - 1 - off) / j->s1 + 1 : 0;
	if (*ow1 > j->OW) *ow1 = j->OW;
	if (*ow0 > *ow1) *ow0 = *ow1;
}

FU_CLONES __attribute__((optimize("tree-vectorize")))
static void ng_image(void *p, size_t img) {
	const NGJob *j = p;
	const int64_t C = j->C, KK = j->KH * j->KW, OHW = j->OH * j->OW, HW = j->H * j->W;
	float stack[NG_STACK];
	float *col = j->heap ? j->heap + (int64_t)img * j->colrow : stack;
	const float *dy = j->dy + (int64_t)img * j->K * OHW;
	float *dx = j->dx + (int64_t)img * C * HW;
	memset(dx, 0, (size_t)(C * HW) * sizeof(float));
	for (int64_t oh0 = 0; oh0 < j->OH; oh0 += j->rows) {
		const int64_t nr = j->OH - oh0 < j->rows ? j->OH - oh0 : j->rows, len = nr * j->OW;
		// col[(c·KH + i)·KW + jj][o] = Σ_k W[k, c, i, jj]·dY[k][oh0·OW + o]
		fu_gemm(col, len, C * KK, dy + oh0 * j->OW, j->K, len, OHW, j->w, 1, C * KK);
		for (int64_t c = 0; c < C; c++)
			for (int64_t i = 0; i < j->KH; i++)
				for (int64_t jj = 0; jj < j->KW; jj++) {
					const float *row = col + ((c * j->KH + i) * j->KW + jj) * len;
					float *plane = dx + c * HW;
					const int64_t off = jj - j->p1;
					int64_t ow0, ow1;
					ng_span(j, jj, &ow0, &ow1);
					if (ow0 == ow1) continue;
					for (int64_t r = 0; r < nr; r++) {
						const int64_t ih = (oh0 + r) * j->s0 - j->p0 + i;
						if (ih < 0 || ih >= j->H) continue;
						const float *src = row + r * j->OW;
						float *dst = plane + ih * j->W + off;
						if (j->s1 == 1) {
							for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] += src[ow];
						} else {
							for (int64_t ow = ow0; ow < ow1; ow++) dst[ow * j->s1] += src[ow];
						}
					}
				}
	}
}

// ng_columns sizes the column chunks of j (whole output rows, as many as fit
// the stack buffer, or one row at a time in a buffer per image) and runs fn
// on each of the n images.
static int ng_columns(SlatOrtKernelContext *ctx, NGJob *j, int64_t images, void (*fn)(void *, size_t), char *err,
                      size_t n) {
	j->colrow = j->C * j->KH * j->KW * j->OW;
	j->rows = NG_STACK / j->colrow;
	if (j->rows == 0) {
		j->rows = 1;
		if (images > INT64_MAX / 4 / j->colrow || !(j->heap = malloc((size_t)(images * j->colrow) * sizeof(float)))) {
			kt_seterr(err, n, "out of memory for the columns of %lld images", (long long)images);
			return -1;
		}
	}
	int rc = kt_parallel(ctx, fn, images, j, err, n);
	free(j->heap);
	j->heap = NULL;
	return rc;
}

// ng_kernel_shape checks that W [K, C, KH, KW] has the kernel_shape attribute's KH×KW.
static int ng_kernel_shape(const FuKernel *k, const KtTensor *w, char *err, size_t n) {
	if (w->dims[2] == k->ks[0] && w->dims[3] == k->ks[1]) return 0;
	kt_seterr(err, n, "W's kernel %lldx%lld is not kernel_shape %lldx%lld", (long long)w->dims[2],
	          (long long)w->dims[3], (long long)k->ks[0], (long long)k->ks[1]);
	return -1;
}

static int ng_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor dy, w;
	if (kt_input(ctx, 0, 1, &dy, err, n, "dY") || kt_input(ctx, 1, 1, &w, err, n, "W")) return -1;
	if (dy.rank != 4 || w.rank != 4 || w.dims[0] != dy.dims[1]) {
		kt_seterr(err, n, "want dY [N, K, OH, OW] and W [K, C, KH, KW] with the same K");
		return -1;
	}
	if (ng_kernel_shape(k, &w, err, n)) return -1;
	const int64_t N = dy.dims[0], K = dy.dims[1], C = w.dims[1], H = k->hw[0], W = k->hw[1];
	const int64_t OH = dy.dims[2], OW = dy.dims[3];
	const int64_t eh = H + k->p[0] + k->p[2] - k->ks[0], ew = W + k->p[1] + k->p[3] - k->ks[1];
	if (eh < 0 || ew < 0 || OH != eh / k->s[0] + 1 || OW != ew / k->s[1] + 1) {
		kt_seterr(err, n, "dY's %lldx%lld is not the convolution's output of %lldx%lld", (long long)OH,
		          (long long)OW, (long long)H, (long long)W);
		return -1;
	}
	const int64_t dims[4] = {N, C, H, W};
	float *pdy, *pw, *pdx;
	if (kt_data(dy.v, &pdy, err, n, "dY") || kt_data(w.v, &pw, err, n, "W") ||
	    kt_output(ctx, 0, dims, 4, &pdx, err, n, "output dX"))
		return -1;
	if (!pdx) {
		kt_seterr(err, n, "output dX is required");
		return -1;
	}
	if (N == 0 || C == 0 || H * W == 0) return 0;
	if (K == 0) {
		memset(pdx, 0, (size_t)(N * C * H * W) * sizeof(float));
		return 0;
	}
	NGJob j = {.C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .KH = k->ks[0], .KW = k->ks[1],
	           .s0 = k->s[0], .s1 = k->s[1], .p0 = k->p[0], .p1 = k->p[1], .dy = pdy, .w = pw, .dx = pdx};
	return ng_columns(ctx, &j, N, ng_image, err, n);
}

// ---------------------------------------------------------------------------
//   ConvNarrow(X, W[, B]) -> Y; attributes kernel_shape, strides, pads
//
// The forward of the same narrow convolutions (group 1, dilation 1, X
// [N, C, H, W] of few channels, W [K, C, KH, KW], Y [N, K, OH, OW]):
//
//   Y[n, k, oh, ow] = Σ_c,i,j W[k, c, i, j]·X[n, c, oh·s0 − p0 + i, ow·s1 − p1 + j] (+ B[k])
//
// with X zero outside its grid. ONNX Runtime's Conv ran the stems on one
// thread (per image an im2col and a small Gemm). One image per task on the
// intra-op pool, a few output rows at a time: their im2col columns
// ([C·KH·KW, rows·OW] in the stack buffer), then Y's rows = W times them
// (fu_gemm; summation over (c, i, j) in that order), then the bias.

FU_CLONES __attribute__((optimize("tree-vectorize")))
static void nf_image(void *p, size_t img) {
	const NGJob *j = p;
	const int64_t C = j->C, OHW = j->OH * j->OW, HW = j->H * j->W, Q = C * j->KH * j->KW;
	float stack[NG_STACK];
	float *col = j->heap ? j->heap + (int64_t)img * j->colrow : stack;
	const float *x = j->x + (int64_t)img * C * HW;
	float *y = j->y + (int64_t)img * j->K * OHW;
	for (int64_t oh0 = 0; oh0 < j->OH; oh0 += j->rows) {
		const int64_t nr = j->OH - oh0 < j->rows ? j->OH - oh0 : j->rows, len = nr * j->OW;
		for (int64_t c = 0; c < C; c++)
			for (int64_t i = 0; i < j->KH; i++)
				for (int64_t jj = 0; jj < j->KW; jj++) {
					float *row = col + ((c * j->KH + i) * j->KW + jj) * len;
					const int64_t off = jj - j->p1;
					int64_t ow0, ow1;
					ng_span(j, jj, &ow0, &ow1);
					for (int64_t r = 0; r < nr; r++) {
						float *dst = row + r * j->OW;
						const int64_t ih = (oh0 + r) * j->s0 - j->p0 + i;
						if (ih < 0 || ih >= j->H) {
							memset(dst, 0, (size_t)j->OW * sizeof(float));
							continue;
						}
						const float *src = x + c * HW + ih * j->W + off;
						for (int64_t ow = 0; ow < ow0; ow++) dst[ow] = 0;
						if (j->s1 == 1) {
							for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] = src[ow];
						} else {
							for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] = src[ow * j->s1];
						}
						for (int64_t ow = ow1; ow < j->OW; ow++) dst[ow] = 0;
					}
				}
		// Y[k][oh0·OW + o] = Σ_q W[k, q]·col[q][o], q = (c·KH + i)·KW + jj
		fu_gemm(y + oh0 * j->OW, OHW, j->K, col, Q, len, len, j->w, Q, 1);
	}
	fu_bias(y, j->K, OHW, j->b);
}

static int nf_run(const FuKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor x, w, b;
	if (kt_input(ctx, 0, 1, &x, err, n, "X") || kt_input(ctx, 1, 1, &w, err, n, "W") ||
	    kt_input(ctx, 2, 0, &b, err, n, "B"))
		return -1;
	if (x.rank != 4 || w.rank != 4 || w.dims[1] != x.dims[1]) {
		kt_seterr(err, n, "want X [N, C, H, W] and W [K, C, KH, KW] with the same C");
		return -1;
	}
	if (ng_kernel_shape(k, &w, err, n)) return -1;
	const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3], K = w.dims[0];
	if (b.v && (b.rank != 1 || b.dims[0] != K)) {
		kt_seterr(err, n, "B must be [K] = [%lld]", (long long)K);
		return -1;
	}
	const int64_t eh = H + k->p[0] + k->p[2] - k->ks[0], ew = W + k->p[1] + k->p[3] - k->ks[1];
	if (eh < 0 || ew < 0) {
		kt_seterr(err, n, "the %lldx%lld kernel is larger than the padded %lldx%lld input", (long long)k->ks[0],
		          (long long)k->ks[1], (long long)H, (long long)W);
		return -1;
	}
	const int64_t OH = eh / k->s[0] + 1, OW = ew / k->s[1] + 1;
	const int64_t dims[4] = {N, K, OH, OW};
	float *px, *pw, *pb = NULL, *py;
	if (fu_forward_data(ctx, &x, &w, &b, dims, &px, &pw, &pb, &py, err, n)) return -1;
	if (N == 0 || K == 0) return 0;
	if (C == 0) { // an empty sum: the bias alone
		for (int64_t i = 0; i < N * K * OH * OW; i++) py[i] = pb ? pb[(i / (OH * OW)) % K] : 0;
		return 0;
	}
	NGJob j = {.C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .KH = k->ks[0], .KW = k->ks[1],
	           .s0 = k->s[0], .s1 = k->s[1], .p0 = k->p[0], .p1 = k->p[1], .x = px, .w = pw, .b = pb, .y = py};
	return ng_columns(ctx, &j, N, nf_image, err, n);
}

// ---------------------------------------------------------------------------
// Op descriptions: one table, one create and one compute for all of them.

static const struct {
	const char *name;
	size_t ins, required; // inputs, the first `required` of them required
	int (*run)(const FuKernel *, SlatOrtKernelContext *, char *, size_t);
} fu_kinds[FU_KINDS] = {
	[FU_TAPCLIP] = {"TapClip", 2, 2, tap_run},
	[FU_CONV1X1] = {"Conv1x1", 3, 2, f1_run},
	[FU_CONV1X1_GRAD] = {"Conv1x1GradInput", 3, 2, p1_run},
	[FU_NARROW_GRAD] = {"ConvGradInputNarrow", 2, 2, ng_run},
	[FU_NARROW] = {"ConvNarrow", 3, 2, nf_run},
	[FU_RELAYOUT] = {"Relayout", 1, 1, rl_run},
};

typedef struct {
	SlatOrtCustomOp op; // first, so an OrtCustomOp* is a FuOp*
	int kind;
} FuOp;

static int fu_kind(const SlatOrtCustomOp *op) { return ((const FuOp *)op)->kind; }

// fu_array reads the required int64 array attribute name into out (room
// for want values) and reports whether it holds exactly want values.
static int fu_array(const SlatOrtKernelInfo *info, const char *name, int64_t *out, size_t want, char *err, size_t n) {
	size_t size = want;
	SlatOrtStatus *s = FUF(SLAT_ORT_KernelInfoGetAttributeArray_int64, SlatOrtStatus *, const SlatOrtKernelInfo *,
	                       const char *, int64_t *, size_t *)(info, name, out, &size);
	if (kt_take(s, err, n, name)) return -1;
	return size == want ? 0 : 1;
}

// fu_ints reads a required attribute of two positive int64s.
static int fu_ints(const SlatOrtKernelInfo *info, const char *name, int64_t *out, char *err, size_t n) {
	int rc = fu_array(info, name, out, 2, err, n);
	if (rc < 0) return -1;
	if (rc > 0 || out[0] < 1 || out[1] < 1) {
		kt_seterr(err, n, "attribute %s must be two positive values", name);
		return -1;
	}
	return 0;
}

// fu_pads reads the required attribute pads: four values in [0, 1<<20).
static int fu_pads(const SlatOrtKernelInfo *info, int64_t *out, char *err, size_t n) {
	int rc = fu_array(info, "pads", out, 4, err, n);
	if (rc < 0) return -1;
	if (rc > 0) {
		kt_seterr(err, n, "attribute pads must be four values (top, left, bottom, right)");
		return -1;
	}
	for (int i = 0; i < 4; i++)
		if (out[i] < 0 || out[i] >= (int64_t)1 << 20) {
			kt_seterr(err, n, "attribute pads must be in [0, 2^20)");
			return -1;
		}
	return 0;
}

// fu_no_weight_bit fails when Conv1x1's attribute blocked sets bit 1, which
// would name W (only X and Y may be blocked).
static int fu_no_weight_bit(int64_t blocked, char *err, size_t n) {
	if (blocked & 2) {
		kt_seterr(err, n, "attribute blocked: bit 1 names W, a weight tensor (only X and Y may be blocked)");
		return -1;
	}
	return 0;
}

static SlatOrtStatus *fu_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                void **out) {
	(void)api;
	FuKernel *k = calloc(1, sizeof *k);
	const int kind = fu_kind(op);
	char msg[512];
	if (!k) {
		snprintf(msg, sizeof msg, FU_DOMAIN " %s: out of memory", fu_kinds[kind].name);
		return kt_status(SLAT_ORT_FAIL, msg);
	}
	k->kind = kind;
	size_t nl = sizeof k->name;
	SlatOrtStatus *s = FUF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                       size_t *)(info, k->name, &nl);
	if (s) {
		kt_release(s);
		k->name[0] = 0;
	}
	char err[256];
	if (((kind == FU_TAPCLIP || kind == FU_CONV1X1_GRAD) && kt_attr_int(info, "blocked", 7, &k->flag, err, sizeof err)) ||
	    (kind == FU_CONV1X1 && (kt_attr_int(info, "blocked", 5, &k->flag, err, sizeof err) ||
	                            fu_no_weight_bit(k->flag, err, sizeof err))) ||
	    (kind == FU_RELAYOUT && kt_attr_int(info, "to_blocked", 1, &k->flag, err, sizeof err)) ||
	    (kind != FU_TAPCLIP && kind != FU_RELAYOUT && fu_ints(info, "strides", k->s, err, sizeof err)) ||
	    ((kind == FU_CONV1X1_GRAD || kind == FU_NARROW_GRAD) && fu_ints(info, "input_shape", k->hw, err, sizeof err)) ||
	    ((kind == FU_NARROW_GRAD || kind == FU_NARROW) &&
	     (fu_ints(info, "kernel_shape", k->ks, err, sizeof err) || fu_pads(info, k->p, err, sizeof err)))) {
		snprintf(msg, sizeof msg, FU_DOMAIN " %s %s: %s", fu_kinds[kind].name, k->name, err);
		free(k);
		return kt_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	*out = k;
	return NULL;
}

static SlatOrtStatus *fu_compute(void *p, SlatOrtKernelContext *ctx) {
	const FuKernel *k = p;
	char err[512] = "";
	if (fu_kinds[k->kind].run(k, ctx, err, sizeof err) == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, FU_DOMAIN " %s %s: %s", fu_kinds[k->kind].name, k->name, err);
	return kt_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

static void fu_free(void *p) { free(p); }
static const char *fu_name(const SlatOrtCustomOp *op) { return fu_kinds[fu_kind(op)].name; }
static size_t fu_in_count(const SlatOrtCustomOp *op) { return fu_kinds[fu_kind(op)].ins; }
static size_t fu_one_count(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int fu_in_char(const SlatOrtCustomOp *op, size_t i) {
	return i < fu_kinds[fu_kind(op)].required ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL;
}
static int fu_required(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_IO_REQUIRED; }

int slat_fused_register(SlatOrtCustomOpDomain *dom, char *err, size_t n) {
	if (!slat_ort_table()) {
		kt_seterr(err, n, "OrtApi not bound");
		return -1;
	}
	for (int kind = 0; kind < FU_KINDS; kind++) {
		FuOp *op = calloc(1, sizeof *op);
		if (!op) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
		op->kind = kind;
		static const KtOpFuncs f = {fu_name, fu_in_count, fu_one_count, fu_in_char,
		                            fu_required, fu_create, fu_compute, fu_free};
		kt_op_init(&op->op, &f);
		SlatOrtStatus *s = FUF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *,
		                       const SlatOrtCustomOp *)(dom, &op->op);
		char what[96];
		snprintf(what, sizeof what, "CustomOpDomain_Add(%s)", fu_kinds[kind].name);
		if (kt_take(s, err, n, what)) {
			free(op);
			return -1;
		}
	}
	return 0;
}
