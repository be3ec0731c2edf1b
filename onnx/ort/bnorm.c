// Training-mode batch normalization for ONNX Runtime's CPU provider, as two
// ai.slatrun custom operators (see docs/kernels.md):
//
//   BatchNormTrain(X, scale, bias) -> Y, mean, var, invstd
//   BatchNormTrainGrad(dY, X, scale, mean, invstd[, Y][, acc]) -> dX, dscale, dbias
//
// (with acc, dX is acc + the batch norm's input gradient: a gradient that
// sums several contributions takes the others here instead of in a Sum)
//
// X is [N, C, spatial...] (rank >= 2), statistics are over N and the spatial
// axes. The work is split by channel over ONNX Runtime's intra-op thread pool
// (KernelContext_ParallelFor), and each channel is computed by one thread in
// a fixed order, so results do not depend on the thread count or on which
// thread runs what: they are bit-identical from run to run and session to
// session on one machine. The loops are plain C on GCC vectors of 16 floats,
// compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time).
//
// With attribute blocked = 1 every [N, C, H, W] tensor (X, Y, dY, dX, acc)
// is in oneDNN's nChw16c layout instead (C a multiple of 16): the graph
// keeps a batch norm between two convolution kernels in their layout.
//
// oneDNN 2.6.3's batch_normalization primitive was measured against these
// loops on the convnet shapes: on plain NCHW it picks its reference-like
// ncsp implementation, which was 1.1-2.2x slower; its JIT versions need the
// blocked layout and so two extra reorders. docs/kernels.md has the numbers.

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_abi.h"
#include "kernels_internal.h"

// The 64-byte vector helpers below are static and inlined; no vector crosses
// an ABI boundary, so GCC's warning about AVX-512 return values is moot.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define BN_DOMAIN "ai.slatrun"

#define BNF(idx, ret, ...) ((ret(*)(__VA_ARGS__))slat_ort_table()[idx])

// ---------------------------------------------------------------------------
// The loops. A channel's rows are X[r*C + c] for r < N, each of S contiguous
// floats. Sums go lane-wise over 16-float vectors, then lanes in a fixed
// order, then rows into a double.

typedef float bn_v16 __attribute__((vector_size(64)));
typedef int32_t bn_vi16 __attribute__((vector_size(64)));

// bn_keep is v where mask (a vector comparison's result) is set, else 0. (A
// macro: GCC notes an ABI change for functions taking 64-byte vectors.)
#define bn_keep(v, mask) ((bn_v16)((bn_vi16)(v) & (mask)))

static inline bn_v16 bn_load(const float *p) {
	bn_v16 v;
	memcpy(&v, p, sizeof v);
	return v;
}

#define bn_store(p, v)                                                                                      \
	do {                                                                                                    \
		bn_v16 v_ = (v);                                                                                    \
		memcpy((p), &v_, sizeof v_);                                                                        \
	} while (0)

static inline float bn_hsum(const bn_v16 *v) {
	float s = 0;
	for (int i = 0; i < 16; i++) s += (*v)[i];
	return s;
}

// bn_prefetch asks for the start (up to 1 KiB) of a row read soon: a
// channel's rows lie C·S floats apart, and short rows (7×7) defeat the
// hardware prefetchers.
static inline void bn_prefetch(const float *p, int64_t S) {
	int64_t bytes = S * (int64_t)sizeof(float);
	if (bytes > 1024) bytes = 1024;
	for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o);
}

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__)
#define BN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef BN_CLONES
#define BN_CLONES
#endif

typedef struct {
	int64_t N, C, S;
	float eps;
	int relu;
	const float *x, *scale, *bias;
	float *y;
	float *mean, *var, *invstd; // [C] each (scratch when outputs are absent)
} BnFwdJob;

