// slatrun's custom operators for ONNX Runtime's CPU provider, computed with
// oneDNN. ONNX Runtime's OrtApi is reached through OrtGetApiBase of the
// library onnxruntime_go already loaded; oneDNN is loaded at run time with
// dlopen, so nothing here needs either library (or its headers) to build.
// See docs/kernels.md.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "kernels_abi.h"
#include "kernels_internal.h"

#define SLAT_DOMAIN "ai.slatrun"

static void seterr(char *err, size_t n, const char *fmt, ...) {
	if (!err || n == 0) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

// ---------------------------------------------------------------------------
// ONNX Runtime

static const SlatOrtApiBase *ort_base;
static void *const *ort_api; // the OrtApi table, as an array of pointers

#define ORTF(idx, ret, ...) ((ret(*)(__VA_ARGS__))ort_api[idx])

static SlatOrtStatus *ort_create_status(int code, const char *msg) {
	return ORTF(SLAT_ORT_CreateStatus, SlatOrtStatus *, int, const char *)(code, msg);
}
static const char *ort_error_message(const SlatOrtStatus *s) {
	return ORTF(SLAT_ORT_GetErrorMessage, const char *, const SlatOrtStatus *)(s);
}
static int ort_error_code(const SlatOrtStatus *s) {
	return ORTF(SLAT_ORT_GetErrorCode, int, const SlatOrtStatus *)(s);
}
static void ort_release_status(SlatOrtStatus *s) {
	if (s) ORTF(SLAT_ORT_ReleaseStatus, void, SlatOrtStatus *)(s);
}

// ort_take copies a status's message into err and releases it; returns 1 if
// there was an error.
static int ort_take(SlatOrtStatus *s, char *err, size_t n, const char *what) {
	if (!s) return 0;
	seterr(err, n, "%s: %s", what, ort_error_message(s));
	ort_release_status(s);
	return 1;
}

int slat_ort_bind(const char *ort_path, char *err, size_t n) {
	if (ort_api) return 0;
	// The library is already loaded by onnxruntime_go; RTLD_NOLOAD only
	// returns a handle to it (and fails rather than load a second copy).
	void *h = dlopen(ort_path, RTLD_NOW | RTLD_NOLOAD);
	if (!h) {
		const char *e = dlerror();
		seterr(err, n, "dlopen(%s, RTLD_NOLOAD): %s", ort_path, e ? e : "not loaded");
		return -1;
	}
	const SlatOrtApiBase *(*get)(void) = (const SlatOrtApiBase *(*)(void))dlsym(h, "OrtGetApiBase");
	if (!get) {
		const char *e = dlerror();
		seterr(err, n, "dlsym(OrtGetApiBase): %s", e ? e : "not found");
		dlclose(h);
		return -1;
	}
	const SlatOrtApiBase *base = get();
	const void *api = base ? base->GetApi(SLAT_ORT_API_VERSION) : NULL;
	if (!api) {
		seterr(err, n, "ONNX Runtime %s does not provide OrtApi version %d",
		       base ? base->GetVersionString() : "?", SLAT_ORT_API_VERSION);
		dlclose(h);
		return -1;
	}
	// The handle stays open for the life of the process (onnxruntime_go
	// holds its own reference too).
	ort_base = base;
	ort_api = (void *const *)api;
	return 0;
}

void *const *slat_ort_table(void) { return ort_api; }

const char *slat_ort_version(void) { return ort_base ? ort_base->GetVersionString() : ""; }

// slat_ort_selftest checks the status entries of the table by a round trip.
int slat_ort_selftest(char *err, size_t n) {
	if (!ort_api) {
		seterr(err, n, "OrtApi not bound");
		return -1;
	}
	SlatOrtStatus *s = ort_create_status(SLAT_ORT_INVALID_ARGUMENT, "slatrun self-test");
	if (!s) {
		seterr(err, n, "CreateStatus returned NULL");
		return -1;
	}
	int code = ort_error_code(s);
	const char *m = ort_error_message(s);
	int ok = code == SLAT_ORT_INVALID_ARGUMENT && m && strcmp(m, "slatrun self-test") == 0;
	if (!ok) seterr(err, n, "status round trip: code %d, message %s", code, m ? m : "(null)");
	ort_release_status(s);
	return ok ? 0 : -1;
}

// ---------------------------------------------------------------------------
// oneDNN, loaded with dlopen.

static struct {
	const slat_dnnl_version_t *(*version)(void);
	slat_dnnl_status (*engine_create)(slat_dnnl_engine *, int, size_t);
	slat_dnnl_status (*stream_create)(slat_dnnl_stream *, slat_dnnl_engine, unsigned);
	slat_dnnl_status (*stream_wait)(slat_dnnl_stream);
	slat_dnnl_status (*stream_destroy)(slat_dnnl_stream);
	slat_dnnl_status (*md_init_by_tag)(slat_dnnl_md *, int, const int64_t *, int, int);
	slat_dnnl_status (*conv_fwd_desc_init)(slat_dnnl_conv_desc *, int, int, const slat_dnnl_md *,
	                                       const slat_dnnl_md *, const slat_dnnl_md *, const slat_dnnl_md *,
	                                       const int64_t *, const int64_t *, const int64_t *, const int64_t *);
	slat_dnnl_status (*conv_bww_desc_init)(slat_dnnl_conv_desc *, int, const slat_dnnl_md *, const slat_dnnl_md *,
	                                       const slat_dnnl_md *, const slat_dnnl_md *, const int64_t *,
	                                       const int64_t *, const int64_t *, const int64_t *);
	slat_dnnl_status (*conv_bwd_desc_init)(slat_dnnl_conv_desc *, int, const slat_dnnl_md *, const slat_dnnl_md *,
	                                       const slat_dnnl_md *, const int64_t *, const int64_t *, const int64_t *,
	                                       const int64_t *);
	slat_dnnl_status (*attr_create)(slat_dnnl_attr *);
	slat_dnnl_status (*attr_destroy)(slat_dnnl_attr);
	slat_dnnl_status (*attr_set_scratchpad_mode)(slat_dnnl_attr, int);
	slat_dnnl_status (*pd_create)(slat_dnnl_pd *, const void *, slat_dnnl_attr, slat_dnnl_engine, slat_dnnl_pd);
	slat_dnnl_status (*pd_destroy)(slat_dnnl_pd);
	const slat_dnnl_md *(*pd_query_md)(slat_dnnl_pd, int, int);
	slat_dnnl_status (*pd_query)(slat_dnnl_pd, int, int, void *);
	slat_dnnl_status (*reorder_pd_create)(slat_dnnl_pd *, const slat_dnnl_md *, slat_dnnl_engine,
	                                      const slat_dnnl_md *, slat_dnnl_engine, slat_dnnl_attr);
	slat_dnnl_status (*prim_create)(slat_dnnl_prim *, slat_dnnl_pd);
	slat_dnnl_status (*prim_destroy)(slat_dnnl_prim);
	slat_dnnl_status (*prim_execute)(slat_dnnl_prim, slat_dnnl_stream, int, const slat_dnnl_exec_arg *);
	slat_dnnl_status (*mem_create)(slat_dnnl_mem *, const slat_dnnl_md *, slat_dnnl_engine, void *);
	slat_dnnl_status (*mem_destroy)(slat_dnnl_mem);
	slat_dnnl_status (*mem_set_handle)(slat_dnnl_mem, void *);
	int (*md_equal)(const slat_dnnl_md *, const slat_dnnl_md *);
	size_t (*md_get_size)(const slat_dnnl_md *);
	void (*omp_set_num_threads)(int); // from the OpenMP runtime oneDNN links
} dn;

static slat_dnnl_engine dn_engine;
static char dn_desc[128];
static char dn_impl[256]; // implementation of the last convolution primitive built
static pthread_mutex_t dn_impl_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *dnnl_status_name(slat_dnnl_status s) {
	switch (s) {
	case 0: return "dnnl_success";
	case 1: return "dnnl_out_of_memory";
	case 2: return "dnnl_invalid_arguments";
	case 3: return "dnnl_unimplemented";
	case 4: return "dnnl_iterator_ends";
	case 5: return "dnnl_runtime_error";
	case 6: return "dnnl_not_required";
	}
	return "dnnl status (unknown)";
}

#define DLSYM(field, name)                                                        \
	do {                                                                          \
		*(void **)(&dn.field) = dlsym(h, name);                                   \
		if (!dn.field) {                                                          \
			seterr(err, n, "libdnnl.so.2 has no %s (need oneDNN 2.x)", name);      \
			return -1;                                                            \
		}                                                                         \
	} while (0)

int slat_dnnl_load(char *err, size_t n) {
	if (dn_engine) return 0;
	void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		seterr(err, n, "%s", e ? e : "dlopen(libdnnl.so.2) failed");
		return -1;
	}
	// On failure below the handle is kept open: dn may hold pointers into it.
	DLSYM(version, "dnnl_version");
	const slat_dnnl_version_t *v = dn.version();
	if (!v || v->major != 2) {
		seterr(err, n, "libdnnl.so.2 reports version %d.%d; slatrun speaks the oneDNN 2.x API",
		       v ? v->major : -1, v ? v->minor : -1);
		return -1;
	}
	DLSYM(engine_create, "dnnl_engine_create");
	DLSYM(stream_create, "dnnl_stream_create");
	DLSYM(stream_wait, "dnnl_stream_wait");
	DLSYM(stream_destroy, "dnnl_stream_destroy");
	DLSYM(md_init_by_tag, "dnnl_memory_desc_init_by_tag");
	DLSYM(conv_fwd_desc_init, "dnnl_dilated_convolution_forward_desc_init");
	DLSYM(conv_bww_desc_init, "dnnl_dilated_convolution_backward_weights_desc_init");
	DLSYM(conv_bwd_desc_init, "dnnl_dilated_convolution_backward_data_desc_init");
	DLSYM(attr_create, "dnnl_primitive_attr_create");
	DLSYM(attr_destroy, "dnnl_primitive_attr_destroy");
	DLSYM(attr_set_scratchpad_mode, "dnnl_primitive_attr_set_scratchpad_mode");
	DLSYM(pd_create, "dnnl_primitive_desc_create");
	DLSYM(pd_destroy, "dnnl_primitive_desc_destroy");
	DLSYM(pd_query_md, "dnnl_primitive_desc_query_md");
	DLSYM(pd_query, "dnnl_primitive_desc_query");
	DLSYM(reorder_pd_create, "dnnl_reorder_primitive_desc_create");
	DLSYM(prim_create, "dnnl_primitive_create");
	DLSYM(prim_destroy, "dnnl_primitive_destroy");
	DLSYM(prim_execute, "dnnl_primitive_execute");
	DLSYM(mem_create, "dnnl_memory_create");
	DLSYM(mem_destroy, "dnnl_memory_destroy");
	DLSYM(mem_set_handle, "dnnl_memory_set_data_handle");
	DLSYM(md_equal, "dnnl_memory_desc_equal");
	DLSYM(md_get_size, "dnnl_memory_desc_get_size");
	if (v->cpu_runtime == SLAT_DNNL_RUNTIME_OMP) {
		// dlsym on oneDNN's handle also searches its dependencies (libgomp).
		*(void **)(&dn.omp_set_num_threads) = dlsym(h, "omp_set_num_threads");
	}
	slat_dnnl_engine eng = NULL;
	slat_dnnl_status st = dn.engine_create(&eng, SLAT_dnnl_cpu, 0);
	if (st != SLAT_dnnl_success) {
		seterr(err, n, "dnnl_engine_create(cpu): %s", dnnl_status_name(st));
		return -1;
	}
	snprintf(dn_desc, sizeof dn_desc, "oneDNN %d.%d.%d (%s runtime)", v->major, v->minor, v->patch,
	         v->cpu_runtime == SLAT_DNNL_RUNTIME_OMP ? "OpenMP" : "non-OpenMP");
	dn_engine = eng;
	return 0;
}

