/* test-ui-image-view.c: DsImageView under a display: letterboxed geometry,
 * hover values, picking with the pointer and the keyboard, zoom limits and
 * growth inside a scrolled window, and the pixels it renders (picture,
 * overlay at an opacity, marker, empty-state hint). */
#include <math.h>

#include "ds-image-view.h"
#include "ds-image-view-private.h"
#include "ds-test-ui.h"

typedef struct
{
  int      n_hover;
  double   u, v, value;
  gboolean inside;
  int      n_picked;
  double   pu, pv;
} Events;

static void
on_hover (DsImageView *view,
          double       u,
          double       v,
          double       value,
          gboolean     inside,
          Events      *ev)
{
  ev->n_hover++;
  ev->u = u;
  ev->v = v;
  ev->value = value;
  ev->inside = inside;
}

static void
on_point_picked (DsImageView *view,
                 double       u,
                 double       v,
                 Events      *ev)
{
  ev->n_picked++;
  ev->pu = u;
  ev->pv = v;
}

/* A 400×200 window holding a view of a 100×100 red picture: the picture is
 * letterboxed left and right. */
static GtkWidget *
make_view (GtkWidget **window,
           Events     *ev)
{
  GtkWidget *view = ds_image_view_new ();
  g_autoptr (GdkTexture) red = ds_test_solid_texture (100, 100, 255, 0, 0);

  ds_image_view_set_image (DS_IMAGE_VIEW (view), red);
  g_signal_connect (view, "hover", G_CALLBACK (on_hover), ev);
  g_signal_connect (view, "point-picked", G_CALLBACK (on_point_picked), ev);
  *window = ds_test_ui_window (view, 400, 200);
  return view;
}

static void
expected_rect (GtkWidget       *view,
               int              iw,
               int              ih,
               graphene_rect_t *r)
{
  double w = gtk_widget_get_width (view), h = gtk_widget_get_height (view);
  double scale = MIN (w / iw, h / ih);

  graphene_rect_init (r, (w - iw * scale) / 2, (h - ih * scale) / 2, iw * scale, ih * scale);
}

static void
test_geometry_and_pick (void)
{
  Events ev = { 0 };
  GtkWidget *window;
  GtkWidget *view = make_view (&window, &ev);
  DsImageView *self = DS_IMAGE_VIEW (view);
  graphene_rect_t r, want;
  double u, v;

  g_assert_true (gtk_widget_get_focusable (view));
  g_assert_true (ds_image_view_get_picture_rect (self, &r));
  expected_rect (view, 100, 100, &want);
  g_test_message ("view %dx%d, picture at %.1f,%.1f %.1fx%.1f",
                  gtk_widget_get_width (view), gtk_widget_get_height (view),
                  r.origin.x, r.origin.y, r.size.width, r.size.height);
  g_assert_cmpfloat_with_epsilon (r.origin.x, want.origin.x, 1e-3);
  g_assert_cmpfloat_with_epsilon (r.origin.y, want.origin.y, 1e-3);
  g_assert_cmpfloat_with_epsilon (r.size.width, want.size.width, 1e-3);
  g_assert_cmpfloat_with_epsilon (r.size.height, want.size.height, 1e-3);
  /* wider than tall: bars left and right */
  g_assert_cmpint (gtk_widget_get_width (view), >, gtk_widget_get_height (view));
  g_assert_cmpfloat (r.origin.x, >, 10.0);
  g_assert_cmpfloat_with_epsilon (r.origin.y, 0.0, 1e-3);

  g_assert_true (ds_image_view_to_picture (self, r.origin.x + 0.25 * r.size.width,
                                           r.origin.y + 0.75 * r.size.height, &u, &v));
  g_assert_cmpfloat_with_epsilon (u, 0.25, 1e-6);
  g_assert_cmpfloat_with_epsilon (v, 0.75, 1e-6);
  g_assert_false (ds_image_view_to_picture (self, r.origin.x / 2, 10, &u, &v));

  /* a click on the picture picks its point and shows the marker there */
  g_assert_true (_ds_image_view_press (self, r.origin.x + 0.1 * r.size.width,
                                       r.origin.y + 0.6 * r.size.height));
  g_assert_cmpint (ev.n_picked, ==, 1);
  g_assert_cmpfloat_with_epsilon (ev.pu, 0.1, 1e-6);
  g_assert_cmpfloat_with_epsilon (ev.pv, 0.6, 1e-6);
  g_assert_true (ds_image_view_get_marker (self, &u, &v));
  g_assert_cmpfloat_with_epsilon (u, 0.1, 1e-6);
  g_assert_cmpfloat_with_epsilon (v, 0.6, 1e-6);
  /* a click in the letterbox picks nothing */
  g_assert_false (_ds_image_view_press (self, r.origin.x / 2, 20));
  g_assert_cmpint (ev.n_picked, ==, 1);

  gtk_window_destroy (GTK_WINDOW (window));
}