BN_CLONES
static void bn_fwd_channel(void *p, size_t ch) {
	const BnFwdJob *j = p;
	const int64_t c = (int64_t)ch, S = j->S, C = j->C, N = j->N;
	const int64_t S16 = S & ~(int64_t)15;
	const double cnt = (double)N * (double)S;
	double tot = 0;
	for (int64_t r = 0; r < N; r++) {
		const float *x = j->x + (r * C + c) * S;
		if (r + 2 < N) bn_prefetch(x + 2 * C * S, S);
		bn_v16 a = {0};
		float t = 0;
		for (int64_t i = 0; i < S16; i += 16) a += bn_load(x + i);
		for (int64_t i = S16; i < S; i++) t += x[i];
		tot += (double)(bn_hsum(&a) + t);
	}
	const float m = (float)(tot / cnt);
	tot = 0;
	for (int64_t r = 0; r < N; r++) {
		const float *x = j->x + (r * C + c) * S;
		if (r + 2 < N) bn_prefetch(x + 2 * C * S, S);
		bn_v16 a = {0};
		float t = 0;
		for (int64_t i = 0; i < S16; i += 16) {
			bn_v16 d = bn_load(x + i) - m;
			a += d * d;
		}
		for (int64_t i = S16; i < S; i++) {
			float d = x[i] - m;
			t += d * d;
		}
		tot += (double)(bn_hsum(&a) + t);
	}
	const double v = tot / cnt;
	const float inv = (float)(1.0 / sqrt(v + (double)j->eps));
	j->mean[c] = m;
	j->var[c] = (float)v;
	j->invstd[c] = inv;
	const float k = j->scale[c] * inv, b = j->bias[c];
	const bn_v16 zero = {0};
	for (int64_t r = 0; r < N; r++) {
		const float *x = j->x + (r * C + c) * S;
		float *y = j->y + (r * C + c) * S;
		if (r + 2 < N) bn_prefetch(x + 2 * C * S, S);
		if (j->relu) {
			for (int64_t i = 0; i < S16; i += 16) {
				bn_v16 o = (bn_load(x + i) - m) * k + b;
				bn_store(y + i, bn_keep(o, o > zero));
			}
			for (int64_t i = S16; i < S; i++) {
				float o = (x[i] - m) * k + b;
				y[i] = o > 0 ? o : 0;
			}
		} else {
			for (int64_t i = 0; i < S16; i += 16) bn_store(y + i, (bn_load(x + i) - m) * k + b);
			for (int64_t i = S16; i < S; i++) y[i] = (x[i] - m) * k + b;
		}
	}
}

typedef struct {
	int64_t N, C, S;
	const float *dy, *x, *scale, *mean, *invstd, *y; // y: the ReLU's output, or NULL
	const float *acc;                                // added to dx, or NULL
	float *dx;                                       // NULL: not wanted
	float *dscale, *dbias;                           // [C] (scratch when outputs are absent)
} BnBwdJob;

