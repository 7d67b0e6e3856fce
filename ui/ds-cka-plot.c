/* ds-cka-plot.c: a cairo line plot of CKA(X_s, X_uncond) against the guidance
 * scale s: y in [0, 1], x from the smallest to the largest s, ticks and axis
 * labels, one coloured curve per feature block with a legend, and a dashed
 * vertical marker at the current s. */
#include "ds-cka-plot.h"

#include <math.h>

#include "ds-resources.h"

#define EMPTY_TEXT "CKA vs s appears when maps are computed"

struct _DsCkaPlot
{
  GtkWidget  parent_instance;

  GtkWidget *area;

  double    *s;         /* [n_s] */
  int        n_s;
  double    *values;    /* [n_curves][n_s] */
  char     **labels;    /* n_curves strings */
  int        n_curves;
  double     marker;    /* NaN: none */
};

G_DEFINE_FINAL_TYPE (DsCkaPlot, ds_cka_plot, GTK_TYPE_WIDGET)

/* Tableau 10 */
static const guint32 palette[] = {
  0x4e79a7, 0xf28e2b, 0xe15759, 0x76b7b2, 0x59a14f,
  0xedc948, 0xb07aa1, 0xff9da7, 0x9c755f, 0xbab0ac,
};

void
ds_cka_plot_get_color (int      i,
                       GdkRGBA *color)
{
  guint32 c;

  g_return_if_fail (color != NULL);

  c = palette[(guint) MAX (i, 0) % G_N_ELEMENTS (palette)];
  color->red = ((c >> 16) & 0xff) / 255.0f;
  color->green = ((c >> 8) & 0xff) / 255.0f;
  color->blue = (c & 0xff) / 255.0f;
  color->alpha = 1.0f;
}

/* floor, ceil and round without libm (the ui library links GTK only) */
static double
fl (double x)
{
  double t = (double) (gint64) x;

  return t > x ? t - 1.0 : t;
}

static double
cl (double x)
{
  double t = (double) (gint64) x;

  return t < x ? t + 1.0 : t;
}

static double
rnd (double x)
{
  return fl (x + 0.5);
}

static double
nice_step (double range)
{
  double raw = range / 5.0, mag = 1.0, norm;

  if (!(raw > 0.0) || !isfinite (raw))
    return 1.0;
  while (mag * 10.0 <= raw)
    mag *= 10.0;
  while (mag > raw)
    mag /= 10.0;
  norm = raw / mag;
  if (norm < 1.5)
    return mag;
  if (norm < 3.0)
    return 2.0 * mag;
  if (norm < 7.0)
    return 5.0 * mag;
  return 10.0 * mag;
}

static void
x_range (DsCkaPlot *self,
         double    *lo,
         double    *hi)
{
  double a = INFINITY, b = -INFINITY;

  for (int i = 0; i < self->n_s; i++)
    if (isfinite (self->s[i]))
      {
        a = MIN (a, self->s[i]);
        b = MAX (b, self->s[i]);
      }
  if (!isfinite (a))
    a = 0.0, b = 1.0;
  if (b - a < 1e-9)
    a -= 0.5, b += 0.5;
  *lo = a;
  *hi = b;
}

static PangoLayout *
make_layout (GtkWidget  *widget,
             const char *text)
{
  return gtk_widget_create_pango_layout (widget, text);
}

static void
show_text (cairo_t     *cr,
           PangoLayout *layout,
           double       x,
           double       y,
           double       xalign,
           double       yalign)
{
  int w, h;

  pango_layout_get_pixel_size (layout, &w, &h);
  cairo_move_to (cr, rnd (x - xalign * w), rnd (y - yalign * h));
  pango_cairo_show_layout (cr, layout);
}

static void
draw_plot (GtkDrawingArea *area,
           cairo_t        *cr,
           int             width,
           int             height,
           gpointer        user_data)
{
  DsCkaPlot *self = user_data;
  GtkWidget *widget = GTK_WIDGET (area);
  GdkRGBA fg;
  double x_lo, x_hi, step, left, right, top = 10, bottom, pw, ph;
  int tick_w, tick_h, legend_w = 0, legend_row_h = 0;
  g_autoptr (PangoLayout) probe = NULL;
  g_autoptr (PangoLayout) xlabel = NULL;
  g_autoptr (PangoLayout) ylabel = NULL;

  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  gtk_style_context_get_color (gtk_widget_get_style_context (widget), &fg);
  G_GNUC_END_IGNORE_DEPRECATIONS

  if (self->n_curves == 0 || self->n_s == 0)
    {
      g_autoptr (PangoLayout) layout = make_layout (widget, EMPTY_TEXT);

      pango_layout_set_width (layout, MAX (width - 24, 1) * PANGO_SCALE);
      pango_layout_set_wrap (layout, PANGO_WRAP_WORD);
      pango_layout_set_alignment (layout, PANGO_ALIGN_CENTER);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.55);
      show_text (cr, layout, width / 2.0, height / 2.0, 0.5, 0.5);
      return;
    }

  /* margins from the text sizes */
  probe = make_layout (widget, "0.75");
  pango_layout_get_pixel_size (probe, &tick_w, &tick_h);
  xlabel = make_layout (widget, "guidance scale s");
  ylabel = make_layout (widget, "CKA");
  for (int c = 0; c < self->n_curves; c++)
    {
      g_autoptr (PangoLayout) l = make_layout (widget, self->labels[c]);
      int w, h;

      pango_layout_set_width (l, (int) (width * 0.4) * PANGO_SCALE);
      pango_layout_set_ellipsize (l, PANGO_ELLIPSIZE_END);
      pango_layout_get_pixel_size (l, &w, &h);
      legend_w = MAX (legend_w, w);
      legend_row_h = MAX (legend_row_h, h);
    }
  legend_w += 26;
  left = tick_h + 6 + tick_w + 8;
  right = width - legend_w - 16;
  bottom = height - (tick_h + 4 + tick_h + 8);
  pw = right - left;
  ph = bottom - top;
  if (pw < 20 || ph < 20)
    return;

  x_range (self, &x_lo, &x_hi);
