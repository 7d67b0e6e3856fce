/* ds-backend-cuda.c: the CUDA backend (see ds-cuda.h).
 *
 * The DsBackend interface over one device: tensors in device memory, one
 * stream, one cuBLAS handle. This file does the dispatch, memory, copies and
 * GEMM orchestration; the kernels live in kernels/<op>.cu behind the
 * launchers of ds-cuda-kernels.h.
 *
 * Precision: a call runs in its tensors' dtype. In f32 every op computes what
 * engine/core/ds-backend-cpu.c computes, in the same order where it matters (norm
 * statistics in double, softmax's recipe, the timestep embedding's float
 * steps), with GEMMs in strict fp32 (CUBLAS_COMPUTE_32F_PEDANTIC: no TF32), and
 * tests/test-backend-ops.c compares the two op by op to rounding. In f16/bf16
 * tensors are stored narrow and everything accumulates in f32: GEMMs on tensor
 * cores with f32 compute, kernels widen on load and round once on store,
 * attention scores are f32 until the probabilities.
 *
 * Linears with a bias in f16/bf16 are one cuBLASLt call with the bias
 * epilogue (and the residual as its C), where cuBLASLt finds an algorithm;
 * otherwise, and in f32, a cuBLAS GEMM and a bias kernel. DS_CUDA_LT=0 in the
 * environment keeps the latter everywhere.
 *
 * Attention: f16/bf16 with head size 64 and no probabilities wanted runs the
 * fused kernel (attention.cu); otherwise scores are materialised (GEMM,
 * softmax, GEMM), which is also how attention maps are handed back.
 * DS_CUDA_FLASH=0 in the environment forces the materialised path;
 * DS_CUDA_LDMATRIX=0 has the fused kernel read its fragments without ldmatrix.
 *
 * Memory: conv2d's im2col columns and attention's scores use one scratch
 * buffer owned by the backend, in bounded pieces (COL_BUDGET_BYTES of columns,
 * ATTN_BUDGET_FLOATS of scores). It grows on demand: the first forward at a
 * given size pays the cudaMalloc; later forwards of that size never allocate.
 * An outgrown buffer is kept until the backend is destroyed, since queued work
 * or a recorded CUDA graph may still point into it.
 *
 * Every CUDA and cuBLAS status is checked; failures become DS_ERR_DEVICE
 * naming the op and the call (out of memory also says how much was asked and
 * how much is free). Shapes were asserted by ds_op_run; this file trusts them.
 *
 * A memory cap (DIFFSCOPE_GPU_MEMORY at creation, or
 * ds_cuda_backend_set_memory_cap) bounds what this backend allocates: past
 * it an allocation fails as if the device were full. After a failure the
 * backend checks whether the device still answers: a launch error is not
 * sticky and the next call works, but a fault inside a kernel (an illegal
 * address) loses the CUDA context for the whole process. Then be->lost is
 * set, the error says so, and every later call fails at once naming the first
 * failure: the caller moves to another backend (ds-session.h).
 */
#include "ds-cuda.h"

#include <assert.h>
/* cublasLt.h declares a function with () */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cublasLt.h>
#pragma GCC diagnostic pop
#include <cublas_v2.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-cuda-kernels.h"
#ifdef DS_HAVE_CUDNN
#include "ds-cudnn.h"
#endif

/* im2col columns per block of output rows (the CPU reference uses the same).
 * Both budgets may be set smaller at compile time to exercise the blocked
 * paths with small shapes. */
#ifndef COL_BUDGET_BYTES
#define COL_BUDGET_BYTES ((size_t) 256 << 20)
#endif
/* Attention scores for all heads of one batch item and a block of query rows:
 * 128 MiB, so SD's [5 heads, 4096, 4096] self-attention takes two blocks. */
#ifndef ATTN_BUDGET_FLOATS
#define ATTN_BUDGET_FLOATS ((int64_t) 1 << 25)
#endif

/* The GEMM libraries' workspace: 32 MiB, NVIDIA's advice for Hopper. */
#define BLAS_WORKSPACE_BYTES ((size_t) 32 << 20)

/* What cuBLASLt's heuristics said for one linear's shape, so a forward asks
 * once per shape (the query costs host time on every eager call). The
 * arena's 64-byte alignment lets a shape come with a few alignments: 256
 * entries hold a UNet's and a text encoder's linears. */
#define LT_ALGOS 256
typedef struct {
  struct {
    DsDType dt;
    int64_t m, n, k;
    bool residual;
    uint32_t align[5]; /* w, x, C, y, bias */
  } key;               /* zeroed before filling: compared with memcmp */
  bool found;          /* false: no algorithm, GEMM + bias kernel */
  cublasLtMatmulAlgo_t algo;
} LtAlgo;

typedef struct {
  DsBackend be;          /* be.impl points back here */
  int device;
  int cc_major;          /* compute capability; the fused attention needs >= 8 */
  char name[300];        /* "CUDA · NVIDIA H100 80GB HBM3" */
  cudaStream_t stream;
  cublasHandle_t blas;
  void *scratch;         /* (scratch_bytes) device, contents undefined between ops */
  size_t scratch_bytes;
  void **retired;        /* (n_retired) outgrown scratch buffers, freed at destroy */
  int n_retired;
  bool sync_each_op;     /* DS_CUDA_SYNC: synchronize and check after every op */
  bool capturing;        /* between graph_begin and graph_end */
  void *blas_workspace;  /* (BLAS_WORKSPACE_BYTES) cuBLAS's and cuBLASLt's, set once
                          * so captured GEMMs never allocate */
  cublasLtHandle_t lt;   /* NULL: no fused bias epilogues (DS_CUDA_LT=0, or no cuBLASLt) */
  LtAlgo lt_algos[LT_ALGOS]; /* the heuristics' answers, per shape (linear_lt) */
  int n_lt_algos, lt_next_evict;
  bool no_flash;         /* DS_CUDA_FLASH=0: always the materialised attention */
  bool no_ldmatrix;      /* DS_CUDA_LDMATRIX=0: the fused attention without ldmatrix */
#ifdef DS_HAVE_CUDNN
  DsCudnn *cudnn;        /* NULL: convolutions by im2col + GEMM */
#endif
  char conv_path[256];   /* how convolutions run, for ds_cuda_backend_conv_path */
  DsCudaConvStats conv_stats;
  cudaEvent_t *timer_events; /* 2 * TIMER_SLOTS start/end pairs, made on first use */
  int timer_used;        /* slots handed out since the last timer_reset */
  size_t mem_used;       /* device bytes this backend holds (tensors, scratch, workspace) */
  size_t mem_cap;        /* at most this many; 0: no cap but the device's */
  char lost_why[200];    /* the failure that lost the device (be.lost) */
} CudaImpl;

static CudaImpl *
impl_of (DsBackend *be)
{
  return (CudaImpl *) be->impl;
}

/* ---- errors ---- */

static DsStatus
cuda_fail (cudaError_t e, DsError *err, const char *what)
{
  return ds_error_set (err, DS_ERR_DEVICE, "CUDA backend: %s: %s (%s)", what,
                       cudaGetErrorString (e), cudaGetErrorName (e));
}

static DsStatus
blas_fail (cublasStatus_t s, DsError *err, const char *what)
{
  return ds_error_set (err, DS_ERR_DEVICE, "CUDA backend: cuBLAS %s: %s (%s)", what,
                       cublasGetStatusString (s), cublasGetStatusName (s));
}

/* Returns from the calling function with DS_ERR_DEVICE when `call` fails. */
#define CUDA_TRY(call, what)                                                                   \
  do {                                                                                         \
    cudaError_t e_ = (call);                                                                   \
    if (e_ != cudaSuccess)                                                                     \
      return cuda_fail (e_, err, (what));                                                      \
  } while (0)

#define DS_TRY(expr)                                                                           \
  do {                                                                                         \
    DsStatus st_ = (expr);                                                                     \
    if (st_ != DS_OK)                                                                          \
      return st_;                                                                              \
  } while (0)

/* cudaMalloc with an error that says what wanted the memory and what was left
 * (of the device, or of the cap). Zero bytes give NULL without asking the
 * driver. Counted in impl->mem_used until device_free. */
static DsStatus
device_malloc (CudaImpl *impl, void **p, size_t bytes, const char *what, DsError *err)
{
  *p = NULL;
  if (bytes == 0)
    return DS_OK;
  const size_t cap_left = impl->mem_used < impl->mem_cap ? impl->mem_cap - impl->mem_used : 0;
  if (impl->mem_cap && bytes > cap_left)
    return ds_error_set (err, DS_ERR_DEVICE,
                         "CUDA backend: out of device memory: %s needs %.1f MiB, "
                         "%.1f MiB free of the %.1f MiB cap (DIFFSCOPE_GPU_MEMORY)",
                         what, bytes / 1048576.0, cap_left / 1048576.0,
                         impl->mem_cap / 1048576.0);
  cudaError_t e = cudaMalloc (p, bytes);
  if (e == cudaSuccess)
    {
      impl->mem_used += bytes;
      return DS_OK;
    }
  *p = NULL;
  cudaGetLastError (); /* an allocation failure is not sticky: clear it */
  if (e != cudaErrorMemoryAllocation)
    return cuda_fail (e, err, "cudaMalloc");
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo (&free_b, &total_b) != cudaSuccess)
    {
      cudaGetLastError ();
      return ds_error_set (err, DS_ERR_DEVICE,
                           "CUDA backend: out of device memory: %s needs %.1f MiB "
                           "(free memory unknown)",
                           what, bytes / 1048576.0);
    }
  return ds_error_set (err, DS_ERR_DEVICE,
                       "CUDA backend: out of device memory: %s needs %.1f MiB, "
                       "%.1f MiB free of %.1f MiB",
                       what, bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
}

