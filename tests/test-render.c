/* test-render.c: ds-render against matplotlib, numpy and torch (fixtures from
 * tests/reference/gen_render_fixtures.py in tests/data/render/) and against
 * pixels worked out by hand (index rule, overlay rounding, min-max).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-render.h"
#include "ds-test.h"

#ifndef DS_TEST_DATA_DIR
#define DS_TEST_DATA_DIR "tests/data"
#endif

#define RENDER_DIR DS_TEST_DATA_DIR "/render/"

/* Whole file, NUL-terminated; NULL (and a failed check) if unreadable. */
static char *
read_file (const char *name, size_t *size)
{
  char path[1024];
  snprintf (path, sizeof path, "%s%s", RENDER_DIR, name);
  FILE *f = fopen (path, "rb");
  DS_CHECK (f != NULL, "cannot open %s", path);
  if (!f)
    return NULL;
  fseek (f, 0, SEEK_END);
  long len = ftell (f);
  fseek (f, 0, SEEK_SET);
  char *buf = malloc ((size_t) len + 1);
  size_t got = fread (buf, 1, (size_t) len, f);
  fclose (f);
  DS_CHECK (got == (size_t) len, "short read on %s", path);
  buf[got] = 0;
  if (size)
    *size = got;
  return buf;
}

/* ---- colormaps ---------------------------------------------------------- */

static const uint8_t *
entry (DsColormap map, int i)
{
  return ds_colormap_table (map) + 4 * i;
}

static bool
same_rgba (const uint8_t *a, const uint8_t *b)
{
  return memcmp (a, b, 4) == 0;
}

static void
test_colormap_tables (void)
{
  /* Well-known end points of matplotlib's maps (bytes=True truncates 255*x). */
  static const struct {
    DsColormap map;
    int index;
    uint8_t rgba[4];
  } anchors[] = {
    { DS_COLORMAP_VIRIDIS, 0, { 68, 1, 84, 255 } },
    { DS_COLORMAP_VIRIDIS, 255, { 253, 231, 36, 255 } },
    { DS_COLORMAP_INFERNO, 0, { 0, 0, 3, 255 } },
    { DS_COLORMAP_INFERNO, 255, { 252, 254, 164, 255 } },
    { DS_COLORMAP_JET, 0, { 0, 0, 127, 255 } },
    { DS_COLORMAP_JET, 255, { 127, 0, 0, 255 } },
    { DS_COLORMAP_GREY, 0, { 0, 0, 0, 255 } },
    { DS_COLORMAP_GREY, 128, { 128, 128, 128, 255 } },
    { DS_COLORMAP_GREY, 255, { 255, 255, 255, 255 } },
    { DS_COLORMAP_GREYS, 0, { 255, 255, 255, 255 } },
    { DS_COLORMAP_GREYS, 255, { 0, 0, 0, 255 } },
  };
  for (size_t i = 0; i < sizeof anchors / sizeof anchors[0]; i++)
    {
      const uint8_t *e = entry (anchors[i].map, anchors[i].index);
      DS_CHECK (same_rgba (e, anchors[i].rgba), "%s[%d] = %d,%d,%d,%d",
                ds_colormap_name (anchors[i].map), anchors[i].index, e[0], e[1], e[2],
                e[3]);
    }

  DsError err = { 0 };
  DsColormap m = DS_COLORMAP_VIRIDIS;
  DS_CHECK_OK (ds_colormap_from_name ("Gray", &m, &err), &err);
  DS_CHECK (m == DS_COLORMAP_GREY, "Gray -> %d", m);
  DS_CHECK_OK (ds_colormap_from_name ("INFERNO", &m, &err), &err);
  DS_CHECK (m == DS_COLORMAP_INFERNO, "INFERNO -> %d", m);
  for (int i = 0; i < DS_COLORMAP_COUNT; i++)
    {
      DS_CHECK_OK (ds_colormap_from_name (ds_colormap_name ((DsColormap) i), &m, &err),
                   &err);
      DS_CHECK (m == (DsColormap) i, "round trip of %s", ds_colormap_name ((DsColormap) i));
    }
  DsStatus st = ds_colormap_from_name ("plasma", &m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "plasma");
  DS_CHECK_CONTAINS (err.message, "viridis");
}

