/* ds-emu-blas.cc: the CUDA emulator's cuBLAS subset (tests/cuda-emu/
 * README.md).
 *
 * GEMMs with cuBLAS's column-major semantics and argument checks, computed by
 * OpenBLAS's cblas_sgemm on float copies of the operands: f32, f16 and bf16
 * data, f32 compute (the FAST_* compute types and the TF32 math mode round
 * the inputs to what the tensor cores would see, so the emulator is no more
 * precise than the GPU may be). alpha is applied inside the product, beta
 * afterwards in float, and C is read only when beta is non-zero, as cuBLAS
 * promises. The result is rounded to C's type (nearest even). Every GEMM is
 * enqueued on the handle's stream, so it is recorded while that captures.
 * The cuBLASLt subset (cublasLt.h) runs through the same code.
 */
#include "cublas_v2.h"
#include "cublasLt.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "ds-emu-fp.h"
#include "ds-emu-internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  void *workspace = nullptr;
  size_t workspace_size = 0;
};

namespace {

enum Rounding { ROUND_NONE, ROUND_TF32, ROUND_F16, ROUND_BF16 };

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  cudaDataType at, bt, ct;
  int lda, ldb, ldc;
  Rounding rounding;
  int batch;
  /* Strided batches, or (when the arrays are set) pointer arrays in device
   * memory, read when the GEMM runs as cuBLAS reads them. */
  const void *A, *B;
  void *C;
  long long sa, sb, sc;
  const void *const *Aarr, *const *Barr;
  void *const *Carr;
  /* cuBLASLt (one product): beta * Cin instead of beta * C, then + bias[row]
   * (bias of C's type) before rounding to C, the output D */
  const void *Cin = nullptr;
  const void *bias = nullptr;
};

size_t
type_size (cudaDataType t)
{
  return t == CUDA_R_32F ? 4 : 2;
}

float
load (cudaDataType t, const void *p, size_t i)
{
  switch (t)
    {
    case CUDA_R_16F: return ds_emu_half_bits_to_float (((const unsigned short *) p)[i]);
    case CUDA_R_16BF: return ds_emu_bf16_bits_to_float (((const unsigned short *) p)[i]);
    default: return ((const float *) p)[i];
    }
}

void
store (cudaDataType t, void *p, size_t i, float v)
{
  switch (t)
    {
    case CUDA_R_16F: ((unsigned short *) p)[i] = ds_emu_float_to_half_bits (v); break;
    case CUDA_R_16BF: ((unsigned short *) p)[i] = ds_emu_float_to_bf16_bits (v); break;
    default: ((float *) p)[i] = v; break;
    }
}

float
round_input (Rounding r, float v)
{
  switch (r)
    {
    case ROUND_TF32: return ds_emu_round_tf32 (v);
    case ROUND_F16: return ds_emu_half_bits_to_float (ds_emu_float_to_half_bits (v));
    case ROUND_BF16: return ds_emu_bf16_bits_to_float (ds_emu_float_to_bf16_bits (v));
    default: return v;
    }
}

/* A rows x cols column-major operand as floats: the data itself when it is
 * f32 and unrounded, else a packed converted copy (ld = rows). */
const float *
as_float (cudaDataType t, Rounding r, const void *p, int rows, int cols, int ld, int *ld_out,
          std::vector<float> &buf)
{
  if (t == CUDA_R_32F && r == ROUND_NONE)
    {
      *ld_out = ld;
      return (const float *) p;
    }
  buf.resize ((size_t) rows * cols);
  for (int j = 0; j < cols; j++)
    for (int i = 0; i < rows; i++)
      buf[(size_t) j * rows + i] = round_input (r, load (t, p, (size_t) j * ld + i));
  *ld_out = rows;
  return buf.data ();
}

