// Fused elementwise operators for ONNX Runtime's CPU provider, in the
// ai.slatrun domain (see docs/kernels.md):
//
//   TapClip(pre, delta) -> h
//   Conv1x1GradInput(dY, W[, acc]) -> dX   (below)
//
// SLAT's domain clip at a latent tap: h = min(max(pre + delta, lo), hi)
// written as ONNX's Max(Min(pre + delta, hi), lo), with lo and hi the
// minimum and maximum of pre over each plane: per (sample, channel) over the
// spatial axes of a [N, C, spatial...] tensor, per sample over F of an
// [N, F] one. The plain graph spends five passes on it (ReduceMin,
// ReduceMax, Add, Min, Max); here one plane at a time is read twice while
// it is in cache and written once, and the planes are spread over ONNX
// Runtime's intra-op pool. The float operations are the plain graph's, in
// its order, so h is bit-identical to it.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_abi.h"
#include "kernels_internal.h"

#define FU_DOMAIN "ai.slatrun"
#define FUF(idx, ret, ...) ((ret(*)(__VA_ARGS__))slat_ort_table()[idx])

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__)
#define FU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef FU_CLONES
#define FU_CLONES
#endif

typedef struct {
	int64_t S; // plane length
	const float *pre, *delta;
	float *h;
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

static int tap_run(SlatOrtKernelContext *ctx, char *err, size_t n) {
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
	TapJob j = {.S = S, .pre = pp, .delta = pd, .h = ph};
	return kt_parallel(ctx, tap_plane, planes, &j, err, n);
}

static SlatOrtStatus *tap_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                 void **out) {
	(void)op, (void)api;
	char *name = calloc(1, 160);
	if (!name) return kt_status(SLAT_ORT_FAIL, FU_DOMAIN " TapClip: out of memory");
	size_t nl = 160;
	SlatOrtStatus *s = FUF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                       size_t *)(info, name, &nl);
	if (s) {
		kt_release(s);
		name[0] = 0;
	}
	*out = name;
	return NULL;
}

