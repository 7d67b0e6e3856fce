/* ds-emu-device.h: the device side of the Diffscope CUDA emulator (C++ only;
 * included by cuda_runtime.h).
 *
 * Kernels are plain C++ functions run by the emulator's scheduler
 * (ds-emu-sched.cc): each thread of a block is a cooperative fiber on the
 * launching OS thread, blocks run one after another. Everything a kernel may
 * use is here: the qualifiers (mostly empty), the built-in index variables
 * (globals the scheduler sets before entering a fiber), barriers, warp
 * collectives, atomics (plain read-modify-write: only one fiber runs at a
 * time, and a fiber only yields at a barrier or collective), intrinsics, and
 * the launcher that cu2cc.py substitutes for `kernel<<<grid, block, smem,
 * stream>>>(args)`.
 */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmath>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
/* Defined after <memory>: libstdc++ spells __attribute__((__noinline__)). */
#define __noinline__ __attribute__ ((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__ ((aligned (n)))
#define __constant__
#define __managed__
/* Blocks run one at a time on one OS thread, so a function-local static is a
 * faithful per-block shared variable (except that it is not reset between
 * blocks; the real one is not either, it is merely undefined). */
#define __shared__ static
#define __CUDA_ARCH__ 900
#define __CUDACC_EMU__ 1

/* ---- built-in variables ---- */

extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
static constexpr int warpSize = 32;

namespace ds_emu {

/* ---- scheduler entry points (ds-emu-sched.cc) ---- */

/* __syncthreads: waits for every live thread of the block. */
void sync_block ();
/* The warp barrier under __syncwarp and every collective: deposits `bytes`
 * (<= kSlotBytes) of `mine` in this lane's slot, waits for the live lanes of
 * `mask`, and returns the warp's 32 slots (kSlotBytes apart; valid until this
 * lane's next collective) and, in *part, which lanes took part. */
constexpr size_t kSlotBytes = 48;
const unsigned char *warp_collective (unsigned mask, const void *mine, size_t bytes,
                                      unsigned *part);
/* This thread's lane (linear thread index % 32). */
unsigned lane_id ();
/* The block's dynamic shared memory (extern __shared__ T x[] after cu2cc.py). */
void *dyn_smem ();
[[noreturn]] void device_trap (const char *what);

/* ---- the launcher (ds-emu.cc) ---- */

struct LaunchConfig {
  const void *func;   /* identifies the kernel for cudaFuncSetAttribute */
  const char *name;   /* as written at the launch, for messages */
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};

/* Validates the configuration, then runs `body` once per thread (or records
 * it when the stream is capturing). Errors go to cudaGetLastError. */
void launch_kernel (const LaunchConfig &cfg, std::function<void ()> body);

template <typename... P>
struct Launch {
  void (*fn) (P...);
  LaunchConfig cfg;

