/* ds-weights.c: see ds-weights.h. */
#include "ds-weights.h"
#include "ds-util.h"

#include "ds-schedule.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void
ds_weights_init (DsWeights *w, DsBackend *be, const DsSafetensors *st, const char *prefix)
{
  memset (w, 0, sizeof *w);
  w->be = be;
  w->st = st;
  snprintf (w->prefix, sizeof w->prefix, "%s", prefix ? prefix : "");
}

void
ds_weights_init_random (DsWeights *w, DsBackend *be, uint64_t seed, const char *prefix)
{
  ds_weights_init (w, be, NULL, prefix);
  w->seed = seed;
}

void
ds_weights_free (DsWeights *w)
{
  for (int i = 0; i < w->n_tensors; i++)
    w->be->tensor_free (w->be, &w->tensors[i]);
  free (w->tensors);
  w->tensors = NULL;
  w->n_tensors = w->cap_tensors = 0;
  w->n_params = w->n_bytes = 0;
  w->n_mapped = 0;
}

static bool
ends_with (const char *s, const char *suffix)
{
  size_t n = strlen (s), m = strlen (suffix);
  return n >= m && strcmp (s + n - m, suffix) == 0;
}

static DsStatus
random_tensor (uint64_t seed, const char *name, int ndim, const int64_t *shape, DsTensor *out,
               DsError *err)
{
  DsStatus st = ds_tensor_alloc (out, DS_DTYPE_F32, ndim, shape, err);
  if (st)
    return ds_error_prefix (err, st, "generating '%s'", name);
  int64_t n = ds_tensor_numel (out), fan_in = 1;
  for (int i = 1; i < ndim; i++)
    fan_in *= shape[i];
  float *p = ds_tensor_f32 (out);
  ds_noise_normal (seed ^ ds_fnv1a (DS_FNV1A_OFFSET, name, strlen (name)), p, n);
  float scale = 1.0f, shift = 0.0f;
  if (ends_with (name, ".bias"))
    scale = 0.02f;
  else if (ndim == 1)
    scale = 0.1f, shift = 1.0f;
  else if (!ends_with (name, "embedding.weight"))
    scale = 1.0f / sqrtf ((float) fan_in);
  for (int64_t i = 0; i < n; i++)
    p[i] = shift + scale * p[i];
  return DS_OK;
}

/* The scale of a generated [rows, cols] matrix's values: 1/sqrt(cols) as
 * random_tensor's weights, 1 for an embedding table. */
static float
matrix_scale (const char *name, int64_t cols)
{
  return ends_with (name, "embedding.weight") ? 1.0f : 1.0f / sqrtf ((float) cols);
}

/* A host tensor for a 16-bit matrix copy, contents undefined, on 2 MiB pages
 * where the kernel grants them (madvise, for THP in its "madvise" mode): a
 * decode step streams every matrix once, and 4 KiB pages cost a TLB miss per
 * 4 KiB read (a 4096 x 11008 mixed GEMV: 32-38 GB/s on 4 KiB pages, 41-46 on
 * 2 MiB ones, on the 2-core development machine). Freed by ds_tensor_free. */
static DsStatus
alloc_matrix16 (DsTensor *t, DsDType dt, const int64_t *shape, DsError *err)
{
  const size_t huge = (size_t) 2 << 20;
  *t = ds_tensor_make (dt, 2, shape);
  const size_t bytes = ds_tensor_nbytes (t), rounded = (bytes + huge - 1) / huge * huge;
  if (bytes < huge)
    return ds_tensor_alloc (t, dt, 2, shape, err);
  void *p = NULL;
  if (posix_memalign (&p, huge, rounded) != 0)
    return ds_error_set (err, DS_ERR_NOMEM, "out of host memory allocating %zu bytes", bytes);
#ifdef MADV_HUGEPAGE
  madvise (p, rounded, MADV_HUGEPAGE); /* a hint: 4 KiB pages where refused */
#endif
  t->data = p;
  t->owned = true;
  return DS_OK;
}

/* Seeded values for a matrix generated straight into a 16-bit dtype (a 7B
 * model has 6.7e9: Box-Muller in double would take minutes): each the sum of
 * the four 16-bit quarters of one splitmix64 output, centred and scaled to
 * unit variance (Irwin-Hall of 4: near-normal, |z| <= 3.47), times `scale`,
 * rounded to `dt`, a row at a time. */
static void
fast_matrix (uint64_t seed, DsDType dt, float scale, uint16_t *out, int64_t rows, int64_t cols,
             float *row)
{
  const float mean = 4 * 32767.5f, inv_sd = sqrtf (3.0f) / 65536.0f;
  uint64_t x = seed;
  for (int64_t r = 0; r < rows; r++)
    {
      for (int64_t i = 0; i < cols; i++)
        {
          uint64_t z = (x += 0x9e3779b97f4a7c15ull);
          z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
          z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
          z ^= z >> 31;
          uint32_t sum = (uint32_t) (z & 0xffff) + (uint32_t) ((z >> 16) & 0xffff)
                         + (uint32_t) ((z >> 32) & 0xffff) + (uint32_t) (z >> 48);
          row[i] = ((float) sum - mean) * inv_sd * scale;
        }
      ds_convert_from_f32 (out + r * cols, dt, row, cols);
    }
}

