/* ds-analysis.c: see ds-analysis.h. */
#include "ds-analysis.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- guidance ---------------------------------------------------------- */

void
ds_guidance_amplify (const float *xu, const float *xc, float s, float *out, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      /* Separate statements keep each step rounded to f32 even where the
       * compiler would otherwise contract s·d + u into one fused op. */
      float d = xc[i] - xu[i];
      float sd = s * d;
      out[i] = xu[i] + sd;
    }
}

void
ds_delta_cond (const float *xu, const float *xc, float *out, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = xc[i] - xu[i];
}

void
ds_delta_magnitude (const float *delta, int64_t c, int64_t n, float *out)
{
  /* Blocks of positions, channel-outer inside a block: contiguous reads
   * without a heap buffer. */
  enum { BLOCK = 256 };
  double acc[BLOCK];
  for (int64_t i0 = 0; i0 < n; i0 += BLOCK)
    {
      int64_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
      memset (acc, 0, sizeof acc);
      for (int64_t ch = 0; ch < c; ch++)
        {
          const float *row = delta + ch * n + i0;
          for (int64_t i = 0; i < len; i++)
            acc[i] += (double) row[i] * row[i];
        }
      for (int64_t i = 0; i < len; i++)
        out[i0 + i] = (float) sqrt (acc[i]);
    }
}

/* ---- linear CKA ---------------------------------------------------------- */

/* One side of a CKA: the centred matrix and what the chosen form needs. */
typedef struct {
  double *xc;   /* [n, p] row-major, columns centred */
  double *gram; /* [n, n] upper triangle of X̃X̃ᵀ (Gram form only) */
  int64_t n, p;
  double self;  /* ‖X̃ᵀX̃‖_F (= ‖X̃X̃ᵀ‖_F) */
} CkaSide;

static void
cka_side_free (CkaSide *s)
{
  free (s->xc);
  free (s->gram);
  memset (s, 0, sizeof *s);
}

/* Σ of squares of a symmetric matrix given by its upper triangle [m, m]. */
static double
sym_fro2 (const double *a, int64_t m)
{
  double diag = 0, off = 0;
  for (int64_t i = 0; i < m; i++)
    {
      diag += a[i * m + i] * a[i * m + i];
      for (int64_t j = i + 1; j < m; j++)
        off += a[i * m + j] * a[i * m + j];
    }
  return diag + 2 * off;
}

/* Element (i, j) of an n×p matrix stored with strides sn (rows), sp (columns):
 * row-major [n, p] has (p, 1); a channels-first map [p, n] read with
 * positions as rows has (1, n). */
static DsStatus
cka_side_init (CkaSide *s, const char *what, const float *x, int64_t n, int64_t p, int64_t sn,
               int64_t sp, bool gram, DsError *err)
{
  memset (s, 0, sizeof *s);
  s->n = n, s->p = p;
  s->xc = malloc ((size_t) (n * p) * sizeof (double));
  double *mean = calloc ((size_t) p, sizeof (double));
  if (!s->xc || !mean)
    {
      free (mean);
      cka_side_free (s);
      return ds_error_set (err, DS_ERR_NOMEM, "CKA: out of memory for %s [%lld, %lld]", what,
                           (long long) n, (long long) p);
    }
  for (int64_t j = 0; j < p; j++)
    {
      double sum = 0;
      for (int64_t i = 0; i < n; i++)
        {
          float v = x[i * sn + j * sp];
          if (!isfinite (v))
            {
              free (mean);
              cka_side_free (s);
              return ds_error_set (err, DS_ERR_INVALID,
                                   "CKA: %s has a non-finite value at example %lld, feature %lld",
                                   what, (long long) i, (long long) j);
            }
          sum += v;
        }
      mean[j] = sum / (double) n;
    }
  double ss = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < p; j++)
      {
        double v = (double) x[i * sn + j * sp] - mean[j];
        s->xc[i * p + j] = v;
        ss += v * v;
      }
  free (mean);
  if (ss == 0)
    {
      cka_side_free (s);
      return ds_error_set (err, DS_ERR_INVALID,
                           "CKA: %s has zero variance (every feature is constant over the "
                           "%lld examples)", what, (long long) n);
    }
  if (gram)
    {
      s->gram = malloc ((size_t) (n * n) * sizeof (double));
      if (!s->gram)
        {
          cka_side_free (s);
          return ds_error_set (err, DS_ERR_NOMEM, "CKA: out of memory for the %lld×%lld Gram "
                               "matrix of %s", (long long) n, (long long) n, what);
        }
      cblas_dsyrk (CblasRowMajor, CblasUpper, CblasNoTrans, (int) n, (int) p, 1.0, s->xc,
                   (int) p, 0.0, s->gram, (int) n);
      s->self = sqrt (sym_fro2 (s->gram, n));
      return DS_OK;
    }
  double *a = malloc ((size_t) (p * p) * sizeof (double));
  if (!a)
    {
      cka_side_free (s);
      return ds_error_set (err, DS_ERR_NOMEM, "CKA: out of memory for the %lld×%lld feature "
                           "product of %s", (long long) p, (long long) p, what);
    }
  cblas_dsyrk (CblasRowMajor, CblasUpper, CblasTrans, (int) p, (int) n, 1.0, s->xc, (int) p,
               0.0, a, (int) p);
  s->self = sqrt (sym_fro2 (a, p));
  free (a);
  return DS_OK;
}