  template <typename... A>
  void
  operator() (A &&...args) const
  {
    static_assert (sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    /* Arguments convert to the parameter types and are copied at the launch,
     * as the real runtime copies them into the parameter buffer. */
    auto f = fn;
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>> (std::forward<A> (args)...);
    launch_kernel (cfg, [f, params] () { std::apply (f, *params); });
  }
};

template <typename... P>
static inline Launch<P...>
launch (void (*fn) (P...), const char *name, dim3 grid, dim3 block, size_t smem = 0,
        cudaStream_t stream = 0)
{
  return Launch<P...>{ fn, LaunchConfig{ (const void *) fn, name, grid, block, smem, stream } };
}

template <typename T>
static inline uint64_t
to_bits (T v)
{
  static_assert (sizeof (T) <= 8 && std::is_trivially_copyable<T>::value,
                 "warp shuffles move values of at most 8 bytes");
  uint64_t b = 0;
  memcpy (&b, &v, sizeof v);
  return b;
}

template <typename T>
static inline T
from_bits (uint64_t b)
{
  T v;
  memcpy (&v, &b, sizeof v);
  return v;
}

/* The value of lane `src` (this lane's own when src took no part, as for an
 * up/down shuffle past the segment's edge). */
template <typename T>
static inline T
shuffle (unsigned mask, T v, int src)
{
  unsigned part;
  const uint64_t mine = to_bits (v);
  const unsigned char *slots = warp_collective (mask, &mine, sizeof mine, &part);
  if (src < 0 || src > 31 || !(part >> src & 1u))
    return v;
  uint64_t b;
  memcpy (&b, slots + (size_t) src * kSlotBytes, sizeof b);
  return from_bits<T> (b);
}

} // namespace ds_emu

/* ---- barriers and warp collectives ---- */

static inline void __syncthreads (void) { ds_emu::sync_block (); }
static inline void __threadfence (void) {}
static inline void __threadfence_block (void) {}

static inline void
__syncwarp (unsigned mask = 0xffffffffu)
{
  unsigned part;
  ds_emu::warp_collective (mask, nullptr, 0, &part);
}

template <typename T>
static inline T
__shfl_sync (unsigned mask, T v, int src_lane, int width = warpSize)
{
  const int lane = (int) ds_emu::lane_id ();
  const int base = lane & ~(width - 1);
  return ds_emu::shuffle (mask, v, base + (src_lane & (width - 1)));
}

template <typename T>
static inline T
__shfl_up_sync (unsigned mask, T v, unsigned delta, int width = warpSize)
{
  const int lane = (int) ds_emu::lane_id ();
  const int in_seg = lane & (width - 1);
  return ds_emu::shuffle (mask, v, in_seg - (int) delta < 0 ? lane : lane - (int) delta);
}

template <typename T>
static inline T
__shfl_down_sync (unsigned mask, T v, unsigned delta, int width = warpSize)
{
  const int lane = (int) ds_emu::lane_id ();
  const int in_seg = lane & (width - 1);
  return ds_emu::shuffle (mask, v, in_seg + (int) delta >= width ? lane : lane + (int) delta);
}

template <typename T>
static inline T
__shfl_xor_sync (unsigned mask, T v, int lane_mask, int width = warpSize)
{
  const int lane = (int) ds_emu::lane_id ();
  const int src = lane ^ lane_mask;
  const bool same_seg = (src & ~(width - 1)) == (lane & ~(width - 1));
  return ds_emu::shuffle (mask, v, same_seg ? src : lane);
}

static inline unsigned
__ballot_sync (unsigned mask, int pred)
{
  unsigned part;
  const unsigned char mine = pred != 0;
  const unsigned char *slots = ds_emu::warp_collective (mask, &mine, 1, &part);
  unsigned r = 0;
  for (int l = 0; l < 32; l++)
    if ((part >> l & 1u) && slots[(size_t) l * ds_emu::kSlotBytes])
      r |= 1u << l;
  return r;
}

static inline int
__any_sync (unsigned mask, int pred)
{
  return __ballot_sync (mask, pred) != 0;
}

static inline int
__all_sync (unsigned mask, int pred)
{
  unsigned part;
  const unsigned char mine = pred != 0;
  const unsigned char *slots = ds_emu::warp_collective (mask, &mine, 1, &part);
  for (int l = 0; l < 32; l++)
    if ((part >> l & 1u) && !slots[(size_t) l * ds_emu::kSlotBytes])
      return 0;
  return 1;
}

static inline unsigned
__activemask (void)
{
  unsigned part;
  ds_emu::warp_collective (0xffffffffu, nullptr, 0, &part);
  return part;
}

/* ---- atomics: one fiber runs at a time and never yields inside these ---- */

#define DS_EMU_ATOMIC_RMW(NAME, T, EXPR)                                                      \
  static inline T NAME (T *address, T val)                                                    \
  {                                                                                           \
    T old = *address;                                                                         \
    *address = (EXPR);                                                                        \
    return old;                                                                               \
  }
DS_EMU_ATOMIC_RMW (atomicAdd, int, old + val)
DS_EMU_ATOMIC_RMW (atomicAdd, unsigned int, old + val)
DS_EMU_ATOMIC_RMW (atomicAdd, unsigned long long, old + val)
DS_EMU_ATOMIC_RMW (atomicAdd, float, old + val)
DS_EMU_ATOMIC_RMW (atomicAdd, double, old + val)
DS_EMU_ATOMIC_RMW (atomicSub, int, old - val)
DS_EMU_ATOMIC_RMW (atomicSub, unsigned int, old - val)
DS_EMU_ATOMIC_RMW (atomicMax, int, old > val ? old : val)
DS_EMU_ATOMIC_RMW (atomicMax, unsigned int, old > val ? old : val)
DS_EMU_ATOMIC_RMW (atomicMax, unsigned long long, old > val ? old : val)
DS_EMU_ATOMIC_RMW (atomicMin, int, old < val ? old : val)
DS_EMU_ATOMIC_RMW (atomicMin, unsigned int, old < val ? old : val)
DS_EMU_ATOMIC_RMW (atomicMin, unsigned long long, old < val ? old : val)
DS_EMU_ATOMIC_RMW (atomicExch, int, val)
DS_EMU_ATOMIC_RMW (atomicExch, unsigned int, val)
DS_EMU_ATOMIC_RMW (atomicExch, unsigned long long, val)
DS_EMU_ATOMIC_RMW (atomicExch, float, val)
DS_EMU_ATOMIC_RMW (atomicAnd, int, old & val)
DS_EMU_ATOMIC_RMW (atomicAnd, unsigned int, old & val)
DS_EMU_ATOMIC_RMW (atomicOr, int, old | val)
DS_EMU_ATOMIC_RMW (atomicOr, unsigned int, old | val)
#undef DS_EMU_ATOMIC_RMW

#define DS_EMU_ATOMIC_CAS(T)                                                                  \
  static inline T atomicCAS (T *address, T compare, T val)                                    \
  {                                                                                           \
    T old = *address;                                                                         \
    if (old == compare)                                                                       \
      *address = val;                                                                         \
    return old;                                                                               \
  }
DS_EMU_ATOMIC_CAS (int)
DS_EMU_ATOMIC_CAS (unsigned int)
DS_EMU_ATOMIC_CAS (unsigned long long)
#undef DS_EMU_ATOMIC_CAS

/* ---- min / max as the CUDA math headers overload them ---- */

#define DS_EMU_MINMAX(T)                                                                      \
  static inline T min (T a, T b) { return a < b ? a : b; }                                    \
  static inline T max (T a, T b) { return a > b ? a : b; }
DS_EMU_MINMAX (int)
DS_EMU_MINMAX (unsigned int)
DS_EMU_MINMAX (long)
DS_EMU_MINMAX (unsigned long)
DS_EMU_MINMAX (long long)
DS_EMU_MINMAX (unsigned long long)
#undef DS_EMU_MINMAX
static inline float min (float a, float b) { return fminf (a, b); }
static inline float max (float a, float b) { return fmaxf (a, b); }
static inline double min (double a, double b) { return fmin (a, b); }
static inline double max (double a, double b) { return fmax (a, b); }
/* Mixed signed/unsigned pairs go unsigned, as in CUDA's headers. */
static inline unsigned int min (int a, unsigned int b) { return min ((unsigned int) a, b); }
static inline unsigned int min (unsigned int a, int b) { return min (a, (unsigned int) b); }
static inline unsigned int max (int a, unsigned int b) { return max ((unsigned int) a, b); }
static inline unsigned int max (unsigned int a, int b) { return max (a, (unsigned int) b); }

/* ---- intrinsics ---- */

template <typename T>
static inline T
__ldg (const T *p)
{
  return *p;
}

static inline float __fdividef (float a, float b) { return a / b; }
/* glibc's <math.h> already declares these names as its own aliases: map the
 * fast intrinsics to the accurate functions by macro instead. */
#define __expf expf
#define __exp10f exp10f
#define __logf logf
#define __log2f log2f
#define __sinf sinf
#define __cosf cosf
#define __tanf tanf
#define __powf powf
static inline float __frcp_rn (float x) { return 1.0f / x; }
static inline float __fsqrt_rn (float x) { return sqrtf (x); }
static inline float __fmaf_rn (float a, float b, float c) { return fmaf (a, b, c); }
static inline float __fadd_rn (float a, float b) { return a + b; }
static inline float __fmul_rn (float a, float b) { return a * b; }
static inline float __saturatef (float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline double __dadd_rn (double a, double b) { return a + b; }
static inline double __fma_rn (double a, double b, double c) { return fma (a, b, c); }
static inline float rsqrtf (float x) { return 1.0f / sqrtf (x); }
static inline double rsqrt (double x) { return 1.0 / sqrt (x); }
static inline float rcbrtf (float x) { return 1.0f / cbrtf (x); }

static inline float __int_as_float (int x) { float f; memcpy (&f, &x, 4); return f; }
static inline int __float_as_int (float f) { int x; memcpy (&x, &f, 4); return x; }
static inline float __uint_as_float (unsigned int x) { float f; memcpy (&f, &x, 4); return f; }
static inline unsigned int __float_as_uint (float f) { unsigned int x; memcpy (&x, &f, 4); return x; }
static inline double __longlong_as_double (long long x) { double d; memcpy (&d, &x, 8); return d; }
static inline long long __double_as_longlong (double d) { long long x; memcpy (&x, &d, 8); return x; }

static inline int __clz (int x) { return x ? __builtin_clz ((unsigned) x) : 32; }
static inline int __clzll (long long x) { return x ? __builtin_clzll ((unsigned long long) x) : 64; }
static inline int __popc (unsigned int x) { return __builtin_popcount (x); }
static inline int __popcll (unsigned long long x) { return __builtin_popcountll (x); }
static inline int __ffs (int x) { return __builtin_ffs (x); }
static inline unsigned int
__brev (unsigned int x)
{
  x = (x >> 1 & 0x55555555u) | (x & 0x55555555u) << 1;
  x = (x >> 2 & 0x33333333u) | (x & 0x33333333u) << 2;
  x = (x >> 4 & 0x0f0f0f0fu) | (x & 0x0f0f0f0fu) << 4;
  return __builtin_bswap32 (x);
}
static inline int __mul24 (int a, int b) { return a * b; }
static inline int __mulhi (int a, int b) { return (int) (((long long) a * b) >> 32); }
static inline unsigned int __umulhi (unsigned int a, unsigned int b)
{
  return (unsigned int) (((unsigned long long) a * b) >> 32);
}

static inline void __trap (void) { ds_emu::device_trap ("__trap() called"); }
/* Nanoseconds, not cycles: only differences mean anything. */
static inline long long
clock64 (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- tensor cores ---- */

/* Warp-collective D = A.B + C (all 32 lanes call it) for A 16x16 f16 (row),
 * B 16x8 f16 (col), C and D 16x8 f32, in the register fragment layout of
 * PTX mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (see the README);
 * products and sums in float. The bf16 variant has the same layout. */
void ds_emu_mma_m16n8k16_f32_f16 (float d[4], const uint32_t a[4], const uint32_t b[2],
                                  const float c[4]);
void ds_emu_mma_m16n8k16_f32_bf16 (float d[4], const uint32_t a[4], const uint32_t b[2],
                                   const float c[4]);

/* Warp-collective ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (all 32
 * lanes call it): lane 8i + j passes row j of 8x8 matrix i (8 16-bit
 * elements, 16-byte aligned), which is read when the lane arrives; lane
 * (g = lane / 4, t = lane % 4) receives in r[i] row g, columns 2t and 2t + 1
 * of matrix i (low half first), or with trans column g, rows 2t and 2t + 1. */
void ds_emu_ldmatrix_x4 (uint32_t r[4], const void *row, int trans);

/* ---- asynchronous copies (cp.async) ----
 *
 * 16 bytes from global to shared memory, the first src_bytes copied and the
 * rest zero-filled; they land when the thread waits for their group (commit
 * closes a group; wait leaves the newest `newest_left` groups in flight), so
 * reading before the wait sees stale shared memory. Both addresses must be
 * 16-byte aligned (a device trap otherwise, as on a GPU). */
void ds_emu_cp_async16 (void *smem, const void *gmem, int src_bytes);
void ds_emu_cp_async_commit ();
void ds_emu_cp_async_wait (int newest_left);
