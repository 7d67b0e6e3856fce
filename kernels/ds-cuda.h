/* ds-cuda.h: what the engine needs to know about CUDA: devices, the CUDA
 * backend, device arenas.
 *
 * Device discovery: any CUDA error during discovery — including "insufficient
 * driver" on a machine with the toolkit but no GPU — counts as "no GPU".
 *
 * The CUDA backend implements every DsOp on one device, in f32 (strict: GEMMs
 * without TF32, results equal to the CPU reference up to rounding) and in
 * f16/bf16 storage with f32 accumulation (tensor-core GEMMs, a fused
 * attention): tensors in device memory, one stream (every op, upload and
 * download is queued on it in order), one cuBLAS handle for the GEMMs (conv2d
 * via im2col, linear, matmul, attention), kernels for the rest
 * (kernels/<op>.cu). upload and download return once the copy is complete;
 * ops return once queued, so a kernel's own failure surfaces at the next
 * download or synchronize (set DS_CUDA_SYNC=1 in the environment to
 * synchronize after every op and name the failing op instead).
 *
 * Usage:
 *   DsBackend *be = ds_backend_cuda_new (0, DS_DTYPE_F16, err); // NULL + DS_ERR_DEVICE if no GPU
 *   DsArena arena;
 *   ds_backend_arena_init (be, &arena, bytes, err);  // f16 activations in device memory
 *   ... models load onto be, forward, ds_backend_download_f32 ...
 *   ds_backend_arena_free (be, &arena);
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
/* Device memory in use on the current device (all processes, the context
 * included) and its total, from cudaMemGetInfo; 0 on success, -1 on error. */
int ds_cuda_memory_in_use (size_t *used, size_t *total);

/* The CUDA backend on device `device` (0 is the first GPU), named
 * "CUDA · <device name>", whose models compute in `act_dtype` (DS_DTYPE_F16
 * for speed, DS_DTYPE_F32 for strict reference checks, DS_DTYPE_BF16). Selects
 * that device for the calling thread. transfer full (ds_backend_free); NULL
 * with err set to DS_ERR_DEVICE ("no CUDA device: ...") when no device
 * answers at that index. Arenas: ds_backend_arena_init (ds-ops.h). */
DsBackend *ds_backend_cuda_new (int device, DsDType act_dtype, DsError *err);

/* How a CUDA backend runs convolutions: "cuDNN <version> (...)" or
 * "im2col + cuBLAS (<why not cuDNN>)". DS_CUDA_CONV=im2col at creation picks
 * im2col + cuBLAS even where cuDNN is there (for comparisons). */
const char *ds_cuda_backend_conv_path (DsBackend *be);

/* How the convolutions a CUDA backend was asked for ran, counted when called
 * on the host (a replayed graph adds nothing): by cuDNN, by GEMMs (im2col, or
 * the image itself for a 1x1 stride-1 unpadded one), and the last reason
 * cuDNN was passed over for a shape it could have taken ("" if never). */
typedef struct {
  int64_t cudnn, gemm;
  char last_refusal[256];
} DsCudaConvStats;
void ds_cuda_backend_conv_stats (DsBackend *be, DsCudaConvStats *out);

/* A cap on the device memory this backend allocates (its tensors, arenas,
 * scratch and the GEMM workspace): past it an allocation fails with "out of
 * device memory", as on a full device, and the backend goes on. 0: none. The
 * cap at creation comes from DIFFSCOPE_GPU_MEMORY (bytes, or with K, M, G:
 * "6G"); a bad value fails the creation naming it. Lowering the cap frees
 * nothing. */
void ds_cuda_backend_set_memory_cap (DsBackend *be, size_t bytes);
/* Device bytes the backend holds now. */
size_t ds_cuda_backend_memory_used (DsBackend *be);

#ifdef __cplusplus
}
#endif