static void
format_name (const DsWeights *w, char *buf, size_t size, const char *fmt, va_list ap)
{
  size_t n = (size_t) snprintf (buf, size, "%s", w->prefix);
  if (n < size)
    vsnprintf (buf + n, size - n, fmt, ap);
}

/* A sharded checkpoint: st becomes the shard holding `name` (the first one
 * when none has it, so the error names a file and the tensor). */
static void
pick_shard (DsWeights *w, const char *name)
{
  const DsSafetensors *shard = NULL;
  if (w->index && !ds_safetensors_index_find (w->index, name, &shard))
    shard = ds_safetensors_index_shard (w->index, 0);
  if (w->index)
    w->st = shard;
}

bool
ds_weights_has (const DsWeights *w, const char *fmt, ...)
{
  char name[512];
  va_list ap;
  va_start (ap, fmt);
  format_name (w, name, sizeof name, fmt, ap);
  va_end (ap);
  if (w->index)
    return ds_safetensors_index_find (w->index, name, NULL) != NULL;
  return !w->st || ds_safetensors_find (w->st, name) != NULL;
}

/* Room for one more tensor in w->tensors. */
static DsStatus
reserve_one (DsWeights *w, const char *name, DsError *err)
{
  if (w->n_tensors < w->cap_tensors)
    return DS_OK;
  int cap = w->cap_tensors ? 2 * w->cap_tensors : 256;
  DsTensor *t = realloc (w->tensors, (size_t) cap * sizeof *t);
  if (!t)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory loading '%s'", name);
  w->tensors = t;
  w->cap_tensors = cap;
  return DS_OK;
}

static void
record (DsWeights *w, const DsTensor *t)
{
  w->tensors[w->n_tensors++] = *t;
  w->n_params += (size_t) ds_tensor_numel (t);
  w->n_bytes += ds_tensor_nbytes (t);
}

/* host (f32, owned) onto the backend in its act_dtype; host is consumed. */
static DsStatus
place (DsWeights *w, DsTensor *host, DsTensor *out, const char *name, DsError *err)
{
  DsStatus st = reserve_one (w, name, err);
  if (st != DS_OK)
    {
      ds_tensor_free (host);
      return st;
    }
  if (w->be->device == DS_DEVICE_CPU)
    *out = *host; /* the host copy is the CPU backend's tensor */
  else
    {
      /* Converted once, here, to what the backend computes in. */
      st = w->be->tensor_alloc (w->be, out, w->be->act_dtype, host->ndim, host->shape, err);
      if (st == DS_OK && (st = ds_backend_upload_f32 (w->be, out, ds_tensor_f32 (host), err)))
        w->be->tensor_free (w->be, out);
      ds_tensor_free (host);
      if (st != DS_OK)
        return ds_error_prefix (err, st, "loading '%s'", name);
    }
  record (w, out);
  return DS_OK;
}

DsStatus
ds_weights_load (DsWeights *w, DsTensor *out, int ndim, const int64_t *shape, DsError *err,
                 const char *fmt, ...)
{
  char name[512];
  va_list ap;
  va_start (ap, fmt);
  format_name (w, name, sizeof name, fmt, ap);
  va_end (ap);
  pick_shard (w, name);

  DsTensor host;
  DsStatus st = w->st ? ds_safetensors_load_float (w->st, name, ndim, shape, &host, err)
                      : random_tensor (w->seed, name, ndim, shape, &host, err);
  if (st != DS_OK)
    return st;
  return place (w, &host, out, name, err);
}

static bool
is_half (DsDType t)
{
  return t == DS_DTYPE_F16 || t == DS_DTYPE_BF16;
}

/* Index of the first non-finite value of n 16-bit floats (all exponent bits
 * set), or -1. */
static int64_t
first_non_finite (const uint16_t *h, DsDType t, int64_t n)
{
  const uint16_t exp = t == DS_DTYPE_BF16 ? 0x7f80 : 0x7c00;
  for (int64_t i = 0; i < n; i++)
    if ((h[i] & exp) == exp)
      return i;
  return -1;
}

