/* ds-emu-fp.h: bit-exact fp16 and bf16 conversions for the CUDA emulator
 * (C and C++).
 *
 * Round-to-nearest-even both ways, subnormals, infinities; every NaN becomes
 * the canonical NaN the CUDA conversions produce (0x7fff for fp16 and bf16,
 * 0x7fffffff for float). Used by cuda_fp16.h, cuda_bf16.h and the cuBLAS
 * emulation; tests/cuda-emu/test-cuda-emu.cc checks all 65536 patterns.
 */
#pragma once

#include <stdint.h>
#include <string.h>

static inline uint32_t
ds_emu_f32_bits (float f)
{
  uint32_t x;
  memcpy (&x, &f, sizeof x);
  return x;
}

static inline float
ds_emu_bits_f32 (uint32_t x)
{
  float f;
  memcpy (&f, &x, sizeof f);
  return f;
}

static inline unsigned short
ds_emu_float_to_half_bits (float f)
{
  const uint32_t x = ds_emu_f32_bits (f);
  const unsigned short sign = (unsigned short) ((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)
    return 0x7fffu;
  if (ax >= 0x477ff000u) /* 65520 and up: past the midpoint above 65504 */
    return sign | 0x7c00u;
  if (ax >= 0x38800000u) /* normal half: round the 13 dropped bits to even */
    {
      const uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
      return sign | (unsigned short) ((r - 0x38000000u) >> 13);
    }
  if (ax <= 0x33000000u) /* at most 2^-25, half the smallest subnormal: ties to 0 */
    return sign;
  /* Subnormal half: the value in units of 2^-24, rounded to even. */
  const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e; /* 14 .. 24 */
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (q & 1u)))
    q++;
  return sign | (unsigned short) q;
}

static inline float
ds_emu_half_bits_to_float (unsigned short h)
{
  const uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f)
    return ds_emu_bits_f32 (m ? 0x7fffffffu : sign | 0x7f800000u);
  if (e == 0)
    {
      if (m == 0)
        return ds_emu_bits_f32 (sign);
      /* m * 2^-24, exact in float */
      const float v = (float) m * 0x1p-24f;
      return sign ? -v : v;
    }
  return ds_emu_bits_f32 (sign | (e + 112u) << 23 | m << 13);
}

static inline unsigned short
ds_emu_float_to_bf16_bits (float f)
{
  const uint32_t x = ds_emu_f32_bits (f);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return 0x7fffu;
  return (unsigned short) ((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float
ds_emu_bf16_bits_to_float (unsigned short b)
{
  return ds_emu_bits_f32 ((uint32_t) b << 16);
}

/* TF32 (10 explicit mantissa bits), round to nearest even, kept in a float:
 * what CUBLAS_COMPUTE_32F_FAST_TF32 may do to GEMM inputs. */
static inline float
ds_emu_round_tf32 (float f)
{
  const uint32_t x = ds_emu_f32_bits (f);
  if ((x & 0x7fffffffu) >= 0x7f800000u)
    return f;
  return ds_emu_bits_f32 ((x + 0xfffu + ((x >> 13) & 1u)) & ~0x1fffu);
}
