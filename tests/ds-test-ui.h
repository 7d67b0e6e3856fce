/* ds-test-widget-pixels.h: helpers for the ui widget tests: skip without a
 * display, show a widget in a window and wait for its layout, render it to
 * pixels through the window's renderer and read them back. Header-only. */
#pragma once

#include <gtk/gtk.h>
#include <stdio.h>
#include <stdlib.h>

/* g_test_init first, then this: exits 77 when there is no display. */
static inline void
ds_test_ui_init_or_skip (void)
{
  if (g_getenv ("DISPLAY") == NULL && g_getenv ("WAYLAND_DISPLAY") == NULL)
    {
      printf ("no DISPLAY: skipping the ui test (run it under xvfb-run)\n");
      exit (77);
    }
  if (!gtk_init_check ())
    {
      printf ("gtk_init_check failed (no usable display): skipping\n");
      exit (77);
    }
}

static gboolean
ds_test_ui_timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the main loop for about ms milliseconds. */
static inline void
ds_test_ui_spin (guint ms)
{
  gboolean done = FALSE;
  guint id = g_timeout_add (ms, ds_test_ui_timeout_cb, &done);

  while (!done)
    g_main_context_iteration (NULL, TRUE);
  (void) id;
}

/* Runs the main loop until widget is mapped with a size (5 s at most), then
 * a little longer so pending relayouts settle. */
static inline void
ds_test_ui_wait_for_layout (GtkWidget *widget)
{
  gint64 end = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while ((!gtk_widget_get_mapped (widget) || gtk_widget_get_width (widget) <= 0)
         && g_get_monotonic_time () < end)
    ds_test_ui_spin (10);
  ds_test_ui_spin (100);
  g_assert_true (gtk_widget_get_mapped (widget));
}

static inline GtkWidget *
ds_test_ui_window (GtkWidget *child,
                   int        width,
                   int        height)
{
  GtkWidget *window = gtk_window_new ();

  gtk_window_set_default_size (GTK_WINDOW (window), width, height);
  gtk_window_set_child (GTK_WINDOW (window), child);
  gtk_window_present (GTK_WINDOW (window));
  ds_test_ui_wait_for_layout (child);
  return window;
}

typedef struct
{
  int     width;
  int     height;
  gsize   stride;
  guchar *data;  /* CAIRO_FORMAT_ARGB32: premultiplied, native-endian words */
} DsTestPixels;

/* Renders widget as it is now: its snapshot vfunc (its own drawing and its
 * children's, not its parents'), not the last frame's cached render nodes
 * (GtkWidgetPaintable would show those), through the window's renderer. */
static inline DsTestPixels *
ds_test_ui_render (GtkWidget *widget)
{
  DsTestPixels *px = g_new0 (DsTestPixels, 1);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  GskRenderer *renderer = gtk_native_get_renderer (gtk_widget_get_native (widget));
  GskRenderNode *node;
  GdkTexture *texture;

  px->width = gtk_widget_get_width (widget);
  px->height = gtk_widget_get_height (widget);
  g_assert_cmpint (px->width, >, 0);
  g_assert_cmpint (px->height, >, 0);
  GTK_WIDGET_GET_CLASS (widget)->snapshot (widget, snapshot);
  node = gtk_snapshot_free_to_node (snapshot);
  g_assert_nonnull (node);
  g_assert_nonnull (renderer);
  texture = gsk_renderer_render_texture (renderer, node,
                                         &GRAPHENE_RECT_INIT (0, 0, px->width, px->height));
  px->stride = (gsize) px->width * 4;
  px->data = g_malloc0 (px->stride * px->height);
  gdk_texture_download (texture, px->data, px->stride);
  g_object_unref (texture);
  gsk_render_node_unref (node);
  return px;
}

static inline void
ds_test_pixels_free (DsTestPixels *px)
{
  g_free (px->data);
  g_free (px);
}

/* The pixel at (x, y) as un-premultiplied 0..255 r, g, b and alpha a. */
static inline void
ds_test_pixel (const DsTestPixels *px,
               int                 x,
               int                 y,
               int                *r,
               int                *g,
               int                *b,
               int                *a)
{
  guint32 p;

  g_assert_cmpint (x, >=, 0);
  g_assert_cmpint (y, >=, 0);
  g_assert_cmpint (x, <, px->width);
  g_assert_cmpint (y, <, px->height);
  p = *(const guint32 *) (px->data + (gsize) y * px->stride + (gsize) x * 4);
  *a = (p >> 24) & 0xff;
  *r = (p >> 16) & 0xff;
  *g = (p >> 8) & 0xff;
  *b = p & 0xff;
  if (*a > 0 && *a < 255)
    {
      *r = *r * 255 / *a;
      *g = *g * 255 / *a;
      *b = *b * 255 / *a;
    }
}

static inline gboolean
ds_test_pixel_near (const DsTestPixels *px,
                    int                 x,
                    int                 y,
                    int                 r,
                    int                 g,
                    int                 b,
                    int                 tolerance)
{
  int pr, pg, pb, pa;

  ds_test_pixel (px, x, y, &pr, &pg, &pb, &pa);
  if (pa != 255 || abs (pr - r) > tolerance || abs (pg - g) > tolerance
      || abs (pb - b) > tolerance)
    {
      g_test_message ("pixel (%d, %d) = rgba(%d, %d, %d, %d), expected rgb(%d, %d, %d) ± %d",
                      x, y, pr, pg, pb, pa, r, g, b, tolerance);
      return FALSE;
    }
  return TRUE;
}

/* How many pixels in the rectangle are opaque and within tolerance of rgb. */
static inline int
ds_test_count_color (const DsTestPixels *px,
                     int                 x0,
                     int                 y0,
                     int                 x1,
                     int                 y1,
                     int                 r,
                     int                 g,
                     int                 b,
                     int                 tolerance)
{
  int n = 0;

  for (int y = MAX (y0, 0); y < MIN (y1, px->height); y++)
    for (int x = MAX (x0, 0); x < MIN (x1, px->width); x++)
      {
        int pr, pg, pb, pa;

        ds_test_pixel (px, x, y, &pr, &pg, &pb, &pa);
        if (pa == 255 && abs (pr - r) <= tolerance && abs (pg - g) <= tolerance
            && abs (pb - b) <= tolerance)
          n++;
      }
  return n;
}

/* How many pixels are not fully transparent. */
static inline int
ds_test_count_painted (const DsTestPixels *px)
{
  int n = 0;

  for (int y = 0; y < px->height; y++)
    for (int x = 0; x < px->width; x++)
      if ((*(const guint32 *) (px->data + (gsize) y * px->stride + (gsize) x * 4) >> 24) != 0)
        n++;
  return n;
}

/* A w×h texture of one colour. */
static inline GdkTexture *
ds_test_solid_texture (int    w,
                       int    h,
                       guint8 r,
                       guint8 g,
                       guint8 b)
{
  guint8 *data = g_malloc ((gsize) w * h * 4);
  GBytes *bytes;
  GdkTexture *texture;

  for (int i = 0; i < w * h; i++)
    {
      data[4 * i + 0] = r;
      data[4 * i + 1] = g;
      data[4 * i + 2] = b;
      data[4 * i + 3] = 255;
    }
  bytes = g_bytes_new_take (data, (gsize) w * h * 4);
  texture = gdk_memory_texture_new (w, h, GDK_MEMORY_R8G8B8A8, bytes, (gsize) w * 4);
  g_bytes_unref (bytes);
  return texture;
}
