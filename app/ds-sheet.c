/* ds-sheet.c: contact sheets and CKA plots drawn with cairo (see ds-sheet.h).
 *
 * Drawing happens on a cairo RGB24 image surface; the finished pixels are
 * repacked to RGB8 and handed to ds_png_write, which writes atomically. Text
 * uses cairo's toy API ("sans-serif"), shrunk a little and then cut with an
 * ellipsis when a line does not fit its space, so long probe names never spill
 * into the next tile.
 */
#include "ds-sheet.h"

#include <assert.h>
#include <cairo.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-image.h"

#ifdef DS_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif

#define FONT_FACE "sans-serif"
#define FRAME_COLOR 0xb8b8b8
#define EMPTY_COLOR 0xe2e2e2

const uint32_t ds_plot_colors[10] = {
  0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
  0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
};

/* ---- text ---------------------------------------------------------------- */

typedef enum { ALIGN_LEFT, ALIGN_CENTER } Align;

static void
set_color (cairo_t *cr, uint32_t rgb)
{
  cairo_set_source_rgb (cr, ((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0,
                        (rgb & 0xff) / 255.0);
}

static double
text_width (cairo_t *cr, const char *s)
{
  cairo_text_extents_t ext;
  cairo_text_extents (cr, s, &ext);
  return ext.x_advance;
}

/* Draws bytes [text, text + len) on one line, with its baseline at y, fitted
 * into max_w: the size may drop to 80%, then the text is cut at a UTF-8
 * character boundary and ends in an ellipsis. */
static void
draw_line (cairo_t *cr, const char *text, size_t len, double x, double y, double max_w,
           double size, bool bold, Align align)
{
  char *buf = malloc (len + sizeof "…");
  if (!buf)
    return;
  memcpy (buf, text, len);
  buf[len] = 0;
  cairo_select_font_face (cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL,
                          bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, size);
  double w = text_width (cr, buf);
  if (w > max_w)
    {
      double smaller = fmax (size * 0.8, fmin (size, 8.0));
      cairo_set_font_size (cr, smaller);
      w = text_width (cr, buf);
    }
  size_t cut = len;
  while (w > max_w && cut > 0)
    {
      do
        cut--;
      while (cut > 0 && ((unsigned char) buf[cut] & 0xc0) == 0x80);
      memcpy (buf + cut, "…", sizeof "…");
      w = text_width (cr, buf);
    }
  double x0 = align == ALIGN_CENTER ? x + (max_w - w) / 2 : x;
  cairo_move_to (cr, x0, y);
  cairo_show_text (cr, buf);
  free (buf);
}

/* Line k (0-based) of a '\n'-separated string: start and length; false when
 * there is no such line. */
static bool
nth_line (const char *s, int k, const char **start, size_t *len)
{
  if (!s)
    return false;
  for (int i = 0; i < k; i++)
    {
      s = strchr (s, '\n');
      if (!s)
        return false;
      s++;
    }
  const char *end = strchr (s, '\n');
  *start = s;
  *len = end ? (size_t) (end - s) : strlen (s);
  return true;
}

static int
count_lines (const char *s)
{
  if (!s || !*s)
    return 0;
  int n = 1;
  for (const char *p = s; *p; p++)
    if (*p == '\n' && p[1])
      n++;
  return n;
}

/* ---- surfaces and PNG ------------------------------------------------- */

static cairo_surface_t *
surface_from_rgb (const uint8_t *rgb, int w, int h)
{
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status (s) != CAIRO_STATUS_SUCCESS)
    return s;
  cairo_surface_flush (s);
  unsigned char *data = cairo_image_surface_get_data (s);
  int stride = cairo_image_surface_get_stride (s);
  for (int y = 0; y < h; y++)
    {
      uint32_t *row = (uint32_t *) (void *) (data + (size_t) y * stride);
      const uint8_t *src = rgb + (size_t) y * w * 3;
      for (int x = 0; x < w; x++)
        row[x] = (uint32_t) src[3 * x] << 16 | (uint32_t) src[3 * x + 1] << 8
                 | src[3 * x + 2];
    }
  cairo_surface_mark_dirty (s);
  return s;
}

/* Repacks the finished RGB24 surface and writes it atomically. */
static DsStatus
write_surface (cairo_surface_t *s, const char *path, DsError *err)
{
  cairo_surface_flush (s);
  if (cairo_surface_status (s) != CAIRO_STATUS_SUCCESS)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: cairo: %s", path,
                         cairo_status_to_string (cairo_surface_status (s)));
  int w = cairo_image_surface_get_width (s);
  int h = cairo_image_surface_get_height (s);
  int stride = cairo_image_surface_get_stride (s);
  const unsigned char *data = cairo_image_surface_get_data (s);
  uint8_t *rgb = malloc ((size_t) w * h * 3);
  if (!rgb)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory for %d×%d pixels", path,
                         w, h);
  for (int y = 0; y < h; y++)
    {
      const uint32_t *row = (const uint32_t *) (const void *) (data + (size_t) y * stride);
      uint8_t *o = rgb + (size_t) y * w * 3;
      for (int x = 0; x < w; x++)
        {
          o[3 * x] = (uint8_t) (row[x] >> 16);
          o[3 * x + 1] = (uint8_t) (row[x] >> 8);
          o[3 * x + 2] = (uint8_t) row[x];
        }
    }
  DsStatus st = ds_png_write (path, rgb, w, h, 3, err);
  free (rgb);
  return st;
}

