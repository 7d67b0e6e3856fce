/* test-analysis.c: the paper's analyses (ds-analysis.h, ds-pca.h, ds-heatmap.h)
 * against reference values:
 *  1. fixtures from tests/reference/gen_analysis.py (tests/data/analysis/):
 *     numpy and scikit-learn PCA, numpy CKA in both forms, torch F.interpolate,
 *     torch DAAM aggregation, torch.logsumexp; scalars come from analysis.json
 *     in full f64;
 *  2. hand-made cases whose answers are known in closed form;
 *  3. every user-facing failure, checking the status and the message.
 */
#include "ds-test.h"
#include "ds-test-sd21.h"

#include <jansson.h>
#include <stdlib.h>
#include <strings.h>

#include "ds-analysis.h"
#include "ds-heatmap.h"
#include "ds-pca.h"
#include "ds-safetensors.h"

static DsSafetensors *fx;
static json_t *meta;

/* Fixture tensor `name` as a new f32 tensor; false (and a failed check) when absent. */
static bool
load (const char *name, DsTensor *t)
{
  DsError err = { 0 };
  DsStatus st = ds_safetensors_load_f32 (fx, name, 0, NULL, t, &err);
  DS_CHECK_OK (st, &err);
  return st == DS_OK;
}

static float *
f32 (const DsTensor *t)
{
  return ds_tensor_f32 (t);
}

static json_t *
jpath (const char *group, const char *key)
{
  json_t *g = json_object_get (meta, group);
  json_t *v = g && key ? json_object_get (g, key) : g;
  DS_CHECK (v != NULL, "analysis.json has no %s.%s", group, key ? key : "");
  return v;
}

static double
jnum_at (json_t *a, size_t i)
{
  return json_number_value (json_array_get (a, i));
}

/* max |got - want|; reports the first index past tol. */
static double
max_abs_diff (const char *label, const float *got, const float *want, int64_t n, double tol)
{
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < n; i++)
    {
      double d = fabs ((double) got[i] - want[i]);
      if (!(d <= worst))
        worst = d, at = i;
    }
  DS_CHECK (worst <= tol, "%s: max |diff| %.3g at %lld (got %.9g, want %.9g), tol %.3g", label,
            worst, (long long) at, at >= 0 ? got[at] : 0.0, at >= 0 ? want[at] : 0.0, tol);
  return worst;
}

/* ------------------------------------------------------------------ */
/* guidance                                                            */

static void
test_guidance (void)
{
  DsTensor xu, xc, want, mag;
  if (!load ("guid.xu", &xu) || !load ("guid.xc", &xc))
    return;
  int64_t n = ds_tensor_numel (&xu), c = xu.shape[0], npos = xu.shape[1];
  json_t *s = jpath ("guidance", "s");
  float *out = malloc ((size_t) n * sizeof *out);
  for (size_t i = 0; i < json_array_size (s); i++)
    {
      char name[32];
      snprintf (name, sizeof name, "guid.out%zu", i);
      if (!load (name, &want))
        continue;
      float sv = (float) jnum_at (s, i);
      ds_guidance_amplify (f32 (&xu), f32 (&xc), sv, out, n);
      /* Same three f32 roundings as numpy: bit-identical. */
      DS_CHECK (memcmp (out, f32 (&want), (size_t) n * sizeof *out) == 0,
                "amplify at s = %g differs from numpy float32", (double) sv);
      if (sv == 0.0f)
        DS_CHECK (memcmp (out, f32 (&xu), (size_t) n * sizeof *out) == 0, "s = 0 is not xu");
      if (sv == 1.0f)
        max_abs_diff ("s = 1 vs xc", out, f32 (&xc), n, 1e-6);
      ds_tensor_free (&want);
    }
  /* In place over xc. */
  float *alias = malloc ((size_t) n * sizeof *alias);
  memcpy (alias, f32 (&xc), (size_t) n * sizeof *alias);
  ds_guidance_amplify (f32 (&xu), alias, 2.5f, alias, n);
  if (load ("guid.out2", &want))
    {
      DS_CHECK (memcmp (alias, f32 (&want), (size_t) n * sizeof *out) == 0, "in-place amplify");
      ds_tensor_free (&want);
    }

  ds_delta_cond (f32 (&xu), f32 (&xc), out, n);
  for (int64_t i = 0; i < n; i++)
    DS_CHECK (out[i] == f32 (&xc)[i] - f32 (&xu)[i], "delta at %lld", (long long) i);
  float *m = malloc ((size_t) npos * sizeof *m);
  ds_delta_magnitude (out, c, npos, m);
  if (load ("guid.mag", &mag))
    {
      max_abs_diff ("delta magnitude", m, f32 (&mag), npos, 2e-6);
      ds_tensor_free (&mag);
    }
  /* 3-4-5 by hand, and more positions than one block of the loop. */
  enum { N = 300 };
  float d[2 * N], mm[N];
  for (int i = 0; i < N; i++)
    d[i] = 3.0f * (float) (i % 5), d[N + i] = 4.0f * (float) (i % 5);
  ds_delta_magnitude (d, 2, N, mm);
  bool ok = true;
  for (int i = 0; i < N; i++)
    ok = ok && mm[i] == 5.0f * (float) (i % 5);
  DS_CHECK (ok, "|(3k, 4k)| = 5k at every position");
  free (out), free (alias), free (m);
  ds_tensor_free (&xu), ds_tensor_free (&xc);
}

/* ------------------------------------------------------------------ */
/* PCA                                                                 */

typedef struct {
  int k;
  DsTensor x[2];
  const float *xp[2];
  int64_t n[2];
  int64_t c;
} PcaCase;

