/* ds-cuda-util.cuh: small device helpers shared by the kernel files (C++ only).
 *
 * Launch geometry for grid-stride loops, block-wide reductions, loads and
 * stores that widen f16/bf16 to f32 and round back, the dtype switch that
 * instantiates a kernel template per storage type, and the scalar activations
 * written exactly as engine/ds-backend-cpu.c writes them (same float
 * expressions, so the only differences are the math library's last ulp).
 * Nothing here allocates or launches.
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "ds-cuda-kernels.h"

/* Storage <-> f32. Every kernel computes in f32 and rounds once on store. */
static __device__ __forceinline__ float ds_ld (const float *p) { return *p; }
static __device__ __forceinline__ float ds_ld (const __half *p) { return __half2float (*p); }
static __device__ __forceinline__ float
ds_ld (const __nv_bfloat16 *p)
{
  return __bfloat162float (*p);
}
static __device__ __forceinline__ void ds_st (float *p, float v) { *p = v; }
static __device__ __forceinline__ void ds_st (__half *p, float v) { *p = __float2half_rn (v); }
static __device__ __forceinline__ void
ds_st (__nv_bfloat16 *p, float v)
{
  *p = __float2bfloat16_rn (v);
}

/* Runs `body` with T bound to the storage type of `dt` (float, __half or
 * __nv_bfloat16); other dtypes return cudaErrorInvalidValue from the caller. */
#define DS_CUDA_DISPATCH(dt, T, ...)                                                           \
  do {                                                                                         \
    switch (dt)                                                                                \
      {                                                                                        \
      case DS_DTYPE_F32: { typedef float T; __VA_ARGS__; } break;                                     \
      case DS_DTYPE_F16: { typedef __half T; __VA_ARGS__; } break;                                    \
      case DS_DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                            \
      default: return cudaErrorInvalidValue;                                                   \
      }                                                                                        \
  } while (0)

/* Runs `body` with I bound to the index type for n elements: int32_t where
 * every index, and a grid-stride step past the last, fits; int64_t beyond.
 * 64-bit division and remainder are emulated in dozens of instructions, and
 * the index arithmetic of these kernels is full of them. */
#define DS_CUDA_INDEX(n, I, ...)                                                               \
  do {                                                                                         \
    if ((int64_t) (n) < ((int64_t) 1 << 30))                                                   \
      {                                                                                        \
        typedef int32_t I;                                                                     \
        __VA_ARGS__;                                                                           \
      }                                                                                        \
    else                                                                                       \
      {                                                                                        \
        typedef int64_t I;                                                                     \
        __VA_ARGS__;                                                                           \
      }                                                                                        \
  } while (0)

/* The same for pure data movement, by element size: u32 words for f32,
 * u16 halves for f16/bf16 (moved bit for bit). */
#define DS_CUDA_DISPATCH_BITS(dt, T, ...)                                                      \
  do {                                                                                         \
    switch (dt)                                                                                \
      {                                                                                        \
      case DS_DTYPE_F32: { typedef uint32_t T; __VA_ARGS__; } break;                                  \
      case DS_DTYPE_F16:                                                                       \
      case DS_DTYPE_BF16: { typedef uint16_t T; __VA_ARGS__; } break;                                 \
      default: return cudaErrorInvalidValue;                                                   \
      }                                                                                        \
  } while (0)

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

/* The sum and the max over the warp, in every lane (butterflies: each lane
 * adds in the same order, so all get the same bits). */
template <typename T>
static __device__ __forceinline__ T
ds_warp_sum (T v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

static __device__ __forceinline__ float
ds_warp_max (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
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