const char *slat_dnnl_describe(void) { return dn_desc; }

int slat_impl_info(char *buf, size_t n) {
	pthread_mutex_lock(&dn_impl_mu);
	snprintf(buf, n, "%s", dn_impl);
	pthread_mutex_unlock(&dn_impl_mu);
	return 0;
}

// ---------------------------------------------------------------------------
// The oneDNN convolutions. Three operators share one kernel type (ConvK),
// one build and one run path; they differ in which of the three tensors of
// a convolution (X [N,C,H,W], W [K,C,kh,kw], Y [N,K,OH,OW]) they read and
// which they write:
//
//	ConvGradWeight: X, dY [, no input] -> dW (, dB [K] optional)
//	ConvGradInput:  dY, W [, X: only its shape] -> dX
//	ConvForward:    X, W [, B] -> Y
//
// Attributes as ONNX Conv: kernel_shape (required), strides, pads,
// dilations, group (must be 1); ConvGradInput also takes input_shape [H, W]
// when X is not given (without either, the smallest H, W that give OH, OW).

enum { CK_GRAD_WEIGHT, CK_GRAD_INPUT, CK_FORWARD, CK_KINDS };

#define CK_MAXPARTS 256 // batch parts of one run, at most
enum { T_X, T_W, T_Y }; // the tensors of a convolution