static bool
pca_case_load (const char *name, PcaCase *pc)
{
  memset (pc, 0, sizeof *pc);
  json_t *cs = json_object_get (json_object_get (meta, "pca"), name);
  pc->k = (int) json_array_size (json_object_get (cs, "n"));
  for (int i = 0; i < pc->k; i++)
    {
      char key[64];
      snprintf (key, sizeof key, "pca.%s.x%d", name, i);
      if (!load (key, &pc->x[i]))
        return false;
      pc->xp[i] = f32 (&pc->x[i]);
      pc->c = pc->x[i].shape[0];
      pc->n[i] = pc->x[i].shape[1];
    }
  return true;
}

static void
pca_case_free (PcaCase *pc)
{
  for (int i = 0; i < pc->k; i++)
    ds_tensor_free (&pc->x[i]);
}

/* rgb vs sklearn up to one sign flip per component (the same for all images of
 * a joint fit): a flipped component reads 1 − c after min–max. */
static void
check_vs_sklearn (const char *name, float *const *rgb, const PcaCase *pc, int nc)
{
  DsTensor sk[2];
  for (int i = 0; i < pc->k; i++)
    {
      char key[64];
      snprintf (key, sizeof key, "pca.%s.sk%d", name, i);
      if (!load (key, &sk[i]))
        return;
    }
  for (int r = 0; r < DS_PCA_COMPONENTS; r++)
    {
      double same = 0, flipped = 0;
      bool half = true;
      for (int i = 0; i < pc->k; i++)
        for (int64_t j = 0; j < pc->n[i]; j++)
          {
            double g = rgb[i][j * 3 + r], w = f32 (&sk[i])[j * 3 + r];
            same = fmax (same, fabs (g - w));
            flipped = fmax (flipped, fabs (g - (1 - w)));
            half = half && g == 0.5f;
          }
      if (r < nc)
        DS_CHECK (fmin (same, flipped) < 1e-6,
                  "PCA %s component %d: max diff vs sklearn %.3g, flipped %.3g", name, r, same,
                  flipped);
      else
        DS_CHECK (half, "PCA %s component %d is missing and should be 0.5 everywhere", name, r);
    }
  for (int i = 0; i < pc->k; i++)
    ds_tensor_free (&sk[i]);
}

/* rgb vs the numpy implementation of the documented sign rule: no flips allowed. */
static void
check_vs_rule (const char *name, const char *what, float *const *rgb, const PcaCase *pc)
{
  for (int i = 0; i < pc->k; i++)
    {
      DsTensor want;
      char key[64], label[96];
      snprintf (key, sizeof key, "pca.%s.rule%d", name, i);
      snprintf (label, sizeof label, "PCA %s (%s) image %d vs the sign rule", name, what, i);
      if (!load (key, &want))
        continue;
      max_abs_diff (label, rgb[i], f32 (&want), pc->n[i] * 3, 1e-6);
      ds_tensor_free (&want);
    }
}

static void
test_pca_fixtures (void)
{
  json_t *cases = jpath ("pca", NULL);
  const char *name;
  json_t *cs;
  int n_cases = 0;
  json_object_foreach (cases, name, cs)
    {
      PcaCase pc;
      if (!pca_case_load (name, &pc))
        {
          pca_case_free (&pc);
          continue;
        }
      int nc = (int) json_integer_value (json_object_get (cs, "n_components"));
      json_t *ratio_want = json_object_get (cs, "ratio");
      float *rgb[2] = { NULL, NULL };
      for (int i = 0; i < pc.k; i++)
        rgb[i] = malloc ((size_t) pc.n[i] * 3 * sizeof (float));
      double ratio[3] = { -1, -1, -1 };
      DsError err = { 0 };
      DsStatus st = pc.k == 1 ? ds_pca_rgb (pc.xp[0], pc.c, pc.n[0], rgb[0], ratio, &err)
                              : ds_pca_rgb_joint (pc.xp, pc.n, pc.k, pc.c, rgb, ratio, &err);
      DS_CHECK_OK (st, &err);
      if (st == DS_OK)
        {
          check_vs_sklearn (name, rgb, &pc, nc);
          check_vs_rule (name, "auto", rgb, &pc);
          for (int r = 0; r < 3; r++)
            DS_CHECK (fabs (ratio[r] - jnum_at (ratio_want, (size_t) r)) < 1e-9,
                      "PCA %s ratio %d = %.12g, sklearn %.12g", name, r, ratio[r],
                      jnum_at (ratio_want, (size_t) r));
        }

      /* Both exact solvers, through fit / project / to_rgb. */
      static const DsPcaSolver solvers[] = { DS_PCA_SOLVER_COVARIANCE, DS_PCA_SOLVER_GRAM };
      static const char *const solver_names[] = { "covariance", "Gram" };
      DsPca fits[2];
      for (int s = 0; s < 2; s++)
        {
          st = ds_pca_fit (pc.xp, pc.n, pc.k, pc.c, solvers[s], &fits[s], &err);
          DS_CHECK_OK (st, &err);
          if (st != DS_OK)
            continue;
          DS_CHECK (fits[s].n_components == nc, "PCA %s (%s) kept %d components, expected %d",
                    name, solver_names[s], fits[s].n_components, nc);
          for (int i = 0; i < pc.k; i++)
            {
              ds_pca_project (&fits[s], pc.xp[i], pc.n[i], rgb[i]);
              ds_pca_scores_to_rgb (rgb[i], pc.n[i], fits[s].n_components, rgb[i]);
            }
          check_vs_rule (name, solver_names[s], rgb, &pc);
        }
      if (fits[0].components && fits[1].components)
        {
          double d = 0;
          for (int64_t j = 0; j < 3 * pc.c; j++)
            d = fmax (d, fabs (fits[0].components[j] - fits[1].components[j]));
          DS_CHECK (d < 1e-8, "PCA %s: covariance and Gram loadings differ by %.3g", name, d);
          for (int r = 0; r < 3; r++)
            DS_CHECK_CLOSE (fits[0].variance[r], fits[1].variance[r], 1e-9);
        }
      ds_pca_free (&fits[0]), ds_pca_free (&fits[1]);
      for (int i = 0; i < pc.k; i++)
        free (rgb[i]);
      pca_case_free (&pc);
      n_cases++;
    }
  DS_CHECK (n_cases == 9, "%d PCA fixture cases, expected 9", n_cases);
}