/* The index rule on values whose bins are known by hand. */
static void
test_colormap_rule (void)
{
  DsError err = { 0 };
  const float v[] = { 0.0f, 0.5f, 0.49999997f, 1.0f, -0.1f, 1.5f, NAN, 1.0f / 256,
                      0.99999994f, -INFINITY, INFINITY, 255.5f / 256 };
  const int want[] = { 0, 128, 127, 255, 0, 255, -1, 1, 255, 0, 255, 255 };
  enum { N = sizeof v / sizeof v[0] };
  uint8_t rgba[N * 4];
  for (int m = 0; m < DS_COLORMAP_COUNT; m++)
    {
      DS_CHECK_OK (ds_colormap_apply (v, N, 0.0, 1.0, (DsColormap) m, rgba, &err), &err);
      for (int i = 0; i < N; i++)
        {
          static const uint8_t bad[4] = { 0, 0, 0, 0 };
          const uint8_t *e = want[i] < 0 ? bad : entry ((DsColormap) m, want[i]);
          DS_CHECK (same_rgba (rgba + 4 * i, e), "%s(%.9g): expected entry %d",
                    ds_colormap_name ((DsColormap) m), (double) v[i], want[i]);
        }
    }

  /* A shifted range: x = (v - 2) / 4, so v = 3 is 0.25 -> entry 64 and 5.95 is
   * 0.9875 -> 252.8 -> entry 252; v = 1 is under the range -> entry 0. */
  const float w[] = { 2.0f, 3.0f, 6.0f, 5.95f, 1.0f };
  const int want_w[] = { 0, 64, 255, 252, 0 };
  uint8_t rgba_w[5 * 4];
  DS_CHECK_OK (ds_colormap_apply (w, 5, 2.0, 6.0, DS_COLORMAP_JET, rgba_w, &err), &err);
  for (int i = 0; i < 5; i++)
    DS_CHECK (same_rgba (rgba_w + 4 * i, entry (DS_COLORMAP_JET, want_w[i])),
              "jet(%g in [2, 6]): expected entry %d", (double) w[i], want_w[i]);

  /* vmin == vmax: entry 0 for values, NaN stays transparent. */
  const float c[] = { 5.0f, 7.0f, NAN };
  uint8_t rgba_c[3 * 4];
  DS_CHECK_OK (ds_colormap_apply (c, 3, 5.0, 5.0, DS_COLORMAP_VIRIDIS, rgba_c, &err),
               &err);
  DS_CHECK (same_rgba (rgba_c, entry (DS_COLORMAP_VIRIDIS, 0)), "flat range, value");
  DS_CHECK (same_rgba (rgba_c + 4, entry (DS_COLORMAP_VIRIDIS, 0)), "flat range, above");
  DS_CHECK (rgba_c[11] == 0, "flat range, NaN alpha %d", rgba_c[11]);

  DsStatus st = ds_colormap_apply (c, 3, 2.0, 1.0, DS_COLORMAP_VIRIDIS, rgba_c, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "vmin");
  st = ds_colormap_apply (c, 3, NAN, 1.0, DS_COLORMAP_VIRIDIS, rgba_c, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
}

static int
hexbyte (const char *s)
{
  unsigned v = 0;
  sscanf (s, "%2x", &v);
  return (int) v;
}

static void
check_colormap_block (double vmin, double vmax, const float *vals, const char **lines,
                      int n, int *mismatches)
{
  DsError err = { 0 };
  uint8_t *rgba = malloc ((size_t) n * 4);
  for (int m = 0; m < DS_COLORMAP_COUNT; m++)
    {
      DS_CHECK_OK (ds_colormap_apply (vals, (size_t) n, vmin, vmax, (DsColormap) m, rgba,
                                      &err),
                   &err);
      for (int i = 0; i < n; i++)
        {
          /* line: VALUE then 5 colours of 8 hex digits */
          const char *p = strchr (lines[i], ' ');
          for (int k = 0; k < m; k++)
            p = strchr (p + 1, ' ');
          p++;
          uint8_t want[4];
          for (int k = 0; k < 4; k++)
            want[k] = (uint8_t) hexbyte (p + 2 * k);
          if (!same_rgba (rgba + 4 * i, want))
            {
              if ((*mismatches)++ < 10)
                DS_CHECK (0, "%s(%a) in [%g, %g]: got %02x%02x%02x%02x, matplotlib %.8s",
                          ds_colormap_name ((DsColormap) m), (double) vals[i], vmin, vmax,
                          rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2], rgba[4 * i + 3],
                          p);
            }
        }
    }
  free (rgba);
}

