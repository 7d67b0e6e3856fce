/* attention.cu: fused (flash-style) multi-head attention, f16/bf16, head size 64.
 *
 * o_h = softmax(scale * q_h k_h^T) v_h per head without writing the scores to
 * memory (FlashAttention-2's loop order): a block of 4 warps takes 64 query
 * rows of one (item, head), 16 per warp, keeps them in registers as MMA
 * fragments, and walks the keys in tiles of 64 staged through shared memory:
 *   S[16 x 64] = Q K^T            8 n-tiles x 4 k-steps of m16n8k16, f32
 *   online softmax per row        running max m and sum l in f32; exp2 of
 *                                 scores pre-multiplied by scale * log2(e)
 *   O[16 x 64] = O * exp(m_old - m_new) + P V
 * P goes from the accumulator fragments of S straight into A fragments of the
 * second product (their layouts coincide, ds-cuda-mma.cuh), rounded to T.
 * Keys past nk and, with `causal`, keys after the query are masked; the last
 * tile may be partial (cross-attention has 77 keys). Probabilities are not
 * produced: attention maps use the unfused path in ds-backend-cuda.c.
 *
 * Tiles arrive by cp.async into two shared buffers, the next tile's copy in
 * flight while the current one is computed on (45 KiB of static shared
 * memory). Fragments come out of shared memory by ldmatrix (V's transposed),
 * four 8x8 matrices per instruction; the 144-byte row stride puts the eight
 * rows each 8-lane phase reads in distinct banks. Rows of q, k, v and o are
 * heads * 64 elements, so every row start is 16-byte aligned for the 16-byte
 * copies.
 */
#include "ds-cuda-async.cuh"
#include "ds-cuda-mma.cuh"

#define HD 64       /* head size */
#define BR 64       /* query rows per block: 4 warps x 16 */
#define BC 64       /* keys per tile */
#define LDS (HD + 8) /* shared row stride in elements: 144 bytes, rows stay 16-byte aligned */
#define NTHREADS 128

/* Starts copying rows [r0, r0 + BR) of head columns [h*HD, h*HD + HD) of a
 * [n, ld] matrix into dst[BR][LDS]; rows at or past n become zeros. */
static __device__ __forceinline__ void
load_tile (uint16_t *dst, const uint16_t *src, int64_t r0, int64_t n, int64_t ld)
{
  for (int c = threadIdx.x; c < BR * HD / 8; c += NTHREADS)
    {
      const int r = c / (HD / 8), col = (c % (HD / 8)) * 8;
      const bool valid = r0 + r < n;
      ds_cp_async16 (dst + r * LDS + col, src + (valid ? (r0 + r) * ld + col : 0), valid);
    }
}

/* two consecutive elements, 4-byte aligned (the path without ldmatrix) */
static __device__ __forceinline__ uint32_t
ld32 (const uint16_t *p)
{
  return *(const uint32_t *) p;
}

/* LDSM: fragments by ldmatrix (the default), else by 32-bit and 16-bit shared
 * loads (DS_CUDA_LDMATRIX=0; kept until a GPU profile picks one: ldmatrix
 * issues 6x fewer shared-memory instructions, but takes 138 registers to the
 * plain loads' 128, 3 blocks per SM instead of 4). */