static bool
all_equal (const float *x, int64_t n, float v)
{
  for (int64_t i = 0; i < n; i++)
    if (x[i] != v)
      return false;
  return true;
}

static void
test_pca_by_hand (void)
{
  DsError err = { 0 };
  float rgb[12 * 3];
  double ratio[3];

  /* One channel: the only component is ±1; the rule makes it +1, so the
   * positions keep their order: [1, 3, 2] -> [0, 1, 0.5]. */
  const float one[] = { 1, 3, 2 };
  DS_CHECK_OK (ds_pca_rgb (one, 1, 3, rgb, ratio, &err), &err);
  DS_CHECK (rgb[0] == 0.0f && rgb[3] == 1.0f && rgb[6] == 0.5f, "R = %g %g %g", rgb[0], rgb[3],
            rgb[6]);
  DS_CHECK (rgb[1] == 0.5f && rgb[2] == 0.5f && rgb[7] == 0.5f, "missing G, B are 0.5");
  DS_CHECK_CLOSE (ratio[0], 1.0, 1e-12);
  DS_CHECK (ratio[1] == 0 && ratio[2] == 0, "missing ratios are 0");

  /* Rank 1 with a negative channel: loading ∝ (2, −1); the larger is channel 0,
   * made positive, so R follows channel 0: [0, 1/3, 2/3, 1]. */
  const float r1[] = { 0, 2, 4, 6, 0, -1, -2, -3 };
  DS_CHECK_OK (ds_pca_rgb (r1, 2, 4, rgb, ratio, &err), &err);
  for (int j = 0; j < 4; j++)
    DS_CHECK_CLOSE (rgb[j * 3], j / 3.0, 1e-6);
  DS_CHECK (rgb[1] == 0.5f && rgb[5] == 0.5f && rgb[11] == 0.5f, "rank 1: G and B are 0.5");
  DsPca pca;
  const float *xp = r1;
  int64_t n4 = 4;
  DS_CHECK_OK (ds_pca_fit (&xp, &n4, 1, 2, DS_PCA_SOLVER_AUTO, &pca, &err), &err);
  DS_CHECK (pca.n_components == 1, "rank 1 map kept %d components", pca.n_components);
  DS_CHECK_CLOSE (pca.components[0], 2 / sqrt (5.0), 1e-12);
  DS_CHECK_CLOSE (pca.components[1], -1 / sqrt (5.0), 1e-12);
  DS_CHECK_CLOSE (pca.mean[0], 3.0, 1e-12);
  /* variance of 5·t for t = (−1.5, −.5, .5, 1.5)/... : sum sq of centred rows / (n − 1) */
  DS_CHECK_CLOSE (pca.variance[0], (9 + 1 + 1 + 9 + (2.25 + .25 + .25 + 2.25)) / 3.0, 1e-12);
  ds_pca_free (&pca);

  /* Tie of magnitudes: loading ±(1, −1)/√2; the first channel decides, so
   * (+, −). (Were the last to decide, it would be (−, +).) */
  const float tie[] = { 0, 1, 2, 0, -1, -2 };
  xp = tie;
  int64_t n3 = 3;
  DS_CHECK_OK (ds_pca_fit (&xp, &n3, 1, 2, DS_PCA_SOLVER_GRAM, &pca, &err), &err);
  DS_CHECK (fabs (pca.components[0]) == fabs (pca.components[1]), "tie is exact: %.17g %.17g",
            pca.components[0], pca.components[1]);
  DS_CHECK (pca.components[0] > 0 && pca.components[1] < 0, "tie: loadings %g %g",
            pca.components[0], pca.components[1]);
  ds_pca_free (&pca);

  /* A constant map: no component, everything 0.5. */
  float flat[4 * 12];
  for (int i = 0; i < 48; i++)
    flat[i] = 0.25f * (float) (i / 12);
  DS_CHECK_OK (ds_pca_rgb (flat, 4, 12, rgb, ratio, &err), &err);
  DS_CHECK (all_equal (rgb, 36, 0.5f), "constant map is 0.5 everywhere");
  DS_CHECK (ratio[0] == 0 && ratio[1] == 0 && ratio[2] == 0, "constant map: ratios 0");

  /* Joint: image 1 constant in a fitted direction still gets its own min–max
   * (0.5 where its scores do not vary). */
  const float ja[] = { 0, 1, 2, 3 }, jb[] = { 5, 5 };
  const float *jx[] = { ja, jb };
  const int64_t jn[] = { 4, 2 };
  float rgb_a[12], rgb_b[6];
  float *jrgb[] = { rgb_a, rgb_b };
  DS_CHECK_OK (ds_pca_rgb_joint (jx, jn, 2, 1, jrgb, NULL, &err), &err);
  DS_CHECK (rgb_a[0] == 0 && rgb_a[9] == 1, "joint image 0 spans [0, 1]");
  DS_CHECK (all_equal (rgb_b, 6, 0.5f), "joint image 1 is constant: 0.5");

  /* Failures. */
  DsStatus st = ds_pca_rgb_joint (jx, jn, 0, 1, jrgb, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "no maps");
  st = ds_pca_rgb (one, 0, 3, rgb, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "0 channels");
  const int64_t jn0[] = { 4, 0 };
  st = ds_pca_rgb_joint (jx, jn0, 2, 1, jrgb, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "map 1 has no positions");
  float bad[] = { 1, 2, NAN, 4 };
  st = ds_pca_rgb (bad, 2, 2, rgb, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "non-finite value at channel 1, position 0");
}

/* ------------------------------------------------------------------ */
/* CKA                                                                 */

