/* cuda_fp16.h: the CUDA emulator's fp16 types (tests/cuda-emu/README.md).
 *
 * __half is two bytes of IEEE binary16; arithmetic goes through float and
 * rounds the result to nearest even, which is what the hardware's f16
 * instructions give for +, -, * (one rounding). From C only the storage types
 * are declared, as the backend needs nothing more.
 */
#pragma once

#include "cuda_runtime.h"
#include "ds-emu-fp.h"

#ifndef __cplusplus

typedef struct __half { unsigned short __x; } __half;
typedef struct __half2 { __half x, y; } __half2;

#else

struct __half_raw {
  unsigned short x;
};

struct __half {
  unsigned short __x;

  __half () = default;
  constexpr __half (__half_raw r) : __x (r.x) {}
  __half (float f) : __x (ds_emu_float_to_half_bits (f)) {}
  __half (double d) : __x (ds_emu_float_to_half_bits ((float) d)) {}
  __half (int i) : __x (ds_emu_float_to_half_bits ((float) i)) {}
  __half (unsigned int i) : __x (ds_emu_float_to_half_bits ((float) i)) {}
  __half (long long i) : __x (ds_emu_float_to_half_bits ((float) i)) {}
  operator float () const { return ds_emu_half_bits_to_float (__x); }
  operator __half_raw () const { return __half_raw{ __x }; }
  __half &operator= (float f) { __x = ds_emu_float_to_half_bits (f); return *this; }
  __half &operator= (double d) { __x = ds_emu_float_to_half_bits ((float) d); return *this; }
};

struct __align__ (4) __half2 {
  __half x, y;

  __half2 () = default;
  __half2 (__half a, __half b) : x (a), y (b) {}
};

typedef __half half;
typedef __half2 half2;

static inline __half
__ushort_as_half (unsigned short u)
{
  return __half (__half_raw{ u });
}

static inline unsigned short __half_as_ushort (__half h) { return h.__x; }
static inline short __half_as_short (__half h) { return (short) h.__x; }
static inline __half __float2half (float f) { return __half (f); }
static inline __half __float2half_rn (float f) { return __half (f); }
static inline float __half2float (__half h) { return ds_emu_half_bits_to_float (h.__x); }
static inline __half __double2half (double d) { return __half (d); }
static inline __half2 __float2half2_rn (float f) { return __half2 (__half (f), __half (f)); }
static inline __half2 __floats2half2_rn (float a, float b) { return __half2 (__half (a), __half (b)); }
static inline __half2 __float22half2_rn (float2 v) { return __half2 (__half (v.x), __half (v.y)); }
static inline float2 __half22float2 (__half2 h) { return make_float2 (h.x, h.y); }
static inline float __low2float (__half2 h) { return h.x; }
static inline float __high2float (__half2 h) { return h.y; }
static inline __half2 __halves2half2 (__half a, __half b) { return __half2 (a, b); }
static inline __half2 __half2half2 (__half a) { return __half2 (a, a); }
static inline __half __low2half (__half2 h) { return h.x; }
static inline __half __high2half (__half2 h) { return h.y; }
static inline __half2 __lowhigh2highlow (__half2 h) { return __half2 (h.y, h.x); }

static inline __half __hadd (__half a, __half b) { return __half ((float) a + (float) b); }
static inline __half __hsub (__half a, __half b) { return __half ((float) a - (float) b); }
static inline __half __hmul (__half a, __half b) { return __half ((float) a * (float) b); }
static inline __half __hdiv (__half a, __half b) { return __half ((float) a / (float) b); }
static inline __half __hneg (__half a) { return __ushort_as_half (a.__x ^ 0x8000u); }
static inline __half __habs (__half a) { return __ushort_as_half (a.__x & 0x7fffu); }
/* fma rounds once: the float product of two halves is exact. */
static inline __half __hfma (__half a, __half b, __half c)
{
  return __half (fmaf ((float) a, (float) b, (float) c));
}
static inline __half __hmax (__half a, __half b) { return __half (fmaxf ((float) a, (float) b)); }
static inline __half __hmin (__half a, __half b) { return __half (fminf ((float) a, (float) b)); }
static inline bool __hisnan (__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }
static inline bool __hisinf (__half a) { return (a.__x & 0x7fffu) == 0x7c00u; }
static inline bool __heq (__half a, __half b) { return (float) a == (float) b; }
static inline bool __hlt (__half a, __half b) { return (float) a < (float) b; }
static inline bool __hgt (__half a, __half b) { return (float) a > (float) b; }

static inline __half2 __hadd2 (__half2 a, __half2 b) { return __half2 (__hadd (a.x, b.x), __hadd (a.y, b.y)); }
static inline __half2 __hsub2 (__half2 a, __half2 b) { return __half2 (__hsub (a.x, b.x), __hsub (a.y, b.y)); }
static inline __half2 __hmul2 (__half2 a, __half2 b) { return __half2 (__hmul (a.x, b.x), __hmul (a.y, b.y)); }
static inline __half2 __hfma2 (__half2 a, __half2 b, __half2 c)
{
  return __half2 (__hfma (a.x, b.x, c.x), __hfma (a.y, b.y, c.y));
}
static inline __half2 __hmax2 (__half2 a, __half2 b) { return __half2 (__hmax (a.x, b.x), __hmax (a.y, b.y)); }
static inline __half2 __habs2 (__half2 a) { return __half2 (__habs (a.x), __habs (a.y)); }

static inline __half operator+ (__half a, __half b) { return __hadd (a, b); }
static inline __half operator- (__half a, __half b) { return __hsub (a, b); }
static inline __half operator* (__half a, __half b) { return __hmul (a, b); }
static inline __half operator/ (__half a, __half b) { return __hdiv (a, b); }
static inline __half operator- (__half a) { return __hneg (a); }
static inline __half operator+ (__half a) { return a; }
static inline __half &operator+= (__half &a, __half b) { return a = a + b; }
static inline __half &operator-= (__half &a, __half b) { return a = a - b; }
static inline __half &operator*= (__half &a, __half b) { return a = a * b; }
static inline __half &operator/= (__half &a, __half b) { return a = a / b; }
static inline bool operator== (__half a, __half b) { return (float) a == (float) b; }
static inline bool operator!= (__half a, __half b) { return (float) a != (float) b; }
static inline bool operator< (__half a, __half b) { return (float) a < (float) b; }
static inline bool operator> (__half a, __half b) { return (float) a > (float) b; }
static inline bool operator<= (__half a, __half b) { return (float) a <= (float) b; }
static inline bool operator>= (__half a, __half b) { return (float) a >= (float) b; }

static inline __half2 operator+ (__half2 a, __half2 b) { return __hadd2 (a, b); }
static inline __half2 operator- (__half2 a, __half2 b) { return __hsub2 (a, b); }
static inline __half2 operator* (__half2 a, __half2 b) { return __hmul2 (a, b); }
static inline __half2 &operator+= (__half2 &a, __half2 b) { return a = a + b; }
static inline __half2 &operator*= (__half2 &a, __half2 b) { return a = a * b; }

#endif /* __cplusplus */
