/* ds-cuda-util.cuh: small device helpers shared by the kernel files (C++ only).
 *
 * Launch geometry for grid-stride loops, block-wide reductions, and the scalar
 * activations written exactly as engine/ds-backend-cpu.c writes them (same
 * float expressions, so the only differences are the math library's last ulp).
 * Nothing here allocates or launches.
 */
#pragma once

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "ds-cuda-kernels.h"

#define DS_CUDA_THREADS 256
/* Grid-stride loops cover any n; more blocks than this buy nothing. */
#define DS_CUDA_MAX_BLOCKS ((int64_t) 1 << 20)

static inline unsigned
ds_cuda_blocks (int64_t n)
{
  int64_t b = (n + DS_CUDA_THREADS - 1) / DS_CUDA_THREADS;
  return (unsigned) (b < DS_CUDA_MAX_BLOCKS ? b : DS_CUDA_MAX_BLOCKS);
}

/* Index of this thread and the stride of a 1-D grid-stride loop. */
static __device__ __forceinline__ int64_t
ds_cuda_tid (void)
{
  return (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
}

static __device__ __forceinline__ int64_t
ds_cuda_nthreads (void)
{
  return (int64_t) gridDim.x * blockDim.x;
}

template <typename T>
static __device__ __forceinline__ T
ds_warp_sum (T v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_down_sync (0xffffffffu, v, o);
  return v;
}

static __device__ __forceinline__ float
ds_warp_max (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_down_sync (0xffffffffu, v, o));
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
 * gets the result. `shared` holds 32 values; it may be reused after return. */
template <typename T>
static __device__ __forceinline__ T
ds_block_sum (T v, T *shared)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = ds_warp_sum (v);
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  if (warp == 0)
    {
      v = lane < nwarps ? shared[lane] : T (0);
      v = ds_warp_sum (v);
      if (lane == 0)
        shared[0] = v;
    }
  __syncthreads ();
  T r = shared[0];
  __syncthreads ();
  return r;
}

/* Max over the block, as ds_block_sum. */
static __device__ __forceinline__ float
ds_block_max (float v, float *shared)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = ds_warp_max (v);
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  if (warp == 0)
    {
      v = lane < nwarps ? shared[lane] : -INFINITY;
      v = ds_warp_max (v);
      if (lane == 0)
        shared[0] = v;
    }
  __syncthreads ();
  float r = shared[0];
  __syncthreads ();
  return r;
}

static __device__ __forceinline__ float
ds_silu_f (float x)
{
  return x / (1.0f + expf (-x));
}

/* Exact (erf) GELU; the constant is (float) M_SQRT1_2 as the CPU backend has it. */
static __device__ __forceinline__ float
ds_gelu_f (float x)
{
  return 0.5f * x * (1.0f + erff (x * 0.70710678118654752440f));
}

/* The launch status of the kernel just enqueued. */
static inline cudaError_t
ds_cuda_launched (void)
{
  return cudaGetLastError ();
}
