/* ds-backend-cpu.c: the CPU reference backend.
 *
 * Every op in plain fp32 C, written to be read and trusted: this is what the
 * CUDA kernels are tested against and what runs when there is no GPU. Linear
 * layers also take f16/bf16 weights (the mixed linear, ds-ops.h), widened to
 * f32 by vector kernels as they are read. The GEMM-
 * shaped ops (conv2d via im2col, linear, matmul, attention) go through OpenBLAS,
 * which may thread internally; the norms, activations and GEGLU split their
 * independent items over as many threads (parallel_for), the rest are
 * single-threaded loops over contiguous memory. Norms accumulate mean and
 * (biased) variance in double.
 *
 * Memory: conv2d and attention work through one growable scratch buffer owned by
 * the backend, in bounded pieces (an image's im2col columns in row blocks of at
 * most COL_BUDGET_BYTES; attention scores for one head and ATTN_BLOCK_FLOATS
 * worth of query rows), so SD's 4096-token self-attention and the VAE's 512x512
 * convolutions never materialise their full intermediate matrices.
 *
 * Shapes were asserted by ds_op_run (see ds-ops.c); this file trusts them.
 */
#include "ds-ops.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define COL_BUDGET_BYTES ((size_t) 256 << 20)
/* 4 MiB of scores (256 query rows at SD's 4096 keys): big enough for the two
 * GEMMs per block to run near full speed, small next to the [4096, 4096] matrix. */
#define ATTN_BLOCK_FLOATS ((int64_t) 1 << 20)
#define MAX_WORKERS 64 /* threads of one op */

typedef struct {
  float *scratch;        /* (scratch_len) f32, contents undefined between ops */
  size_t scratch_len;
} CpuImpl;

/* Vector math: glibc's libmvec has SIMD expf and erff. Declaring them "declare
 * simd" (as math-vector.h does, but only under -ffast-math) lets the
 * `#pragma omp simd` loops below call the vector versions (a few ulp, like
 * the scalar ones) without fast-math's other changes. Needs -fopenmp-simd.
 * The functions marked SIMD_CLONES are also built for AVX2 and AVX-512, and
 * the loader picks the widest the CPU has (target_clones), so those loops use
 * libmvec's 8- and 16-wide versions instead of the baseline's 4-wide ones: a
 * 4096-wide softmax row 2.7x faster on the development machine's AVX-512. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__)
#pragma omp declare simd notinbranch
extern float expf (float);
#pragma omp declare simd notinbranch
extern float erff (float);
#define SIMD_CLONES __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* At least n floats of scratch; NULL with err set when memory runs out. */

static float *
cpu_scratch (DsBackend *be, size_t n, DsError *err)
{
  CpuImpl *impl = be->impl;
  if (n <= impl->scratch_len)
    return impl->scratch;
  free (impl->scratch);
  impl->scratch = malloc (n * sizeof (float));
  impl->scratch_len = impl->scratch ? n : 0;
  if (!impl->scratch)
    ds_error_set (err, DS_ERR_NOMEM, "CPU backend: out of host memory for %zu MiB of scratch",
                  (n * sizeof (float)) >> 20);
  return impl->scratch;
}

/* BLAS takes int dimensions; the engine's tensors stay far below INT_MAX. */
static int
blas_dim (int64_t n)
{
  assert (n >= 0 && n <= INT_MAX);
  return (int) n;
}

/* C[m,n] (row stride ldc) = alpha * op(A) op(B) + beta * C, row-major. */
static void
sgemm (bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
       int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
  cblas_sgemm (CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
               blas_dim (m), blas_dim (n), blas_dim (k), alpha, a, blas_dim (lda), b,
               blas_dim (ldb), beta, c, blas_dim (ldc));
}

static inline float
silu_f (float x)
{
  return x / (1.0f + expf (-x));
}

static inline float
gelu_f (float x)
{
  return 0.5f * x * (1.0f + erff (x * (float) M_SQRT1_2));
}

/* ---- conv2d ---- */

typedef struct {
  int64_t ci, h, w;     /* input planes */
  int64_t kh, kw;
  int64_t ho, wo;       /* output size */
  int stride, pad_top, pad_left;
} ConvGeom;

/* Columns for output rows [r0, r0 + rows) of one image x[Ci,H,W]:
 * col[(ci*kh + ky)*kw + kx][r*Wo + ox] = x[ci][oy*s - pt + ky][ox*s - pl + kx]
 * with oy = r0 + r, zero where the input index falls in the padding. */
static void
im2col_rows (const ConvGeom *g, const float *x, int64_t r0, int64_t rows, float *col)
{
  const int64_t s = g->stride, ncol = rows * g->wo;
  for (int64_t ci = 0; ci < g->ci; ci++)
    for (int64_t ky = 0; ky < g->kh; ky++)
      for (int64_t kx = 0; kx < g->kw; kx++)
        {
          float *dst = col + ((ci * g->kh + ky) * g->kw + kx) * ncol;
          /* Output columns [lo, hi) read inside the row: ox*s - pl + kx in [0, W). */
          int64_t off = g->pad_left - kx;
          int64_t lo = off > 0 ? (off + s - 1) / s : 0;
          int64_t last = g->w - 1 + off;
          int64_t hi = last < 0 ? 0 : last / s + 1;
          if (hi > g->wo)
            hi = g->wo;
          if (lo > hi)
            lo = hi;
          for (int64_t r = 0; r < rows; r++, dst += g->wo)
            {
              int64_t iy = (r0 + r) * s - g->pad_top + ky;
              if (iy < 0 || iy >= g->h)
                {
                  memset (dst, 0, (size_t) g->wo * sizeof (float));
                  continue;
                }
              const float *src = x + (ci * g->h + iy) * g->w;
              for (int64_t ox = 0; ox < lo; ox++)
                dst[ox] = 0.0f;
              if (s == 1)
                memcpy (dst + lo, src + lo - off, (size_t) (hi - lo) * sizeof (float));
              else
                for (int64_t ox = lo; ox < hi; ox++)
                  dst[ox] = src[ox * s - off];
              for (int64_t ox = hi; ox < g->wo; ox++)
                dst[ox] = 0.0f;
            }
        }
}

static DsStatus
cpu_conv2d (DsBackend *be, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0], *wt = c->src[1], *bt = c->src[2];
  ConvGeom g = {
    .ci = xt->shape[1], .h = xt->shape[2], .w = xt->shape[3],
    .kh = wt->shape[2], .kw = wt->shape[3],
    .ho = c->dst->shape[2], .wo = c->dst->shape[3],
    .stride = c->p.conv2d.stride, .pad_top = c->p.conv2d.pad_top,
    .pad_left = c->p.conv2d.pad_left,
  };
  const int64_t nb = xt->shape[0], co = wt->shape[0];
  const int64_t kdim = g.ci * g.kh * g.kw, npix = g.ho * g.wo;
  const float *x = ds_tensor_f32 (xt), *w = ds_tensor_f32 (wt);
  const float *bias = bt ? ds_tensor_f32 (bt) : NULL;
  float *y = ds_tensor_f32 (c->dst);
  /* A 1x1, stride-1, unpadded convolution is a GEMM on the image itself. */
  bool direct = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad_top == 0
                && g.pad_left == 0 && c->p.conv2d.pad_bottom == 0
                && c->p.conv2d.pad_right == 0;

  size_t row_bytes = (size_t) (kdim * g.wo) * sizeof (float);
  int64_t block = row_bytes ? (int64_t) (COL_BUDGET_BYTES / row_bytes) : g.ho;
  if (block < 1)
    block = 1;
  if (block > g.ho)
    block = g.ho;
  float *col = NULL;
  if (!direct && !(col = cpu_scratch (be, (size_t) (kdim * block * g.wo), err)))
    return err ? err->code : DS_ERR_NOMEM;

  for (int64_t n = 0; n < nb; n++)
    {
      const float *xn = x + n * g.ci * g.h * g.w;
      float *yn = y + n * co * npix; /* [Co, Ho*Wo] */
      if (bias)
        for (int64_t o = 0; o < co; o++)
          for (int64_t i = 0; i < npix; i++)
            yn[o * npix + i] = bias[o];
      float beta = bias ? 1.0f : 0.0f;
      if (direct)
        {
          sgemm (false, false, co, npix, g.ci, 1.0f, w, g.ci, xn, npix, beta, yn, npix);
          continue;
        }
      for (int64_t r0 = 0; r0 < g.ho; r0 += block)
        {
          int64_t rows = g.ho - r0 < block ? g.ho - r0 : block;
          im2col_rows (&g, xn, r0, rows, col);
          /* y[:, r0*Wo : (r0+rows)*Wo] (+)= w[Co, kdim] . col[kdim, rows*Wo] */
          sgemm (false, false, co, rows * g.wo, kdim, 1.0f, w, kdim, col, rows * g.wo, beta,
                 yn + r0 * g.wo, npix);
        }
    }
  return DS_OK;
}

