/* permute.cu: a generic permutation of up to four dimensions.
 *
 * The backend pads the call to four dims and hands over the output shape and,
 * per output dim, the source stride it reads; one thread per output element
 * (writes coalesced, reads strided).
 */
#include "ds-cuda-util.cuh"

template <typename T>
static __global__ void
permute_kernel (const T *__restrict__ x, T *__restrict__ y, DsCudaPermute p, int64_t n)
{
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      int64_t rest = i, src = 0;
      for (int d = 3; d >= 0; d--)
        {
          src += (rest % p.shape[d]) * p.stride[d];
          rest /= p.shape[d];
        }
      y[i] = x[src];
    }
}

extern "C" cudaError_t
ds_cuda_permute (DsDType dt, const void *x, void *y, const DsCudaPermute *p, cudaStream_t stream)
{
  int64_t n = 1;
  for (int d = 0; d < 4; d++)
    n *= p->shape[d];
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH_BITS (dt, T,
    permute_kernel<T><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (T *) y, *p, n));
  return ds_cuda_launched ();
}