static void
test_hover_values (void)
{
  Events ev = { 0 };
  GtkWidget *window;
  GtkWidget *view = make_view (&window, &ev);
  DsImageView *self = DS_IMAGE_VIEW (view);
  float grid[2][4] = { { 0, 1, 2, 3 }, { 10, 11, 12, 13 } };
  graphene_rect_t r;

  g_assert_true (ds_image_view_get_picture_rect (self, &r));

  /* no grid yet: NaN inside */
  _ds_image_view_motion (self, r.origin.x + 0.5 * r.size.width, r.origin.y + 0.5 * r.size.height);
  g_assert_cmpint (ev.n_hover, ==, 1);
  g_assert_true (ev.inside);
  g_assert_true (isnan (ev.value));

  ds_image_view_set_values (self, &grid[0][0], 4, 2, "|Δcond|");
  g_assert_cmpstr (ds_image_view_get_values_label (self), ==, "|Δcond|");
  grid[1][2] = -99;  /* the view holds a copy */

  /* u = 0.6 → column 2, v = 0.8 → row 1 */
  _ds_image_view_motion (self, r.origin.x + 0.6 * r.size.width, r.origin.y + 0.8 * r.size.height);
  g_assert_cmpint (ev.n_hover, ==, 2);
  g_assert_true (ev.inside);
  g_assert_cmpfloat_with_epsilon (ev.u, 0.6, 1e-6);
  g_assert_cmpfloat_with_epsilon (ev.v, 0.8, 1e-6);
  g_assert_cmpfloat (ev.value, ==, 12.0);
  g_assert_cmpfloat (ds_image_view_value_at (self, 0.0, 0.0), ==, 0.0);
  g_assert_cmpfloat (ds_image_view_value_at (self, 1.0, 1.0), ==, 13.0);
  g_assert_cmpfloat (ds_image_view_value_at (self, 0.3, 0.2), ==, 1.0);
  g_assert_true (isnan (ds_image_view_value_at (self, 1.2, 0.5)));

  /* over the letterbox: outside, NaN */
  _ds_image_view_motion (self, r.origin.x / 2, r.size.height / 2);
  g_assert_cmpint (ev.n_hover, ==, 3);
  g_assert_false (ev.inside);
  g_assert_true (isnan (ev.value));

  _ds_image_view_motion (self, r.origin.x + 0.1 * r.size.width, r.origin.y + 0.1 * r.size.height);
  g_assert_true (ev.inside);
  g_assert_cmpfloat (ev.value, ==, 0.0);
  _ds_image_view_leave (self);
  g_assert_cmpint (ev.n_hover, ==, 5);
  g_assert_false (ev.inside);
  g_assert_true (isnan (ev.value));

  /* cleared grid */
  ds_image_view_set_values (self, NULL, 0, 0, NULL);
  g_assert_true (isnan (ds_image_view_value_at (self, 0.5, 0.5)));
  g_assert_null (ds_image_view_get_values_label (self));

  gtk_window_destroy (GTK_WINDOW (window));
}