BN_CLONES
static void bn_bwd_channel(void *p, size_t ch) {
	const BnBwdJob *j = p;
	const int64_t c = (int64_t)ch, S = j->S, C = j->C, N = j->N;
	const int64_t S16 = S & ~(int64_t)15;
	const double cnt = (double)N * (double)S;
	const float m = j->mean[c], inv = j->invstd[c];
	const bn_v16 zero = {0};
	double s1 = 0, s2 = 0;
	for (int64_t r = 0; r < N; r++) {
		const int64_t o = (r * C + c) * S;
		const float *x = j->x + o, *dy = j->dy + o, *y = j->y ? j->y + o : NULL;
		if (r + 2 < N) {
			bn_prefetch(x + 2 * C * S, S);
			bn_prefetch(dy + 2 * C * S, S);
			if (y) bn_prefetch(y + 2 * C * S, S);
		}
		bn_v16 a1 = {0}, a2 = {0};
		float t1 = 0, t2 = 0;
		if (y) {
			for (int64_t i = 0; i < S16; i += 16) {
				bn_v16 g = bn_keep(bn_load(dy + i), bn_load(y + i) > zero);
				a1 += g;
				a2 += g * (bn_load(x + i) - m);
			}
			for (int64_t i = S16; i < S; i++) {
				float g = y[i] > 0 ? dy[i] : 0;
				t1 += g;
				t2 += g * (x[i] - m);
			}
		} else {
			for (int64_t i = 0; i < S16; i += 16) {
				bn_v16 g = bn_load(dy + i);
				a1 += g;
				a2 += g * (bn_load(x + i) - m);
			}
			for (int64_t i = S16; i < S; i++) {
				t1 += dy[i];
				t2 += dy[i] * (x[i] - m);
			}
		}
		s1 += (double)(bn_hsum(&a1) + t1);
		s2 += (double)(bn_hsum(&a2) + t2);
	}
	j->dbias[c] = (float)s1;
	j->dscale[c] = (float)(s2 * inv);
	if (!j->dx) return;
	// dx = γ·invstd·(dy − Σdy/cnt − (x − μ)·invstd²·Σdy·(x − μ)/cnt)
	const float k = j->scale[c] * inv, c1 = (float)(s1 / cnt), c2 = (float)(s2 * inv * inv / cnt);
	for (int64_t r = 0; r < N; r++) {
		const int64_t o = (r * C + c) * S;
		const float *x = j->x + o, *dy = j->dy + o, *y = j->y ? j->y + o : NULL;
		if (r + 2 < N) {
			bn_prefetch(x + 2 * C * S, S);
			bn_prefetch(dy + 2 * C * S, S);
			if (y) bn_prefetch(y + 2 * C * S, S);
		}
		float *dx = j->dx + o;
		if (y) {
			for (int64_t i = 0; i < S16; i += 16) {
				bn_v16 g = bn_keep(bn_load(dy + i), bn_load(y + i) > zero);
				bn_store(dx + i, k * (g - c1 - (bn_load(x + i) - m) * c2));
			}
			for (int64_t i = S16; i < S; i++) {
				float g = y[i] > 0 ? dy[i] : 0;
				dx[i] = k * (g - c1 - (x[i] - m) * c2);
			}
		} else {
			for (int64_t i = 0; i < S16; i += 16)
				bn_store(dx + i, k * (bn_load(dy + i) - c1 - (bn_load(x + i) - m) * c2));
			for (int64_t i = S16; i < S; i++) dx[i] = k * (dy[i] - c1 - (x[i] - m) * c2);
		}
		if (j->acc) { // the row is still in cache; a + b as a Sum of the two gives it
			const float *a = j->acc + o;
			for (int64_t i = 0; i < S16; i += 16) bn_store(dx + i, bn_load(dx + i) + bn_load(a + i));
			for (int64_t i = S16; i < S; i++) dx[i] += a[i];
		}
	}
}

// ---------------------------------------------------------------------------
// The blocked loops (attribute blocked = 1): every [N, C, H, W] tensor in
// nChw16c, the layout oneDNN's convolutions use inside, so that a batch norm
// between two convolution kernels needs no reorders around them. Channel c
// is lane c % 16 of block c / 16; a block's rows (one per sample) are S
// 16-float vectors, one per position. A thread takes a chunk of rows of one
// block, with 16 channels per vector. The chunks are fixed by N alone
// (bn_chunks), their partial sums (doubles, lane-wise) are combined in chunk
// order, so results do not depend on the thread count, as in the plain loops.

enum { BN_MAX_CHUNKS = 16 };

static int64_t bn_chunks(int64_t N) { return N < BN_MAX_CHUNKS ? N : BN_MAX_CHUNKS; }

typedef struct {
	int64_t N, CB, S, R; // rows, channel blocks, positions, chunks
	const float *x, *dy, *y, *acc;
	float *out;                       // forward: Y; backward: dX
	double *p1, *p2;                  // partial sums [CB][R][16]
	const float *m, *k, *b, *c1, *c2; // per-channel values [C] a phase reads
	int relu, phase;
} BnBlkJob;

// bn_item gives work item item's channel block cb, chunk r and the chunk's
// rows [lo, hi).
static void bn_item(const BnBlkJob *j, size_t item, int64_t *cb, int64_t *r, int64_t *lo, int64_t *hi) {
	*cb = (int64_t)item / j->R;
	*r = (int64_t)item % j->R;
	*lo = j->N * *r / j->R;
	*hi = j->N * (*r + 1) / j->R;
}