/* A fresh surface filled with the background colour, or an error. */
static DsStatus
new_canvas (const char *path, int w, int h, cairo_surface_t **surface, cairo_t **cr,
            DsError *err)
{
  *surface = cairo_image_surface_create (CAIRO_FORMAT_RGB24, w, h);
  *cr = cairo_create (*surface);
  if (cairo_status (*cr) != CAIRO_STATUS_SUCCESS)
    {
      DsStatus st = ds_error_set (err, DS_ERR_NOMEM, "%s: cannot draw %d×%d pixels: %s",
                                  path, w, h, cairo_status_to_string (cairo_status (*cr)));
      cairo_destroy (*cr);
      cairo_surface_destroy (*surface);
      *cr = NULL;
      *surface = NULL;
      return st;
    }
  set_color (*cr, DS_SHEET_BACKGROUND);
  cairo_paint (*cr);
  return DS_OK;
}

/* ---- contact sheet ------------------------------------------------------ */

/* Fits a w x h picture into the box: a whole enlargement factor when it fits
 * (crisp), a smooth reduction otherwise. */
static void
tile_fit (int w, int h, int *dw, int *dh, bool *crisp)
{
  int m = w > h ? w : h;
  if (m <= DS_SHEET_TILE_SIZE)
    {
      int s = DS_SHEET_TILE_SIZE / m;
      *dw = w * s;
      *dh = h * s;
      *crisp = true;
    }
  else
    {
      double s = (double) DS_SHEET_TILE_SIZE / m;
      *dw = (int) fmax (1, lround (w * s));
      *dh = (int) fmax (1, lround (h * s));
      *crisp = false;
    }
}