/* ---- threads for the loops that are not GEMMs ----
 *
 * Norms, activations and GEGLU are loops over independent items (groups,
 * rows, elements); with OpenBLAS idle between GEMMs they get one plain pthread
 * per OpenBLAS thread, each on a contiguous range of items. Every item is
 * computed exactly as on one thread, so results do not change. */

static int blas_threads (void);

/* fn on each of the n jobs (job_size bytes apart): job 0 on the calling
 * thread, the others on new threads (those that cannot start run here too),
 * all finished on return. */
static void
run_threads (void *(*fn) (void *), void *jobs, size_t job_size, int n)
{
  assert (n >= 1 && n <= MAX_WORKERS);
  pthread_t tid[MAX_WORKERS];
  int started = 1;
  for (; started < n; started++)
    if (pthread_create (&tid[started], NULL, fn, (char *) jobs + started * job_size) != 0)
      break;
  fn (jobs);
  for (int i = started; i < n; i++)
    fn ((char *) jobs + i * job_size);
  for (int i = 1; i < started; i++)
    pthread_join (tid[i], NULL);
}

typedef void (*RangeFn) (const DsOpCall *c, int64_t lo, int64_t hi);

typedef struct {
  RangeFn fn;
  const DsOpCall *c;
  int64_t lo, hi;
} RangeJob;

static void *
range_worker (void *arg)
{
  const RangeJob *j = arg;
  j->fn (j->c, j->lo, j->hi);
  return NULL;
}

/* fn over items [0, n), split among threads when the op moves at least
 * ~1M values (`values` in all; below that a thread costs more than it saves). */
static void
parallel_for (RangeFn fn, const DsOpCall *c, int64_t n, int64_t values)
{
  int w = blas_threads ();
  if (values < ((int64_t) 1 << 20))
    w = 1;
  w = w < 1 ? 1 : w > MAX_WORKERS ? MAX_WORKERS : (int64_t) w > n ? (int) n : w;
  if (w <= 1)
    {
      fn (c, 0, n);
      return;
    }
  RangeJob jobs[MAX_WORKERS];
  for (int i = 0; i < w; i++)
    jobs[i] = (RangeJob){ fn, c, n * i / w, n * (i + 1) / w };
  run_threads (range_worker, jobs, sizeof jobs[0], w);
}

/* ---- normalisation ---- */

/* Mean and 1/sqrt(biased variance + eps) of n values, two passes in double
 * (each a SIMD reduction: several partial sums, not one long chain of adds). */
static void
moments (const float *x, int64_t n, float eps, float *mean_out, float *rstd_out)
{
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; i++)
    sum += x[i];
  double mean = sum / (double) n, var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t i = 0; i < n; i++)
    {
      double d = x[i] - mean;
      var += d * d;
    }
  var /= (double) n;
  *mean_out = (float) mean;
  *rstd_out = (float) (1.0 / sqrt (var + eps));
}

/* (item, group) pairs [lo, hi) */
SIMD_CLONES static void
group_norm_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const DsTensor *xt = c->src[0];
  const int64_t nb = xt->shape[0], ch = xt->shape[1];
  const int64_t spatial = ds_tensor_numel (xt) / (nb * ch);
  const int64_t groups = c->p.group_norm.groups, cg = ch / groups;
  const float *gamma = ds_tensor_f32 (c->src[1]), *beta = ds_tensor_f32 (c->src[2]);
  const bool silu = c->p.group_norm.silu;

  for (int64_t ng = lo; ng < hi; ng++)
    {
      const int64_t n = ng / groups, g = ng % groups;
      /* The group's channels are contiguous: cg * spatial values. */
      int64_t base = (n * ch + g * cg) * spatial;
      const float *x = ds_tensor_f32 (xt) + base;
      float *y = ds_tensor_f32 (c->dst) + base;
      float mean, rstd;
      moments (x, cg * spatial, c->p.group_norm.eps, &mean, &rstd);
      for (int64_t j = 0; j < cg; j++)
        {
          const float ga = gamma[g * cg + j], bi = beta[g * cg + j];
          const int64_t i0 = j * spatial, i1 = i0 + spatial;
          if (silu) /* two loops: a branch inside keeps expf from vectorising */
            {
#pragma omp simd
              for (int64_t i = i0; i < i1; i++)
                y[i] = silu_f ((x[i] - mean) * rstd * ga + bi);
            }
          else
            {
#pragma omp simd
              for (int64_t i = i0; i < i1; i++)
                y[i] = (x[i] - mean) * rstd * ga + bi;
            }
        }
    }
}

static DsStatus
cpu_group_norm (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  parallel_for (group_norm_range, c, xt->shape[0] * c->p.group_norm.groups,
                ds_tensor_numel (xt));
  return DS_OK;
}

/* rows [lo, hi) */
SIMD_CLONES static void
layer_norm_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const DsTensor *xt = c->src[0];
  const int64_t ch = xt->shape[xt->ndim - 1];
  const float *gamma = ds_tensor_f32 (c->src[1]), *beta = ds_tensor_f32 (c->src[2]);

  for (int64_t r = lo; r < hi; r++)
    {
      const float *x = ds_tensor_f32 (xt) + r * ch;
      float *y = ds_tensor_f32 (c->dst) + r * ch;
      float mean, rstd;
      moments (x, ch, c->p.layer_norm.eps, &mean, &rstd);
#pragma omp simd
      for (int64_t i = 0; i < ch; i++)
        y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
    }
}

static DsStatus
cpu_layer_norm (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int64_t n = ds_tensor_numel (xt);
  parallel_for (layer_norm_range, c, n / xt->shape[xt->ndim - 1], n);
  return DS_OK;
}

/* ---- GEMM ops ---- */