static void
test_colormap_matplotlib (void)
{
  char *text = read_file ("colormap.txt", NULL);
  if (!text)
    return;
  enum { MAX = 4096 };
  static float vals[MAX];
  static const char *lines[MAX];
  int n = 0, blocks = 0, total = 0, mismatches = 0;
  double vmin = 0, vmax = 0;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save);; line = strtok_r (NULL, "\n", &save))
    {
      bool range = line && strncmp (line, "range ", 6) == 0;
      if ((!line || range) && n > 0)
        {
          check_colormap_block (vmin, vmax, vals, lines, n, &mismatches);
          total += n;
          n = 0;
        }
      if (!line)
        break;
      if (line[0] == '#')
        continue;
      if (range)
        {
          char *end;
          vmin = strtod (line + 6, &end);
          vmax = strtod (end, NULL);
          blocks++;
          continue;
        }
      DS_CHECK (n < MAX, "too many values in a block");
      if (n >= MAX)
        break;
      vals[n] = (float) strtod (line, NULL);
      lines[n++] = line;
    }
  DS_CHECK (blocks == 6 && total > 1000, "read %d blocks, %d values", blocks, total);
  DS_CHECK (mismatches == 0, "%d colours differ from matplotlib", mismatches);
  printf ("colormap: %d values x %d maps in %d ranges vs matplotlib\n", total,
          DS_COLORMAP_COUNT, blocks);
  free (text);
}

/* ---- rgb01 -------------------------------------------------------------- */

static void
test_rgb01 (void)
{
  const float hand[] = { 1.0f, 0.5f, 0.0f, -0.5f, 2.0f, NAN, 0.999f, 1.0f / 255, 0.0039f };
  const uint8_t want[] = { 255, 127, 0, 0, 255, 0, 254, 1, 0 };
  uint8_t got[9];
  ds_render_rgb01 (hand, 3, got);
  for (int i = 0; i < 9; i++)
    DS_CHECK (got[i] == want[i], "rgb01(%g) = %d, expected %d", (double) hand[i], got[i],
              want[i]);

  char *text = read_file ("rgb01.txt", NULL);
  if (!text)
    return;
  int n = 0, bad = 0;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      if (line[0] == '#')
        continue;
      char *end;
      float v = (float) strtod (line, &end);
      int expect = (int) strtol (end, NULL, 10);
      /* three copies: the function works on pixels */
      float px[3] = { v, v, v };
      uint8_t out[3];
      ds_render_rgb01 (px, 1, out);
      if (out[0] != expect || out[2] != expect)
        {
          if (bad++ < 10)
            DS_CHECK (0, "rgb01(%a) = %d, numpy %d", (double) v, out[0], expect);
        }
      n++;
    }
  DS_CHECK (n > 700 && bad == 0, "rgb01: %d values, %d wrong", n, bad);
  free (text);
}

/* ---- resizing ----------------------------------------------------------- */

/* Must match nearest_pattern() in gen_render_fixtures.py. */
static void
nearest_pattern (int w, int h, uint8_t *rgb)
{
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t) y * w + x) * 3 + c]
          = (uint8_t) ((x * 37 + y * 91 + c * 53 + x * y * 7) % 256);
}

