/* elementwise.cu: gelu, quick_gelu, silu, scale, mul, the broadcast add, geglu.
 *
 * Grid-stride loops, one element per iteration; every expression is the CPU
 * reference's, so results differ from it only by the device math library's
 * last-ulp rounding of expf/erff (and not at all for add, mul and scale).
 * Each thread reads an element before writing the same element, so y may be
 * a source wherever ds-ops.h allows it.
 */
#include "ds-cuda-util.cuh"

enum { UNARY_GELU, UNARY_QUICK_GELU, UNARY_SILU, UNARY_SCALE };

static __global__ void
unary_kernel (const float *x, float *y, int64_t n, int kind, float s)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      const float v = x[i];
      float r;
      switch (kind)
        {
        case UNARY_GELU: r = ds_gelu_f (v); break;
        case UNARY_QUICK_GELU: r = v / (1.0f + expf (-1.702f * v)); break;
        case UNARY_SILU: r = ds_silu_f (v); break;
        default: r = v * s; break;
        }
      y[i] = r;
    }
}

static cudaError_t
launch_unary (const float *x, float *y, int64_t n, int kind, float s, cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  unary_kernel<<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (x, y, n, kind, s);
  return ds_cuda_launched ();
}

extern "C" cudaError_t
ds_cuda_gelu (const float *x, float *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (x, y, n, UNARY_GELU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_quick_gelu (const float *x, float *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (x, y, n, UNARY_QUICK_GELU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_silu (const float *x, float *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (x, y, n, UNARY_SILU, 0.0f, stream);
}

extern "C" cudaError_t
ds_cuda_scale (const float *x, float s, float *y, int64_t n, cudaStream_t stream)
{
  return launch_unary (x, y, n, UNARY_SCALE, s, stream);
}

static __global__ void
mul_kernel (const float *a, const float *b, float *y, int64_t n)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    y[i] = a[i] * b[i];
}

extern "C" cudaError_t
ds_cuda_mul (const float *a, const float *b, float *y, int64_t n, cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  mul_kernel<<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (a, b, y, n);
  return ds_cuda_launched ();
}

static __global__ void
add_kernel (const float *a, const float *b, float *y, int64_t n, int64_t run, int64_t nb)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    y[i] = a[i] + b[(i / run) % nb];
}

extern "C" cudaError_t
ds_cuda_add (const float *a, const float *b, float *y, int64_t n, int64_t run, int64_t nb,
             cudaStream_t stream)
{
  if (n <= 0)
    return cudaSuccess;
  if (run <= 0 || nb <= 0)
    return cudaErrorInvalidValue;
  add_kernel<<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (a, b, y, n, run, nb);
  return ds_cuda_launched ();
}

static __global__ void
geglu_kernel (const float *__restrict__ x, float *__restrict__ y, int64_t rows, int64_t f)
{
  const int64_t n = rows * f;
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      const int64_t r = i / f, c = i % f;
      const float *xr = x + r * 2 * f; /* [value | gate] */
      y[i] = xr[c] * ds_gelu_f (xr[f + c]);
    }
}

extern "C" cudaError_t
ds_cuda_geglu (const float *x, float *y, int64_t rows, int64_t f, cudaStream_t stream)
{
  if (rows <= 0 || f <= 0)
    return cudaSuccess;
  geglu_kernel<<<ds_cuda_blocks (rows * f), DS_CUDA_THREADS, 0, stream>>> (x, y, rows, f);
  return ds_cuda_launched ();
}
