/* group-norm.cu: GroupNorm over [B, C, spatial...] with optional fused SiLU.
 *
 * A group's channels are contiguous: cg * spatial values (40960 for SD's
 * [2, 320, 64, 64] with 32 groups). SD has only B * 32 groups, so one block
 * per group would leave most of a big GPU idle and each block latency-bound;
 * instead two launches spread the work over the whole GPU, on the same grid
 * of `chunks` blocks per (item, group), each block on one slice of a group:
 *   1. partials: each block sums x and x² over its slice, in double, into
 *      scratch;
 *   2. normalize: each block adds its group's partials in order (so every
 *      block, whatever the schedule, gets the same mean and rstd as floats),
 *      then writes y = (x - mean) * rstd * gamma + beta (+ SiLU) over its
 *      slice. (A separate stats launch between the two would cost a launch
 *      per GroupNorm for a few dozen additions per block.)
 * A group of at most GN_FUSED_MAX values (SD's 8x8 and 16x16 levels: 2560
 * to 10240) takes one block and one launch instead: there are no more blocks
 * to spread over, and the second launch would cost more than the work.
 * The variance is E[x²] - mean² in double: for these values the cancellation
 * costs ~1e-15 relative, far under the float the result is rounded to (the
 * CPU reference's two-pass double gives the same floats but in rare ties).
 */
#include "ds-cuda-util.cuh"

/* Values per block in pass 1; the number of chunks follows from it. */
#define GN_CHUNK 4096
#define GN_MAX_CHUNKS 64
/* Groups up to this many values: one block each, one launch. */
#define GN_FUSED_MAX 16384

static int64_t
gn_chunks (int64_t count)
{
  int64_t c = (count + GN_CHUNK - 1) / GN_CHUNK;
  return c < 1 ? 1 : c > GN_MAX_CHUNKS ? GN_MAX_CHUNKS : c;
}

extern "C" size_t
ds_cuda_group_norm_scratch (int64_t nb, int64_t ch, int64_t spatial, int groups)
{
  if (nb <= 0 || ch <= 0 || spatial <= 0 || groups < 1)
    return 0;
  const int64_t ng = nb * groups, chunks = gn_chunks (ch / groups * spatial);
  return (size_t) (ng * chunks) * 2 * sizeof (double);
}

/* The block's sum and sum of squares of xg[lo, hi), in double, valid in
 * every thread. */
template <typename T, typename I>
static __device__ __forceinline__ void
gn_sums (const T *__restrict__ xg, I lo, I hi, double *red, double *s_out, double *q_out)
{
  double s = 0, q = 0;
  for (I i = lo + (I) threadIdx.x; i < hi; i += (I) blockDim.x)
    {
      const double v = ds_ld (xg + i);
      s += v;
      q += v * v;
    }
  *s_out = ds_block_sum (s, red);
  *q_out = ds_block_sum (q, red);
}

/* grid (chunks, nb * groups): partial[(ng) * chunks + chunk] = { sum, sum of squares } */
template <typename T>
static __global__ void
gn_partial_kernel (const T *__restrict__ x, double *__restrict__ partial, int64_t count,
                   int64_t chunk_len)
{
  __shared__ double red[32];
  const int64_t ng = blockIdx.y, c = blockIdx.x;
  const int64_t lo = c * chunk_len, hi = lo + chunk_len < count ? lo + chunk_len : count;
  double s, q;
  gn_sums<T, int64_t> (x + ng * count, lo, hi, red, &s, &q);
  if (threadIdx.x == 0)
    {
      partial[2 * (ng * gridDim.x + c)] = s;
      partial[2 * (ng * gridDim.x + c) + 1] = q;
    }
}

/* A group's mean and rstd as floats from its sums in double. */
static __device__ __forceinline__ void
gn_stats (double s, double q, double count, float eps, float *stats)
{
  const double mean = s / count;
  double var = q / count - mean * mean;
  var = var > 0 ? var : 0;
  stats[0] = (float) mean;
  stats[1] = (float) (1.0 / sqrt (var + eps));
}

/* y over [lo, hi) of group ng: (x - mean) * rstd * gamma + beta (+ SiLU). */
template <typename T, typename I>
static __device__ __forceinline__ void
gn_apply (const T *__restrict__ x, const T *__restrict__ gamma, const T *__restrict__ beta,
          T *__restrict__ y, I ng, I lo, I hi, I count, I spatial, I cg, int groups,
          const float *stats, bool silu)
{
  const float mean = stats[0], rstd = stats[1];
  const I c0 = ng % (I) groups * cg; /* the group's first channel */
  const T *xg = x + ng * count;
  T *yg = y + ng * count;
  for (I i = lo + (I) threadIdx.x; i < hi; i += (I) blockDim.x)
    {
      const I c = c0 + i / spatial;
      const float r = (ds_ld (xg + i) - mean) * rstd * ds_ld (gamma + c) + ds_ld (beta + c);
      ds_st (yg + i, silu ? ds_silu_f (r) : r);
    }
}