static const struct {
	const char *name;
	size_t ins, outs;     // input and output counts (the last of each may be optional)
	int role[3];          // tensor of input 0, input 1, output 0
	int arg[3];           // oneDNN argument of each role
	int query[3];         // oneDNN query of each role's descriptor
	const char *what[3];  // names in messages
	const char *prim;     // the primitive, in messages
} ck_kinds[CK_KINDS] = {
	[CK_GRAD_WEIGHT] = {"ConvGradWeight", 2, 2, {T_X, T_Y, T_W},
	                    {SLAT_DNNL_ARG_SRC, SLAT_DNNL_ARG_DIFF_DST, SLAT_DNNL_ARG_DIFF_WEIGHTS},
	                    {SLAT_dnnl_query_src_md, SLAT_dnnl_query_diff_dst_md, SLAT_dnnl_query_diff_weights_md},
	                    {"X", "dY", "dW"}, "convolution backward weights"},
	[CK_GRAD_INPUT] = {"ConvGradInput", 3, 1, {T_Y, T_W, T_X},
	                   {SLAT_DNNL_ARG_DIFF_DST, SLAT_DNNL_ARG_WEIGHTS, SLAT_DNNL_ARG_DIFF_SRC},
	                   {SLAT_dnnl_query_diff_dst_md, SLAT_dnnl_query_weights_md, SLAT_dnnl_query_diff_src_md},
	                   {"dY", "W", "dX"}, "convolution backward data"},
	[CK_FORWARD] = {"ConvForward", 3, 1, {T_X, T_W, T_Y},
	                {SLAT_DNNL_ARG_SRC, SLAT_DNNL_ARG_WEIGHTS, SLAT_DNNL_ARG_DST},
	                {SLAT_dnnl_query_src_md, SLAT_dnnl_query_weights_md, SLAT_dnnl_query_dst_md},
	                {"X", "W", "Y"}, "convolution forward"},
};

typedef struct {
	SlatOrtCustomOp op; // first, so an OrtCustomOp* is a SlatOp*
	int kind;           // CK_*
	int threads;        // ONNX Runtime intra-op threads of the session; 0: its default
	int winograd;       // Winograd for the shapes that allow it (ck_winograd_shape)
} SlatOp;

// A part is the convolution of rows [n0, n0+nb) of the batch, with its own
// single-threaded primitive, user-layout memories (plain nchw/oihw) whose
// data handles are set per run, internal blocked buffers where oneDNN
// picked another layout (indexed by role: input 0, input 1, output),
// scratchpad and stream. ConvGradWeight's parts after the first write their
// dW (then dB) into acc, summed into the output in part order after the run.
typedef struct {
	int64_t n0, nb;
	slat_dnnl_prim conv, r[3];
	slat_dnnl_mem u[3], i[3], u_b, scratch;
	slat_dnnl_stream stream;
	float *acc;
	void *p[3], *pb; // this run's data handles
	int rc;          // this run's outcome, and its message
	char err[256];
} CkPart;

typedef struct {
	int kind;
	int parts; // batch parts per run: the session's intra-op threads
	int with_bias; // ConvGradWeight: the dB output; ConvForward: the B input
	int64_t ks[2], stride[2], dil[2], pl[2], pr[2]; // dil in oneDNN's form (ONNX − 1)
	int64_t in_hw[2];                               // ConvGradInput's input_shape; 0: none
	int blocked;                                    // bit j: role j's tensor is in nChw16c (attribute "blocked")
	int winograd;                                   // 3×3 stride-1 shapes in Winograd (the domain's choice)
	char name[160];
	pthread_mutex_t mu;
	// Cached for the last shapes seen (key: X, W, Y dims).
	int have, nparts;
	int64_t key[12];
	CkPart *part;
} ConvK;

// ck_clear_part releases part c's primitives, memories and stream.
static void ck_clear_part(CkPart *c) {
	if (c->conv) dn.prim_destroy(c->conv);
	for (int j = 0; j < 3; j++) {
		if (c->r[j]) dn.prim_destroy(c->r[j]);
		if (c->u[j]) dn.mem_destroy(c->u[j]);
		if (c->i[j]) dn.mem_destroy(c->i[j]);
	}
	if (c->u_b) dn.mem_destroy(c->u_b);
	if (c->scratch) dn.mem_destroy(c->scratch);
	if (c->stream) dn.stream_destroy(c->stream);
	free(c->acc);
	const int64_t n0 = c->n0, nb = c->nb;
	memset(c, 0, sizeof *c);
	c->n0 = n0, c->nb = nb;
}

static void ck_clear(ConvK *k) {
	for (int p = 0; p < k->nparts; p++) ck_clear_part(&k->part[p]);
	free(k->part);
	k->part = NULL;
	k->nparts = 0;
	k->have = 0;
}

