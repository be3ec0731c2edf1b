// Fused elementwise operators for ONNX Runtime's CPU provider, in the
// ai.slatrun domain (see docs/kernels.md):
//
//   TapClip(pre, delta) -> h
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

static void tap_destroy(void *p) { free(p); }
static const char *tap_name(const SlatOrtCustomOp *op) { (void)op; return "TapClip"; }
static const char *fu_ep(const SlatOrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int fu_type(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_ONNX_FLOAT; }
static size_t tap_in_count(const SlatOrtCustomOp *op) { (void)op; return 2; }
static size_t fu_one_count(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int fu_required(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_IO_REQUIRED; }
static int fu_memtype(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_MEM_DEFAULT; }
static int fu_one(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int fu_zero(const SlatOrtCustomOp *op) { (void)op; return 0; }

int slat_fused_register(SlatOrtCustomOpDomain *dom, char *err, size_t n) {
	if (!slat_ort_table()) {
		kt_seterr(err, n, "OrtApi not bound");
		return -1;
	}
	SlatOrtCustomOp *op = calloc(1, sizeof *op);
	if (!op) {
		kt_seterr(err, n, "out of memory");
		return -1;
	}
	op->version = SLAT_ORT_CUSTOM_OP_VERSION;
	op->GetName = tap_name;
	op->GetExecutionProviderType = fu_ep;
	op->GetInputType = fu_type;
	op->GetInputTypeCount = tap_in_count;
	op->GetOutputType = fu_type;
	op->GetOutputTypeCount = fu_one_count;
	op->KernelDestroy = tap_destroy;
	op->GetInputCharacteristic = fu_required;
	op->GetOutputCharacteristic = fu_required;
	op->GetInputMemoryType = fu_memtype;
	op->GetVariadicInputMinArity = fu_one;
	op->GetVariadicInputHomogeneity = fu_zero;
	op->GetVariadicOutputMinArity = fu_one;
	op->GetVariadicOutputHomogeneity = fu_zero;
	op->CreateKernelV2 = tap_create;
	op->KernelComputeV2 = tap_compute;
	SlatOrtStatus *s = FUF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *,
	                       const SlatOrtCustomOp *)(dom, op);
	if (kt_take(s, err, n, "CustomOpDomain_Add(TapClip)")) {
		free(op);
		return -1;
	}
	return 0;
}