/* Must match bilinear_pattern() in gen_render_fixtures.py. */
static void
bilinear_pattern (int w, int h, float *v)
{
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      v[(size_t) y * w + x]
        = (float) ((x * 13 + y * 29) % 17) / 8.0f - 1.0f + (x == y ? 0.25f : 0.0f);
}

typedef struct {
  int sw, sh, dw, dh;
  char file[128];
} ResizeCase;

static int
read_cases (const char *name, ResizeCase *cases, int max)
{
  char *text = read_file (name, NULL);
  if (!text)
    return 0;
  int n = 0;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line && n < max;
       line = strtok_r (NULL, "\n", &save))
    {
      ResizeCase *c = &cases[n];
      if (line[0] != '#'
          && sscanf (line, "%d %d %d %d %127s", &c->sw, &c->sh, &c->dw, &c->dh, c->file) == 5)
        n++;
    }
  free (text);
  return n;
}

static void
test_nearest_torch (void)
{
  ResizeCase cases[32];
  int n = read_cases ("nearest.txt", cases, 32);
  DS_CHECK (n == 8, "%d nearest cases", n);
  DsError err = { 0 };
  for (int k = 0; k < n; k++)
    {
      ResizeCase *c = &cases[k];
      size_t size = 0;
      uint8_t *want = (uint8_t *) read_file (c->file, &size);
      if (!want)
        continue;
      DS_CHECK (size == (size_t) c->dw * c->dh * 3, "%s: %zu bytes", c->file, size);
      uint8_t *src = malloc ((size_t) c->sw * c->sh * 3);
      uint8_t *got = malloc ((size_t) c->dw * c->dh * 3);
      nearest_pattern (c->sw, c->sh, src);
      DS_CHECK_OK (ds_render_resize_nearest (src, c->sw, c->sh, 3, c->dw, c->dh, got, &err),
                   &err);
      long bad = 0, first = -1;
      for (size_t i = 0; i < size; i++)
        if (got[i] != want[i] && bad++ == 0)
          first = (long) i;
      DS_CHECK (bad == 0, "%s: %ld bytes differ from torch, first at pixel (%ld, %ld)",
                c->file, bad, first / 3 % c->dw, first / 3 / c->dw);
      free (src);
      free (got);
      free (want);
    }
}

static void
test_nearest_hand (void)
{
  DsError err = { 0 };
  /* 2x2 grey -> 4x4: 2x blocks. */
  const uint8_t g[4] = { 10, 20, 30, 40 };
  uint8_t big[16];
  DS_CHECK_OK (ds_render_resize_nearest (g, 2, 2, 1, 4, 4, big, &err), &err);
  const uint8_t want[16] = { 10, 10, 20, 20, 10, 10, 20, 20,
                             30, 30, 40, 40, 30, 30, 40, 40 };
  DS_CHECK (memcmp (big, want, 16) == 0, "2x2 -> 4x4 blocks");

  /* RGBA 3x1 -> 7x1: src = floor(d * 3/7) = 0 0 0 1 1 2 2. */
  uint8_t rgba[12], wide[28];
  for (int i = 0; i < 12; i++)
    rgba[i] = (uint8_t) (i * 10);
  DS_CHECK_OK (ds_render_resize_nearest (rgba, 3, 1, 4, 7, 1, wide, &err), &err);
  const int src_of[7] = { 0, 0, 0, 1, 1, 2, 2 };
  for (int d = 0; d < 7; d++)
    DS_CHECK (memcmp (wide + 4 * d, rgba + 4 * src_of[d], 4) == 0,
              "3 -> 7: output %d should copy source %d", d, src_of[d]);

  DsStatus st = ds_render_resize_nearest (g, 2, 2, 1, 0, 4, big, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "0×4");
  st = ds_render_resize_nearest (g, 2, 2, 5, 4, 4, big, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "5 channels");
}