DsStatus
ds_weights_load_matrix (DsWeights *w, DsTensor *out, int64_t rows, int64_t cols, DsError *err,
                        const char *fmt, ...)
{
  char name[512];
  va_list ap;
  va_start (ap, fmt);
  format_name (w, name, sizeof name, fmt, ap);
  va_end (ap);
  const int64_t shape[2] = { rows, cols };
  pick_shard (w, name);
  const DsSafetensorsEntry *e = w->st ? ds_safetensors_find (w->st, name) : NULL;
  const bool fits = e && e->ndim == 2 && e->shape[0] == rows && e->shape[1] == cols;
  const DsDType stored = w->st ? (fits ? e->dtype : DS_DTYPE_F32) : w->random_dtype;
  DsTensor host;
  DsStatus st;
  if (!w->st && is_half (stored))
    {
      /* generated in the 16-bit dtype, as a file would store them */
      DsTensor h, row = { 0 };
      if ((st = alloc_matrix16 (&h, stored, shape, err)) != DS_OK
          || (st = ds_tensor_alloc (&row, DS_DTYPE_F32, 1, &cols, err)) != DS_OK)
        {
          ds_tensor_free (&h);
          return ds_error_prefix (err, st, "generating '%s'", name);
        }
      fast_matrix (w->seed ^ ds_fnv1a (DS_FNV1A_OFFSET, name, strlen (name)), stored,
                   matrix_scale (name, cols), h.data, rows, cols, ds_tensor_f32 (&row));
      ds_tensor_free (&row);
      if (!w->be->mixed_linear && w->be->device != DS_DEVICE_CPU && w->be->act_dtype == stored)
        {
          /* a device computing in that dtype: the values as they are (what
           * widening to f32 and rounding back would give, without the 2
           * passes over a 7B model's 27 GB of f32) */
          if ((st = reserve_one (w, name, err)) == DS_OK
              && (st = w->be->tensor_alloc (w->be, out, stored, 2, shape, err)) == DS_OK
              && (st = w->be->upload (w->be, out, h.data, err)) != DS_OK)
            w->be->tensor_free (w->be, out);
          ds_tensor_free (&h);
          if (st != DS_OK)
            return ds_error_prefix (err, st, "loading '%s'", name);
          record (w, out);
          return DS_OK;
        }
      if (!w->be->mixed_linear)
        {
          /* the f32 values of the rounded numbers, converted as usual */
          st = ds_tensor_alloc (&host, DS_DTYPE_F32, 2, shape, err);
          if (st == DS_OK)
            ds_convert_to_f32 (ds_tensor_f32 (&host), h.data, stored, rows * cols, NULL);
          ds_tensor_free (&h);
          return st == DS_OK ? place (w, &host, out, name, err)
                             : ds_error_prefix (err, st, "generating '%s'", name);
        }
      if ((st = reserve_one (w, name, err)) != DS_OK)
        {
          ds_tensor_free (&h);
          return st;
        }
      *out = h;
      record (w, out);
      return DS_OK;
    }
  if (!w->be->mixed_linear || !is_half (stored))
    return ds_weights_load (w, out, 2, shape, err, "%s", name + strlen (w->prefix));
  if ((st = reserve_one (w, name, err)) != DS_OK)
    return st;
  const bool mapped = (uintptr_t) e->data % 2 == 0;
  if (mapped)
    {
      *out = ds_tensor_make (stored, 2, shape);
      out->data = (void *) e->data; /* read-only mapping; ops never write weights */
    }
  else
    {
      if ((st = alloc_matrix16 (out, stored, shape, err)) != DS_OK)
        return ds_error_prefix (err, st, "loading '%s'", name);
      memcpy (out->data, e->data, e->nbytes);
    }
  int64_t bad = first_non_finite (out->data, stored, rows * cols);
  if (bad >= 0)
    {
      ds_tensor_free (out);
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: tensor '%s' holds a NaN or infinity at element %lld",
                           ds_safetensors_path (w->st), name, (long long) bad);
    }
  w->n_mapped += mapped;
  record (w, out);
  return DS_OK;
}

DsStatus
ds_weights_linear (DsWeights *w, DsLinearW *out, int64_t n_out, int64_t n_in, bool bias,
                   DsError *err, const char *name)
{
  memset (out, 0, sizeof *out);
  DsStatus st = ds_weights_load (w, &out->w, 2, (int64_t[]){ n_out, n_in }, err,
                                 "%s.weight", name);
  if (st == DS_OK && bias)
    st = ds_weights_load (w, &out->b, 1, (int64_t[]){ n_out }, err, "%s.bias", name);
  return st;
}

DsStatus
ds_weights_conv (DsWeights *w, DsConvW *out, int64_t n_out, int64_t n_in, int k,
                 DsError *err, const char *name)
{
  memset (out, 0, sizeof *out);
  DsStatus st = ds_weights_load (w, &out->w, 4, (int64_t[]){ n_out, n_in, k, k }, err,
                                 "%s.weight", name);
  if (st == DS_OK)
    st = ds_weights_load (w, &out->b, 1, (int64_t[]){ n_out }, err, "%s.bias", name);
  return st;
}

DsStatus
ds_weights_norm (DsWeights *w, DsNormW *out, int64_t c, DsError *err, const char *name)
{
  memset (out, 0, sizeof *out);
  DsStatus st = ds_weights_load (w, &out->g, 1, (int64_t[]){ c }, err, "%s.weight", name);
  if (st == DS_OK)
    st = ds_weights_load (w, &out->b, 1, (int64_t[]){ c }, err, "%s.bias", name);
  return st;
}