static void
check_cka (const char *label, const char *xname, const char *yname, double want, double tol)
{
  DsTensor x, y;
  if (!load (xname, &x))
    return;
  if (!load (yname, &y))
    {
      ds_tensor_free (&x);
      return;
    }
  DsError err = { 0 };
  double got = -1, back = -1;
  DS_CHECK_OK (ds_cka_linear (f32 (&x), f32 (&y), x.shape[0], x.shape[1], y.shape[1], &got,
                              &err), &err);
  DS_CHECK (fabs (got - want) <= tol, "CKA %s = %.15g, expected %.15g", label, got, want);
  DS_CHECK_OK (ds_cka_linear (f32 (&y), f32 (&x), x.shape[0], y.shape[1], x.shape[1], &back,
                              &err), &err);
  DS_CHECK (fabs (back - got) <= 1e-12, "CKA %s not symmetric: %.15g vs %.15g", label, got,
            back);
  ds_tensor_free (&x), ds_tensor_free (&y);
}

static void
test_cka (void)
{
  /* n = 30 < p + q = 65: Gram form; n = 200 > 13: feature form. */
  check_cka ("pair (Gram form)", "cka.pair_gram.x", "cka.pair_gram.y",
             json_number_value (jpath ("cka", "pair_gram")), 1e-10);
  check_cka ("pair (feature form)", "cka.pair_feat.x", "cka.pair_feat.y",
             json_number_value (jpath ("cka", "pair_feat")), 1e-10);
  /* Invariances: an orthogonal transform and a signed permutation give 1. */
  check_cka ("X vs XQ", "cka.orth.x", "cka.orth.y", 1.0, 1e-10);
  check_cka ("X vs signed permutation", "cka.orth.x", "cka.perm.y", 1.0, 1e-12);

  DsTensor x;
  DsError err = { 0 };
  double v = -1;
  if (load ("cka.orth.x", &x))
    {
      int64_t n = x.shape[0], p = x.shape[1];
      float *x3 = malloc ((size_t) (n * p) * sizeof *x3);
      for (int64_t i = 0; i < n * p; i++)
        x3[i] = 3.0f * f32 (&x)[i];
      DS_CHECK_OK (ds_cka_linear (f32 (&x), x3, n, p, p, &v, &err), &err);
      DS_CHECK (fabs (v - 1) < 1e-10, "CKA(X, 3X) = %.15g", v);
      /* Only the first 3 rows: n = 3 < 32, Gram form, still 1. */
      DS_CHECK_OK (ds_cka_linear (f32 (&x), x3, 3, p, p, &v, &err), &err);
      DS_CHECK (fabs (v - 1) < 1e-10, "CKA(X, 3X) on 3 rows = %.15g", v);
      /* Shifting columns changes nothing: the columns are centred. */
      for (int64_t i = 0; i < n * p; i++)
        x3[i] = f32 (&x)[i] + (float) (i % p);
      DS_CHECK_OK (ds_cka_linear (f32 (&x), x3, n, p, p, &v, &err), &err);
      DS_CHECK (fabs (v - 1) < 1e-10, "CKA(X, X + offsets) = %.15g", v);

      /* Failures. */
      DsStatus st = ds_cka_linear (f32 (&x), x3, 1, p, p, &v, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "at least 2 examples, got 1");
      for (int64_t i = 0; i < n * p; i++)
        x3[i] = (float) (i % p); /* every column constant */
      st = ds_cka_linear (f32 (&x), x3, n, p, p, &v, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "Y has zero variance");
      st = ds_cka_linear (x3, f32 (&x), n, p, p, &v, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "X has zero variance");
      memcpy (x3, f32 (&x), (size_t) (n * p) * sizeof *x3);
      x3[2 * p + 5] = INFINITY;
      st = ds_cka_linear (f32 (&x), x3, n, p, p, &v, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "Y has a non-finite value at example 2, feature 5");
      free (x3);
      ds_tensor_free (&x);
    }

  /* Two maps of one image, positions as examples. */
  static const char *const map_cases[] = { "maps", "maps_gram" };
  for (int i = 0; i < 2; i++)
    {
      DsTensor a, b;
      char ka[40], kb[40];
      snprintf (ka, sizeof ka, "cka.%s.a", map_cases[i]);
      snprintf (kb, sizeof kb, "cka.%s.b", map_cases[i]);
      if (!load (ka, &a) || !load (kb, &b))
        continue;
      DsFeatureMap ma = { f32 (&a), a.shape[0], a.shape[1], a.shape[2] };
      DsFeatureMap mb = { f32 (&b), b.shape[0], b.shape[1], b.shape[2] };
      double want = json_number_value (jpath ("cka", map_cases[i]));
      DS_CHECK_OK (ds_cka_maps (ma, mb, &v, &err), &err);
      DS_CHECK (fabs (v - want) < 1e-10, "CKA %s = %.15g, expected %.15g", map_cases[i], v,
                want);
      if (i == 0)
        {
          /* Different spatial sizes are refused, naming both shapes. */
          DsFeatureMap small = { f32 (&b), b.shape[0], 2, 10 };
          DsStatus st = ds_cka_maps (ma, small, &v, &err);
          DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
          DS_CHECK_CONTAINS (err.message, "[6, 4, 5] and [9, 2, 10]");
          DS_CHECK_CONTAINS (err.message, "ds_map_resize_bilinear");
        }
      ds_tensor_free (&a), ds_tensor_free (&b);
    }

  /* CKA(X_s, X_u) across s. */
  json_t *sv = jpath ("cka", "sweep_s");
  int ns = (int) json_array_size (sv);
  float s[16];
  double got[16];
  for (int i = 0; i < ns; i++)
    s[i] = (float) jnum_at (sv, (size_t) i);
  static const char *const sweeps[] = { "sweep", "sweep_gram" };
  for (int k = 0; k < 2; k++)
    {
      DsTensor xu, xc;
      char ku[40], kc[40];
      snprintf (ku, sizeof ku, "cka.%s.xu", sweeps[k]);
      snprintf (kc, sizeof kc, "cka.%s.xc", sweeps[k]);
      if (!load (ku, &xu) || !load (kc, &xc))
        continue;
      int64_t c = xu.shape[0], n = xu.shape[1];
      json_t *want = jpath ("cka", sweeps[k]);
      DS_CHECK_OK (ds_cka_guidance_sweep (f32 (&xu), f32 (&xc), c, n, s, ns, got, &err), &err);
      for (int i = 0; i < ns; i++)
        DS_CHECK (fabs (got[i] - jnum_at (want, (size_t) i)) < 1e-10,
                  "%s at s = %g: %.15g, expected %.15g", sweeps[k], (double) s[i], got[i],
                  jnum_at (want, (size_t) i));
      DS_CHECK (fabs (got[0] - 1) < 1e-12, "s = 0 gives X_u itself: %.15g", got[0]);
      if (k == 0)
        {
          DsStatus st = ds_cka_guidance_sweep (f32 (&xu), f32 (&xc), c, 1, s, ns, got, &err);
          DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
          DS_CHECK_CONTAINS (err.message, "at least 2 examples");
          float *flat = calloc ((size_t) (c * n), sizeof *flat);
          st = ds_cka_guidance_sweep (flat, f32 (&xc), c, n, s, ns, got, &err);
          DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
          DS_CHECK_CONTAINS (err.message, "unconditional map has zero variance");
          /* xc = xu: X_s = X_u for every s, fine; xc constant: X_1 is constant. */
          st = ds_cka_guidance_sweep (f32 (&xu), flat, c, n, s, ns, got, &err);
          DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
          DS_CHECK_CONTAINS (err.message, "map at s = 1 has zero variance");
          free (flat);
        }
      ds_tensor_free (&xu), ds_tensor_free (&xc);
    }
}