/* ‖ỸᵀX̃‖_F² = tr(KL), in the form both sides were prepared for. */
static DsStatus
cka_cross (const CkaSide *x, const CkaSide *y, double *out, DsError *err)
{
  int64_t n = x->n;
  if (x->gram)
    {
      const double *k = x->gram, *l = y->gram;
      double diag = 0, off = 0;
      for (int64_t i = 0; i < n; i++)
        {
          diag += k[i * n + i] * l[i * n + i];
          for (int64_t j = i + 1; j < n; j++)
            off += k[i * n + j] * l[i * n + j];
        }
      *out = diag + 2 * off;
      return DS_OK;
    }
  int64_t p = x->p, q = y->p;
  double *m = malloc ((size_t) (q * p) * sizeof (double));
  if (!m)
    return ds_error_set (err, DS_ERR_NOMEM, "CKA: out of memory for a %lld×%lld product",
                         (long long) q, (long long) p);
  cblas_dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) q, (int) p, (int) n, 1.0, y->xc,
               (int) q, x->xc, (int) p, 0.0, m, (int) p);
  double s = 0;
  for (int64_t i = 0; i < q * p; i++)
    s += m[i] * m[i];
  free (m);
  *out = s;
  return DS_OK;
}

static double
cka_ratio (double cross, const CkaSide *x, const CkaSide *y)
{
  double v = cross / (x->self * y->self);
  return v < 0 ? 0 : v > 1 ? 1 : v; /* Cauchy–Schwarz; only rounding leaves [0, 1] */
}

/* The Gram form costs ~n²(p+q)/2, the feature form ~n(p+q)²/2. */
static bool
cka_use_gram (int64_t n, int64_t p, int64_t q)
{
  return n < p + q;
}

static DsStatus
cka_check_n (int64_t n, DsError *err)
{
  if (n < 2)
    return ds_error_set (err, DS_ERR_INVALID, "CKA needs at least 2 examples, got %lld",
                         (long long) n);
  return DS_OK;
}

static DsStatus
cka_strided (const char *xname, const float *x, int64_t p, int64_t xsn, int64_t xsp,
             const char *yname, const float *y, int64_t q, int64_t ysn, int64_t ysp, int64_t n,
             double *out, DsError *err)
{
  DsStatus st = cka_check_n (n, err);
  if (st != DS_OK)
    return st;
  assert (p >= 1 && q >= 1 && n <= INT32_MAX && p <= INT32_MAX && q <= INT32_MAX);
  bool gram = cka_use_gram (n, p, q);
  CkaSide sx, sy;
  st = cka_side_init (&sx, xname, x, n, p, xsn, xsp, gram, err);
  if (st != DS_OK)
    return st;
  st = cka_side_init (&sy, yname, y, n, q, ysn, ysp, gram, err);
  if (st != DS_OK)
    {
      cka_side_free (&sx);
      return st;
    }
  double cross = 0;
  st = cka_cross (&sx, &sy, &cross, err);
  if (st == DS_OK)
    *out = cka_ratio (cross, &sx, &sy);
  cka_side_free (&sx);
  cka_side_free (&sy);
  return st;
}

DsStatus
ds_cka_linear (const float *x, const float *y, int64_t n, int64_t p, int64_t q, double *out,
               DsError *err)
{
  return cka_strided ("X", x, p, p, 1, "Y", y, q, q, 1, n, out, err);
}

