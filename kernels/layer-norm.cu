/* layer-norm.cu: LayerNorm over the last dimension.
 *
 * One block per row; mean and biased variance in double with two passes, as
 * the CPU reference does, then the affine map in float.
 */
#include "ds-cuda-util.cuh"

template <typename T>
static __global__ void
layer_norm_kernel (const T *__restrict__ x, const T *__restrict__ gamma,
                   const T *__restrict__ beta, T *__restrict__ y, int64_t ch, float eps)
{
  __shared__ double red[32];
  const T *xr = x + (int64_t) blockIdx.x * ch;
  T *yr = y + (int64_t) blockIdx.x * ch;

  double s = 0;
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    s += ds_ld (xr + i);
  const double mean = ds_block_sum (s, red) / (double) ch;
  double v = 0;
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    {
      double d = ds_ld (xr + i) - mean;
      v += d * d;
    }
  const double var = ds_block_sum (v, red) / (double) ch;
  const float meanf = (float) mean, rstd = (float) (1.0 / sqrt (var + eps));

  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    ds_st (yr + i, (ds_ld (xr + i) - meanf) * rstd * ds_ld (gamma + i) + ds_ld (beta + i));
}

extern "C" cudaError_t
ds_cuda_layer_norm (DsDType dt, const void *x, const void *gamma, const void *beta, void *y,
                    int64_t rows, int64_t ch, float eps, cudaStream_t stream)
{
  if (rows <= 0 || ch <= 0)
    return cudaSuccess;
  if (rows > INT32_MAX)
    return cudaErrorInvalidValue;
  DS_CUDA_DISPATCH (dt, T,
    layer_norm_kernel<T><<<(unsigned) rows, DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (const T *) gamma, (const T *) beta, (T *) y, ch, eps));
  return ds_cuda_launched ();
}