/* ------------------------------------------------------------------ */
/* cosine                                                              */

static void
test_cosine (void)
{
  DsTensor a, b;
  if (!load ("cos.a", &a) || !load ("cos.b", &b))
    return;
  DsFeatureMap ma = { f32 (&a), a.shape[0], a.shape[1], a.shape[2] };
  DsFeatureMap mb = { f32 (&b), b.shape[0], b.shape[1], b.shape[2] };
  DsCosine cs;
  DsError err = { 0 };
  DS_CHECK_OK (ds_cosine_maps (ma, mb, &cs, &err), &err);
  DS_CHECK_CLOSE (cs.mean_position, json_number_value (jpath ("cosine", "mean_position")), 1e-12);
  DS_CHECK_CLOSE (cs.flat, json_number_value (jpath ("cosine", "flat")), 1e-12);

  /* A map with itself: 1 at every non-zero position (position 1 of a is zero). */
  DS_CHECK_OK (ds_cosine_maps (ma, ma, &cs, &err), &err);
  DS_CHECK_CLOSE (cs.mean_position, 11.0 / 12.0, 1e-12);
  DS_CHECK_CLOSE (cs.flat, 1.0, 1e-12);
  int64_t n = ds_tensor_numel (&b);
  float *neg = malloc ((size_t) n * sizeof *neg);
  for (int64_t i = 0; i < n; i++)
    neg[i] = -2.0f * f32 (&b)[i];
  DsFeatureMap mn = mb;
  mn.data = neg;
  DS_CHECK_OK (ds_cosine_maps (mb, mn, &cs, &err), &err);
  DS_CHECK_CLOSE (cs.mean_position, -1.0, 1e-12);
  DS_CHECK_CLOSE (cs.flat, -1.0, 1e-12);

  DsFeatureMap other = { f32 (&b), 7, 4, 3 };
  DsStatus st = ds_cosine_maps (ma, other, &cs, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "[7, 3, 4] and [7, 4, 3] differ in shape");
  memset (neg, 0, (size_t) n * sizeof *neg);
  st = ds_cosine_maps (mb, mn, &cs, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "map b is all zeros");
  free (neg);
  ds_tensor_free (&a), ds_tensor_free (&b);
}

/* ------------------------------------------------------------------ */
/* resize                                                              */

static void
test_resize (void)
{
  json_t *cases = jpath ("resize", NULL);
  const char *name;
  json_t *cs;
  int n_cases = 0;
  json_object_foreach (cases, name, cs)
    {
      DsTensor x, y;
      char kx[48], ky[48];
      snprintf (kx, sizeof kx, "rs.%s.x", name);
      snprintf (ky, sizeof ky, "rs.%s.y", name);
      if (!load (kx, &x) || !load (ky, &y))
        continue;
      bool cubic = strcmp (json_string_value (json_object_get (cs, "mode")), "bicubic") == 0;
      int64_t c = x.shape[0], h = x.shape[1], w = x.shape[2], h2 = y.shape[1], w2 = y.shape[2];
      float *out = malloc ((size_t) (c * h2 * w2) * sizeof *out);
      DsError err = { 0 };
      DsStatus st = cubic ? ds_map_resize_bicubic (f32 (&x), c, h, w, out, h2, w2, &err)
                          : ds_map_resize_bilinear (f32 (&x), c, h, w, out, h2, w2, &err);
      DS_CHECK_OK (st, &err);
      char label[80];
      snprintf (label, sizeof label, "resize %s vs torch", name);
      max_abs_diff (label, out, f32 (&y), c * h2 * w2, 2e-6);
      free (out);
      ds_tensor_free (&x), ds_tensor_free (&y);
      n_cases++;
    }
  DS_CHECK (n_cases == 10, "%d resize cases, expected 10", n_cases);

  /* By hand: [0, 1] -> 4 wide: sources −.25 (clamped to 0), .25, .75, 1.25. */
  const float two[] = { 0, 1 };
  float four[4];
  DsError err = { 0 };
  DS_CHECK_OK (ds_map_resize_bilinear (two, 1, 1, 2, four, 1, 4, &err), &err);
  DS_CHECK (four[0] == 0 && four[1] == 0.25f && four[2] == 0.75f && four[3] == 1,
            "bilinear [0,1] -> %g %g %g %g", four[0], four[1], four[2], four[3]);
  /* Same size is the identity in both modes. */
  float x[12], o[12];
  for (int i = 0; i < 12; i++)
    x[i] = (float) (i * i % 7) - 2.5f;
  DS_CHECK_OK (ds_map_resize_bicubic (x, 1, 3, 4, o, 3, 4, &err), &err);
  DS_CHECK (memcmp (x, o, sizeof x) == 0, "bicubic identity");
  DS_CHECK_OK (ds_map_resize_bilinear (x, 1, 3, 4, o, 3, 4, &err), &err);
  DS_CHECK (memcmp (x, o, sizeof x) == 0, "bilinear identity");
}

