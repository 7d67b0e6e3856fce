/* ds-cuda-kernels.h: the kernel launchers behind the CUDA backend (internal).
 *
 * One launcher family per op file (conv2d.cu, group-norm.cu, ...). Every
 * launcher takes device pointers (contiguous, row-major as in ds-tensor.h) of
 * the element type `dt` — f32, f16 or bf16 for float data — and a stream,
 * enqueues its kernel(s), never allocates or synchronizes, and returns the
 * launch status (cudaGetLastError); errors inside a running kernel surface at
 * the next synchronization. Zero-sized work returns cudaSuccess without a
 * launch; a dtype a launcher does not handle is cudaErrorInvalidValue.
 *
 * Arithmetic is f32 whatever the storage (f16/bf16 values are widened on load
 * and rounded once on store); statistics (norms, softmax sums) are in double
 * as in the CPU reference. In f32 each computes exactly what
 * engine/core/ds-backend-cpu.c computes for the op. The GEMMs are not here
 * (ds-backend-cuda.c calls cuBLAS); the fused attention is (attention.cu).
 *
 * Included from C (ds-backend-cuda.c) and from the .cu files (C++).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "ds-tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* conv2d.cu --------------------------------------------------------------- */

/* Convolution geometry of one image x[ci, h, w] and its output [*, ho, wo]. */
typedef struct {
  int64_t ci, h, w;
  int64_t kh, kw;
  int64_t ho, wo;
  int64_t stride, pad_top, pad_left;
} DsCudaConvGeom;

/* Columns for output rows [r0, r0 + rows) of one image x[ci, h, w]:
 * col[(c*kh + ky)*kw + kx][r*wo + ox] = x[c][(r0+r)*s - pad_top + ky][ox*s - pad_left + kx],
 * zero where the input index falls in the padding. col is [ci*kh*kw, rows*wo]. */
cudaError_t ds_cuda_im2col (DsDType dt, const DsCudaConvGeom *g, const void *x, int64_t r0,
                            int64_t rows, void *col, cudaStream_t stream);

/* group-norm.cu ----------------------------------------------------------- */

/* x, y [nb, ch, spatial]; gamma, beta [ch]. Per (item, group) of ch/groups
 * channels: mean and biased variance in double, then
 * y = (x - mean) * rstd * gamma + beta, followed by SiLU when `silu`.
 * scratch: device memory of ds_cuda_group_norm_scratch bytes (the partial sums). */
size_t ds_cuda_group_norm_scratch (int64_t nb, int64_t ch, int64_t spatial, int groups);
cudaError_t ds_cuda_group_norm (DsDType dt, const void *x, const void *gamma, const void *beta,
                                void *y, int64_t nb, int64_t ch, int64_t spatial, int groups,
                                float eps, bool silu, void *scratch, cudaStream_t stream);

/* layer-norm.cu ----------------------------------------------------------- */

/* x, y [rows, ch]; gamma, beta [ch]. Per row, as group norm with one group. */
cudaError_t ds_cuda_layer_norm (DsDType dt, const void *x, const void *gamma, const void *beta,
                                void *y, int64_t rows, int64_t ch, float eps,
                                cudaStream_t stream);

/* softmax.cu -------------------------------------------------------------- */

/* Softmax over rows of n values, x of dtype xt, y of dtype yt (attention
 * turns f32 scores into f16 probabilities this way). Row r of batch b starts
 * at b * batch_stride + r * row_stride in both x and y (y may equal x when
 * xt == yt). causal_q0 >= 0 masks: row r sees columns
 * [0, min(causal_q0 + r + 1, n)), the rest is written as 0 (attention's
 * causal mask for a block of queries starting at causal_q0); -1 for no mask.
 * rows and batch must fit the grid (rows <= 2^31 - 1, batch <= 65535). */
cudaError_t ds_cuda_softmax (DsDType xt, const void *x, DsDType yt, void *y, int64_t rows,
                             int64_t n, int64_t row_stride, int64_t batch, int64_t batch_stride,
                             int64_t causal_q0, cudaStream_t stream);

/* elementwise.cu ---------------------------------------------------------- */