// bn_blk_sum: forward phase 0 (Σx) and 1 (Σ(x − μ)²) of one (block, chunk).
BN_CLONES
static void bn_blk_sum(void *p, size_t item) {
	const BnBlkJob *j = p;
	int64_t cb, r, lo, hi;
	bn_item(j, item, &cb, &r, &lo, &hi);
	double acc[16] = {0};
	const bn_v16 m = j->phase ? bn_load(j->m + cb * 16) : (bn_v16){0};
	for (int64_t row = lo; row < hi; row++) {
		const float *x = j->x + (row * j->CB + cb) * j->S * 16;
		bn_v16 a = {0}, a2 = {0};
		int64_t i = 0;
		if (j->phase == 0) {
			for (; i + 1 < j->S; i += 2) {
				a += bn_load(x + i * 16);
				a2 += bn_load(x + i * 16 + 16);
			}
			for (; i < j->S; i++) a += bn_load(x + i * 16);
		} else {
			for (; i + 1 < j->S; i += 2) {
				bn_v16 d = bn_load(x + i * 16) - m, e = bn_load(x + i * 16 + 16) - m;
				a += d * d;
				a2 += e * e;
			}
			for (; i < j->S; i++) {
				bn_v16 d = bn_load(x + i * 16) - m;
				a += d * d;
			}
		}
		a += a2;
		for (int l = 0; l < 16; l++) acc[l] += (double)a[l];
	}
	double *out = (j->phase ? j->p2 : j->p1) + (cb * j->R + r) * 16;
	for (int l = 0; l < 16; l++) out[l] = acc[l];
}

// bn_blk_norm: forward phase 2, Y = [ReLU]((X − μ)·k + β) of one (block, chunk).
BN_CLONES
static void bn_blk_norm(void *p, size_t item) {
	const BnBlkJob *j = p;
	int64_t cb, r, lo, hi;
	bn_item(j, item, &cb, &r, &lo, &hi);
	const bn_v16 m = bn_load(j->m + cb * 16), k = bn_load(j->k + cb * 16), b = bn_load(j->b + cb * 16), zero = {0};
	for (int64_t row = lo; row < hi; row++) {
		const int64_t o = (row * j->CB + cb) * j->S * 16;
		const float *x = j->x + o;
		float *y = j->out + o;
		if (j->relu) {
			for (int64_t i = 0; i < j->S * 16; i += 16) {
				bn_v16 v = (bn_load(x + i) - m) * k + b;
				bn_store(y + i, bn_keep(v, v > zero));
			}
		} else {
			for (int64_t i = 0; i < j->S * 16; i += 16) bn_store(y + i, (bn_load(x + i) - m) * k + b);
		}
	}
}

// bn_blk_gsum: backward phase 0, Σg and Σg·(x − μ) of one (block, chunk),
// g = dY (masked by Y > 0 with relu).
BN_CLONES
static void bn_blk_gsum(void *p, size_t item) {
	const BnBlkJob *j = p;
	int64_t cb, r, lo, hi;
	bn_item(j, item, &cb, &r, &lo, &hi);
	double s1[16] = {0}, s2[16] = {0};
	const bn_v16 m = bn_load(j->m + cb * 16), zero = {0};
	for (int64_t row = lo; row < hi; row++) {
		const int64_t o = (row * j->CB + cb) * j->S * 16;
		const float *x = j->x + o, *dy = j->dy + o, *y = j->y ? j->y + o : NULL;
		bn_v16 a1 = {0}, a2 = {0};
		for (int64_t i = 0; i < j->S * 16; i += 16) {
			bn_v16 g = bn_load(dy + i);
			if (y) g = bn_keep(g, bn_load(y + i) > zero);
			a1 += g;
			a2 += g * (bn_load(x + i) - m);
		}
		for (int l = 0; l < 16; l++) {
			s1[l] += (double)a1[l];
			s2[l] += (double)a2[l];
		}
	}
	double *o1 = j->p1 + (cb * j->R + r) * 16, *o2 = j->p2 + (cb * j->R + r) * 16;
	for (int l = 0; l < 16; l++) {
		o1[l] = s1[l];
		o2[l] = s2[l];
	}
}

