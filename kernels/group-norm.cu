/* group-norm.cu: GroupNorm over [B, C, spatial...] with optional fused SiLU.
 *
 * One block per (group, batch item); the group's channels are contiguous, so it
 * reads cg * spatial consecutive values three times: sum, sum of squared
 * deviations (both in double, as the CPU reference does), then the affine map.
 * SD has only B * 32 groups, so this leaves most of a big GPU idle: fine for
 * a first, exact version.
 */
#include "ds-cuda-util.cuh"

template <typename T>
static __global__ void
group_norm_kernel (const T *__restrict__ x, const T *__restrict__ gamma,
                   const T *__restrict__ beta, T *__restrict__ y, int64_t ch,
                   int64_t spatial, int64_t cg, float eps, bool silu)
{
  __shared__ double red[32];
  const int64_t g = blockIdx.x, n = blockIdx.y, count = cg * spatial;
  const int64_t base = (n * ch + g * cg) * spatial;
  const T *xg = x + base;
  T *yg = y + base;

  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
    s += ds_ld (xg + i);
  const double mean = ds_block_sum (s, red) / (double) count;
  double v = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
    {
      double d = ds_ld (xg + i) - mean;
      v += d * d;
    }
  const double var = ds_block_sum (v, red) / (double) count;
  const float meanf = (float) mean, rstd = (float) (1.0 / sqrt (var + eps));

  for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
    {
      const int64_t c = g * cg + i / spatial;
      float r = (ds_ld (xg + i) - meanf) * rstd * ds_ld (gamma + c) + ds_ld (beta + c);
      ds_st (yg + i, silu ? ds_silu_f (r) : r);
    }
}

extern "C" cudaError_t
ds_cuda_group_norm (DsDType dt, const void *x, const void *gamma, const void *beta, void *y,
                    int64_t nb, int64_t ch, int64_t spatial, int groups, float eps, bool silu,
                    cudaStream_t stream)
{
  if (nb <= 0 || ch <= 0 || spatial <= 0)
    return cudaSuccess;
  if (groups < 1 || ch % groups || nb > 65535)
    return cudaErrorInvalidValue;
  dim3 grid ((unsigned) groups, (unsigned) nb);
  DS_CUDA_DISPATCH (dt, T,
    group_norm_kernel<T><<<grid, 512, 0, stream>>> ((const T *) x, (const T *) gamma,
                                                    (const T *) beta, (T *) y, ch, spatial,
                                                    ch / groups, eps, silu));
  return ds_cuda_launched ();
}
