/* cuda_bf16.h: the CUDA emulator's bf16 types (tests/cuda-emu/README.md).
 *
 * __nv_bfloat16 is the top half of a float; conversions round to nearest
 * even and arithmetic goes through float with one rounding, as __half does.
 */
#pragma once

#include "cuda_fp16.h"

#ifndef __cplusplus

typedef struct __nv_bfloat16 { unsigned short __x; } __nv_bfloat16;
typedef struct __nv_bfloat162 { __nv_bfloat16 x, y; } __nv_bfloat162;

#else

struct __nv_bfloat16_raw {
  unsigned short x;
};

struct __nv_bfloat16 {
  unsigned short __x;

  __nv_bfloat16 () = default;
  constexpr __nv_bfloat16 (__nv_bfloat16_raw r) : __x (r.x) {}
  __nv_bfloat16 (float f) : __x (ds_emu_float_to_bf16_bits (f)) {}
  __nv_bfloat16 (double d) : __x (ds_emu_float_to_bf16_bits ((float) d)) {}
  __nv_bfloat16 (int i) : __x (ds_emu_float_to_bf16_bits ((float) i)) {}
  operator float () const { return ds_emu_bf16_bits_to_float (__x); }
  operator __nv_bfloat16_raw () const { return __nv_bfloat16_raw{ __x }; }
  __nv_bfloat16 &operator= (float f) { __x = ds_emu_float_to_bf16_bits (f); return *this; }
};

struct __align__ (4) __nv_bfloat162 {
  __nv_bfloat16 x, y;

  __nv_bfloat162 () = default;
  __nv_bfloat162 (__nv_bfloat16 a, __nv_bfloat16 b) : x (a), y (b) {}
};

typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static inline __nv_bfloat16
__ushort_as_bfloat16 (unsigned short u)
{
  return __nv_bfloat16 (__nv_bfloat16_raw{ u });
}
static inline unsigned short __bfloat16_as_ushort (__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16 __float2bfloat16 (float f) { return __nv_bfloat16 (f); }
static inline __nv_bfloat16 __float2bfloat16_rn (float f) { return __nv_bfloat16 (f); }
static inline float __bfloat162float (__nv_bfloat16 h) { return ds_emu_bf16_bits_to_float (h.__x); }
static inline __nv_bfloat162 __floats2bfloat162_rn (float a, float b)
{
  return __nv_bfloat162 (__nv_bfloat16 (a), __nv_bfloat16 (b));
}
static inline __nv_bfloat162 __float22bfloat162_rn (float2 v)
{
  return __nv_bfloat162 (__nv_bfloat16 (v.x), __nv_bfloat16 (v.y));
}
static inline float2 __bfloat1622float2 (__nv_bfloat162 h) { return make_float2 (h.x, h.y); }
static inline float __low2float (__nv_bfloat162 h) { return h.x; }
static inline float __high2float (__nv_bfloat162 h) { return h.y; }
static inline __nv_bfloat162 __halves2bfloat162 (__nv_bfloat16 a, __nv_bfloat16 b)
{
  return __nv_bfloat162 (a, b);
}
static inline __nv_bfloat16 __low2bfloat16 (__nv_bfloat162 h) { return h.x; }
static inline __nv_bfloat16 __high2bfloat16 (__nv_bfloat162 h) { return h.y; }

static inline __nv_bfloat16 __hadd (__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16 ((float) a + (float) b); }
static inline __nv_bfloat16 __hsub (__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16 ((float) a - (float) b); }
static inline __nv_bfloat16 __hmul (__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16 ((float) a * (float) b); }
static inline __nv_bfloat16 __hmax (__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16 (fmaxf ((float) a, (float) b)); }
static inline __nv_bfloat16 __habs (__nv_bfloat16 a) { return __ushort_as_bfloat16 (a.__x & 0x7fffu); }
static inline __nv_bfloat162 __hadd2 (__nv_bfloat162 a, __nv_bfloat162 b)
{
  return __nv_bfloat162 (__hadd (a.x, b.x), __hadd (a.y, b.y));
}
static inline __nv_bfloat162 __hmul2 (__nv_bfloat162 a, __nv_bfloat162 b)
{
  return __nv_bfloat162 (__hmul (a.x, b.x), __hmul (a.y, b.y));
}

static inline __nv_bfloat16 operator+ (__nv_bfloat16 a, __nv_bfloat16 b) { return __hadd (a, b); }
static inline __nv_bfloat16 operator- (__nv_bfloat16 a, __nv_bfloat16 b) { return __hsub (a, b); }
static inline __nv_bfloat16 operator* (__nv_bfloat16 a, __nv_bfloat16 b) { return __hmul (a, b); }
static inline __nv_bfloat16 operator- (__nv_bfloat16 a) { return __ushort_as_bfloat16 (a.__x ^ 0x8000u); }
static inline __nv_bfloat16 &operator+= (__nv_bfloat16 &a, __nv_bfloat16 b) { return a = a + b; }
static inline bool operator== (__nv_bfloat16 a, __nv_bfloat16 b) { return (float) a == (float) b; }
static inline bool operator!= (__nv_bfloat16 a, __nv_bfloat16 b) { return (float) a != (float) b; }
static inline bool operator< (__nv_bfloat16 a, __nv_bfloat16 b) { return (float) a < (float) b; }
static inline bool operator> (__nv_bfloat16 a, __nv_bfloat16 b) { return (float) a > (float) b; }

#endif /* __cplusplus */
