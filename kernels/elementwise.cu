/* elementwise.cu: gelu, quick_gelu, silu, scale, mul, the broadcast add, geglu.
 *
 * Grid-stride loops, one element per iteration, computed in f32 whatever the
 * storage; every expression is the CPU reference's, so in f32 results differ
 * from it only by the device math library's last-ulp rounding of expf/erff
 * (and not at all for add, mul and scale). Each thread reads an element
 * before writing the same element, so y may be a source wherever ds-ops.h
 * allows it.
 */
#include "ds-cuda-util.cuh"

enum { UNARY_GELU, UNARY_QUICK_GELU, UNARY_SILU, UNARY_SCALE };

template <typename T>
static __global__ void
unary_kernel (const T *x, T *y, int64_t n, int kind, float s)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      const float v = ds_ld (x + i);
      float r;
      switch (kind)
        {
        case UNARY_GELU: r = ds_gelu_f (v); break;
        case UNARY_QUICK_GELU: r = v / (1.0f + expf (-1.702f * v)); break;
        case UNARY_SILU: r = ds_silu_f (v); break;
        default: r = v * s; break;
        }
      ds_st (y + i, r);
    }
}

static cudaError_t
launch_unary (DsDType dt, const void *x, void *y, int64_t n, int kind, float s,
              cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH (dt, T,
    unary_kernel<T><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (T *) y, n, kind, s));
  return ds_cuda_launched ();
}

extern "C" cudaError_t
ds_cuda_gelu (DsDType dt, const void *x, void *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (dt, x, y, n, UNARY_GELU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_quick_gelu (DsDType dt, const void *x, void *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (dt, x, y, n, UNARY_QUICK_GELU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_silu (DsDType dt, const void *x, void *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (dt, x, y, n, UNARY_SILU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_scale (DsDType dt, const void *x, float s, void *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (dt, x, y, n, UNARY_SCALE, s, stream);
}

template <typename T>
static __global__ void
mul_kernel (const T *a, const T *b, T *y, int64_t n)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    ds_st (y + i, ds_ld (a + i) * ds_ld (b + i));
}

extern "C" cudaError_t
ds_cuda_mul (DsDType dt, const void *a, const void *b, void *y, int64_t n, cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH (dt, T,
    mul_kernel<T><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) a, (const T *) b, (T *) y, n));
  return ds_cuda_launched ();
}

template <typename T, typename I>
static __global__ void
add_kernel (const T *a, const T *b, T *y, I n, I run, I nb)
{
  for (I i = (I) ds_cuda_tid (); i < n; i += (I) ds_cuda_nthreads ())
    ds_st (y + i, ds_ld (a + i) + ds_ld (b + (i / run) % nb));
}

extern "C" cudaError_t
ds_cuda_add (DsDType dt, const void *a, const void *b, void *y, int64_t n, int64_t run,
             int64_t nb, cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  if (run <= 0 || nb <= 0)
    return cudaErrorInvalidValue;
  DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (n, I,
    add_kernel<T, I><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) a, (const T *) b, (T *) y, (I) n, (I) run, (I) nb)));
  return ds_cuda_launched ();
}

template <typename T, typename I>
static __global__ void
geglu_kernel (const T *__restrict__ x, const T *__restrict__ b, T *__restrict__ y, I rows, I f)
{
  const I n = rows * f;
  for (I i = (I) ds_cuda_tid (); i < n; i += (I) ds_cuda_nthreads ())
    {
      const I r = i / f, c = i % f;
      const T *xr = x + r * 2 * f; /* [value | gate] */
      float v = ds_ld (xr + c), g = ds_ld (xr + f + c);
      if (b)
        v += ds_ld (b + c), g += ds_ld (b + f + c);
      ds_st (y + i, v * ds_gelu_f (g));
    }
}

extern "C" cudaError_t
ds_cuda_geglu (DsDType dt, const void *x, const void *b, void *y, int64_t rows, int64_t f,
               cudaStream_t stream)
{
  if (rows <= 0 || f <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (2 * rows * f, I,
    geglu_kernel<T, I><<<ds_cuda_blocks (rows * f), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (const T *) b, (T *) y, (I) rows, (I) f)));
  return ds_cuda_launched ();
}