static DsStatus
cpu_linear (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0], *wt = c->src[1], *bt = c->src[2], *rt = c->src[3];
  const int64_t k = wt->shape[1], n = wt->shape[0], m = ds_tensor_numel (c->dst) / n;
  float *y = ds_tensor_f32 (c->dst);
  if (m == 0 || n == 0)
    return DS_OK;
  /* y starts as the residual plus the bias (or the bias, or nothing), then
   * y[M,N] (+)= x[M,K] . w[N,K]^T */
  if (rt && rt->data != c->dst->data)
    memcpy (y, rt->data, ds_tensor_nbytes (c->dst));
  if (bt && rt)
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++)
        y[r * n + j] += ds_tensor_f32 (bt)[j];
  else if (bt)
    for (int64_t r = 0; r < m; r++)
      memcpy (y + r * n, bt->data, (size_t) n * sizeof (float));
  if (k == 0)
    {
      if (!bt && !rt)
        memset (y, 0, ds_tensor_nbytes (c->dst));
      return DS_OK;
    }
  sgemm (false, true, m, n, k, 1.0f, ds_tensor_f32 (xt), k, ds_tensor_f32 (wt), k,
         bt || rt ? 1.0f : 0.0f, y, n);
  return DS_OK;
}

/* ---- the mixed linear: f16/bf16 weights, f32 activations (ds-ops.h) ----
 *
 * y = init + x . widen(w)^T, init being r + b, b, r or 0 as in cpu_linear, so
 * the only difference from the f32 linear on widened weights is the order of
 * the K-term sums (widening f16/bf16 to f32 is exact). Two paths:
 *  - up to MIXED_GEMV_ROWS rows of x (a decode step): each output row's weight
 *    row is streamed once from memory and dotted with every x row while it
 *    sits in L1, threads taking chunks of output rows; memory-bound, reading
 *    2 bytes per weight instead of the f32 linear's 4.
 *  - more rows (a prefill): blocks of weight rows are widened into f32 scratch
 *    (MIXED_BLOCK_BYTES at most, threaded) and multiplied by OpenBLAS's sgemm
 *    into the block's output columns; the widening costs O(N K) against the
 *    GEMM's O(M N K).
 * The vector kernels (F16C/AVX2 and AVX-512) are picked at run time; a
 * portable scalar loop serves other CPUs. */

#define MIXED_GEMV_ROWS 8
#define MIXED_BLOCK_BYTES ((size_t) 16 << 20)
/* Weights (4 KiB) the GEMV prefetches ahead of its reads: on the development
 * machine's AVX-512 path 33-37 GB/s for [11008, 4096] on two threads, against
 * 12-32 at 1 KiB ahead and 33-36 at 8 KiB. */
#define MIXED_PREFETCH 2048

static inline float
widen1 (uint16_t h, bool bf16)
{
  return bf16 ? ds_bf16_to_f32 (h) : ds_f16_to_f32 (h);
}

static void
widen_scalar (const uint16_t *s, bool bf16, float *d, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    d[i] = widen1 (s[i], bf16);
}

/* y[r * ldy] = init[r * ldy] + sum_k x[r * k + i] w[i], r < m, one f32 chain per
 * row in order of k. */
