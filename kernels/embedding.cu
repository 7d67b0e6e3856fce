/* embedding.cu: gathering table rows by id.
 *
 * The ids come from user input, so the backend checks their range on the host
 * before this runs (and reports DS_ERR_INVALID as the CPU backend does); the
 * kernel still refuses to read outside the table, writing 0 instead, so a
 * missed check can never turn into an illegal address.
 */
#include "ds-cuda-util.cuh"

template <typename T>
static __global__ void
embedding_kernel (const int32_t *__restrict__ ids, const T *__restrict__ table,
                  T *__restrict__ y, int64_t n, int64_t ch, int64_t v)
{
  const int64_t total = n * ch;
  for (int64_t i = ds_cuda_tid (); i < total; i += ds_cuda_nthreads ())
    {
      const int64_t r = i / ch, c = i % ch;
      const int64_t id = ids[r];
      y[i] = id >= 0 && id < v ? table[id * ch + c] : T (0);
    }
}

extern "C" cudaError_t
ds_cuda_embedding (DsDType dt, const int32_t *ids, const void *table, void *y, int64_t n,
                   int64_t ch, int64_t v, cudaStream_t stream)
{
  if (n <= 0 || ch <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH_BITS (dt, T,
    embedding_kernel<T><<<ds_cuda_blocks (n * ch), DS_CUDA_THREADS, 0, stream>>> (
      ids, (const T *) table, (T *) y, n, ch, v));
  return ds_cuda_launched ();
}
