/* test-cuda-emu-kernels.cu: kernels for test-cuda-emu.cc. Built through
 * cu2cc.py like the project's kernels, so the launch forms it rewrites
 * (template-ids, parenthesised commas, extern __shared__) are tested too. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "test-cuda-emu.h"

/* Every thread writes its linear global index times SCALE. */
template <typename T, int SCALE>
static __global__ void
index_kernel (T *out)
{
  const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  out[b * nt + t] = (T) (SCALE * (b * nt + t));
}

cudaError_t
emu_test_index (int *out, dim3 grid, dim3 block, cudaStream_t s)
{
  index_kernel<int, 2><<<grid, block, 0, s>>> (out);
  return cudaGetLastError ();
}

/* y = 2 * x through two reversals in static shared memory. */
static __global__ void
reverse_kernel (const float *x, float *y)
{
  __shared__ float buf[1024];
  const unsigned t = threadIdx.x, n = blockDim.x;
  buf[t] = x[blockIdx.x * n + t];
  __syncthreads ();
  const float v = buf[n - 1 - t];
  __syncthreads ();
  buf[t] = 2.0f * v;
  __syncthreads ();
  y[blockIdx.x * n + t] = buf[n - 1 - t];
}

cudaError_t
emu_test_reverse (const float *x, float *y, int blocks, int n)
{
  reverse_kernel<<<blocks, n>>> (x, y);
  return cudaGetLastError ();
}

/* Inclusive scan of each block's slice in dynamic shared memory; flags[b] is
 * set when the shared memory did not start out as all-ones bytes. */
static __global__ void
scan_kernel (const float *x, float *y, int *flags)
{
  extern __shared__ __align__ (16) float sm[];
  const unsigned t = threadIdx.x, n = blockDim.x;
  uint32_t bits;
  memcpy (&bits, &sm[t], 4);
  if (bits != 0xffffffffu)
    flags[blockIdx.x] = 1;
  __syncthreads ();
  sm[t] = x[blockIdx.x * n + t];
  __syncthreads ();
  for (unsigned o = 1; o < n; o <<= 1)
    {
      const float add = t >= o ? sm[t - o] : 0.0f;
      __syncthreads ();
      sm[t] += add;
      __syncthreads ();
    }
  y[blockIdx.x * n + t] = sm[t];
}

cudaError_t
emu_test_scan (const float *x, float *y, int *flags, int blocks, int n)
{
  scan_kernel<<<dim3 (blocks, 1), dim3 (n), (size_t) n * sizeof (float), 0>>> (x, y, flags);
  return cudaGetLastError ();
}

cudaError_t
emu_test_big_smem (float *y, size_t smem, int set_attr)
{
  if (set_attr)
    {
      cudaError_t e = cudaFuncSetAttribute (scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            set_attr);
      if (e != cudaSuccess)
        return e;
    }
  scan_kernel<<<1, 32, smem>>> (y, y, (int *) y);
  return cudaGetLastError ();
}

/* Warp collectives; out holds EMU_COLL_N values per thread. */
static __global__ void
collective_kernel (float *out)
{
  const unsigned t = threadIdx.x, lane = t % 32;
  float *o = out + (size_t) t * EMU_COLL_N;
  const float v = (float) (t * 10 + 1);
  o[0] = __shfl_sync (0xffffffffu, v, (int) ((lane * 7 + 3) % 32));
  o[1] = __shfl_up_sync (0xffffffffu, v, 3);
  o[2] = __shfl_down_sync (0xffffffffu, v, 5);
  o[3] = __shfl_xor_sync (0xffffffffu, v, 9);
  o[4] = __shfl_down_sync (0xffffffffu, v, 3, 16);
  o[5] = __shfl_xor_sync (0xffffffffu, v, 5, 8);
  o[6] = (float) (__shfl_down_sync (0xffffffffu, (double) v * 0.125, 1) * 8.0);
  o[7] = (float) __shfl_up_sync (0xffffffffu, (long long) t << 33, 2) / 8589934592.0f;
  o[8] = (float) __ballot_sync (0xffffffffu, lane % 3 == 0);
  o[9] = (float) __any_sync (0xffffffffu, t == 5);
  o[10] = (float) __all_sync (0xffffffffu, t < 40);
  float s = v; /* a warp sum as the kernels do it */
  for (int d = 16; d > 0; d >>= 1)
    s += __shfl_down_sync (0xffffffffu, s, d);
  o[11] = s;
  /* Half the warp, with a mask naming only its lanes, while the rest waits at
   * __syncwarp with its own mask. */
  if (lane < 16)
    o[12] = __shfl_xor_sync (0x0000ffffu, v, 1);
  else
    {
      __syncwarp (0xffff0000u);
      o[12] = -1.0f;
    }
  o[13] = (float) __shfl_sync (0xffffffffu, (unsigned) t, 0);
}

