/* softmax.cu: row softmax, also attention's (strided rows, per-head batches,
 * causal mask, f32 scores turned into f16/bf16 probabilities).
 *
 * One block per row, or for rows of up to SHORT_ROW values (cross-attention's
 * 77 keys, CLIP's causal 77) one warp per row, 8 rows per block: max (float),
 * then the sum of exp(x - max) in double, then y = exp(x - max) * (float)
 * (1 / sum) — the CPU reference's exact recipe. In place (y == x) the exponentials are kept in y between the passes
 * as the CPU does; otherwise they are recomputed from x so a narrower y is
 * rounded once. Each thread touches the same indices in every pass and the
 * passes are separated by block barriers, so y may be x.
 */
#include "ds-cuda-util.cuh"

#define SHORT_ROW 1024
#define WARP_ROWS 8

/* Who works on one row: a whole block, or one warp. Each gives every thread
 * its first index and stride and the row's max and sum in every thread. */
struct BlockRow
{
  float *redf;
  double *redd;
  __device__ int64_t first () const { return threadIdx.x; }
  __device__ int64_t stride () const { return blockDim.x; }
  __device__ float max (float v) const { return ds_block_max (v, redf); }
  __device__ double sum (double v) const { return ds_block_sum (v, redd); }
};

struct WarpRow
{
  __device__ int64_t first () const { return threadIdx.x % 32; }
  __device__ int64_t stride () const { return 32; }
  __device__ float max (float v) const { return ds_warp_max (v); }
  __device__ double sum (double v) const { return ds_warp_sum (v); }
};

/* One row of n values, of which the first `seen` take part (the causal mask);
 * the recipe of the top of the file. */
template <typename Tx, typename Ty, typename Row>
static __device__ __forceinline__ void
softmax_row (const Tx *xr, Ty *yr, int64_t n, int64_t seen, bool in_place, Row row)
{
  float mx = -INFINITY;
  for (int64_t i = row.first (); i < seen; i += row.stride ())
    mx = fmaxf (mx, ds_ld (xr + i));
  mx = row.max (mx);
  double s = 0;
  for (int64_t i = row.first (); i < seen; i += row.stride ())
    {
      float e = expf (ds_ld (xr + i) - mx);
      if (in_place)
        ds_st (yr + i, e);
      s += e;
    }
  const float inv = (float) (1.0 / row.sum (s));
  for (int64_t i = row.first (); i < n; i += row.stride ())
    {
      float e = 0.0f;
      if (i < seen)
        e = in_place ? ds_ld (yr + i) : expf (ds_ld (xr + i) - mx);
      ds_st (yr + i, i < seen ? e * inv : 0.0f);
    }
}

/* Causal: query causal_q0 + r sees keys 0 .. causal_q0 + r. */
static __device__ __forceinline__ int64_t
seen_of (int64_t r, int64_t n, int64_t causal_q0)
{
  return causal_q0 >= 0 && causal_q0 + r + 1 < n ? causal_q0 + r + 1 : n;
}

/* one block per row */
template <typename Tx, typename Ty>
static __global__ void
softmax_kernel (const Tx *x, Ty *y, int64_t n, int64_t row_stride, int64_t batch_stride,
                int64_t causal_q0)
{
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t r = blockIdx.x;
  const int64_t off = (int64_t) blockIdx.y * batch_stride + r * row_stride;
  softmax_row (x + off, y + off, n, seen_of (r, n, causal_q0),
               (const void *) x == (const void *) y, BlockRow{ redf, redd });
}

/* one warp per row, WARP_ROWS rows per block */
template <typename Tx, typename Ty>
static __global__ void
softmax_warp_kernel (const Tx *x, Ty *y, int64_t rows, int64_t n, int64_t row_stride,
                     int64_t batch_stride, int64_t causal_q0)
{
  const int64_t r = (int64_t) blockIdx.x * WARP_ROWS + threadIdx.x / 32;
  if (r >= rows)
    return; /* whole warps only: no shuffle is left waiting */
  const int64_t off = (int64_t) blockIdx.y * batch_stride + r * row_stride;
  softmax_row (x + off, y + off, n, seen_of (r, n, causal_q0),
               (const void *) x == (const void *) y, WarpRow{});
}

extern "C" cudaError_t
ds_cuda_softmax (DsDType xt, const void *x, DsDType yt, void *y, int64_t rows, int64_t n,
                 int64_t row_stride, int64_t batch, int64_t batch_stride, int64_t causal_q0,
                 cudaStream_t stream)
{
  if (rows <= 0 || n <= 0 || batch <= 0)
    return cudaSuccess;
  if (rows > INT32_MAX || batch > 65535 || (x == y && xt != yt))
    return cudaErrorInvalidValue;
  if (n <= SHORT_ROW)
    {
      dim3 grid ((unsigned) ((rows + WARP_ROWS - 1) / WARP_ROWS), (unsigned) batch);
      DS_CUDA_DISPATCH (xt, Tx, DS_CUDA_DISPATCH (yt, Ty,
        softmax_warp_kernel<Tx, Ty><<<grid, 32 * WARP_ROWS, 0, stream>>> (
          (const Tx *) x, (Ty *) y, rows, n, row_stride, batch_stride, causal_q0)));
      return ds_cuda_launched ();
    }
  dim3 grid ((unsigned) rows, (unsigned) batch);
  DS_CUDA_DISPATCH (xt, Tx, DS_CUDA_DISPATCH (yt, Ty,
    softmax_kernel<Tx, Ty><<<grid, DS_CUDA_THREADS, 0, stream>>> (
      (const Tx *) x, (Ty *) y, n, row_stride, batch_stride, causal_q0)));
  return ds_cuda_launched ();
}