/* ------------------------------------------------------------------ */
/* heat maps                                                           */


static void
test_heatmap_layers (void)
{
  DsUnetConfig cfg = ds_test_sd21_unet_config ();
  DsProbeList list;
  DsError err = { 0 };
  if (ds_probe_list_build (&cfg, 64, 64, 77, &list, &err) != DS_OK)
    {
      DS_CHECK (0, "probe list: %s", err.message);
      return;
    }
  int idx[32];
  int n = ds_heatmap_cross_layers (&list, 256, idx, 32);
  static const char *const want[] = { "D-L2-R0-B0-Cross-Map", "D-L2-R1-B0-Cross-Map",
                                      "U-L1-R0-B0-Cross-Map", "U-L1-R1-B0-Cross-Map",
                                      "U-L1-R2-B0-Cross-Map" };
  DS_CHECK (n == 5, "%d 16x16 cross-attention layers, expected 5", n);
  for (int i = 0; i < n && i < 5; i++)
    DS_CHECK (strcasecmp (list.probes[idx[i]].name, want[i]) == 0, "layer %d is %s, expected %s",
              i, list.probes[idx[i]].name, want[i]);
  n = ds_heatmap_cross_layers (&list, 0, idx, 32);
  DS_CHECK (n == 15, "%d down/up cross-attention layers, expected 15 (DAAM's set)", n);
  DS_CHECK (ds_heatmap_cross_layers (&list, 64, idx, 32) == 0, "the mid block is left out");
  DS_CHECK (ds_heatmap_cross_layers (&list, 4096, idx, 2) == 5, "count beyond max");
  /* Discffusion's six, as positions among all 16 cross-attention layers. */
  n = ds_discffusion_layers (&list, idx, 32);
  const int dsd[] = { 4, 5, 6, 13, 14, 15 };
  DS_CHECK (n == 6, "%d Discffusion layers, expected 6", n);
  for (int i = 0; i < n && i < 6; i++)
    DS_CHECK (idx[i] == dsd[i], "Discffusion layer %d is %d, expected %d", i, idx[i], dsd[i]);
  ds_probe_list_free (&list);
}

static void
test_heatmap (void)
{
  json_t *hm = jpath ("heatmap", NULL);
  int64_t k = json_integer_value (json_object_get (hm, "k"));
  int64_t h = json_integer_value (json_object_get (hm, "h"));
  int64_t w = json_integer_value (json_object_get (hm, "w"));
  int64_t hw = h * w;
  DsTensor l[3], want;
  DsAttnMaps layers[3];
  for (int i = 0; i < 3; i++)
    {
      char key[16];
      snprintf (key, sizeof key, "hm.l%d", i);
      if (!load (key, &l[i]))
        return;
      layers[i] = (DsAttnMaps){ f32 (&l[i]), l[i].shape[0], h, w, k };
    }
  float *m = malloc ((size_t) (hw * k) * sizeof *m);
  float *col = malloc ((size_t) hw * sizeof *col);
  DsError err = { 0 };
  DS_CHECK_OK (ds_heatmap_mean (layers, 3, m, &err), &err);
  if (load ("hm.mean", &want))
    {
      /* Layer 2 has 2 heads, the others 4: a mean of layer means would differ. */
      max_abs_diff ("mean over (layer, head) maps", m, f32 (&want), hw * k, 1e-7);
      ds_tensor_free (&want);
    }
  int token = (int) json_integer_value (json_object_get (hm, "token"));
  DS_CHECK_OK (ds_heatmap_token (m, hw, k, token, col, &err), &err);
  bool same = true;
  for (int64_t p = 0; p < hw; p++)
    same = same && col[p] == m[p * k + token];
  DS_CHECK (same, "token map is column %d", token);
  DsTokenWord word = { .text = "photograph",
                       .first = (int) json_integer_value (json_object_get (hm, "word_first")),
                       .count = (int) json_integer_value (json_object_get (hm, "word_count")) };
  DS_CHECK_OK (ds_heatmap_word (m, hw, k, &word, col, &err), &err);
  if (load ("hm.word", &want))
    {
      max_abs_diff ("word map", col, f32 (&want), hw, 1e-7);
      ds_tensor_free (&want);
    }

  /* Ensemble over (t, trial). */
  DsHeatmapAccum acc;
  DS_CHECK_OK (ds_heatmap_accum_init (&acc, hw, k, &err), &err);
  DsStatus st = ds_heatmap_accum_finish (&acc, m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "no maps were added");
  for (int i = 0; i < 3; i++)
    {
      DsTensor e;
      char key[16];
      snprintf (key, sizeof key, "hm.e%d", i);
      if (!load (key, &e))
        continue;
      DS_CHECK_OK (ds_heatmap_accum_add (&acc, f32 (&e), hw, k, &err), &err);
      ds_tensor_free (&e);
    }
  DS_CHECK_OK (ds_heatmap_accum_finish (&acc, m, &err), &err);
  if (load ("hm.emean", &want))
    {
      max_abs_diff ("ensemble mean", m, f32 (&want), hw * k, 1e-7);
      ds_tensor_free (&want);
    }
  st = ds_heatmap_accum_add (&acc, m, hw, k - 1, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "adding a [16, 6] map to an average of [16, 7] maps");
  ds_heatmap_accum_free (&acc);

  /* Failures. */
  st = ds_heatmap_mean (layers, 0, m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "no layers");
  DsAttnMaps bad[2] = { layers[0], layers[1] };
  bad[1].h = 2, bad[1].w = 8;
  st = ds_heatmap_mean (bad, 2, m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "layer 1 is 2x8 but layer 0 is 4x4");
  DS_CHECK_CONTAINS (err.message, "one resolution");
  bad[1] = layers[1], bad[1].k = k - 1;
  st = ds_heatmap_mean (bad, 2, m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "layer 1 has 6 text keys but layer 0 has 7");
  bad[1] = layers[1], bad[1].heads = 0;
  st = ds_heatmap_mean (bad, 2, m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "layer 1 has no heads");
  st = ds_heatmap_token (m, hw, k, (int) k, col, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "token 7 is outside 0..6");
  word.first = 5, word.count = 3;
  st = ds_heatmap_word (m, hw, k, &word, col, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "word \"photograph\" spans tokens 5..7, outside 0..6");
  word.first = 1, word.count = 0;
  st = ds_heatmap_word (m, hw, k, &word, col, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);

  /* Normalisation by hand. */
  float v[] = { 1, 3, 2, 0 };
  ds_heatmap_normalize (v, 4, DS_HEATMAP_NORM_MAX);
  DS_CHECK (v[0] == 1.0f / 3 && v[1] == 1 && v[2] == 2.0f / 3 && v[3] == 0, "max norm");
  float u[] = { -1, 3, 1 };
  ds_heatmap_normalize (u, 3, DS_HEATMAP_NORM_MINMAX);
  DS_CHECK (u[0] == 0 && u[1] == 1 && u[2] == 0.5f, "minmax norm %g %g %g", u[0], u[1], u[2]);
  float z[] = { 0, 0 }, cst[] = { 2, 2 };
  ds_heatmap_normalize (z, 2, DS_HEATMAP_NORM_MAX);
  ds_heatmap_normalize (cst, 2, DS_HEATMAP_NORM_MINMAX);
  DS_CHECK (z[0] == 0 && z[1] == 0 && cst[0] == 0 && cst[1] == 0, "degenerate norms give 0");

  free (m), free (col);
  for (int i = 0; i < 3; i++)
    ds_tensor_free (&l[i]);
}