static void
test_zoom (void)
{
  GtkWidget *view = ds_image_view_new ();
  DsImageView *self = DS_IMAGE_VIEW (view);
  double zoom = 0;

  g_object_ref_sink (view);
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 1.0);
  ds_image_view_set_zoom (self, 100);
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 16.0);
  ds_image_view_zoom_in (self);
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 16.0);
  ds_image_view_set_zoom (self, 0.01);
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 0.25);
  ds_image_view_zoom_out (self);
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 0.25);
  ds_image_view_set_zoom (self, 1.0);
  ds_image_view_zoom_in (self);
  g_assert_cmpfloat_with_epsilon (ds_image_view_get_zoom (self), 1.25, 1e-9);
  ds_image_view_zoom_out (self);
  g_assert_cmpfloat_with_epsilon (ds_image_view_get_zoom (self), 1.0, 1e-9);
  ds_image_view_zoom_out (self);
  g_assert_cmpfloat_with_epsilon (ds_image_view_get_zoom (self), 0.8, 1e-9);
  g_object_set (view, "zoom", 3.0, NULL);
  g_object_get (view, "zoom", &zoom, NULL);
  g_assert_cmpfloat (zoom, ==, 3.0);
  g_object_set (view, "overlay-opacity", 0.3, NULL);
  g_assert_cmpfloat (ds_image_view_get_overlay_opacity (self), ==, 0.3);
  ds_image_view_set_overlay_opacity (self, 7);
  g_assert_cmpfloat (ds_image_view_get_overlay_opacity (self), ==, 1.0);
  g_object_unref (view);
}

/* In a scrolled window the view grows with the zoom, so it scrolls. */
static void
test_zoom_scrolls (void)
{
  GtkWidget *scroller = gtk_scrolled_window_new ();
  GtkWidget *view = ds_image_view_new ();
  g_autoptr (GdkTexture) red = ds_test_solid_texture (100, 50, 255, 0, 0);
  GtkWidget *window;
  GtkAdjustment *hadj, *vadj;
  int vw, vh;
  double fit;
  graphene_rect_t r;

  ds_image_view_set_image (DS_IMAGE_VIEW (view), red);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroller), view);
  window = ds_test_ui_window (scroller, 300, 300);
  vw = gtk_widget_get_width (scroller);
  vh = gtk_widget_get_height (scroller);
  fit = MIN (vw / 100.0, vh / 50.0);
  g_test_message ("scroller %dx%d, view %dx%d", vw, vh,
                  gtk_widget_get_width (view), gtk_widget_get_height (view));
  /* at fit the view fills the viewport and nothing scrolls */
  g_assert_cmpint (abs (gtk_widget_get_width (view) - vw), <=, 1);
  hadj = gtk_scrolled_window_get_hadjustment (GTK_SCROLLED_WINDOW (scroller));
  g_assert_cmpfloat (gtk_adjustment_get_upper (hadj) - gtk_adjustment_get_page_size (hadj), <=, 1.0);

  ds_image_view_set_zoom (DS_IMAGE_VIEW (view), 4.0);
  ds_test_ui_wait_ms (200);
  g_test_message ("zoom 4: view %dx%d, h upper %.0f",
                  gtk_widget_get_width (view), gtk_widget_get_height (view),
                  gtk_adjustment_get_upper (hadj));
  g_assert_cmpint (abs (gtk_widget_get_width (view) - (int) (100 * fit * 4 + 0.999)), <=, 2);
  g_assert_cmpint (abs (gtk_widget_get_height (view) - MAX ((int) (50 * fit * 4 + 0.999), vh)), <=, 2);
  g_assert_cmpfloat (gtk_adjustment_get_upper (hadj), >=, 100 * fit * 4 - 2);
  g_assert_true (ds_image_view_get_picture_rect (DS_IMAGE_VIEW (view), &r));
  g_assert_cmpfloat_with_epsilon (r.size.width, 100 * fit * 4, 1e-3);
  /* zoomed about the middle of the view: the picture's centre stays there */
  vadj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (scroller));
  g_test_message ("scrolled to %.1f, %.1f", gtk_adjustment_get_value (hadj),
                  gtk_adjustment_get_value (vadj));
  g_assert_cmpfloat (fabs (gtk_adjustment_get_value (hadj) + vw / 2.0 - (r.origin.x + r.size.width / 2)), <=, 1.0);
  g_assert_cmpfloat (fabs (gtk_adjustment_get_value (vadj) + vh / 2.0 - (r.origin.y + r.size.height / 2)), <=, 1.0);

  /* scrolled to the left edge and zoomed further: the view's middle stays put */
  gtk_adjustment_set_value (hadj, 0);
  ds_test_ui_wait_ms (100);
  ds_image_view_set_zoom (DS_IMAGE_VIEW (view), 8.0);
  ds_test_ui_wait_ms (200);
  g_test_message ("zoom 8: view %dx%d, scrolled to %.1f", gtk_widget_get_width (view),
                  gtk_widget_get_height (view), gtk_adjustment_get_value (hadj));
  g_assert_cmpfloat (fabs (gtk_adjustment_get_value (hadj) - (2 * (0 + vw / 2.0) - vw / 2.0)), <=, 1.0);

  ds_image_view_set_zoom (DS_IMAGE_VIEW (view), 1.0);
  ds_test_ui_wait_ms (200);
  g_assert_cmpint (abs (gtk_widget_get_width (view) - vw), <=, 1);

  gtk_window_destroy (GTK_WINDOW (window));
}

