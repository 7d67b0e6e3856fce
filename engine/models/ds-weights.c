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
  w->n_params = 0;
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

static void
format_name (const DsWeights *w, char *buf, size_t size, const char *fmt, va_list ap)
{
  size_t n = (size_t) snprintf (buf, size, "%s", w->prefix);
  if (n < size)
    vsnprintf (buf + n, size - n, fmt, ap);
}

bool
ds_weights_has (const DsWeights *w, const char *fmt, ...)
{
  char name[512];
  va_list ap;
  va_start (ap, fmt);
  format_name (w, name, sizeof name, fmt, ap);
  va_end (ap);
  return !w->st || ds_safetensors_find (w->st, name) != NULL;
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

  DsTensor host;
  DsStatus st = w->st ? ds_safetensors_load_f32 (w->st, name, ndim, shape, &host, err)
                      : random_tensor (w->seed, name, ndim, shape, &host, err);
  if (st != DS_OK)
    return st;
  if (w->n_tensors == w->cap_tensors)
    {
      int cap = w->cap_tensors ? 2 * w->cap_tensors : 256;
      DsTensor *t = realloc (w->tensors, (size_t) cap * sizeof *t);
      if (!t)
        {
          ds_tensor_free (&host);
          return ds_error_set (err, DS_ERR_NOMEM, "out of memory loading '%s'", name);
        }
      w->tensors = t;
      w->cap_tensors = cap;
    }
  if (w->be->device == DS_DEVICE_CPU)
    *out = host; /* the host copy is the CPU backend's tensor */
  else
    {
      /* Converted once, here, to what the backend computes in. */
      st = w->be->tensor_alloc (w->be, out, w->be->act_dtype, ndim, shape, err);
      if (st == DS_OK)
        st = ds_backend_upload_f32 (w->be, out, ds_tensor_f32 (&host), err);
      ds_tensor_free (&host);
      if (st != DS_OK)
        return ds_error_prefix (err, st, "loading '%s'", name);
    }
  w->tensors[w->n_tensors++] = *out;
  w->n_params += (size_t) ds_tensor_numel (out);
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
