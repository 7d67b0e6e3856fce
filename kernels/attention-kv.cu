/* attention-kv.cu: attention of a few new queries over a decoder's KV cache
 * (DS_OP_ATTENTION_KV for decode steps: split-K, "flash decoding").
 *
 * A decode step has one query row per head and thousands of cached keys, so
 * the work is spread over the keys: the keys a query sees (0 .. q_pos + i,
 * the causal mask) are cut into chunks of KV_CHUNK, and one block of 4 warps
 * takes one (chunk, query row, head, item):
 *   s_j = scale * q . k_j        a warp per key, lanes over the head dims,
 *                                q widened to f32 in shared memory
 *   m = max s_j, e_j = exp(s_j - m), l = sum e_j (double)
 *   acc_d = sum_j e_j v_j[d]     a thread per head dim, keys in order
 * Each chunk leaves (acc, m, l) in f32 scratch, and a second kernel combines
 * a row's chunks: o = sum_c acc_c exp(m_c - M) / sum_c l_c exp(m_c - M). A
 * row that sees one chunk of keys (up to KV_CHUNK) is normalised and written
 * by its block, as the CPU reference does: p_j = e_j * (float) (1 / l), and
 * the combine kernel passes it by; where every row fits one chunk it is not
 * launched. The decision is the row's own, so a step gives the same bits
 * whether its position was fixed at launch or read from the device.
 * Everything is f32 from the widened inputs; o is rounded once to T (the
 * probabilities are never rounded to T, unlike the materialised path).
 * Grouped-query attention: query head h reads kv head h / (heads / kv_heads).
 *
 * The backend runs larger query blocks (prefill) as GEMMs instead
 * (ds-backend-cuda.c): this kernel reads every key once per query row.
 *
 * The position can come from the device (pos, ds_attention_kv_at): a decode
 * step recorded as a CUDA graph replays for every position. The grid then
 * covers the whole cache; blocks past the position return at once.
 *
 * Not done: sharing one kv head's loads between the query heads of its group
 * (GQA models reread them, mostly from L2), vectorised 16-byte loads.
 */
#include "ds-cuda-util.cuh"

#define KV_CHUNK 256   /* keys per block */
#define KV_THREADS 128 /* 4 warps */
#define KV_DMAX 256    /* head sizes up to this (q in shared memory, a thread per dim) */

static __host__ __device__ __forceinline__ int64_t
keys_seen (int64_t q_pos, int64_t qi, int64_t nk)
{
  return q_pos + qi + 1 < nk ? q_pos + qi + 1 : nk;
}

/* q_pos, or the position the device holds */
static __device__ __forceinline__ int64_t
position (int64_t q_pos, const int32_t *pos)
{
  return pos ? (int64_t) *pos : q_pos;
}

/* A row that sees at most KV_CHUNK keys is written normalised by its one
 * block; else each chunk's partials go to part_o [rows, n_chunks, d] and
 * part_ml [rows, n_chunks, 2]. */
template <typename T>
static __global__ void __launch_bounds__ (KV_THREADS)
attn_kv_split_kernel (const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,
                      T *__restrict__ o, float *__restrict__ part_o, float *__restrict__ part_ml,
                      int64_t nq, int64_t nk, int heads, int group, int d, float scale,
                      int64_t q_pos, const int32_t *__restrict__ pos, int64_t n_chunks)
{
  __shared__ float qs[KV_DMAX];
  __shared__ float s[KV_CHUNK];
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t c = blockIdx.x, qi = blockIdx.y / heads, b = blockIdx.z;
  const int h = (int) (blockIdx.y % heads);
  const int64_t seen = keys_seen (position (q_pos, pos), qi, nk), j0 = c * KV_CHUNK;
  if (j0 >= seen)
    return; /* the whole block: this row sees no key of the chunk */
  const bool direct = seen <= KV_CHUNK;
  const int64_t nj = seen - j0 < KV_CHUNK ? seen - j0 : KV_CHUNK;
  const int64_t cq = (int64_t) heads * d, ckv = (int64_t) (heads / group) * d;
  const int64_t row = (b * nq + qi) * heads + h; /* (item, query, head) */
  const T *qr = q + (b * nq + qi) * cq + (int64_t) h * d;
  const T *kb = k + (b * nk + j0) * ckv + (int64_t) (h / group) * d;
  const T *vb = v + (b * nk + j0) * ckv + (int64_t) (h / group) * d;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nwarps = KV_THREADS / 32;

  for (int i = tid; i < d; i += KV_THREADS)
    qs[i] = ds_ld (qr + i);
  __syncthreads ();
  for (int64_t j = warp; j < nj; j += nwarps)
    {
      const T *kr = kb + j * ckv;
      float dot = 0.0f;
      for (int i = lane; i < d; i += 32)
        dot += qs[i] * ds_ld (kr + i);
      dot = ds_warp_sum (dot);
      if (lane == 0)
        s[j] = scale * dot;
    }
  __syncthreads ();
  float mx = -INFINITY;
  for (int64_t j = tid; j < nj; j += KV_THREADS)
    mx = fmaxf (mx, s[j]);
  mx = ds_block_max (mx, redf);
  double l = 0;
  for (int64_t j = tid; j < nj; j += KV_THREADS)
    {
      const float e = expf (s[j] - mx);
      s[j] = e;
      l += e;
    }
  l = ds_block_sum (l, redd); /* its barriers also publish s */
  if (direct)
    {
      const float inv = (float) (1.0 / l);
      for (int64_t j = tid; j < nj; j += KV_THREADS)
        s[j] *= inv;
      __syncthreads ();
    }
  for (int i = tid; i < d; i += KV_THREADS)
    {
      float acc = 0.0f;
      for (int64_t j = 0; j < nj; j++)
        acc += s[j] * ds_ld (vb + j * ckv + i);
      if (direct)
        ds_st (o + (b * nq + qi) * cq + (int64_t) h * d + i, acc);
      else
        part_o[(row * n_chunks + c) * d + i] = acc;
    }
  if (!direct && tid == 0)
    {
      part_ml[(row * n_chunks + c) * 2] = mx;
      part_ml[(row * n_chunks + c) * 2 + 1] = (float) l;
    }
}

