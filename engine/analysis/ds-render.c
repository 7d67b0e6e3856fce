/* ds-render.c: colormaps, map resizing and overlays (see ds-render.h).
 *
 * The arithmetic mirrors the reference tools step by step (float32 where they
 * use float32, the same rounding points), because the point of these pictures
 * is that they look exactly like the ones in the papers' notebooks. The tables
 * come from matplotlib via tests/reference/gen_render_fixtures.py.
 */
#include "ds-render.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>

#include "ds-colormap-tables.inc"

static const struct {
  const char *name;
  const uint8_t (*table)[4];
} colormaps[DS_COLORMAP_COUNT] = {
  [DS_COLORMAP_VIRIDIS] = { "viridis", ds_colormap_viridis },
  [DS_COLORMAP_INFERNO] = { "inferno", ds_colormap_inferno },
  [DS_COLORMAP_JET] = { "jet", ds_colormap_jet },
  [DS_COLORMAP_GREY] = { "grey", ds_colormap_grey },
  [DS_COLORMAP_GREYS] = { "greys", ds_colormap_greys },
};

const char *
ds_colormap_name (DsColormap map)
{
  assert (map >= 0 && map < DS_COLORMAP_COUNT);
  return colormaps[map].name;
}

DsStatus
ds_colormap_from_name (const char *name, DsColormap *out, DsError *err)
{
  assert (name && out);
  for (int i = 0; i < DS_COLORMAP_COUNT; i++)
    if (strcasecmp (name, colormaps[i].name) == 0)
      {
        *out = (DsColormap) i;
        return DS_OK;
      }
  if (strcasecmp (name, "gray") == 0)
    {
      *out = DS_COLORMAP_GREY;
      return DS_OK;
    }
  return ds_error_set (err, DS_ERR_INVALID,
                       "colormap \"%s\": unknown; expected viridis, inferno, jet, grey "
                       "or greys",
                       name);
}

const uint8_t *
ds_colormap_table (DsColormap map)
{
  assert (map >= 0 && map < DS_COLORMAP_COUNT);
  return colormaps[map].table[0];
}

/* matplotlib's Normalize + Colormap index for one value. Normalize keeps
 * float32 data in float32: numpy evaluates `a -= vmin` and `a /= span` in
 * double (vmin, span are float64 scalars) and rounds each result to float.
 * Colormap then multiplies by N (exact) and truncates. */
static int
colormap_index (float v, double vmin, double span)
{
  if (span == 0)
    return 0;
  float t = (float) ((double) v - vmin);
  float x = (float) ((double) t / span);
  float y = x * (float) DS_COLORMAP_SIZE;
  if (y == (float) DS_COLORMAP_SIZE)
    return DS_COLORMAP_SIZE - 1;
  if (y < 0)
    return 0; /* "under": entry 0 */
  if (y >= (float) DS_COLORMAP_SIZE)
    return DS_COLORMAP_SIZE - 1; /* "over": the last entry */
  return (int) y;
}

DsStatus
ds_colormap_apply (const float *values, size_t n, double vmin, double vmax,
                   DsColormap map, uint8_t *rgba, DsError *err)
{
  assert ((values && rgba) || n == 0);
  assert (map >= 0 && map < DS_COLORMAP_COUNT);
  if (!isfinite (vmin) || !isfinite (vmax) || vmin > vmax)
    return ds_error_set (err, DS_ERR_INVALID,
                         "colormap range [%g, %g]: expected finite vmin <= vmax", vmin,
                         vmax);
  const uint8_t (*table)[4] = colormaps[map].table;
  double span = vmax - vmin;
  for (size_t i = 0; i < n; i++)
    {
      uint8_t *px = rgba + 4 * i;
      if (isnan (values[i]))
        {
          px[0] = px[1] = px[2] = px[3] = 0; /* matplotlib's "bad" colour */
          continue;
        }
      const uint8_t *c = table[colormap_index (values[i], vmin, span)];
      px[0] = c[0];
      px[1] = c[1];
      px[2] = c[2];
      px[3] = c[3];
    }
  return DS_OK;
}

void
ds_render_rgb01 (const float *rgb01, size_t n, uint8_t *rgb)
{
  assert ((rgb01 && rgb) || n == 0);
  for (size_t i = 0; i < 3 * n; i++)
    {
      float x = rgb01[i];
      if (!(x > 0)) /* also NaN */
        x = 0;
      else if (x > 1)
        x = 1;
      rgb[i] = (uint8_t) (x * 255.0f); /* truncation, as astype(np.uint8) */
    }
}