DsStatus
ds_cka_maps (DsFeatureMap a, DsFeatureMap b, double *out, DsError *err)
{
  if (a.h != b.h || a.w != b.w)
    return ds_error_set (err, DS_ERR_INVALID,
                         "CKA: maps [%lld, %lld, %lld] and [%lld, %lld, %lld] have different "
                         "spatial sizes; resize one to the other's H×W first "
                         "(ds_map_resize_bilinear)",
                         (long long) a.c, (long long) a.h, (long long) a.w, (long long) b.c,
                         (long long) b.h, (long long) b.w);
  int64_t n = a.h * a.w;
  return cka_strided ("map a", a.data, a.c, 1, n, "map b", b.data, b.c, 1, n, n, out, err);
}

DsStatus
ds_cka_guidance_sweep (const float *xu, const float *xc, int64_t c, int64_t n, const float *s,
                       int n_s, double *out, DsError *err)
{
  DsStatus st = cka_check_n (n, err);
  if (st != DS_OK)
    return st;
  assert (c >= 1 && n_s >= 0 && n <= INT32_MAX && c <= INT32_MAX);
  bool gram = cka_use_gram (n, c, c);
  CkaSide su;
  st = cka_side_init (&su, "the unconditional map", xu, n, c, 1, n, gram, err);
  if (st != DS_OK)
    return st;
  float *xs = malloc ((size_t) (c * n) * sizeof (float));
  if (!xs)
    {
      cka_side_free (&su);
      return ds_error_set (err, DS_ERR_NOMEM, "CKA: out of memory for a [%lld, %lld] map",
                           (long long) c, (long long) n);
    }
  for (int i = 0; i < n_s && st == DS_OK; i++)
    {
      char what[64];
      snprintf (what, sizeof what, "the map at s = %g", (double) s[i]);
      ds_guidance_amplify (xu, xc, s[i], xs, c * n);
      CkaSide ss;
      st = cka_side_init (&ss, what, xs, n, c, 1, n, gram, err);
      if (st != DS_OK)
        break;
      double cross = 0;
      st = cka_cross (&ss, &su, &cross, err);
      if (st == DS_OK)
        out[i] = cka_ratio (cross, &ss, &su);
      cka_side_free (&ss);
    }
  free (xs);
  cka_side_free (&su);
  return st;
}

/* ---- cosine --------------------------------------------------------------- */

DsStatus
ds_cosine_maps (DsFeatureMap a, DsFeatureMap b, DsCosine *out, DsError *err)
{
  if (a.c != b.c || a.h != b.h || a.w != b.w)
    return ds_error_set (err, DS_ERR_INVALID,
                         "cosine: maps [%lld, %lld, %lld] and [%lld, %lld, %lld] differ in shape",
                         (long long) a.c, (long long) a.h, (long long) a.w, (long long) b.c,
                         (long long) b.h, (long long) b.w);
  int64_t c = a.c, n = a.h * a.w;
  assert (c >= 1 && n >= 1);
  /* Per-position dot products and norms, channel-outer for contiguous reads. */
  double *acc = calloc ((size_t) (3 * n), sizeof (double));
  if (!acc)
    return ds_error_set (err, DS_ERR_NOMEM, "cosine: out of memory for %lld positions",
                         (long long) n);
  double *dot = acc, *na = acc + n, *nb = acc + 2 * n;
  for (int64_t ch = 0; ch < c; ch++)
    {
      const float *pa = a.data + ch * n, *pb = b.data + ch * n;
      for (int64_t i = 0; i < n; i++)
        {
          double u = pa[i], v = pb[i];
          dot[i] += u * v;
          na[i] += u * u;
          nb[i] += v * v;
        }
    }
  double sum_cos = 0, dot_all = 0, na_all = 0, nb_all = 0;
  for (int64_t i = 0; i < n; i++)
    {
      if (na[i] > 0 && nb[i] > 0)
        sum_cos += dot[i] / (sqrt (na[i]) * sqrt (nb[i]));
      dot_all += dot[i];
      na_all += na[i];
      nb_all += nb[i];
    }
  free (acc);
  if (!isfinite (dot_all) || !isfinite (na_all) || !isfinite (nb_all))
    return ds_error_set (err, DS_ERR_INVALID, "cosine: a map holds a non-finite value");
  if (na_all == 0 || nb_all == 0)
    return ds_error_set (err, DS_ERR_INVALID, "cosine: map %s is all zeros",
                         na_all == 0 ? "a" : "b");
  out->mean_position = sum_cos / (double) n;
  out->flat = dot_all / (sqrt (na_all) * sqrt (nb_all));
  return DS_OK;
}

