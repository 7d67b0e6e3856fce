/* test-tensor.c: dtype conversions, shapes, views and the arena. */
#include "ds-test.h"

#include <stdint.h>

#include "ds-tensor.h"

static void
test_f16 (void)
{
  /* Exact encodings from IEEE 754 binary16. */
  DS_CHECK (ds_f32_to_f16 (1.0f) == 0x3c00, "1.0 -> %04x", ds_f32_to_f16 (1.0f));
  DS_CHECK (ds_f32_to_f16 (-2.0f) == 0xc000, "-2.0");
  DS_CHECK (ds_f32_to_f16 (65504.0f) == 0x7bff, "max half");
  DS_CHECK (ds_f32_to_f16 (65536.0f) == 0x7c00, "overflow to inf");
  DS_CHECK (ds_f32_to_f16 (5.9604645e-08f) == 0x0001, "smallest subnormal");
  DS_CHECK (ds_f32_to_f16 (1.0f + 1.0f / 2048) == 0x3c00, "tie rounds to even (down)");
  DS_CHECK (ds_f32_to_f16 (1.0f + 3.0f / 2048) == 0x3c02, "tie rounds to even (up)");
  DS_CHECK (ds_f16_to_f32 (0x3555) == 0.333251953125f, "1/3 in half");
  DS_CHECK (ds_f16_to_f32 (0x0001) == 5.9604645e-08f, "subnormal decode");
  DS_CHECK (isinf (ds_f16_to_f32 (0xfc00)) && ds_f16_to_f32 (0xfc00) < 0, "-inf");
  /* every pattern against the definition: (-1)^s 2^(e-15) (1 + m/1024), subnormals
   * m 2^-24, Inf/NaN with the payload shifted into place */
  int wrong = 0;
  for (uint32_t h = 0; h < 65536; h++)
    {
      const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
      float want;
      if (e == 31)
        {
          uint32_t b = ((h & 0x8000) << 16) | 0x7f800000u | (m << 13);
          memcpy (&want, &b, 4);
        }
      else
        {
          want = e ? ldexpf (1.0f + (float) m / 1024.0f, (int) e - 15) : ldexpf ((float) m, -24);
          want = h & 0x8000 ? -want : want;
        }
      const float got = ds_f16_to_f32 ((uint16_t) h);
      wrong += memcmp (&got, &want, 4) != 0;
    }
  DS_CHECK (wrong == 0, "f16 decode: %d of 65536 patterns wrong", wrong);
  /* Every finite half survives a round trip. */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++)
    if ((h & 0x7c00) != 0x7c00 && ds_f32_to_f16 (ds_f16_to_f32 ((uint16_t) h)) != h)
      bad++;
  DS_CHECK (bad == 0, "%d halves do not round-trip", bad);
}

static void
test_bf16 (void)
{
  DS_CHECK (ds_f32_to_bf16 (1.0f) == 0x3f80, "1.0");
  DS_CHECK (ds_bf16_to_f32 (0xc040) == -3.0f, "-3");
  /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even -> 1. */
  DS_CHECK (ds_f32_to_bf16 (1.0f + 1.0f / 256) == 0x3f80, "tie to even");
  DS_CHECK (ds_f32_to_bf16 (1.0f + 3.0f / 256) == 0x3f82, "tie to even up");
}

static void
test_convert (void)
{
  uint16_t halves[3] = { 0x3c00, 0xc000, 0x3800 };
  float out[3];
  DsError err = { 0 };
  DS_CHECK_OK (ds_convert_to_f32 (out, halves, DS_DTYPE_F16, 3, &err), &err);
  DS_CHECK (out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f, "f16 -> f32");
  int64_t longs[2] = { -7, 1 << 20 };
  DS_CHECK_OK (ds_convert_to_f32 (out, longs, DS_DTYPE_I64, 2, &err), &err);
  DS_CHECK (out[0] == -7.0f && out[1] == 1048576.0f, "i64 -> f32");
}

