// Minimal ABI declarations for slatrun's custom-op layer (kernels.c). Written
// by hand from the published C APIs; nothing here is copied from those
// headers. docs/kernels.md says where each fact comes from and how the tests
// check it.
#ifndef SLAT_KERNELS_ABI_H
#define SLAT_KERNELS_ABI_H

#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------------------
// ONNX Runtime C API. Every object is opaque to us.
typedef struct SlatOrtStatus SlatOrtStatus;
typedef struct SlatOrtKernelInfo SlatOrtKernelInfo;
typedef struct SlatOrtKernelContext SlatOrtKernelContext;
typedef struct SlatOrtValue SlatOrtValue;
typedef struct SlatOrtTensorInfo SlatOrtTensorInfo;
typedef struct SlatOrtCustomOpDomain SlatOrtCustomOpDomain;
typedef struct SlatOrtSessionOptions SlatOrtSessionOptions;

// OrtApiBase, returned by the exported OrtGetApiBase(): two function
// pointers, GetApi(version) then GetVersionString(). Unchanged since API 1.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} SlatOrtApiBase;

// The OrtApi version we ask GetApi for. OrtApi is a table of function
// pointers that only ever grows at the end, so the indices below hold for
// every version >= the one that introduced the entry; all entries we use
// exist in API 17 (ONNX Runtime 1.17; KernelContext_ParallelFor is the
// newest), and the values were checked against API 24 (ONNX Runtime 1.24.1).
#define SLAT_ORT_API_VERSION 17

// Indices (in pointers) into the OrtApi table.
#define SLAT_ORT_CreateStatus 0                        // OrtStatus* (OrtErrorCode, const char*)
#define SLAT_ORT_GetErrorCode 1                        // OrtErrorCode (const OrtStatus*)
#define SLAT_ORT_GetErrorMessage 2                     // const char* (const OrtStatus*)
#define SLAT_ORT_CreateCustomOpDomain 26               // (const char*, OrtCustomOpDomain**)
#define SLAT_ORT_CustomOpDomain_Add 27                 // (OrtCustomOpDomain*, const OrtCustomOp*)
#define SLAT_ORT_AddCustomOpDomain 28                  // (OrtSessionOptions*, OrtCustomOpDomain*)
#define SLAT_ORT_GetTensorMutableData 51               // (OrtValue*, void**)
#define SLAT_ORT_GetTensorElementType 60               // (const OrtTensorTypeAndShapeInfo*, ONNXTensorElementDataType*)
#define SLAT_ORT_GetDimensionsCount 61                 // (const OrtTensorTypeAndShapeInfo*, size_t*)
#define SLAT_ORT_GetDimensions 62                      // (const OrtTensorTypeAndShapeInfo*, int64_t*, size_t)
#define SLAT_ORT_GetTensorTypeAndShape 65              // (const OrtValue*, OrtTensorTypeAndShapeInfo**)
#define SLAT_ORT_KernelInfoGetAttribute_float 85       // (const OrtKernelInfo*, const char*, float*)
#define SLAT_ORT_KernelInfoGetAttribute_int64 86       // (const OrtKernelInfo*, const char*, int64_t*)
#define SLAT_ORT_KernelContext_GetInputCount 88        // (const OrtKernelContext*, size_t*)
#define SLAT_ORT_KernelContext_GetOutputCount 89       // (const OrtKernelContext*, size_t*)
#define SLAT_ORT_KernelContext_GetInput 90             // (const OrtKernelContext*, size_t, const OrtValue**)
#define SLAT_ORT_KernelContext_GetOutput 91            // (OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**)
#define SLAT_ORT_ReleaseStatus 93                      // void (OrtStatus*)
#define SLAT_ORT_ReleaseTensorTypeAndShapeInfo 99      // void (OrtTensorTypeAndShapeInfo*)
#define SLAT_ORT_ReleaseCustomOpDomain 101             // void (OrtCustomOpDomain*)
#define SLAT_ORT_KernelInfoGetAttributeArray_int64 163 // (const OrtKernelInfo*, const char*, int64_t*, size_t*)
#define SLAT_ORT_KernelInfo_GetOutputCount 231         // (const OrtKernelInfo*, size_t*)
#define SLAT_ORT_KernelInfo_GetNodeName 244            // (const OrtKernelInfo*, char*, size_t*)
#define SLAT_ORT_KernelContext_ParallelFor 274         // (const OrtKernelContext*, void (*)(void*, size_t), size_t total, size_t num_batch, void*); API 17

// Enum values (stable since API 1).
#define SLAT_ORT_FAIL 1
#define SLAT_ORT_INVALID_ARGUMENT 2
#define SLAT_ORT_RUNTIME_EXCEPTION 6
#define SLAT_ONNX_FLOAT 1         // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
#define SLAT_IO_REQUIRED 0        // INPUT_OUTPUT_REQUIRED
#define SLAT_IO_OPTIONAL 1        // INPUT_OUTPUT_OPTIONAL
#define SLAT_MEM_DEFAULT 0        // OrtMemTypeDefault