/* Finds the view's key binding for keyval and activates it as a key press
 * would (GTK has no public way to synthesize the key event itself). */
static gboolean
press_key (GtkWidget *widget,
           guint      keyval)
{
  g_autoptr (GListModel) controllers = gtk_widget_observe_controllers (widget);
  gboolean found = FALSE;

  for (guint i = 0; !found && i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GtkEventController) controller = g_list_model_get_item (controllers, i);

      if (!GTK_IS_SHORTCUT_CONTROLLER (controller))
        continue;
      for (guint j = 0; !found && j < g_list_model_get_n_items (G_LIST_MODEL (controller)); j++)
        {
          g_autoptr (GtkShortcut) shortcut = g_list_model_get_item (G_LIST_MODEL (controller), j);
          GtkShortcutTrigger *trigger = gtk_shortcut_get_trigger (shortcut);

          if (GTK_IS_KEYVAL_TRIGGER (trigger)
              && gtk_keyval_trigger_get_keyval (GTK_KEYVAL_TRIGGER (trigger)) == keyval
              && gtk_keyval_trigger_get_modifiers (GTK_KEYVAL_TRIGGER (trigger)) == 0)
            found = gtk_shortcut_action_activate (gtk_shortcut_get_action (shortcut),
                                                  GTK_SHORTCUT_ACTION_EXCLUSIVE, widget,
                                                  gtk_shortcut_get_arguments (shortcut));
        }
    }
  return found;
}