static SlatOrtStatus *tap_compute(void *p, SlatOrtKernelContext *ctx) {
	char err[512] = "";
	if (tap_run(ctx, err, sizeof err) == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, FU_DOMAIN " TapClip %s: %s", (const char *)p, err);
	return kt_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

static void fu_free(void *p) { free(p); }
static const char *tap_name(const SlatOrtCustomOp *op) { (void)op; return "TapClip"; }
static const char *fu_ep(const SlatOrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int fu_type(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_ONNX_FLOAT; }
static size_t tap_in_count(const SlatOrtCustomOp *op) { (void)op; return 2; }
static size_t fu_one_count(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int fu_required(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_IO_REQUIRED; }
static int fu_memtype(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_MEM_DEFAULT; }
static int fu_one(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int fu_zero(const SlatOrtCustomOp *op) { (void)op; return 0; }

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
// the intra-op pool: per channel c, the K-term sum over the OH·OW positions
// is taken in a contiguous buffer and then spread into dX's strided grid.

typedef struct {
	int64_t C, K, H, W, OH, OW, s0, s1;
	const float *dy, *w, *acc;
	float *dx;
	float *tmp; // per task: OH·OW floats, when the stack buffer is too small
} P1Job;

#define P1_STACK 4096

FU_CLONES __attribute__((optimize("tree-vectorize")))
static void p1_image(void *p, size_t img) {
	const P1Job *j = p;
	const int64_t C = j->C, K = j->K, HW = j->H * j->W, OHW = j->OH * j->OW;
	float stack[P1_STACK];
	float *tmp = OHW <= P1_STACK ? stack : j->tmp + (int64_t)img * OHW;
	const float *dy = j->dy + (int64_t)img * K * OHW;
	for (int64_t c = 0; c < C; c++) {
		for (int64_t i = 0; i < OHW; i++) tmp[i] = 0;
		for (int64_t k = 0; k < K; k++) {
			const float w = j->w[k * C + c], *d = dy + k * OHW;
			for (int64_t i = 0; i < OHW; i++) tmp[i] += w * d[i];
		}
		float *row = j->dx + ((int64_t)img * C + c) * HW;
		if (j->acc) {
			memcpy(row, j->acc + ((int64_t)img * C + c) * HW, (size_t)HW * sizeof(float));
			for (int64_t oh = 0; oh < j->OH; oh++)
				for (int64_t ow = 0; ow < j->OW; ow++) row[oh * j->s0 * j->W + ow * j->s1] += tmp[oh * j->OW + ow];
		} else {
			memset(row, 0, (size_t)HW * sizeof(float));
			for (int64_t oh = 0; oh < j->OH; oh++)
				for (int64_t ow = 0; ow < j->OW; ow++) row[oh * j->s0 * j->W + ow * j->s1] = tmp[oh * j->OW + ow];
		}
	}
}

typedef struct {
	int64_t s[2], hw[2];
	char name[160];
} P1Kernel;

static int p1_run(const P1Kernel *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
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
	P1Job j = {.C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .s0 = k->s[0], .s1 = k->s[1]};
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
	if (OH * OW > P1_STACK) {
		j.tmp = malloc((size_t)(N * OH * OW) * sizeof(float));
		if (!j.tmp) {
			kt_seterr(err, n, "out of memory");
			return -1;
		}
	}
	int rc = kt_parallel(ctx, p1_image, N, &j, err, n);
	free(j.tmp);
	return rc;
}

static int p1_attr(const SlatOrtKernelInfo *info, const char *name, int64_t *out, char *err, size_t n) {
	size_t size = 2;
	SlatOrtStatus *s = FUF(SLAT_ORT_KernelInfoGetAttributeArray_int64, SlatOrtStatus *, const SlatOrtKernelInfo *,
	                       const char *, int64_t *, size_t *)(info, name, out, &size);
	if (kt_take(s, err, n, name)) return -1;
	if (size != 2 || out[0] < 1 || out[1] < 1) {
		kt_seterr(err, n, "attribute %s must be two positive values", name);
		return -1;
	}
	return 0;
}

static SlatOrtStatus *p1_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                void **out) {
	(void)op, (void)api;
	P1Kernel *k = calloc(1, sizeof *k);
	if (!k) return kt_status(SLAT_ORT_FAIL, FU_DOMAIN " Conv1x1GradInput: out of memory");
	size_t nl = sizeof k->name;
	SlatOrtStatus *s = FUF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                       size_t *)(info, k->name, &nl);
	if (s) {
		kt_release(s);
		k->name[0] = 0;
	}
	char err[256], msg[512];
	if (p1_attr(info, "strides", k->s, err, sizeof err) || p1_attr(info, "input_shape", k->hw, err, sizeof err)) {
		snprintf(msg, sizeof msg, FU_DOMAIN " Conv1x1GradInput %s: %s", k->name, err);
		free(k);
		return kt_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	*out = k;
	return NULL;
}

static SlatOrtStatus *p1_compute(void *p, SlatOrtKernelContext *ctx) {
	const P1Kernel *k = p;
	char err[512] = "";
	if (p1_run(k, ctx, err, sizeof err) == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, FU_DOMAIN " Conv1x1GradInput %s: %s", k->name, err);
	return kt_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

static const char *p1_name(const SlatOrtCustomOp *op) { (void)op; return "Conv1x1GradInput"; }
static size_t p1_in_count(const SlatOrtCustomOp *op) { (void)op; return 3; }
static int p1_in_char(const SlatOrtCustomOp *op, size_t i) {
	(void)op;
	return i < 2 ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL;
}

// fu_add registers one operator of this file in dom.
static int fu_add(SlatOrtCustomOpDomain *dom, const char *(*name)(const SlatOrtCustomOp *),
                  size_t (*ins)(const SlatOrtCustomOp *), int (*in_char)(const SlatOrtCustomOp *, size_t),
                  SlatOrtStatus *(*create)(const SlatOrtCustomOp *, const void *, const SlatOrtKernelInfo *, void **),
                  SlatOrtStatus *(*compute)(void *, SlatOrtKernelContext *), char *err, size_t n) {
	SlatOrtCustomOp *op = calloc(1, sizeof *op);
	if (!op) {
		kt_seterr(err, n, "out of memory");
		return -1;
	}
	op->version = SLAT_ORT_CUSTOM_OP_VERSION;
	op->GetName = name;
	op->GetExecutionProviderType = fu_ep;
	op->GetInputType = fu_type;
	op->GetInputTypeCount = ins;
	op->GetOutputType = fu_type;
	op->GetOutputTypeCount = fu_one_count;
	op->KernelDestroy = fu_free;
	op->GetInputCharacteristic = in_char;
	op->GetOutputCharacteristic = fu_required;
	op->GetInputMemoryType = fu_memtype;
	op->GetVariadicInputMinArity = fu_one;
	op->GetVariadicInputHomogeneity = fu_zero;
	op->GetVariadicOutputMinArity = fu_one;
	op->GetVariadicOutputHomogeneity = fu_zero;
	op->CreateKernelV2 = create;
	op->KernelComputeV2 = compute;
	SlatOrtStatus *s = FUF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *,
	                       const SlatOrtCustomOp *)(dom, op);
	char what[96];
	snprintf(what, sizeof what, "CustomOpDomain_Add(%s)", name(op));
	if (kt_take(s, err, n, what)) {
		free(op);
		return -1;
	}
	return 0;
}

int slat_fused_register(SlatOrtCustomOpDomain *dom, char *err, size_t n) {
	if (!slat_ort_table()) {
		kt_seterr(err, n, "OrtApi not bound");
		return -1;
	}
	if (fu_add(dom, tap_name, tap_in_count, fu_required, tap_create, tap_compute, err, n)) return -1;
	return fu_add(dom, p1_name, p1_in_count, p1_in_char, p1_create, p1_compute, err, n);
}
