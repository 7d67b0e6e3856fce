/* embedding.cu: gathering table rows by id (DS_OP_EMBEDDING), and its
 * mirror, scattering rows to positions (DS_OP_SET_ROWS: a decode step's keys
 * and values into the cache at the position the device holds).
 *
 * The ids come from user input, so the backend checks their range on the host
 * before this runs (and reports DS_ERR_INVALID as the CPU backend does); the
 * kernel still refuses to read outside the table, writing 0 instead, so a
 * missed check can never turn into an illegal address. set_rows' positions
 * are the engine's own and not checked on the host (that would wait for the
 * device every step); a row outside the destination is skipped.
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

template <typename T>
static __global__ void
set_rows_kernel (const T *__restrict__ x, const int32_t *__restrict__ pos, T *__restrict__ y,
                 int64_t n, int64_t ch, int64_t rows)
{
  const int64_t total = n * ch;
  for (int64_t i = ds_cuda_tid (); i < total; i += ds_cuda_nthreads ())
    {
      const int64_t r = pos[i / ch];
      if (r >= 0 && r < rows)
        y[r * ch + i % ch] = x[i];
    }
}

extern "C" cudaError_t
ds_cuda_set_rows (DsDType dt, const void *x, const int32_t *pos, void *y, int64_t n, int64_t ch,
                  int64_t rows, cudaStream_t stream)
{
  if (n <= 0 || ch <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH_BITS (dt, T,
    set_rows_kernel<T><<<ds_cuda_blocks (n * ch), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, pos, (T *) y, n, ch, rows));
  return ds_cuda_launched ();
}
