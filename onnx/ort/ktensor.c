// Tensor access shared by the custom operators that run their own loops on
// ONNX Runtime's intra-op pool (bnorm.c, fused.c); kernels_internal.h says
// what each function does.

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels_abi.h"
#include "kernels_internal.h"

#define KTF(idx, ret, ...) ((ret(*)(__VA_ARGS__))slat_ort_table()[idx])

void kt_seterr(char *err, size_t n, const char *fmt, ...) {
	if (!err || n == 0) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

SlatOrtStatus *kt_status(int code, const char *msg) {
	return KTF(SLAT_ORT_CreateStatus, SlatOrtStatus *, int, const char *)(code, msg);
}

void kt_release(SlatOrtStatus *s) {
	if (s) KTF(SLAT_ORT_ReleaseStatus, void, SlatOrtStatus *)(s);
}

// kt_take copies a status's message into err and releases it; 1 if it was an
// error.
int kt_take(SlatOrtStatus *s, char *err, size_t n, const char *what) {
	if (!s) return 0;
	kt_seterr(err, n, "%s: %s", what, KTF(SLAT_ORT_GetErrorMessage, const char *, const SlatOrtStatus *)(s));
	kt_release(s);
	return 1;
}



// kt_attr_int reads the optional int64 attribute name into *v: 0 when the
// node does not have it, an error when it is outside [0, max].
int kt_attr_int(const SlatOrtKernelInfo *info, const char *name, int64_t max, int64_t *v, char *err, size_t n) {
	int64_t x = 0;
	SlatOrtStatus *s = KTF(SLAT_ORT_KernelInfoGetAttribute_int64, SlatOrtStatus *, const SlatOrtKernelInfo *,
	                       const char *, int64_t *)(info, name, &x);
	if (s) {
		kt_release(s);
		x = 0;
	}
	if (x < 0 || x > max) {
		kt_seterr(err, n, "attribute %s must be in [0, %lld], not %lld", name, (long long)max, (long long)x);
		return -1;
	}
	*v = x;
	return 0;
}

// kt_check_blocked fails unless a tensor of dims (rank values) can be held
// in oneDNN's nChw16c layout: [N, C, H, W] with C a multiple of 16.
int kt_check_blocked(const int64_t *dims, size_t rank, const char *what, char *err, size_t n) {
	if (rank != 4) {
		kt_seterr(err, n, "%s is blocked (nChw16c) but has rank %zu, not [N, C, H, W]", what, rank);
		return -1;
	}
	if (dims[1] % 16 != 0) {
		kt_seterr(err, n, "%s is blocked (nChw16c) but has %lld channels, not a multiple of 16", what, (long long)dims[1]);
		return -1;
	}
	return 0;
}

// kt_shape reads a float tensor's shape (rank at most KT_MAXRANK).
int kt_shape(KtTensor *t, char *err, size_t n, const char *what) {
	SlatOrtTensorInfo *ti = NULL;
	SlatOrtStatus *s = KTF(SLAT_ORT_GetTensorTypeAndShape, SlatOrtStatus *, const SlatOrtValue *,
	                       SlatOrtTensorInfo **)(t->v, &ti);
	if (kt_take(s, err, n, what)) return -1;
	int rc = -1, et = 0;
	size_t rank = 0;
	s = KTF(SLAT_ORT_GetDimensionsCount, SlatOrtStatus *, const SlatOrtTensorInfo *, size_t *)(ti, &rank);
	if (kt_take(s, err, n, what)) goto done;
	s = KTF(SLAT_ORT_GetTensorElementType, SlatOrtStatus *, const SlatOrtTensorInfo *, int *)(ti, &et);
	if (kt_take(s, err, n, what)) goto done;
	if (et != SLAT_ONNX_FLOAT || rank > KT_MAXRANK) {
		kt_seterr(err, n, "%s must be a float tensor of rank at most %d (rank %zu, element type %d)", what,
		          KT_MAXRANK, rank, et);
		goto done;
	}
	s = KTF(SLAT_ORT_GetDimensions, SlatOrtStatus *, const SlatOrtTensorInfo *, int64_t *, size_t)(ti, t->dims, rank);
	if (kt_take(s, err, n, what)) goto done;
	t->rank = rank;
	t->count = 1;
	for (size_t i = 0; i < rank; i++) {
		if (t->dims[i] < 0) {
			kt_seterr(err, n, "%s has a negative dimension", what);
			goto done;
		}
		t->count *= t->dims[i];
	}
	rc = 0;
done:
	KTF(SLAT_ORT_ReleaseTensorTypeAndShapeInfo, void, SlatOrtTensorInfo *)(ti);
	return rc;
}

// kt_input fetches input i (optional ones may come back NULL) and its shape.
int kt_input(SlatOrtKernelContext *ctx, size_t i, int required, KtTensor *t, char *err, size_t n,
                    const char *what) {
	memset(t, 0, sizeof *t);
	size_t count = 0;
	SlatOrtStatus *s = KTF(SLAT_ORT_KernelContext_GetInputCount, SlatOrtStatus *, const SlatOrtKernelContext *,
	                       size_t *)(ctx, &count);
	if (kt_take(s, err, n, "input count")) return -1;
	if (i < count) {
		s = KTF(SLAT_ORT_KernelContext_GetInput, SlatOrtStatus *, SlatOrtKernelContext *, size_t,
		        const SlatOrtValue **)(ctx, i, &t->v);
		if (kt_take(s, err, n, what)) return -1;
	}
	if (!t->v) {
		if (!required) return 0;
		kt_seterr(err, n, "input %s is required", what);
		return -1;
	}
	return kt_shape(t, err, n, what);
}

int kt_data(const SlatOrtValue *v, float **p, char *err, size_t n, const char *what) {
	void *d = NULL;
	SlatOrtStatus *s = KTF(SLAT_ORT_GetTensorMutableData, SlatOrtStatus *, SlatOrtValue *, void **)((SlatOrtValue *)v, &d);
	if (kt_take(s, err, n, what)) return -1;
	*p = d;
	return 0;
}

// kt_output allocates output i with the given shape and returns its data, or
// NULL in *p (and 0) when the node does not have that output.
int kt_output(SlatOrtKernelContext *ctx, size_t i, const int64_t *dims, size_t rank, float **p, char *err,
                     size_t n, const char *what) {
	*p = NULL;
	size_t count = 0;
	SlatOrtStatus *s = KTF(SLAT_ORT_KernelContext_GetOutputCount, SlatOrtStatus *, const SlatOrtKernelContext *,
	                       size_t *)(ctx, &count);
	if (kt_take(s, err, n, "output count")) return -1;
	if (i >= count) return 0;
	SlatOrtValue *v = NULL;
	s = KTF(SLAT_ORT_KernelContext_GetOutput, SlatOrtStatus *, SlatOrtKernelContext *, size_t, const int64_t *,
	        size_t, SlatOrtValue **)(ctx, i, dims, rank, &v);
	if (kt_take(s, err, n, what)) return -1;
	if (!v) return 0;
	return kt_data(v, p, err, n, what);
}

int kt_same_shape(const KtTensor *a, const KtTensor *b) {
	return a->rank == b->rank && memcmp(a->dims, b->dims, a->rank * sizeof(int64_t)) == 0;
}


// kt_parallel runs fn(job, c) for every channel on ONNX Runtime's intra-op
// pool of the session.
int kt_parallel(SlatOrtKernelContext *ctx, void (*fn)(void *, size_t), int64_t C, void *job, char *err,
                       size_t n) {
	if (C <= 0) return 0;
	SlatOrtStatus *s = KTF(SLAT_ORT_KernelContext_ParallelFor, SlatOrtStatus *, const SlatOrtKernelContext *,
	                       void (*)(void *, size_t), size_t, size_t, void *)(ctx, fn, (size_t)C, 0, job);
	return kt_take(s, err, n, "KernelContext_ParallelFor") ? -1 : 0;
}


// The callbacks every float32 CPU operator of bnorm.c and fused.c shares.
static const char *kt_ep(const SlatOrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int kt_type(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_ONNX_FLOAT; }
static int kt_memtype(const SlatOrtCustomOp *op, size_t i) { (void)op, (void)i; return SLAT_MEM_DEFAULT; }
static int kt_one(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int kt_zero(const SlatOrtCustomOp *op) { (void)op; return 0; }

void kt_op_init(SlatOrtCustomOp *op, const KtOpFuncs *f) {
	op->version = SLAT_ORT_CUSTOM_OP_VERSION;
	op->GetName = f->name;
	op->GetExecutionProviderType = kt_ep;
	op->GetInputType = kt_type;
	op->GetInputTypeCount = f->in_count;
	op->GetOutputType = kt_type;
	op->GetOutputTypeCount = f->out_count;
	op->KernelDestroy = f->destroy;
	op->GetInputCharacteristic = f->in_char;
	op->GetOutputCharacteristic = f->out_char;
	op->GetInputMemoryType = kt_memtype;
	op->GetVariadicInputMinArity = kt_one;
	op->GetVariadicInputHomogeneity = kt_zero;
	op->GetVariadicOutputMinArity = kt_one;
	op->GetVariadicOutputHomogeneity = kt_zero;
	op->CreateKernelV2 = f->create;
	op->KernelComputeV2 = f->compute;
}