void
ds_render_minmax (const float *in, size_t n, int channels, float *out)
{
  assert (channels > 0);
  assert ((in && out) || n == 0);
  for (int c = 0; c < channels; c++)
    {
      float lo = INFINITY, hi = -INFINITY;
      for (size_t i = 0; i < n; i++)
        {
          float v = in[i * channels + c];
          if (isfinite (v))
            {
              lo = fminf (lo, v);
              hi = fmaxf (hi, v);
            }
        }
      /* Same float ops as numpy's (p - mn) / (mx - mn) on float32. */
      float range = hi - lo;
      bool flat = !(lo < hi);
      for (size_t i = 0; i < n; i++)
        {
          float v = in[i * channels + c];
          if (!isfinite (v))
            out[i * channels + c] = NAN;
          else
            out[i * channels + c] = flat ? 0.0f : (v - lo) / range;
        }
    }
}

static DsStatus
check_size (const char *what, int w, int h, DsError *err)
{
  if (w <= 0 || h <= 0 || (long long) w * h > DS_RENDER_MAX_PIXELS)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: %d×%d; expected a positive size of at most %lld pixels",
                         what, w, h, (long long) DS_RENDER_MAX_PIXELS);
  return DS_OK;
}

/* torch's nearest_idx (UpSample.h): exact shortcuts for 1x and 2x, otherwise a
 * float32 scale, which is why 6 -> 74 picks column 2 for output 37, not 3. */
static int
nearest_source (int dst, int in, int out)
{
  if (out == in)
    return dst;
  if (out == 2 * in)
    return dst >> 1;
  float scale = (float) in / (float) out;
  long long s = (long long) floorf ((float) dst * scale);
  return s < in - 1 ? (int) s : in - 1;
}

DsStatus
ds_render_resize_nearest (const uint8_t *src, int w, int h, int channels, int out_w,
                          int out_h, uint8_t *dst, DsError *err)
{
  assert (src && dst);
  DsStatus st;
  if (channels < 1 || channels > 4)
    return ds_error_set (err, DS_ERR_INVALID,
                         "nearest resize: %d channels; expected 1 to 4", channels);
  if ((st = check_size ("nearest resize source", w, h, err))
      || (st = check_size ("nearest resize target", out_w, out_h, err)))
    return st;

  int *xs = malloc ((size_t) out_w * sizeof *xs);
  if (!xs)
    return ds_error_set (err, DS_ERR_NOMEM, "nearest resize: out of memory");
  for (int x = 0; x < out_w; x++)
    xs[x] = nearest_source (x, w, out_w);
  for (int y = 0; y < out_h; y++)
    {
      const uint8_t *row = src + (size_t) nearest_source (y, h, out_h) * w * channels;
      uint8_t *o = dst + (size_t) y * out_w * channels;
      for (int x = 0; x < out_w; x++)
        for (int c = 0; c < channels; c++)
          o[(size_t) x * channels + c] = row[(size_t) xs[x] * channels + c];
    }
  free (xs);
  return DS_OK;
}

typedef struct {
  int i0, i1;       /* source indices (i1 == i0 at the last pixel) */
  float w0, w1;     /* their weights */
} LinearTap;

/* torch's area_pixel_compute_source_index + guard_index_and_lambda for
 * align_corners=False, in float as torch's CPU kernel computes them. torch's
 * build contracts scale * (d + 0.5) - 0.5 into one fused multiply-add, and
 * the weights only match its output bit for bit when we do the same. */
static void
linear_taps (int in, int out, LinearTap *taps)
{
  float scale = (float) in / (float) out;
  for (int d = 0; d < out; d++)
    {
      float real = fmaf (scale, (float) d + 0.5f, -0.5f);
      if (real < 0)
        real = 0;
      long long i0 = (long long) floorf (real);
      if (i0 > in - 1)
        i0 = in - 1;
      float lambda = fminf (fmaxf (real - (float) i0, 0.0f), 1.0f);
      taps[d].i0 = (int) i0;
      taps[d].i1 = i0 < in - 1 ? (int) i0 + 1 : (int) i0;
      taps[d].w0 = 1.0f - lambda;
      taps[d].w1 = lambda;
    }
}