static void
device_free (CudaImpl *impl, void *p, size_t bytes)
{
  if (!p)
    return;
  cudaFree (p);
  impl->mem_used -= bytes < impl->mem_used ? bytes : impl->mem_used;
}

/* Makes the backend's device current for this thread (cheap when it already
 * is); fails at once when the device was lost. */
static DsStatus
enter (CudaImpl *impl, DsError *err)
{
  if (impl->be.lost)
    return ds_error_set (err, DS_ERR_DEVICE,
                         "CUDA backend: the GPU failed earlier (%s) and cannot be used again "
                         "by this process",
                         impl->lost_why);
  CUDA_TRY (cudaSetDevice (impl->device), "cudaSetDevice");
  return DS_OK;
}

/* After a failed call: clears a launch error (not sticky) and asks the device
 * whether it still works. A sticky error means the context is lost: marks
 * the backend and says so in err (which holds the failure). */
static DsStatus
check_lost (CudaImpl *impl, DsStatus st, DsError *err)
{
  if (st != DS_ERR_DEVICE || impl->be.lost || impl->capturing)
    return st;
  cudaGetLastError ();
  cudaError_t e = cudaStreamSynchronize (impl->stream);
  if (e == cudaSuccess)
    e = cudaGetLastError ();
  if (e == cudaSuccess)
    return st;
  impl->be.lost = true;
  snprintf (impl->lost_why, sizeof impl->lost_why, "%s", cudaGetErrorName (e));
  return ds_error_prefix (err, st,
                          "the GPU cannot be used again by this process (%s is sticky: "
                          "restart, or compute on the CPU)",
                          cudaGetErrorName (e));
}

/* At least `bytes` of scratch, or NULL with err set. */
static void *
cuda_scratch (CudaImpl *impl, size_t bytes, DsError *err)
{
  if (bytes <= impl->scratch_bytes)
    return impl->scratch;
  /* A recorded graph may point into the old buffer: keep it until the
   * backend goes (growth is rare and the sizes only grow). */
  if (impl->scratch)
    {
      void **r = realloc (impl->retired, (size_t) (impl->n_retired + 1) * sizeof *r);
      if (!r)
        {
          ds_error_set (err, DS_ERR_NOMEM, "out of host memory growing the scratch buffer");
          return NULL;
        }
      impl->retired = r;
      impl->retired[impl->n_retired++] = impl->scratch;
    }
  impl->scratch = NULL;
  impl->scratch_bytes = 0;
  if (device_malloc (impl, &impl->scratch, bytes,
                     "the backend's scratch (im2col columns, attention scores)", err))
    return NULL;
  impl->scratch_bytes = bytes;
  return impl->scratch;
}

/* ---- GEMM ----
 *
 * cuBLAS is column-major; our matrices are row-major. A row-major matrix
 * M[r, c] with row stride ld is, read column-major with leading dimension ld,
 * the c x r matrix M^T. So the row-major product
 *     C[m, n] = alpha * op(A)[m, k] . op(B)[k, n] + beta * C
 * is the column-major product C^T[n, m] = op(B)^T . op(A)^T, which cuBLAS
 * computes when handed B first and A second, with dimensions (n, m, k), the
 * row strides as leading dimensions, and the SAME transpose flags: an operand
 * stored transposed (trans_a: A kept as [k, m]) reads column-major as op(A)
 * itself, whose transpose is what the swapped product needs — CUBLAS_OP_T —
 * and an untransposed one reads as op(A)^T already — CUBLAS_OP_N.
 * Batches are `batch` products at the given element strides; heads of a
 * [B, N, H*D] tensor are batches at stride D with row stride H*D.
 *
 * A and B are of dtype `ab`, C of dtype `ct` (f16 scores may be written as
 * f32); f32 operands compute in strict fp32, narrower ones on tensor cores
 * with f32 accumulation.
 */
static cudaDataType_t
cuda_type (DsDType t)
{
  return t == DS_DTYPE_F16 ? CUDA_R_16F : t == DS_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

typedef struct {
  DsDType ab, ct;        /* dtypes of A and B, of C */
  bool ta, tb;
  int64_t m, n, k, batch;
  float alpha, beta;
  const void *a; int64_t lda, stride_a;
  const void *b; int64_t ldb, stride_b;
  void *c; int64_t ldc, stride_c;
} Gemm;

static DsStatus
gemm (CudaImpl *impl, const Gemm *g, DsError *err)
{
  assert (g->m > 0 && g->n > 0 && g->k > 0 && g->batch > 0);
  if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->lda > INT_MAX
      || g->ldb > INT_MAX || g->ldc > INT_MAX || g->batch > INT_MAX)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "CUDA backend: a %lld x %lld x %lld GEMM (batch %lld) exceeds cuBLAS's "
                         "32-bit dimensions",
                         (long long) g->m, (long long) g->n, (long long) g->k,
                         (long long) g->batch);
  const cublasOperation_t opa = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t tab = cuda_type (g->ab), tc = cuda_type (g->ct);
  const cublasComputeType_t compute
    = g->ab == DS_DTYPE_F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  const cublasGemmAlgo_t algo
    = g->ab == DS_DTYPE_F32 ? CUBLAS_GEMM_DEFAULT : CUBLAS_GEMM_DEFAULT_TENSOR_OP;
  cublasStatus_t s;
  if (g->batch == 1)
    s = cublasGemmEx (impl->blas, opb, opa, (int) g->n, (int) g->m, (int) g->k, &g->alpha, g->b,
                      tab, (int) g->ldb, g->a, tab, (int) g->lda, &g->beta, g->c, tc,
                      (int) g->ldc, compute, algo);
  else
    s = cublasGemmStridedBatchedEx (impl->blas, opb, opa, (int) g->n, (int) g->m, (int) g->k,
                                    &g->alpha, g->b, tab, (int) g->ldb, g->stride_b, g->a, tab,
                                    (int) g->lda, g->stride_a, &g->beta, g->c, tc, (int) g->ldc,
                                    g->stride_c, (int) g->batch, compute, algo);
  if (s != CUBLAS_STATUS_SUCCESS)
    return blas_fail (s, err, g->batch == 1 ? "GemmEx" : "GemmStridedBatchedEx");
  return DS_OK;
}

/* Element pointer arithmetic on untyped device data. */
static void *
at (const void *base, int64_t elems, DsDType dt)
{
  return (uint8_t *) base + elems * (int64_t) ds_dtype_size (dt);
}

/* ---- ops ---- */

/* y = conv(x, w) without the bias through cuDNN, where its symmetric padding
 * fits and it has a plan for the shape; *ran says whether it did. */
static DsStatus
conv_cudnn (CudaImpl *impl, const DsOpCall *c, const DsCudaConvGeom *g, bool *ran, DsError *err)
{
  *ran = false;
#ifdef DS_HAVE_CUDNN
  if (!impl->cudnn || g->pad_top != c->p.conv2d.pad_bottom
      || g->pad_left != c->p.conv2d.pad_right)
    return DS_OK;
  const DsCudnnConv cv = { .dtype = c->dst->dtype, .nb = c->src[0]->shape[0],
                           .co = c->src[1]->shape[0], .g = *g };
  size_t ws = 0;
  char why[256];
  if (!ds_cudnn_conv_plan (impl->cudnn, &cv, &ws, why, sizeof why))
    {
      snprintf (impl->conv_stats.last_refusal, sizeof impl->conv_stats.last_refusal, "%s", why);
      return DS_OK; /* im2col, then */
    }
  void *work = ws ? cuda_scratch (impl, ws, err) : NULL;
  if (ws && !work)
    return err ? err->code : DS_ERR_DEVICE;
  if (ds_cudnn_conv_run (impl->cudnn, &cv, c->src[0]->data, c->src[1]->data, c->dst->data, work,
                         ws, why, sizeof why))
    return ds_error_set (err, DS_ERR_DEVICE, "CUDA backend: %s", why);
  *ran = true;
#endif
  return DS_OK;
}

/* y = conv(x, w) without the bias as GEMMs: on the image itself for a 1x1,
 * stride-1, unpadded convolution (`direct`), else on im2col columns in blocks
 * of output rows. */