/* ---- resize ----------------------------------------------------------------- */

/* Up to four source taps and their weights for one output index. */
typedef struct {
  int64_t idx[4];
  float w[4];
} Taps;

/* torch's area_pixel_compute_scale and ..._source_index for align_corners
 * False and an explicit output size, in f32 as its CPU kernel computes them. */
static float
src_coord (int64_t in, int64_t out, int64_t i)
{
  float scale = (float) in / (float) out;
  return scale * ((float) i + 0.5f) - 0.5f;
}

static void
taps_linear (int64_t in, int64_t out, Taps *t)
{
  for (int64_t i = 0; i < out; i++)
    {
      if (in == out) /* torch copies: one tap of weight 1 */
        {
          t[i] = (Taps){ { i, i }, { 1.0f, 0.0f } };
          continue;
        }
      float src = src_coord (in, out, i);
      if (src < 0)
        src = 0;
      int64_t i0 = (int64_t) floorf (src);
      if (i0 > in - 1)
        i0 = in - 1;
      float l1 = src - (float) i0;
      l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
      t[i] = (Taps){ { i0, i0 < in - 1 ? i0 + 1 : i0 }, { 1.0f - l1, l1 } };
    }
}

/* Keys' cubic convolution with A = −0.75 (torch's get_cubic_upsample_coefficients). */
static void
cubic_weights (float x, float w[4])
{
  const float a = -0.75f;
  float x1 = x + 1.0f, x2 = 1.0f - x, x3 = x2 + 1.0f;
  w[0] = ((a * x1 - 5.0f * a) * x1 + 8.0f * a) * x1 - 4.0f * a;
  w[1] = ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
  w[2] = ((a + 2.0f) * x2 - (a + 3.0f)) * x2 * x2 + 1.0f;
  w[3] = ((a * x3 - 5.0f * a) * x3 + 8.0f * a) * x3 - 4.0f * a;
}

static void
taps_cubic (int64_t in, int64_t out, Taps *t)
{
  for (int64_t i = 0; i < out; i++)
    {
      float src = src_coord (in, out, i); /* not clamped for cubic */
      int64_t i0 = (int64_t) floorf (src);
      if (i0 > in - 1)
        i0 = in - 1;
      float l = src - (float) i0;
      l = l < 0 ? 0 : l > 1 ? 1 : l;
      cubic_weights (l, t[i].w);
      for (int j = 0; j < 4; j++)
        {
          int64_t k = i0 - 1 + j;
          t[i].idx[j] = k < 0 ? 0 : k > in - 1 ? in - 1 : k;
        }
    }
}

/* Rows first, then columns, each output a sum of tap·weight in tap order:
 * the same f32 operations as torch's two-level Interpolate<2> loop. */
static DsStatus
resize_separable (const float *x, int64_t c, int64_t h, int64_t w, float *out, int64_t h2,
                  int64_t w2, bool cubic, DsError *err)
{
  assert (c >= 1 && h >= 1 && w >= 1 && h2 >= 1 && w2 >= 1);
  int nt = cubic ? 4 : 2;
  Taps *th = malloc ((size_t) h2 * sizeof *th);
  Taps *tw = malloc ((size_t) w2 * sizeof *tw);
  float *tmp = malloc ((size_t) (h * w2) * sizeof *tmp);
  if (!th || !tw || !tmp)
    {
      free (th), free (tw), free (tmp);
      return ds_error_set (err, DS_ERR_NOMEM, "resize: out of memory for [%lld, %lld] -> "
                           "[%lld, %lld]", (long long) h, (long long) w, (long long) h2,
                           (long long) w2);
    }
  if (cubic)
    taps_cubic (h, h2, th), taps_cubic (w, w2, tw);
  else
    taps_linear (h, h2, th), taps_linear (w, w2, tw);
  for (int64_t ch = 0; ch < c; ch++)
    {
      const float *src = x + ch * h * w;
      for (int64_t y = 0; y < h; y++)
        for (int64_t j = 0; j < w2; j++)
          {
            const Taps *t = &tw[j];
            float v = src[y * w + t->idx[0]] * t->w[0];
            for (int k = 1; k < nt; k++)
              v += src[y * w + t->idx[k]] * t->w[k];
            tmp[y * w2 + j] = v;
          }
      float *dst = out + ch * h2 * w2;
      for (int64_t i = 0; i < h2; i++)
        {
          const Taps *t = &th[i];
          for (int64_t j = 0; j < w2; j++)
            {
              float v = tmp[t->idx[0] * w2 + j] * t->w[0];
              for (int k = 1; k < nt; k++)
                v += tmp[t->idx[k] * w2 + j] * t->w[k];
              dst[i * w2 + j] = v;
            }
        }
    }
  free (th), free (tw), free (tmp);
  return DS_OK;
}