// OrtCustomOp, laid out as in API 24 (208 bytes on LP64). ONNX Runtime reads
// a field only if the struct's version is at least the API version that added
// it; we set version 16, so it reads through KernelComputeV2 (CreateKernel
// and KernelCompute left NULL select the V2 entry points, which exist since
// API 16) and ignores the rest, which we leave NULL.
typedef struct SlatOrtCustomOp SlatOrtCustomOp;
struct SlatOrtCustomOp {
	uint32_t version;
	void *(*CreateKernel)(const SlatOrtCustomOp *, const void *api, const SlatOrtKernelInfo *);
	const char *(*GetName)(const SlatOrtCustomOp *);
	const char *(*GetExecutionProviderType)(const SlatOrtCustomOp *);
	int (*GetInputType)(const SlatOrtCustomOp *, size_t);
	size_t (*GetInputTypeCount)(const SlatOrtCustomOp *);
	int (*GetOutputType)(const SlatOrtCustomOp *, size_t);
	size_t (*GetOutputTypeCount)(const SlatOrtCustomOp *);
	void (*KernelCompute)(void *, SlatOrtKernelContext *);
	void (*KernelDestroy)(void *);
	int (*GetInputCharacteristic)(const SlatOrtCustomOp *, size_t);   // API 8
	int (*GetOutputCharacteristic)(const SlatOrtCustomOp *, size_t);  // API 8
	int (*GetInputMemoryType)(const SlatOrtCustomOp *, size_t);       // API 11
	int (*GetVariadicInputMinArity)(const SlatOrtCustomOp *);         // API 14
	int (*GetVariadicInputHomogeneity)(const SlatOrtCustomOp *);      // API 14
	int (*GetVariadicOutputMinArity)(const SlatOrtCustomOp *);        // API 14
	int (*GetVariadicOutputHomogeneity)(const SlatOrtCustomOp *);     // API 14
	SlatOrtStatus *(*CreateKernelV2)(const SlatOrtCustomOp *, const void *api, const SlatOrtKernelInfo *, void **); // API 16
	SlatOrtStatus *(*KernelComputeV2)(void *, SlatOrtKernelContext *);                                           // API 16
	void *InferOutputShapeFn;   // API 17
	void *GetStartVersion;      // API 17
	void *GetEndVersion;        // API 17
	void *GetMayInplace;        // API 18
	void *ReleaseMayInplace;    // API 18
	void *GetAliasMap;          // API 20
	void *ReleaseAliasMap;      // API 20
};
#define SLAT_ORT_CUSTOM_OP_VERSION 16

// ---------------------------------------------------------------------------
// oneDNN 2.x C API (values checked against oneDNN 2.6.3). oneDNN 3 replaced
// the operation-descriptor calls below, so the loader refuses major != 2.
typedef int slat_dnnl_status;
typedef int64_t slat_dnnl_dims[12]; // DNNL_MAX_NDIMS = 12
typedef void *slat_dnnl_engine;
typedef void *slat_dnnl_stream;
typedef void *slat_dnnl_pd;
typedef void *slat_dnnl_prim;
typedef void *slat_dnnl_mem;
typedef void *slat_dnnl_attr;

// dnnl_memory_desc_t is 696 bytes (8-aligned) and dnnl_convolution_desc_t
// 5976 bytes in 2.6; we only pass pointers to them, so oversized opaque
// buffers suffice.
typedef struct { _Alignas(64) unsigned char b[1024]; } slat_dnnl_md;
typedef struct { _Alignas(64) unsigned char b[8192]; } slat_dnnl_conv_desc;

typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; } slat_dnnl_version_t;
typedef struct { int arg; slat_dnnl_mem memory; } slat_dnnl_exec_arg;

#define SLAT_DNNL_RUNTIME_OMP 2u
#define SLAT_dnnl_success 0
#define SLAT_dnnl_f32 3
#define SLAT_dnnl_format_tag_any 1
#define SLAT_dnnl_x 2
#define SLAT_dnnl_nchw 5
#define SLAT_dnnl_oihw 5
#define SLAT_dnnl_nChw16c 69 // dnnl_aBcd16b
#define SLAT_dnnl_forward_training 64
#define SLAT_dnnl_convolution_direct 1
#define SLAT_dnnl_convolution_winograd 2
#define SLAT_dnnl_cpu 1
#define SLAT_dnnl_stream_default_flags 1
#define SLAT_dnnl_query_impl_info_str 8
#define SLAT_dnnl_query_src_md 129
#define SLAT_dnnl_query_diff_src_md 130
#define SLAT_dnnl_query_weights_md 131
#define SLAT_dnnl_query_diff_weights_md 132
#define SLAT_dnnl_query_dst_md 133
#define SLAT_dnnl_query_diff_dst_md 134
#define SLAT_dnnl_query_scratchpad_md 136
#define SLAT_dnnl_scratchpad_mode_user 1
#define SLAT_DNNL_ARG_SRC 1
#define SLAT_DNNL_ARG_DST 17
#define SLAT_DNNL_ARG_WEIGHTS 33
#define SLAT_DNNL_ARG_BIAS 41
#define SLAT_DNNL_ARG_FROM 1
#define SLAT_DNNL_ARG_TO 17
#define SLAT_DNNL_ARG_SCRATCHPAD 80
#define SLAT_DNNL_ARG_DIFF_SRC 129
#define SLAT_DNNL_ARG_DIFF_DST 145
#define SLAT_DNNL_ARG_DIFF_WEIGHTS 161
#define SLAT_DNNL_ARG_DIFF_BIAS 169
#define SLAT_DNNL_MEMORY_ALLOCATE ((void *)(size_t)-1)

#endif
