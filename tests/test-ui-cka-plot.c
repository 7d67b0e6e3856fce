/* test-ui-cka-plot.c: DsCkaPlot under a display: the empty state, one
 * coloured curve per block at the right height, NaN gaps, and the marker. */
#include <math.h>

#include "ds-cka-plot.h"
#include "ds-test-ui.h"

static void
color_bytes (int  i,
             int *r,
             int *g,
             int *b)
{
  GdkRGBA c;

  ds_cka_plot_get_color (i, &c);
  *r = (int) (c.red * 255 + 0.5f);
  *g = (int) (c.green * 255 + 0.5f);
  *b = (int) (c.blue * 255 + 0.5f);
}

/* The mean row of the pixels of colour i in columns [x0, x1). */
static double
mean_row (const DsTestPixels *px,
          int                 i,
          int                 x0,
          int                 x1,
          int                *count)
{
  int r, g, b;
  double sum = 0;

  color_bytes (i, &r, &g, &b);
  *count = 0;
  for (int y = 0; y < px->height; y++)
    for (int x = x0; x < x1; x++)
      if (ds_test_count_color (px, x, y, x + 1, y + 1, r, g, b, 8) == 1)
        {
          sum += y;
          (*count)++;
        }
  return *count > 0 ? sum / *count : NAN;
}

static void
test_plot (void)
{
  GtkWidget *plot = ds_cka_plot_new ();
  DsCkaPlot *self = DS_CKA_PLOT (plot);
  const double s[] = { 1.0, 3.0, 5.0, 7.5, 10.0 };
  const double values[] = {
    0.9, 0.9, 0.9, 0.9, 0.9,          /* high */
    0.2, 0.2, 0.2, 0.2, 0.2,          /* low */
    0.5, 0.5, NAN, 0.5, 0.5,          /* with a gap */
  };
  const char *labels[] = { "U-L1-R1-B0-Cross-Q", "U-L2-R2-Res-Out", "D-L0-R0-B0-Self-K" };
  GtkWidget *window;
  DsTestPixels *px, *px2;
  int n0, n1, n2, r, g, b, diff = 0;
  double y0, y1, y2;

  window = ds_test_ui_window (plot, 600, 300);
  g_assert_cmpint (ds_cka_plot_get_n_curves (self), ==, 0);

  /* empty: the hint text and no curve colour */
  px = ds_test_ui_render (plot);
  g_assert_cmpint (ds_test_count_painted (px), >, 50);
  color_bytes (0, &r, &g, &b);
  g_assert_cmpint (ds_test_count_color (px, 0, 0, px->width, px->height, r, g, b, 8), ==, 0);
  ds_test_pixels_free (px);

  ds_cka_plot_set_curves (self, s, 5, values, labels, 3);
  g_assert_cmpint (ds_cka_plot_get_n_curves (self), ==, 3);
  ds_test_ui_wait_ms (100);
  px = ds_test_ui_render (plot);

  /* each curve is drawn in its colour; the higher CKA sits higher */
  y0 = mean_row (px, 0, 0, px->width / 2, &n0);
  y1 = mean_row (px, 1, 0, px->width / 2, &n1);
  y2 = mean_row (px, 2, 0, px->width / 2, &n2);
  g_test_message ("curve rows: %.1f (%d px), %.1f (%d px), %.1f (%d px)", y0, n0, y1, n1, y2, n2);
  g_assert_cmpint (n0, >, 40);
  g_assert_cmpint (n1, >, 40);
  g_assert_cmpint (n2, >, 10);
  g_assert_cmpfloat (y0, <, y2);
  g_assert_cmpfloat (y2, <, y1);
  /* linear in CKA: 0.5 halfway between 0.2 and 0.9 in proportion */
  g_assert_cmpfloat (fabs ((y2 - y0) / (y1 - y0) - 0.4 / 0.7), <, 0.05);

  /* the marker changes pixels, in one column only */
  ds_cka_plot_set_marker (self, 7.5);
  ds_test_ui_wait_ms (50);
  px2 = ds_test_ui_render (plot);
  {
    int min_x = px->width, max_x = -1;

    for (int y = 0; y < px->height; y++)
      for (int x = 0; x < px->width; x++)
        {
          guint32 p1 = *(guint32 *) (px->data + y * px->stride + x * 4);
          guint32 p2 = *(guint32 *) (px2->data + y * px2->stride + x * 4);

          if (p1 != p2)
            {
              diff++;
              min_x = MIN (min_x, x);
              max_x = MAX (max_x, x);
            }
        }
    g_test_message ("marker changed %d px in columns %d..%d", diff, min_x, max_x);
    g_assert_cmpint (diff, >, 20);
    g_assert_cmpint (max_x - min_x, <=, 2);
    g_assert_cmpint (min_x, >, px->width / 2);
  }
  ds_test_pixels_free (px2);
  ds_test_pixels_free (px);

  /* back to empty */
  ds_cka_plot_set_curves (self, NULL, 0, NULL, NULL, 0);
  g_assert_cmpint (ds_cka_plot_get_n_curves (self), ==, 0);
  ds_test_ui_wait_ms (50);
  px = ds_test_ui_render (plot);
  g_assert_cmpint (ds_test_count_color (px, 0, 0, px->width, px->height, r, g, b, 8), ==, 0);
  ds_test_pixels_free (px);

  gtk_window_destroy (GTK_WINDOW (window));
}

int
main (int   argc,
      char *argv[])
{
  ds_test_ui_init_or_skip (&argc, &argv);

  g_test_add_func ("/ui/cka-plot/plot", test_plot);
  return g_test_run ();
}