static void
dot_rows_scalar (const float *x, int64_t m, const uint16_t *w, bool bf16, int64_t k, float *y,
                 int64_t ldy)
{
  for (int64_t r = 0; r < m; r++)
    {
      float acc = 0.0f;
      for (int64_t i = 0; i < k; i++)
        acc += x[r * k + i] * widen1 (w[i], bf16);
      y[r * ldy] += acc;
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86_KERNELS 1

/* From CPUID: clang before 16 has no "f16c" for __builtin_cpu_supports. */
static bool
cpu_has_f16c (void)
{
  unsigned a, b, c, d;
  return __get_cpuid (1, &a, &b, &c, &d) && (c & bit_F16C);
}

__attribute__ ((target ("avx512f"))) static inline __m512
widen16_avx512 (const uint16_t *s, bool bf16)
{
  __m256i h = _mm256_loadu_si256 ((const __m256i *) s);
  if (bf16)
    return _mm512_castsi512_ps (_mm512_slli_epi32 (_mm512_cvtepu16_epi32 (h), 16));
  return _mm512_cvtph_ps (h);
}

__attribute__ ((target ("avx512f"))) static void
widen_avx512 (const uint16_t *s, bool bf16, float *d, int64_t n)
{
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps (d + i, widen16_avx512 (s + i, bf16));
  widen_scalar (s + i, bf16, d + i, n - i);
}

/* Four accumulators of 16 lanes each (64 weights per step) hide the FMA latency. */
__attribute__ ((target ("avx512f"))) static void
dot_rows_avx512 (const float *x, int64_t m, const uint16_t *w, bool bf16, int64_t k, float *y,
                 int64_t ldy)
{
  for (int64_t r = 0; r < m; r++)
    {
      const float *xr = x + r * k;
      __m512 a0 = _mm512_setzero_ps (), a1 = a0, a2 = a0, a3 = a0;
      int64_t i = 0;
      for (; i + 64 <= k; i += 64)
        {
          /* ahead into the row (and the next row's start): more reads in
           * flight than the hardware prefetcher keeps alone */
          _mm_prefetch ((const char *) (w + i + MIXED_PREFETCH), _MM_HINT_T0);
          _mm_prefetch ((const char *) (w + i + MIXED_PREFETCH + 32), _MM_HINT_T0);
          a0 = _mm512_fmadd_ps (_mm512_loadu_ps (xr + i), widen16_avx512 (w + i, bf16), a0);
          a1 = _mm512_fmadd_ps (_mm512_loadu_ps (xr + i + 16), widen16_avx512 (w + i + 16, bf16),
                                a1);
          a2 = _mm512_fmadd_ps (_mm512_loadu_ps (xr + i + 32), widen16_avx512 (w + i + 32, bf16),
                                a2);
          a3 = _mm512_fmadd_ps (_mm512_loadu_ps (xr + i + 48), widen16_avx512 (w + i + 48, bf16),
                                a3);
        }
      for (; i + 16 <= k; i += 16)
        a0 = _mm512_fmadd_ps (_mm512_loadu_ps (xr + i), widen16_avx512 (w + i, bf16), a0);
      float acc = _mm512_reduce_add_ps (_mm512_add_ps (_mm512_add_ps (a0, a1),
                                                       _mm512_add_ps (a2, a3)));
      for (; i < k; i++)
        acc += xr[i] * widen1 (w[i], bf16);
      y[r * ldy] += acc;
    }
}

__attribute__ ((target ("avx2,f16c,fma"))) static inline __m256
widen8_avx2 (const uint16_t *s, bool bf16)
{
  __m128i h = _mm_loadu_si128 ((const __m128i *) s);
  if (bf16)
    return _mm256_castsi256_ps (_mm256_slli_epi32 (_mm256_cvtepu16_epi32 (h), 16));
  return _mm256_cvtph_ps (h);
}

__attribute__ ((target ("avx2,f16c,fma"))) static void
widen_avx2 (const uint16_t *s, bool bf16, float *d, int64_t n)
{
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps (d + i, widen8_avx2 (s + i, bf16));
  widen_scalar (s + i, bf16, d + i, n - i);
}

__attribute__ ((target ("avx2,f16c,fma"))) static void
dot_rows_avx2 (const float *x, int64_t m, const uint16_t *w, bool bf16, int64_t k, float *y,
               int64_t ldy)
{
  for (int64_t r = 0; r < m; r++)
    {
      const float *xr = x + r * k;
      __m256 a0 = _mm256_setzero_ps (), a1 = a0, a2 = a0, a3 = a0;
      int64_t i = 0;
      for (; i + 32 <= k; i += 32)
        {
          _mm_prefetch ((const char *) (w + i + MIXED_PREFETCH), _MM_HINT_T0);
          a0 = _mm256_fmadd_ps (_mm256_loadu_ps (xr + i), widen8_avx2 (w + i, bf16), a0);
          a1 = _mm256_fmadd_ps (_mm256_loadu_ps (xr + i + 8), widen8_avx2 (w + i + 8, bf16), a1);
          a2 = _mm256_fmadd_ps (_mm256_loadu_ps (xr + i + 16), widen8_avx2 (w + i + 16, bf16),
                                a2);
          a3 = _mm256_fmadd_ps (_mm256_loadu_ps (xr + i + 24), widen8_avx2 (w + i + 24, bf16),
                                a3);
        }
      for (; i + 8 <= k; i += 8)
        a0 = _mm256_fmadd_ps (_mm256_loadu_ps (xr + i), widen8_avx2 (w + i, bf16), a0);
      __m256 s8 = _mm256_add_ps (_mm256_add_ps (a0, a1), _mm256_add_ps (a2, a3));
      __m128 s4 = _mm_add_ps (_mm256_castps256_ps128 (s8), _mm256_extractf128_ps (s8, 1));
      s4 = _mm_add_ps (s4, _mm_movehl_ps (s4, s4));
      s4 = _mm_add_ss (s4, _mm_movehdup_ps (s4));
      float acc = _mm_cvtss_f32 (s4);
      for (; i < k; i++)
        acc += xr[i] * widen1 (w[i], bf16);
      y[r * ldy] += acc;
    }
}
#endif

typedef void (*WidenFn) (const uint16_t *s, bool bf16, float *d, int64_t n);
typedef void (*DotRowsFn) (const float *x, int64_t m, const uint16_t *w, bool bf16, int64_t k,
                           float *y, int64_t ldy);

/* The widest kernels this CPU runs, or narrower ones where DS_CPU_KERNELS
 * caps them ("scalar" or "avx2"; ds-ops.h); returns their name. */
static const char *
mixed_kernels (WidenFn *widen, DotRowsFn *dot)
{
  const char *cap = getenv ("DS_CPU_KERNELS");
  const int level = !cap ? 2 : strcmp (cap, "scalar") == 0 ? 0 : strcmp (cap, "avx2") == 0 ? 1 : 2;
#ifdef HAVE_X86_KERNELS
  __builtin_cpu_init ();
  if (level >= 2 && __builtin_cpu_supports ("avx512f"))
    {
      *widen = widen_avx512;
      *dot = dot_rows_avx512;
      return "avx512";
    }
  if (level >= 1 && __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
      && cpu_has_f16c ())
    {
      *widen = widen_avx2;
      *dot = dot_rows_avx2;
      return "avx2";
    }
#else
  (void) level;
#endif
  *widen = widen_scalar;
  *dot = dot_rows_scalar;
  return "scalar";
}

const char *
ds_cpu_mixed_kernels (void)
{
  WidenFn widen;
  DotRowsFn dot;
  return mixed_kernels (&widen, &dot);
}

/* y rows [0, m) of output columns [lo, hi) = r + b, b, r or 0, as cpu_linear
 * starts them. */
static void
linear_init_cols (const DsOpCall *c, int64_t m, int64_t lo, int64_t hi)
{
  const DsTensor *bt = c->src[2], *rt = c->src[3];
  const int64_t n = c->src[1]->shape[0];
  const float *b = bt ? ds_tensor_f32 (bt) : NULL, *res = rt ? ds_tensor_f32 (rt) : NULL;
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = lo; j < hi; j++)
      {
        float v = res ? res[r * n + j] : 0.0f;
        y[r * n + j] = b ? (res ? v + b[j] : b[j]) : v;
      }
}

/* A mixed linear on few rows: workers take chunks of MIXED_CHUNK output
 * columns from a shared counter, so a thread the OS runs less (a busy
 * machine) takes fewer chunks instead of holding the others up. */
#define MIXED_CHUNK 64

typedef struct {
  const DsOpCall *c;
  DotRowsFn dot;
  atomic_int_fast64_t next; /* the next chunk's first column */
} GemvShared;

static void *
mixed_gemv_worker (void *arg)
{
  GemvShared *g = *(GemvShared **) arg;
  const DsOpCall *c = g->c;
  const DsTensor *wt = c->src[1];
  const int64_t k = wt->shape[1], n = wt->shape[0], m = ds_tensor_numel (c->dst) / n;
  const bool bf16 = wt->dtype == DS_DTYPE_BF16;
  const uint16_t *w = wt->data;
  float *y = ds_tensor_f32 (c->dst);
  for (;;)
    {
      const int64_t lo = atomic_fetch_add (&g->next, MIXED_CHUNK);
      if (lo >= n)
        break;
      const int64_t hi = lo + MIXED_CHUNK < n ? lo + MIXED_CHUNK : n;
      linear_init_cols (c, m, lo, hi);
      for (int64_t j = lo; j < hi; j++)
        g->dot (ds_tensor_f32 (c->src[0]), m, w + j * k, bf16, k, y + j, n);
    }
  return NULL;
}

static void
mixed_gemv (const DsOpCall *c)
{
  WidenFn widen;
  GemvShared g = { .c = c };
  mixed_kernels (&widen, &g.dot);
  atomic_init (&g.next, 0);
  const DsTensor *wt = c->src[1];
  const int64_t n = wt->shape[0], m = ds_tensor_numel (c->dst) / n;
  int t = blas_threads ();
  t = t < 1 ? 1 : t > MAX_WORKERS ? MAX_WORKERS : t;
  if (n * (wt->shape[1] + m) < ((int64_t) 1 << 20) || n <= MIXED_CHUNK)
    t = 1;
  GemvShared *jobs[MAX_WORKERS];
  for (int i = 0; i < t; i++)
    jobs[i] = &g;
  run_threads (mixed_gemv_worker, jobs, sizeof jobs[0], t);
}

typedef struct {
  WidenFn widen;
  const uint16_t *src;
  bool bf16;
  float *dst;
  int64_t n;
} WidenJob;

static void *
widen_worker (void *arg)
{
  const WidenJob *j = arg;
  j->widen (j->src, j->bf16, j->dst, j->n);
  return NULL;
}

/* n values widened into dst, split among the OpenBLAS threads. */
static void
widen_parallel (WidenFn widen, const uint16_t *src, bool bf16, float *dst, int64_t n)
{
  int t = blas_threads ();
  t = t < 1 ? 1 : t > MAX_WORKERS ? MAX_WORKERS : t;
  if (n < ((int64_t) 1 << 20))
    t = 1;
  WidenJob jobs[MAX_WORKERS];
  for (int i = 0; i < t; i++)
    jobs[i] = (WidenJob){ widen, src + n * i / t, bf16, dst + n * i / t,
                          n * (i + 1) / t - n * i / t };
  run_threads (widen_worker, jobs, sizeof jobs[0], t);
}

static DsStatus
cpu_linear_mixed (DsBackend *be, const DsOpCall *c, DsError *err)
{
  const DsTensor *wt = c->src[1];
  const int64_t k = wt->shape[1], n = wt->shape[0], m = ds_tensor_numel (c->dst) / n;
  if (m == 0 || n == 0)
    return DS_OK;
  if (m <= MIXED_GEMV_ROWS || k == 0)
    {
      mixed_gemv (c);
      return DS_OK;
    }
  WidenFn widen;
  DotRowsFn dot;
  mixed_kernels (&widen, &dot);
  int64_t block = (int64_t) (MIXED_BLOCK_BYTES / ((size_t) k * sizeof (float)));
  block = block < 1 ? 1 : block > n ? n : block;
  float *wf = cpu_scratch (be, (size_t) (block * k), err);
  if (!wf)
    return err ? err->code : DS_ERR_NOMEM;
  const bool bf16 = wt->dtype == DS_DTYPE_BF16, init = c->src[2] || c->src[3];
  if (init)
    linear_init_cols (c, m, 0, n);
  for (int64_t j0 = 0; j0 < n; j0 += block)
    {
      const int64_t nb = n - j0 < block ? n - j0 : block;
      widen_parallel (widen, (const uint16_t *) wt->data + j0 * k, bf16, wf, nb * k);
      /* y[:, j0 : j0 + nb] (+)= x[M, K] . wf[nb, K]^T */
      sgemm (false, true, m, nb, k, 1.0f, ds_tensor_f32 (c->src[0]), k, wf, k,
             init ? 1.0f : 0.0f, ds_tensor_f32 (c->dst) + j0, n);
    }
  return DS_OK;
}

static DsStatus
cpu_matmul (const DsOpCall *c)
{
  const DsTensor *at = c->src[0], *bt = c->src[1], *yt = c->dst;
  const bool ta = c->p.matmul.trans_a, tb = c->p.matmul.trans_b;
  const int64_t batch = yt->ndim == 3 ? yt->shape[0] : 1;
  const int64_t m = yt->shape[yt->ndim - 2], n = yt->shape[yt->ndim - 1];
  const int64_t k = ta ? at->shape[at->ndim - 2] : at->shape[at->ndim - 1];
  /* Row strides of the stored matrices: a is [M,K] or [K,M], b is [K,N] or [N,K]. */
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  for (int64_t i = 0; i < batch; i++)
    {
      float *y = ds_tensor_f32 (yt) + i * m * n;
      if (k == 0)
        memset (y, 0, (size_t) (m * n) * sizeof (float));
      else if (m > 0 && n > 0)
        sgemm (ta, tb, m, n, k, c->p.matmul.alpha, ds_tensor_f32 (at) + i * m * k, lda,
               ds_tensor_f32 (bt) + i * k * n, ldb, 0.0f, y, n);
    }
  return DS_OK;
}

/* In place: x[i] = exp(x[i] - max) / sum. */
SIMD_CLONES static void
softmax_row (float *x, int64_t n)
{
  float mx = x[0];
#pragma omp simd reduction(max : mx)
  for (int64_t i = 1; i < n; i++)
    mx = x[i] > mx ? x[i] : mx;
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; i++)
    {
      x[i] = expf (x[i] - mx);
      sum += x[i];
    }
  float inv = (float) (1.0 / sum);
#pragma omp simd
  for (int64_t i = 0; i < n; i++)
    x[i] *= inv;
}