void
gemm_one (const Gemm &g, const void *A, const void *B, void *C)
{
  const bool na = g.ta == CUBLAS_OP_N, nb = g.tb == CUBLAS_OP_N;
  std::vector<float> t ((size_t) g.m * g.n, 0.0f), abuf, bbuf;
  if (g.k > 0 && g.alpha != 0.0f)
    {
      int lda, ldb;
      const float *a = as_float (g.at, g.rounding, A, na ? g.m : g.k, na ? g.k : g.m, g.lda, &lda,
                                 abuf);
      const float *b = as_float (g.bt, g.rounding, B, nb ? g.k : g.n, nb ? g.n : g.k, g.ldb, &ldb,
                                 bbuf);
      cblas_sgemm (CblasColMajor, na ? CblasNoTrans : CblasTrans, nb ? CblasNoTrans : CblasTrans,
                   g.m, g.n, g.k, g.alpha, a, lda, b, ldb, 0.0f, t.data (), g.m);
    }
  for (int j = 0; j < g.n; j++)
    for (int i = 0; i < g.m; i++)
      {
        const size_t ci = (size_t) j * g.ldc + i;
        float v = t[(size_t) j * g.m + i];
        if (g.beta != 0.0f)
          v += g.beta * load (g.ct, g.Cin ? g.Cin : C, ci);
        if (g.bias)
          v += load (g.ct, g.bias, (size_t) i);
        store (g.ct, C, ci, v);
      }
}

void
gemm_run (const Gemm &g)
{
  for (int b = 0; b < g.batch; b++)
    {
      if (g.Aarr)
        gemm_one (g, g.Aarr[b], g.Barr[b], g.Carr[b]);
      else
        gemm_one (g, (const char *) g.A + (size_t) b * g.sa * type_size (g.at),
                  (const char *) g.B + (size_t) b * g.sb * type_size (g.bt),
                  (char *) g.C + (size_t) b * g.sc * type_size (g.ct));
    }
}