static int ck_kind(const SlatOrtCustomOp *op) { return ((const SlatOp *)op)->kind; }
static const char *ck_name(const SlatOrtCustomOp *op) { return ck_kinds[ck_kind(op)].name; }
static const char *ck_ep(const SlatOrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int ck_type(const SlatOrtCustomOp *op, size_t i) { (void)op; (void)i; return SLAT_ONNX_FLOAT; }
static size_t ck_in_count(const SlatOrtCustomOp *op) { return ck_kinds[ck_kind(op)].ins; }
static size_t ck_out_count(const SlatOrtCustomOp *op) { return ck_kinds[ck_kind(op)].outs; }
static int ck_in_char(const SlatOrtCustomOp *op, size_t i) { (void)op; return i < 2 ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL; }
static int ck_out_char(const SlatOrtCustomOp *op, size_t i) { (void)op; return i == 0 ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL; }
static int ck_memtype(const SlatOrtCustomOp *op, size_t i) { (void)op; (void)i; return SLAT_MEM_DEFAULT; }
static int ck_one(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int ck_zero(const SlatOrtCustomOp *op) { (void)op; return 0; }

// attr_ints reads an int64 array attribute into out (want values); a missing
// attribute leaves def (or, with def NULL and not required, zeros). Returns
// 0, or -1 with err set.
static int attr_ints(const SlatOrtKernelInfo *info, const char *name, int64_t *out, size_t want,
                     const int64_t *def, int required, char *err, size_t n) {
	size_t size = 0;
	SlatOrtStatus *s = ORTF(SLAT_ORT_KernelInfoGetAttributeArray_int64, SlatOrtStatus *, const SlatOrtKernelInfo *,
	                        const char *, int64_t *, size_t *)(info, name, NULL, &size);
	if (s) {
		if (required) {
			ort_take(s, err, n, name);
			return -1;
		}
		ort_release_status(s);
		if (def) memcpy(out, def, want * sizeof(int64_t));
		else memset(out, 0, want * sizeof(int64_t));
		return 0;
	}
	if (size != want) {
		seterr(err, n, "attribute %s has %zu values, want %zu (2-D convolution)", name, size, want);
		return -1;
	}
	s = ORTF(SLAT_ORT_KernelInfoGetAttributeArray_int64, SlatOrtStatus *, const SlatOrtKernelInfo *, const char *,
	         int64_t *, size_t *)(info, name, out, &size);
	return ort_take(s, err, n, name) ? -1 : 0;
}

static SlatOrtStatus *ck_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                void **out) {
	(void)api;
	int kind = ck_kind(op);
	const char *opname = ck_kinds[kind].name;
	char err[512];
	char msg[768];
	char name[160] = "";
	size_t nl = sizeof name;
	SlatOrtStatus *s = ORTF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                        size_t *)(info, name, &nl);
	if (s) { // too long or unavailable: go without
		ort_release_status(s);
		name[0] = 0;
	}
	int64_t ks[2], st[2], dl[2], pads[4], hw[2] = {0, 0};
	static const int64_t ones[2] = {1, 1}, zeros[4] = {0, 0, 0, 0};
	if (attr_ints(info, "kernel_shape", ks, 2, NULL, 1, err, sizeof err) ||
	    attr_ints(info, "strides", st, 2, ones, 0, err, sizeof err) ||
	    attr_ints(info, "dilations", dl, 2, ones, 0, err, sizeof err) ||
	    attr_ints(info, "pads", pads, 4, zeros, 0, err, sizeof err) ||
	    (kind == CK_GRAD_INPUT && attr_ints(info, "input_shape", hw, 2, NULL, 0, err, sizeof err))) {
		snprintf(msg, sizeof msg, SLAT_DOMAIN " %s %s: %s", opname, name, err);
		return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	int64_t group = 1;
	s = ORTF(SLAT_ORT_KernelInfoGetAttribute_int64, SlatOrtStatus *, const SlatOrtKernelInfo *, const char *,
	         int64_t *)(info, "group", &group);
	ort_release_status(s); // missing: group 1
	if (group != 1) {
		snprintf(msg, sizeof msg, SLAT_DOMAIN " %s %s: group %lld is not supported (only 1)", opname, name,
		         (long long)group);
		return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	for (int i = 0; i < 2; i++) {
		if (ks[i] < 1 || st[i] < 1 || dl[i] < 1 || pads[i] < 0 || pads[i + 2] < 0 || hw[i] < 0) {
			snprintf(msg, sizeof msg,
			         SLAT_DOMAIN " %s %s: invalid geometry (kernel_shape, strides, dilations must be "
			                     "positive, pads and input_shape non-negative)",
			         opname, name);
			return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
		}
	}
	int64_t blocked = 0; // a bit mask of inputs 0, 1 and output 0; missing: all NCHW
	if (kt_attr_int(info, "blocked", 7, &blocked, err, sizeof err)) {
		snprintf(msg, sizeof msg, SLAT_DOMAIN " %s %s: %s (a bit mask of inputs 0, 1 and output 0)", opname, name, err);
		return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	for (int j = 0; j < 3; j++) {
		int t = ck_kinds[kind].role[j];
		if ((blocked >> j & 1) && t == T_W) {
			snprintf(msg, sizeof msg, SLAT_DOMAIN " %s %s: blocked bit %d names %s, a weight tensor (only activations may be blocked)",
			         opname, name, j, ck_kinds[kind].what[j]);
			return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
		}
	}
	size_t outs = 1;
	s = ORTF(SLAT_ORT_KernelInfo_GetOutputCount, SlatOrtStatus *, const SlatOrtKernelInfo *, size_t *)(info, &outs);
	if (s) {
		ort_release_status(s);
		outs = 1;
	}
	ConvK *k = calloc(1, sizeof *k);
	if (!k) {
		snprintf(msg, sizeof msg, SLAT_DOMAIN " %s: out of memory", opname);
		return ort_create_status(SLAT_ORT_FAIL, msg);
	}
	k->kind = kind;
	k->parts = ((const SlatOp *)op)->threads;
	k->winograd = ((const SlatOp *)op)->winograd;
	if (k->parts <= 0) { // ONNX Runtime's default pool: one thread per core
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		k->parts = c > 0 ? (int)c : 1;
	}
	if (k->parts > CK_MAXPARTS) k->parts = CK_MAXPARTS;
	k->with_bias = kind == CK_GRAD_WEIGHT && outs >= 2; // ConvForward: decided per run
	k->blocked = (int)blocked;
	snprintf(k->name, sizeof k->name, "%s", name);
	for (int i = 0; i < 2; i++) {
		k->ks[i] = ks[i];
		k->stride[i] = st[i];
		k->dil[i] = dl[i] - 1;
		k->pl[i] = pads[i];
		k->pr[i] = pads[i + 2];
		k->in_hw[i] = hw[i];
	}
	pthread_mutex_init(&k->mu, NULL);
	*out = k;
	return NULL;
}

static void ck_destroy(void *p) {
	ConvK *k = p;
	if (!k) return;
	ck_clear(k);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

#define DNNL_TRY(call, what)                                                                       \
	do {                                                                                           \
		slat_dnnl_status st_ = (call);                                                             \
		if (st_ != SLAT_dnnl_success) {                                                            \
			seterr(err, n, "%s: %s", what, dnnl_status_name(st_));                                   \
			goto fail;                                                                             \
		}                                                                                          \
	} while (0)

// ck_reorder creates a reorder primitive from src to dst.
static int ck_reorder(const slat_dnnl_md *src, const slat_dnnl_md *dst, slat_dnnl_prim *prim, char *err, size_t n,
                      const char *what) {
	slat_dnnl_pd pd = NULL;
	slat_dnnl_status st = dn.reorder_pd_create(&pd, src, dn_engine, dst, dn_engine, NULL);
	if (st != SLAT_dnnl_success) {
		seterr(err, n, "dnnl_reorder_primitive_desc_create(%s): %s", what, dnnl_status_name(st));
		return -1;
	}
	st = dn.prim_create(prim, pd);
	dn.pd_destroy(pd);
	if (st != SLAT_dnnl_success) {
		*prim = NULL;
		seterr(err, n, "dnnl_primitive_create(%s): %s", what, dnnl_status_name(st));
		return -1;
	}
	return 0;
}

// ck_build_part creates part c's primitive, reorders and stream for
// dims[T_X], dims[T_W], dims[T_Y] (all NCHW / OIHW, checked by the caller;
// the batch is the part's). On failure the caller clears every part.
static int ck_build_part(const ConvK *k, CkPart *c, int64_t dims[3][4], int alg, char *err, size_t n) {
	const int kind = k->kind;
	slat_dnnl_md u[3], a[3], u_b;
	slat_dnnl_conv_desc fdesc, bdesc;
	slat_dnnl_pd fpd = NULL, bpd = NULL;
	slat_dnnl_attr attr = NULL;
	int64_t bd[1] = {dims[T_W][0]};
	const int f32 = SLAT_dnnl_f32, any = SLAT_dnnl_format_tag_any;
	static const char *tn[3] = {"X", "W", "Y"};
	char what[96];
	for (int t = 0; t < 3; t++) {
		snprintf(what, sizeof what, "dnnl_memory_desc_init_by_tag(%s)", tn[t]);
		DNNL_TRY(dn.md_init_by_tag(&u[t], 4, dims[t], f32, t == T_W ? SLAT_dnnl_oihw : SLAT_dnnl_nchw), what);
		DNNL_TRY(dn.md_init_by_tag(&a[t], 4, dims[t], f32, any), what);
	}
	DNNL_TRY(dn.md_init_by_tag(&u_b, 1, bd, f32, SLAT_dnnl_x), "dnnl_memory_desc_init_by_tag(bias)");
	const slat_dnnl_md *bias = k->with_bias ? &u_b : NULL;
	DNNL_TRY(dn.attr_create(&attr), "dnnl_primitive_attr_create");
	DNNL_TRY(dn.attr_set_scratchpad_mode(attr, SLAT_dnnl_scratchpad_mode_user),
	         "dnnl_primitive_attr_set_scratchpad_mode");
	DNNL_TRY(dn.conv_fwd_desc_init(&fdesc, SLAT_dnnl_forward_training, alg, &a[T_X], &a[T_W],
	                               bias, &a[T_Y], k->stride, k->dil, k->pl, k->pr),
	         "dnnl_dilated_convolution_forward_desc_init");
	// The forward primitive descriptor: the primitive itself for ConvForward,
	// the hint oneDNN's backward primitives require otherwise.
	DNNL_TRY(dn.pd_create(&fpd, &fdesc, kind == CK_FORWARD ? attr : NULL, dn_engine, NULL),
	         "dnnl_primitive_desc_create(convolution forward)");
	slat_dnnl_pd pd = fpd;
	if (kind == CK_GRAD_WEIGHT) {
		DNNL_TRY(dn.conv_bww_desc_init(&bdesc, alg, &a[T_X], &a[T_W], bias, &a[T_Y],
		                               k->stride, k->dil, k->pl, k->pr),
		         "dnnl_dilated_convolution_backward_weights_desc_init");
	} else if (kind == CK_GRAD_INPUT) {
		DNNL_TRY(dn.conv_bwd_desc_init(&bdesc, alg, &a[T_X], &a[T_W], &a[T_Y], k->stride,
		                               k->dil, k->pl, k->pr),
		         "dnnl_dilated_convolution_backward_data_desc_init");
	}
	if (kind != CK_FORWARD) {
		snprintf(what, sizeof what, "dnnl_primitive_desc_create(%s)", ck_kinds[kind].prim);
		DNNL_TRY(dn.pd_create(&bpd, &bdesc, attr, dn_engine, fpd), what);
		pd = bpd;
	}
	for (int j = 0; j < 3; j++) {
		int t = ck_kinds[kind].role[j];
		const char *tw = ck_kinds[kind].what[j];
		const slat_dnnl_md *q = dn.pd_query_md(pd, ck_kinds[kind].query[j], 0);
		if (!q) {
			seterr(err, n, "dnnl_primitive_desc_query_md: no descriptor for %s", tw);
			goto fail;
		}
		// The tensor as ONNX Runtime holds it: plain, or nChw16c where the
		// graph keeps it blocked between kernels (attribute blocked).
		slat_dnnl_md ub;
		const slat_dnnl_md *user = &u[t];
		if (k->blocked >> j & 1) {
			snprintf(what, sizeof what, "dnnl_memory_desc_init_by_tag(%s nChw16c)", tw);
			DNNL_TRY(dn.md_init_by_tag(&ub, 4, dims[t], f32, SLAT_dnnl_nChw16c), what);
			user = &ub;
		}
		snprintf(what, sizeof what, "dnnl_memory_create(%s)", tw);
		DNNL_TRY(dn.mem_create(&c->u[j], user, dn_engine, NULL), what);
		if (!dn.md_equal(q, user)) {
			snprintf(what, sizeof what, "dnnl_memory_create(%s blocked)", tw);
			DNNL_TRY(dn.mem_create(&c->i[j], q, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE), what);
			if (j < 2 ? ck_reorder(user, q, &c->r[j], err, n, tw) : ck_reorder(q, user, &c->r[j], err, n, tw))
				goto fail;
		}
	}
	if (k->with_bias) DNNL_TRY(dn.mem_create(&c->u_b, &u_b, dn_engine, NULL), "dnnl_memory_create(bias)");
	const slat_dnnl_md *q_scr = dn.pd_query_md(pd, SLAT_dnnl_query_scratchpad_md, 0);
	if (q_scr && dn.md_get_size(q_scr) > 0)
		DNNL_TRY(dn.mem_create(&c->scratch, q_scr, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE), "dnnl_memory_create(scratchpad)");
	snprintf(what, sizeof what, "dnnl_primitive_create(%s)", ck_kinds[kind].prim);
	DNNL_TRY(dn.prim_create(&c->conv, pd), what);
	const char *impl = NULL;
	if (dn.pd_query(pd, SLAT_dnnl_query_impl_info_str, 0, &impl) == SLAT_dnnl_success && impl) {
		pthread_mutex_lock(&dn_impl_mu);
		snprintf(dn_impl, sizeof dn_impl, "%s", impl);
		pthread_mutex_unlock(&dn_impl_mu);
	}
	if (bpd) dn.pd_destroy(bpd);
	dn.pd_destroy(fpd);
	dn.attr_destroy(attr);
	DNNL_TRY(dn.stream_create(&c->stream, dn_engine, SLAT_dnnl_stream_default_flags), "dnnl_stream_create");
	return 0;
fail:
	if (bpd) dn.pd_destroy(bpd);
	if (fpd) dn.pd_destroy(fpd);
	if (attr) dn.attr_destroy(attr);
	return -1;
}

// ck_winograd_shape reports whether a convolution of k's geometry with
// dims runs in oneDNN's Winograd F(4×4, 3×3) kernels: a 3×3 kernel, stride
// 1, no dilation, pads of at most 1, and input and output channels in whole
// blocks of 16, at least CK_WINO_MIN_CHANNELS of each. Below that the
// transforms cost more than they save: at batch 128, 1 thread, 16 channels
// at 28×28 and 32 at 14×14 ran as fast or faster direct (the weight gradient
// 4.2 against 4.8 ms and 2.5 against 3.4), 64 channels and more 1.4–3.3×
// faster in Winograd (BenchmarkConvWinograd, docs/kernels.md).
#define CK_WINO_MIN_CHANNELS 64
static int ck_winograd_shape(const ConvK *k, int64_t dims[3][4]) {
	if (k->ks[0] != 3 || k->ks[1] != 3 || k->stride[0] != 1 || k->stride[1] != 1 || k->dil[0] || k->dil[1])
		return 0;
	for (int i = 0; i < 2; i++)
		if (k->pl[i] > 1 || k->pr[i] > 1) return 0;
	for (int i = 0; i < 2; i++)
		if (dims[T_W][i] % 16 != 0 || dims[T_W][i] < CK_WINO_MIN_CHANNELS) return 0;
	return 1;
}

// ck_build splits the batch dims[T_X][0] into k->parts parts (at most one
// per row; the first N mod parts get one row more) and builds each. Every
// part is built for, and run on, one thread: the session's intra-op pool
// runs the parts side by side (ck_run), so oneDNN's own OpenMP threads are
// not used and the result does not depend on which thread runs what.
static int ck_build(ConvK *k, int64_t dims[3][4], char *err, size_t n) {
	ck_clear(k);
	const int64_t N = dims[T_X][0];
	const int np = N < k->parts ? (int)N : k->parts;
	k->part = calloc((size_t)np, sizeof *k->part);
	if (!k->part) {
		seterr(err, n, "out of memory");
		return -1;
	}
	k->nparts = np;
	const int64_t wn = dims[T_W][0] * dims[T_W][1] * dims[T_W][2] * dims[T_W][3];
	for (int p = 0, n0 = 0; p < np; p++) {
		CkPart *c = &k->part[p];
		c->n0 = n0;
		c->nb = N / np + (p < N % np ? 1 : 0);
		n0 += (int)c->nb;
		int64_t pd[3][4];
		memcpy(pd, dims, sizeof pd);
		pd[T_X][0] = pd[T_Y][0] = c->nb;
		// Winograd where it applies; where oneDNN has no implementation
		// for the shape (or fails otherwise), the direct algorithm.
		int built = 0;
		if (k->winograd && ck_winograd_shape(k, dims)) {
			built = ck_build_part(k, c, pd, SLAT_dnnl_convolution_winograd, err, n) == 0;
			if (!built) ck_clear_part(c);
		}
		if (!built && ck_build_part(k, c, pd, SLAT_dnnl_convolution_direct, err, n)) goto fail;
		if (k->kind == CK_GRAD_WEIGHT && p > 0) {
			c->acc = malloc((size_t)(wn + dims[T_W][0]) * sizeof(float));
			if (!c->acc) {
				seterr(err, n, "out of memory");
				goto fail;
			}
		}
	}
	memcpy(k->key, dims, sizeof k->key);
	k->have = 1;
	return 0;
fail:
	ck_clear(k);
	return -1;
}

// tensor_dims reads a 4-D float tensor's shape.
static int tensor_dims(const SlatOrtValue *v, int64_t *dims, char *err, size_t n, const char *what) {
	SlatOrtTensorInfo *ti = NULL;
	SlatOrtStatus *s = ORTF(SLAT_ORT_GetTensorTypeAndShape, SlatOrtStatus *, const SlatOrtValue *,
	                        SlatOrtTensorInfo **)(v, &ti);
	if (ort_take(s, err, n, what)) return -1;
	size_t count = 0;
	int et = 0;
	int rc = 0;
	s = ORTF(SLAT_ORT_GetDimensionsCount, SlatOrtStatus *, const SlatOrtTensorInfo *, size_t *)(ti, &count);
	if (!ort_take(s, err, n, what)) {
		s = ORTF(SLAT_ORT_GetTensorElementType, SlatOrtStatus *, const SlatOrtTensorInfo *, int *)(ti, &et);
		if (ort_take(s, err, n, what)) {
			rc = -1;
		} else if (count != 4 || et != SLAT_ONNX_FLOAT) {
			seterr(err, n, "%s must be a 4-D float tensor (rank %zu, element type %d)", what, count, et);
			rc = -1;
		} else {
			s = ORTF(SLAT_ORT_GetDimensions, SlatOrtStatus *, const SlatOrtTensorInfo *, int64_t *, size_t)(ti, dims, 4);
			if (ort_take(s, err, n, what)) rc = -1;
		}
	} else {
		rc = -1;
	}
	ORTF(SLAT_ORT_ReleaseTensorTypeAndShapeInfo, void, SlatOrtTensorInfo *)(ti);
	return rc;
}

// tensor_len1 reads the length of a 1-D float tensor (ConvForward's B).
static int tensor_len1(const SlatOrtValue *v, int64_t *len, char *err, size_t n, const char *what) {
	SlatOrtTensorInfo *ti = NULL;
	SlatOrtStatus *s = ORTF(SLAT_ORT_GetTensorTypeAndShape, SlatOrtStatus *, const SlatOrtValue *,
	                        SlatOrtTensorInfo **)(v, &ti);
	if (ort_take(s, err, n, what)) return -1;
	size_t count = 0;
	int rc = -1;
	s = ORTF(SLAT_ORT_GetDimensionsCount, SlatOrtStatus *, const SlatOrtTensorInfo *, size_t *)(ti, &count);
	if (!ort_take(s, err, n, what)) {
		if (count != 1) {
			seterr(err, n, "%s must be 1-D (rank %zu)", what, count);
		} else {
			s = ORTF(SLAT_ORT_GetDimensions, SlatOrtStatus *, const SlatOrtTensorInfo *, int64_t *, size_t)(ti, len, 1);
			if (!ort_take(s, err, n, what)) rc = 0;
		}
	}
	ORTF(SLAT_ORT_ReleaseTensorTypeAndShapeInfo, void, SlatOrtTensorInfo *)(ti);
	return rc;
}

static int tensor_data(SlatOrtValue *v, void **p, char *err, size_t n, const char *what) {
	SlatOrtStatus *s = ORTF(SLAT_ORT_GetTensorMutableData, SlatOrtStatus *, SlatOrtValue *, void **)(v, p);
	return ort_take(s, err, n, what) ? -1 : 0;
}

static int ck_input(SlatOrtKernelContext *ctx, size_t i, const SlatOrtValue **v, char *err, size_t n,
                    const char *what) {
	*v = NULL;
	SlatOrtStatus *s = ORTF(SLAT_ORT_KernelContext_GetInput, SlatOrtStatus *, SlatOrtKernelContext *, size_t,
	                        const SlatOrtValue **)(ctx, i, v);
	return ort_take(s, err, n, what) ? -1 : 0;
}

static int64_t ck_out_extent(const ConvK *k, int i, int64_t in) {
	int64_t range = (k->ks[i] - 1) * (k->dil[i] + 1) + 1;
	int64_t o = in + k->pl[i] + k->pr[i] - range;
	return o < 0 ? 0 : o / k->stride[i] + 1;
}

// ck_part_run runs part q of k's convolution with the handles ck_run set
// (reorders in, the primitive, reorder out) on the calling thread, leaving
// the outcome in the part. It is the body of ck_run's ParallelFor.
static void ck_part_run(void *kp, size_t q) {
	ConvK *k = kp;
	CkPart *c = &k->part[q];
	const int kind = k->kind;
	const char *const *tw = ck_kinds[kind].what;
	char *err = c->err;
	size_t n = sizeof c->err;
	char what[96];
	if (dn.omp_set_num_threads) dn.omp_set_num_threads(1);
	slat_dnnl_mem m[3];
	for (int j = 0; j < 3; j++) {
		snprintf(what, sizeof what, "dnnl_memory_set_data_handle(%s)", tw[j]);
		DNNL_TRY(dn.mem_set_handle(c->u[j], c->p[j]), what);
		m[j] = c->r[j] ? c->i[j] : c->u[j];
	}
	if (c->u_b) DNNL_TRY(dn.mem_set_handle(c->u_b, c->pb), "dnnl_memory_set_data_handle(bias)");
	for (int j = 0; j < 2; j++) {
		if (!c->r[j]) continue;
		slat_dnnl_exec_arg ra[2] = {{SLAT_DNNL_ARG_FROM, c->u[j]}, {SLAT_DNNL_ARG_TO, c->i[j]}};
		snprintf(what, sizeof what, "dnnl_primitive_execute(reorder %s)", tw[j]);
		DNNL_TRY(dn.prim_execute(c->r[j], c->stream, 2, ra), what);
	}
	slat_dnnl_exec_arg a[5];
	int na = 0;
	for (int j = 0; j < 3; j++) a[na++] = (slat_dnnl_exec_arg){ck_kinds[kind].arg[j], m[j]};
	if (c->u_b)
		a[na++] = (slat_dnnl_exec_arg){kind == CK_FORWARD ? SLAT_DNNL_ARG_BIAS : SLAT_DNNL_ARG_DIFF_BIAS, c->u_b};
	if (c->scratch) a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_SCRATCHPAD, c->scratch};
	snprintf(what, sizeof what, "dnnl_primitive_execute(%s)", ck_kinds[kind].prim);
	DNNL_TRY(dn.prim_execute(c->conv, c->stream, na, a), what);
	if (c->r[2]) {
		slat_dnnl_exec_arg ra[2] = {{SLAT_DNNL_ARG_FROM, c->i[2]}, {SLAT_DNNL_ARG_TO, c->u[2]}};
		snprintf(what, sizeof what, "dnnl_primitive_execute(reorder %s)", tw[2]);
		DNNL_TRY(dn.prim_execute(c->r[2], c->stream, 2, ra), what);
	}
	DNNL_TRY(dn.stream_wait(c->stream), "dnnl_stream_wait");
	return;
fail:
	c->rc = -1;
}

static int ck_run(ConvK *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	const int kind = k->kind;
	const char *const *tw = ck_kinds[kind].what;
	const SlatOrtValue *vin[2] = {NULL, NULL}, *v3 = NULL;
	int64_t dims[3][4];
	int64_t in_dims[2][4];
	for (int j = 0; j < 2; j++) {
		if (ck_input(ctx, (size_t)j, &vin[j], err, n, tw[j])) return -1;
		if (!vin[j]) {
			seterr(err, n, "inputs %s and %s are required", tw[0], tw[1]);
			return -1;
		}
		if (tensor_dims(vin[j], in_dims[j], err, n, tw[j])) return -1;
	}
	size_t nin = 0;
	SlatOrtStatus *s = ORTF(SLAT_ORT_KernelContext_GetInputCount, SlatOrtStatus *, const SlatOrtKernelContext *,
	                        size_t *)(ctx, &nin);
	if (ort_take(s, err, n, "input count")) return -1;
	if (nin > 2 && ck_kinds[kind].ins > 2 && ck_input(ctx, 2, &v3, err, n, "input 2")) return -1;
	for (int j = 0; j < 2; j++) memcpy(dims[ck_kinds[kind].role[j]], in_dims[j], sizeof in_dims[j]);
	int64_t *x = dims[T_X], *w = dims[T_W], *y = dims[T_Y];
	switch (kind) {
	case CK_GRAD_WEIGHT:
		w[0] = y[1], w[1] = x[1], w[2] = k->ks[0], w[3] = k->ks[1];
		break;
	case CK_GRAD_INPUT:
		x[0] = y[0], x[1] = w[1];
		if (v3) {
			int64_t xd[4];
			if (tensor_dims(v3, xd, err, n, "X")) return -1;
			if (xd[0] != y[0] || xd[1] != w[1]) {
				seterr(err, n, "X %lldx%lldx%lldx%lld does not match dY's batch %lld and W's %lld input channels",
				       (long long)xd[0], (long long)xd[1], (long long)xd[2], (long long)xd[3], (long long)y[0],
				       (long long)w[1]);
				return -1;
			}
			x[2] = xd[2], x[3] = xd[3];
		} else {
			for (int i = 0; i < 2; i++) {
				int64_t range = (k->ks[i] - 1) * (k->dil[i] + 1) + 1;
				x[2 + i] = k->in_hw[i] > 0 ? k->in_hw[i] : (y[2 + i] - 1) * k->stride[i] + range - k->pl[i] - k->pr[i];
			}
		}
		break;
	case CK_FORWARD:
		y[0] = x[0], y[1] = w[0];
		for (int i = 0; i < 2; i++) y[2 + i] = ck_out_extent(k, i, x[2 + i]);
		k->with_bias = 0;
		if (v3) {
			int64_t len = 0;
			if (tensor_len1(v3, &len, err, n, "B")) return -1;
			if (len != w[0]) {
				seterr(err, n, "B has %lld values, W %lld output channels", (long long)len, (long long)w[0]);
				return -1;
			}
			k->with_bias = 1;
		}
		break;
	}
	if (x[2] < 1 || x[3] < 1) {
		seterr(err, n, "input extent %lldx%lld is empty", (long long)x[2], (long long)x[3]);
		return -1;
	}
	if (w[2] != k->ks[0] || w[3] != k->ks[1] || w[1] != x[1] || w[0] != y[1] || x[0] != y[0]) {
		seterr(err, n, "W %lldx%lldx%lldx%lld does not fit kernel_shape %lldx%lld and the inputs' channels",
		       (long long)w[0], (long long)w[1], (long long)w[2], (long long)w[3], (long long)k->ks[0],
		       (long long)k->ks[1]);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		int64_t o = ck_out_extent(k, i, x[2 + i]);
		if (y[2 + i] != o || o < 1) {
			seterr(err, n,
			       "Y %lldx%lldx%lldx%lld does not match a convolution of X %lldx%lldx%lldx%lld with this "
			       "geometry (want batch %lld, spatial dim %d = %lld)",
			       (long long)y[0], (long long)y[1], (long long)y[2], (long long)y[3], (long long)x[0],
			       (long long)x[1], (long long)x[2], (long long)x[3], (long long)x[0], i, (long long)o);
			return -1;
		}
	}
	for (int j = 0; j < 3; j++) {
		int t = ck_kinds[kind].role[j];
		if ((k->blocked >> j & 1) && kt_check_blocked(dims[t], 4, tw[j], err, n)) return -1;
	}
	void *p[3] = {NULL, NULL, NULL}, *pb = NULL;
	SlatOrtValue *vout = NULL, *vdb = NULL;
	s = ORTF(SLAT_ORT_KernelContext_GetOutput, SlatOrtStatus *, SlatOrtKernelContext *, size_t, const int64_t *,
	         size_t, SlatOrtValue **)(ctx, 0, dims[ck_kinds[kind].role[2]], 4, &vout);
	if (ort_take(s, err, n, tw[2])) return -1;
	if (kind == CK_GRAD_WEIGHT && k->with_bias) {
		s = ORTF(SLAT_ORT_KernelContext_GetOutput, SlatOrtStatus *, SlatOrtKernelContext *, size_t, const int64_t *,
		         size_t, SlatOrtValue **)(ctx, 1, &y[1], 1, &vdb);
		if (ort_take(s, err, n, "dB")) return -1;
		if (!vdb) {
			seterr(err, n, "ONNX Runtime gave no output tensor");
			return -1;
		}
		if (tensor_data(vdb, &pb, err, n, "dB")) return -1;
	}
	if (!vout) {
		seterr(err, n, "ONNX Runtime gave no output tensor");
		return -1;
	}
	if (tensor_data((SlatOrtValue *)vin[0], &p[0], err, n, tw[0]) ||
	    tensor_data((SlatOrtValue *)vin[1], &p[1], err, n, tw[1]) || tensor_data(vout, &p[2], err, n, tw[2]) ||
	    (kind == CK_FORWARD && v3 && tensor_data((SlatOrtValue *)v3, &pb, err, n, "B")))
		return -1;

	// One OpenMP thread, on every thread that builds or runs a part: oneDNN
	// plans a primitive's split of the work (and so its order of summation)
	// for the OpenMP thread count of the thread that creates it, and the
	// parallelism comes from running the parts on ONNX Runtime's pool.
	if (dn.omp_set_num_threads) dn.omp_set_num_threads(1);
	if (!(k->have && memcmp(k->key, dims, sizeof k->key) == 0 &&
	      (k->part[0].u_b != NULL) == (k->with_bias != 0))) {
		if (ck_build(k, dims, err, n)) return -1;
	}
	// Each part's rows of the batched tensors (X and Y; dX and dY); W whole.
	int64_t rowlen[3];
	for (int t = 0; t < 3; t++) rowlen[t] = dims[t][1] * dims[t][2] * dims[t][3];
	const int64_t wn = rowlen[T_W] * dims[T_W][0];
	for (int q = 0; q < k->nparts; q++) {
		CkPart *c = &k->part[q];
		for (int j = 0; j < 3; j++) {
			int t = ck_kinds[kind].role[j];
			c->p[j] = t == T_W ? p[j] : (float *)p[j] + c->n0 * rowlen[t];
		}
		c->pb = pb;
		if (c->acc) { // ConvGradWeight, parts after the first
			c->p[2] = c->acc;
			c->pb = pb ? c->acc + wn : NULL;
		}
		c->rc = 0;
		c->err[0] = 0;
	}
	if (k->nparts == 1) {
		ck_part_run(k, 0);
	} else {
		s = ORTF(SLAT_ORT_KernelContext_ParallelFor, SlatOrtStatus *, const SlatOrtKernelContext *,
		         void (*)(void *, size_t), size_t, size_t, void *)(ctx, ck_part_run, (size_t)k->nparts, 0, k);
		if (ort_take(s, err, n, "KernelContext_ParallelFor")) return -1;
	}
	for (int q = 0; q < k->nparts; q++) {
		if (k->part[q].rc) {
			seterr(err, n, "%s", k->part[q].err);
			return -1;
		}
	}
	if (kind == CK_GRAD_WEIGHT) { // sum the parts' dW (and dB) in part order
		float *dw = p[2], *db = pb;
		for (int q = 1; q < k->nparts; q++) {
			const float *a = k->part[q].acc;
			for (int64_t i = 0; i < wn; i++) dw[i] += a[i];
			if (db)
				for (int64_t i = 0; i < dims[T_W][0]; i++) db[i] += a[wn + i];
		}
	}
	return 0;
}

static SlatOrtStatus *ck_compute(void *p, SlatOrtKernelContext *ctx) {
	ConvK *k = p;
	char err[512] = "";
	pthread_mutex_lock(&k->mu);
	int rc = ck_run(k, ctx, err, sizeof err);
	pthread_mutex_unlock(&k->mu);
	if (rc == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, SLAT_DOMAIN " %s %s: %s", ck_kinds[k->kind].name, k->name, err);
	return ort_create_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

// ---------------------------------------------------------------------------
// Domains

int slat_domain_new(int threads, int winograd, void **out, char *err, size_t n) {
	if (!ort_api) {
		seterr(err, n, "OrtApi not bound");
		return -1;
	}
	if (!dn_engine) {
		seterr(err, n, "oneDNN not loaded");
		return -1;
	}
	// The ops and the domain live as long as the process: sessions keep
	// pointers to both.
	SlatOrtCustomOpDomain *dom = NULL;
	SlatOrtStatus *s = ORTF(SLAT_ORT_CreateCustomOpDomain, SlatOrtStatus *, const char *,
	                        SlatOrtCustomOpDomain **)(SLAT_DOMAIN, &dom);
	if (ort_take(s, err, n, "CreateCustomOpDomain")) return -1;
	SlatOp *ops = calloc(CK_KINDS, sizeof *ops);
	if (!ops) {
		ORTF(SLAT_ORT_ReleaseCustomOpDomain, void, SlatOrtCustomOpDomain *)(dom);
		seterr(err, n, "out of memory");
		return -1;
	}
	for (int kind = 0; kind < CK_KINDS; kind++) {
		SlatOp *op = &ops[kind];
		op->kind = kind;
		op->threads = threads;
		op->winograd = winograd;
		op->op.version = SLAT_ORT_CUSTOM_OP_VERSION;
		op->op.GetName = ck_name;
		op->op.GetExecutionProviderType = ck_ep;
		op->op.GetInputType = ck_type;
		op->op.GetInputTypeCount = ck_in_count;
		op->op.GetOutputType = ck_type;
		op->op.GetOutputTypeCount = ck_out_count;
		op->op.KernelDestroy = ck_destroy;
		op->op.GetInputCharacteristic = ck_in_char;
		op->op.GetOutputCharacteristic = ck_out_char;
		op->op.GetInputMemoryType = ck_memtype;
		op->op.GetVariadicInputMinArity = ck_one;
		op->op.GetVariadicInputHomogeneity = ck_zero;
		op->op.GetVariadicOutputMinArity = ck_one;
		op->op.GetVariadicOutputHomogeneity = ck_zero;
		op->op.CreateKernelV2 = ck_create;
		op->op.KernelComputeV2 = ck_compute;
		s = ORTF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *, const SlatOrtCustomOp *)(
		    dom, &op->op);
		char what[64];
		snprintf(what, sizeof what, "CustomOpDomain_Add(%s)", ck_kinds[kind].name);
		if (ort_take(s, err, n, what)) {
			ORTF(SLAT_ORT_ReleaseCustomOpDomain, void, SlatOrtCustomOpDomain *)(dom);
			free(ops);
			return -1;
		}
	}
	// The batch-normalization ops (bnorm.c) and the fused elementwise ones
	// (fused.c) join the same domain.
	if (slat_bn_register(dom, err, n) || slat_fused_register(dom, err, n)) {
		ORTF(SLAT_ORT_ReleaseCustomOpDomain, void, SlatOrtCustomOpDomain *)(dom);
		free(ops);
		return -1;
	}
	*out = dom;
	return 0;
}

int slat_domain_add(void *so, void *dom, char *err, size_t n) {
	if (!ort_api || !so || !dom) {
		seterr(err, n, "AddCustomOpDomain: not ready");
		return -1;
	}
	SlatOrtStatus *s = ORTF(SLAT_ORT_AddCustomOpDomain, SlatOrtStatus *, SlatOrtSessionOptions *,
	                        SlatOrtCustomOpDomain *)((SlatOrtSessionOptions *)so, (SlatOrtCustomOpDomain *)dom);
	return ort_take(s, err, n, "AddCustomOpDomain") ? -1 : 0;
}
