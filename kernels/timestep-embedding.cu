/* timestep-embedding.cu: diffusers' sinusoidal timestep embedding.
 *
 * The same float steps as the CPU reference (cpu_timestep): the host rounds
 * -ln(max_period) and (half - freq_shift) to float, the kernel forms
 * freq_k = expf((neg_log_period * k) / denom) and arg = t * freq_k in float.
 * One thread per output value.
 */
#include "ds-cuda-util.cuh"

template <typename T>
static __global__ void
timestep_kernel (const T *__restrict__ t, T *__restrict__ y, int64_t nb, int64_t dim,
                 float neg_log_period, float denom, bool flip)
{
  const int64_t half = dim / 2, n = nb * dim;
  for (int64_t i = ds_cuda_tid (); i < n; i += ds_cuda_nthreads ())
    {
      const int64_t b = i / dim, j = i % dim;
      if (j >= 2 * half)
        {
          ds_st (y + i, 0.0f); /* odd dim: zero last column */
          continue;
        }
      /* Column j holds sin or cos of frequency k; flip puts cos first. */
      const bool first = j < half;
      const int64_t k = first ? j : j - half;
      const bool is_sin = first != flip;
      const float e = neg_log_period * (float) k;
      const float freq = expf (e / denom);
      const float arg = ds_ld (t + b) * freq;
      ds_st (y + i, is_sin ? sinf (arg) : cosf (arg));
    }
}

extern "C" cudaError_t
ds_cuda_timestep_embedding (DsDType dt, const void *t, void *y, int64_t nb, int64_t dim,
                            float neg_log_period, float denom, bool flip, cudaStream_t stream)
{
  const int64_t n = nb * dim;
  if (n <= 0)
    return cudaSuccess;
  DS_CUDA_DISPATCH (dt, T,
    timestep_kernel<T><<<ds_cuda_blocks (n), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) t, (T *) y, nb, dim, neg_log_period, denom, flip));
  return ds_cuda_launched ();
}