static void
test_bilinear_torch (void)
{
  ResizeCase cases[32];
  int n = read_cases ("bilinear.txt", cases, 32);
  DS_CHECK (n == 7, "%d bilinear cases", n);
  DsError err = { 0 };
  double worst = 0;
  for (int k = 0; k < n; k++)
    {
      ResizeCase *c = &cases[k];
      size_t size = 0;
      float *want = (float *) read_file (c->file, &size);
      if (!want)
        continue;
      size_t count = (size_t) c->dw * c->dh;
      DS_CHECK (size == count * sizeof (float), "%s: %zu bytes", c->file, size);
      float *src = malloc ((size_t) c->sw * c->sh * sizeof *src);
      float *got = malloc (count * sizeof *got);
      bilinear_pattern (c->sw, c->sh, src);
      DS_CHECK_OK (ds_render_resize_bilinear (src, c->sw, c->sh, c->dw, c->dh, got, &err),
                   &err);
      double maxdiff = 0;
      for (size_t i = 0; i < count; i++)
        maxdiff = fmax (maxdiff, fabs ((double) got[i] - want[i]));
      /* The weights match torch's exactly; its vectorised loop may fuse a
       * multiply-add where we do not, so allow 2 ulp at |v| < 2. */
      DS_CHECK (maxdiff <= 2.5e-7, "%s: max |diff| %.3g vs torch", c->file, maxdiff);
      worst = fmax (worst, maxdiff);
      free (src);
      free (got);
      free (want);
    }
  printf ("bilinear: %d cases vs torch, max |diff| %.3g\n", n, worst);
}

static void
test_bilinear_hand (void)
{
  DsError err = { 0 };
  /* [0, 1] -> 4 wide, align_corners=False: sources -0.25 (clamped to 0), 0.25,
   * 0.75, 1.25 (clamped to the last pixel) -> 0, 0.25, 0.75, 1. */
  const float row[2] = { 0.0f, 1.0f };
  float out[4];
  DS_CHECK_OK (ds_render_resize_bilinear (row, 2, 1, 4, 1, out, &err), &err);
  const float want[4] = { 0.0f, 0.25f, 0.75f, 1.0f };
  for (int i = 0; i < 4; i++)
    DS_CHECK (out[i] == want[i], "[0,1] -> 4: out[%d] = %g, expected %g", i,
              (double) out[i], (double) want[i]);

  /* 2x2 -> 4x4 centre pixels: (1,1) samples source (0.25, 0.25). */
  const float sq[4] = { 0.0f, 4.0f, 8.0f, 12.0f };
  float big[16];
  DS_CHECK_OK (ds_render_resize_bilinear (sq, 2, 2, 4, 4, big, &err), &err);
  /* 0*(.75*.75) + 4*(.75*.25) + 8*(.25*.75) + 12*(.25*.25) = 3 */
  DS_CHECK_CLOSE (big[1 * 4 + 1], 3.0, 1e-6);
  DS_CHECK_CLOSE (big[0], 0.0, 1e-6);
  DS_CHECK_CLOSE (big[15], 12.0, 1e-6);

  DsStatus st = ds_render_resize_bilinear (sq, -2, 2, 4, 4, big, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
}

/* ---- min-max, PCA ------------------------------------------------------- */

static void
test_minmax (void)
{
  float a[5] = { 2, 4, 6, 3, 5 };
  ds_render_minmax (a, 5, 1, a);
  const float want[5] = { 0, 0.5f, 1, 0.25f, 0.75f };
  for (int i = 0; i < 5; i++)
    DS_CHECK (a[i] == want[i], "minmax[%d] = %g, expected %g", i, (double) a[i],
              (double) want[i]);

  float flat[3] = { 7, 7, 7 }, out[3];
  ds_render_minmax (flat, 3, 1, out);
  DS_CHECK (out[0] == 0 && out[1] == 0 && out[2] == 0, "constant map -> 0");

  /* Two interleaved channels, each its own range; NaN stays NaN and is not
   * counted in the range. */
  float two[8] = { 0, 100, 1, NAN, 2, 300, NAN, 200 }, o2[8];
  ds_render_minmax (two, 4, 2, o2);
  DS_CHECK (o2[0] == 0 && o2[2] == 0.5f && o2[4] == 1 && isnan (o2[6]), "channel 0: %g %g %g %g",
            (double) o2[0], (double) o2[2], (double) o2[4], (double) o2[6]);
  DS_CHECK (o2[1] == 0 && isnan (o2[3]) && o2[5] == 1 && o2[7] == 0.5f,
            "channel 1: %g %g %g %g", (double) o2[1], (double) o2[3], (double) o2[5],
            (double) o2[7]);
}

/* Must match pca_pattern() in gen_render_fixtures.py. */
static void
pca_pattern (int n, float *p)
{
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 3; c++)
      {
        float v = (float) ((i * 7 + c * 13) % 23 - 11) * 0.37f;
        if (c == 1)
          v += (float) (i % 5) * 0.01f;
        p[i * 3 + c] = v;
      }
}

