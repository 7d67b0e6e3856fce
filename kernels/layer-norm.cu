/* layer-norm.cu: LayerNorm over the last dimension.
 *
 * One warp per row (8 rows per block): SD's rows are short (320 to 1280
 * values), so a whole block per row would spend its time in barriers. Each
 * lane sums its strided share, the warp adds with shuffles; mean and biased
 * variance in double with two passes, as the CPU reference does (the second
 * pass rereads the row from cache), then the affine map in float.
 */
#include "ds-cuda-util.cuh"

#define LN_ROWS_PER_BLOCK 8

template <typename T>
static __global__ void
layer_norm_kernel (const T *__restrict__ x, const T *__restrict__ gamma,
                   const T *__restrict__ beta, T *__restrict__ y, int64_t rows, int64_t ch,
                   float eps)
{
  const int lane = threadIdx.x % 32;
  const int64_t row = (int64_t) blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
  if (row >= rows)
    return; /* the whole warp leaves together: no shuffle is left waiting */
  const T *xr = x + row * ch;
  T *yr = y + row * ch;

  double s = 0;
  for (int64_t i = lane; i < ch; i += 32)
    s += ds_ld (xr + i);
  const double mean = ds_warp_sum (s) / (double) ch;
  double v = 0;
  for (int64_t i = lane; i < ch; i += 32)
    {
      double d = ds_ld (xr + i) - mean;
      v += d * d;
    }
  const double var = ds_warp_sum (v) / (double) ch;
  const float meanf = (float) mean, rstd = (float) (1.0 / sqrt (var + eps));

  for (int64_t i = lane; i < ch; i += 32)
    ds_st (yr + i, (ds_ld (xr + i) - meanf) * rstd * ds_ld (gamma + i) + ds_ld (beta + i));
}

extern "C" cudaError_t
ds_cuda_layer_norm (DsDType dt, const void *x, const void *gamma, const void *beta, void *y,
                    int64_t rows, int64_t ch, float eps, cudaStream_t stream)
{
  if (rows <= 0 || ch <= 0)
    return cudaSuccess;
  const int64_t blocks = (rows + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK;
  if (blocks > INT32_MAX)
    return cudaErrorInvalidValue;
  DS_CUDA_DISPATCH (dt, T,
    layer_norm_kernel<T><<<(unsigned) blocks, 32 * LN_ROWS_PER_BLOCK, 0, stream>>> (
      (const T *) x, (const T *) gamma, (const T *) beta, (T *) y, rows, ch, eps));
  return ds_cuda_launched ();
}