#define PX(x) (left + ((x) - x_lo) / (x_hi - x_lo) * pw)
#define PY(y) (bottom - (y) * ph)

  /* grid, ticks and tick labels */
  cairo_set_line_width (cr, 1.0);
  for (int i = 0; i <= 4; i++)
    {
      double y = i / 4.0;
      g_autofree char *text = g_strdup_printf ("%.2f", y);
      g_autoptr (PangoLayout) l = make_layout (widget, text);

      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.12);
      cairo_move_to (cr, left, rnd (PY (y)) + 0.5);
      cairo_line_to (cr, right, rnd (PY (y)) + 0.5);
      cairo_stroke (cr);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.8);
      show_text (cr, l, left - 6, PY (y), 1.0, 0.5);
    }
  step = nice_step (x_hi - x_lo);
  for (double x = cl (x_lo / step - 1e-9) * step; x <= x_hi + 1e-9 * step; x += step)
    {
      int decimals = 0;
      g_autofree char *text = NULL;

      for (double t = step; t < 1.0 - 1e-9 && decimals < 6; t *= 10.0)
        decimals++;
      text = g_strdup_printf ("%.*f", decimals, fabs (x) < 1e-12 ? 0.0 : x);
      g_autoptr (PangoLayout) l = make_layout (widget, text);
      double px = rnd (PX (x)) + 0.5;

      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.12);
      cairo_move_to (cr, px, top);
      cairo_line_to (cr, px, bottom);
      cairo_stroke (cr);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.8);
      cairo_move_to (cr, px, bottom);
      cairo_line_to (cr, px, bottom + 4);
      cairo_stroke (cr);
      show_text (cr, l, px, bottom + 4, 0.5, 0.0);
    }

  /* axes and their labels */
  cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.8);
  cairo_move_to (cr, rnd (left) + 0.5, top);
  cairo_line_to (cr, rnd (left) + 0.5, rnd (bottom) + 0.5);
  cairo_line_to (cr, right, rnd (bottom) + 0.5);
  cairo_stroke (cr);
  show_text (cr, xlabel, left + pw / 2.0, height - 4, 0.5, 1.0);
  cairo_save (cr);
  cairo_translate (cr, 2, top + ph / 2.0);
  cairo_rotate (cr, -G_PI / 2.0);
  show_text (cr, ylabel, 0, 0, 0.5, 0.0);
  cairo_restore (cr);

  /* marker at the current s */
  if (isfinite (self->marker) && self->marker >= x_lo && self->marker <= x_hi)
    {
      double dash[] = { 4.0, 3.0 };
      double px = rnd (PX (self->marker)) + 0.5;

      cairo_save (cr);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.7);
      cairo_set_dash (cr, dash, 2, 0);
      cairo_move_to (cr, px, top);
      cairo_line_to (cr, px, bottom);
      cairo_stroke (cr);
      cairo_restore (cr);
    }

  /* curves; NaN values break a curve */
  cairo_save (cr);
  cairo_rectangle (cr, left, top - 2, pw + 2, ph + 4);
  cairo_clip (cr);
  cairo_set_line_width (cr, 2.0);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
  for (int c = 0; c < self->n_curves; c++)
    {
      const double *v = self->values + (gsize) c * self->n_s;
      gboolean pen_down = FALSE;
      GdkRGBA color;

      ds_cka_plot_get_color (c, &color);
      gdk_cairo_set_source_rgba (cr, &color);
      cairo_new_path (cr);
      for (int i = 0; i < self->n_s; i++)
        {
          double y;

          if (!isfinite (v[i]) || !isfinite (self->s[i]))
            {
              pen_down = FALSE;
              continue;
            }
          y = CLAMP (v[i], 0.0, 1.0);
          if (pen_down)
            cairo_line_to (cr, PX (self->s[i]), PY (y));
          else
            {
              cairo_move_to (cr, PX (self->s[i]), PY (y));
              cairo_arc (cr, PX (self->s[i]), PY (y), 1.0, 0, 2 * G_PI);  /* a lone point shows */
              cairo_move_to (cr, PX (self->s[i]), PY (y));
            }
          pen_down = TRUE;
        }
      cairo_stroke (cr);
    }
  cairo_restore (cr);

  /* legend */
  for (int c = 0; c < self->n_curves; c++)
    {
      g_autoptr (PangoLayout) l = make_layout (widget, self->labels[c]);
      double y = top + c * (legend_row_h + 4) + legend_row_h / 2.0;
      double x = right + 16;
      GdkRGBA color;

      if (y + legend_row_h / 2.0 > height)
        break;
      pango_layout_set_width (l, (int) (width * 0.4) * PANGO_SCALE);
      pango_layout_set_ellipsize (l, PANGO_ELLIPSIZE_END);
      ds_cka_plot_get_color (c, &color);
      gdk_cairo_set_source_rgba (cr, &color);
      cairo_set_line_width (cr, 3.0);
      cairo_move_to (cr, x, rnd (y) + 0.5);
      cairo_line_to (cr, x + 18, rnd (y) + 0.5);
      cairo_stroke (cr);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha);
      show_text (cr, l, x + 24, y, 0.0, 0.5);
    }
