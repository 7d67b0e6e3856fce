/* ds-cuda.h: what the engine needs to know about the CUDA runtime.
 *
 * Device discovery for now; the CUDA backend (one op per .cu file, cuBLAS
 * GEMMs) grows here. Any CUDA error during discovery — including "insufficient
 * driver" on a machine with the toolkit but no GPU — counts as "no GPU".
 */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int index;
  char name[256];
  int cc_major, cc_minor;
  size_t total_memory;
} DsCudaDevice;

/* Number of usable CUDA devices; 0 when none answers (any error). */
int ds_cuda_device_count (void);
/* Fills *out for device `index`; returns 0 on success, -1 on any error. */
int ds_cuda_device_info (int index, DsCudaDevice *out);

#ifdef __cplusplus
}
#endif