static void
test_shapes_and_views (void)
{
  DsError err = { 0 };
  DsTensor t;
  int64_t shape[] = { 2, 3, 4 };
  DS_CHECK_OK (ds_tensor_alloc (&t, DS_DTYPE_F32, 3, shape, &err), &err);
  DS_CHECK (ds_tensor_numel (&t) == 24, "numel");
  DS_CHECK (ds_tensor_nbytes (&t) == 96, "nbytes");
  float *p = ds_tensor_f32 (&t);
  for (int i = 0; i < 24; i++)
    p[i] = (float) i;
  DsTensor s = ds_tensor_slice0 (&t, 1, 1);
  DS_CHECK (!s.owned && s.shape[0] == 1 && ds_tensor_f32 (&s)[0] == 12.0f, "slice0");
  int64_t flat[] = { 6, 4 };
  DsTensor r = ds_tensor_reshape (&t, 2, flat);
  DS_CHECK (r.data == t.data && r.shape[1] == 4 && !r.owned, "reshape shares data");
  char buf[64];
  DS_CHECK (strcmp (ds_shape_str (3, shape, buf, sizeof buf), "[2, 3, 4]") == 0, "%s", buf);
  ds_tensor_free (&t);
  DS_CHECK (t.data == NULL, "freed");
  int64_t neg[] = { -1 };
  DS_CHECK_STATUS (ds_tensor_alloc (&t, DS_DTYPE_F32, 1, neg, &err), DS_ERR_INVALID, &err);
}

static void
test_arena (void)
{
  DsError err = { 0 };
  DsArena a;
  DS_CHECK_OK (ds_arena_init (&a, 1024, &err), &err);
  DsTensor x, y, z;
  int64_t s1[] = { 10 }; /* 40 bytes -> 64 */
  DS_CHECK_OK (ds_arena_tensor (&a, &x, DS_DTYPE_F32, 1, s1, &err), &err);
  DS_CHECK (((uintptr_t) x.data & 63) == 0, "aligned");
  size_t mark = ds_arena_mark (&a);
  DS_CHECK (mark == 64, "used %zu", mark);
  int64_t s2[] = { 200 }; /* 800 bytes */
  DS_CHECK_OK (ds_arena_tensor (&a, &y, DS_DTYPE_F32, 1, s2, &err), &err);
  DS_CHECK_STATUS (ds_arena_tensor (&a, &z, DS_DTYPE_F32, 1, s2, &err), DS_ERR_NOMEM, &err);
  DS_CHECK_CONTAINS (err.message, "[200]");
  ds_arena_reset_to (&a, mark);
  DS_CHECK_OK (ds_arena_tensor (&a, &z, DS_DTYPE_F32, 1, s2, &err), &err);
  DS_CHECK (z.data == y.data, "reset reuses memory");
  DS_CHECK (a.peak == 64 + 832, "peak %zu", a.peak);
  ds_arena_free (&a);
}

static void
test_error (void)
{
  DsError err = { 0 };
  DS_CHECK (ds_error_set (&err, DS_ERR_FORMAT, "tensor '%s' bad", "w") == DS_ERR_FORMAT, "returns code");
  DS_CHECK (ds_error_prefix (&err, DS_ERR_FORMAT, "%s", "model.safetensors") == DS_ERR_FORMAT, "prefix returns the code");
  DS_CHECK (strcmp (err.message, "model.safetensors: tensor 'w' bad") == 0, "%s", err.message);
  char longtext[2000];
  memset (longtext, 'x', sizeof longtext - 1);
  longtext[sizeof longtext - 1] = '\0';
  ds_error_set (&err, DS_ERR_IO, "%s", longtext);
  ds_error_prefix (&err, DS_ERR_IO, "file");
  DS_CHECK (strncmp (err.message, "file: xxx", 9) == 0 && strlen (err.message) == sizeof err.message - 1,
            "long message truncated at the end");
  DS_CHECK (strcmp (ds_status_name (DS_ERR_NOT_FOUND), "not-found") == 0, "status name");
  DS_CHECK (ds_error_set (NULL, DS_ERR_IO, "x") == DS_ERR_IO, "NULL err allowed");
  /* Without an error to fill, the code still travels up: a failure is never OK. */
  DS_CHECK (ds_error_prefix (NULL, DS_ERR_FORMAT, "x") == DS_ERR_FORMAT, "NULL err keeps the code");
}

int
main (void)
{
  test_error ();
  test_f16 ();
  test_bf16 ();
  test_convert ();
  test_shapes_and_views ();
  test_arena ();
  return ds_test_finish ();
}
