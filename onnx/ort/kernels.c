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
// ConvGradWeight: inputs X [N,C,H,W], dY [N,K,OH,OW]; outputs dW [K,C,kh,kw]
// and, optionally, dB [K]. Attributes as ONNX Conv: kernel_shape (required),
// strides, pads, dilations, group (must be 1).

typedef struct {
	SlatOrtCustomOp op; // first, so an OrtCustomOp* is a SlatOp*
	int threads;        // oneDNN (OpenMP) threads per run; 0: OpenMP's default
} SlatOp;

typedef struct {
	int threads;
	int with_bias;
	int64_t ks[2], stride[2], dil[2], pl[2], pr[2]; // dil in oneDNN's form (ONNX − 1)
	char name[160];
	pthread_mutex_t mu;
	slat_dnnl_stream stream;
	// Cached for the last shape seen (key): the primitives, user-layout
	// memories whose data handles are set per run, and internal blocked
	// buffers when oneDNN picked a layout other than nchw/oihw.
	int have;
	int64_t key[7];
	slat_dnnl_prim conv, r_src, r_ddst, r_dw;
	slat_dnnl_mem u_src, u_ddst, u_dw, u_db;
	slat_dnnl_mem i_src, i_ddst, i_dw, scratch;
} ConvGradW;

static void cgw_clear(ConvGradW *k) {
	slat_dnnl_prim *ps[] = {&k->conv, &k->r_src, &k->r_ddst, &k->r_dw};
	for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
		if (*ps[i]) {
			dn.prim_destroy(*ps[i]);
			*ps[i] = NULL;
		}
	slat_dnnl_mem *ms[] = {&k->u_src, &k->u_ddst, &k->u_dw, &k->u_db, &k->i_src, &k->i_ddst, &k->i_dw, &k->scratch};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
		if (*ms[i]) {
			dn.mem_destroy(*ms[i]);
			*ms[i] = NULL;
		}
	k->have = 0;
}