static void
test_pca (void)
{
  char *text = read_file ("pca.txt", NULL);
  if (!text)
    return;
  DsError err = { 0 };
  int cases = 0, qs = 0;
  float *p = NULL, *q = NULL;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      int w, h, dw, dh, idx, ch;
      char file[128];
      if (line[0] == '#')
        continue;
      if (line[0] == 'q' && q && sscanf (line, "q %d %d", &idx, &ch) == 2)
        {
          const char *hex = strrchr (line, ' ') + 1;
          float want = (float) strtod (hex, NULL);
          DS_CHECK (q[idx * 3 + ch] == want, "min-max q[%d, %d] = %a, numpy %a", idx, ch,
                    (double) q[idx * 3 + ch], (double) want);
          qs++;
          continue;
        }
      if (sscanf (line, "%d %d %d %d %127s", &w, &h, &dw, &dh, file) != 5)
        continue;
      cases++;
      free (p);
      free (q);
      p = malloc ((size_t) w * h * 3 * sizeof *p);
      q = malloc ((size_t) w * h * 3 * sizeof *q);
      pca_pattern (w * h, p);
      ds_render_minmax (p, (size_t) w * h, 3, q);

      size_t size = 0;
      uint8_t *want = (uint8_t *) read_file (file, &size);
      uint8_t *got = malloc ((size_t) dw * dh * 3);
      DS_CHECK_OK (ds_render_pca_rgb (p, w, h, dw, dh, got, &err), &err);
      if (want)
        {
          DS_CHECK (size == (size_t) dw * dh * 3, "%s: %zu bytes", file, size);
          DS_CHECK (memcmp (got, want, size) == 0, "%s: PCA picture differs from numpy+torch",
                    file);
        }
      free (want);
      free (got);
    }
  DS_CHECK (cases == 3 && qs > 40, "pca: %d cases, %d min-max values", cases, qs);
  free (p);
  free (q);
  free (text);
}

/* ---- overlay, heatmap --------------------------------------------------- */

