/* rms-norm.cu: LLaMA's RMSNorm over the last dimension (docs/models.md §7.4).
 *
 * y = g * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps), the CPU reference's
 * recipe: the sum of squares in double, rstd rounded to float, then the two
 * float products in transformers' order. LLaMA's rows are long (4096 values)
 * and a decode step has one of them, so a whole block takes a row (a warp
 * per row would leave the GPU idle); every thread reads and writes the same
 * indices in both passes, so y may be x.
 */
#include "ds-cuda-util.cuh"

#define RMS_THREADS 256

template <typename T>
static __global__ void
rms_norm_kernel (const T *x, const T *__restrict__ g, T *y, int64_t ch, float eps)
{
  __shared__ double red[32];
  const T *xr = x + (int64_t) blockIdx.x * ch;
  T *yr = y + (int64_t) blockIdx.x * ch;
  double s = 0;
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    {
      const double v = ds_ld (xr + i);
      s += v * v;
    }
  s = ds_block_sum (s, red);
  const float rstd = (float) (1.0 / sqrt (s / (double) ch + eps));
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    ds_st (yr + i, ds_ld (g + i) * (ds_ld (xr + i) * rstd));
}

extern "C" cudaError_t
ds_cuda_rms_norm (DsDType dt, const void *x, const void *g, void *y, int64_t rows, int64_t ch,
                  float eps, cudaStream_t stream)
{
  if (rows <= 0 || ch <= 0)
    return cudaSuccess;
  if (rows > INT32_MAX)
    return cudaErrorInvalidValue;
  /* short rows: fewer threads, none idle for the whole row */
  int threads = RMS_THREADS;
  while (threads > 32 && threads / 2 >= ch)
    threads /= 2;
  DS_CUDA_DISPATCH (dt, T,
    rms_norm_kernel<T><<<(unsigned) rows, threads, 0, stream>>> ((const T *) x, (const T *) g,
                                                                 (T *) y, ch, eps));
  return ds_cuda_launched ();
}
