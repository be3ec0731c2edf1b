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

#endif
