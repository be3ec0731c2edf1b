// What kernels.c shares with the other C files of the custom-op layer
// (bnorm.c). Not part of the Go-facing interface (kernels.h).
#ifndef SLAT_KERNELS_INTERNAL_H
#define SLAT_KERNELS_INTERNAL_H
#include <stddef.h>

#include "kernels_abi.h"

// slat_ort_table returns the bound OrtApi table (an array of function
// pointers indexed by the SLAT_ORT_* positions), or NULL before binding.
void *const *slat_ort_table(void);

// slat_bn_register adds BatchNormTrain and BatchNormTrainGrad (bnorm.c) to
// dom. The ops it allocates live as long as the process.
int slat_bn_register(SlatOrtCustomOpDomain *dom, char *err, size_t n);

// Tensor access for the kernels that run their own loops (bnorm.c,
// fused.c), in ktensor.c: ONNX Runtime values, shapes and the intra-op pool.

#define KT_MAXRANK 8

typedef struct {
	const SlatOrtValue *v;
	int64_t dims[KT_MAXRANK];
	size_t rank;
	int64_t count;
} KtTensor;

// kt_seterr formats a message into err (n bytes).
void kt_seterr(char *err, size_t n, const char *fmt, ...);
// kt_status makes an ONNX Runtime status; kt_release releases one.
SlatOrtStatus *kt_status(int code, const char *msg);
void kt_release(SlatOrtStatus *s);
// kt_take copies a status's message into err and releases it; 1 if it was
// an error.
int kt_take(SlatOrtStatus *s, char *err, size_t n, const char *what);
// kt_shape reads t->v's float shape (rank at most KT_MAXRANK) into t.
int kt_shape(KtTensor *t, char *err, size_t n, const char *what);
// kt_input fetches input i (optional ones may come back with v NULL) and its
// shape.
int kt_input(SlatOrtKernelContext *ctx, size_t i, int required, KtTensor *t, char *err, size_t n, const char *what);
// kt_data returns a value's float data.
int kt_data(const SlatOrtValue *v, float **p, char *err, size_t n, const char *what);
// kt_output allocates output i with the given shape and returns its data,
// or NULL in *p (and 0) when the node does not have that output.
int kt_output(SlatOrtKernelContext *ctx, size_t i, const int64_t *dims, size_t rank, float **p, char *err, size_t n,
              const char *what);
// kt_same_shape reports whether a and b have the same shape.
int kt_same_shape(const KtTensor *a, const KtTensor *b);
// kt_attr_int reads the optional int64 attribute name (0 when absent) into
// *v; values outside [0, max] are an error.
int kt_attr_int(const SlatOrtKernelInfo *info, const char *name, int64_t max, int64_t *v, char *err, size_t n);
// kt_check_blocked fails unless a tensor of dims (rank values) can be held
// in nChw16c: [N, C, H, W] with C a multiple of 16 (what names it).
int kt_check_blocked(const int64_t *dims, size_t rank, const char *what, char *err, size_t n);
// kt_parallel runs fn(job, i) for i < count on the session's intra-op pool.
int kt_parallel(SlatOrtKernelContext *ctx, void (*fn)(void *, size_t), int64_t count, void *job, char *err, size_t n);

// KtOpFuncs are an operator's own callbacks; kt_op_init fills op with them
// and with what every float32 CPU operator here shares (the provider, float
// element types, default memory, no variadic arguments).
typedef struct {
	const char *(*name)(const SlatOrtCustomOp *);
	size_t (*in_count)(const SlatOrtCustomOp *);
	size_t (*out_count)(const SlatOrtCustomOp *);
	int (*in_char)(const SlatOrtCustomOp *, size_t);
	int (*out_char)(const SlatOrtCustomOp *, size_t);
	SlatOrtStatus *(*create)(const SlatOrtCustomOp *, const void *, const SlatOrtKernelInfo *, void **);
	SlatOrtStatus *(*compute)(void *, SlatOrtKernelContext *);
	void (*destroy)(void *);
} KtOpFuncs;
void kt_op_init(SlatOrtCustomOp *op, const KtOpFuncs *f);

// slat_fused_register adds the fused elementwise ops (fused.c) to dom.
int slat_fused_register(SlatOrtCustomOpDomain *dom, char *err, size_t n);

#endif