static const char *cgw_name(const SlatOrtCustomOp *op) { (void)op; return "ConvGradWeight"; }
static const char *cgw_ep(const SlatOrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int cgw_type(const SlatOrtCustomOp *op, size_t i) { (void)op; (void)i; return SLAT_ONNX_FLOAT; }
static size_t cgw_two(const SlatOrtCustomOp *op) { (void)op; return 2; }
static int cgw_in_char(const SlatOrtCustomOp *op, size_t i) { (void)op; (void)i; return SLAT_IO_REQUIRED; }
static int cgw_out_char(const SlatOrtCustomOp *op, size_t i) {
	(void)op;
	return i == 0 ? SLAT_IO_REQUIRED : SLAT_IO_OPTIONAL;
}
static int cgw_memtype(const SlatOrtCustomOp *op, size_t i) { (void)op; (void)i; return SLAT_MEM_DEFAULT; }
static int cgw_one(const SlatOrtCustomOp *op) { (void)op; return 1; }
static int cgw_zero(const SlatOrtCustomOp *op) { (void)op; return 0; }

// attr_ints reads an int64 array attribute into out (want values); a missing
// attribute leaves def. Returns 0, or -1 with err set.
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
		memcpy(out, def, want * sizeof(int64_t));
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

static SlatOrtStatus *cgw_create(const SlatOrtCustomOp *op, const void *api, const SlatOrtKernelInfo *info,
                                 void **out) {
	(void)api;
	char err[512];
	char name[160] = "";
	size_t nl = sizeof name;
	SlatOrtStatus *s = ORTF(SLAT_ORT_KernelInfo_GetNodeName, SlatOrtStatus *, const SlatOrtKernelInfo *, char *,
	                        size_t *)(info, name, &nl);
	if (s) { // too long or unavailable: go without
		ort_release_status(s);
		name[0] = 0;
	}
	int64_t ks[2], st[2], dl[2], pads[4];
	static const int64_t ones[2] = {1, 1}, zeros[4] = {0, 0, 0, 0};
	if (attr_ints(info, "kernel_shape", ks, 2, NULL, 1, err, sizeof err) ||
	    attr_ints(info, "strides", st, 2, ones, 0, err, sizeof err) ||
	    attr_ints(info, "dilations", dl, 2, ones, 0, err, sizeof err) ||
	    attr_ints(info, "pads", pads, 4, zeros, 0, err, sizeof err)) {
		char msg[768];
		snprintf(msg, sizeof msg, SLAT_DOMAIN " ConvGradWeight %s: %s", name, err);
		return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, msg);
	}
	int64_t group = 1;
	s = ORTF(SLAT_ORT_KernelInfoGetAttribute_int64, SlatOrtStatus *, const SlatOrtKernelInfo *, const char *,
	         int64_t *)(info, "group", &group);
	ort_release_status(s); // missing: group 1
	if (group != 1) {
		snprintf(err, sizeof err, SLAT_DOMAIN " ConvGradWeight %s: group %lld is not supported (only 1)", name,
		         (long long)group);
		return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, err);
	}
	for (int i = 0; i < 2; i++) {
		if (ks[i] < 1 || st[i] < 1 || dl[i] < 1 || pads[i] < 0 || pads[i + 2] < 0) {
			snprintf(err, sizeof err,
			         SLAT_DOMAIN " ConvGradWeight %s: invalid geometry (kernel_shape, strides, dilations must be "
			                     "positive, pads non-negative)",
			         name);
			return ort_create_status(SLAT_ORT_INVALID_ARGUMENT, err);
		}
	}
	size_t outs = 1;
	s = ORTF(SLAT_ORT_KernelInfo_GetOutputCount, SlatOrtStatus *, const SlatOrtKernelInfo *, size_t *)(info, &outs);
	if (s) {
		ort_release_status(s);
		outs = 1;
	}
	ConvGradW *k = calloc(1, sizeof *k);
	if (!k) return ort_create_status(SLAT_ORT_FAIL, SLAT_DOMAIN " ConvGradWeight: out of memory");
	k->threads = ((const SlatOp *)op)->threads;
	k->with_bias = outs >= 2;
	snprintf(k->name, sizeof k->name, "%s", name);
	for (int i = 0; i < 2; i++) {
		k->ks[i] = ks[i];
		k->stride[i] = st[i];
		k->dil[i] = dl[i] - 1;
		k->pl[i] = pads[i];
		k->pr[i] = pads[i + 2];
	}
	slat_dnnl_status ds = dn.stream_create(&k->stream, dn_engine, SLAT_dnnl_stream_default_flags);
	if (ds != SLAT_dnnl_success) {
		free(k);
		snprintf(err, sizeof err, SLAT_DOMAIN " ConvGradWeight %s: dnnl_stream_create: %s", name,
		         dnnl_status_name(ds));
		return ort_create_status(SLAT_ORT_FAIL, err);
	}
	pthread_mutex_init(&k->mu, NULL);
	*out = k;
	return NULL;
}