#undef PX
#undef PY
}

/* A text version of the plot for assistive technologies. */
static void
update_description (DsCkaPlot *self)
{
  g_autoptr (GString) text = g_string_new (NULL);

  if (self->n_curves == 0 || self->n_s == 0)
    g_string_append (text, EMPTY_TEXT);
  for (int c = 0; c < self->n_curves; c++)
    {
      g_string_append_printf (text, "%s%s:", c > 0 ? "; " : "", self->labels[c]);
      for (int i = 0; i < self->n_s; i++)
        g_string_append_printf (text, "%s s=%g CKA=%.3f", i > 0 ? "," : "",
                                self->s[i], self->values[(gsize) c * self->n_s + i]);
    }
  gtk_accessible_update_property (GTK_ACCESSIBLE (self),
                                  GTK_ACCESSIBLE_PROPERTY_DESCRIPTION, text->str, -1);
}

GtkWidget *
ds_cka_plot_new (void)
{
  return g_object_new (DS_TYPE_CKA_PLOT, NULL);
}

void
ds_cka_plot_set_curves (DsCkaPlot         *self,
                        const double      *s,
                        int                n_s,
                        const double      *values,
                        const char *const *labels,
                        int                n_curves)
{
  g_return_if_fail (DS_IS_CKA_PLOT (self));
  g_return_if_fail (n_s >= 0 && n_curves >= 0);
  g_return_if_fail (n_s == 0 || s != NULL);
  g_return_if_fail (n_s == 0 || n_curves == 0 || values != NULL);

  g_clear_pointer (&self->s, g_free);
  g_clear_pointer (&self->values, g_free);
  g_clear_pointer (&self->labels, g_strfreev);
  self->n_s = n_s;
  self->n_curves = n_curves;
  if (n_s > 0)
    self->s = g_memdup2 (s, (gsize) n_s * sizeof *s);
  if (n_s > 0 && n_curves > 0)
    self->values = g_memdup2 (values, (gsize) n_s * n_curves * sizeof *values);
  self->labels = g_new0 (char *, (gsize) n_curves + 1);
  for (int c = 0; c < n_curves; c++)
    self->labels[c] = labels != NULL && labels[c] != NULL
                    ? g_strdup (labels[c]) : g_strdup_printf ("curve %d", c + 1);
  update_description (self);
  gtk_widget_queue_draw (self->area);
}

void
ds_cka_plot_set_marker (DsCkaPlot *self,
                        double     s)
{
  g_return_if_fail (DS_IS_CKA_PLOT (self));

  if (s == self->marker || (isnan (s) && isnan (self->marker)))
    return;
  self->marker = s;
  gtk_widget_queue_draw (self->area);
}

int
ds_cka_plot_get_n_curves (DsCkaPlot *self)
{
  g_return_val_if_fail (DS_IS_CKA_PLOT (self), 0);
  return self->n_curves;
}

static void
ds_cka_plot_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), DS_TYPE_CKA_PLOT);
  G_OBJECT_CLASS (ds_cka_plot_parent_class)->dispose (object);
}

static void
ds_cka_plot_finalize (GObject *object)
{
  DsCkaPlot *self = DS_CKA_PLOT (object);

  g_free (self->s);
  g_free (self->values);
  g_strfreev (self->labels);
  G_OBJECT_CLASS (ds_cka_plot_parent_class)->finalize (object);
}

static void
ds_cka_plot_class_init (DsCkaPlotClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = ds_cka_plot_dispose;
  object_class->finalize = ds_cka_plot_finalize;

  /* link the resource bundle (its constructor registers it) */
  (void) ds_get_resource ();
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-cka-plot.ui");
  gtk_widget_class_bind_template_child (widget_class, DsCkaPlot, area);
  gtk_widget_class_set_css_name (widget_class, "ckaplot");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
ds_cka_plot_init (DsCkaPlot *self)
{
  self->marker = NAN;
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (self->area), draw_plot, self, NULL);
  update_description (self);
}