static void
test_keyboard (void)
{
  Events ev = { 0 };
  GtkWidget *window;
  GtkWidget *view = make_view (&window, &ev);
  DsImageView *self = DS_IMAGE_VIEW (view);
  float grid[4 * 4] = { 0 };
  double u, v;

  g_assert_true (gtk_widget_grab_focus (view));
  /* is_focus, not has_focus: on a shared Xvfb with no window manager another
   * test's window may be the active one, and has_focus needs an active window */
  g_assert_true (gtk_widget_is_focus (view));

  /* Enter with no marker picks the centre */
  g_assert_true (press_key (view, GDK_KEY_Return));
  g_assert_cmpint (ev.n_picked, ==, 1);
  g_assert_cmpfloat (ev.pu, ==, 0.5);
  g_assert_cmpfloat (ev.pv, ==, 0.5);
  g_assert_true (ds_image_view_get_marker (self, NULL, NULL));

  /* no grid: arrows step 1/32 */
  g_assert_true (press_key (view, GDK_KEY_Right));
  g_assert_cmpint (ev.n_picked, ==, 2);
  g_assert_cmpfloat_with_epsilon (ev.pu, 0.5 + 1.0 / 32, 1e-9);
  g_assert_cmpfloat_with_epsilon (ev.pv, 0.5, 1e-9);
  g_assert_true (press_key (view, GDK_KEY_Up));
  g_assert_cmpfloat_with_epsilon (ev.pv, 0.5 - 1.0 / 32, 1e-9);
  g_assert_true (ds_image_view_get_marker (self, &u, &v));
  g_assert_cmpfloat_with_epsilon (u, ev.pu, 1e-9);
  g_assert_cmpfloat_with_epsilon (v, ev.pv, 1e-9);

  /* a 4×4 grid: one cell, centre to centre, clamped at the edge */
  ds_image_view_set_values (self, grid, 4, 4, "x");
  ds_image_view_set_marker (self, TRUE, 0.6, 0.1);
  g_assert_true (press_key (view, GDK_KEY_Right));
  g_assert_cmpfloat_with_epsilon (ev.pu, 3.5 / 4, 1e-9);
  g_assert_cmpfloat_with_epsilon (ev.pv, 0.1, 1e-9);
  g_assert_true (press_key (view, GDK_KEY_Right));
  g_assert_cmpfloat_with_epsilon (ev.pu, 3.5 / 4, 1e-9);
  g_assert_true (press_key (view, GDK_KEY_Down));
  g_assert_cmpfloat_with_epsilon (ev.pv, 1.5 / 4, 1e-9);
  g_assert_true (press_key (view, GDK_KEY_Left));
  g_assert_cmpfloat_with_epsilon (ev.pu, 2.5 / 4, 1e-9);
  g_assert_cmpint (ev.n_picked, ==, 7);

  /* space re-picks the marker */
  g_assert_true (press_key (view, GDK_KEY_space));
  g_assert_cmpint (ev.n_picked, ==, 8);
  g_assert_cmpfloat_with_epsilon (ev.pu, 2.5 / 4, 1e-9);
  g_assert_cmpfloat_with_epsilon (ev.pv, 1.5 / 4, 1e-9);

  /* plus, minus and 0 zoom */
  g_assert_true (press_key (view, GDK_KEY_plus));
  g_assert_cmpfloat_with_epsilon (ds_image_view_get_zoom (self), 1.25, 1e-9);
  g_assert_true (press_key (view, GDK_KEY_0));
  g_assert_cmpfloat (ds_image_view_get_zoom (self), ==, 1.0);
  g_assert_true (press_key (view, GDK_KEY_minus));
  g_assert_cmpfloat_with_epsilon (ds_image_view_get_zoom (self), 0.8, 1e-9);

  gtk_window_destroy (GTK_WINDOW (window));
}