static void cgw_destroy(void *p) {
	ConvGradW *k = p;
	if (!k) return;
	cgw_clear(k);
	if (k->stream) dn.stream_destroy(k->stream);
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

// cgw_reorder creates a reorder primitive from src to dst.
static int cgw_reorder(const slat_dnnl_md *src, const slat_dnnl_md *dst, slat_dnnl_prim *prim, char *err, size_t n,
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

static int cgw_build(ConvGradW *k, const int64_t *x, const int64_t *dy, char *err, size_t n) {
	slat_dnnl_md u_src, u_ddst, u_dw, u_db, a_src, a_ddst, a_dw;
	slat_dnnl_conv_desc fdesc, bdesc;
	slat_dnnl_pd fpd = NULL, bpd = NULL;
	slat_dnnl_attr attr = NULL;
	int64_t wd[4] = {dy[1], x[1], k->ks[0], k->ks[1]};
	int64_t bd[1] = {dy[1]};
	const int f32 = SLAT_dnnl_f32, any = SLAT_dnnl_format_tag_any;
	DNNL_TRY(dn.md_init_by_tag(&u_src, 4, x, f32, SLAT_dnnl_nchw), "dnnl_memory_desc_init_by_tag(X)");
	DNNL_TRY(dn.md_init_by_tag(&u_ddst, 4, dy, f32, SLAT_dnnl_nchw), "dnnl_memory_desc_init_by_tag(dY)");
	DNNL_TRY(dn.md_init_by_tag(&u_dw, 4, wd, f32, SLAT_dnnl_oihw), "dnnl_memory_desc_init_by_tag(dW)");
	DNNL_TRY(dn.md_init_by_tag(&u_db, 1, bd, f32, SLAT_dnnl_x), "dnnl_memory_desc_init_by_tag(dB)");
	DNNL_TRY(dn.md_init_by_tag(&a_src, 4, x, f32, any), "dnnl_memory_desc_init_by_tag(X, any)");
	DNNL_TRY(dn.md_init_by_tag(&a_ddst, 4, dy, f32, any), "dnnl_memory_desc_init_by_tag(dY, any)");
	DNNL_TRY(dn.md_init_by_tag(&a_dw, 4, wd, f32, any), "dnnl_memory_desc_init_by_tag(dW, any)");
	const slat_dnnl_md *bias = k->with_bias ? &u_db : NULL;
	DNNL_TRY(dn.conv_fwd_desc_init(&fdesc, SLAT_dnnl_forward_training, SLAT_dnnl_convolution_direct, &a_src, &a_dw,
	                               bias, &a_ddst, k->stride, k->dil, k->pl, k->pr),
	         "dnnl_dilated_convolution_forward_desc_init");
	DNNL_TRY(dn.pd_create(&fpd, &fdesc, NULL, dn_engine, NULL), "dnnl_primitive_desc_create(convolution forward hint)");
	DNNL_TRY(dn.conv_bww_desc_init(&bdesc, SLAT_dnnl_convolution_direct, &a_src, &a_dw, bias, &a_ddst, k->stride,
	                               k->dil, k->pl, k->pr),
	         "dnnl_dilated_convolution_backward_weights_desc_init");
	DNNL_TRY(dn.attr_create(&attr), "dnnl_primitive_attr_create");
	DNNL_TRY(dn.attr_set_scratchpad_mode(attr, SLAT_dnnl_scratchpad_mode_user),
	         "dnnl_primitive_attr_set_scratchpad_mode");
	DNNL_TRY(dn.pd_create(&bpd, &bdesc, attr, dn_engine, fpd),
	         "dnnl_primitive_desc_create(convolution backward weights)");
	const slat_dnnl_md *q_src = dn.pd_query_md(bpd, SLAT_dnnl_query_src_md, 0);
	const slat_dnnl_md *q_ddst = dn.pd_query_md(bpd, SLAT_dnnl_query_diff_dst_md, 0);
	const slat_dnnl_md *q_dw = dn.pd_query_md(bpd, SLAT_dnnl_query_diff_weights_md, 0);
	const slat_dnnl_md *q_scr = dn.pd_query_md(bpd, SLAT_dnnl_query_scratchpad_md, 0);
	if (!q_src || !q_ddst || !q_dw) {
		seterr(err, n, "dnnl_primitive_desc_query_md: no src/diff_dst/diff_weights descriptor");
		goto fail;
	}
	DNNL_TRY(dn.mem_create(&k->u_src, &u_src, dn_engine, NULL), "dnnl_memory_create(X)");
	DNNL_TRY(dn.mem_create(&k->u_ddst, &u_ddst, dn_engine, NULL), "dnnl_memory_create(dY)");
	DNNL_TRY(dn.mem_create(&k->u_dw, &u_dw, dn_engine, NULL), "dnnl_memory_create(dW)");
	if (k->with_bias) DNNL_TRY(dn.mem_create(&k->u_db, &u_db, dn_engine, NULL), "dnnl_memory_create(dB)");
	if (!dn.md_equal(q_src, &u_src)) {
		DNNL_TRY(dn.mem_create(&k->i_src, q_src, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE), "dnnl_memory_create(X blocked)");
		if (cgw_reorder(&u_src, q_src, &k->r_src, err, n, "X")) goto fail;
	}
	if (!dn.md_equal(q_ddst, &u_ddst)) {
		DNNL_TRY(dn.mem_create(&k->i_ddst, q_ddst, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE),
		         "dnnl_memory_create(dY blocked)");
		if (cgw_reorder(&u_ddst, q_ddst, &k->r_ddst, err, n, "dY")) goto fail;
	}
	if (!dn.md_equal(q_dw, &u_dw)) {
		DNNL_TRY(dn.mem_create(&k->i_dw, q_dw, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE), "dnnl_memory_create(dW blocked)");
		if (cgw_reorder(q_dw, &u_dw, &k->r_dw, err, n, "dW")) goto fail;
	}
	if (q_scr && dn.md_get_size(q_scr) > 0)
		DNNL_TRY(dn.mem_create(&k->scratch, q_scr, dn_engine, SLAT_DNNL_MEMORY_ALLOCATE), "dnnl_memory_create(scratchpad)");
	DNNL_TRY(dn.prim_create(&k->conv, bpd), "dnnl_primitive_create(convolution backward weights)");
	const char *impl = NULL;
	if (dn.pd_query(bpd, SLAT_dnnl_query_impl_info_str, 0, &impl) == SLAT_dnnl_success && impl) {
		pthread_mutex_lock(&dn_impl_mu);
		snprintf(dn_impl, sizeof dn_impl, "%s", impl);
		pthread_mutex_unlock(&dn_impl_mu);
	}
	dn.pd_destroy(bpd);
	dn.pd_destroy(fpd);
	dn.attr_destroy(attr);
	memcpy(k->key, x, 4 * sizeof(int64_t));
	k->key[4] = dy[1];
	k->key[5] = dy[2];
	k->key[6] = dy[3];
	k->have = 1;
	return 0;
fail:
	if (bpd) dn.pd_destroy(bpd);
	if (fpd) dn.pd_destroy(fpd);
	if (attr) dn.attr_destroy(attr);
	cgw_clear(k);
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

static int tensor_data(SlatOrtValue *v, void **p, char *err, size_t n, const char *what) {
	SlatOrtStatus *s = ORTF(SLAT_ORT_GetTensorMutableData, SlatOrtStatus *, SlatOrtValue *, void **)(v, p);
	return ort_take(s, err, n, what) ? -1 : 0;
}

static int cgw_run(ConvGradW *k, SlatOrtKernelContext *ctx, char *err, size_t n) {
	const SlatOrtValue *vx = NULL, *vdy = NULL;
	SlatOrtStatus *s;
	s = ORTF(SLAT_ORT_KernelContext_GetInput, SlatOrtStatus *, SlatOrtKernelContext *, size_t,
	         const SlatOrtValue **)(ctx, 0, &vx);
	if (ort_take(s, err, n, "input X")) return -1;
	s = ORTF(SLAT_ORT_KernelContext_GetInput, SlatOrtStatus *, SlatOrtKernelContext *, size_t,
	         const SlatOrtValue **)(ctx, 1, &vdy);
	if (ort_take(s, err, n, "input dY")) return -1;
	if (!vx || !vdy) {
		seterr(err, n, "inputs X and dY are required");
		return -1;
	}
	int64_t x[4], dy[4];
	if (tensor_dims(vx, x, err, n, "X") || tensor_dims(vdy, dy, err, n, "dY")) return -1;
	for (int i = 0; i < 2; i++) {
		int64_t range = (k->ks[i] - 1) * (k->dil[i] + 1) + 1;
		int64_t o = (x[2 + i] + k->pl[i] + k->pr[i] - range);
		o = o < 0 ? 0 : o / k->stride[i] + 1;
		if (dy[0] != x[0] || dy[2 + i] != o) {
			seterr(err, n,
			       "dY %lldx%lldx%lldx%lld does not match a convolution of X %lldx%lldx%lldx%lld with this "
			       "geometry (want batch %lld, spatial dim %d = %lld)",
			       (long long)dy[0], (long long)dy[1], (long long)dy[2], (long long)dy[3], (long long)x[0],
			       (long long)x[1], (long long)x[2], (long long)x[3], (long long)x[0], i, (long long)o);
			return -1;
		}
	}
	void *px = NULL, *pdy = NULL, *pdw = NULL, *pdb = NULL;
	SlatOrtValue *vdw = NULL, *vdb = NULL;
	int64_t wd[4] = {dy[1], x[1], k->ks[0], k->ks[1]};
	s = ORTF(SLAT_ORT_KernelContext_GetOutput, SlatOrtStatus *, SlatOrtKernelContext *, size_t, const int64_t *,
	         size_t, SlatOrtValue **)(ctx, 0, wd, 4, &vdw);
	if (ort_take(s, err, n, "output dW")) return -1;
	if (k->with_bias) {
		s = ORTF(SLAT_ORT_KernelContext_GetOutput, SlatOrtStatus *, SlatOrtKernelContext *, size_t, const int64_t *,
		         size_t, SlatOrtValue **)(ctx, 1, &dy[1], 1, &vdb);
		if (ort_take(s, err, n, "output dB")) return -1;
	}
	if (!vdw || (k->with_bias && !vdb)) {
		seterr(err, n, "ONNX Runtime gave no output tensor");
		return -1;
	}
	if (tensor_data((SlatOrtValue *)vx, &px, err, n, "X") || tensor_data((SlatOrtValue *)vdy, &pdy, err, n, "dY") ||
	    tensor_data(vdw, &pdw, err, n, "dW") || (vdb && tensor_data(vdb, &pdb, err, n, "dB")))
		return -1;

	// The thread count first: oneDNN plans a primitive's split of the work
	// (and so its order of summation) for the OpenMP thread count of the
	// thread that creates it, and ONNX Runtime may call us from any thread.
	// Set after the build, the plan, and the last bits of dW, would depend
	// on which thread built the primitive (seen: resumed runs that differed
	// from uninterrupted ones in the 7th digit).
	if (k->threads > 0 && dn.omp_set_num_threads) dn.omp_set_num_threads(k->threads);
	if (k->have && memcmp(k->key, x, 4 * sizeof(int64_t)) == 0 && k->key[4] == dy[1] && k->key[5] == dy[2] &&
	    k->key[6] == dy[3]) {
		// cached
	} else {
		cgw_clear(k);
		if (cgw_build(k, x, dy, err, n)) return -1;
	}

	DNNL_TRY(dn.mem_set_handle(k->u_src, px), "dnnl_memory_set_data_handle(X)");
	DNNL_TRY(dn.mem_set_handle(k->u_ddst, pdy), "dnnl_memory_set_data_handle(dY)");
	DNNL_TRY(dn.mem_set_handle(k->u_dw, pdw), "dnnl_memory_set_data_handle(dW)");
	if (k->u_db) DNNL_TRY(dn.mem_set_handle(k->u_db, pdb), "dnnl_memory_set_data_handle(dB)");
	slat_dnnl_mem src = k->u_src, ddst = k->u_ddst, dw = k->u_dw;
	if (k->r_src) {
		slat_dnnl_exec_arg a[2] = {{SLAT_DNNL_ARG_FROM, k->u_src}, {SLAT_DNNL_ARG_TO, k->i_src}};
		DNNL_TRY(dn.prim_execute(k->r_src, k->stream, 2, a), "dnnl_primitive_execute(reorder X)");
		src = k->i_src;
	}
	if (k->r_ddst) {
		slat_dnnl_exec_arg a[2] = {{SLAT_DNNL_ARG_FROM, k->u_ddst}, {SLAT_DNNL_ARG_TO, k->i_ddst}};
		DNNL_TRY(dn.prim_execute(k->r_ddst, k->stream, 2, a), "dnnl_primitive_execute(reorder dY)");
		ddst = k->i_ddst;
	}
	if (k->r_dw) dw = k->i_dw;
	slat_dnnl_exec_arg a[5];
	int na = 0;
	a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_SRC, src};
	a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_DIFF_DST, ddst};
	a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_DIFF_WEIGHTS, dw};
	if (k->u_db) a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_DIFF_BIAS, k->u_db};
	if (k->scratch) a[na++] = (slat_dnnl_exec_arg){SLAT_DNNL_ARG_SCRATCHPAD, k->scratch};
	DNNL_TRY(dn.prim_execute(k->conv, k->stream, na, a), "dnnl_primitive_execute(convolution backward weights)");
	if (k->r_dw) {
		slat_dnnl_exec_arg b[2] = {{SLAT_DNNL_ARG_FROM, k->i_dw}, {SLAT_DNNL_ARG_TO, k->u_dw}};
		DNNL_TRY(dn.prim_execute(k->r_dw, k->stream, 2, b), "dnnl_primitive_execute(reorder dW)");
	}
	DNNL_TRY(dn.stream_wait(k->stream), "dnnl_stream_wait");
	return 0;