template <typename T, bool LDSM>
static __global__ void __launch_bounds__ (NTHREADS)
flash_kernel (const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
              const uint16_t *__restrict__ v, uint16_t *__restrict__ o, int64_t nq, int64_t nk,
              int64_t heads, float scale_log2, bool causal)
{
  __shared__ __align__ (16) uint16_t qs[BR * LDS];
  __shared__ __align__ (16) uint16_t kbuf[2][BC * LDS];
  __shared__ __align__ (16) uint16_t vbuf[2][BC * LDS];
  const int64_t ld = heads * HD, h = blockIdx.y, b = blockIdx.z;
  const int64_t q0 = (int64_t) blockIdx.x * BR;
  const uint16_t *qb = q + b * nq * ld + h * HD, *kb = k + b * nk * ld + h * HD;
  const uint16_t *vb = v + b * nk * ld + h * HD;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int li = lane / 8, lm = lane % 8; /* the matrix and row this lane addresses in ldmatrix */
  const int wr = warp * 16; /* the warp's first row within the block */

  uint32_t qa[HD / 16][4];

  float acc[HD / 8][4];
  for (int j = 0; j < HD / 8; j++)
    acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
  const int64_t row[2] = { q0 + wr + g, q0 + wr + g + 8 };
  /* With the causal mask no key after the block's last query matters. */
  const int64_t kend = causal && q0 + BR < nk ? q0 + BR : nk;

  /* group 0: Q and the first key/value tile */
  load_tile (qs, qb, q0, nq, ld);
  load_tile (kbuf[0], kb, 0, nk, ld);
  load_tile (vbuf[0], vb, 0, nk, ld);
  ds_cp_async_commit ();
  int buf = 0;
  for (int64_t k0 = 0; k0 < kend; k0 += BC, buf ^= 1)
    {
      /* the next tile into the other buffer (free: everyone passed the
       * barrier at the end of the previous step), then wait for this one */
      if (k0 + BC < kend)
        {
          load_tile (kbuf[buf ^ 1], kb, k0 + BC, nk, ld);
          load_tile (vbuf[buf ^ 1], vb, k0 + BC, nk, ld);
          ds_cp_async_commit ();
          ds_cp_async_wait<1> ();
        }
      else
        ds_cp_async_wait<0> ();
      __syncthreads ();
      /* Q's a fragments, once: matrix i of step s is rows wr + 8 (i & 1),
       * columns 16 s + 8 (i >> 1) */
      if (k0 == 0)
        for (int s = 0; s < HD / 16; s++)
          {
            if constexpr (LDSM)
              ds_ldmatrix_x4 (qa[s], qs + (wr + lm + 8 * (li & 1)) * LDS + 16 * s + 8 * (li >> 1));
            else
              for (int r = 0; r < 4; r++) /* rows wr + g + 8 (r & 1), columns + 8 (r >> 1) */
                qa[s][r] = ld32 (qs + (wr + g + 8 * (r & 1)) * LDS + 16 * s + 8 * (r >> 1) + 2 * t);
          }
      const uint16_t *ks = kbuf[buf], *vs = vbuf[buf];

      /* S = Q K^T: K's rows are B's columns, stored k-contiguous; one
       * ldmatrix gives keys 8j.. over head columns 32p .. 32p + 31, the b
       * fragments of steps 2p and 2p + 1 */
      float s[BC / 8][4];
      for (int j = 0; j < BC / 8; j++)
        {
          s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
          for (int p = 0; p < HD / 32; p++)
            {
              uint32_t kf[4];
              if constexpr (LDSM)
                ds_ldmatrix_x4 (kf, ks + (8 * j + lm) * LDS + 32 * p + 8 * li);
              else
                for (int r = 0; r < 4; r++)
                  kf[r] = ld32 (ks + (8 * j + g) * LDS + 32 * p + 8 * r + 2 * t);
              DsMma<T>::run (s[j], qa[2 * p], kf);
              DsMma<T>::run (s[j], qa[2 * p + 1], kf + 2);
            }
        }

      /* scale, mask, and each row's maximum over this tile */
      float mt[2] = { -INFINITY, -INFINITY };
      for (int j = 0; j < BC / 8; j++)
        for (int e = 0; e < 4; e++)
          {
            const int r = e / 2;
            const int64_t key = k0 + 8 * j + 2 * t + (e & 1);
            float x = s[j][e] * scale_log2;
            if (key >= nk || (causal && key > row[r]))
              x = -INFINITY;
            s[j][e] = x;
            mt[r] = fmaxf (mt[r], x);
          }
      float alpha[2];
      for (int r = 0; r < 2; r++)
        {
          /* the four lanes of a row group hold its 64 columns */
          mt[r] = fmaxf (mt[r], __shfl_xor_sync (0xffffffffu, mt[r], 1));
          mt[r] = fmaxf (mt[r], __shfl_xor_sync (0xffffffffu, mt[r], 2));
          const float mn = fmaxf (m[r], mt[r]);
          /* a row with every key masked so far keeps m = -inf: use 0 as the
           * reference so exp2 gives 0, not NaN */
          const float ref = mn == -INFINITY ? 0.0f : mn;
          alpha[r] = exp2f (m[r] - ref);
          m[r] = mn;
          l[r] *= alpha[r];
          for (int j = 0; j < BC / 8; j++)
            {
              s[j][2 * r] = exp2f (s[j][2 * r] - ref);
              s[j][2 * r + 1] = exp2f (s[j][2 * r + 1] - ref);
              l[r] += s[j][2 * r] + s[j][2 * r + 1];
            }
        }
      for (int j = 0; j < HD / 8; j++)
        {
          acc[j][0] *= alpha[0];
          acc[j][1] *= alpha[0];
          acc[j][2] *= alpha[1];
          acc[j][3] *= alpha[1];
        }

      /* O += P V, 16 keys at a time */
      for (int kk = 0; kk < BC / 16; kk++)
        {
          const uint32_t pa[4] = {
            ds_pack2 (T (), s[2 * kk][0], s[2 * kk][1]),
            ds_pack2 (T (), s[2 * kk][2], s[2 * kk][3]),
            ds_pack2 (T (), s[2 * kk + 1][0], s[2 * kk + 1][1]),
            ds_pack2 (T (), s[2 * kk + 1][2], s[2 * kk + 1][3]),
          };
          /* V is stored [key][column]: transposed loads give the b
           * fragments; matrix i is keys 16 kk + 8 (i & 1), columns
           * 8 (2 jp + (i >> 1)), so one load serves column tiles 2jp, 2jp + 1 */
          for (int jp = 0; jp < HD / 16; jp++)
            {
              uint32_t vf[4];
              if constexpr (LDSM)
                ds_ldmatrix_x4_trans (vf, vs + (16 * kk + 8 * (li & 1) + lm) * LDS
                                            + 8 * (2 * jp + (li >> 1)));
              else
                for (int r = 0; r < 4; r++)
                  {
                    /* column 8 (2 jp + (r >> 1)) + g, keys 16 kk + 8 (r & 1) + 2t, +1 */
                    const uint16_t *e = vs + (16 * kk + 8 * (r & 1) + 2 * t) * LDS
                                        + 8 * (2 * jp + (r >> 1)) + g;
                    vf[r] = (uint32_t) e[0] | (uint32_t) e[LDS] << 16;
                  }
              DsMma<T>::run (acc[2 * jp], pa, vf);
              DsMma<T>::run (acc[2 * jp + 1], pa, vf + 2);
            }
        }
      __syncthreads (); /* the next step's prefetch refills this buffer */
    }

  /* each row's sum is spread over its four lanes */
  for (int r = 0; r < 2; r++)
    {
      l[r] += __shfl_xor_sync (0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync (0xffffffffu, l[r], 2);
    }
  uint16_t *ob = o + b * nq * ld + h * HD;
  for (int r = 0; r < 2; r++)
    {
      if (row[r] >= nq)
        continue;
      const float inv = 1.0f / l[r];
      uint32_t *dst = (uint32_t *) (ob + row[r] * ld + 2 * t);
      for (int j = 0; j < HD / 8; j++)
        dst[4 * j] = ds_pack2 (T (), acc[j][2 * r] * inv, acc[j][2 * r + 1] * inv);
    }
}

extern "C" bool
ds_cuda_flash_attention_supported (DsDType dt, int64_t head_dim)
{
  return (dt == DS_DTYPE_F16 || dt == DS_DTYPE_BF16) && head_dim == HD;
}

extern "C" bool
ds_cuda_flash_attention_aligned (const void *q, const void *k, const void *v, const void *o)
{
  /* 16-byte cp.async copies from q, k, v; 32-bit stores to o */
  return (((uintptr_t) q | (uintptr_t) k | (uintptr_t) v) & 15) == 0 && ((uintptr_t) o & 3) == 0;
}

extern "C" cudaError_t
ds_cuda_flash_attention (DsDType dt, const void *q, const void *k, const void *v, void *o,
                         int64_t nb, int64_t nq, int64_t nk, int64_t heads, float scale,
                         bool causal, bool ldmatrix, cudaStream_t stream)
{
  if (nb <= 0 || nq <= 0 || heads <= 0)
    return cudaSuccess;
  if (nk <= 0 || nb > 65535 || heads > 65535 || (nq + BR - 1) / BR > INT32_MAX)
    return cudaErrorInvalidValue;
  if (!ds_cuda_flash_attention_aligned (q, k, v, o))
    return cudaErrorInvalidValue;
  const dim3 grid ((unsigned) ((nq + BR - 1) / BR), (unsigned) heads, (unsigned) nb);
  const float scale_log2 = scale * 1.4426950408889634f; /* exp(x) = exp2(x log2 e) */
  const uint16_t *qq = (const uint16_t *) q, *kk = (const uint16_t *) k;
  const uint16_t *vv = (const uint16_t *) v;
  uint16_t *oo = (uint16_t *) o;
  if (dt != DS_DTYPE_F16 && dt != DS_DTYPE_BF16)
    return cudaErrorInvalidValue;
  auto kernel = dt == DS_DTYPE_F16 ? (ldmatrix ? flash_kernel<__half, true>
                                               : flash_kernel<__half, false>)
                                   : (ldmatrix ? flash_kernel<__nv_bfloat16, true>
                                               : flash_kernel<__nv_bfloat16, false>);
  kernel<<<grid, NTHREADS, 0, stream>>> (qq, kk, vv, oo, nq, nk, heads, scale_log2, causal);
  return ds_cuda_launched ();
}