DsStatus
ds_render_resize_bilinear (const float *src, int w, int h, int out_w, int out_h,
                           float *dst, DsError *err)
{
  assert (src && dst);
  DsStatus st;
  if ((st = check_size ("bilinear resize source", w, h, err))
      || (st = check_size ("bilinear resize target", out_w, out_h, err)))
    return st;

  LinearTap *tx = malloc ((size_t) out_w * sizeof *tx);
  LinearTap *ty = malloc ((size_t) out_h * sizeof *ty);
  if (!tx || !ty)
    {
      free (tx);
      free (ty);
      return ds_error_set (err, DS_ERR_NOMEM, "bilinear resize: out of memory");
    }
  linear_taps (w, out_w, tx);
  linear_taps (h, out_h, ty);
  for (int y = 0; y < out_h; y++)
    {
      const float *r0 = src + (size_t) ty[y].i0 * w;
      const float *r1 = src + (size_t) ty[y].i1 * w;
      float *o = dst + (size_t) y * out_w;
      for (int x = 0; x < out_w; x++)
        {
          /* torch's order: along x within each row, then along y. Its
           * vectorised loop rounds some of these sums differently (fused or
           * not), so results can differ from torch's in the last bit. */
          float t0 = r0[tx[x].i0] * tx[x].w0 + r0[tx[x].i1] * tx[x].w1;
          float t1 = r1[tx[x].i0] * tx[x].w0 + r1[tx[x].i1] * tx[x].w1;
          o[x] = t0 * ty[y].w0 + t1 * ty[y].w1;
        }
    }
  free (tx);
  free (ty);
  return DS_OK;
}

DsStatus
ds_render_overlay (const uint8_t *rgb, const uint8_t *heat_rgba, int w, int h,
                   float opacity, uint8_t *out, DsError *err)
{
  assert (rgb && heat_rgba && out);
  DsStatus st;
  if (!(opacity >= 0 && opacity <= 1))
    return ds_error_set (err, DS_ERR_INVALID, "overlay opacity %g: expected 0 to 1",
                         (double) opacity);
  if ((st = check_size ("overlay", w, h, err)))
    return st;
  size_t n = (size_t) w * h;
  for (size_t i = 0; i < n; i++)
    {
      const uint8_t *hp = heat_rgba + 4 * i;
      double a = (double) opacity * hp[3] / 255.0;
      for (int c = 0; c < 3; c++)
        {
          double v = rgb[3 * i + c] * (1.0 - a) + hp[c] * a;
          /* A convex combination of two bytes stays in [0, 255]; the clamp
           * only guards against rounding just above 255. */
          double r = floor (v + 0.5);
          out[3 * i + c] = (uint8_t) (r > 255 ? 255 : r);
        }
    }
  return DS_OK;
}

DsStatus
ds_render_pca_rgb (const float *pca, int w, int h, int out_w, int out_h, uint8_t *rgb,
                   DsError *err)
{
  assert (pca && rgb);
  DsStatus st;
  if ((st = check_size ("PCA map", w, h, err)))
    return st;
  size_t n = (size_t) w * h;
  float *q = malloc (n * 3 * sizeof *q);
  uint8_t *small = malloc (n * 3);
  if (!q || !small)
    {
      free (q);
      free (small);
      return ds_error_set (err, DS_ERR_NOMEM, "PCA picture: out of memory");
    }
  ds_render_minmax (pca, n, 3, q);
  ds_render_rgb01 (q, n, small);
  st = ds_render_resize_nearest (small, w, h, 3, out_w, out_h, rgb, err);
  free (q);
  free (small);
  return st;
}

DsStatus
ds_render_heatmap (const float *map, int w, int h, int out_w, int out_h,
                   DsColormap cmap, double vmin, double vmax, uint8_t *rgba,
                   DsError *err)
{
  assert (map && rgba);
  DsStatus st;
  if ((st = check_size ("heatmap target", out_w, out_h, err)))
    return st;
  size_t n = (size_t) out_w * out_h;
  float *big = malloc (n * sizeof *big);
  if (!big)
    return ds_error_set (err, DS_ERR_NOMEM, "heatmap: out of memory");
  st = ds_render_resize_bilinear (map, w, h, out_w, out_h, big, err);
  if (st == DS_OK && isnan (vmin) && isnan (vmax))
    {
      ds_render_minmax (big, n, 1, big);
      vmin = 0;
      vmax = 1;
    }
  if (st == DS_OK)
    st = ds_colormap_apply (big, n, vmin, vmax, cmap, rgba, err);
  free (big);
  return st;
}