/* One block per (query row, head, item): the row's chunks weighted by
 * exp(m_c - M), divided by the weighted sum of their l_c. Rows of one chunk
 * were written by the first kernel. */
template <typename T>
static __global__ void
attn_kv_combine_kernel (const float *__restrict__ part_o, const float *__restrict__ part_ml,
                        T *__restrict__ o, int64_t nq, int64_t nk, int heads, int d,
                        int64_t q_pos, const int32_t *__restrict__ pos, int64_t n_chunks)
{
  const int64_t qi = blockIdx.x / heads, b = blockIdx.y;
  const int h = (int) (blockIdx.x % heads);
  const int64_t row = (b * nq + qi) * heads + h;
  const int64_t used = (keys_seen (position (q_pos, pos), qi, nk) + KV_CHUNK - 1) / KV_CHUNK;
  if (used <= 1)
    return;
  const float *ml = part_ml + row * n_chunks * 2, *po = part_o + row * n_chunks * d;
  float big = -INFINITY;
  for (int64_t c = 0; c < used; c++)
    big = fmaxf (big, ml[2 * c]);
  double l = 0;
  for (int64_t c = 0; c < used; c++)
    l += (double) ml[2 * c + 1] * expf (ml[2 * c] - big);
  const float inv = (float) (1.0 / l);
  T *orow = o + (b * nq + qi) * (int64_t) heads * d + (int64_t) h * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    {
      float acc = 0.0f;
      for (int64_t c = 0; c < used; c++)
        acc += po[c * d + i] * (expf (ml[2 * c] - big) * inv);
      ds_st (orow + i, acc);
    }
}

static int64_t
n_chunks_of (int64_t nq, int64_t nk, int64_t q_pos)
{
  const int64_t most = keys_seen (q_pos, nq - 1, nk);
  return (most + KV_CHUNK - 1) / KV_CHUNK;
}

extern "C" bool
ds_cuda_attention_kv_supported (int64_t nb, int64_t nq, int64_t heads, int64_t head_dim)
{
  return head_dim >= 1 && head_dim <= KV_DMAX && nq * heads <= 65535 && nb <= 65535;
}

extern "C" size_t
ds_cuda_attention_kv_scratch (int64_t nb, int64_t nq, int64_t nk, int64_t heads, int64_t d,
                              int64_t q_pos)
{
  if (nb <= 0 || nq <= 0 || nk <= 0 || heads <= 0 || d <= 0)
    return 0;
  const int64_t chunks = n_chunks_of (nq, nk, q_pos);
  if (chunks <= 1)
    return 0;
  return (size_t) (nb * nq * heads * chunks) * (size_t) (d + 2) * sizeof (float);
}

extern "C" cudaError_t
ds_cuda_attention_kv (DsDType dt, const void *q, const void *k, const void *v, void *o,
                      int64_t nb, int64_t nq, int64_t nk, int64_t heads, int64_t kv_heads,
                      int64_t d, float scale, int64_t q_pos, const int32_t *pos, void *scratch,
                      cudaStream_t stream)
{
  if (nb <= 0 || nq <= 0 || nk <= 0 || heads <= 0 || d <= 0)
    return cudaSuccess;
  if (!ds_cuda_attention_kv_supported (nb, nq, heads, d) || kv_heads <= 0 || heads % kv_heads
      || q_pos < 0 || heads > INT32_MAX || (pos && q_pos != 0))
    return cudaErrorInvalidValue;
  /* with pos, sized for the last position of the cache */
  const int64_t chunks = n_chunks_of (nq, nk, pos ? nk - nq : q_pos);
  if (chunks > INT32_MAX || (chunks > 1 && !scratch))
    return cudaErrorInvalidValue;
  const int group = (int) (heads / kv_heads);
  const dim3 grid ((unsigned) chunks, (unsigned) (nq * heads), (unsigned) nb);
  float *part_o = (float *) scratch;
  float *part_ml = part_o ? part_o + nb * nq * heads * chunks * d : nullptr;
  DS_CUDA_DISPATCH (dt, T,
    attn_kv_split_kernel<T><<<grid, KV_THREADS, 0, stream>>> (
      (const T *) q, (const T *) k, (const T *) v, (T *) o, part_o, part_ml, nq, nk, (int) heads,
      group, (int) d, scale, q_pos, pos, chunks));
  cudaError_t e = ds_cuda_launched ();
  if (e != cudaSuccess || chunks == 1)
    return e;
  const int threads = d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256;
  DS_CUDA_DISPATCH (dt, T,
    attn_kv_combine_kernel<T><<<dim3 ((unsigned) (nq * heads), (unsigned) nb), threads, 0,
                                stream>>> (part_o, part_ml, (T *) o, nq, nk, (int) heads,
                                           (int) d, q_pos, pos, chunks));
  return ds_cuda_launched ();
}