// bn_blk_dx: backward phase 1, dX = k·(g − c1 − (x − μ)·c2) [+ acc].
BN_CLONES
static void bn_blk_dx(void *p, size_t item) {
	const BnBlkJob *j = p;
	int64_t cb, r, lo, hi;
	bn_item(j, item, &cb, &r, &lo, &hi);
	const bn_v16 m = bn_load(j->m + cb * 16), k = bn_load(j->k + cb * 16), c1 = bn_load(j->c1 + cb * 16),
	             c2 = bn_load(j->c2 + cb * 16), zero = {0};
	for (int64_t row = lo; row < hi; row++) {
		const int64_t o = (row * j->CB + cb) * j->S * 16;
		const float *x = j->x + o, *dy = j->dy + o, *y = j->y ? j->y + o : NULL, *a = j->acc ? j->acc + o : NULL;
		float *dx = j->out + o;
		for (int64_t i = 0; i < j->S * 16; i += 16) {
			bn_v16 g = bn_load(dy + i);
			if (y) g = bn_keep(g, bn_load(y + i) > zero);
			bn_v16 v = k * (g - c1 - (bn_load(x + i) - m) * c2);
			if (a) v += bn_load(a + i);
			bn_store(dx + i, v);
		}
	}
}

// bn_blk_combine adds the chunks' partial sums of each channel, in chunk
// order: out[c] = Σ_r p[c/16][r][c%16].
static void bn_blk_combine(const double *p, int64_t CB, int64_t R, double *out) {
	for (int64_t cb = 0; cb < CB; cb++)
		for (int l = 0; l < 16; l++) {
			double t = 0;
			for (int64_t r = 0; r < R; r++) t += p[(cb * R + r) * 16 + l];
			out[cb * 16 + l] = t;
		}
}

// bn_fwd_blocked is BatchNormTrain on nChw16c tensors (f as bn_fwd_run
// filled it): three passes over the (block, chunk) items.
static int bn_fwd_blocked(SlatOrtKernelContext *ctx, const BnFwdJob *f, char *err, size_t n) {
	const int64_t C = f->C, CB = C / 16, R = bn_chunks(f->N);
	const double cnt = (double)f->N * (double)f->S;
	double *part = malloc((size_t)(2 * CB * R * 16 + C) * sizeof(double));
	float *k = malloc((size_t)C * sizeof(float));
	int rc = -1;
	if (!part || !k) {
		kt_seterr(err, n, "out of memory");
		goto done;
	}
	double *tot = part + 2 * CB * R * 16;
	BnBlkJob j = {.N = f->N, .CB = CB, .S = f->S, .R = R, .x = f->x, .out = f->y, .p1 = part,
	              .p2 = part + CB * R * 16, .m = f->mean, .k = k, .b = f->bias, .relu = f->relu};
	if (kt_parallel(ctx, bn_blk_sum, CB * R, &j, err, n)) goto done;
	bn_blk_combine(j.p1, CB, R, tot);
	for (int64_t c = 0; c < C; c++) f->mean[c] = (float)(tot[c] / cnt);
	j.phase = 1;
	if (kt_parallel(ctx, bn_blk_sum, CB * R, &j, err, n)) goto done;
	bn_blk_combine(j.p2, CB, R, tot);
	for (int64_t c = 0; c < C; c++) {
		const double v = tot[c] / cnt;
		const float inv = (float)(1.0 / sqrt(v + (double)f->eps));
		f->var[c] = (float)v;
		f->invstd[c] = inv;
		k[c] = f->scale[c] * inv;
	}
	rc = kt_parallel(ctx, bn_blk_norm, CB * R, &j, err, n);
done:
	free(part);
	free(k);
	return rc;
}

