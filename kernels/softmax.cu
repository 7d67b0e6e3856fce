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

template <typename Tx, typename Ty>
static __global__ void
softmax_kernel (const Tx *x, Ty *y, int64_t n, int64_t row_stride, int64_t batch_stride,
                int64_t causal_q0)
{
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t r = blockIdx.x;
  const int64_t off = (int64_t) blockIdx.y * batch_stride + r * row_stride;
  const Tx *xr = x + off;
  Ty *yr = y + off;
  const bool in_place = (const void *) x == (const void *) y;
  /* Causal: query causal_q0 + r sees keys 0 .. causal_q0 + r. */
  const int64_t seen = causal_q0 >= 0 && causal_q0 + r + 1 < n ? causal_q0 + r + 1 : n;

  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < seen; i += blockDim.x)
    mx = fmaxf (mx, ds_ld (xr + i));
  mx = ds_block_max (mx, redf);

  double s = 0;
  for (int64_t i = threadIdx.x; i < seen; i += blockDim.x)
    {
      float e = expf (ds_ld (xr + i) - mx);
      if (in_place)
        ds_st (yr + i, e);
      s += e;
    }
  const float inv = (float) (1.0 / ds_block_sum (s, redd));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    {
      float e = 0.0f;
      if (i < seen)
        e = in_place ? ds_ld (yr + i) : expf (ds_ld (xr + i) - mx);
      ds_st (yr + i, i < seen ? e * inv : 0.0f);
    }
}

#define SHORT_ROW 1024
#define WARP_ROWS 8

/* The same recipe with a warp per row; every lane gets the reductions. */
template <typename Tx, typename Ty>
static __global__ void
softmax_warp_kernel (const Tx *x, Ty *y, int64_t rows, int64_t n, int64_t row_stride,
                     int64_t batch_stride, int64_t causal_q0)
{
  const int lane = threadIdx.x % 32;
  const int64_t r = (int64_t) blockIdx.x * WARP_ROWS + threadIdx.x / 32;
  if (r >= rows)
    return; /* whole warps only: no shuffle is left waiting */
  const int64_t off = (int64_t) blockIdx.y * batch_stride + r * row_stride;
  const Tx *xr = x + off;
  Ty *yr = y + off;
  const bool in_place = (const void *) x == (const void *) y;
  const int64_t seen = causal_q0 >= 0 && causal_q0 + r + 1 < n ? causal_q0 + r + 1 : n;

  float mx = -INFINITY;
  for (int64_t i = lane; i < seen; i += 32)
    mx = fmaxf (mx, ds_ld (xr + i));
  for (int o = 16; o > 0; o >>= 1)
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, o));
  double s = 0;
  for (int64_t i = lane; i < seen; i += 32)
    {
      float e = expf (ds_ld (xr + i) - mx);
      if (in_place)
        ds_st (yr + i, e);
      s += e;
    }
  const float inv = (float) (1.0 / ds_warp_allsum (s));
  for (int64_t i = lane; i < n; i += 32)
    {
      float e = 0.0f;
      if (i < seen)
        e = in_place ? ds_ld (yr + i) : expf (ds_ld (xr + i) - mx);
      ds_st (yr + i, i < seen ? e * inv : 0.0f);
    }
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