/* grid (nb * groups): block ng sums its group, then normalizes it. */
template <typename T, typename I>
static __global__ void
gn_fused_kernel (const T *__restrict__ x, const T *__restrict__ gamma, const T *__restrict__ beta,
                 T *__restrict__ y, I count, I spatial, I cg, int groups, float eps, bool silu)
{
  __shared__ double red[32];
  __shared__ float stats[2];
  const I ng = (I) blockIdx.x;
  double s, q;
  gn_sums<T, I> (x + ng * count, (I) 0, count, red, &s, &q);
  if (threadIdx.x == 0)
    gn_stats (s, q, (double) count, eps, stats);
  __syncthreads ();
  gn_apply<T, I> (x, gamma, beta, y, ng, (I) 0, count, count, spatial, cg, groups, stats, silu);
}

/* grid (chunks, nb * groups), the partials' grid: block (c, ng) first turns
 * group ng's partials into its mean and rstd (thread 0 adds them in chunk
 * order, so every block of the group gets the same floats whatever the
 * schedule), then normalizes the slice its partial covered:
 * y = (x - mean) * rstd * gamma + beta (+ SiLU). */
template <typename T, typename I>
static __global__ void
gn_normalize_kernel (const T *__restrict__ x, const T *__restrict__ gamma,
                     const T *__restrict__ beta, const double *__restrict__ partial,
                     T *__restrict__ y, I count, I chunk_len, I spatial, I cg, int groups,
                     float eps, bool silu)
{
  __shared__ float stats[2];
  const I ng = (I) blockIdx.y, chunks = (I) gridDim.x;
  if (threadIdx.x == 0)
    {
      double s = 0, q = 0;
      for (I c = 0; c < chunks; c++)
        {
          s += partial[2 * (ng * chunks + c)];
          q += partial[2 * (ng * chunks + c) + 1];
        }
      gn_stats (s, q, (double) count, eps, stats);
    }
  __syncthreads ();
  const I lo = (I) blockIdx.x * chunk_len, hi = lo + chunk_len < count ? lo + chunk_len : count;
  gn_apply<T, I> (x, gamma, beta, y, ng, lo, hi, count, spatial, cg, groups, stats, silu);
}

extern "C" cudaError_t
ds_cuda_group_norm (DsDType dt, const void *x, const void *gamma, const void *beta, void *y,
                    int64_t nb, int64_t ch, int64_t spatial, int groups, float eps, bool silu,
                    void *scratch, cudaStream_t stream)
{
  if (nb <= 0 || ch <= 0 || spatial <= 0)
    return cudaSuccess;
  if (groups < 1 || ch % groups || !scratch)
    return cudaErrorInvalidValue;
  const int64_t cg = ch / groups, count = cg * spatial, ng = nb * groups;
  const int64_t chunks = gn_chunks (count), chunk_len = (count + chunks - 1) / chunks;
  const int64_t n = nb * ch * spatial;
  if (count <= GN_FUSED_MAX && ng <= 0x7fffffff)
    {
      DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (n, I,
        gn_fused_kernel<T, I><<<(unsigned) ng, DS_CUDA_THREADS, 0, stream>>> (
          (const T *) x, (const T *) gamma, (const T *) beta, (T *) y, (I) count, (I) spatial,
          (I) cg, groups, eps, silu)));
      return ds_cuda_launched ();
    }
  if (ng > 65535)
    return cudaErrorInvalidValue;
  double *partial = (double *) scratch;
  const dim3 grid ((unsigned) chunks, (unsigned) ng);
  cudaError_t e;
  DS_CUDA_DISPATCH (dt, T,
    gn_partial_kernel<T><<<grid, DS_CUDA_THREADS, 0, stream>>> ((const T *) x, partial, count,
                                                               chunk_len));
  if ((e = ds_cuda_launched ()) != cudaSuccess)
    return e;
  DS_CUDA_DISPATCH (dt, T, DS_CUDA_INDEX (n, I,
    gn_normalize_kernel<T, I><<<grid, DS_CUDA_THREADS, 0, stream>>> (
      (const T *) x, (const T *) gamma, (const T *) beta, partial, (T *) y, (I) count,
      (I) chunk_len, (I) spatial, (I) cg, groups, eps, silu)));
  return ds_cuda_launched ();
}