static DsStatus
cpu_softmax (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int64_t n = xt->shape[xt->ndim - 1], rows = n ? ds_tensor_numel (xt) / n : 0;
  for (int64_t r = 0; r < rows; r++)
    {
      float *y = ds_tensor_f32 (c->dst) + r * n;
      if (y != ds_tensor_f32 (xt) + r * n)
        memcpy (y, ds_tensor_f32 (xt) + r * n, (size_t) n * sizeof (float));
      softmax_row (y, n);
    }
  return DS_OK;
}

/* Per batch item and head, a block of query rows at a time:
 *   S[rows, Nk] = scale * Q_h[rows, D] . K_h[Nk, D]^T   (masked, softmaxed in place)
 *   O_h[rows, D] = S . V_h[Nk, D]
 * Head h's channels are h*D .. h*D+D-1 of the [B, N, H*D] token tensors, so the
 * GEMMs read them with row stride H*D. When probs are wanted, S is the probs
 * tensor itself; otherwise the backend's scratch. */
/* OpenBLAS's thread count (1 for another CBLAS, which then runs attention on
 * one thread). */
static int
blas_threads (void)
{
#ifdef OPENBLAS_VERSION
  return openblas_get_num_threads ();
#else
  return 1;
#endif
}

static void
blas_set_threads (int n)
{
#ifdef OPENBLAS_VERSION
  openblas_set_num_threads (n);
#else
  (void) n;
#endif
}

/* One worker's share of the attention: (batch, head) pairs w, w + n_workers, …,
 * each a block of query rows at a time with its own score buffer. */
typedef struct {
  const DsOpCall *c;
  float *scratch; /* [block, nk], or NULL when writing into probs */
  int64_t block;
  int worker, n_workers;
} AttnJob;

static void *
attention_worker (void *arg)
{
  const AttnJob *j = arg;
  const DsOpCall *c = j->c;
  const DsTensor *qt = c->src[0], *kt = c->src[1], *vt = c->src[2];
  DsTensor *probs = c->dst2;
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t ch = qt->shape[2], heads = c->p.attention.heads, d = ch / heads;
  const bool causal = c->p.attention.causal;
  for (int64_t bh = j->worker; bh < nb * heads; bh += j->n_workers)
    {
      const int64_t b = bh / heads, h = bh % heads;
      const float *kh = ds_tensor_f32 (kt) + b * nk * ch + h * d;
      const float *vh = ds_tensor_f32 (vt) + b * nk * ch + h * d;
      for (int64_t q0 = 0; q0 < nq; q0 += j->block)
        {
          int64_t rows = nq - q0 < j->block ? nq - q0 : j->block;
          const float *qh = ds_tensor_f32 (qt) + (b * nq + q0) * ch + h * d;
          float *oh = ds_tensor_f32 (c->dst) + (b * nq + q0) * ch + h * d;
          float *s = probs ? ds_tensor_f32 (probs) + ((b * heads + h) * nq + q0) * nk : j->scratch;
          sgemm (false, true, rows, nk, d, c->p.attention.scale, qh, ch, kh, ch, 0.0f, s, nk);
          for (int64_t r = 0; r < rows; r++)
            {
              float *row = s + r * nk;
              /* Causal: query i sees keys 0..i. */
              int64_t seen = causal && q0 + r + 1 < nk ? q0 + r + 1 : nk;
              softmax_row (row, seen);
              memset (row + seen, 0, (size_t) (nk - seen) * sizeof (float));
            }
          sgemm (false, false, rows, d, nk, 1.0f, s, nk, vh, ch, 0.0f, oh, ch);
        }
    }
  return NULL;
}

/* Per batch item and head, a block of query rows at a time. Large attentions
 * run the (batch, head) pairs on one thread per OpenBLAS thread, each with
 * single-threaded GEMMs: the K = 64 / N = 64 products and the softmax then use
 * every core, which multi-threaded GEMM calls on such shapes do not. */
static DsStatus
cpu_attention (DsBackend *be, const DsOpCall *c, DsError *err)
{
  const DsTensor *qt = c->src[0], *kt = c->src[1];
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t heads = c->p.attention.heads;

  int64_t block = ATTN_BLOCK_FLOATS / nk;
  if (block < 1)
    block = 1;
  if (block > nq)
    block = nq;
  int n_workers = blas_threads ();
  if (n_workers > MAX_WORKERS)
    n_workers = MAX_WORKERS;
  if (n_workers > nb * heads)
    n_workers = (int) (nb * heads);
  if (n_workers < 1 || nq * nk * heads * nb < ((int64_t) 1 << 22))
    n_workers = 1;
  float *scratch = NULL;
  if (!c->dst2 && !(scratch = cpu_scratch (be, (size_t) (n_workers * block * nk), err)))
    return err ? err->code : DS_ERR_NOMEM;

  AttnJob jobs[MAX_WORKERS];
  for (int w = 0; w < n_workers; w++)
    jobs[w] = (AttnJob){ c, scratch ? scratch + (size_t) w * block * nk : NULL, block, w,
                         n_workers };
  if (n_workers == 1)
    {
      attention_worker (&jobs[0]);
      return DS_OK;
    }
  int saved = blas_threads ();
  blas_set_threads (1);
  run_threads (attention_worker, jobs, sizeof jobs[0], n_workers);
  blas_set_threads (saved);
  return DS_OK;
}