// bn_bwd_blocked is BatchNormTrainGrad on nChw16c tensors (b as bn_bwd_run
// filled it).
static int bn_bwd_blocked(SlatOrtKernelContext *ctx, const BnBwdJob *b, char *err, size_t n) {
	const int64_t C = b->C, CB = C / 16, R = bn_chunks(b->N);
	const double cnt = (double)b->N * (double)b->S;
	double *part = malloc((size_t)(2 * CB * R * 16 + 2 * C) * sizeof(double));
	float *v = malloc(3 * (size_t)C * sizeof(float));
	int rc = -1;
	if (!part || !v) {
		kt_seterr(err, n, "out of memory");
		goto done;
	}
	double *s1 = part + 2 * CB * R * 16, *s2 = s1 + C;
	BnBlkJob j = {.N = b->N, .CB = CB, .S = b->S, .R = R, .x = b->x, .dy = b->dy, .y = b->y, .acc = b->acc,
	              .out = b->dx, .p1 = part, .p2 = part + CB * R * 16, .m = b->mean, .k = v, .c1 = v + C, .c2 = v + 2 * C};
	if (kt_parallel(ctx, bn_blk_gsum, CB * R, &j, err, n)) goto done;
	bn_blk_combine(j.p1, CB, R, s1);
	bn_blk_combine(j.p2, CB, R, s2);
	for (int64_t c = 0; c < C; c++) {
		const float inv = b->invstd[c];
		b->dbias[c] = (float)s1[c];
		b->dscale[c] = (float)(s2[c] * inv);
		v[c] = b->scale[c] * inv;
		v[C + c] = (float)(s1[c] / cnt);
		v[2 * C + c] = (float)(s2[c] * inv * inv / cnt);
	}
	rc = b->dx ? kt_parallel(ctx, bn_blk_dx, CB * R, &j, err, n) : 0;
done:
	free(part);
	free(v);
	return rc;
}

static int bn_is_vec(const KtTensor *t, int64_t c) { return t->rank == 1 && t->dims[0] == c; }

// ---------------------------------------------------------------------------
// Kernel instances.

typedef struct {
	int grad; // 0: BatchNormTrain, 1: BatchNormTrainGrad
	float eps;
	int relu;
	int blocked; // every [N, C, H, W] tensor in nChw16c
	char name[160];
} BnKernel;

static SlatOrtStatus *bn_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info, void **out);
static SlatOrtStatus *bn_compute(void *p, SlatOrtKernelContext *ctx);

typedef struct {
	SlatOrtCustomOp op; // first, so an OrtCustomOp* is a BnOp*
	int grad;
} BnOp;

static const char *bn_opname(int grad) { return grad ? "BatchNormTrainGrad" : "BatchNormTrain"; }

static SlatOrtStatus *bn_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                void **out) {
	(void)api;
	const int grad = ((const BnOp *)op)->grad;
	char name[160] = "", msg[512];
	size_t nl = sizeof name;
	SlatOrtStatus *s = BNF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                       size_t *)(info, name, &nl);
	if (s) {
		kt_release(s);
		name[0] = 0;
	}
	float eps = 1e-5f;
	if (!grad) {
		s = BNF(SLAT_ORT_KernelInfoGetAttribute_float, SlatOrtStatus *, const SlatOrtKernelInfo *, const char *,
		        float *)(info, "epsilon", &eps);
		if (s) { // missing: the default
			kt_release(s);
			eps = 1e-5f;
		}
		if (!(eps >= 0) || isinf(eps)) {
			snprintf(msg, sizeof msg, BN_DOMAIN " %s %s: epsilon must be finite and non-negative", bn_opname(grad),
			         name);
			return kt_status(SLAT_ORT_INVALID_ARGUMENT, msg);
		}
	}
	int64_t relu = 0, blocked = 0;
	char why[128];
	if (kt_attr_int(info, "relu", 1, &relu, why, sizeof why) ||
	    kt_attr_int(info, "blocked", 1, &blocked, why, sizeof why)) {
		snprintf(msg, sizeof msg, BN_DOMAIN " %s %s: %s", bn_opname(grad), name, why);
		return kt_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	BnKernel *k = calloc(1, sizeof *k);
	if (!k) return kt_status(SLAT_ORT_FAIL, BN_DOMAIN " batch normalization: out of memory");
	k->blocked = (int)blocked;
	k->grad = grad;
	k->eps = eps;
	k->relu = (int)relu;
	snprintf(k->name, sizeof k->name, "%s", name);
	*out = k;
	return NULL;
}

static void bn_destroy(void *p) { free(p); }

