/* ds-test.h: the minimal assertion helpers shared by the C test programs.
 *
 * A test program calls its cases, each of which uses DS_CHECK* to record
 * failures (with file:line and a message) and carry on; main returns
 * ds_test_finish (), which prints a summary and gives 0 or 1. A test that needs
 * something absent (a GPU, a display) returns DS_TEST_SKIP (77, meson's skip).
 */
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ds-probes.h"
#include "ds-safetensors.h"
#include "ds-tensor.h"

#define DS_TEST_SKIP 77

static int ds_test_failures_;
static int ds_test_checks_;

#define DS_CHECK(cond, ...)                                                     \
  do {                                                                          \
    ds_test_checks_++;                                                          \
    if (!(cond))                                                                \
      {                                                                         \
        ds_test_failures_++;                                                    \
        fprintf (stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
        fprintf (stderr, __VA_ARGS__);                                          \
        fputc ('\n', stderr);                                                   \
      }                                                                         \
  } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define DS_CHECK_CLOSE(a, b, tol)                                               \
  do {                                                                          \
    double a_ = (a), b_ = (b);                                                  \
    DS_CHECK (fabs (a_ - b_) <= (tol) * fmax (1.0, fabs (b_)),                  \
              "%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double) (tol)); \
  } while (0)

#define DS_CHECK_STATUS(st, expected, errp)                                     \
  DS_CHECK ((st) == (expected), "status %s, expected %s (%s)",                  \
            ds_status_name (st), ds_status_name (expected), (errp)->message)

#define DS_CHECK_OK(st, errp) DS_CHECK_STATUS (st, DS_OK, errp)

#define DS_CHECK_CONTAINS(haystack, needle)                                     \
  DS_CHECK (strstr ((haystack), (needle)) != NULL, "\"%s\" does not mention \"%s\"", \
            (haystack), (needle))

/* Normalized MSE: sum (a-b)^2 / sum b^2 (0 when both are zero). */
static inline double
ds_test_nmse (const float *a, const float *b, long n)
{
  double num = 0, den = 0;
  for (long i = 0; i < n; i++)
    {
      double d = (double) a[i] - b[i];
      num += d * d;
      den += (double) b[i] * b[i];
    }
  return den > 0 ? num / den : num;
}

/* Checks that `got` has `want`'s shape and NMSE(got, want) <= tol (host f32),
 * printing the value under `what`. */
#define ds_test_check_tensor(what, got, want, tol)                             \
  do {                                                                         \
    const DsTensor *g_ = (got), *w_ = (want);                                  \
    DS_CHECK (ds_tensor_same_shape (g_, w_), "%s: shapes differ", (what));     \
    if (ds_tensor_same_shape (g_, w_))                                         \
      {                                                                        \
        double n_ = ds_test_nmse (ds_tensor_f32 (g_), ds_tensor_f32 (w_),      \
                                  (long) ds_tensor_numel (w_));                \
        printf ("  %-36s NMSE %.3g\n", (what), n_);                            \
        DS_CHECK (n_ <= (tol), "%s: NMSE %g > %g", (what), n_, (double) (tol)); \
      }                                                                        \
  } while (0)

/* The mean over dim 1 of a host f32 tensor x [B, H, ...], as a new tensor
 * [B, 1, ...] (sums in double): the reference for head-averaged maps. */
static inline DsTensor
ds_test_mean_dim1 (const DsTensor *x)
{
  int64_t shape[DS_MAX_DIMS];
  memcpy (shape, x->shape, sizeof shape);
  shape[1] = 1;
  DsTensor y;
  ds_tensor_alloc (&y, DS_DTYPE_F32, x->ndim, shape, NULL);
  const int64_t nb = x->shape[0], h = x->shape[1], r = ds_tensor_numel (&y) / (nb ? nb : 1);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t i = 0; i < r; i++)
      {
        double acc = 0;
        for (int64_t k = 0; k < h; k++)
          acc += ds_tensor_f32 (x)[(b * h + k) * r + i];
        ds_tensor_f32 (&y)[b * r + i] = (float) (acc / (double) h);
      }
  return y;
}

/* The reference of probe p for an emitted tensor t [B, ...] from a fixture
 * file, as a new host tensor in *ref: the stored tensor, or, when t is a map
 * averaged over its heads (DsProbeSink.head_mean_maps) while p has several,
 * the mean of the stored heads (*averaged set). DS_OK or the load's error. */
static inline DsStatus
ds_test_probe_ref (const DsSafetensors *fixture, const char *name, const DsProbeInfo *p,
                   const DsTensor *t, DsTensor *ref, bool *averaged, DsError *err)
{
  *averaged = (p->kind == DS_PROBE_SELF_MAP || p->kind == DS_PROBE_CROSS_MAP)
              && t->shape[1] == 1 && p->shape[0] > 1;
  int64_t shape[DS_MAX_DIMS];
  memcpy (shape, t->shape, sizeof shape);
  if (*averaged)
    shape[1] = p->shape[0];
  DsStatus st = ds_safetensors_load_f32 (fixture, name, t->ndim, shape, ref, err);
  if (st == DS_OK && *averaged)
    {
      DsTensor m = ds_test_mean_dim1 (ref);
      ds_tensor_free (ref);
      *ref = m;
    }
  return st;
}

static inline int
ds_test_finish (void)
{
  printf ("%d checks, %d failed\n", ds_test_checks_, ds_test_failures_);
  return ds_test_failures_ ? 1 : 0;
}
