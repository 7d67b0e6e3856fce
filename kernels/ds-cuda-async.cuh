/* ds-cuda-async.cuh: asynchronous global-to-shared copies (cp.async, sm_80+),
 * C++ only.
 *
 * ds_cp_async16 starts a 16-byte copy (or, when !valid, a 16-byte zero fill
 * that reads nothing); ds_cp_async_commit closes the copies issued so far
 * into a group; ds_cp_async_wait<N> returns once all but the newest N groups
 * have landed. A block still needs __syncthreads after the wait before other
 * threads read what this thread copied. Under the host emulator the copies
 * land only at the wait (tests/cuda-emu), so a missing wait shows there too.
 */
#pragma once

#include "ds-cuda-util.cuh"

static __device__ __forceinline__ void
ds_cp_async16 (void *smem, const void *gmem, bool valid)
{
#ifdef DS_CUDA_EMU
  ds_emu_cp_async16 (smem, gmem, valid ? 16 : 0);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                :: "r"(s), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
#else
  __trap ();
#endif
}

static __device__ __forceinline__ void
ds_cp_async_commit (void)
{
#ifdef DS_CUDA_EMU
  ds_emu_cp_async_commit ();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile ("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
static __device__ __forceinline__ void
ds_cp_async_wait (void)
{
#ifdef DS_CUDA_EMU
  ds_emu_cp_async_wait (N);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile ("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
#endif
}