/* ---- decoder ops (LLaMA, docs/models.md §7.4) ---- */

/* rows [lo, hi): y = g * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) with the
 * mean accumulated in double, applied in transformers' order of f32 products. */
SIMD_CLONES static void
rms_norm_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const DsTensor *xt = c->src[0];
  const int64_t ch = xt->shape[xt->ndim - 1];
  const float *g = ds_tensor_f32 (c->src[1]);
  for (int64_t r = lo; r < hi; r++)
    {
      const float *x = ds_tensor_f32 (xt) + r * ch;
      float *y = ds_tensor_f32 (c->dst) + r * ch;
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < ch; i++)
        ss += (double) x[i] * x[i];
      const float rstd = (float) (1.0 / sqrt (ss / (double) ch + c->p.rms_norm.eps));
#pragma omp simd
      for (int64_t i = 0; i < ch; i++)
        y[i] = g[i] * (x[i] * rstd);
    }
}

static DsStatus
cpu_rms_norm (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int64_t n = ds_tensor_numel (xt), ch = xt->shape[xt->ndim - 1];
  if (ch > 0)
    parallel_for (rms_norm_range, c, n / ch, n);
  return DS_OK;
}

/* tokens [lo, hi) of x [B, N, H*D]. The angles are computed as transformers
 * does in f32: inv_freq_i = 1 / theta^(2i/D), angle = (float) pos * inv_freq_i;
 * one cos/sin pair serves every head of the token. */
static void
rope_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const DsTensor *xt = c->src[0];
  const int64_t n = xt->shape[1], ch = xt->shape[2], heads = c->p.rope.heads;
  const int64_t d = ch / heads, half = d / 2;
  const int32_t *pos = c->src[1]->data;
  for (int64_t r = lo; r < hi; r++)
    {
      const float *x = ds_tensor_f32 (xt) + r * ch;
      float *y = ds_tensor_f32 (c->dst) + r * ch;
      const float p = (float) pos[r % n];
      for (int64_t i = 0; i < half; i++)
        {
          const float inv_freq = 1.0f / powf (c->p.rope.theta, (float) (2 * i) / (float) d);
          const float angle = p * inv_freq, cs = cosf (angle), sn = sinf (angle);
          for (int64_t h = 0; h < heads; h++)
            {
              const float a = x[h * d + i], b = x[h * d + half + i];
              const float ac = a * cs, bs = b * sn, bc = b * cs, as = a * sn;
              y[h * d + i] = ac - bs;
              y[h * d + half + i] = bc + as;
            }
        }
    }
}

static DsStatus
cpu_rope (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  parallel_for (rope_range, c, xt->shape[0] * xt->shape[1], ds_tensor_numel (xt));
  return DS_OK;
}

/* One worker's share of a cached attention: (batch, head) pairs w, w + n_workers,
 * …, a block of query rows at a time, as in attention_worker; query row i
 * (position q_pos + i) reads only keys 0 .. q_pos + i, so the GEMMs of a block
 * stop at the last key its last row sees and earlier rows mask the rest. */
static void *
attention_kv_worker (void *arg)
{
  const AttnJob *j = arg;
  const DsOpCall *c = j->c;
  const DsTensor *qt = c->src[0], *kt = c->src[1], *vt = c->src[2];
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t heads = c->p.attention_kv.heads, group = heads / c->p.attention_kv.kv_heads;
  const int64_t cq = qt->shape[2], ckv = kt->shape[2], d = cq / heads;
  const int64_t q_pos = c->p.attention_kv.q_pos;
  for (int64_t bh = j->worker; bh < nb * heads; bh += j->n_workers)
    {
      const int64_t b = bh / heads, h = bh % heads, hk = h / group;
      const float *kh = ds_tensor_f32 (kt) + b * nk * ckv + hk * d;
      const float *vh = ds_tensor_f32 (vt) + b * nk * ckv + hk * d;
      for (int64_t q0 = 0; q0 < nq; q0 += j->block)
        {
          const int64_t rows = nq - q0 < j->block ? nq - q0 : j->block;
          const int64_t keys = q_pos + q0 + rows; /* what the block's last row sees */
          const float *qh = ds_tensor_f32 (qt) + (b * nq + q0) * cq + h * d;
          float *oh = ds_tensor_f32 (c->dst) + (b * nq + q0) * cq + h * d;
          float *s = j->scratch;
          sgemm (false, true, rows, keys, d, c->p.attention_kv.scale, qh, cq, kh, ckv, 0.0f, s,
                 keys);
          for (int64_t r = 0; r < rows; r++)
            {
              const int64_t seen = q_pos + q0 + r + 1;
              softmax_row (s + r * keys, seen);
              memset (s + r * keys + seen, 0, (size_t) (keys - seen) * sizeof (float));
            }
          sgemm (false, false, rows, d, keys, 1.0f, s, keys, vh, ckv, 0.0f, oh, cq);
        }
    }
  return NULL;
}

static DsStatus
cpu_attention_kv (DsBackend *be, const DsOpCall *call, DsError *err)
{
  /* A position from pos (ds_attention_kv_at): the same call at that q_pos. */
  DsOpCall at;
  const DsOpCall *c = call;
  if (call->src[3])
    {
      const int32_t p = *(const int32_t *) call->src[3]->data;
      if (p < 0 || p + call->src[0]->shape[1] > call->src[1]->shape[1])
        return ds_error_set (err, DS_ERR_INVALID,
                             "attention_kv: position %d outside the cache of %lld keys", (int) p,
                             (long long) call->src[1]->shape[1]);
      at = *call;
      at.src[3] = NULL;
      at.p.attention_kv.q_pos = p;
      c = &at;
    }
  const DsTensor *qt = c->src[0], *kt = c->src[1];
  const int64_t nb = qt->shape[0], nq = qt->shape[1];
  const int64_t heads = c->p.attention_kv.heads;
  /* keys the last query sees: the cache rows past them are never read and do
   * not change how the work is cut (a whole cache given to
   * ds_attention_kv_at runs as the seen rows given to ds_attention_kv) */
  const int64_t nk = c->p.attention_kv.q_pos + nq;
  int64_t block = ATTN_BLOCK_FLOATS / nk;
  block = block < 1 ? 1 : block > nq ? nq : block;
  int n_workers = blas_threads ();
  if (n_workers > MAX_WORKERS)
    n_workers = MAX_WORKERS;
  if (n_workers > nb * heads)
    n_workers = (int) (nb * heads);
  /* Threads pay off for many scores, or for a long cache to read: a decode
   * step's one query streams every cached key and value (at 7B and 640
   * positions 21 MB a layer), memory-bound like its linears. */
  const int64_t kv_values = 2 * nb * nk * kt->shape[2];
  if (n_workers < 1
      || (nq * nk * heads * nb < ((int64_t) 1 << 22) && kv_values < ((int64_t) 1 << 22)))
    n_workers = 1;
  float *scratch = cpu_scratch (be, (size_t) (n_workers * block * nk), err);
  if (!scratch)
    return err ? err->code : DS_ERR_NOMEM;
  AttnJob jobs[MAX_WORKERS];
  for (int w = 0; w < n_workers; w++)
    jobs[w] = (AttnJob){ c, scratch + (size_t) w * block * nk, block, w, n_workers };
  if (n_workers == 1)
    {
      attention_kv_worker (&jobs[0]);
      return DS_OK;
    }
  int saved = blas_threads ();
  blas_set_threads (1);
  run_threads (attention_kv_worker, jobs, sizeof jobs[0], n_workers);
  blas_set_threads (saved);
  return DS_OK;
}

