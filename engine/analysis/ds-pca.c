/* ds-pca.c: see ds-pca.h. */
#include "ds-pca.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK's dsyevr, Fortran interface with 32-bit integers as Debian's OpenBLAS
 * ships it (no lapacke.h is installed). The three trailing arguments are the
 * hidden lengths of the character arguments that gfortran-built LAPACK expects. */
extern void dsyevr_ (const char *jobz, const char *range, const char *uplo, const int *n,
                     double *a, const int *lda, const double *vl, const double *vu,
                     const int *il, const int *iu, const double *abstol, int *m, double *w,
                     double *z, const int *ldz, int *isuppz, double *work, const int *lwork,
                     int *iwork, const int *liwork, int *info, size_t jobz_len,
                     size_t range_len, size_t uplo_len);

/* An eigenvalue at most this fraction of the largest counts as zero: far above
 * f64 rounding of a matrix built from f32 data, far below any visible share. */
#define PCA_REL_TOL 1e-10

void
ds_pca_free (DsPca *pca)
{
  free (pca->mean);
  free (pca->components);
  memset (pca, 0, sizeof *pca);
}

/* The top m (<= 3) eigenpairs of the symmetric d×d matrix a (destroyed), the
 * largest first: w[r], z[r·d ...]. */
static DsStatus
top_eigenpairs (double *a, int d, int m, double *w, double *z, DsError *err)
{
  int il = d - m + 1, iu = d, found = 0, info = 0, lwork = -1, liwork = -1, iwq = 0;
  double vl = 0, vu = 0, abstol = 0, wq = 0;
  int isuppz[2 * DS_PCA_COMPONENTS];
  /* dsyevr uses all d entries of W as workspace, not just the m it returns. */
  double *wa = malloc ((size_t) d * sizeof *wa);
  if (!wa)
    return ds_error_set (err, DS_ERR_NOMEM, "PCA: out of memory for the eigensolver");
  dsyevr_ ("V", "I", "L", &d, a, &d, &vl, &vu, &il, &iu, &abstol, &found, wa, z, &d, isuppz,
           &wq, &lwork, &iwq, &liwork, &info, 1, 1, 1);
  if (info != 0)
    {
      free (wa);
      return ds_error_set (err, DS_ERR_INVALID, "PCA: LAPACK dsyevr workspace query failed "
                           "(info %d)", info);
    }
  lwork = (int) wq;
  liwork = iwq;
  double *work = malloc ((size_t) lwork * sizeof *work);
  int *iwork = malloc ((size_t) liwork * sizeof *iwork);
  if (!work || !iwork)
    {
      free (wa), free (work), free (iwork);
      return ds_error_set (err, DS_ERR_NOMEM, "PCA: out of memory for the eigensolver");
    }
  dsyevr_ ("V", "I", "L", &d, a, &d, &vl, &vu, &il, &iu, &abstol, &found, wa, z, &d, isuppz,
           work, &lwork, iwork, &liwork, &info, 1, 1, 1);
  free (work), free (iwork);
  if (info != 0 || found != m)
    {
      free (wa);
      return ds_error_set (err, DS_ERR_INVALID, "PCA: LAPACK dsyevr failed on a %d×%d matrix "
                           "(info %d, %d of %d eigenpairs)", d, d, info, found, m);
    }
  /* dsyevr returns them ascending: largest first instead. */
  for (int r = 0; r < m; r++)
    w[r] = wa[m - 1 - r];
  free (wa);
  for (int r = 0; r < m / 2; r++)
    {
      int o = m - 1 - r;
      for (int i = 0; i < d; i++)
        {
          double u = z[(size_t) r * d + i];
          z[(size_t) r * d + i] = z[(size_t) o * d + i];
          z[(size_t) o * d + i] = u;
        }
    }
  return DS_OK;
}

/* Unit length, then the sign rule of ds-pca.h. */
static void
normalize_and_orient (double *v, int64_t c)
{
  double ss = 0;
  for (int64_t i = 0; i < c; i++)
    ss += v[i] * v[i];
  double inv = ss > 0 ? 1.0 / sqrt (ss) : 0;
  int64_t best = 0;
  for (int64_t i = 0; i < c; i++)
    {
      v[i] *= inv;
      if (fabs (v[i]) > fabs (v[best]))
        best = i;
    }
  if (v[best] < 0)
    for (int64_t i = 0; i < c; i++)
      v[i] = -v[i];
}

