/* concat.cu: two tensors joined along one dimension.
 *
 * Seen as `outer` slabs, the output's slab o is a's slab o (na values) then
 * b's slab o (nb values); one thread per output element.
 */
#include "ds-cuda-util.cuh"

template <typename T, typename I>
static __global__ void
concat_kernel (const T *__restrict__ a, const T *__restrict__ b, T *__restrict__ y, I outer, I na,
               I nb)
{
  const I slab = na + nb, n = outer * slab;
  for (I i = (I) ds_cuda_tid (); i < n; i += (I) ds_cuda_nthreads ())
    {
      const I o = i / slab, j = i % slab;
      y[i] = j < na ? a[o * na + j] : b[o * nb + (j - na)];
    }
}

extern "C" cudaError_t
ds_cuda_concat (DsDType dt, const void *a, const void *b, void *y, int64_t outer, int64_t na,
                int64_t nb, cudaStream_t stream)
{
  const int64_t n = outer * (na + nb);
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH_BITS (dt, T, DS_CUDA_INDEX (n, I,
    concat_kernel<T, I><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) a, (const T *) b, (T *) y, (I) outer, (I) na, (I) nb)));
  return ds_cuda_launched ();
}