static void
test_pixels (void)
{
  Events ev = { 0 };
  GtkWidget *window;
  GtkWidget *view = make_view (&window, &ev);
  DsImageView *self = DS_IMAGE_VIEW (view);
  g_autoptr (GdkTexture) blue = ds_test_solid_texture (7, 3, 0, 0, 255);
  DsTestPixels *px;
  graphene_rect_t r;
  int cx, cy, x, y, pr, pg, pb, pa;

  g_assert_true (ds_image_view_get_picture_rect (self, &r));
  cx = (int) (r.origin.x + r.size.width * 0.3);
  cy = (int) (r.origin.y + r.size.height * 0.3);

  /* the picture, and nothing in the letterbox */
  px = ds_test_ui_render (view);
  g_assert_true (ds_test_pixel_near (px, cx, cy, 255, 0, 0, 2));
  g_assert_true (ds_test_pixel_near (px, (int) (r.origin.x + 2), (int) (r.origin.y + r.size.height - 2),
                                     255, 0, 0, 2));
  ds_test_pixel (px, (int) (r.origin.x / 2), px->height / 2, &pr, &pg, &pb, &pa);
  g_assert_cmpint (pa, ==, 0);
  ds_test_pixels_free (px);

  /* a blue overlay of another size, stretched over it at 0.5 */
  ds_image_view_set_overlay (self, blue);
  ds_image_view_set_overlay_opacity (self, 0.5);
  px = ds_test_ui_render (view);
  g_assert_true (ds_test_pixel_near (px, cx, cy, 128, 0, 128, 3));
  g_assert_true (ds_test_pixel_near (px, (int) (r.origin.x + r.size.width - 2),
                                     (int) (r.origin.y + 2), 128, 0, 128, 3));
  ds_test_pixel (px, (int) (r.origin.x / 2), px->height / 2, &pr, &pg, &pb, &pa);
  g_assert_cmpint (pa, ==, 0);
  ds_test_pixels_free (px);

  ds_image_view_set_overlay_opacity (self, 0.25);
  px = ds_test_ui_render (view);
  g_assert_true (ds_test_pixel_near (px, cx, cy, 191, 0, 64, 3));
  ds_test_pixels_free (px);

  ds_image_view_set_overlay (self, NULL);
  px = ds_test_ui_render (view);
  g_assert_true (ds_test_pixel_near (px, cx, cy, 255, 0, 0, 2));
  ds_test_pixels_free (px);

  /* the marker: a light ring of radius 7 around the point */
  ds_image_view_set_marker (self, TRUE, 0.5, 0.5);
  px = ds_test_ui_render (view);
  x = (int) (r.origin.x + r.size.width * 0.5);
  y = (int) (r.origin.y + r.size.height * 0.5);
  g_assert_cmpint (ds_test_count_color (px, x - 9, y - 9, x + 10, y + 10, 255, 255, 255, 40), >, 8);
  g_assert_true (ds_test_pixel_near (px, x + 20, y + 20, 255, 0, 0, 2));
  ds_test_pixels_free (px);
  ds_image_view_set_marker (self, FALSE, 0, 0);
  px = ds_test_ui_render (view);
  g_assert_cmpint (ds_test_count_color (px, x - 9, y - 9, x + 10, y + 10, 255, 255, 255, 40), ==, 0);
  ds_test_pixels_free (px);

  /* zoomed outside a scroller: centred and clipped, still red in the middle */
  ds_image_view_set_zoom (self, 2.0);
  ds_test_ui_wait_ms (100);
  g_assert_true (ds_image_view_get_picture_rect (self, &r));
  g_assert_cmpfloat (r.origin.y, <, 0.0);
  px = ds_test_ui_render (view);
  g_assert_true (ds_test_pixel_near (px, px->width / 2, px->height / 2, 255, 0, 0, 2));
  ds_test_pixels_free (px);

  /* no picture: the hint text, no pick */
  ds_image_view_set_image (self, NULL);
  ds_test_ui_wait_ms (100);
  g_assert_false (ds_image_view_get_picture_rect (self, &r));
  g_assert_false (_ds_image_view_press (self, 10, 10));
  px = ds_test_ui_render (view);
  g_assert_cmpint (ds_test_count_painted (px), >, 50);
  g_assert_cmpint (ds_test_count_color (px, 0, 0, px->width, px->height, 255, 0, 0, 10), ==, 0);
  ds_test_pixels_free (px);

  gtk_window_destroy (GTK_WINDOW (window));
}

int
main (int   argc,
      char *argv[])
{
  ds_test_ui_init_or_skip (&argc, &argv);

  g_test_add_func ("/ui/image-view/geometry-and-pick", test_geometry_and_pick);
  g_test_add_func ("/ui/image-view/hover-values", test_hover_values);
  g_test_add_func ("/ui/image-view/zoom", test_zoom);
  g_test_add_func ("/ui/image-view/zoom-scrolls", test_zoom_scrolls);
  g_test_add_func ("/ui/image-view/keyboard", test_keyboard);
  g_test_add_func ("/ui/image-view/pixels", test_pixels);
  return g_test_run ();
}
