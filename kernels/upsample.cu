/* upsample.cu: nearest-neighbour 2x upsampling of [planes, H, W] images. */
#include "ds-cuda-util.cuh"

template <typename T, typename I>
static __global__ void
upsample_kernel (const T *__restrict__ x, T *__restrict__ y, I planes, I h, I w)
{
  const I w2 = 2 * w, h2 = 2 * h, n = planes * h2 * w2;
  for (I i = (I) ds_cuda_tid (); i < n; i += (I) ds_cuda_nthreads ())
    {
      const I ox = i % w2, t = i / w2, oy = t % h2, p = t / h2;
      y[i] = x[(p * h + oy / 2) * w + ox / 2];
    }
}

extern "C" cudaError_t
ds_cuda_upsample_nearest2x (DsDType dt, const void *x, void *y, int64_t planes, int64_t h,
                            int64_t w, cudaStream_t stream)
{
  const int64_t n = planes * 4 * h * w;
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH_BITS (dt, T, DS_CUDA_INDEX (n, I,
    upsample_kernel<T, I><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (T *) y, (I) planes, (I) h, (I) w)));
  return ds_cuda_launched ();
}
