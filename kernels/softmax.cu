/* softmax.cu: row softmax, also attention's (strided rows, per-head batches,
 * causal mask).
 *
 * One block per row: max (float), then exp(x - max) written to y while summing
 * in double, then y *= (float) (1 / sum) — the CPU reference's exact recipe.
 * Each thread touches the same indices in every pass and the passes are
 * separated by block barriers, so y may be x.
 */
#include "ds-cuda-util.cuh"

static __global__ void
softmax_kernel (const float *x, float *y, int64_t n, int64_t row_stride, int64_t batch_stride,
                int64_t causal_q0)
{
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t r = blockIdx.x;
  const int64_t off = (int64_t) blockIdx.y * batch_stride + r * row_stride;
  const float *xr = x + off;
  float *yr = y + off;
  /* Causal: query causal_q0 + r sees keys 0 .. causal_q0 + r. */
  const int64_t seen = causal_q0 >= 0 && causal_q0 + r + 1 < n ? causal_q0 + r + 1 : n;

  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < seen; i += blockDim.x)
    mx = fmaxf (mx, xr[i]);
  mx = ds_block_max (mx, redf);

  double s = 0;
  for (int64_t i = threadIdx.x; i < seen; i += blockDim.x)
    {
      float e = expf (xr[i] - mx);
      yr[i] = e;
      s += e;
    }
  const float inv = (float) (1.0 / ds_block_sum (s, redd));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = i < seen ? yr[i] * inv : 0.0f;
}

extern "C" cudaError_t
ds_cuda_softmax (const float *x, float *y, int64_t rows, int64_t n, int64_t row_stride,
                 int64_t batch, int64_t batch_stride, int64_t causal_q0, cudaStream_t stream)
{
  if (rows <= 0 || n <= 0 || batch <= 0)
    return cudaSuccess;
  if (rows > INT32_MAX || batch > 65535)
    return cudaErrorInvalidValue;
  dim3 grid ((unsigned) rows, (unsigned) batch);
  softmax_kernel<<<grid, DS_CUDA_THREADS, 0, stream>>> (x, y, n, row_stride, batch_stride,
                                                        causal_q0);
  return ds_cuda_launched ();
}