DsStatus
ds_map_resize_bilinear (const float *x, int64_t c, int64_t h, int64_t w, float *out, int64_t h2,
                        int64_t w2, DsError *err)
{
  return resize_separable (x, c, h, w, out, h2, w2, false, err);
}

DsStatus
ds_map_resize_bicubic (const float *x, int64_t c, int64_t h, int64_t w, float *out, int64_t h2,
                       int64_t w2, DsError *err)
{
  return resize_separable (x, c, h, w, out, h2, w2, true, err);
}

/* ---- image–text scores -------------------------------------------------------- */

double
ds_lse_score (const float *logits, int64_t bh, int64_t n, int64_t k)
{
  assert (bh >= 1 && n >= 1 && k >= 1);
  double total = 0;
  for (int64_t r = 0; r < bh * n; r++)
    {
      const float *row = logits + r * k;
      double m = row[0];
      for (int64_t j = 1; j < k; j++)
        if (row[j] > m)
          m = row[j];
      if (isinf (m)) /* all −inf, or a +inf: the LSE is that infinity */
        {
          total += m;
          continue;
        }
      double s = 0;
      for (int64_t j = 0; j < k; j++)
        s += exp ((double) row[j] - m);
      total += m + log (s);
    }
  return total / (double) (bh * n);
}

double
ds_discffusion_bias (const float *eps, const float *eps_uncond, const float *eps_cond, int64_t n)
{
  double su = 0, sc = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double du = (double) eps[i] - eps_uncond[i], dc = (double) eps[i] - eps_cond[i];
      su += du * du;
      sc += dc * dc;
    }
  return sqrt (su) - sqrt (sc);
}

void
ds_discffusion_step_lse (const double *cross_lse, int batch, const int *layers, int n_layers,
                         double *out)
{
  assert (batch >= 1);
  for (int j = 0; j < n_layers; j++)
    {
      double s = 0;
      for (int b = 0; b < batch; b++)
        s += cross_lse[(size_t) layers[j] * batch + b];
      out[j] = s / batch;
    }
}

DsStatus
ds_discffusion_score (const double *layer_lse, int n_steps, int n_layers, const double *bias,
                      double *out, DsError *err)
{
  if (n_steps < 1 || n_layers < 1)
    return ds_error_set (err, DS_ERR_INVALID,
                         "Discffusion score needs at least one timestep and one layer "
                         "(got %d timesteps, %d layers)", n_steps, n_layers);
  double total = 0;
  for (int t = 0; t < n_steps; t++)
    {
      double a = 0;
      for (int l = 0; l < n_layers; l++)
        a += layer_lse[t * n_layers + l];
      total += a / n_layers + bias[t];
    }
  *out = total / n_steps;
  return DS_OK;
}

DsWinoground
ds_winoground_item (const double s[4])
{
  double c0i0 = s[0], c0i1 = s[1], c1i0 = s[2], c1i1 = s[3];
  DsWinoground r;
  r.text = c0i0 > c1i0 && c1i1 > c0i1;
  r.image = c0i0 > c0i1 && c1i1 > c1i0;
  r.group = r.text && r.image;
  return r;
}

DsStatus
ds_winoground_aggregate (const double *s, int n, DsWinogroundTotals *out, DsError *err)
{
  if (n < 1)
    return ds_error_set (err, DS_ERR_INVALID, "Winoground: no items to score (n = %d)", n);
  memset (out, 0, sizeof *out);
  out->n = n;
  for (int i = 0; i < n; i++)
    {
      DsWinoground r = ds_winoground_item (s + 4 * i);
      out->text += r.text;
      out->image += r.image;
      out->group += r.group;
    }
  out->text_score = (double) out->text / n;
  out->image_score = (double) out->image / n;
  out->group_score = (double) out->group / n;
  return DS_OK;
}
