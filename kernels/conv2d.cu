/* conv2d.cu: im2col for the convolution (the GEMM is cuBLAS, in ds-backend-cuda.c).
 *
 * One thread per column element, reading straight from the image: simple and
 * bounded by the backend's row blocks, not the fastest possible (an implicit-
 * GEMM kernel would skip the column matrix altogether). The per-channel bias is
 * added afterwards with ds_cuda_add (elementwise.cu).
 */
#include "ds-cuda-util.cuh"

/* col [ci*kh*kw, rows*wo]; see ds_cuda_im2col. */
template <typename T>
static __global__ void
im2col_kernel (DsCudaConvGeom g, const T *__restrict__ x, int64_t r0, int64_t rows,
               T *__restrict__ col)
{
  const int64_t ncol = rows * g.wo, total = g.ci * g.kh * g.kw * ncol;
  for (int64_t i = ds_cuda_tid (); i < total; i += ds_cuda_nthreads ())
    {
      const int64_t row = i / ncol, p = i % ncol;
      const int64_t r = p / g.wo, ox = p % g.wo;
      const int64_t kx = row % g.kw, ky = (row / g.kw) % g.kh, c = row / (g.kw * g.kh);
      const int64_t iy = (r0 + r) * g.stride - g.pad_top + ky;
      const int64_t ix = ox * g.stride - g.pad_left + kx;
      T v = T (0); /* +0.0 in every storage type */
      if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
        v = x[(c * g.h + iy) * g.w + ix];
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
  DS_CUDA_DISPATCH_BITS (dt, T,
    im2col_kernel<T><<<ds_cuda_blocks (total), DS_CUDA_THREADS, 0, stream>>> (
      *g, (const T *) x, r0, rows, (T *) col));
  return ds_cuda_launched ();
}