/* y[i] = f(x[i]) for i < n; y may equal x. */
cudaError_t ds_cuda_gelu (DsDType dt, const void *x, void *y, int64_t n, cudaStream_t stream);
cudaError_t ds_cuda_quick_gelu (DsDType dt, const void *x, void *y, int64_t n,
                                cudaStream_t stream);
cudaError_t ds_cuda_silu (DsDType dt, const void *x, void *y, int64_t n, cudaStream_t stream);
cudaError_t ds_cuda_scale (DsDType dt, const void *x, float s, void *y, int64_t n,
                           cudaStream_t stream);
/* y[i] = a[i] * b[i]; y may equal a or b. */
cudaError_t ds_cuda_mul (DsDType dt, const void *a, const void *b, void *y, int64_t n,
                         cudaStream_t stream);
/* Broadcast add: y[i] = a[i] + b[(i / run) % nb] for i < n. Covers every form
 * of DS_OP_ADD (same shape: run 1, nb n; bias over the last dim: run 1, nb C;
 * leading dims: run n / nb) and a conv's per-channel bias (run H*W, nb C). y may
 * equal a (or b, when run is 1 and nb is n). */
cudaError_t ds_cuda_add (DsDType dt, const void *a, const void *b, void *y, int64_t n,
                         int64_t run, int64_t nb, cudaStream_t stream);
/* x [rows, 2f] = [value | gate] (+ b [2f] when b is not NULL)
 * -> y [rows, f] = value * gelu(gate). */
cudaError_t ds_cuda_geglu (DsDType dt, const void *x, const void *b, void *y, int64_t rows,
                           int64_t f, cudaStream_t stream);

/* concat.cu --------------------------------------------------------------- */

/* For each of `outer` slabs: a's na values then b's nb values. */
cudaError_t ds_cuda_concat (DsDType dt, const void *a, const void *b, void *y, int64_t outer,
                            int64_t na, int64_t nb, cudaStream_t stream);

/* upsample.cu ------------------------------------------------------------- */

/* x [planes, h, w] -> y [planes, 2h, 2w], nearest. */
cudaError_t ds_cuda_upsample_nearest2x (DsDType dt, const void *x, void *y, int64_t planes,
                                        int64_t h, int64_t w, cudaStream_t stream);

/* timestep-embedding.cu --------------------------------------------------- */

/* t [nb] -> y [nb, dim] (both of dtype dt); freq_k = expf((neg_log_period *
 * k) / denom) for k < dim/2, both factors rounded to float on the host exactly
 * as the CPU backend does; [sin | cos] (swapped when flip), zero last column
 * for odd dim. */
cudaError_t ds_cuda_timestep_embedding (DsDType dt, const void *t, void *y, int64_t nb,
                                        int64_t dim, float neg_log_period, float denom,
                                        bool flip, cudaStream_t stream);

/* embedding.cu ------------------------------------------------------------ */

/* y[i, :] = table[ids[i], :] for i < n, rows of ch, table [v, ch]. The backend
 * checks the ids on the host first; an id outside [0, v) still reads nothing
 * and gives a row of zeros. */
cudaError_t ds_cuda_embedding (DsDType dt, const int32_t *ids, const void *table, void *y,
                               int64_t n, int64_t ch, int64_t v, cudaStream_t stream);
/* y[pos[i], :] = x[i, :] for i < n, rows of ch, y [rows, ch]; a position
 * outside [0, rows) is skipped. */
cudaError_t ds_cuda_set_rows (DsDType dt, const void *x, const int32_t *pos, void *y, int64_t n,
                              int64_t ch, int64_t rows, cudaStream_t stream);

/* permute.cu -------------------------------------------------------------- */

/* Output index (i0, i1, i2, i3) over `shape` reads x at sum_d i_d * stride[d]
 * (strides in elements of x, 0 for padded size-1 dims). */
typedef struct {
  int64_t shape[4];
  int64_t stride[4];
} DsCudaPermute;

cudaError_t ds_cuda_permute (DsDType dt, const void *x, void *y, const DsCudaPermute *p,
                             cudaStream_t stream);