/* Mean of each channel over all images' positions; checks the values. */
static DsStatus
channel_means (const float *const *x, const int64_t *n, int k, int64_t c, int64_t total,
               double *mean, DsError *err)
{
  for (int64_t ch = 0; ch < c; ch++)
    {
      double s = 0;
      for (int i = 0; i < k; i++)
        {
          const float *row = x[i] + ch * n[i];
          for (int64_t j = 0; j < n[i]; j++)
            {
              if (!isfinite (row[j]))
                return ds_error_set (err, DS_ERR_INVALID,
                                     "PCA: map %d has a non-finite value at channel %lld, "
                                     "position %lld", i, (long long) ch, (long long) j);
              s += row[j];
            }
        }
      mean[ch] = s / (double) total;
    }
  return DS_OK;
}

static DsStatus
check_inputs (const int64_t *n, int k, int64_t c, int64_t *total, DsError *err)
{
  if (k < 1)
    return ds_error_set (err, DS_ERR_INVALID, "PCA: no maps given");
  if (c < 1)
    return ds_error_set (err, DS_ERR_INVALID, "PCA: maps have %lld channels", (long long) c);
  *total = 0;
  for (int i = 0; i < k; i++)
    {
      if (n[i] < 1)
        return ds_error_set (err, DS_ERR_INVALID, "PCA: map %d has no positions (N = %lld)", i,
                             (long long) n[i]);
      *total += n[i];
    }
  if (*total > INT_MAX || c > INT_MAX || c * *total > (int64_t) (SIZE_MAX / sizeof (double)))
    return ds_error_set (err, DS_ERR_INVALID, "PCA: %lld channels × %lld positions is too large",
                         (long long) c, (long long) *total);
  return DS_OK;
}

/* Fills the components and variances from the centred data xc [c, total]. */
static DsStatus
fit_centred (const double *xc, int64_t c, int64_t total, double trace, DsPcaSolver solver,
             DsPca *out, DsError *err)
{
  bool cov = solver == DS_PCA_SOLVER_COVARIANCE || (solver == DS_PCA_SOLVER_AUTO && c <= total);
  int d = (int) (cov ? c : total);
  int m = d < DS_PCA_COMPONENTS ? d : DS_PCA_COMPONENTS;
  double *a = malloc ((size_t) d * d * sizeof *a);
  double *z = malloc ((size_t) d * m * sizeof *z);
  if (!a || !z)
    {
      free (a), free (z);
      return ds_error_set (err, DS_ERR_NOMEM, "PCA: out of memory for a %d×%d matrix", d, d);
    }
  /* Row-major upper triangle, mirrored: LAPACK reads the same symmetric matrix. */
  cblas_dsyrk (CblasRowMajor, CblasUpper, cov ? CblasNoTrans : CblasTrans, d,
               (int) (cov ? total : c), 1.0, xc, (int) total, 0.0, a, d);
  for (int i = 0; i < d; i++)
    for (int j = 0; j < i; j++)
      a[(size_t) i * d + j] = a[(size_t) j * d + i];
  double w[DS_PCA_COMPONENTS];
  DsStatus st = top_eigenpairs (a, d, m, w, z, err);
  free (a);
  if (st != DS_OK)
    {
      free (z);
      return st;
    }
  int kept = 0;
  while (kept < m && w[kept] > 0 && w[kept] > PCA_REL_TOL * w[0])
    kept++;
  for (int r = 0; r < kept; r++)
    {
      double *v = out->components + r * c;
      if (cov)
        memcpy (v, z + (size_t) r * d, (size_t) c * sizeof *v);
      else /* v = X̃u / √λ; normalize_and_orient absorbs the 1/√λ */
        cblas_dgemv (CblasRowMajor, CblasNoTrans, (int) c, (int) total, 1.0, xc, (int) total,
                     z + (size_t) r * d, 1, 0.0, v, 1);
      normalize_and_orient (v, c);
      out->variance[r] = total > 1 ? w[r] / (double) (total - 1) : 0;
      out->variance_ratio[r] = w[r] / trace;
    }
  out->n_components = kept;
  free (z);
  return DS_OK;
}

