/* concat.cu: two tensors joined along one dimension.
 *
 * Seen as `outer` slabs, the output's slab o is a's slab o (na values) then
 * b's slab o (nb values); one thread per output element.
 */
#include "ds-cuda-util.cuh"

static __global__ void
concat_kernel (const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ y,
               int64_t outer, int64_t na, int64_t nb)
{
  const int64_t slab = na + nb, n = outer * slab;
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      const int64_t o = i / slab, j = i % slab;
      y[i] = j < na ? a[o * na + j] : b[o * nb + (j - na)];
    }
}

extern "C" cudaError_t
ds_cuda_concat (const float *a, const float *b, float *y, int64_t outer, int64_t na, int64_t nb,
                cudaStream_t stream)
{
  const int64_t n = outer * (na + nb);
  if (n <= 0)
    return cudaSuccess;
  concat_kernel<<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (a, b, y, outer, na, nb);
  return ds_cuda_launched ();
}