DsStatus
ds_sheet_layout (const DsSheetTile *tiles, int n_tiles, int columns, const char *title,
                 DsSheetLayout *out, DsError *err)
{
  assert (out);
  if (n_tiles < 1 || !tiles)
    return ds_error_set (err, DS_ERR_INVALID, "contact sheet: %d tiles; expected at least 1",
                         n_tiles);
  DsSheetLayout l = { 0 };
  for (int i = 0; i < n_tiles; i++)
    {
      if (tiles[i].rgb && (tiles[i].width <= 0 || tiles[i].height <= 0))
        return ds_error_set (err, DS_ERR_INVALID,
                             "contact sheet: tile %d (%s) is %d×%d; expected a positive size",
                             i, tiles[i].caption ? tiles[i].caption : "no caption",
                             tiles[i].width, tiles[i].height);
      int lines = count_lines (tiles[i].caption);
      if (lines > DS_SHEET_MAX_CAPTION_LINES)
        lines = DS_SHEET_MAX_CAPTION_LINES;
      if (lines > l.caption_lines)
        l.caption_lines = lines;
    }
  if (columns <= 0)
    columns = (int) ceil (sqrt ((double) n_tiles));
  l.columns = columns < n_tiles ? columns : n_tiles;
  l.rows = (n_tiles + l.columns - 1) / l.columns;

  int title_lines = count_lines (title);
  l.title_height = title_lines ? DS_SHEET_MARGIN + title_lines * DS_SHEET_TITLE_LINE : 0;
  l.cell_width = DS_SHEET_TILE_SIZE;
  l.cell_height = DS_SHEET_TILE_SIZE
                  + (l.caption_lines ? 4 + l.caption_lines * DS_SHEET_CAPTION_LINE : 0);

  long long grid_w = (long long) l.columns * (DS_SHEET_TILE_SIZE + DS_SHEET_GAP) - DS_SHEET_GAP;
  long long grid_h = (long long) l.rows * (l.cell_height + DS_SHEET_GAP) - DS_SHEET_GAP;
  long long width = grid_w + 2 * DS_SHEET_MARGIN;
  if (width < DS_SHEET_MIN_WIDTH)
    width = DS_SHEET_MIN_WIDTH;
  l.grid_y = title_lines ? l.title_height + DS_SHEET_MARGIN / 2 : DS_SHEET_MARGIN;
  long long height = l.grid_y + grid_h + DS_SHEET_MARGIN;
  if (width > DS_SHEET_MAX_SIDE || height > DS_SHEET_MAX_SIDE)
    return ds_error_set (err, DS_ERR_INVALID,
                         "contact sheet: %d tiles in %d columns make a %lld×%lld picture; "
                         "the limit is %d on a side (use more or fewer columns)",
                         n_tiles, l.columns, width, height, DS_SHEET_MAX_SIDE);
  l.width = (int) width;
  l.height = (int) height;
  l.grid_x = (int) ((width - grid_w) / 2);
  *out = l;
  return DS_OK;
}

static void
tile_box (const DsSheetLayout *l, int i, int *x, int *y)
{
  *x = l->grid_x + (i % l->columns) * (l->cell_width + DS_SHEET_GAP);
  *y = l->grid_y + (i / l->columns) * (l->cell_height + DS_SHEET_GAP);
}

void
ds_sheet_tile_rect (const DsSheetLayout *layout, const DsSheetTile *tile, int i, int *x,
                    int *y, int *w, int *h)
{
  assert (layout && tile && x && y && w && h);
  int bx, by;
  tile_box (layout, i, &bx, &by);
  int dw = DS_SHEET_TILE_SIZE, dh = DS_SHEET_TILE_SIZE;
  bool crisp;
  if (tile->rgb)
    tile_fit (tile->width, tile->height, &dw, &dh, &crisp);
  *x = bx + (DS_SHEET_TILE_SIZE - dw) / 2;
  *y = by + (DS_SHEET_TILE_SIZE - dh) / 2;
  *w = dw;
  *h = dh;
}

