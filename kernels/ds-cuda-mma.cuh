/* ds-cuda-mma.cuh: one warp-wide tensor-core product, m16n8k16, and the
 * shared-memory loads that feed it, ldmatrix (C++ only).
 *
 * D[16x8] (f32) += A[16x16] (f16 or bf16, row-major) . B[16x8] (same type,
 * "col": indexed [k][n]) through `mma.sync.aligned.m16n8k16` (sm_80 and newer).
 * All 32 lanes of the warp call it together. The register fragments follow
 * the PTX ISA layout; with g = lane / 4 and t = lane % 4, and each 32-bit
 * register holding two elements (the first in the low 16 bits):
 *   a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]
 *   a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
 *   b[0] = B[2t..2t+1][g]     b[1] = B[2t+8..2t+9][g]
 *   d[0] = D[g][2t]  d[1] = D[g][2t+1]  d[2] = D[g+8][2t]  d[3] = D[g+8][2t+1]
 * Under the host emulator (DS_CUDA_EMU, tests/cuda-emu) the same layout is
 * computed by a warp-collective function, so kernels built on this are tested
 * on machines without a GPU.
 */
#pragma once

#include "ds-cuda-util.cuh"

/* One specialization per input type: the emulator's function and the PTX
 * type name are all that differ. */
#ifdef DS_CUDA_EMU
#define DS_MMA_RUN(ptx_type, emu_fn) emu_fn (d, a, b, d)
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define DS_MMA_RUN(ptx_type, emu_fn)                                                           \
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32." ptx_type "." ptx_type ".f32 "         \
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"           \
                : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                               \
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
#else
#define DS_MMA_RUN(ptx_type, emu_fn) __trap ()
#endif

template <typename T> struct DsMma;

template <> struct DsMma<__half>
{
  static __device__ __forceinline__ void
  run (float d[4], const uint32_t a[4], const uint32_t b[2])
  {
    DS_MMA_RUN ("f16", ds_emu_mma_m16n8k16_f32_f16);
  }
};

template <> struct DsMma<__nv_bfloat16>
{
  static __device__ __forceinline__ void
  run (float d[4], const uint32_t a[4], const uint32_t b[2])
  {
    DS_MMA_RUN ("bf16", ds_emu_mma_m16n8k16_f32_bf16);
  }
};

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8x8 matrices of
 * 16-bit elements from shared memory, one register each, all 32 lanes
 * together (sm_75 and newer). Lane 8i + j passes the address of row j of
 * matrix i: 8 contiguous elements, 16-byte aligned. Lane (g, t) receives in
 * r[i] row g, columns 2t and 2t + 1 of matrix i: the a and b fragments above
 * of tiles stored with k contiguous (A [m][k], B as [n][k]). With trans it
 * receives column g, rows 2t and 2t + 1: the b fragment of a tile stored
 * [k][n] with n contiguous. */
#ifdef DS_CUDA_EMU
#define DS_LDMATRIX(trans_suffix, trans) ds_emu_ldmatrix_x4 (r, row, trans)
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
#define DS_LDMATRIX(trans_suffix, trans)                                                       \
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4" trans_suffix ".shared.b16 "                  \
                "{%0, %1, %2, %3}, [%4];\n"                                                   \
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                               \
                : "r"((unsigned) __cvta_generic_to_shared (row))                               \
                : "memory")
#else
#define DS_LDMATRIX(trans_suffix, trans) __trap ()
#endif

static __device__ __forceinline__ void
ds_ldmatrix_x4 (uint32_t r[4], const uint16_t *row)
{
  DS_LDMATRIX ("", 0);
}

static __device__ __forceinline__ void
ds_ldmatrix_x4_trans (uint32_t r[4], const uint16_t *row)
{
  DS_LDMATRIX (".trans", 1);
}

/* Two f32 values rounded into one register of T pairs, lo in the low half. */
static __device__ __forceinline__ uint32_t
ds_pack2 (__half, float lo, float hi)
{
  union { __half2 h; uint32_t u; } r;
  r.h = __floats2half2_rn (lo, hi);
  return r.u;
}

static __device__ __forceinline__ uint32_t
ds_pack2 (__nv_bfloat16, float lo, float hi)
{
  union { __nv_bfloat162 h; uint32_t u; } r;
  r.h = __floats2bfloat162_rn (lo, hi);
  return r.u;
}
