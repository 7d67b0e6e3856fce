/* ds-cuda.h: what the engine needs to know about CUDA: devices, the CUDA
 * backend, device arenas.
 *
 * Device discovery: any CUDA error during discovery — including "insufficient
 * driver" on a machine with the toolkit but no GPU — counts as "no GPU".
 *
 * The CUDA backend implements every DsOp in fp32 on one device: tensors in
 * device memory, one stream (every op, upload and download is queued on it in
 * order), one cuBLAS handle for the GEMMs (conv2d via im2col, linear, matmul,
 * attention) in strict fp32 (no TF32), simple kernels for the rest
 * (kernels/<op>.cu). upload and download return once the copy is complete;
 * ops return once queued, so a kernel's own failure surfaces at the next
 * download or synchronize (set DS_CUDA_SYNC=1 in the environment to
 * synchronize after every op and name the failing op instead).
 *
 * Usage:
 *   DsBackend *be = ds_backend_cuda_new (0, err);   // NULL + DS_ERR_DEVICE if no GPU
 *   DsArena arena;
 *   ds_cuda_arena_init (&arena, bytes, err);         // activations in device memory
 *   ... weights via be->tensor_alloc + be->upload, forward, be->download ...
 *   ds_cuda_arena_free (&arena);
 *   ds_backend_free (be);
 */
#pragma once

#include <stddef.h>

#include "ds-ops.h"

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

/* The CUDA backend on device `device` (0 is the first GPU), named
 * "CUDA · <device name>". Selects that device for the calling thread.
 * transfer full (ds_backend_free); NULL with err set to DS_ERR_DEVICE
 * ("no CUDA device: ...") when no device answers at that index. */
DsBackend *ds_backend_cuda_new (int device, DsError *err);

/* An activation arena whose block is `size` bytes of device memory (a->device
 * = DS_DEVICE_CUDA, so its tensors are the CUDA backend's), on the device the
 * calling thread has selected — the backend's, once ds_backend_cuda_new has
 * run on this thread. Out of memory is DS_ERR_DEVICE with the sizes. */
DsStatus ds_cuda_arena_init (DsArena *a, size_t size, DsError *err);
/* Frees the block (after the device is done with it); harmless on a zeroed arena. */
void ds_cuda_arena_free (DsArena *a);

#ifdef __cplusplus
}
#endif