// bn_channels checks X's shape and returns C and the spatial size S.
static int bn_channels(const KtTensor *x, int64_t *C, int64_t *S, char *err, size_t n) {
	if (x->rank < 2) {
		kt_seterr(err, n, "X must have rank >= 2 ([N, C, spatial...]), not %zu", x->rank);
		return -1;
	}
	*C = x->dims[1];
	*S = 1;
	for (size_t i = 2; i < x->rank; i++) *S *= x->dims[i];
	if (x->dims[0] * *S == 0) {
		kt_seterr(err, n, "X has no elements per channel (batch statistics undefined)");
		return -1;
	}
	return 0;
}

static int bn_fwd_run(const BnKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor x, g, b;
	if (kt_input(ctx, 0, 1, &x, err, n, "X") || kt_input(ctx, 1, 1, &g, err, n, "scale") ||
	    kt_input(ctx, 2, 1, &b, err, n, "bias"))
		return -1;
	int64_t C, S;
	if (bn_channels(&x, &C, &S, err, n)) return -1;
	if (k->blocked && kt_check_blocked(x.dims, x.rank, "X", err, n)) return -1;
	if (!bn_is_vec(&g, C) || !bn_is_vec(&b, C)) {
		kt_seterr(err, n, "scale and bias must be [C] = [%lld]", (long long)C);
		return -1;
	}
	BnFwdJob j = {.N = x.dims[0], .C = C, .S = S, .eps = k->eps, .relu = k->relu};
	float *px, *pg, *pb, *py, *st[3];
	if (kt_data(x.v, &px, err, n, "X") || kt_data(g.v, &pg, err, n, "scale") || kt_data(b.v, &pb, err, n, "bias"))
		return -1;
	if (kt_output(ctx, 0, x.dims, x.rank, &py, err, n, "output Y")) return -1;
	if (!py) {
		kt_seterr(err, n, "output Y is required");
		return -1;
	}
	static const char *const what[3] = {"output mean", "output var", "output invstd"};
	for (int i = 0; i < 3; i++)
		if (kt_output(ctx, (size_t)i + 1, &C, 1, &st[i], err, n, what[i])) return -1;
	float *scratch = NULL;
	if (!st[0] || !st[1] || !st[2]) {
		scratch = malloc(3 * (size_t)(C > 0 ? C : 1) * sizeof(float));
		if (!scratch) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
		for (int i = 0; i < 3; i++)
			if (!st[i]) st[i] = scratch + (size_t)i * (size_t)C;
	}
	j.x = px;
	j.scale = pg;
	j.bias = pb;
	j.y = py;
	j.mean = st[0];
	j.var = st[1];
	j.invstd = st[2];
	int rc = k->blocked ? bn_fwd_blocked(ctx, &j, err, n) : kt_parallel(ctx, bn_fwd_channel, C, &j, err, n);
	free(scratch);
	return rc;
}