fail:
	return -1;
}

static SlatOrtStatus *cgw_compute(void *p, SlatOrtKernelContext *ctx) {
	ConvGradW *k = p;
	char err[512] = "";
	pthread_mutex_lock(&k->mu);
	int rc = cgw_run(k, ctx, err, sizeof err);
	pthread_mutex_unlock(&k->mu);
	if (rc == 0) return NULL;
	char msg[768];
	snprintf(msg, sizeof msg, SLAT_DOMAIN " ConvGradWeight %s: %s", k->name, err);
	return ort_create_status(SLAT_ORT_RUNTIME_EXCEPTION, msg);
}

// ---------------------------------------------------------------------------
// Domains

int slat_domain_new(int threads, void **out, char *err, size_t n) {
	if (!ort_api) {
		seterr(err, n, "OrtApi not bound");
		return -1;
	}
	if (!dn_engine) {
		seterr(err, n, "oneDNN not loaded");
		return -1;
	}
	// The op and the domain live as long as the process: sessions keep
	// pointers to both.
	SlatOp *op = calloc(1, sizeof *op);
	if (!op) {
		seterr(err, n, "out of memory");
		return -1;
	}
	op->threads = threads;
	op->op.version = SLAT_ORT_CUSTOM_OP_VERSION;
	op->op.GetName = cgw_name;
	op->op.GetExecutionProviderType = cgw_ep;
	op->op.GetInputType = cgw_type;
	op->op.GetInputTypeCount = cgw_two;
	op->op.GetOutputType = cgw_type;
	op->op.GetOutputTypeCount = cgw_two;
	op->op.KernelDestroy = cgw_destroy;
	op->op.GetInputCharacteristic = cgw_in_char;
	op->op.GetOutputCharacteristic = cgw_out_char;
	op->op.GetInputMemoryType = cgw_memtype;
	op->op.GetVariadicInputMinArity = cgw_one;
	op->op.GetVariadicInputHomogeneity = cgw_zero;
	op->op.GetVariadicOutputMinArity = cgw_one;
	op->op.GetVariadicOutputHomogeneity = cgw_zero;
	op->op.CreateKernelV2 = cgw_create;
	op->op.KernelComputeV2 = cgw_compute;
	SlatOrtCustomOpDomain *dom = NULL;
	SlatOrtStatus *s = ORTF(SLAT_ORT_CreateCustomOpDomain, SlatOrtStatus *, const char *,
	                        SlatOrtCustomOpDomain **)(SLAT_DOMAIN, &dom);
	if (ort_take(s, err, n, "CreateCustomOpDomain")) {
		free(op);
		return -1;
	}
	s = ORTF(SLAT_ORT_CustomOpDomain_Add, SlatOrtStatus *, SlatOrtCustomOpDomain *, const SlatOrtCustomOp *)(
	    dom, &op->op);
	if (ort_take(s, err, n, "CustomOpDomain_Add(ConvGradWeight)")) {
		ORTF(SLAT_ORT_ReleaseCustomOpDomain, void, SlatOrtCustomOpDomain *)(dom);
		free(op);
		return -1;
	}
	// The batch-normalization ops (bnorm.c) join the same domain.
	if (slat_bn_register(dom, err, n)) {
		ORTF(SLAT_ORT_ReleaseCustomOpDomain, void, SlatOrtCustomOpDomain *)(dom);
		free(op);
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