static DsStatus
draw_tile (cairo_t *cr, const DsSheetLayout *l, const DsSheetTile *t, int i)
{
  int x, y, w, h;
  ds_sheet_tile_rect (l, t, i, &x, &y, &w, &h);
  if (!t->rgb)
    {
      set_color (cr, EMPTY_COLOR);
      cairo_rectangle (cr, x, y, w, h);
      cairo_fill (cr);
      set_color (cr, 0x808080);
      draw_line (cr, "(no picture)", strlen ("(no picture)"), x, y + h / 2.0, w, 12,
                 false, ALIGN_CENTER);
    }
  else
    {
      int dw, dh;
      bool crisp;
      tile_fit (t->width, t->height, &dw, &dh, &crisp);
      cairo_surface_t *img = surface_from_rgb (t->rgb, t->width, t->height);
      if (cairo_surface_status (img) != CAIRO_STATUS_SUCCESS)
        {
          cairo_surface_destroy (img);
          return DS_ERR_NOMEM;
        }
      cairo_save (cr);
      cairo_rectangle (cr, x, y, w, h);
      cairo_clip (cr);
      cairo_translate (cr, x, y);
      cairo_scale (cr, (double) dw / t->width, (double) dh / t->height);
      cairo_set_source_surface (cr, img, 0, 0);
      cairo_pattern_t *p = cairo_get_source (cr);
      cairo_pattern_set_filter (p, crisp ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
      cairo_pattern_set_extend (p, CAIRO_EXTEND_PAD);
      cairo_paint (cr);
      cairo_restore (cr);
      cairo_surface_destroy (img);
    }
  /* 1-pixel frame on the pixels just outside the picture. */
  set_color (cr, FRAME_COLOR);
  cairo_set_line_width (cr, 1);
  cairo_rectangle (cr, x - 0.5, y - 0.5, w + 1, h + 1);
  cairo_stroke (cr);

  int bx, by;
  tile_box (l, i, &bx, &by);
  set_color (cr, DS_SHEET_TEXT);
  for (int k = 0; k < l->caption_lines; k++)
    {
      const char *s;
      size_t len;
      if (!nth_line (t->caption, k, &s, &len))
        break;
      double base = by + DS_SHEET_TILE_SIZE + 4 + (k + 1) * DS_SHEET_CAPTION_LINE - 4;
      draw_line (cr, s, len, bx, base, l->cell_width, 12, false, ALIGN_CENTER);
    }
  return DS_OK;
}

DsStatus
ds_sheet_write_png (const char *path, const DsSheetTile *tiles, int n_tiles, int columns,
                    const char *title, DsError *err)
{
  assert (path);
  DsSheetLayout l;
  DsStatus st = ds_sheet_layout (tiles, n_tiles, columns, title, &l, err);
  if (st != DS_OK)
    {
      ds_error_prefix (err, st, "%s", path);
      return st;
    }

  cairo_surface_t *surface;
  cairo_t *cr;
  if ((st = new_canvas (path, l.width, l.height, &surface, &cr, err)) != DS_OK)
    return st;

  set_color (cr, DS_SHEET_TEXT);
  for (int k = 0;; k++)
    {
      const char *s;
      size_t len;
      if (!nth_line (title, k, &s, &len) || k >= count_lines (title))
        break;
      double base = DS_SHEET_MARGIN + (k + 1) * DS_SHEET_TITLE_LINE - 6;
      draw_line (cr, s, len, DS_SHEET_MARGIN, base, l.width - 2 * DS_SHEET_MARGIN,
                 k == 0 ? 16 : 13, k == 0, ALIGN_LEFT);
    }
  for (int i = 0; i < n_tiles && st == DS_OK; i++)
    if (draw_tile (cr, &l, &tiles[i], i) != DS_OK)
      st = ds_error_set (err, DS_ERR_NOMEM, "%s: cannot draw tile %d (%d×%d)", path, i,
                         tiles[i].width, tiles[i].height);
  cairo_destroy (cr);
  if (st == DS_OK)
    st = write_surface (surface, path, err);
  cairo_surface_destroy (surface);
  return st;
}

/* ---- CKA plot ---------------------------------------------------------- */

/* A round step (1, 2 or 5 times a power of ten) giving about `target` ticks. */
static double
nice_step (double range, int target)
{
  double raw = range / target;
  double mag = pow (10, floor (log10 (raw)));
  double norm = raw / mag;
  double f = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return f * mag;
}

typedef struct {
  double xmin, xmax;
} PlotRange;

static double
plot_x (const PlotRange *r, double s)
{
  return DS_PLOT_LEFT + (s - r->xmin) / (r->xmax - r->xmin) * (DS_PLOT_RIGHT - DS_PLOT_LEFT);
}

static double
plot_y (double v)
{
  return DS_PLOT_BOTTOM - v * (DS_PLOT_BOTTOM - DS_PLOT_TOP);
}

static void
draw_axes (cairo_t *cr, const PlotRange *r)
{
  char label[32];
  /* data area */
  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_rectangle (cr, DS_PLOT_LEFT, DS_PLOT_TOP, DS_PLOT_RIGHT - DS_PLOT_LEFT,
                   DS_PLOT_BOTTOM - DS_PLOT_TOP);
  cairo_fill (cr);
  cairo_set_line_width (cr, 1);

  /* y: 0 to 1 every 0.2 */
  for (int k = 0; k <= 5; k++)
    {
      double y = plot_y (k * 0.2);
      set_color (cr, 0xe2e2e2);
      cairo_move_to (cr, DS_PLOT_LEFT, y + 0.5);
      cairo_line_to (cr, DS_PLOT_RIGHT, y + 0.5);
      cairo_stroke (cr);
      set_color (cr, DS_SHEET_TEXT);
      cairo_move_to (cr, DS_PLOT_LEFT - 5, y + 0.5);
      cairo_line_to (cr, DS_PLOT_LEFT, y + 0.5);
      cairo_stroke (cr);
      snprintf (label, sizeof label, "%.1f", k * 0.2);
      draw_line (cr, label, strlen (label), DS_PLOT_LEFT - 48, y + 4, 40, 12, false,
                 ALIGN_CENTER);
    }

  /* x: round ticks inside [xmin, xmax] */
  double step = nice_step (r->xmax - r->xmin, 6);
  for (double t = ceil (r->xmin / step - 1e-9) * step; t <= r->xmax + step * 1e-9;
       t += step)
    {
      double v = round (t / step) * step;
      if (fabs (v) < step * 1e-9)
        v = 0; /* no "-0" */
      double x = floor (plot_x (r, v)) + 0.5;
      set_color (cr, 0xe2e2e2);
      cairo_move_to (cr, x, DS_PLOT_TOP);
      cairo_line_to (cr, x, DS_PLOT_BOTTOM);
      cairo_stroke (cr);
      set_color (cr, DS_SHEET_TEXT);
      cairo_move_to (cr, x, DS_PLOT_BOTTOM);
      cairo_line_to (cr, x, DS_PLOT_BOTTOM + 5);
      cairo_stroke (cr);
      snprintf (label, sizeof label, "%g", v);
      draw_line (cr, label, strlen (label), x - 30, DS_PLOT_BOTTOM + 20, 60, 12, false,
                 ALIGN_CENTER);
    }

  /* frame and axis labels */
  set_color (cr, DS_SHEET_TEXT);
  cairo_rectangle (cr, DS_PLOT_LEFT - 0.5, DS_PLOT_TOP - 0.5,
                   DS_PLOT_RIGHT - DS_PLOT_LEFT + 1, DS_PLOT_BOTTOM - DS_PLOT_TOP + 1);
  cairo_stroke (cr);
  const char *xl = "guidance scale s";
  draw_line (cr, xl, strlen (xl), DS_PLOT_LEFT, DS_PLOT_BOTTOM + 44,
             DS_PLOT_RIGHT - DS_PLOT_LEFT, 14, false, ALIGN_CENTER);
  cairo_save (cr);
  cairo_translate (cr, 22, (DS_PLOT_TOP + DS_PLOT_BOTTOM) / 2.0);
  cairo_rotate (cr, -M_PI / 2);
  draw_line (cr, "CKA", 3, -50, 0, 100, 14, false, ALIGN_CENTER);
  cairo_restore (cr);
}

static void
draw_series (cairo_t *cr, const PlotRange *r, const double *s, const double *v,
             const int *order, int n, uint32_t color)
{
  cairo_save (cr);
  cairo_rectangle (cr, DS_PLOT_LEFT - 5, DS_PLOT_TOP - 5, DS_PLOT_RIGHT - DS_PLOT_LEFT + 10,
                   DS_PLOT_BOTTOM - DS_PLOT_TOP + 10);
  cairo_clip (cr);
  set_color (cr, color);
  cairo_set_line_width (cr, 2);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  bool pen_down = false;
  for (int j = 0; j < n; j++)
    {
      int k = order[j];
      if (!isfinite (v[k]))
        {
          pen_down = false;
          continue;
        }
      if (pen_down)
        cairo_line_to (cr, plot_x (r, s[k]), plot_y (v[k]));
      else
        cairo_move_to (cr, plot_x (r, s[k]), plot_y (v[k]));
      pen_down = true;
    }
  cairo_stroke (cr);
  for (int k = 0; k < n; k++)
    if (isfinite (v[k]))
      {
        cairo_new_sub_path (cr);
        cairo_arc (cr, plot_x (r, s[k]), plot_y (v[k]), 3.5, 0, 2 * M_PI);
      }
  cairo_fill (cr);
  cairo_restore (cr);
}

static void
draw_legend (cairo_t *cr, const char *const *names, int n_series)
{
  const double x = DS_PLOT_RIGHT + 16, row = 20;
  const double text_w = DS_PLOT_WIDTH - DS_SHEET_MARGIN - (x + 32);
  int fit = (int) ((DS_PLOT_BOTTOM - DS_PLOT_TOP) / row);
  char fallback[48];
  for (int i = 0; i < n_series; i++)
    {
      double y = DS_PLOT_TOP + 10 + i * row;
      if (i == fit - 1 && n_series > fit)
        {
          snprintf (fallback, sizeof fallback, "… and %d more", n_series - i);
          set_color (cr, DS_SHEET_TEXT);
          draw_line (cr, fallback, strlen (fallback), x, y + 4, text_w + 32, 12, false,
                     ALIGN_LEFT);
          break;
        }
      set_color (cr, ds_plot_colors[i % 10]);
      cairo_set_line_width (cr, 2);
      cairo_move_to (cr, x, y);
      cairo_line_to (cr, x + 24, y);
      cairo_stroke (cr);
      cairo_arc (cr, x + 12, y, 3.5, 0, 2 * M_PI);
      cairo_fill (cr);
      const char *name = names ? names[i] : NULL;
      if (!name)
        {
          snprintf (fallback, sizeof fallback, "series %d", i + 1);
          name = fallback;
        }
      set_color (cr, DS_SHEET_TEXT);
      draw_line (cr, name, strlen (name), x + 32, y + 4, text_w, 12, false, ALIGN_LEFT);
    }
}

typedef struct {
  double s;
  int index;
} PlotPoint;

/* By s, ties in the caller's order. */
static int
compare_points (const void *a, const void *b)
{
  const PlotPoint *p = a, *q = b;
  if (p->s != q->s)
    return p->s < q->s ? -1 : 1;
  return (p->index > q->index) - (p->index < q->index);
}

DsStatus
ds_plot_cka_png (const char *path, const double *s_values,
                 const double *const *cka_values, int n_series,
                 const char *const *series_names, int n_points, const char *title,
                 DsError *err)
{
  assert (path);
  if (n_series < 1 || n_points < 1 || !s_values || !cka_values)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: CKA plot of %d series × %d points; expected at least 1 × 1",
                         path, n_series, n_points);
  PlotRange r = { INFINITY, -INFINITY };
  for (int j = 0; j < n_points; j++)
    {
      if (!isfinite (s_values[j]))
        return ds_error_set (err, DS_ERR_INVALID,
                             "%s: guidance scale s[%d] = %g; expected a finite number",
                             path, j, s_values[j]);
      r.xmin = fmin (r.xmin, s_values[j]);
      r.xmax = fmax (r.xmax, s_values[j]);
    }
  if (r.xmax - r.xmin < 1e-12 * fmax (1, fabs (r.xmax)))
    {
      r.xmin -= 1;
      r.xmax += 1;
    }
  double pad = 0.04 * (r.xmax - r.xmin);
  r.xmin -= pad;
  r.xmax += pad;
  for (int i = 0; i < n_series; i++)
    assert (cka_values[i]);

  int *order = malloc ((size_t) n_points * sizeof *order);
  PlotPoint *points = malloc ((size_t) n_points * sizeof *points);
  if (!order || !points)
    {
      free (order);
      free (points);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  for (int j = 0; j < n_points; j++)
    points[j] = (PlotPoint) { s_values[j], j };
  qsort (points, (size_t) n_points, sizeof *points, compare_points);
  for (int j = 0; j < n_points; j++)
    order[j] = points[j].index;
  free (points);

  cairo_surface_t *surface;
  cairo_t *cr;
  DsStatus st = new_canvas (path, DS_PLOT_WIDTH, DS_PLOT_HEIGHT, &surface, &cr, err);
  if (st != DS_OK)
    {
      free (order);
      return st;
    }
  draw_axes (cr, &r);
  for (int i = 0; i < n_series; i++)
    draw_series (cr, &r, s_values, cka_values[i], order, n_points, ds_plot_colors[i % 10]);
  draw_legend (cr, series_names, n_series);
  set_color (cr, DS_SHEET_TEXT);
  for (int k = 0; k < 2; k++)
    {
      const char *s;
      size_t len;
      if (!nth_line (title, k, &s, &len) || k >= count_lines (title))
        break;
      draw_line (cr, s, len, DS_SHEET_MARGIN, k == 0 ? 22 : 42,
                 DS_PLOT_WIDTH - 2 * DS_SHEET_MARGIN, k == 0 ? 16 : 12, k == 0, ALIGN_LEFT);
    }
  cairo_destroy (cr);
  st = write_surface (surface, path, err);
  cairo_surface_destroy (surface);
  free (order);
  return st;
}

void
ds_sheet_cleanup (void)
{
  cairo_debug_reset_static_data ();
#ifdef DS_HAVE_FONTCONFIG
  FcFini ();
#endif
}
