// The C side of slatrun's custom-op layer (kernels.c), as called from Go.
#ifndef SLAT_KERNELS_H
#define SLAT_KERNELS_H
#include <stddef.h>

int slat_ort_bind(const char *ort_path, char *err, size_t n);
const char *slat_ort_version(void);
int slat_ort_selftest(char *err, size_t n);
int slat_dnnl_load(char *err, size_t n);
const char *slat_dnnl_describe(void);
int slat_domain_new(int threads, int winograd, void **out, char *err, size_t n);
int slat_domain_add(void *session_options, void *domain, char *err, size_t n);
int slat_impl_info(char *buf, size_t n);

#endif