cublasStatus_t
check_args (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
            const void *alpha, int lda, int ldb, const void *beta, int ldc, int batch)
{
  if (!h)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [] (cublasOperation_t o) {
    return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C;
  };
  auto at_least = [] (int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
  if (!op_ok (ta) || !op_ok (tb) || m < 0 || n < 0 || k < 0 || batch < 0 || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!at_least (lda, ta == CUBLAS_OP_N ? m : k) || !at_least (ldb, tb == CUBLAS_OP_N ? k : n)
      || !at_least (ldc, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

/* The type combinations cuBLAS documents for f32 compute, and what the
 * compute type lets it do to the inputs. */
cublasStatus_t
check_types (cudaDataType at, cudaDataType bt, cudaDataType ct, cublasComputeType_t compute,
             cublasGemmAlgo_t algo, Rounding *r)
{
  if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (at != bt)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  switch (compute)
    {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      *r = ROUND_NONE;
      if (at == CUDA_R_32F)
        return ct == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
      if (at == CUDA_R_16F || at == CUDA_R_16BF)
        return ct == at || ct == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
      return CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      *r = compute == CUBLAS_COMPUTE_32F_FAST_16F    ? ROUND_F16
           : compute == CUBLAS_COMPUTE_32F_FAST_16BF ? ROUND_BF16
                                                     : ROUND_TF32;
      return at == CUDA_R_32F && ct == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS
                                                  : CUBLAS_STATUS_NOT_SUPPORTED;
    default:
      return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t
submit (cublasHandle_t h, const Gemm &g)
{
  if (g.m == 0 || g.n == 0 || g.batch == 0)
    return CUBLAS_STATUS_SUCCESS;
  cudaError_t e = ds_emu::enqueue (h->stream, [g] () { gemm_run (g); });
  if (e != cudaSuccess)
    {
      cudaGetLastError (); /* cuBLAS reports it as its own status */
      return CUBLAS_STATUS_EXECUTION_FAILED;
    }
  return CUBLAS_STATUS_SUCCESS;
}

/* The rounding Sgemm gets from the handle's math mode. */
Rounding
math_rounding (cublasHandle_t h)
{
  return (h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH ? ROUND_TF32 : ROUND_NONE;
}

} // namespace

extern "C" {

cublasStatus_t
cublasCreate_v2 (cublasHandle_t *handle)
{
  if (!handle)
    return CUBLAS_STATUS_INVALID_VALUE;
  *handle = nullptr;
  if (!ds_emu::any_device ())
    return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDestroy_v2 (cublasHandle_t handle)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetStream_v2 (cublasHandle_t handle, cudaStream_t streamId)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasGetStream_v2 (cublasHandle_t handle, cudaStream_t *streamId)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!streamId)
    return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetMathMode (cublasHandle_t handle, cublasMath_t mode)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  const unsigned m = (unsigned) mode;
  if ((m & 0xf) > CUBLAS_TF32_TENSOR_OP_MATH
      || (m & ~0xfu & ~(unsigned) CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasGetMathMode (cublasHandle_t handle, cublasMath_t *mode)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode)
    return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetWorkspace_v2 (cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes)
{
  if (!handle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (workspaceSizeInBytes && !workspace)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->workspace = workspace;
  handle->workspace_size = workspaceSizeInBytes;
  return CUBLAS_STATUS_SUCCESS;
}

#define STATUSES(X)                                                                           \
  X (CUBLAS_STATUS_SUCCESS, "the operation completed successfully")                           \
  X (CUBLAS_STATUS_NOT_INITIALIZED, "the library was not initialized")                        \
  X (CUBLAS_STATUS_ALLOC_FAILED, "the resource allocation failed")                            \
  X (CUBLAS_STATUS_INVALID_VALUE, "an invalid numeric value was used as an argument")         \
  X (CUBLAS_STATUS_ARCH_MISMATCH, "an absent device architectural feature is required")       \
  X (CUBLAS_STATUS_MAPPING_ERROR, "an access to GPU memory space failed")                     \
  X (CUBLAS_STATUS_EXECUTION_FAILED, "the GPU program failed to execute")                     \
  X (CUBLAS_STATUS_INTERNAL_ERROR, "an internal operation failed")                            \
  X (CUBLAS_STATUS_NOT_SUPPORTED, "the functionality requested is not supported")             \
  X (CUBLAS_STATUS_LICENSE_ERROR, "error detected trying to check the license")

const char *
cublasGetStatusString (cublasStatus_t status)
{
#define X(s, text)                                                                            \
  case s: return text;
  switch (status)
    {
      STATUSES (X)
    default: break;
    }
#undef X
  return "unknown error";
}

const char *
cublasGetStatusName (cublasStatus_t status)
{
#define X(s, text)                                                                            \
  case s: return #s;
  switch (status)
    {
      STATUSES (X)
    default: break;
    }
#undef X
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t
cublasSgemm_v2 (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                const float *beta, float *C, int ldc)
{
  return cublasSgemmStridedBatched (handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0,
                                    beta, C, ldc, 0, 1);
}

cublasStatus_t
cublasSgemmStridedBatched (cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, long long int strideA, const float *B, int ldb,
                           long long int strideB, const float *beta, float *C, int ldc,
                           long long int strideC, int batchCount)
{
  cublasStatus_t s = check_args (handle, transa, transb, m, n, k, alpha, lda, ldb, beta, ldc,
                                 batchCount);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  Gemm g = { transa, transb, m, n, k, *alpha, *beta, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F,
             lda, ldb, ldc, math_rounding (handle), batchCount, A, B, C, strideA, strideB,
             strideC, nullptr, nullptr, nullptr };
  return submit (handle, g);
}

cublasStatus_t
cublasGemmStridedBatchedEx (cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, long long int strideA,
                            const void *B, cudaDataType Btype, int ldb, long long int strideB,
                            const void *beta, void *C, cudaDataType Ctype, int ldc,
                            long long int strideC, int batchCount,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
  cublasStatus_t s = check_args (handle, transa, transb, m, n, k, alpha, lda, ldb, beta, ldc,
                                 batchCount);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  Rounding r;
  if ((s = check_types (Atype, Btype, Ctype, computeType, algo, &r)) != CUBLAS_STATUS_SUCCESS)
    return s;
  Gemm g = { transa, transb, m, n, k, *(const float *) alpha, *(const float *) beta, Atype, Btype,
             Ctype, lda, ldb, ldc, r, batchCount, A, B, C, strideA, strideB, strideC,
             nullptr, nullptr, nullptr };
  return submit (handle, g);
}

cublasStatus_t
cublasGemmEx (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
              int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
              const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
              cudaDataType Ctype, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
  return cublasGemmStridedBatchedEx (handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B,
                                     Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType, algo);
}

cublasStatus_t
cublasGemmBatchedEx (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                     int m, int n, int k, const void *alpha, const void *const Aarray[],
                     cudaDataType Atype, int lda, const void *const Barray[], cudaDataType Btype,
                     int ldb, const void *beta, void *const Carray[], cudaDataType Ctype, int ldc,
                     int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
  cublasStatus_t s = check_args (handle, transa, transb, m, n, k, alpha, lda, ldb, beta, ldc,
                                 batchCount);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  Rounding r;
  if ((s = check_types (Atype, Btype, Ctype, computeType, algo, &r)) != CUBLAS_STATUS_SUCCESS)
    return s;
  if (batchCount > 0 && (!Aarray || !Barray || !Carray))
    return CUBLAS_STATUS_INVALID_VALUE;
  Gemm g = { transa, transb, m, n, k, *(const float *) alpha, *(const float *) beta, Atype, Btype,
             Ctype, lda, ldb, ldc, r, batchCount, nullptr, nullptr, nullptr, 0, 0, 0,
             Aarray, Barray, Carray };
  return submit (handle, g);
}

/* ---- cuBLASLt ---- */

} /* extern "C" */

struct cublasLtContext {
  int unused = 0;
};

struct cublasLtMatmulDescEmu {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void *bias = nullptr;
};

struct cublasLtMatrixLayoutEmu {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};

struct cublasLtMatmulPreferenceEmu {
  uint64_t max_workspace = 0;
  uint32_t align[4] = { 256, 256, 256, 256 }; /* A, B, C, D */
};

namespace {

/* What a heuristic result records, checked when it is run. */
constexpr uint64_t kLtAlgoTag = 0x64732d656d752d6cull;

/* The product the descriptors describe, checked; m, n, k as cuBLAS's. */
cublasStatus_t
lt_check (cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
          cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, Gemm *g)
{
  if (!op || !a || !b || !c || !d)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (op->scale != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool na = op->ta == CUBLAS_OP_N, nb = op->tb == CUBLAS_OP_N;
  const uint64_t m = na ? a->rows : a->cols, k = na ? a->cols : a->rows;
  const uint64_t n = nb ? b->cols : b->rows;
  if ((nb ? b->rows : b->cols) != k || c->rows != m || c->cols != n || d->rows != m
      || d->cols != n || c->type != d->type || c->ld != d->ld)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  Rounding r;
  cublasStatus_t s = check_types (a->type, b->type, d->type, op->compute,
                                  CUBLAS_GEMM_DEFAULT_TENSOR_OP, &r);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  *g = {};
  g->ta = op->ta, g->tb = op->tb, g->m = (int) m, g->n = (int) n, g->k = (int) k;
  g->at = a->type, g->bt = b->type, g->ct = d->type;
  g->lda = (int) a->ld, g->ldb = (int) b->ld, g->ldc = (int) d->ld;
  g->rounding = r, g->batch = 1;
  return CUBLAS_STATUS_SUCCESS; /* leading dimensions: checked by cublasLtMatrixLayoutCreate */
}

} // namespace

extern "C" {

cublasStatus_t
cublasLtCreate (cublasLtHandle_t *lightHandle)
{
  if (!lightHandle)
    return CUBLAS_STATUS_INVALID_VALUE;
  *lightHandle = nullptr;
  if (!ds_emu::any_device ())
    return CUBLAS_STATUS_NOT_INITIALIZED;
  *lightHandle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtDestroy (cublasLtHandle_t lightHandle)
{
  if (!lightHandle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  delete lightHandle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescCreate (cublasLtMatmulDesc_t *matmulDesc, cublasComputeType_t computeType,
                          cudaDataType_t scaleType)
{
  if (!matmulDesc)
    return CUBLAS_STATUS_INVALID_VALUE;
  *matmulDesc = new cublasLtMatmulDescEmu;
  (*matmulDesc)->compute = computeType, (*matmulDesc)->scale = scaleType;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t matmulDesc)
{
  delete matmulDesc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                const void *buf, size_t sizeInBytes)
{
  if (!d || !buf)
    return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr)
    {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
      {
        if (sizeInBytes != sizeof (int32_t))
          return CUBLAS_STATUS_INVALID_VALUE;
        const cublasOperation_t o = (cublasOperation_t) * (const int32_t *) buf;
        if (o != CUBLAS_OP_N && o != CUBLAS_OP_T)
          return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = o;
        return CUBLAS_STATUS_SUCCESS;
      }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      {
        if (sizeInBytes != sizeof (uint32_t))
          return CUBLAS_STATUS_INVALID_VALUE;
        const uint32_t e = *(const uint32_t *) buf;
        if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS)
          return CUBLAS_STATUS_NOT_SUPPORTED; /* this subset */
        d->epilogue = (cublasLtEpilogue_t) e;
        return CUBLAS_STATUS_SUCCESS;
      }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (sizeInBytes != sizeof (void *))
        return CUBLAS_STATUS_INVALID_VALUE;
      d->bias = *(const void *const *) buf;
      return CUBLAS_STATUS_SUCCESS;
    default:
      return CUBLAS_STATUS_NOT_SUPPORTED; /* this subset */
    }
}

cublasStatus_t
cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *matLayout, cudaDataType type, uint64_t rows,
                            uint64_t cols, int64_t ld)
{
  if (!matLayout)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (ld < (int64_t) (rows > 1 ? rows : 1)
      || (type != CUDA_R_32F && type != CUDA_R_16F && type != CUDA_R_16BF))
    return CUBLAS_STATUS_INVALID_VALUE;
  *matLayout = new cublasLtMatrixLayoutEmu{ type, rows, cols, ld };
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t matLayout)
{
  delete matLayout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceCreate (cublasLtMatmulPreference_t *pref)
{
  if (!pref)
    return CUBLAS_STATUS_INVALID_VALUE;
  *pref = new cublasLtMatmulPreferenceEmu;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceDestroy (cublasLtMatmulPreference_t pref)
{
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceSetAttribute (cublasLtMatmulPreference_t pref,
                                      cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                      size_t sizeInBytes)
{
  if (!pref || !buf)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES
      && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
    {
      if (sizeInBytes != sizeof (uint32_t))
        return CUBLAS_STATUS_INVALID_VALUE;
      pref->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = *(const uint32_t *) buf;
      return CUBLAS_STATUS_SUCCESS;
    }
  if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
    return CUBLAS_STATUS_NOT_SUPPORTED; /* this subset */
  if (sizeInBytes != sizeof (uint64_t))
    return CUBLAS_STATUS_INVALID_VALUE;
  pref->max_workspace = *(const uint64_t *) buf;
  return CUBLAS_STATUS_SUCCESS;
}

/* One result: an algorithm that wants min(4 KiB, the preference's limit) of
 * workspace, so a caller that hands none over fails. */
cublasStatus_t
cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
                                cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                int *returnAlgoCount)
{
  if (!lightHandle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!preference || requestedAlgoCount < 1 || !heuristicResultsArray || !returnAlgoCount)
    return CUBLAS_STATUS_INVALID_VALUE;
  Gemm g;
  cublasStatus_t s = lt_check (operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &g);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  cublasLtMatmulHeuristicResult_t r = {};
  r.workspaceSize = preference->max_workspace < 4096 ? preference->max_workspace : 4096;
  r.algo.data[0] = kLtAlgoTag;
  r.algo.data[1] = r.workspaceSize;
  for (int i = 0; i < 4; i++) /* the alignment each pointer must have */
    r.algo.data[2 + i] = preference->align[i] < 16 ? preference->align[i] : 16;
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  heuristicResultsArray[0] = r;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmul (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void *alpha,
                const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSizeInBytes,
                cudaStream_t stream)
{
  if (!lightHandle)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  Gemm g;
  cublasStatus_t s = lt_check (computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &g);
  if (s != CUBLAS_STATUS_SUCCESS)
    return s;
  const size_t need = algo ? (size_t) algo->data[1] : 0;
  if (algo && algo->data[0] != kLtAlgoTag)
    return CUBLAS_STATUS_INVALID_VALUE; /* not from the heuristics */
  if (need && (!workspace || workspaceSizeInBytes < need || !ds_emu::device_range (workspace, need)))
    return CUBLAS_STATUS_INVALID_VALUE;
  const void *ptrs[4] = { A, B, C, D };
  for (int i = 0; algo && i < 4; i++)
    if (algo->data[2 + i] && (uintptr_t) ptrs[i] % algo->data[2 + i])
      return CUBLAS_STATUS_NOT_SUPPORTED; /* the algorithm needs more aligned pointers */
  if (computeDesc->epilogue == CUBLASLT_EPILOGUE_BIAS
      && (!computeDesc->bias || !ds_emu::device_range (computeDesc->bias,
                                                       (size_t) g.m * type_size (g.ct))))
    return CUBLAS_STATUS_INVALID_VALUE;
  g.alpha = *(const float *) alpha, g.beta = *(const float *) beta;
  g.A = A, g.B = B, g.C = D, g.Cin = C;
  g.bias = computeDesc->epilogue == CUBLASLT_EPILOGUE_BIAS ? computeDesc->bias : nullptr;
  if (g.m == 0 || g.n == 0)
    return CUBLAS_STATUS_SUCCESS;
  cudaError_t e = ds_emu::enqueue (stream, [g, workspace, need] () {
    if (need)
      memset (workspace, 0xff, need); /* an aliased workspace shows */
    gemm_run (g);
  });
  if (e != cudaSuccess)
    {
      cudaGetLastError ();
      return CUBLAS_STATUS_EXECUTION_FAILED;
    }
  return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