DsStatus
ds_pca_fit (const float *const *x, const int64_t *n, int k, int64_t c, DsPcaSolver solver,
            DsPca *out, DsError *err)
{
  memset (out, 0, sizeof *out);
  int64_t total = 0;
  DsStatus st = check_inputs (n, k, c, &total, err);
  if (st != DS_OK)
    return st;
  out->c = c, out->n = total;
  out->mean = malloc ((size_t) c * sizeof (double));
  out->components = calloc ((size_t) (DS_PCA_COMPONENTS * c), sizeof (double));
  double *xc = malloc ((size_t) (c * total) * sizeof (double));
  if (!out->mean || !out->components || !xc)
    {
      free (xc);
      ds_pca_free (out);
      return ds_error_set (err, DS_ERR_NOMEM, "PCA: out of memory for %lld channels × %lld "
                           "positions", (long long) c, (long long) total);
    }
  st = channel_means (x, n, k, c, total, out->mean, err);
  if (st != DS_OK)
    {
      free (xc);
      ds_pca_free (out);
      return st;
    }
  /* X̃ [c, total]: the images' positions side by side. */
  double trace = 0;
  for (int64_t ch = 0; ch < c; ch++)
    {
      double *dst = xc + ch * total;
      for (int i = 0; i < k; i++)
        {
          const float *row = x[i] + ch * n[i];
          for (int64_t j = 0; j < n[i]; j++)
            {
              double v = (double) row[j] - out->mean[ch];
              *dst++ = v;
              trace += v * v;
            }
        }
    }
  if (trace > 0)
    st = fit_centred (xc, c, total, trace, solver, out, err);
  free (xc);
  if (st != DS_OK)
    ds_pca_free (out);
  return st;
}

void
ds_pca_project (const DsPca *pca, const float *x, int64_t n, float *scores)
{
  enum { BLOCK = 256, K = DS_PCA_COMPONENTS };
  double acc[BLOCK * K];
  int64_t c = pca->c;
  int nc = pca->n_components;
  for (int64_t i0 = 0; i0 < n; i0 += BLOCK)
    {
      int64_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
      memset (acc, 0, sizeof acc);
      for (int64_t ch = 0; ch < c && nc > 0; ch++)
        {
          const float *row = x + ch * n + i0;
          double m = pca->mean[ch];
          double v0 = pca->components[ch], v1 = pca->components[c + ch];
          double v2 = pca->components[2 * c + ch];
          for (int64_t j = 0; j < len; j++)
            {
              double d = (double) row[j] - m;
              acc[j * K] += d * v0;
              acc[j * K + 1] += d * v1;
              acc[j * K + 2] += d * v2;
            }
        }
      for (int64_t j = 0; j < len * K; j++)
        scores[i0 * K + j] = (float) acc[j];
    }
}

void
ds_pca_scores_to_rgb (const float *scores, int64_t n, int n_components, float *rgb)
{
  enum { K = DS_PCA_COMPONENTS };
  for (int r = 0; r < K; r++)
    {
      float lo = INFINITY, hi = -INFINITY;
      if (r < n_components)
        for (int64_t j = 0; j < n; j++)
          {
            float v = scores[j * K + r];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
          }
      if (r >= n_components || !(hi > lo))
        {
          for (int64_t j = 0; j < n; j++)
            rgb[j * K + r] = 0.5f;
          continue;
        }
      double range = (double) hi - lo;
      for (int64_t j = 0; j < n; j++)
        rgb[j * K + r] = (float) (((double) scores[j * K + r] - lo) / range);
    }
}

DsStatus
ds_pca_rgb_joint (const float *const *x, const int64_t *n, int k, int64_t c, float *const *rgb,
                  double *ratio, DsError *err)
{
  DsPca pca;
  DsStatus st = ds_pca_fit (x, n, k, c, DS_PCA_SOLVER_AUTO, &pca, err);
  if (st != DS_OK)
    return st;
  for (int i = 0; i < k; i++)
    {
      /* The scores go through rgb[i] itself: same size, no extra buffer. */
      ds_pca_project (&pca, x[i], n[i], rgb[i]);
      ds_pca_scores_to_rgb (rgb[i], n[i], pca.n_components, rgb[i]);
    }
  if (ratio)
    memcpy (ratio, pca.variance_ratio, sizeof pca.variance_ratio);
  ds_pca_free (&pca);
  return DS_OK;
}

DsStatus
ds_pca_rgb (const float *x, int64_t c, int64_t n, float *rgb, double *ratio, DsError *err)
{
  return ds_pca_rgb_joint (&x, &n, 1, c, &rgb, ratio, err);
}
