/* ds-test-ui.h: helpers for the ui widget tests (tests/test-ui-*.c): skip
 * without a display, run the main loop, find widgets by type, label or
 * button label, press a widget, make its window the active one, show a
 * widget in a window (and free it with it), render a widget to pixels
 * through the window's renderer and read them back. Header-only. */
#pragma once

#include <gtk/gtk.h>
#include <stdio.h>
#include <stdlib.h>

/* g_test_init, then gtk_init: exits 77 when there is no display. */
static inline void
ds_test_ui_init_or_skip (int    *argc,
                         char ***argv)
{
  g_test_init (argc, argv, NULL);
  if (g_getenv ("DISPLAY") == NULL && g_getenv ("WAYLAND_DISPLAY") == NULL)
    {
      printf ("no DISPLAY: skipping the ui test (run it under xvfb-run)\n");
      exit (77);
    }
  if (!gtk_init_check ())
    {
      printf ("gtk_init_check failed (no usable display, DISPLAY=%s): skipping\n",
              g_getenv ("DISPLAY") ? g_getenv ("DISPLAY") : "(unset)");
      exit (77);
    }
}

/* For tests that check accessible properties: the in-process test AT context
 * records them without a bus (the suite's GTK_A11Y=none has none); then
 * ds_test_ui_init_or_skip(). */
static inline void
ds_test_ui_init_a11y_or_skip (int    *argc,
                              char ***argv)
{
  g_setenv ("GTK_A11Y", "test", TRUE);
  ds_test_ui_init_or_skip (argc, argv);
}