static void
test_overlay (void)
{
  DsError err = { 0 };
  /* Six pixels, each with its blend worked out by hand. */
  const uint8_t img[6 * 3] = {
    100, 50, 0,   /* 0: heat (200,250,255) a=255, opacity 0.5 -> 150,150,127.5->128 */
    10, 11, 12,   /* 1: heat alpha 0 -> unchanged */
    10, 11, 200,  /* 2: heat (11,10,100) full, 0.5 -> 10.5->11, 10.5->11, 150 */
    0, 200, 255,  /* 3: heat (255,100,255) alpha 51 (0.2), opacity 0.5 -> a=0.1 */
    255, 0, 77,   /* 4: heat (0,255,77) alpha 255 -> 127.5->128, 127.5->128, 77 */
    1, 2, 3,      /* 5: heat alpha 128, opacity 0.5 -> a = 64/255 */
  };
  const uint8_t heat[6 * 4] = {
    200, 250, 255, 255,
    250, 250, 250, 0,
    11, 10, 100, 255,
    255, 100, 255, 51,
    0, 255, 77, 255,
    255, 255, 255, 128,
  };
  /* pixel 3: 0*.9+255*.1 = 25.5 -> 26; 200*.9+100*.1 = 190; 255 stays 255.
   * pixel 5: a = 64/255; 1 + 254*a = 64.75 -> 65; 2 + 253*a = 65.498 -> 65;
   *          3 + 252*a = 66.25 -> 66. */
  const uint8_t want[6 * 3] = {
    150, 150, 128,
    10, 11, 12,
    11, 11, 150,
    26, 190, 255,
    128, 128, 77,
    65, 65, 66,
  };
  uint8_t out[6 * 3];
  DS_CHECK_OK (ds_render_overlay (img, heat, 6, 1, 0.5f, out, &err), &err);
  for (int i = 0; i < 18; i++)
    DS_CHECK (out[i] == want[i], "overlay pixel %d channel %d = %d, expected %d", i / 3,
              i % 3, out[i], want[i]);

  /* In place, opacity 0 and 1. */
  uint8_t inplace[6 * 3];
  memcpy (inplace, img, sizeof img);
  DS_CHECK_OK (ds_render_overlay (inplace, heat, 6, 1, 0.0f, inplace, &err), &err);
  DS_CHECK (memcmp (inplace, img, sizeof img) == 0, "opacity 0 leaves the image");
  DS_CHECK_OK (ds_render_overlay (inplace, heat, 3, 2, 1.0f, inplace, &err), &err);
  DS_CHECK (inplace[0] == 200 && inplace[1] == 250 && inplace[2] == 255,
            "opacity 1, alpha 255 gives the heat colour: %d %d %d", inplace[0], inplace[1],
            inplace[2]);
  DS_CHECK (inplace[3] == 10 && inplace[4] == 11, "alpha 0 keeps the image at opacity 1");

  DsStatus st = ds_render_overlay (img, heat, 6, 1, 1.5f, out, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "opacity");
  st = ds_render_overlay (img, heat, 6, 1, NAN, out, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
}

static void
test_heatmap (void)
{
  DsError err = { 0 };
  /* 2x2 map with values 1..4 to 4x4, own range: the corners are the extremes
   * after bilinear resizing (edge clamping), so they hit entries 0 and 255. */
  const float map[4] = { 1, 2, 3, 4 };
  uint8_t rgba[16 * 4];
  DS_CHECK_OK (ds_render_heatmap (map, 2, 2, 4, 4, DS_COLORMAP_VIRIDIS, NAN, NAN, rgba,
                                  &err),
               &err);
  DS_CHECK (same_rgba (rgba, entry (DS_COLORMAP_VIRIDIS, 0)), "top-left is the minimum");
  DS_CHECK (same_rgba (rgba + 15 * 4, entry (DS_COLORMAP_VIRIDIS, 255)),
            "bottom-right is the maximum");
  /* Pixel (1,1) samples (0.25, 0.25): 1*.5625 + 2*.1875 + 3*.1875 + 4*.0625 = 1.75;
   * normalised (1.75 - 1) / 3 = 0.25 -> entry 64. */
  DS_CHECK (same_rgba (rgba + 5 * 4, entry (DS_COLORMAP_VIRIDIS, 64)),
            "pixel (1,1) is entry 64");

  /* Fixed range [0, 8]: value 4 (bottom-right) is x = 0.5 -> entry 128. */
  DS_CHECK_OK (ds_render_heatmap (map, 2, 2, 4, 4, DS_COLORMAP_GREY, 0.0, 8.0, rgba, &err),
               &err);
  DS_CHECK (same_rgba (rgba + 15 * 4, entry (DS_COLORMAP_GREY, 128)), "4 in [0, 8]");

  DsStatus st = ds_render_heatmap (map, 2, 2, 4, 4, DS_COLORMAP_GREY, NAN, 8.0, rgba, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
}

int
main (void)
{
  test_colormap_tables ();
  test_colormap_rule ();
  test_colormap_matplotlib ();
  test_rgb01 ();
  test_nearest_torch ();
  test_nearest_hand ();
  test_bilinear_torch ();
  test_bilinear_hand ();
  test_minmax ();
  test_pca ();
  test_overlay ();
  test_heatmap ();
  return ds_test_finish ();
}