/* mean-heads.cu ----------------------------------------------------------- */

/* x [nb, h, r] -> y [nb, r]: sum over h in order in f32, then / h (as the CPU). */
cudaError_t ds_cuda_mean_heads (DsDType dt, const void *x, void *y, int64_t nb, int64_t h,
                                int64_t r, cudaStream_t stream);

/* rms-norm.cu ------------------------------------------------------------- */

/* x, y [rows, ch]; g [ch]. y = g * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps)
 * with the sum of squares in double (the CPU reference's recipe). y may be x. */
cudaError_t ds_cuda_rms_norm (DsDType dt, const void *x, const void *g, void *y, int64_t rows,
                              int64_t ch, float eps, cudaStream_t stream);

/* rope.cu ----------------------------------------------------------------- */

/* x, y [rows, heads*d] (rows = B*n tokens); token r is at position
 * pos[r % n] (device i32 [n]). Per head: y[i] = x[i] cos - x[i + d/2] sin,
 * y[i + d/2] = x[i + d/2] cos + x[i] sin, angle = pos * theta^(-2i/d) in f32
 * as the CPU reference. d even; y may be x. */
cudaError_t ds_cuda_rope (DsDType dt, const void *x, const int32_t *pos, void *y, int64_t rows,
                          int64_t n, int64_t heads, int64_t d, float theta, cudaStream_t stream);

/* attention-kv.cu --------------------------------------------------------- */

/* Split-K attention of nq queries over a KV cache (decode steps):
 * q, o [nb, nq, heads*d], k, v [nb, nk, kv_heads*d]; query i (at position
 * q_pos + i) of head h sees keys 0 .. min(q_pos + i, nk - 1) of kv head
 * h / (heads / kv_heads); softmax in f32. With pos (device i32 [1], else
 * NULL), q_pos is read from it when the kernels run: the grid then covers
 * all nk keys and the chunks past the position exit at once. scratch: device
 * memory of ds_cuda_attention_kv_scratch bytes (0: none needed, NULL is
 * fine), for pos given with q_pos = nk - nq (the most any position needs). */
bool ds_cuda_attention_kv_supported (int64_t nb, int64_t nq, int64_t heads, int64_t head_dim);
size_t ds_cuda_attention_kv_scratch (int64_t nb, int64_t nq, int64_t nk, int64_t heads, int64_t d,
                                     int64_t q_pos);
cudaError_t ds_cuda_attention_kv (DsDType dt, const void *q, const void *k, const void *v,
                                  void *o, int64_t nb, int64_t nq, int64_t nk, int64_t heads,
                                  int64_t kv_heads, int64_t d, float scale, int64_t q_pos,
                                  const int32_t *pos, void *scratch, cudaStream_t stream);

/* attention.cu ------------------------------------------------------------ */

/* Fused (flash-style) attention for f16/bf16 with head size 64:
 * q [nb, nq, heads*64], k, v [nb, nk, heads*64] -> o [nb, nq, heads*64],
 * o_h = softmax(scale * q_h k_h^T (+ causal mask)) v_h, without materialising
 * the scores: tensor-core MMAs with f32 accumulation and an online softmax in
 * f32. Rows of all four tensors must be 16-byte aligned (heads*64 elements
 * are). True when the fused kernel handles this shape and dtype. `ldmatrix`
 * picks how fragments leave shared memory (see attention.cu). */
bool ds_cuda_flash_attention_supported (DsDType dt, int64_t head_dim);
/* True when the tensors' addresses suit the fused kernel (q, k, v 16-byte
 * aligned, o 4-byte): arena and cudaMalloc tensors are; a view may not be. */
bool ds_cuda_flash_attention_aligned (const void *q, const void *k, const void *v,
                                      const void *o);
cudaError_t ds_cuda_flash_attention (DsDType dt, const void *q, const void *k, const void *v,
                                     void *o, int64_t nb, int64_t nq, int64_t nk, int64_t heads,
                                     float scale, bool causal, bool ldmatrix,
                                     cudaStream_t stream);

#ifdef __cplusplus
}
#endif