/* A GSourceFunc that sets the gboolean at data and runs once. */
static inline gboolean
ds_test_ui_set_flag (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the main loop for about ms milliseconds (blocking: timers, frames and
 * X events all get their turn). */
static inline void
ds_test_ui_wait_ms (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, ds_test_ui_set_flag, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

/* Dispatches what is pending now, without waiting (50 iterations at most). */
static inline void
ds_test_ui_drain (void)
{
  for (int i = 0; i < 50 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
}

/* Runs the main loop until widget is mapped with a size (5 s at most), then
 * a little longer so pending relayouts settle. */
static inline void
ds_test_ui_wait_for_layout (GtkWidget *widget)
{
  gint64 end = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while ((!gtk_widget_get_mapped (widget) || gtk_widget_get_width (widget) <= 0)
         && g_get_monotonic_time () < end)
    ds_test_ui_wait_ms (10);
  ds_test_ui_wait_ms (100);
  g_assert_true (gtk_widget_get_mapped (widget));
}

/* A new window holding child, presented, of default size width×height
 * (-1, -1: none set, the child's own size); returns at once. */
static inline GtkWidget *
ds_test_ui_window_new (GtkWidget *child,
                       int        width,
                       int        height)
{
  GtkWidget *window = gtk_window_new ();

  if (width >= 0 || height >= 0)
    gtk_window_set_default_size (GTK_WINDOW (window), width, height);
  gtk_window_set_child (GTK_WINDOW (window), child);
  gtk_window_present (GTK_WINDOW (window));
  return window;
}

/* The same, waiting until child is laid out (ds_test_ui_wait_for_layout). */
static inline GtkWidget *
ds_test_ui_window (GtkWidget *child,
                   int        width,
                   int        height)
{
  GtkWidget *window = ds_test_ui_window_new (child, width, height);

  ds_test_ui_wait_for_layout (child);
  return window;
}

/* A widget shown in its own window, owned by the test: ds_test_ui_show()
 * makes one, ds_test_ui_free() (or g_autoptr (DsTestUiWidget)) destroys the
 * window and checks the widget is finalized. */
typedef GtkWidget DsTestUiWidget;

/* Takes a reference on widget, puts it in a presented window (default size
 * width×height, or -1, -1), dispatches what is pending and
 * returns widget. A GtkButton reacts to activation only once realized. */
static inline GtkWidget *
ds_test_ui_show (GtkWidget *widget,
                 int        width,
                 int        height)
{
  g_object_ref (widget);
  ds_test_ui_window_new (widget, width, height);
  ds_test_ui_drain ();
  return widget;
}

static inline void
ds_test_ui_free (GtkWidget *widget)
{
  GtkRoot *root = gtk_widget_get_root (widget);

  if (root)
    gtk_window_destroy (GTK_WINDOW (root));
  ds_test_ui_drain ();
  g_object_add_weak_pointer (G_OBJECT (widget), (gpointer *) &widget);
  g_object_unref (widget);
  g_assert_null (widget);  /* nothing else holds it: finalized */
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (DsTestUiWidget, ds_test_ui_free)

/* Keyboard focus moves only inside the active window (an inactive one
 * does not update its focus chain). Under a shared Xvfb without a window
 * manager (meson runs the tests in parallel) another test's window may
 * hold the X focus, and gtk_window_present() asks for it with a stale
 * timestamp that X ignores; asking with the current time takes it back.
 * Tries for about 3 s; FALSE if the window never became active. */
static inline gboolean
ds_test_ui_ensure_active (GtkWidget *window)
{
  for (int i = 0; i < 30 && !gtk_window_is_active (GTK_WINDOW (window)); i++)
    {
      GdkSurface *surface = gtk_native_get_surface (GTK_NATIVE (window));

      if (surface && GDK_IS_TOPLEVEL (surface))
        gdk_toplevel_focus (GDK_TOPLEVEL (surface), GDK_CURRENT_TIME);
      ds_test_ui_wait_ms (100);
    }
  return gtk_window_is_active (GTK_WINDOW (window));
}

/* Activates widget as Enter/space (or its mnemonic) does and waits 400 ms
 * for the press to end (GtkButton emits ::clicked after a short visual
 * press). Returns whether it was activated: FALSE for an insensitive one. */
static inline gboolean
ds_test_ui_press (GtkWidget *widget)
{
  gboolean activated = gtk_widget_activate (widget);

  ds_test_ui_wait_ms (400);
  return activated;
}

static inline void
ds_test_ui_collect (GtkWidget *widget,
                    GType      type,
                    GPtrArray *out)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (widget, type))
    g_ptr_array_add (out, widget);
  for (GtkWidget *child = gtk_widget_get_first_child (widget);
       child; child = gtk_widget_get_next_sibling (child))
    ds_test_ui_collect (child, type, out);
}

/* widget and its descendants of type, depth first in child order (widget
 * itself first); free with g_ptr_array_unref. */
static inline GPtrArray *
ds_test_ui_find_all (GtkWidget *widget,
                     GType      type)
{
  GPtrArray *out = g_ptr_array_new ();

  ds_test_ui_collect (widget, type, out);
  return out;
}

/* The first of ds_test_ui_find_all(); asserts there is one. */
static inline GtkWidget *
ds_test_ui_find_one (GtkWidget *widget,
                     GType      type)
{
  g_autoptr (GPtrArray) all = ds_test_ui_find_all (widget, type);

  g_assert_cmpuint (all->len, >=, 1);
  return g_ptr_array_index (all, 0);
}

/* The first GtkLabel (in that order) whose text is text, or NULL. */
static inline GtkWidget *
ds_test_ui_find_label (GtkWidget  *widget,
                       const char *text)
{
  g_autoptr (GPtrArray) labels = ds_test_ui_find_all (widget, GTK_TYPE_LABEL);

  for (guint i = 0; i < labels->len; i++)
    if (g_strcmp0 (gtk_label_get_text (g_ptr_array_index (labels, i)), text) == 0)
      return g_ptr_array_index (labels, i);
  return NULL;
}

/* The first GtkButton whose label (with its mnemonic underscore) is label;
 * asserts there is one. */
static inline GtkWidget *
ds_test_ui_find_button (GtkWidget  *widget,
                        const char *label)
{
  g_autoptr (GPtrArray) buttons = ds_test_ui_find_all (widget, GTK_TYPE_BUTTON);

  for (guint i = 0; i < buttons->len; i++)
    if (g_strcmp0 (gtk_button_get_label (g_ptr_array_index (buttons, i)), label) == 0)
      return g_ptr_array_index (buttons, i);
  g_assert_not_reached ();
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