/* ---- elementwise ---- */

/* elements [lo, hi) */
SIMD_CLONES static void
unary_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const float *x = ds_tensor_f32 (c->src[0]);
  float *y = ds_tensor_f32 (c->dst);
  switch (c->op)
    {
    case DS_OP_GELU:
#pragma omp simd
      for (int64_t i = lo; i < hi; i++)
        y[i] = gelu_f (x[i]);
      break;
    case DS_OP_QUICK_GELU:
#pragma omp simd
      for (int64_t i = lo; i < hi; i++)
        y[i] = x[i] / (1.0f + expf (-1.702f * x[i]));
      break;
    case DS_OP_SILU:
#pragma omp simd
      for (int64_t i = lo; i < hi; i++)
        y[i] = silu_f (x[i]);
      break;
    case DS_OP_SCALE:
      for (int64_t i = lo; i < hi; i++)
        y[i] = x[i] * c->p.scale.s;
      break;
    default:
      assert (!"not a unary op");
    }
}

static DsStatus
cpu_unary (const DsOpCall *c)
{
  const int64_t n = ds_tensor_numel (c->dst);
  parallel_for (unary_range, c, n, n);
  return DS_OK;
}

/* rows [lo, hi) */
SIMD_CLONES static void
geglu_range (const DsOpCall *c, int64_t lo, int64_t hi)
{
  const int64_t f = c->dst->shape[c->dst->ndim - 1];
  const float *b = c->src[1] ? ds_tensor_f32 (c->src[1]) : NULL;
  for (int64_t r = lo; r < hi; r++)
    {
      const float *x = ds_tensor_f32 (c->src[0]) + r * 2 * f; /* [value | gate] */
      float *y = ds_tensor_f32 (c->dst) + r * f;
      if (b)
        {
#pragma omp simd
          for (int64_t i = 0; i < f; i++)
            y[i] = (x[i] + b[i]) * gelu_f (x[f + i] + b[f + i]);
        }
      else
        {
#pragma omp simd
          for (int64_t i = 0; i < f; i++)
            y[i] = x[i] * gelu_f (x[f + i]);
        }
    }
}

static DsStatus
cpu_geglu (const DsOpCall *c)
{
  const int64_t f = c->dst->shape[c->dst->ndim - 1];
  const int64_t n = ds_tensor_numel (c->dst);
  if (f > 0)
    parallel_for (geglu_range, c, n / f, 3 * n);
  return DS_OK;
}

/* The three forms of b are described at the top of ds-ops.c; the order of the
 * tests here is the documented precedence. */
static DsStatus
cpu_add (const DsOpCall *c)
{
  const DsTensor *at = c->src[0], *bt = c->src[1];
  const float *a = ds_tensor_f32 (at), *b = ds_tensor_f32 (bt);
  float *y = ds_tensor_f32 (c->dst);
  const int64_t n = ds_tensor_numel (at), nbv = ds_tensor_numel (bt);
  if (ds_tensor_same_shape (at, bt))
    {
      for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    }
  else if (bt->ndim == 1 && bt->shape[0] == at->shape[at->ndim - 1])
    {
      /* bias over the last dim: rows of nbv */
      for (int64_t r = 0; nbv && r < n / nbv; r++)
        for (int64_t i = 0; i < nbv; i++)
          y[r * nbv + i] = a[r * nbv + i] + b[i];
    }
  else
    {
      /* leading-dims prefix: each b value covers a run of n / nbv values */
      const int64_t run = nbv ? n / nbv : 0;
      for (int64_t p = 0; p < nbv; p++)
        for (int64_t i = p * run; i < (p + 1) * run; i++)
          y[i] = a[i] + b[p];
    }
  return DS_OK;
}

static DsStatus
cpu_mul (const DsOpCall *c)
{
  const int64_t n = ds_tensor_numel (c->dst);
  const float *a = ds_tensor_f32 (c->src[0]), *b = ds_tensor_f32 (c->src[1]);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] * b[i];
  return DS_OK;
}

/* ---- data movement ---- */

static DsStatus
cpu_concat (const DsOpCall *c)
{
  const DsTensor *at = c->src[0], *bt = c->src[1];
  const int d = c->p.concat.dim;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; i++)
    outer *= at->shape[i];
  for (int i = d + 1; i < at->ndim; i++)
    inner *= at->shape[i];
  /* Per outer index: a's slab then b's slab. */
  const size_t na = (size_t) (at->shape[d] * inner), nbv = (size_t) (bt->shape[d] * inner);
  const float *a = ds_tensor_f32 (at), *b = ds_tensor_f32 (bt);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t o = 0; o < outer; o++)
    {
      memcpy (y, a + o * na, na * sizeof (float));
      memcpy (y + na, b + o * nbv, nbv * sizeof (float));
      y += na + nbv;
    }
  return DS_OK;
}

static DsStatus
cpu_upsample (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int64_t planes = xt->shape[0] * xt->shape[1], h = xt->shape[2], w = xt->shape[3];
  const float *x = ds_tensor_f32 (xt);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h; i++)
      {
        const float *src = x + (p * h + i) * w;
        float *row = y + (p * 2 * h + 2 * i) * 2 * w; /* output rows 2i and 2i+1 */
        for (int64_t j = 0; j < w; j++)
          row[2 * j] = row[2 * j + 1] = src[j];
        memcpy (row + 2 * w, row, (size_t) (2 * w) * sizeof (float));
      }
  return DS_OK;
}

/* diffusers' get_timestep_embedding in fp32 (docs/models.md 1.4):
 *   freq_k = exp(-ln(max_period) * k / (half - freq_shift)),  k < half = dim / 2
 *   arg = t * freq_k;  y = [sin(arg), cos(arg)], halves swapped when flip_sin_to_cos,
 *   and a zero last column when dim is odd.
 * Each step rounds to float where PyTorch's float32 tensors do. */
static DsStatus
cpu_timestep (DsBackend *be, const DsOpCall *c, DsError *err)
{
  const int64_t nb = c->dst->shape[0], dim = c->dst->shape[1], half = dim / 2;
  const float neg_log_period = (float) -log ((double) c->p.timestep.max_period);
  const float denom = (float) ((double) half - (double) c->p.timestep.freq_shift);
  float *freq = NULL;
  if (half > 0 && !(freq = cpu_scratch (be, (size_t) half, err)))
    return err ? err->code : DS_ERR_NOMEM;
  for (int64_t k = 0; k < half; k++)
    {
      float e = neg_log_period * (float) k;
      freq[k] = expf (e / denom);
    }
  const bool flip = c->p.timestep.flip_sin_to_cos;
  for (int64_t b = 0; b < nb; b++)
    {
      const float t = ds_tensor_f32 (c->src[0])[b];
      float *y = ds_tensor_f32 (c->dst) + b * dim;
      for (int64_t k = 0; k < half; k++)
        {
          float arg = t * freq[k];
          y[flip ? half + k : k] = sinf (arg);
          y[flip ? k : half + k] = cosf (arg);
        }
      if (dim % 2)
        y[dim - 1] = 0.0f;
    }
  return DS_OK;
}

static DsStatus
cpu_embedding (const DsOpCall *c, DsError *err)
{
  const DsTensor *idt = c->src[0], *table = c->src[1];
  const int64_t n = ds_tensor_numel (idt), v = table->shape[0], ch = table->shape[1];
  const int32_t *ids = idt->data;
  /* Ids can come from user input: check them all before writing anything. */
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= v)
      return ds_error_set (err, DS_ERR_INVALID,
                           "embedding: id %d at position %lld is outside the table's %lld rows",
                           (int) ids[i], (long long) i, (long long) v);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t i = 0; i < n; i++)
    memcpy (y + i * ch, ds_tensor_f32 (table) + (int64_t) ids[i] * ch,
            (size_t) ch * sizeof (float));
  return DS_OK;
}

