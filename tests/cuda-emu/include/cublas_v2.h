/* cublas_v2.h: the CUDA emulator's cuBLAS subset (tests/cuda-emu/README.md).
 *
 * Handles, stream and math-mode settings, and the GEMMs: Sgemm, its strided
 * batches, and the Ex forms for f32, f16 and bf16 data with f32 compute.
 * They run on the host through OpenBLAS (ds-emu-blas.cc), column-major as
 * cuBLAS is, with host-pointer alpha and beta. Names, signatures and enum
 * values are the real ones, including the _v2 renames.
 */
#pragma once

#include "cuda_runtime.h"
#include "cuda_fp16.h"
#include "library_types.h"

typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
} cublasStatus_t;

typedef enum {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,
} cublasOperation_t;

typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
} cublasMath_t;

typedef enum {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;

typedef enum {
  CUBLAS_GEMM_DEFAULT = -1,
  CUBLAS_GEMM_DFALT = -1,
  CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
  CUBLAS_GEMM_DFALT_TENSOR_OP = 99,
} cublasGemmAlgo_t;

typedef struct cublasContext *cublasHandle_t;

#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasGetStream cublasGetStream_v2
#define cublasSetWorkspace cublasSetWorkspace_v2
#define cublasSgemm cublasSgemm_v2

DS_EMU_BEGIN_C

cublasStatus_t cublasCreate_v2 (cublasHandle_t *handle);
cublasStatus_t cublasDestroy_v2 (cublasHandle_t handle);
cublasStatus_t cublasSetStream_v2 (cublasHandle_t handle, cudaStream_t streamId);
cublasStatus_t cublasGetStream_v2 (cublasHandle_t handle, cudaStream_t *streamId);
cublasStatus_t cublasSetMathMode (cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode (cublasHandle_t handle, cublasMath_t *mode);
cublasStatus_t cublasSetWorkspace_v2 (cublasHandle_t handle, void *workspace,
                                      size_t workspaceSizeInBytes);
const char *cublasGetStatusString (cublasStatus_t status);
const char *cublasGetStatusName (cublasStatus_t status);

cublasStatus_t cublasSgemm_v2 (cublasHandle_t handle, cublasOperation_t transa,
                               cublasOperation_t transb, int m, int n, int k, const float *alpha,
                               const float *A, int lda, const float *B, int ldb, const float *beta,
                               float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched (cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const float *alpha, const float *A, int lda,
                                          long long int strideA, const float *B, int ldb,
                                          long long int strideB, const float *beta, float *C,
                                          int ldc, long long int strideC, int batchCount);
cublasStatus_t cublasGemmEx (cublasHandle_t handle, cublasOperation_t transa,
                             cublasOperation_t transb, int m, int n, int k, const void *alpha,
                             const void *A, cudaDataType Atype, int lda, const void *B,
                             cudaDataType Btype, int ldb, const void *beta, void *C,
                             cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                             cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx (cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const void *alpha, const void *A, cudaDataType Atype,
                                           int lda, long long int strideA, const void *B,
                                           cudaDataType Btype, int ldb, long long int strideB,
                                           const void *beta, void *C, cudaDataType Ctype, int ldc,
                                           long long int strideC, int batchCount,
                                           cublasComputeType_t computeType,
                                           cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmBatchedEx (cublasHandle_t handle, cublasOperation_t transa,
                                    cublasOperation_t transb, int m, int n, int k,
                                    const void *alpha, const void *const Aarray[],
                                    cudaDataType Atype, int lda, const void *const Barray[],
                                    cudaDataType Btype, int ldb, const void *beta,
                                    void *const Carray[], cudaDataType Ctype, int ldc,
                                    int batchCount, cublasComputeType_t computeType,
                                    cublasGemmAlgo_t algo);

DS_EMU_END_C