static DsStatus
conv_gemm (CudaImpl *impl, const DsOpCall *c, const DsCudaConvGeom *g, bool direct,
           DsError *err)
{
  const DsTensor *xt = c->src[0], *wt = c->src[1];
  const DsDType dt = c->dst->dtype;
  const int64_t nb = xt->shape[0], co = wt->shape[0];
  const int64_t kdim = g->ci * g->kh * g->kw, npix = g->ho * g->wo;
  const size_t row_bytes = (size_t) (kdim * g->wo) * ds_dtype_size (dt);
  int64_t block = row_bytes ? (int64_t) (COL_BUDGET_BYTES / row_bytes) : g->ho;
  if (block < 1)
    block = 1;
  if (block > g->ho)
    block = g->ho;
  void *col = NULL;
  if (!direct && !(col = cuda_scratch (impl, row_bytes * (size_t) block, err)))
    return err ? err->code : DS_ERR_DEVICE;

  /* y_n[Co, pixels] = w[Co, kdim] . columns[kdim, pixels] */
  Gemm gm = { .ab = dt, .ct = dt, .m = co, .k = kdim, .batch = 1, .alpha = 1.0f,
              .a = wt->data, .lda = kdim, .ldc = npix };
  if (direct) /* the images are the columns: one GEMM per image, one launch for all */
    {
      gm.batch = nb, gm.stride_a = 0;
      gm.n = npix, gm.b = xt->data, gm.ldb = npix, gm.stride_b = g->ci * npix;
      gm.c = c->dst->data, gm.stride_c = co * npix;
      return gemm (impl, &gm, err);
    }
  for (int64_t n = 0; n < nb; n++)
    {
      const void *xn = at (xt->data, n * g->ci * g->h * g->w, dt);
      void *yn = at (c->dst->data, n * co * npix, dt); /* [Co, Ho*Wo] */
      for (int64_t r0 = 0; r0 < g->ho; r0 += block)
        {
          const int64_t rows = g->ho - r0 < block ? g->ho - r0 : block;
          CUDA_TRY (ds_cuda_im2col (dt, g, xn, r0, rows, col, impl->stream), "im2col launch");
          gm.n = rows * g->wo, gm.b = col, gm.ldb = rows * g->wo, gm.c = at (yn, r0 * g->wo, dt);
          DS_TRY (gemm (impl, &gm, err));
        }
    }
  return DS_OK;
}

static DsStatus
cuda_conv2d (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0], *wt = c->src[1], *bt = c->src[2];
  const DsCudaConvGeom g = {
    .ci = xt->shape[1], .h = xt->shape[2], .w = xt->shape[3],
    .kh = wt->shape[2], .kw = wt->shape[3],
    .ho = c->dst->shape[2], .wo = c->dst->shape[3],
    .stride = c->p.conv2d.stride, .pad_top = c->p.conv2d.pad_top,
    .pad_left = c->p.conv2d.pad_left,
  };
  const int64_t nb = xt->shape[0], co = wt->shape[0], npix = g.ho * g.wo;
  void *y = c->dst->data;
  if (nb == 0 || co == 0 || npix == 0)
    return DS_OK;
  if (g.ci * g.kh * g.kw == 0)
    CUDA_TRY (cudaMemsetAsync (y, 0, ds_tensor_nbytes (c->dst), impl->stream), "cudaMemsetAsync");
  else
    {
      const bool direct = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad_top == 0
                          && g.pad_left == 0 && c->p.conv2d.pad_bottom == 0
                          && c->p.conv2d.pad_right == 0;
      bool ran = false;
      if (!direct)
        DS_TRY (conv_cudnn (impl, c, &g, &ran, err));
      if (!ran)
        DS_TRY (conv_gemm (impl, c, &g, direct, err));
      impl->conv_stats.cudnn += ran;
      impl->conv_stats.gemm += !ran;
    }
  if (bt)
    CUDA_TRY (ds_cuda_add (c->dst->dtype, y, bt->data, y, nb * co * npix, npix, co,
                           impl->stream),
              "bias launch");
  return DS_OK;
}

static DsStatus
cuda_group_norm (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int64_t nb = xt->shape[0], ch = xt->shape[1];
  const int64_t spatial = nb > 0 && ch > 0 ? ds_tensor_numel (xt) / (nb * ch) : 0;
  const int groups = c->p.group_norm.groups;
  const size_t bytes = ds_cuda_group_norm_scratch (nb, ch, spatial, groups);
  if (bytes == 0)
    return DS_OK;
  void *scratch = cuda_scratch (impl, bytes, err);
  if (!scratch)
    return err ? err->code : DS_ERR_DEVICE;
  CUDA_TRY (ds_cuda_group_norm (c->dst->dtype, xt->data, c->src[1]->data, c->src[2]->data,
                                c->dst->data, nb, ch, spatial, groups, c->p.group_norm.eps,
                                c->p.group_norm.silu, scratch, impl->stream),
            "group norm launch");
  return DS_OK;
}

static DsStatus
cuda_layer_norm (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int64_t ch = xt->shape[xt->ndim - 1], rows = ch ? ds_tensor_numel (xt) / ch : 0;
  CUDA_TRY (ds_cuda_layer_norm (c->dst->dtype, xt->data, c->src[1]->data, c->src[2]->data,
                                c->dst->data, rows, ch, c->p.layer_norm.eps, impl->stream),
            "layer norm launch");
  return DS_OK;
}

/* The largest power of two (up to 256) dividing a pointer: cuBLASLt's
 * algorithms assume 256-byte alignment unless told less. */
static uint32_t
alignment (const void *p)
{
  uint32_t a = 256;
  while (a > 1 && (uintptr_t) p % a)
    a /= 2;
  return a;
}

/* y[M,N] = x[M,K] . w[N,K]^T + b[N] (+ r[M,N]) as one cuBLASLt call with the
 * bias epilogue, f16/bf16. Column-major, as gemm() explains: D^T[N,M] =
 * op_T(w: K x N) . x^T (K x M) + b, the bias running down D's rows; r is C
 * (beta 1) and may be y itself. *ran is false, with nothing launched, where
 * cuBLASLt is off or finds no algorithm: the caller runs GEMM and bias. */