/* Rows of x into y at pos: every row checked before anything is written. */
static DsStatus
cpu_set_rows (const DsOpCall *c, DsError *err)
{
  const DsTensor *pt = c->src[1];
  const int64_t n = ds_tensor_numel (pt), r = c->dst->shape[0], ch = c->dst->shape[1];
  const int32_t *pos = pt->data;
  for (int64_t i = 0; i < n; i++)
    if (pos[i] < 0 || pos[i] >= r)
      return ds_error_set (err, DS_ERR_INVALID,
                           "set_rows: row %d for input row %lld is outside the %lld rows",
                           (int) pos[i], (long long) i, (long long) r);
  for (int64_t i = 0; i < n; i++)
    memcpy (ds_tensor_f32 (c->dst) + (int64_t) pos[i] * ch, ds_tensor_f32 (c->src[0]) + i * ch,
            (size_t) ch * sizeof (float));
  return DS_OK;
}

/* y[i0,i1,i2,i3] = x[...] with output dim i reading source dim perm[i]. The call
 * is padded to four dims with leading size-1 dims so one loop nest serves all. */
static DsStatus
cpu_permute (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int nd = xt->ndim, pad = DS_MAX_DIMS - nd;
  int64_t xstride[DS_MAX_DIMS], shape[DS_MAX_DIMS], stride[DS_MAX_DIMS];
  int64_t acc = 1;
  for (int i = nd - 1; i >= 0; i--)
    {
      xstride[i] = acc;
      acc *= xt->shape[i];
    }
  for (int i = 0; i < DS_MAX_DIMS; i++)
    {
      shape[i] = i < pad ? 1 : c->dst->shape[i - pad];
      stride[i] = i < pad ? 0 : xstride[c->p.permute.perm[i - pad]];
    }
  const float *x = ds_tensor_f32 (xt);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t i0 = 0; i0 < shape[0]; i0++)
    for (int64_t i1 = 0; i1 < shape[1]; i1++)
      for (int64_t i2 = 0; i2 < shape[2]; i2++)
        {
          const float *src = x + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
          for (int64_t i3 = 0; i3 < shape[3]; i3++)
            *y++ = src[i3 * stride[3]];
        }
  return DS_OK;
}

/* x [B, H, R] -> y [B, R]: the sum over h in order, in f32, then / H (the CUDA
 * kernel does the same). */
static DsStatus
cpu_mean_heads (const DsOpCall *c)
{
  const DsTensor *xt = c->src[0];
  const int64_t nb = xt->shape[0], h = xt->shape[1];
  const int64_t r = nb && h ? ds_tensor_numel (xt) / (nb * h) : 0;
  const float *x = ds_tensor_f32 (xt);
  float *y = ds_tensor_f32 (c->dst);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t i = 0; i < r; i++)
      {
        float s = 0.0f;
        for (int64_t k = 0; k < h; k++)
          s += x[(b * h + k) * r + i];
        y[b * r + i] = s / (float) h;
      }
  return DS_OK;
}

/* ---- the backend interface ---- */

static bool
cpu_supports (DsBackend *be, DsOp op)
{
  return (unsigned) op < DS_OP_COUNT;
}

static DsStatus
cpu_run (DsBackend *be, const DsOpCall *c, DsError *err)
{
  if (c->dst->dtype != DS_DTYPE_F32)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "CPU backend: %s in %s (it computes in f32 only)",
                         ds_op_name (c->op), ds_dtype_name (c->dst->dtype));
  switch (c->op)
    {
    case DS_OP_CONV2D: return cpu_conv2d (be, c, err);
    case DS_OP_GROUP_NORM: return cpu_group_norm (c);
    case DS_OP_LAYER_NORM: return cpu_layer_norm (c);
    case DS_OP_LINEAR:
      return c->src[1]->dtype == DS_DTYPE_F32 ? cpu_linear (c) : cpu_linear_mixed (be, c, err);
    case DS_OP_MATMUL: return cpu_matmul (c);
    case DS_OP_SOFTMAX: return cpu_softmax (c);
    case DS_OP_ATTENTION: return cpu_attention (be, c, err);
    case DS_OP_GELU:
    case DS_OP_QUICK_GELU:
    case DS_OP_SILU:
    case DS_OP_SCALE: return cpu_unary (c);
    case DS_OP_GEGLU: return cpu_geglu (c);
    case DS_OP_ADD: return cpu_add (c);
    case DS_OP_MUL: return cpu_mul (c);
    case DS_OP_CONCAT: return cpu_concat (c);
    case DS_OP_UPSAMPLE_NEAREST2X: return cpu_upsample (c);
    case DS_OP_TIMESTEP_EMBEDDING: return cpu_timestep (be, c, err);
    case DS_OP_EMBEDDING: return cpu_embedding (c, err);
    case DS_OP_SET_ROWS: return cpu_set_rows (c, err);
    case DS_OP_PERMUTE: return cpu_permute (c);
    case DS_OP_MEAN_HEADS: return cpu_mean_heads (c);
    case DS_OP_RMS_NORM: return cpu_rms_norm (c);
    case DS_OP_ROPE: return cpu_rope (c);
    case DS_OP_ATTENTION_KV: return cpu_attention_kv (be, c, err);
    default: break;
    }
  return ds_error_set (err, DS_ERR_UNSUPPORTED, "CPU backend: unknown op %d", (int) c->op);
}

static DsStatus
cpu_tensor_alloc (DsBackend *be, DsTensor *t, DsDType dtype, int ndim, const int64_t *shape,
                  DsError *err)
{
  return ds_tensor_alloc (t, dtype, ndim, shape, err);
}

static void
cpu_tensor_free (DsBackend *be, DsTensor *t)
{
  ds_tensor_free (t);
}

static DsStatus
cpu_upload (DsBackend *be, DsTensor *dst, const void *host, DsError *err)
{
  size_t n = ds_tensor_nbytes (dst);
  if (n)
    memcpy (dst->data, host, n);
  return DS_OK;
}

static DsStatus
cpu_download (DsBackend *be, const DsTensor *src, void *host, DsError *err)
{
  size_t n = ds_tensor_nbytes (src);
  if (n)
    memcpy (host, src->data, n);
  return DS_OK;
}

static DsStatus
cpu_synchronize (DsBackend *be, DsError *err)
{
  return DS_OK;
}

static void
cpu_destroy (DsBackend *be)
{
  CpuImpl *impl = be->impl;
  free (impl->scratch);
  free (impl);
  free (be);
}

DsBackend *
ds_backend_cpu_new (DsError *err)
{
  DsBackend *be = calloc (1, sizeof *be);
  CpuImpl *impl = calloc (1, sizeof *impl);
  if (!be || !impl)
    {
      free (be);
      free (impl);
      ds_error_set (err, DS_ERR_NOMEM, "out of host memory creating the CPU backend");
      return NULL;
    }
  *be = (DsBackend) {
    .name = "CPU",
    .device = DS_DEVICE_CPU,
    .act_dtype = DS_DTYPE_F32,
    .mixed_linear = true,
    .supports = cpu_supports,
    .run = cpu_run,
    .tensor_alloc = cpu_tensor_alloc,
    .tensor_free = cpu_tensor_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
    .impl = impl,
  };
  return be;
}