cudaError_t
emu_test_collectives (float *out, int threads)
{
  collective_kernel<<<1, threads>>> (out);
  return cudaGetLastError ();
}

/* D = A.B + C by the mma fragment layout of the PTX ISA, built here from the
 * layout's definition (the emulator inverts it). A [16][16], B [16][8] as
 * [k][n], C and D [16][8], all row-major. */
template <typename H, bool BF>
static __global__ void
mma_kernel (const H *A, const H *B, const float *C, float *D)
{
  const unsigned lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  auto pack = [] (H lo, H hi) {
    uint16_t l, h;
    memcpy (&l, &lo, 2);
    memcpy (&h, &hi, 2);
    return (uint32_t) l | (uint32_t) h << 16;
  };
  auto a_at = [A] (unsigned r, unsigned c) { return A[r * 16 + c]; };
  auto b_at = [B] (unsigned k, unsigned n) { return B[k * 8 + n]; };
  uint32_t a[4] = {
    pack (a_at (g, 2 * t), a_at (g, 2 * t + 1)),
    pack (a_at (g + 8, 2 * t), a_at (g + 8, 2 * t + 1)),
    pack (a_at (g, 2 * t + 8), a_at (g, 2 * t + 9)),
    pack (a_at (g + 8, 2 * t + 8), a_at (g + 8, 2 * t + 9)),
  };
  uint32_t b[2] = {
    pack (b_at (2 * t, g), b_at (2 * t + 1, g)),
    pack (b_at (2 * t + 8, g), b_at (2 * t + 9, g)),
  };
  float c[4] = { C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                 C[(g + 8) * 8 + 2 * t + 1] };
  float d[4];
  if (BF)
    ds_emu_mma_m16n8k16_f32_bf16 (d, a, b, c);
  else
    ds_emu_mma_m16n8k16_f32_f16 (d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

cudaError_t
emu_test_mma_f16 (const void *A, const void *B, const float *C, float *D)
{
  mma_kernel<__half, false><<<1, 32>>> ((const __half *) A, (const __half *) B, C, D);
  return cudaGetLastError ();
}

cudaError_t
emu_test_mma_bf16 (const void *A, const void *B, const float *C, float *D)
{
  mma_kernel<__nv_bfloat16, true><<<1, 32>>> ((const __nv_bfloat16 *) A,
                                                 (const __nv_bfloat16 *) B, C, D);
  return cudaGetLastError ();
}

/* ldmatrix.x4 (plain and trans) against the PTX ISA's layout, built here from
 * its definition: shared memory holds 32 rows of 8 distinct 16-bit values,
 * lane 8i + j passes row (7 * (8i + j) + 3) % 32 (every row once, out of
 * order) as row j of matrix i. out[0] counts wrong registers. */
static __global__ void
ldmatrix_kernel (int *out)
{
  __shared__ __align__ (16) uint16_t rows[32 * 8];
  const unsigned lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  for (unsigned c = 0; c < 8; c++)
    rows[lane * 8 + c] = (uint16_t) (1000 + lane * 8 + c);
  __syncwarp ();
  auto row_of = [] (unsigned i, unsigned j) { return (7 * (8 * i + j) + 3) % 32; };
  auto at = [&] (unsigned i, unsigned j, unsigned c) { return (uint32_t) rows[row_of (i, j) * 8 + c]; };
  for (int trans = 0; trans < 2; trans++)
    {
      uint32_t r[4];
      ds_emu_ldmatrix_x4 (r, &rows[row_of (lane / 8, lane % 8) * 8], trans);
      for (unsigned i = 0; i < 4; i++)
        {
          const uint32_t want = trans ? at (i, 2 * t, g) | at (i, 2 * t + 1, g) << 16
                                      : at (i, g, 2 * t) | at (i, g, 2 * t + 1) << 16;
          if (r[i] != want)
            atomicAdd (out, 1);
        }
    }
}

cudaError_t
emu_test_ldmatrix (int *out)
{
  ldmatrix_kernel<<<1, 32>>> (out);
  return cudaGetLastError ();
}

static __global__ void
atomic_kernel (float *sum, int *mx, unsigned long long *cnt)
{
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd (sum, 0.5f);
  atomicMax (mx, (int) (t * 37 % 1001));
  atomicAdd (cnt, 1ull);
}

cudaError_t
emu_test_atomics (float *sum, int *mx, unsigned long long *cnt)
{
  atomic_kernel<<<(4), (100)>>> (sum, mx, cnt);
  return cudaGetLastError ();
}

/* Threads 0-15 wait at __syncthreads, 16-31 at a full-warp __syncwarp that
 * needs lanes 0-15: no barrier can ever be released. */
static __global__ void
deadlock_kernel (int *p)
{
  if (threadIdx.x < 16)
    __syncthreads ();
  else
    __syncwarp ();
  p[threadIdx.x] = 1;
}

cudaError_t
emu_test_deadlock (int *p)
{
  deadlock_kernel<<<1, 32>>> (p);
  return cudaGetLastError ();
}

/* Threads that exit before a barrier do not hold it up. */
static __global__ void
early_exit_kernel (int *p)
{
  if (threadIdx.x >= 8)
    return;
  __syncthreads ();
  p[threadIdx.x] = 1;
}

cudaError_t
emu_test_early_exit (int *p)
{
  early_exit_kernel<<<1, 64>>> (p);
  return cudaGetLastError ();
}

cudaError_t
emu_test_launch_config (dim3 grid, dim3 block)
{
  index_kernel<int, 1><<<grid, block>>> (nullptr);
  return cudaPeekAtLastError ();
}

/* Deep recursion to overflow a fiber stack (into its guard page). */
static __device__ int
deep (volatile char *p, int n)
{
  volatile char buf[1024];
  buf[0] = (char) n;
  return n == 0 ? p[0] : deep (buf, n - 1) + buf[0];
}

static __global__ void
overflow_kernel (int *out, int depth)
{
  char c = 1;
  out[0] = deep (&c, depth);
}

cudaError_t
emu_test_overflow (int *out, int depth)
{
  overflow_kernel<<<1, 1>>> (out, depth);
  return cudaGetLastError ();
}

/* cp.async: thread t copies 16 bytes from src + 4t (valid) or zero-fills
 * (t odd, invalid) into shared memory filled with -1 first; out[3t..3t+2]
 * records shared word 4t before any wait, after wait_group 1 (its group 0 has
 * landed, group 1 not) and after wait_group 0. */
static __global__ void
cp_async_kernel (const float *src, float *out)
{
  __shared__ __align__ (16) float s0[4 * 32], s1[4 * 32];
  const int t = threadIdx.x;
  for (int i = 0; i < 4; i++)
    s0[4 * t + i] = s1[4 * t + i] = -1.0f;
  ds_emu_cp_async16 (s0 + 4 * t, src + 4 * t, t % 2 ? 0 : 16);
  ds_emu_cp_async_commit ();
  ds_emu_cp_async16 (s1 + 4 * t, src + 4 * t, 16);
  ds_emu_cp_async_commit ();
  out[3 * t] = s0[4 * t];
  ds_emu_cp_async_wait (1);
  out[3 * t + 1] = s0[4 * t] + 100.0f * (s1[4 * t] == -1.0f);
  ds_emu_cp_async_wait (0);
  out[3 * t + 2] = s1[4 * t];
}

cudaError_t
emu_test_cp_async (const float *src, float *out)
{
  cp_async_kernel<<<1, 32>>> (src, out);
  return cudaGetLastError ();
}

/* The order the emulator runs threads in: each thread takes a ticket before
 * and after a barrier. */
static __global__ void
order_kernel (unsigned *before, unsigned *after, unsigned *counter)
{
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  before[i] = atomicAdd (counter, 1u);
  __syncthreads ();
  after[i] = atomicAdd (counter, 1u);
}

cudaError_t
emu_test_order (unsigned *before, unsigned *after, unsigned *counter, int blocks, int n)
{
  order_kernel<<<blocks, n>>> (before, after, counter);
  return cudaGetLastError ();
}

/* A race: each thread reads what its lower neighbour wrote to shared memory,
 * with no barrier between. Forward order hides it (the neighbour has run);
 * reverse order shows it (the read finds the all-ones start). */
static __global__ void
racy_kernel (float *out)
{
  extern __shared__ float sm[];
  const unsigned t = threadIdx.x;
  sm[t] = (float) t;
  out[blockIdx.x * blockDim.x + t] = t ? sm[t - 1] : -1.0f;
}

cudaError_t
emu_test_racy (float *out, int blocks, int n)
{
  racy_kernel<<<blocks, n, (size_t) n * sizeof (float)>>> (out);
  return cudaGetLastError ();
}