static DsStatus
linear_lt (CudaImpl *impl, const DsOpCall *c, int64_t m, int64_t n, int64_t k, bool *ran,
           DsError *err)
{
  *ran = false;
  const DsDType dt = c->dst->dtype;
  const void *x = c->src[0]->data, *w = c->src[1]->data, *b = c->src[2]->data;
  const void *r = c->src[3] ? c->src[3]->data : NULL;
  void *y = c->dst->data;
  if (!impl->lt || dt == DS_DTYPE_F32 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return DS_OK;
  const cudaDataType_t t = cuda_type (dt);
  const int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  const uint64_t ws = BLAS_WORKSPACE_BYTES;
  LtAlgo want;
  memset (&want, 0, sizeof want);
  want.key.dt = dt, want.key.m = m, want.key.n = n, want.key.k = k, want.key.residual = r;
  const void *ptrs[5] = { w, x, r ? r : y, y, b };
  for (int i = 0; i < 5; i++)
    want.key.align[i] = alignment (ptrs[i]);
  LtAlgo *known = NULL;
  for (int i = 0; i < impl->n_lt_algos && !known; i++)
    if (memcmp (&impl->lt_algos[i].key, &want.key, sizeof want.key) == 0)
      known = &impl->lt_algos[i];
  if (known && !known->found)
    return DS_OK;
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t h = { 0 };
  int found = 0;
  cublasStatus_t s = cublasLtMatmulDescCreate (&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
#define LT_STEP(call)                                                                            if (s == CUBLAS_STATUS_SUCCESS)                                                                s = (call)
  LT_STEP (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  LT_STEP (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  LT_STEP (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                           sizeof epilogue));
  LT_STEP (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
  LT_STEP (cublasLtMatrixLayoutCreate (&la, t, (uint64_t) k, (uint64_t) n, k));
  LT_STEP (cublasLtMatrixLayoutCreate (&lb, t, (uint64_t) k, (uint64_t) m, k));
  LT_STEP (cublasLtMatrixLayoutCreate (&lc, t, (uint64_t) n, (uint64_t) m, n));
  if (!known) /* ask the heuristics, and remember the answer */
    {
      LT_STEP (cublasLtMatmulPreferenceCreate (&pref));
      LT_STEP (cublasLtMatmulPreferenceSetAttribute (
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
      for (int i = 0; i < 4; i++)
        LT_STEP (cublasLtMatmulPreferenceSetAttribute (
            pref,
            (cublasLtMatmulPreferenceAttributes_t) (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i),
            &want.key.align[i], sizeof want.key.align[i]));
      LT_STEP (cublasLtMatmulAlgoGetHeuristic (impl->lt, op, la, lb, lc, lc, pref, 1, &h, &found));
      if (s == CUBLAS_STATUS_SUCCESS || s == CUBLAS_STATUS_NOT_SUPPORTED)
        {
          want.found = s == CUBLAS_STATUS_SUCCESS && found == 1;
          want.algo = h.algo;
          if (impl->n_lt_algos < LT_ALGOS)
            known = &impl->lt_algos[impl->n_lt_algos++];
          else
            {
              known = &impl->lt_algos[impl->lt_next_evict];
              impl->lt_next_evict = (impl->lt_next_evict + 1) % LT_ALGOS;
            }
          *known = want;
        }
    }
  DsStatus st = DS_OK;
  if (s == CUBLAS_STATUS_SUCCESS && known && known->found)
    {
      const float alpha = 1.0f, beta = r ? 1.0f : 0.0f;
      s = cublasLtMatmul (impl->lt, op, &alpha, w, la, x, lb, &beta, r ? r : y, lc, y, lc,
                          &known->algo, impl->blas_workspace, BLAS_WORKSPACE_BYTES, impl->stream);
      if (s == CUBLAS_STATUS_SUCCESS)
        *ran = true;
      else if (s != CUBLAS_STATUS_NOT_SUPPORTED) /* NOT_SUPPORTED launched nothing: split */
        st = blas_fail (s, err, "LtMatmul");
    }
#undef LT_STEP
  cublasLtMatmulPreferenceDestroy (pref);
  cublasLtMatrixLayoutDestroy (la);
  cublasLtMatrixLayoutDestroy (lb);
  cublasLtMatrixLayoutDestroy (lc);
  cublasLtMatmulDescDestroy (op);
  return st;
}

static DsStatus
cuda_linear (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0], *wt = c->src[1], *bt = c->src[2], *rt = c->src[3];
  const DsDType dt = c->dst->dtype;
  const int64_t k = wt->shape[1], n = wt->shape[0];
  const int64_t m = n ? ds_tensor_numel (c->dst) / n : 0;
  void *y = c->dst->data;
  if (m == 0 || n == 0)
    return DS_OK;
  if (bt && k > 0)
    {
      bool ran;
      DS_TRY (linear_lt (impl, c, m, n, k, &ran, err));
      if (ran)
        return DS_OK;
    }
  /* With a residual: y = r (+ b) first, in one pass, then the GEMM
   * accumulates into y — the residual add and the bias cost no pass over a
   * separate output. */
  if (rt && bt)
    CUDA_TRY (ds_cuda_add (dt, rt->data, bt->data, y, m * n, 1, n, impl->stream),
              "residual + bias launch");
  else if (rt && rt->data != y)
    CUDA_TRY (cudaMemcpyAsync (y, rt->data, ds_tensor_nbytes (c->dst), cudaMemcpyDeviceToDevice,
                               impl->stream),
              "residual copy");
  if (k == 0 && !rt)
    CUDA_TRY (cudaMemsetAsync (y, 0, ds_tensor_nbytes (c->dst), impl->stream), "cudaMemsetAsync");
  else if (k > 0) /* y[M,N] (+)= x[M,K] . w[N,K]^T */
    DS_TRY (gemm (impl,
                  &(Gemm) { .ab = dt, .ct = dt, .tb = true, .m = m, .n = n, .k = k, .batch = 1,
                            .alpha = 1.0f, .beta = rt ? 1.0f : 0.0f, .a = xt->data, .lda = k,
                            .b = wt->data, .ldb = k, .c = y, .ldc = n },
                  err));
  if (bt && !rt)
    CUDA_TRY (ds_cuda_add (dt, y, bt->data, y, m * n, 1, n, impl->stream), "bias launch");
  return DS_OK;
}

static DsStatus
cuda_matmul (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *at_ = c->src[0], *bt = c->src[1], *yt = c->dst;
  const bool ta = c->p.matmul.trans_a, tb = c->p.matmul.trans_b;
  const int64_t batch = yt->ndim == 3 ? yt->shape[0] : 1;
  const int64_t m = yt->shape[yt->ndim - 2], n = yt->shape[yt->ndim - 1];
  const int64_t k = ta ? at_->shape[at_->ndim - 2] : at_->shape[at_->ndim - 1];
  if (batch == 0 || m == 0 || n == 0)
    return DS_OK;
  if (k == 0)
    {
      CUDA_TRY (cudaMemsetAsync (yt->data, 0, ds_tensor_nbytes (yt), impl->stream),
                "cudaMemsetAsync");
      return DS_OK;
    }
  /* Row strides of the stored matrices: a is [M,K] or [K,M], b is [K,N] or [N,K]. */
  return gemm (impl,
               &(Gemm) { .ab = yt->dtype, .ct = yt->dtype, .ta = ta, .tb = tb, .m = m, .n = n,
                         .k = k, .batch = batch, .alpha = c->p.matmul.alpha, .a = at_->data,
                         .lda = ta ? m : k, .stride_a = m * k, .b = bt->data,
                         .ldb = tb ? k : n, .stride_b = k * n, .c = yt->data, .ldc = n,
                         .stride_c = m * n },
               err);
}

static DsStatus
cuda_softmax (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const DsDType dt = c->dst->dtype;
  const int64_t n = xt->shape[xt->ndim - 1], rows = n ? ds_tensor_numel (xt) / n : 0;
  CUDA_TRY (ds_cuda_softmax (dt, xt->data, dt, c->dst->data, rows, n, n, 1, 0, -1, impl->stream),
            "softmax launch");
  return DS_OK;
}

/* The materialised attention. Per batch item, all heads at once
 * (strided-batched GEMMs over heads), a block of query rows at a time:
 *   S_h[rows, Nk] = scale * Q_h[rows, D] . K_h[Nk, D]^T     (GEMM, batch H)
 *   P_h = softmax(S_h) with the causal mask                 (softmax.cu)
 *   O_h[rows, D]  = P_h . V_h[Nk, D]                        (GEMM, batch H)
 * Head h's channels are h*D .. h*D+D-1 of the [B, N, H*D] token tensors: row
 * stride H*D, head stride D. S is f32 always. In f32, when probs are wanted S
 * is the probs tensor itself (head stride Nq*Nk), softmaxed in place, and one
 * block covers all queries; otherwise S is scratch (head stride rows*Nk) and
 * blocks keep it under ATTN_BUDGET_FLOATS. In f16/bf16, S is always f32
 * scratch and the softmax writes P in the narrow type, into probs (head stride
 * Nq*Nk) or into scratch after S. */
static DsStatus
cuda_attention_materialised (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *qt = c->src[0], *kt = c->src[1], *vt = c->src[2];
  DsTensor *probs = c->dst2;
  const DsDType dt = c->dst->dtype;
  const bool narrow = dt != DS_DTYPE_F32;
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t ch = qt->shape[2], heads = c->p.attention.heads, d = ch / heads;
  const bool causal = c->p.attention.causal;

  int64_t block = nq;
  float *scores = NULL;
  void *pscratch = NULL;
  if (!probs || narrow)
    {
      block = ATTN_BUDGET_FLOATS / (heads * nk);
      if (block < 1)
        block = 1;
      if (block > nq)
        block = nq;
      /* f32 scores, then (narrow, no probs) the narrow probabilities */
      const size_t s_bytes = (size_t) (heads * block * nk) * sizeof (float);
      const size_t p_bytes = narrow && !probs ? (size_t) (heads * block * nk) * ds_dtype_size (dt)
                                              : 0;
      uint8_t *base = cuda_scratch (impl, s_bytes + p_bytes, err);
      if (!base)
        return err ? err->code : DS_ERR_DEVICE;
      scores = (float *) base;
      pscratch = p_bytes ? base + s_bytes : NULL;
    }

  for (int64_t b = 0; b < nb; b++)
    {
      const void *kb = at (kt->data, b * nk * ch, dt), *vb = at (vt->data, b * nk * ch, dt);
      for (int64_t q0 = 0; q0 < nq; q0 += block)
        {
          const int64_t rows = nq - q0 < block ? nq - q0 : block;
          const void *qb = at (qt->data, (b * nq + q0) * ch, dt);
          void *ob = at (c->dst->data, (b * nq + q0) * ch, dt);
          /* where S goes (f32) and where P goes (dtype dt), with head strides */
          void *s = scores, *p;
          int64_t s_stride = rows * nk, p_stride;
          if (probs)
            {
              p = at (probs->data, (b * heads * nq + q0) * nk, dt);
              p_stride = nq * nk;
              if (!narrow)
                s = p, s_stride = p_stride;
            }
          else
            {
              p = narrow ? pscratch : scores;
              p_stride = rows * nk;
            }
          DS_TRY (gemm (impl,
                        &(Gemm) { .ab = dt, .ct = DS_DTYPE_F32, .tb = true, .m = rows, .n = nk,
                                  .k = d, .batch = heads, .alpha = c->p.attention.scale,
                                  .a = qb, .lda = ch, .stride_a = d, .b = kb, .ldb = ch,
                                  .stride_b = d, .c = s, .ldc = nk, .stride_c = s_stride },
                        err));
          if (s == p)
            CUDA_TRY (ds_cuda_softmax (dt, s, dt, p, rows, nk, nk, heads, s_stride,
                                       causal ? q0 : -1, impl->stream),
                      "attention softmax launch");
          else /* heads of P may sit at another stride than those of S */
            for (int64_t h = 0; h < heads; h++)
              CUDA_TRY (ds_cuda_softmax (DS_DTYPE_F32, at (s, h * s_stride, DS_DTYPE_F32), dt,
                                         at (p, h * p_stride, dt), rows, nk, nk, 1, 0,
                                         causal ? q0 : -1, impl->stream),
                        "attention softmax launch");
          DS_TRY (gemm (impl,
                        &(Gemm) { .ab = dt, .ct = dt, .m = rows, .n = d, .k = nk, .batch = heads,
                                  .alpha = 1.0f, .a = p, .lda = nk, .stride_a = p_stride,
                                  .b = vb, .ldb = ch, .stride_b = d, .c = ob, .ldc = ch,
                                  .stride_c = d },
                        err));
        }
    }
  return DS_OK;
}

static DsStatus
cuda_attention (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *qt = c->src[0], *kt = c->src[1];
  const DsDType dt = c->dst->dtype;
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t ch = qt->shape[2], heads = c->p.attention.heads, d = ch / heads;
  if (nb == 0 || nq == 0 || nk == 0 || d == 0)
    return DS_OK;
  if (heads > 65535 || nb > 65535)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "CUDA backend: attention with %lld heads and batch %lld",
                         (long long) heads, (long long) nb);
  if (!c->dst2 && !impl->no_flash && impl->cc_major >= 8
      && ds_cuda_flash_attention_supported (dt, d)
      && ds_cuda_flash_attention_aligned (qt->data, kt->data, c->src[2]->data, c->dst->data))
    {
      CUDA_TRY (ds_cuda_flash_attention (dt, qt->data, kt->data, c->src[2]->data, c->dst->data,
                                         nb, nq, nk, heads, c->p.attention.scale,
                                         c->p.attention.causal, !impl->no_ldmatrix,
                                         impl->stream),
                "fused attention launch");
      return DS_OK;
    }
  return cuda_attention_materialised (impl, c, err);
}

static DsStatus
cuda_unary (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const int64_t n = ds_tensor_numel (c->dst);
  const DsDType dt = c->dst->dtype;
  const void *x = c->src[0]->data;
  void *y = c->dst->data;
  cudaError_t e;
  switch (c->op)
    {
    case DS_OP_GELU: e = ds_cuda_gelu (dt, x, y, n, impl->stream); break;
    case DS_OP_QUICK_GELU: e = ds_cuda_quick_gelu (dt, x, y, n, impl->stream); break;
    case DS_OP_SILU: e = ds_cuda_silu (dt, x, y, n, impl->stream); break;
    case DS_OP_SCALE: e = ds_cuda_scale (dt, x, c->p.scale.s, y, n, impl->stream); break;
    default: assert (!"not a unary op"); return DS_ERR_UNSUPPORTED;
    }
  CUDA_TRY (e, "elementwise launch");
  return DS_OK;
}

static DsStatus
cuda_geglu (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const int64_t f = c->dst->shape[c->dst->ndim - 1];
  const int64_t rows = f ? ds_tensor_numel (c->dst) / f : 0;
  CUDA_TRY (ds_cuda_geglu (c->dst->dtype, c->src[0]->data, c->src[1] ? c->src[1]->data : NULL,
                           c->dst->data, rows, f, impl->stream),
            "geglu launch");
  return DS_OK;
}

/* The three forms of b (ds-ops.c), in the documented order of precedence,
 * each as a broadcast of b with a run length. */
static DsStatus
cuda_add (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *at_ = c->src[0], *bt = c->src[1];
  const int64_t n = ds_tensor_numel (at_), nbv = ds_tensor_numel (bt);
  if (n == 0 || nbv == 0)
    return DS_OK;
  int64_t run;
  if (ds_tensor_same_shape (at_, bt))
    run = 1; /* elementwise */
  else if (bt->ndim == 1 && bt->shape[0] == at_->shape[at_->ndim - 1])
    run = 1; /* bias over the last dim: b[i % C] */
  else
    run = n / nbv; /* leading-dims prefix: each b value covers a run */
  CUDA_TRY (ds_cuda_add (c->dst->dtype, at_->data, bt->data, c->dst->data, n, run, nbv,
                         impl->stream),
            "add launch");
  return DS_OK;
}

static DsStatus
cuda_mul (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  CUDA_TRY (ds_cuda_mul (c->dst->dtype, c->src[0]->data, c->src[1]->data, c->dst->data,
                         ds_tensor_numel (c->dst), impl->stream),
            "mul launch");
  return DS_OK;
}

static DsStatus
cuda_concat (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *at_ = c->src[0], *bt = c->src[1];
  const int d = c->p.concat.dim;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; i++)
    outer *= at_->shape[i];
  for (int i = d + 1; i < at_->ndim; i++)
    inner *= at_->shape[i];
  CUDA_TRY (ds_cuda_concat (c->dst->dtype, at_->data, bt->data, c->dst->data, outer,
                            at_->shape[d] * inner, bt->shape[d] * inner, impl->stream),
            "concat launch");
  return DS_OK;
}

static DsStatus
cuda_upsample (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  CUDA_TRY (ds_cuda_upsample_nearest2x (c->dst->dtype, xt->data, c->dst->data,
                                        xt->shape[0] * xt->shape[1], xt->shape[2], xt->shape[3],
                                        impl->stream),
            "upsample launch");
  return DS_OK;
}

/* The host rounds the two constants to float exactly as cpu_timestep does. */
static DsStatus
cuda_timestep (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const int64_t nb = c->dst->shape[0], dim = c->dst->shape[1], half = dim / 2;
  const float neg_log_period = (float) -log ((double) c->p.timestep.max_period);
  const float denom = (float) ((double) half - (double) c->p.timestep.freq_shift);
  CUDA_TRY (ds_cuda_timestep_embedding (c->dst->dtype, c->src[0]->data, c->dst->data, nb, dim,
                                        neg_log_period, denom, c->p.timestep.flip_sin_to_cos,
                                        impl->stream),
            "timestep embedding launch");
  return DS_OK;
}

/* Ids can come from user input: they are copied to the host and checked, all
 * before anything is written, with the CPU backend's message. Not while a
 * graph is recorded (no copy can run then, and a replay would not repeat the
 * check): there the model checks its ids on the host before every run (the
 * text encoder does), and the kernel's own guard writes a zero row for an id
 * outside the table instead of reading outside it. */
static DsStatus
check_ids (CudaImpl *impl, const DsTensor *idt, int64_t v, DsError *err)
{
  const int64_t n = ds_tensor_numel (idt);
  int32_t *ids = malloc ((size_t) n * sizeof *ids);
  if (!ids)
    return ds_error_set (err, DS_ERR_NOMEM, "CUDA backend: out of host memory checking %lld ids",
                         (long long) n);
  cudaError_t e = cudaMemcpyAsync (ids, idt->data, (size_t) n * sizeof *ids,
                                   cudaMemcpyDeviceToHost, impl->stream);
  if (e == cudaSuccess)
    e = cudaStreamSynchronize (impl->stream);
  DsStatus st = e != cudaSuccess ? cuda_fail (e, err, "copying embedding ids to the host") : DS_OK;
  for (int64_t i = 0; st == DS_OK && i < n; i++)
    if (ids[i] < 0 || ids[i] >= v)
      st = ds_error_set (err, DS_ERR_INVALID,
                         "embedding: id %d at position %lld is outside the table's %lld rows",
                         (int) ids[i], (long long) i, (long long) v);
  free (ids);
  return st;
}

static DsStatus
cuda_embedding (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *idt = c->src[0], *table = c->src[1];
  const int64_t n = ds_tensor_numel (idt), v = table->shape[0], ch = table->shape[1];
  if (n == 0)
    return DS_OK;
  if (!impl->capturing)
    {
      DsStatus st = check_ids (impl, idt, v, err);
      if (st != DS_OK)
        return st;
    }
  CUDA_TRY (ds_cuda_embedding (c->dst->dtype, idt->data, table->data, c->dst->data, n, ch, v,
                               impl->stream),
            "embedding launch");
  return DS_OK;
}

/* Output dim i reads source dim perm[i]; padded to four dims with leading
 * size-1 dims, as the CPU reference does. */
static DsStatus
cuda_permute (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int nd = xt->ndim, pad = DS_MAX_DIMS - nd;
  int64_t xstride[DS_MAX_DIMS], acc = 1;
  for (int i = nd - 1; i >= 0; i--)
    {
      xstride[i] = acc;
      acc *= xt->shape[i];
    }
  DsCudaPermute p;
  for (int i = 0; i < DS_MAX_DIMS; i++)
    {
      p.shape[i] = i < pad ? 1 : c->dst->shape[i - pad];
      p.stride[i] = i < pad ? 0 : xstride[c->p.permute.perm[i - pad]];
    }
  CUDA_TRY (ds_cuda_permute (c->dst->dtype, xt->data, c->dst->data, &p, impl->stream),
            "permute launch");
  return DS_OK;
}

static DsStatus
cuda_mean_heads (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int64_t nb = xt->shape[0], h = xt->shape[1];
  const int64_t r = nb && h ? ds_tensor_numel (xt) / (nb * h) : 0;
  CUDA_TRY (ds_cuda_mean_heads (c->dst->dtype, xt->data, c->dst->data, nb, h, r, impl->stream),
            "mean over heads launch");
  return DS_OK;
}

/* ---- the decoder's ops (LLaMA, docs/models.md §7.4) ---- */

static DsStatus
cuda_rms_norm (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int64_t ch = xt->shape[xt->ndim - 1], rows = ch ? ds_tensor_numel (xt) / ch : 0;
  CUDA_TRY (ds_cuda_rms_norm (c->dst->dtype, xt->data, c->src[1]->data, c->dst->data, rows, ch,
                              c->p.rms_norm.eps, impl->stream),
            "rms norm launch");
  return DS_OK;
}

static DsStatus
cuda_rope (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *xt = c->src[0];
  const int64_t nb = xt->shape[0], n = xt->shape[1], ch = xt->shape[2];
  const int64_t heads = c->p.rope.heads;
  if (nb == 0 || n == 0 || ch == 0)
    return DS_OK;
  CUDA_TRY (ds_cuda_rope (c->dst->dtype, xt->data, c->src[1]->data, c->dst->data, nb * n, n, heads,
                          ch / heads, c->p.rope.theta, impl->stream),
            "rope launch");
  return DS_OK;
}

/* Query blocks of more rows than this (prefills) run as GEMMs; fewer (decode
 * steps) by the split-K kernel of attention-kv.cu, which reads the keys once
 * per query row. */
#define ATTN_KV_KERNEL_MAX_Q 16

/* The materialised cached attention, as cuda_attention_materialised but
 * causal from q_pos and grouped: per batch item and block of query rows,
 *   S_h[rows, keys] = scale * Q_h . K_{h/group}^T   (f32; `group` GEMMs, each
 *                                                    batched over kv heads)
 *   P_h = softmax(S_h), row r seeing q_pos + q0 + r + 1 keys
 *   O_h = P_h . V_{h/group}
 * where keys = q_pos + q0 + rows, what the block's last row sees (the CPU
 * reference's blocks stop there too). S is f32 scratch; in f16/bf16, P is
 * rounded to the dtype into scratch after S. */
static DsStatus
attention_kv_materialised (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *qt = c->src[0], *kt = c->src[1], *vt = c->src[2];
  const DsDType dt = c->dst->dtype;
  const bool narrow = dt != DS_DTYPE_F32;
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t heads = c->p.attention_kv.heads, kv_heads = c->p.attention_kv.kv_heads;
  const int64_t group = heads / kv_heads, cq = qt->shape[2], ckv = kt->shape[2];
  const int64_t d = cq / heads, q_pos = c->p.attention_kv.q_pos;
  const int64_t most = q_pos + nq; /* keys the last query sees */
  int64_t block = ATTN_BUDGET_FLOATS / (heads * most);
  block = block < 1 ? 1 : block > nq ? nq : block;
  const size_t s_bytes = (size_t) (heads * block * most) * sizeof (float);
  const size_t p_bytes = narrow ? (size_t) (heads * block * most) * ds_dtype_size (dt) : 0;
  uint8_t *base = cuda_scratch (impl, s_bytes + p_bytes, err);
  if (!base)
    return err ? err->code : DS_ERR_DEVICE;
  float *scores = (float *) base;
  void *probs = narrow ? (void *) (base + s_bytes) : (void *) scores;
  for (int64_t b = 0; b < nb; b++)
    {
      const void *kb = at (kt->data, b * nk * ckv, dt), *vb = at (vt->data, b * nk * ckv, dt);
      for (int64_t q0 = 0; q0 < nq; q0 += block)
        {
          const int64_t rows = nq - q0 < block ? nq - q0 : block, keys = q_pos + q0 + rows;
          const int64_t hs = rows * keys; /* one head's scores */
          const void *qb = at (qt->data, (b * nq + q0) * cq, dt);
          void *ob = at (c->dst->data, (b * nq + q0) * cq, dt);
          for (int64_t g = 0; g < group; g++) /* query heads hk * group + g */
            DS_TRY (gemm (impl,
                          &(Gemm) { .ab = dt, .ct = DS_DTYPE_F32, .tb = true, .m = rows,
                                    .n = keys, .k = d, .batch = kv_heads,
                                    .alpha = c->p.attention_kv.scale, .a = at (qb, g * d, dt),
                                    .lda = cq, .stride_a = group * d, .b = kb, .ldb = ckv,
                                    .stride_b = d, .c = scores + g * hs, .ldc = keys,
                                    .stride_c = group * hs },
                          err));
          for (int64_t h0 = 0; h0 < heads; h0 += 65535) /* the softmax grid's batch limit */
            {
              const int64_t nh = heads - h0 < 65535 ? heads - h0 : 65535;
              CUDA_TRY (ds_cuda_softmax (DS_DTYPE_F32, scores + h0 * hs, dt,
                                         at (probs, h0 * hs, dt), rows, keys, keys, nh, hs,
                                         q_pos + q0, impl->stream),
                        "attention softmax launch");
            }
          for (int64_t g = 0; g < group; g++)
            DS_TRY (gemm (impl,
                          &(Gemm) { .ab = dt, .ct = dt, .m = rows, .n = d, .k = keys,
                                    .batch = kv_heads, .alpha = 1.0f,
                                    .a = at (probs, g * hs, dt), .lda = keys,
                                    .stride_a = group * hs, .b = vb, .ldb = ckv, .stride_b = d,
                                    .c = at (ob, g * d, dt), .ldc = cq, .stride_c = group * d },
                          err));
        }
    }
  return DS_OK;
}

static DsStatus
cuda_attention_kv (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *qt = c->src[0], *kt = c->src[1];
  const int64_t nb = qt->shape[0], nq = qt->shape[1], nk = kt->shape[1];
  const int64_t heads = c->p.attention_kv.heads, d = qt->shape[2] / heads;
  const int64_t q_pos = c->p.attention_kv.q_pos;
  const DsTensor *pos = c->src[3]; /* the position on the device (one query) */
  if (nb == 0 || nq == 0 || d == 0)
    return DS_OK;
  if (nq > ATTN_KV_KERNEL_MAX_Q || !ds_cuda_attention_kv_supported (nb, nq, heads, d))
    {
      if (pos) /* the GEMM path sizes its GEMMs by the position on the host */
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "cached attention at a device position: head size %lld, batch %lld "
                             "not supported",
                             (long long) d, (long long) nb);
      return attention_kv_materialised (impl, c, err);
    }
  const size_t bytes
    = ds_cuda_attention_kv_scratch (nb, nq, nk, heads, d, pos ? nk - nq : q_pos);
  void *scratch = bytes ? cuda_scratch (impl, bytes, err) : NULL;
  if (bytes && !scratch)
    return err ? err->code : DS_ERR_DEVICE;
  CUDA_TRY (ds_cuda_attention_kv (c->dst->dtype, qt->data, kt->data, c->src[2]->data,
                                  c->dst->data, nb, nq, nk, heads, c->p.attention_kv.kv_heads, d,
                                  c->p.attention_kv.scale, q_pos, pos ? pos->data : NULL, scratch,
                                  impl->stream),
            "cached attention launch");
  return DS_OK;
}

/* Rows of x into the destination at the positions the device holds. */
static DsStatus
cuda_set_rows (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  const DsTensor *pt = c->src[1];
  CUDA_TRY (ds_cuda_set_rows (c->dst->dtype, c->src[0]->data, pt->data, c->dst->data,
                              ds_tensor_numel (pt), c->dst->shape[1], c->dst->shape[0],
                              impl->stream),
            "set_rows launch");
  return DS_OK;
}

/* ---- the backend interface ---- */

static bool
cuda_supports (DsBackend *be, DsOp op)
{
  return (unsigned) op < DS_OP_COUNT;
}

static DsStatus
dispatch (CudaImpl *impl, const DsOpCall *c, DsError *err)
{
  switch (c->op)
    {
    case DS_OP_CONV2D: return cuda_conv2d (impl, c, err);
    case DS_OP_GROUP_NORM: return cuda_group_norm (impl, c, err);
    case DS_OP_LAYER_NORM: return cuda_layer_norm (impl, c, err);
    case DS_OP_LINEAR: return cuda_linear (impl, c, err);
    case DS_OP_MATMUL: return cuda_matmul (impl, c, err);
    case DS_OP_SOFTMAX: return cuda_softmax (impl, c, err);
    case DS_OP_ATTENTION: return cuda_attention (impl, c, err);
    case DS_OP_GELU:
    case DS_OP_QUICK_GELU:
    case DS_OP_SILU:
    case DS_OP_SCALE: return cuda_unary (impl, c, err);
    case DS_OP_GEGLU: return cuda_geglu (impl, c, err);
    case DS_OP_ADD: return cuda_add (impl, c, err);
    case DS_OP_MUL: return cuda_mul (impl, c, err);
    case DS_OP_CONCAT: return cuda_concat (impl, c, err);
    case DS_OP_UPSAMPLE_NEAREST2X: return cuda_upsample (impl, c, err);
    case DS_OP_TIMESTEP_EMBEDDING: return cuda_timestep (impl, c, err);
    case DS_OP_EMBEDDING: return cuda_embedding (impl, c, err);
    case DS_OP_PERMUTE: return cuda_permute (impl, c, err);
    case DS_OP_MEAN_HEADS: return cuda_mean_heads (impl, c, err);
    case DS_OP_RMS_NORM: return cuda_rms_norm (impl, c, err);
    case DS_OP_ROPE: return cuda_rope (impl, c, err);
    case DS_OP_ATTENTION_KV: return cuda_attention_kv (impl, c, err);
    case DS_OP_SET_ROWS: return cuda_set_rows (impl, c, err);
    default: break;
    }
  return ds_error_set (err, DS_ERR_UNSUPPORTED, "CUDA backend: unknown op %d", (int) c->op);
}

static DsStatus
cuda_run (DsBackend *be, const DsOpCall *c, DsError *err)
{
  CudaImpl *impl = impl_of (be);
  DsStatus st = enter (impl, err);
  if (st == DS_OK)
    st = dispatch (impl, c, err);
  if (st == DS_OK && impl->sync_each_op && !impl->capturing)
    {
      cudaError_t e = cudaStreamSynchronize (impl->stream);
      if (e == cudaSuccess)
        e = cudaGetLastError ();
      if (e != cudaSuccess)
        st = cuda_fail (e, err, "synchronizing after the op (DS_CUDA_SYNC)");
    }
  if (st != DS_OK && st != DS_ERR_INVALID)
    {
      char s[96];
      const DsTensor *d = c->dst;
      ds_error_prefix (err, st, "%s -> %s", ds_op_name (c->op),
                       ds_shape_str (d->ndim, d->shape, s, sizeof s));
      return check_lost (impl, st, err);
    }
  return st;
}

static DsStatus
cuda_tensor_alloc (DsBackend *be, DsTensor *t, DsDType dtype, int ndim, const int64_t *shape,
                   DsError *err)
{
  CudaImpl *impl = impl_of (be);
  *t = ds_tensor_make (dtype, ndim, shape);
  t->device = DS_DEVICE_CUDA;
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return ds_error_set (err, DS_ERR_INVALID, "negative tensor dimension %lld",
                           (long long) shape[i]);
  DS_TRY (enter (impl, err));
  const size_t bytes = ds_tensor_nbytes (t);
  char what[128], s[96];
  snprintf (what, sizeof what, "a %s %s tensor", ds_dtype_name (dtype),
            ds_shape_str (ndim, shape, s, sizeof s));
  DS_TRY (device_malloc (impl, &t->data, bytes, what, err));
  t->owned = true;
  /* Zeroed, as ds_tensor_alloc's host tensors are. */
  if (bytes)
    CUDA_TRY (cudaMemsetAsync (t->data, 0, bytes, impl->stream), "cudaMemsetAsync");
  return DS_OK;
}

static void
cuda_tensor_free (DsBackend *be, DsTensor *t)
{
  CudaImpl *impl = impl_of (be);
  if (t->owned && t->data)
    {
      assert (t->device == DS_DEVICE_CUDA);
      /* Queued work may still use the memory. A failure here has no caller to
       * go to; it is a sticky device error the next checked call reports. */
      if (cudaSetDevice (impl->device) == cudaSuccess)
        cudaStreamSynchronize (impl->stream);
      device_free (impl, t->data, ds_tensor_nbytes (t));
    }
  memset (t, 0, sizeof *t);
}

/* Copies complete before returning, so the host buffer is free to reuse and a
 * failure belongs to this call (or to earlier queued work, which it names). */
static DsStatus
cuda_copy (CudaImpl *impl, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
           DsError *err)
{
  DS_TRY (enter (impl, err));
  if (bytes == 0)
    return DS_OK;
  const char *what = kind == cudaMemcpyHostToDevice ? "upload" : "download";
  cudaError_t e = cudaMemcpyAsync (dst, src, bytes, kind, impl->stream);
  if (e == cudaSuccess)
    e = cudaStreamSynchronize (impl->stream);
  if (e != cudaSuccess)
    return check_lost (impl, cuda_fail (e, err, what), err);
  return DS_OK;
}

static DsStatus
cuda_upload (DsBackend *be, DsTensor *dst, const void *host, DsError *err)
{
  assert (dst->device == DS_DEVICE_CUDA);
  return cuda_copy (impl_of (be), dst->data, host, ds_tensor_nbytes (dst), cudaMemcpyHostToDevice,
                    err);
}

static DsStatus
cuda_download (DsBackend *be, const DsTensor *src, void *host, DsError *err)
{
  assert (src->device == DS_DEVICE_CUDA);
  return cuda_copy (impl_of (be), host, src->data, ds_tensor_nbytes (src), cudaMemcpyDeviceToHost,
                    err);
}

static DsStatus
cuda_synchronize (DsBackend *be, DsError *err)
{
  CudaImpl *impl = impl_of (be);
  DS_TRY (enter (impl, err));
  cudaError_t e = cudaStreamSynchronize (impl->stream);
  if (e != cudaSuccess)
    return check_lost (impl, cuda_fail (e, err, "cudaStreamSynchronize"), err);
  return DS_OK;
}

/* ---- CUDA graphs by stream capture ----
 *
 * Everything the backend enqueues goes to its one stream, so capturing that
 * stream records a whole forward: kernels and cuBLAS calls (cuBLAS has its own
 * workspace, set at creation, so it does not allocate while capturing). The
 * caller must have run the same forward once eagerly, so the scratch buffer
 * already has its size: growing it would synchronise, which capture forbids
 * (the failure is reported, and the capture abandoned). */
static DsStatus
cuda_graph_begin (DsBackend *be, DsError *err)
{
  CudaImpl *impl = impl_of (be);
  DS_TRY (enter (impl, err));
  CUDA_TRY (cudaStreamBeginCapture (impl->stream, cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture");
  impl->capturing = true;
  return DS_OK;
}

static DsStatus
cuda_graph_end (DsBackend *be, void **graph, DsError *err)
{
  CudaImpl *impl = impl_of (be);
  cudaGraph_t g = NULL;
  cudaGraphExec_t exec = NULL;
  *graph = NULL;
  impl->capturing = false;
  cudaError_t e = cudaStreamEndCapture (impl->stream, &g);
  if (e == cudaSuccess)
    e = cudaGraphInstantiate (&exec, g, 0);
  if (g)
    cudaGraphDestroy (g);
  if (e != cudaSuccess)
    {
      cudaGetLastError ();
      return cuda_fail (e, err, "capturing a CUDA graph");
    }
  *graph = exec;
  return DS_OK;
}

static DsStatus
cuda_graph_launch (DsBackend *be, void *graph, DsError *err)
{
  CudaImpl *impl = impl_of (be);
  DS_TRY (enter (impl, err));
  cudaError_t e = cudaGraphLaunch ((cudaGraphExec_t) graph, impl->stream);
  if (e != cudaSuccess)
    return check_lost (impl, cuda_fail (e, err, "cudaGraphLaunch"), err);
  return DS_OK;
}

static void
cuda_graph_free (DsBackend *be, void *graph)
{
  CudaImpl *impl = impl_of (be);
  if (graph && cudaSetDevice (impl->device) == cudaSuccess)
    {
      cudaStreamSynchronize (impl->stream);
      cudaGraphExecDestroy ((cudaGraphExec_t) graph);
    }
  cudaGetLastError ();
}

/* ---- op timing for DIFFSCOPE_PROFILE (ds-ops.h): event pairs ---- */

#define TIMER_SLOTS 1024

static int
cuda_timer_begin (DsBackend *be)
{
  CudaImpl *impl = impl_of (be);
  if (impl->capturing || impl->timer_used == TIMER_SLOTS)
    return -1;
  if (!impl->timer_events)
    {
      cudaEvent_t *ev = calloc (2 * TIMER_SLOTS, sizeof *ev);
      for (int i = 0; ev && i < 2 * TIMER_SLOTS; i++)
        if (cudaEventCreate (&ev[i]) != cudaSuccess)
          {
            while (i-- > 0)
              cudaEventDestroy (ev[i]);
            free (ev);
            ev = NULL;
            cudaGetLastError ();
          }
      if (!ev)
        return -1;
      impl->timer_events = ev;
    }
  const int slot = impl->timer_used;
  if (cudaEventRecord (impl->timer_events[2 * slot], impl->stream) != cudaSuccess)
    {
      cudaGetLastError ();
      return -1;
    }
  impl->timer_used++;
  return slot;
}

static void
cuda_timer_end (DsBackend *be, int slot)
{
  CudaImpl *impl = impl_of (be);
  if (cudaEventRecord (impl->timer_events[2 * slot + 1], impl->stream) != cudaSuccess)
    cudaGetLastError ();
}

static double
cuda_timer_read (DsBackend *be, int slot)
{
  CudaImpl *impl = impl_of (be);
  float ms = 0;
  if (cudaEventSynchronize (impl->timer_events[2 * slot + 1]) != cudaSuccess
      || cudaEventElapsedTime (&ms, impl->timer_events[2 * slot],
                               impl->timer_events[2 * slot + 1]) != cudaSuccess)
    {
      cudaGetLastError ();
      return 0;
    }
  return ms;
}

static void
cuda_timer_reset (DsBackend *be)
{
  impl_of (be)->timer_used = 0;
}

static void
cuda_destroy (DsBackend *be)
{
  CudaImpl *impl = impl_of (be);
  if (cudaSetDevice (impl->device) == cudaSuccess && impl->stream)
    cudaStreamSynchronize (impl->stream);
  if (impl->blas)
    cublasDestroy (impl->blas);
  if (impl->lt)
    cublasLtDestroy (impl->lt);
#ifdef DS_HAVE_CUDNN
  ds_cudnn_free (impl->cudnn);
#endif
  device_free (impl, impl->blas_workspace, BLAS_WORKSPACE_BYTES);
  device_free (impl, impl->scratch, impl->scratch_bytes);
  for (int i = 0; i < impl->n_retired; i++)
    cudaFree (impl->retired[i]);
  free (impl->retired);
  for (int i = 0; impl->timer_events && i < 2 * TIMER_SLOTS; i++)
    cudaEventDestroy (impl->timer_events[i]);
  free (impl->timer_events);
  if (impl->stream)
    cudaStreamDestroy (impl->stream);
  cudaGetLastError (); /* nothing left to report a teardown failure to */
  free (impl);
}

/* Whether the environment switches a path off: NAME=0. */
static bool
switched_off (const char *name)
{
  const char *v = getenv (name);
  return v && strcmp (v, "0") == 0;
}

/* DIFFSCOPE_GPU_MEMORY: bytes, with an optional K, M or G (powers of 1024);
 * unset or empty: no cap. */
static DsStatus
parse_memory_cap (size_t *cap, DsError *err)
{
  *cap = 0;
  const char *v = getenv ("DIFFSCOPE_GPU_MEMORY");
  if (!v || !*v)
    return DS_OK;
  char *end;
  errno = 0;
  const double n = strtod (v, &end);
  double unit = 1;
  if (*end == 'K' || *end == 'k')
    unit = 1024.0, end++;
  else if (*end == 'M' || *end == 'm')
    unit = 1048576.0, end++;
  else if (*end == 'G' || *end == 'g')
    unit = 1073741824.0, end++;
  if (end == v || *end || errno || !(n > 0) || n * unit >= 0x1p62)
    return ds_error_set (err, DS_ERR_INVALID,
                         "DIFFSCOPE_GPU_MEMORY='%s' is not a memory size (bytes, or a number "
                         "with K, M or G, e.g. 6G)",
                         v);
  *cap = (size_t) (n * unit);
  return DS_OK;
}

/* Stream, cuBLAS handle and settings; on failure the caller destroys. */
static DsStatus
cuda_setup (CudaImpl *impl, DsError *err)
{
  DS_TRY (parse_memory_cap (&impl->mem_cap, err));
  CUDA_TRY (cudaStreamCreate (&impl->stream), "cudaStreamCreate");
  cublasStatus_t s = cublasCreate (&impl->blas);
  if (s != CUBLAS_STATUS_SUCCESS)
    {
      impl->blas = NULL;
      return blas_fail (s, err, "create");
    }
  if ((s = cublasSetStream (impl->blas, impl->stream)) != CUBLAS_STATUS_SUCCESS)
    return blas_fail (s, err, "set stream");
  /* A workspace of its own so cuBLAS never allocates inside a captured graph;
   * cuBLASLt is handed the same one (both run on this one stream). */
  DS_TRY (device_malloc (impl, &impl->blas_workspace, BLAS_WORKSPACE_BYTES,
                         "cuBLAS's workspace", err));
  if ((s = cublasSetWorkspace (impl->blas, impl->blas_workspace, BLAS_WORKSPACE_BYTES))
      != CUBLAS_STATUS_SUCCESS)
    return blas_fail (s, err, "set workspace");
  if (!switched_off ("DS_CUDA_LT") && cublasLtCreate (&impl->lt) != CUBLAS_STATUS_SUCCESS)
    impl->lt = NULL; /* GEMM + bias kernel, then */
  /* f32 GEMMs ask for CUBLAS_COMPUTE_32F_PEDANTIC themselves (no TF32, so they
   * match the CPU to rounding); f16/bf16 ones use tensor cores. */
  const char *sync = getenv ("DS_CUDA_SYNC");
  impl->sync_each_op = sync && *sync && strcmp (sync, "0") != 0;
  impl->no_flash = switched_off ("DS_CUDA_FLASH");
  impl->no_ldmatrix = switched_off ("DS_CUDA_LDMATRIX");
  snprintf (impl->conv_path, sizeof impl->conv_path, "im2col + cuBLAS (built without cuDNN)");
#ifdef DS_HAVE_CUDNN
  const char *conv = getenv ("DS_CUDA_CONV");
  if (conv && strcmp (conv, "im2col") == 0)
    snprintf (impl->conv_path, sizeof impl->conv_path, "im2col + cuBLAS (DS_CUDA_CONV=im2col)");
  else
    {
      char why[200];
      impl->cudnn = ds_cudnn_new (impl->stream, why, sizeof why);
      if (impl->cudnn)
        snprintf (impl->conv_path, sizeof impl->conv_path,
                  "cuDNN %d (im2col + cuBLAS for asymmetric padding)", ds_cudnn_version ());
      else
        snprintf (impl->conv_path, sizeof impl->conv_path, "im2col + cuBLAS (%s)", why);
    }
#endif
  return DS_OK;
}

DsBackend *
ds_backend_cuda_new (int device, DsDType act_dtype, DsError *err)
{
  if (!ds_dtype_is_float (act_dtype))
    {
      ds_error_set (err, DS_ERR_INVALID, "CUDA backend: %s is not a float dtype to compute in",
                    ds_dtype_name (act_dtype));
      return NULL;
    }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount (&count);
  if (e != cudaSuccess)
    {
      cudaGetLastError ();
      ds_error_set (err, DS_ERR_DEVICE, "no CUDA device: %s (%s)", cudaGetErrorString (e),
                    cudaGetErrorName (e));
      return NULL;
    }
  if (device < 0 || device >= count)
    {
      ds_error_set (err, DS_ERR_DEVICE, "no CUDA device: index %d asked for, %d device%s present",
                    device, count, count == 1 ? "" : "s");
      return NULL;
    }
  struct cudaDeviceProp prop;
  if ((e = cudaSetDevice (device)) != cudaSuccess
      || (e = cudaGetDeviceProperties (&prop, device)) != cudaSuccess)
    {
      cudaGetLastError ();
      ds_error_set (err, DS_ERR_DEVICE, "no CUDA device: device %d does not answer: %s (%s)",
                    device, cudaGetErrorString (e), cudaGetErrorName (e));
      return NULL;
    }

  CudaImpl *impl = calloc (1, sizeof *impl);
  if (!impl)
    {
      ds_error_set (err, DS_ERR_NOMEM, "out of host memory creating the CUDA backend");
      return NULL;
    }
  impl->device = device;
  impl->cc_major = prop.major;
  snprintf (impl->name, sizeof impl->name, "CUDA · %s", prop.name);
  impl->be = (DsBackend) {
    .name = impl->name,
    .device = DS_DEVICE_CUDA,
    .act_dtype = act_dtype,
    .supports = cuda_supports,
    .run = cuda_run,
    .tensor_alloc = cuda_tensor_alloc,
    .tensor_free = cuda_tensor_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .synchronize = cuda_synchronize,
    .destroy = cuda_destroy,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
    .timer_begin = cuda_timer_begin,
    .timer_end = cuda_timer_end,
    .timer_read = cuda_timer_read,
    .timer_reset = cuda_timer_reset,
    .impl = impl,
  };
  if (cuda_setup (impl, err) != DS_OK)
    {
      ds_error_prefix (err, DS_ERR_DEVICE, "setting up %s", impl->name);
      cuda_destroy (&impl->be);
      return NULL;
    }
  return &impl->be;
}

const char *
ds_cuda_backend_conv_path (DsBackend *be)
{
  return impl_of (be)->conv_path;
}

void
ds_cuda_backend_conv_stats (DsBackend *be, DsCudaConvStats *out)
{
  *out = impl_of (be)->conv_stats;
}

void
ds_cuda_backend_set_memory_cap (DsBackend *be, size_t bytes)
{
  impl_of (be)->mem_cap = bytes;
}

size_t
ds_cuda_backend_memory_used (DsBackend *be)
{
  return impl_of (be)->mem_used;
}
