/* rope.cu: rotary position embedding as transformers' LLaMA applies it
 * (rotate_half, docs/models.md §7.4), in place or not.
 *
 * One thread per rotated pair (token, head, i < D/2): it reads x[i] and
 * x[i + D/2] of its head and writes both, so y may be x. The angles are the
 * CPU reference's, in f32: inv_freq_i = 1 / theta^(2i/D) is computed on the
 * host with the same float expression (the device's powf may differ in the
 * last ulp, and at positions in the thousands one ulp of a frequency moves
 * the angle by ~1e-4), handed to the kernel by value; angle = (float) pos *
 * inv_freq_i, then cosf and sinf on the device (full-range reduction: no fast
 * intrinsics). Positions are read from the device (pos [N] i32), so a
 * recorded decode step replays at whatever positions were uploaded.
 */
#include "ds-cuda-util.cuh"

/* inv_freq by value for head sizes up to 2 * ROPE_MAX_HALF (LLaMA's 128,
 * Gemma's 256); larger heads compute it on the device. */
#define ROPE_MAX_HALF 128

struct RopeFreqs
{
  float inv[ROPE_MAX_HALF];
};

template <typename T, typename I>
static __global__ void
rope_kernel (const T *x, const int32_t *__restrict__ pos, T *y, I n_pairs, I n, I heads, I half,
             float theta, RopeFreqs f)
{
  for (I p = (I) ds_cuda_tid (); p < n_pairs; p += (I) ds_cuda_nthreads ())
    {
      const I i = p % half, hd = p / half; /* hd: (row, head) */
      const I row = hd / heads;
      const float inv = half <= ROPE_MAX_HALF
                            ? f.inv[i]
                            : 1.0f / powf (theta, (float) (2 * i) / (float) (2 * half));
      const float angle = (float) pos[row % n] * inv, cs = cosf (angle), sn = sinf (angle);
      const I base = hd * 2 * half + i;
      const float a = ds_ld (x + base), b = ds_ld (x + base + half);
      const float ac = a * cs, bs = b * sn, bc = b * cs, as = a * sn;
      ds_st (y + base, ac - bs);
      ds_st (y + base + half, bc + as);
    }
}

extern "C" cudaError_t
ds_cuda_rope (DsDType dt, const void *x, const int32_t *pos, void *y, int64_t rows, int64_t n,
              int64_t heads, int64_t d, float theta, cudaStream_t stream)
{
  const int64_t half = d / 2, n_pairs = rows * heads * half;
  if (n_pairs <= 0)
    return cudaSuccess;
  if (d % 2 || n <= 0)
    return cudaErrorInvalidValue;
  RopeFreqs f = {};
  for (int64_t i = 0; i < half && i < ROPE_MAX_HALF; i++)
    f.inv[i] = 1.0f / powf (theta, (float) (2 * i) / (float) d);
  DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (rows * heads * d, I,
    rope_kernel<T, I><<<ds_cuda_blocks (n_pairs), DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, pos, (T *) y, (I) n_pairs, (I) n, (I) heads, (I) half, theta, f)));
  return ds_cuda_launched ();
}