static void
test_daam (void)
{
  json_t *dm = jpath ("daam", NULL);
  int64_t k = json_integer_value (json_object_get (dm, "k"));
  int64_t size = json_integer_value (json_object_get (dm, "size"));
  int n_tokens = (int) json_integer_value (json_object_get (dm, "n_tokens"));
  int steps = (int) json_integer_value (json_object_get (dm, "steps"));
  json_t *lay = json_object_get (dm, "layers");
  DsDaam *daam = NULL;
  DsError err = { 0 };
  if (ds_daam_new (size, &daam, &err) != DS_OK)
    {
      DS_CHECK (0, "ds_daam_new: %s", err.message);
      return;
    }
  float *out = malloc ((size_t) (size * size * k) * sizeof *out);
  DsStatus st = ds_daam_finish (daam, n_tokens, false, out, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "no attention maps");
  DS_CHECK (ds_daam_k (daam) == 0, "k before any add");
  for (int t = 0; t < steps; t++)
    for (size_t li = 0; li < json_array_size (lay); li++)
      {
        json_t *l = json_array_get (lay, li);
        DsTensor a;
        char key[64];
        snprintf (key, sizeof key, "daam.t%d.l%zu", t, li);
        if (!load (key, &a))
          continue;
        DsAttnMaps maps = { f32 (&a), (int64_t) jnum_at (l, 0), (int64_t) jnum_at (l, 1),
                            (int64_t) jnum_at (l, 2), k };
        /* Layer ids need not be small or dense. */
        DS_CHECK_OK (ds_daam_add (daam, 100 + 7 * (int) li, &maps, &err), &err);
        ds_tensor_free (&a);
      }
  DS_CHECK (ds_daam_k (daam) == k, "k after adds");
  DsTensor want;
  DS_CHECK_OK (ds_daam_finish (daam, n_tokens, false, out, &err), &err);
  if (load ("daam.out", &want))
    {
      max_abs_diff ("DAAM global map vs torch", out, f32 (&want), size * size * k, 2e-6);
      ds_tensor_free (&want);
    }
  DS_CHECK_OK (ds_daam_finish (daam, n_tokens, true, out, &err), &err);
  if (load ("daam.norm", &want))
    {
      double nmse = ds_test_nmse (out, f32 (&want), size * size * k);
      DS_CHECK (nmse < 1e-10, "DAAM normalised map vs torch: nmse %.3g", nmse);
      ds_tensor_free (&want);
    }

  /* Failures. */
  st = ds_daam_finish (daam, 1, true, out, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "n_tokens 1 is outside 2..6");
  st = ds_daam_finish (daam, (int) k + 1, false, out, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  float dummy[2 * 64 * 6] = { 0 };
  DsAttnMaps changed = { dummy, 2, 8, 8, k };
  st = ds_daam_add (daam, 107, &changed, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "layer 107 was [1 heads, 8x8] and is now [2 heads, 8x8]");
  DsAttnMaps other_k = { dummy, 1, 4, 4, k - 1 };
  st = ds_daam_add (daam, 5, &other_k, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "layer 5 has 5 text keys, earlier layers 6");
  DsAttnMaps empty = { dummy, 0, 4, 4, k };
  st = ds_daam_add (daam, 5, &empty, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "empty shape");
  ds_daam_free (daam);
  DsDaam *none = NULL;
  st = ds_daam_new (0, &none, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK (none == NULL, "no DAAM object on failure");
  free (out);
}

/* ------------------------------------------------------------------ */
/* image–text scores                                                   */

static void
test_scores (void)
{
  static const char *const cases[] = { "s", "big" };
  for (int i = 0; i < 2; i++)
    {
      DsTensor s;
      char key[16];
      snprintf (key, sizeof key, "lse.%s", cases[i]);
      if (!load (key, &s))
        continue;
      double got = ds_lse_score (f32 (&s), s.shape[0], s.shape[1], s.shape[2]);
      double want = json_number_value (jpath ("lse", cases[i]));
      DS_CHECK (isfinite (got) && fabs (got - want) <= 1e-12 * fabs (want),
                "LSE score %s = %.15g, torch %.15g", cases[i], got, want);
      ds_tensor_free (&s);
    }
  float zeros[2 * 3 * 77] = { 0 };
  DS_CHECK_CLOSE (ds_lse_score (zeros, 2, 3, 77), log (77.0), 1e-14);
  float inf_row[] = { -INFINITY, -INFINITY, 0, 1 };
  DS_CHECK (ds_lse_score (inf_row, 1, 1, 2) == -INFINITY, "all −inf row gives −inf");
  DS_CHECK_CLOSE (ds_lse_score (inf_row + 2, 1, 1, 2), log (1 + exp (1.0)), 1e-14);

  /* Per-layer values from the UNet's cross_lse [layers, batch]: the batch mean,
   * which equals the LSE score of the layer's whole logits tensor. */
  DsTensor s2;
  if (load ("lse.s", &s2))
    {
      /* lse.s read as 2 batch items × 3 heads of one layer, stored as layer 1
       * of three; the other layers hold decoys. */
      double cl[3 * 2] = { 100, 100, 0, 0, -100, -100 };
      int64_t per_item = 3 * s2.shape[1] * s2.shape[2];
      for (int b = 0; b < 2; b++)
        cl[1 * 2 + b] = ds_lse_score (f32 (&s2) + b * per_item, 3, s2.shape[1], s2.shape[2]);
      const int which[] = { 1 };
      double lay = 0;
      ds_discffusion_step_lse (cl, 2, which, 1, &lay);
      DS_CHECK_CLOSE (lay, json_number_value (jpath ("lse", "s")), 1e-12);
      ds_tensor_free (&s2);
    }

  /* Bias by hand: ‖(3,0)−(0,4)‖ = 5, ‖(3,0)−(3,1)‖ = 1. */
  const float eps[] = { 3, 0 }, eu[] = { 0, 4 }, ec[] = { 3, 1 };
  DS_CHECK_CLOSE (ds_discffusion_bias (eps, eu, ec, 2), 4.0, 1e-15);
  const double lse[2 * 6] = { 1, 2, 3, 4, 5, 6, 2, 2, 2, 2, 2, 2 };
  const double bias[2] = { 0.5, -1.0 };
  double score = 0;
  DsError err = { 0 };
  DS_CHECK_OK (ds_discffusion_score (lse, 2, 6, bias, &score, &err), &err);
  DS_CHECK_CLOSE (score, ((3.5 + 0.5) + (2 - 1.0)) / 2, 1e-15);
  DsStatus st = ds_discffusion_score (lse, 0, 6, bias, &score, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "0 timesteps");

  /* Winoground: s[2c + i] = score(caption c, image i). */
  const double items[4][4] = {
    { 0.9, 0.1, 0.2, 0.8 },  /* both right: text, image, group */
    { 0.5, 0.6, 0.4, 0.9 },  /* captions right per image; c0 prefers i1: text only */
    { 0.5, 0.4, 0.55, 0.6 }, /* images right per caption; i0 prefers c1: image only */
    { 0.3, 0.3, 0.3, 0.3 },  /* ties fail */
  };
  const bool want[4][3] = { { 1, 1, 1 }, { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 0 } };
  for (int i = 0; i < 4; i++)
    {
      DsWinoground r = ds_winoground_item (items[i]);
      DS_CHECK (r.text == want[i][0] && r.image == want[i][1] && r.group == want[i][2],
                "item %d: text %d image %d group %d", i, r.text, r.image, r.group);
    }
  /* Swapping the captions of a fully right item makes it fully wrong. */
  const double swapped[4] = { 0.2, 0.8, 0.9, 0.1 };
  DsWinoground r = ds_winoground_item (swapped);
  DS_CHECK (!r.text && !r.image && !r.group, "swapped captions");
  DsWinogroundTotals tot;
  DS_CHECK_OK (ds_winoground_aggregate (&items[0][0], 4, &tot, &err), &err);
  DS_CHECK (tot.n == 4 && tot.text == 2 && tot.image == 2 && tot.group == 1,
            "totals %d %d %d of %d", tot.text, tot.image, tot.group, tot.n);
  DS_CHECK (tot.text_score == 0.5 && tot.image_score == 0.5 && tot.group_score == 0.25,
            "fractions %g %g %g", tot.text_score, tot.image_score, tot.group_score);
  st = ds_winoground_aggregate (&items[0][0], 0, &tot, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "no items");
}

int
main (void)
{
  DsError err = { 0 };
  DsStatus st = ds_safetensors_open (DS_TEST_DATA_DIR "/analysis/analysis.safetensors", &fx, &err);
  DS_CHECK_OK (st, &err);
  json_error_t jerr;
  meta = json_load_file (DS_TEST_DATA_DIR "/analysis/analysis.json", 0, &jerr);
  DS_CHECK (meta != NULL, "analysis.json: %s (line %d)", jerr.text, jerr.line);
  if (st != DS_OK || !meta)
    return ds_test_finish ();

  test_guidance ();
  test_pca_fixtures ();
  test_pca_by_hand ();
  test_cka ();
  test_cosine ();
  test_resize ();
  test_heatmap_layers ();
  test_heatmap ();
  test_daam ();
  test_scores ();

  json_decref (meta);
  ds_safetensors_close (fx);
  return ds_test_finish ();
}
