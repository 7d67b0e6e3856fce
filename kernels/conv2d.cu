/* conv2d.cu: im2col for the convolution (the GEMM is cuBLAS, in ds-backend-cuda.c).
 *
 * One thread per column element, reading straight from the image: simple and
 * bounded by the backend's row blocks, not the fastest possible (an implicit-
 * GEMM kernel would skip the column matrix altogether). The per-channel bias is
 * added afterwards with ds_cuda_add (elementwise.cu).
 */
#include "ds-cuda-util.cuh"

/* col [ci*kh*kw, rows*wo]; see ds_cuda_im2col. */
template <typename T, typename I>
static __global__ void
im2col_kernel (DsCudaConvGeom g, const T *__restrict__ x, I r0, I rows, T *__restrict__ col)
{
  const I wo = (I) g.wo, kw = (I) g.kw, kh = (I) g.kh, h = (I) g.h, w = (I) g.w;
  const I ncol = rows * wo, total = (I) g.ci * kh * kw * ncol;
  for (I i = (I) ds_cuda_tid (); i < total; i += (I) ds_cuda_nthreads ())
    {
      const I row = i / ncol, p = i % ncol;
      const I r = p / wo, ox = p % wo;
      const I kx = row % kw, kk = row / kw, ky = kk % kh, c = kk / kh;
      const I iy = (r0 + r) * (I) g.stride - (I) g.pad_top + ky;
      const I ix = ox * (I) g.stride - (I) g.pad_left + kx;
      T v = T (0); /* +0.0 in every storage type */
      if (iy >= 0 && iy < h && ix >= 0 && ix < w)
        v = x[((int64_t) c * h + iy) * w + ix];
      col[i] = v;
    }
}

extern "C" cudaError_t
ds_cuda_im2col (DsDType dt, const DsCudaConvGeom *g, const void *x, int64_t r0, int64_t rows,
                void *col, cudaStream_t stream)
{
  const int64_t total = g->ci * g->kh * g->kw * rows * g->wo;
  if (total <= 0)
    return cudaSuccess;
  /* 32-bit indices need the image and the columns to fit */
  const int64_t span = total > g->ci * g->h * g->w ? total : g->ci * g->h * g->w;
  DS_CUDA_DISPATCH_BITS (dt, T, DS_CUDA_INDEX (span + r0 * g->wo, I,
    im2col_kernel<T, I><<<ds_cuda_blocks (total), DS_CUDA_THREADS, 0, stream>>> (
      *g, (const T *) x, (I) r0, (I) rows, (T *) col)));
  return ds_cuda_launched ();
}
