/* layer-norm.cu: LayerNorm over the last dimension.
 *
 * One block per row; mean and biased variance in double with two passes, as
 * the CPU reference does, then the affine map in float.
 */
#include "ds-cuda-util.cuh"

static __global__ void
layer_norm_kernel (const float *__restrict__ x, const float *__restrict__ gamma,
                   const float *__restrict__ beta, float *__restrict__ y, int64_t ch, float eps)
{
  __shared__ double red[32];
  const float *xr = x + (int64_t) blockIdx.x * ch;
  float *yr = y + (int64_t) blockIdx.x * ch;

  double s = 0;
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    s += xr[i];
  const double mean = ds_block_sum (s, red) / (double) ch;
  double v = 0;
  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    {
      double d = xr[i] - mean;
      v += d * d;
    }
  const double var = ds_block_sum (v, red) / (double) ch;
  const float meanf = (float) mean, rstd = (float) (1.0 / sqrt (var + eps));

  for (int64_t i = threadIdx.x; i < ch; i += blockDim.x)
    yr[i] = (xr[i] - meanf) * rstd * gamma[i] + beta[i];
}

extern "C" cudaError_t
ds_cuda_layer_norm (const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
                    int64_t ch, float eps, cudaStream_t stream)
{
  if (rows <= 0 || ch <= 0)
    return cudaSuccess;
  if (rows > INT32_MAX)
    return cudaErrorInvalidValue;
  layer_norm_kernel<<<(unsigned) rows, DS_CUDA_THREADS, 0, stream>>> (x, gamma, beta, y, ch, eps);
  return ds_cuda_launched ();
}
