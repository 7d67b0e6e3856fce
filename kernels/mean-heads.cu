/* mean-heads.cu: the mean over dim 1 of [B, H, R] — attention maps averaged
 * over heads on the device, so a heatmap needs 1/H of the maps downloaded.
 *
 * One thread per output element, summing its H inputs (stride R, so reads
 * are coalesced across threads) in f32 in order of h, then dividing by H:
 * the CPU reference's exact order.
 */
#include "ds-cuda-util.cuh"

template <typename T, typename I>
static __global__ void
mean_heads_kernel (const T *__restrict__ x, T *__restrict__ y, I nb, I h, I r)
{
  const I n = nb * r;
  for (I i = (I) ds_cuda_tid (); i < n; i += (I) ds_cuda_nthreads ())
    {
      const I b = i / r, j = i % r;
      const T *xb = x + b * h * r + j;
      float s = 0.0f;
      for (I k = 0; k < h; k++)
        s += ds_ld (xb + k * r);
      ds_st (y + i, s / (float) h);
    }
}

extern "C" cudaError_t
ds_cuda_mean_heads (DsDType dt, const void *x, void *y, int64_t nb, int64_t h, int64_t r,
                    cudaStream_t stream)
{
  if (nb <= 0 || r <= 0)
    return cudaSuccess;
  if (h <= 0)
    return cudaErrorInvalidValue;
  DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (nb * h * r, I,
    mean_heads_kernel<T, I><<<ds_cuda_blocks (nb * r), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (T *) y, (I) nb, (I) h, (I) r)));
  return ds_cuda_launched ();
}