static int bn_bwd_run(const BnKernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	KtTensor dy, x, g, m, inv, y, acc;
	if (kt_input(ctx, 0, 1, &dy, err, n, "dY") || kt_input(ctx, 1, 1, &x, err, n, "X") ||
	    kt_input(ctx, 2, 1, &g, err, n, "scale") || kt_input(ctx, 3, 1, &m, err, n, "mean") ||
	    kt_input(ctx, 4, 1, &inv, err, n, "invstd") || kt_input(ctx, 5, k->relu, &y, err, n, "Y") ||
	    kt_input(ctx, 6, 0, &acc, err, n, "acc"))
		return -1;
	int64_t C, S;
	if (bn_channels(&x, &C, &S, err, n)) return -1;
	if (k->blocked && kt_check_blocked(x.dims, x.rank, "X", err, n)) return -1;
	if (!kt_same_shape(&dy, &x) || (y.v && !kt_same_shape(&y, &x)) || (acc.v && !kt_same_shape(&acc, &x))) {
		kt_seterr(err, n, "dY%s%s must have X's shape", k->relu ? ", Y" : "", acc.v ? ", acc" : "");
		return -1;
	}
	if (!bn_is_vec(&g, C) || !bn_is_vec(&m, C) || !bn_is_vec(&inv, C)) {
		kt_seterr(err, n, "scale, mean and invstd must be [C] = [%lld]", (long long)C);
		return -1;
	}
	BnBwdJob j = {.N = x.dims[0], .C = C, .S = S};
	float *pdy, *px, *pg, *pm, *pinv, *py = NULL, *pacc = NULL, *pdx, *pds, *pdb;
	if (kt_data(dy.v, &pdy, err, n, "dY") || kt_data(x.v, &px, err, n, "X") || kt_data(g.v, &pg, err, n, "scale") ||
	    kt_data(m.v, &pm, err, n, "mean") || kt_data(inv.v, &pinv, err, n, "invstd") ||
	    (k->relu && kt_data(y.v, &py, err, n, "Y")) || (acc.v && kt_data(acc.v, &pacc, err, n, "acc")))
		return -1;
	if (kt_output(ctx, 0, x.dims, x.rank, &pdx, err, n, "output dX") ||
	    kt_output(ctx, 1, &C, 1, &pds, err, n, "output dscale") ||
	    kt_output(ctx, 2, &C, 1, &pdb, err, n, "output dbias"))
		return -1;
	float *scratch = NULL;
	if (!pds || !pdb) {
		scratch = malloc(2 * (size_t)(C > 0 ? C : 1) * sizeof(float));
		if (!scratch) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
		if (!pds) pds = scratch;
		if (!pdb) pdb = scratch + C;
	}
	j.dy = pdy;
	j.x = px;
	j.scale = pg;
	j.mean = pm;
	j.invstd = pinv;
	j.y = py;
	j.acc = pdx ? pacc : NULL;
	j.dx = pdx;
	j.dscale = pds;
	j.dbias = pdb;
	int rc = k->blocked ? bn_bwd_blocked(ctx, &j, err, n) : kt_parallel(ctx, bn_bwd_channel, C, &j, err, n);
	free(scratch);
	return rc;
}

static SlatOrtStatus *bn_compute(void *p, SlatOrtKernelContext *ctx) {
	const BnKernel *k = p;
	char err[512] = "";
	int rc = k->grad ? bn_bwd_run(k, ctx, err, sizeof err) : bn_fwd_run(k, ctx, err, sizeof err);
	if (rc == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, BN_DOMAIN " %s %s: %s", bn_opname(k->grad), k->name, err);
	return kt_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

// ---------------------------------------------------------------------------
// Op descriptions.

static const char *bn_get_name(const SlatOrtCustomOp *op) { return bn_opname(((const BnOp *)op)->grad); }
static size_t bn_in_count(const SlatOrtCustomOp *op) { return ((const BnOp *)op)->grad ? 7 : 3; }
static size_t bn_out_count(const SlatOrtCustomOp *op) { return ((const BnOp *)op)->grad ? 3 : 4; }
static int bn_in_char(const SlatOrtCustomOp *op, size_t i) {
	// BatchNormTrainGrad's input 5 (Y) is only for relu = 1, input 6 (acc)
	// only where a gradient is summed.
	return ((const BnOp *)op)->grad && i >= 5 ? SLAT_IO_OPTIONAL : SLAT_IO_REQUIRED;
}
static int bn_out_char(const SlatOrtCustomOp *op, size_t i) {
	// BatchNormTrain needs Y; everything else may be left out.
	return !((const BnOp *)op)->grad && i == 0 ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL;
}

int slat_bn_register(SlatOrtCustomOpDomain *dom, char *err, size_t n) {
	if (!slat_ort_table()) {
		kt_seterr(err, n, "OrtApi not bound");
		return -1;
	}
	for (int grad = 0; grad < 2; grad++) {
		BnOp *op = calloc(1, sizeof *op);
		if (!op) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
		op->grad = grad;
		static const KtOpFuncs f = {bn_get_name, bn_in_count, bn_out_count, bn_in_char,
		                            bn_out_char,  bn_create,   bn_compute,   bn_destroy};
		kt_op_init(&op->op, &f);
		SlatOrtStatus *s = BNF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *,
		                       const SlatOrtCustomOp *)(dom, &op->op);
		if (kt_take(s, err, n, grad ? "CustomOpDomain_Add(BatchNormTrainGrad)" : "CustomOpDomain_Add(BatchNormTrain)")) {
			free(op);
			return -1;
		}
	}
	return 0;
}
