/* ds-tensor.c: see ds-tensor.h. */
#include "ds-tensor.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[] = {
  [DS_DTYPE_F32] = { "f32", 4 },  [DS_DTYPE_F16] = { "f16", 2 },
  [DS_DTYPE_BF16] = { "bf16", 2 }, [DS_DTYPE_I32] = { "i32", 4 },
  [DS_DTYPE_I64] = { "i64", 8 },
};
_Static_assert (sizeof dtype_info / sizeof dtype_info[0] == DS_DTYPE_COUNT,
                "one entry per DsDType");

static const char *const device_names[] = { [DS_DEVICE_CPU] = "cpu",
                                            [DS_DEVICE_CUDA] = "cuda" };
_Static_assert (sizeof device_names / sizeof device_names[0] == DS_DEVICE_COUNT,
                "one name per DsDevice");

size_t
ds_dtype_size (DsDType dtype)
{
  assert (dtype < DS_DTYPE_COUNT);
  return dtype_info[dtype].size;
}

const char *
ds_dtype_name (DsDType dtype)
{
  return dtype < DS_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

const char *
ds_device_name (DsDevice device)
{
  return device < DS_DEVICE_COUNT ? device_names[device] : "?";
}

int64_t
ds_tensor_numel (const DsTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

size_t
ds_tensor_nbytes (const DsTensor *t)
{
  return (size_t) ds_tensor_numel (t) * ds_dtype_size (t->dtype);
}

bool
ds_tensor_same_shape (const DsTensor *a, const DsTensor *b)
{
  if (a->ndim != b->ndim)
    return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return false;
  return true;
}

char *
ds_shape_str (int ndim, const int64_t *shape, char *buf, size_t size)
{
  size_t n = 0;
  n += snprintf (buf + n, size - n, "[");
  for (int i = 0; i < ndim && n < size; i++)
    n += snprintf (buf + n, size - n, i ? ", %lld" : "%lld", (long long) shape[i]);
  if (n < size)
    snprintf (buf + n, size - n, "]");
  return buf;
}

DsTensor
ds_tensor_make (DsDType dtype, int ndim, const int64_t *shape)
{
  assert (ndim >= 0 && ndim <= DS_MAX_DIMS);
  DsTensor t = { .dtype = dtype, .device = DS_DEVICE_CPU, .ndim = ndim };
  for (int i = 0; i < DS_MAX_DIMS; i++)
    t.shape[i] = i < ndim ? shape[i] : 1;
  return t;
}

DsStatus
ds_tensor_alloc (DsTensor *t, DsDType dtype, int ndim, const int64_t *shape,
                 DsError *err)
{
  *t = ds_tensor_make (dtype, ndim, shape);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return ds_error_set (err, DS_ERR_INVALID, "negative tensor dimension %lld",
                           (long long) shape[i]);
  size_t bytes = ds_tensor_nbytes (t);
  t->data = calloc (1, bytes ? bytes : 1);
  if (!t->data)
    return ds_error_set (err, DS_ERR_NOMEM, "out of host memory allocating %zu bytes",
                         bytes);
  t->owned = true;
  return DS_OK;
}

void
ds_tensor_free (DsTensor *t)
{
  if (t->owned)
    free (t->data);
  memset (t, 0, sizeof *t);
}

DsTensor
ds_tensor_reshape (const DsTensor *t, int ndim, const int64_t *shape)
{
  DsTensor v = ds_tensor_make (t->dtype, ndim, shape);
  assert (ds_tensor_numel (&v) == ds_tensor_numel (t));
  v.device = t->device;
  v.data = t->data;
  return v;
}

DsTensor
ds_tensor_slice0 (const DsTensor *t, int64_t start, int64_t len)
{
  assert (t->ndim >= 1 && start >= 0 && len >= 0 && start + len <= t->shape[0]);
  DsTensor v = *t;
  v.owned = false;
  v.shape[0] = len;
  size_t row = ds_tensor_nbytes (t) / (size_t) (t->shape[0] ? t->shape[0] : 1);
  v.data = (uint8_t *) t->data + (size_t) start * row;
  return v;
}

float
ds_f16_to_f32 (uint16_t h)
{
  /* Exponent and mantissa moved into a float's place make a float 2^-112 times
   * the half's magnitude — a normal one normal, a subnormal one subnormal — so
   * one exact multiply by 2^112 decodes both, without branches (the loops over
   * whole tensors vectorise). Inf and NaN get the top exponent back. */
  uint32_t bits = (uint32_t) (h & 0x7fff) << 13;
  float f;
  memcpy (&f, &bits, 4);
  f *= 0x1p112f;
  memcpy (&bits, &f, 4);
  if ((h & 0x7c00) == 0x7c00)
    bits = 0x7f800000u | (uint32_t) (h & 0x3ff) << 13;
  bits |= (uint32_t) (h & 0x8000) << 16;
  memcpy (&f, &bits, 4);
  return f;
}

uint16_t
ds_f32_to_f16 (float f)
{
  uint32_t x;
  memcpy (&x, &f, 4);
  uint16_t sign = (uint16_t) ((x >> 16) & 0x8000);
  uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
  if (exp == 0xff)
    return sign | 0x7c00 | (man ? 0x200 : 0);
  int32_t e = (int32_t) exp - 127 + 15;
  if (e >= 31)
    return sign | 0x7c00;
  if (e <= 0)
    {
      if (e < -10)
        return sign;
      man |= 0x800000;
      int shift = 14 - e;
      uint32_t half = man >> shift, rem = man & ((1u << shift) - 1);
      uint32_t mid = 1u << (shift - 1);
      if (rem > mid || (rem == mid && (half & 1)))
        half++;
      return sign | (uint16_t) half;
    }
  uint32_t half = ((uint32_t) e << 10) | (man >> 13), rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    half++; /* may carry into the exponent, which is the right rounding */
  return sign | (uint16_t) half;
}

float
ds_bf16_to_f32 (uint16_t h)
{
  uint32_t bits = (uint32_t) h << 16;
  float f;
  memcpy (&f, &bits, 4);
  return f;
}

uint16_t
ds_f32_to_bf16 (float f)
{
  uint32_t x;
  memcpy (&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000)
    return (uint16_t) ((x >> 16) | 0x40); /* quiet NaN */
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t) (x >> 16);
}

DsStatus
ds_convert_to_f32 (float *dst, const void *src, DsDType src_dtype, int64_t n,
                   DsError *err)
{
  switch (src_dtype)
    {
    case DS_DTYPE_F32:
      memcpy (dst, src, (size_t) n * 4);
      return DS_OK;
    case DS_DTYPE_F16:
      /* src may be unaligned (a tensor inside a mapped safetensors file) */
      for (int64_t i = 0; i < n; i++)
        {
          uint16_t h;
          memcpy (&h, (const uint8_t *) src + 2 * i, 2);
          dst[i] = ds_f16_to_f32 (h);
        }
      return DS_OK;
    case DS_DTYPE_BF16:
      for (int64_t i = 0; i < n; i++)
        {
          uint16_t h;
          memcpy (&h, (const uint8_t *) src + 2 * i, 2);
          dst[i] = ds_bf16_to_f32 (h);
        }
      return DS_OK;
    case DS_DTYPE_I32:
      for (int64_t i = 0; i < n; i++)
        {
          int32_t v;
          memcpy (&v, (const uint8_t *) src + 4 * i, 4);
          dst[i] = (float) v;
        }
      return DS_OK;
    case DS_DTYPE_I64:
      for (int64_t i = 0; i < n; i++)
        {
          int64_t v;
          memcpy (&v, (const uint8_t *) src + 8 * i, 8);
          dst[i] = (float) v;
        }
      return DS_OK;
    default:
      return ds_error_set (err, DS_ERR_UNSUPPORTED, "cannot convert dtype %d to f32",
                           (int) src_dtype);
    }
}

bool
ds_dtype_is_float (DsDType dtype)
{
  return dtype == DS_DTYPE_F32 || dtype == DS_DTYPE_F16 || dtype == DS_DTYPE_BF16;
}

void
ds_convert_from_f32 (void *dst, DsDType dst_dtype, const float *src, int64_t n)
{
  assert (ds_dtype_is_float (dst_dtype));
  uint16_t *h = dst;
  switch (dst_dtype)
    {
    case DS_DTYPE_F16:
      for (int64_t i = 0; i < n; i++)
        h[i] = ds_f32_to_f16 (src[i]);
      break;
    case DS_DTYPE_BF16:
      for (int64_t i = 0; i < n; i++)
        h[i] = ds_f32_to_bf16 (src[i]);
      break;
    default:
      memcpy (dst, src, (size_t) n * sizeof *src);
      break;
    }
}

DsStatus
ds_arena_init (DsArena *a, size_t size, DsError *err)
{
  memset (a, 0, sizeof *a);
  a->base = aligned_alloc (64, (size + 63) / 64 * 64);
  if (!a->base)
    return ds_error_set (err, DS_ERR_NOMEM, "out of host memory reserving a %zu MiB arena",
                         size >> 20);
  a->size = size;
  a->device = DS_DEVICE_CPU;
  a->dtype = DS_DTYPE_F32;
  return DS_OK;
}

void
ds_arena_free (DsArena *a)
{
  free (a->base);
  memset (a, 0, sizeof *a);
}

DsStatus
ds_arena_tensor (DsArena *a, DsTensor *t, DsDType dtype, int ndim,
                 const int64_t *shape, DsError *err)
{
  *t = ds_tensor_make (dtype, ndim, shape);
  t->device = a->device;
  size_t bytes = (ds_tensor_nbytes (t) + 63) / 64 * 64;
  if (a->used + bytes > a->size)
    {
      char s[96];
      return ds_error_set (err, DS_ERR_NOMEM,
                           "activation arena full: %zu of %zu bytes used, %zu more needed for %s",
                           a->used, a->size, bytes, ds_shape_str (ndim, shape, s, sizeof s));
    }
  if (a->base)
    t->data = a->base + a->used;
  else /* measuring (ds_arena_init_measure): a placeholder never dereferenced */
    t->data = (void *) (uintptr_t) (64 + a->used);
  a->used += bytes;
  if (a->used > a->peak)
    a->peak = a->used;
  return DS_OK;
}
