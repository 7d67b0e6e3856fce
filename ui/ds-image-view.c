/* ds-image-view.c: the picture under study, drawn scaled to fit (aspect kept,
 * centred) times a zoom factor, with a map texture stretched over it at an
 * opacity and a crosshair marker at a picked point. It reports the value of a
 * scalar grid under the pointer ("hover") and the points the user picks with
 * the pointer or the keyboard ("point-picked"). Inside a GtkScrolledWindow its
 * size grows with the zoom so the picture can be scrolled. */
#include "ds-image-view.h"
#include "ds-image-view-private.h"

#include <math.h>
#include <string.h>

#include "ds-resources.h"

#define ZOOM_STEP 1.25
#define MARKER_STEPS 32
#define HINT_TEXT "Open an image (Ctrl+O), drop one here, or paste one"

struct _DsImageView
{
  GtkWidget   parent_instance;

  GdkTexture *image;
  GdkTexture *overlay;
  double      overlay_opacity;

  float      *values;       /* [values_h][values_w], or NULL */
  int         values_w;
  int         values_h;
  char       *values_label;

  gboolean    marker_visible;
  double      marker_u;
  double      marker_v;

  double      zoom;

  /* the view size the last measure used, to remeasure when it changes */
  int         measured_view_w;
  int         measured_view_h;
  guint       resize_idle_id;

  double      last_u;
  double      last_v;

  /* the pointer, for Ctrl+scroll to zoom about it */
  gboolean    pointer_inside;
  double      pointer_x;
  double      pointer_y;

  /* a zoom in a viewport keeps the picture point (anchor_u, anchor_v) at
   * (anchor_x, anchor_y) of the viewport: applied at the next allocation */
  gboolean    anchor_pending;
  double      anchor_u;
  double      anchor_v;
  double      anchor_x;
  double      anchor_y;
};

G_DEFINE_FINAL_TYPE (DsImageView, ds_image_view, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_IMAGE,
  PROP_OVERLAY,
  PROP_OVERLAY_OPACITY,
  PROP_ZOOM,
  N_PROPS
};

enum {
  SIGNAL_HOVER,
  SIGNAL_POINT_PICKED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* The size the fit scale is computed against: the visible area of the
 * enclosing viewport when there is one, the widget's own size otherwise. */
static gboolean
get_view_size (DsImageView *self,
               int         *w,
               int         *h,
               gboolean    *in_viewport)
{
  GtkWidget *viewport = gtk_widget_get_ancestor (GTK_WIDGET (self), GTK_TYPE_VIEWPORT);

  if (viewport != NULL && gtk_widget_get_width (viewport) > 0
      && gtk_widget_get_height (viewport) > 0)
    {
      *w = gtk_widget_get_width (viewport);
      *h = gtk_widget_get_height (viewport);
      *in_viewport = TRUE;
      return TRUE;
    }
  *w = gtk_widget_get_width (GTK_WIDGET (self));
  *h = gtk_widget_get_height (GTK_WIDGET (self));
  *in_viewport = viewport != NULL;
  return *w > 0 && *h > 0;
}

static double
fit_scale (DsImageView *self,
           int          view_w,
           int          view_h)
{
  int iw = gdk_texture_get_width (self->image);
  int ih = gdk_texture_get_height (self->image);

  if (iw <= 0 || ih <= 0 || view_w <= 0 || view_h <= 0)
    return 1.0;
  return MIN ((double) view_w / iw, (double) view_h / ih);
}

gboolean
ds_image_view_get_picture_rect (DsImageView     *self,
                                graphene_rect_t *rect)
{
  int view_w, view_h, w, h;
  gboolean in_viewport;
  double scale, dw, dh;

  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), FALSE);
  g_return_val_if_fail (rect != NULL, FALSE);

  if (self->image == NULL)
    return FALSE;
  if (!get_view_size (self, &view_w, &view_h, &in_viewport))
    return FALSE;
  w = gtk_widget_get_width (GTK_WIDGET (self));
  h = gtk_widget_get_height (GTK_WIDGET (self));
  scale = fit_scale (self, view_w, view_h) * self->zoom;
  dw = gdk_texture_get_width (self->image) * scale;
  dh = gdk_texture_get_height (self->image) * scale;
  graphene_rect_init (rect, (w - dw) / 2.0, (h - dh) / 2.0, dw, dh);
  return TRUE;
}

gboolean
ds_image_view_to_picture (DsImageView *self,
                          double       x,
                          double       y,
                          double      *u,
                          double      *v)
{
  graphene_rect_t r;
  double pu, pv;

  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), FALSE);

  if (!ds_image_view_get_picture_rect (self, &r) || r.size.width <= 0 || r.size.height <= 0)
    {
      if (u != NULL)
        *u = NAN;
      if (v != NULL)
        *v = NAN;
      return FALSE;
    }
  pu = (x - r.origin.x) / r.size.width;
  pv = (y - r.origin.y) / r.size.height;
  if (u != NULL)
    *u = pu;
  if (v != NULL)
    *v = pv;
  return pu >= 0.0 && pu <= 1.0 && pv >= 0.0 && pv <= 1.0;
}

double
ds_image_view_value_at (DsImageView *self,
                        double       u,
                        double       v)
{
  int ix, iy;

  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), NAN);

  if (self->values == NULL || !(u >= 0.0 && u <= 1.0 && v >= 0.0 && v <= 1.0))
    return NAN;
  ix = MIN ((int) (u * self->values_w), self->values_w - 1);
  iy = MIN ((int) (v * self->values_h), self->values_h - 1);
  return self->values[(gsize) iy * self->values_w + ix];
}

/* -- pointer and keyboard ------------------------------------------------ */

void
_ds_image_view_motion (DsImageView *self,
                       double       x,
                       double       y)
{
  double u, v, value = NAN;
  gboolean inside = ds_image_view_to_picture (self, x, y, &u, &v);

  if (inside)
    value = ds_image_view_value_at (self, u, v);
  self->last_u = u;
  self->last_v = v;
  self->pointer_inside = TRUE;
  self->pointer_x = x;
  self->pointer_y = y;
  g_signal_emit (self, signals[SIGNAL_HOVER], 0, u, v, value, inside);
}

void
_ds_image_view_leave (DsImageView *self)
{
  self->pointer_inside = FALSE;
  g_signal_emit (self, signals[SIGNAL_HOVER], 0, self->last_u, self->last_v, (double) NAN, FALSE);
}

static void
pick (DsImageView *self,
      double       u,
      double       v)
{
  ds_image_view_set_marker (self, TRUE, u, v);
  g_signal_emit (self, signals[SIGNAL_POINT_PICKED], 0, u, v);
}

gboolean
_ds_image_view_press (DsImageView *self,
                      double       x,
                      double       y)
{
  double u, v;

  if (!ds_image_view_to_picture (self, x, y, &u, &v))
    return FALSE;
  pick (self, u, v);
  return TRUE;
}

static void
on_motion_enter (GtkEventControllerMotion *controller,
                 double                    x,
                 double                    y,
                 DsImageView              *self)
{
  _ds_image_view_motion (self, x, y);
}

static void
on_motion (GtkEventControllerMotion *controller,
           double                    x,
           double                    y,
           DsImageView              *self)
{
  _ds_image_view_motion (self, x, y);
}

static void
on_motion_leave (GtkEventControllerMotion *controller,
                 DsImageView              *self)
{
  _ds_image_view_leave (self);
}

static void
on_click_pressed (GtkGestureClick *gesture,
                  int              n_press,
                  double           x,
                  double           y,
                  DsImageView     *self)
{
  gtk_widget_grab_focus (GTK_WIDGET (self));
  if (n_press == 1 && _ds_image_view_press (self, x, y))
    gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
}

/* Remembers which picture point is at widget point (x, y), to keep it there
 * in the viewport through a zoom. */
static void
set_anchor (DsImageView *self,
            double       x,
            double       y)
{
  GtkWidget *viewport = gtk_widget_get_ancestor (GTK_WIDGET (self), GTK_TYPE_VIEWPORT);
  double u, v, vx, vy;

  if (viewport == NULL || self->image == NULL)
    return;
  ds_image_view_to_picture (self, x, y, &u, &v);
  if (isnan (u) || isnan (v)
      || !gtk_widget_translate_coordinates (GTK_WIDGET (self), viewport, x, y, &vx, &vy))
    return;
  self->anchor_pending = TRUE;
  self->anchor_u = CLAMP (u, 0.0, 1.0);
  self->anchor_v = CLAMP (v, 0.0, 1.0);
  self->anchor_x = vx;
  self->anchor_y = vy;
}

static void
apply_anchor (DsImageView *self)
{
  GtkWidget *viewport = gtk_widget_get_ancestor (GTK_WIDGET (self), GTK_TYPE_VIEWPORT);
  GtkAdjustment *hadj, *vadj;
  graphene_rect_t r;

  self->anchor_pending = FALSE;
  if (viewport == NULL || !ds_image_view_get_picture_rect (self, &r))
    return;
  hadj = gtk_scrollable_get_hadjustment (GTK_SCROLLABLE (viewport));
  vadj = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (viewport));
  if (hadj != NULL)
    gtk_adjustment_set_value (hadj, r.origin.x + self->anchor_u * r.size.width - self->anchor_x);
  if (vadj != NULL)
    gtk_adjustment_set_value (vadj, r.origin.y + self->anchor_v * r.size.height - self->anchor_y);
}

static gboolean
on_scroll (GtkEventControllerScroll *controller,
           double                    dx,
           double                    dy,
           DsImageView              *self)
{
  GdkModifierType state =
    gtk_event_controller_get_current_event_state (GTK_EVENT_CONTROLLER (controller));

  if ((state & GDK_CONTROL_MASK) == 0 || dy == 0.0)
    return FALSE;  /* let the scrolled window scroll */
  if (self->pointer_inside)
    set_anchor (self, self->pointer_x, self->pointer_y);
  if (dy < 0)
    ds_image_view_zoom_in (self);
  else
    ds_image_view_zoom_out (self);
  return TRUE;
}

static void
action_pick (GtkWidget  *widget,
             const char *action_name,
             GVariant   *parameter)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);

  if (self->image == NULL)
    return;
  if (self->marker_visible)
    pick (self, self->marker_u, self->marker_v);
  else
    pick (self, 0.5, 0.5);
}

/* One grid cell (centre to centre) when a grid is set, 1/32 otherwise. */
static double
step_marker (double pos,
             int    delta,
             int    cells)
{
  if (delta == 0)
    return pos;
  if (cells > 0)
    {
      int i = (int) (pos * cells) + delta;  /* pos >= 0: truncation is floor */
      return (CLAMP (i, 0, cells - 1) + 0.5) / cells;
    }
  return CLAMP (pos + (double) delta / MARKER_STEPS, 0.0, 1.0);
}

static void
action_move_marker (GtkWidget  *widget,
                    const char *action_name,
                    GVariant   *parameter)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);
  int dx = 0, dy = 0;
  double u = 0.5, v = 0.5;

  if (self->image == NULL)
    return;
  g_variant_get (parameter, "(ii)", &dx, &dy);
  if (self->marker_visible)
    {
      u = step_marker (self->marker_u, dx, self->values != NULL ? self->values_w : 0);
      v = step_marker (self->marker_v, dy, self->values != NULL ? self->values_h : 0);
    }
  pick (self, u, v);
}

static void
action_zoom (GtkWidget  *widget,
             const char *action_name,
             GVariant   *parameter)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);

  if (g_str_equal (action_name, "image-view.zoom-in"))
    ds_image_view_zoom_in (self);
  else if (g_str_equal (action_name, "image-view.zoom-out"))
    ds_image_view_zoom_out (self);
  else
    ds_image_view_set_zoom (self, 1.0);
}

/* -- layout and drawing ---------------------------------------------------- */

static gboolean
resize_idle_cb (gpointer data)
{
  DsImageView *self = data;

  self->resize_idle_id = 0;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  return G_SOURCE_REMOVE;
}

/* ceil for sizes, without libm (the ui library links GTK only) */
static double
ceil_size (double x)
{
  double t = (double) (gint64) x;

  return t < x ? t + 1.0 : t;
}

static void
ds_image_view_measure (GtkWidget      *widget,
                       GtkOrientation  orientation,
                       int             for_size,
                       int            *minimum,
                       int            *natural,
                       int            *minimum_baseline,
                       int            *natural_baseline)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);
  GtkWidget *viewport;
  int view_w = 0, view_h = 0, image_size;
  double size;

  *minimum = 0;
  if (self->image == NULL)
    {
      *natural = orientation == GTK_ORIENTATION_HORIZONTAL ? 320 : 240;
      return;
    }

  image_size = orientation == GTK_ORIENTATION_HORIZONTAL
             ? gdk_texture_get_width (self->image)
             : gdk_texture_get_height (self->image);
  viewport = gtk_widget_get_ancestor (widget, GTK_TYPE_VIEWPORT);
  if (viewport != NULL)
    {
      view_w = gtk_widget_get_width (viewport);
      view_h = gtk_widget_get_height (viewport);
      self->measured_view_w = view_w;
      self->measured_view_h = view_h;
    }

  if (view_w > 0 && view_h > 0)
    {
      size = ceil_size (image_size * fit_scale (self, view_w, view_h) * self->zoom);
      *natural = (int) size;
      /* zoomed in: a viewport gives us at least our minimum, so ask for it */
      if (self->zoom > 1.0)
        *minimum = *natural;
    }
  else
    *natural = (int) ceil_size (image_size * self->zoom);
}

static void
ds_image_view_size_allocate (GtkWidget *widget,
                             int        width,
                             int        height,
                             int        baseline)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);
  GtkWidget *viewport;

  if (self->anchor_pending)
    apply_anchor (self);
  if (self->image == NULL || self->zoom <= 1.0 || self->resize_idle_id != 0)
    return;
  viewport = gtk_widget_get_ancestor (widget, GTK_TYPE_VIEWPORT);
  if (viewport == NULL)
    return;
  if (gtk_widget_get_width (viewport) != self->measured_view_w
      || gtk_widget_get_height (viewport) != self->measured_view_h)
    self->resize_idle_id = g_idle_add (resize_idle_cb, self);
}

static void
append_marker (GtkSnapshot           *snapshot,
               const graphene_rect_t *r,
               double                 u,
               double                 v)
{
  double x = r->origin.x + u * r->size.width;
  double y = r->origin.y + v * r->size.height;
  const double radius = 7.0, arm = 12.0;
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot,
                                           &GRAPHENE_RECT_INIT (x - arm - 2, y - arm - 2,
                                                                2 * arm + 4, 2 * arm + 4));

  /* a dark halo under a light stroke, visible on any picture */
  for (int pass = 0; pass < 2; pass++)
    {
      if (pass == 0)
        {
          cairo_set_source_rgba (cr, 0, 0, 0, 0.75);
          cairo_set_line_width (cr, 3.5);
        }
      else
        {
          cairo_set_source_rgba (cr, 1, 1, 1, 1);
          cairo_set_line_width (cr, 1.5);
        }
      cairo_new_path (cr);
      cairo_arc (cr, x, y, radius, 0, 2 * G_PI);
      cairo_move_to (cr, x - arm, y);
      cairo_line_to (cr, x - radius + 3, y);
      cairo_move_to (cr, x + radius - 3, y);
      cairo_line_to (cr, x + arm, y);
      cairo_move_to (cr, x, y - arm);
      cairo_line_to (cr, x, y - radius + 3);
      cairo_move_to (cr, x, y + radius - 3);
      cairo_line_to (cr, x, y + arm);
      cairo_stroke (cr);
    }
  cairo_destroy (cr);
}

static void
get_fg_color (GtkWidget *widget,
              GdkRGBA   *color)
{
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  gtk_style_context_get_color (gtk_widget_get_style_context (widget), color);
  G_GNUC_END_IGNORE_DEPRECATIONS
}

static void
append_hint (DsImageView *self,
             GtkSnapshot *snapshot,
             int          w,
             int          h)
{
  GtkWidget *widget = GTK_WIDGET (self);
  g_autoptr (PangoLayout) layout = gtk_widget_create_pango_layout (widget, HINT_TEXT);
  GdkRGBA color;
  int lw, lh;

  get_fg_color (widget, &color);
  color.alpha *= 0.55f;
  pango_layout_set_alignment (layout, PANGO_ALIGN_CENTER);
  pango_layout_set_wrap (layout, PANGO_WRAP_WORD);
  pango_layout_set_width (layout, MAX (w - 24, 1) * PANGO_SCALE);
  pango_layout_get_pixel_size (layout, &lw, &lh);

  gtk_snapshot_save (snapshot);
  gtk_snapshot_translate (snapshot, &GRAPHENE_POINT_INIT ((w - MAX (w - 24, 1)) / 2.0f,
                                                          (h - lh) / 2.0f));
  gtk_snapshot_append_layout (snapshot, layout, &color);
  gtk_snapshot_restore (snapshot);
}

static void
ds_image_view_snapshot (GtkWidget   *widget,
                        GtkSnapshot *snapshot)
{
  DsImageView *self = DS_IMAGE_VIEW (widget);
  int w = gtk_widget_get_width (widget);
  int h = gtk_widget_get_height (widget);
  graphene_rect_t r;

  if (self->image == NULL || !ds_image_view_get_picture_rect (self, &r))
    append_hint (self, snapshot, w, h);
  else
    {
      gtk_snapshot_push_clip (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
      gtk_snapshot_append_texture (snapshot, self->image, &r);
      if (self->overlay != NULL && self->overlay_opacity > 0.0)
        {
          gtk_snapshot_push_opacity (snapshot, self->overlay_opacity);
          gtk_snapshot_append_texture (snapshot, self->overlay, &r);
          gtk_snapshot_pop (snapshot);
        }
      if (self->marker_visible)
        append_marker (snapshot, &r, self->marker_u, self->marker_v);
      gtk_snapshot_pop (snapshot);
    }

  if (gtk_widget_has_visible_focus (widget) && w > 4 && h > 4)
    {
      GdkRGBA color;
      GskRoundedRect outline;
      float widths[4] = { 2, 2, 2, 2 };
      GdkRGBA colors[4];

      get_fg_color (widget, &color);
      color.alpha *= 0.5f;
      for (int i = 0; i < 4; i++)
        colors[i] = color;
      gsk_rounded_rect_init_from_rect (&outline, &GRAPHENE_RECT_INIT (1, 1, w - 2, h - 2), 0);
      gtk_snapshot_append_border (snapshot, &outline, widths, colors);
    }
}

static void
ds_image_view_state_flags_changed (GtkWidget     *widget,
                                   GtkStateFlags  previous)
{
  GTK_WIDGET_CLASS (ds_image_view_parent_class)->state_flags_changed (widget, previous);
  if ((previous ^ gtk_widget_get_state_flags (widget)) & GTK_STATE_FLAG_FOCUS_VISIBLE)
    gtk_widget_queue_draw (widget);
}

/* -- public API -------------------------------------------------------------- */

GtkWidget *
ds_image_view_new (void)
{
  return g_object_new (DS_TYPE_IMAGE_VIEW, NULL);
}

void
ds_image_view_set_image (DsImageView *self,
                         GdkTexture  *image)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));
  g_return_if_fail (image == NULL || GDK_IS_TEXTURE (image));

  if (!g_set_object (&self->image, image))
    return;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_IMAGE]);
}

GdkTexture *
ds_image_view_get_image (DsImageView *self)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), NULL);
  return self->image;
}

void
ds_image_view_set_overlay (DsImageView *self,
                           GdkTexture  *overlay)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));
  g_return_if_fail (overlay == NULL || GDK_IS_TEXTURE (overlay));

  if (!g_set_object (&self->overlay, overlay))
    return;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OVERLAY]);
}

GdkTexture *
ds_image_view_get_overlay (DsImageView *self)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), NULL);
  return self->overlay;
}

void
ds_image_view_set_overlay_opacity (DsImageView *self,
                                   double       opacity)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));

  if (isnan (opacity))
    return;
  opacity = CLAMP (opacity, 0.0, 1.0);
  if (opacity == self->overlay_opacity)
    return;
  self->overlay_opacity = opacity;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OVERLAY_OPACITY]);
}

double
ds_image_view_get_overlay_opacity (DsImageView *self)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), 0.0);
  return self->overlay_opacity;
}

void
ds_image_view_set_values (DsImageView *self,
                          const float *values,
                          int          w,
                          int          h,
                          const char  *label)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));
  g_return_if_fail (values == NULL || (w > 0 && h > 0));

  g_clear_pointer (&self->values, g_free);
  g_clear_pointer (&self->values_label, g_free);
  self->values_w = self->values_h = 0;
  if (values == NULL)
    return;
  self->values = g_memdup2 (values, (gsize) w * h * sizeof *values);
  self->values_w = w;
  self->values_h = h;
  self->values_label = g_strdup (label);
}

const char *
ds_image_view_get_values_label (DsImageView *self)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), NULL);
  return self->values_label;
}

void
ds_image_view_set_marker (DsImageView *self,
                          gboolean     visible,
                          double       u,
                          double       v)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));

  visible = !!visible;
  if (visible && (isnan (u) || isnan (v)))
    visible = FALSE;
  if (visible)
    {
      u = CLAMP (u, 0.0, 1.0);
      v = CLAMP (v, 0.0, 1.0);
    }
  if (visible == self->marker_visible
      && (!visible || (u == self->marker_u && v == self->marker_v)))
    return;
  self->marker_visible = visible;
  if (visible)
    {
      self->marker_u = u;
      self->marker_v = v;
    }
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
ds_image_view_get_marker (DsImageView *self,
                          double      *u,
                          double      *v)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), FALSE);

  if (u != NULL)
    *u = self->marker_u;
  if (v != NULL)
    *v = self->marker_v;
  return self->marker_visible;
}

void
ds_image_view_set_zoom (DsImageView *self,
                        double       zoom)
{
  g_return_if_fail (DS_IS_IMAGE_VIEW (self));

  if (isnan (zoom))
    return;
  zoom = CLAMP (zoom, DS_IMAGE_VIEW_ZOOM_MIN, DS_IMAGE_VIEW_ZOOM_MAX);
  if (zoom == self->zoom)
    {
      self->anchor_pending = FALSE;
      return;
    }
  if (!self->anchor_pending)
    {
      /* keep the middle of what is visible in the middle */
      GtkWidget *viewport = gtk_widget_get_ancestor (GTK_WIDGET (self), GTK_TYPE_VIEWPORT);
      double x, y;

      if (viewport != NULL
          && gtk_widget_translate_coordinates (viewport, GTK_WIDGET (self),
                                               gtk_widget_get_width (viewport) / 2.0,
                                               gtk_widget_get_height (viewport) / 2.0, &x, &y))
        set_anchor (self, x, y);
    }
  self->zoom = zoom;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
}

double
ds_image_view_get_zoom (DsImageView *self)
{
  g_return_val_if_fail (DS_IS_IMAGE_VIEW (self), 1.0);
  return self->zoom;
}

/* Steps of 1.25, snapping back onto 1 (fit) when a step crosses it. */
void
ds_image_view_zoom_in (DsImageView *self)
{
  double zoom;

  g_return_if_fail (DS_IS_IMAGE_VIEW (self));

  zoom = self->zoom * ZOOM_STEP;
  if (self->zoom < 1.0 && zoom > 1.0 + 1e-9)
    zoom = 1.0;
  ds_image_view_set_zoom (self, zoom);
}

void
ds_image_view_zoom_out (DsImageView *self)
{
  double zoom;

  g_return_if_fail (DS_IS_IMAGE_VIEW (self));

  zoom = self->zoom / ZOOM_STEP;
  if (self->zoom > 1.0 && zoom < 1.0 - 1e-9)
    zoom = 1.0;
  ds_image_view_set_zoom (self, zoom);
}

/* -- GObject ------------------------------------------------------------------- */

static void
ds_image_view_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  DsImageView *self = DS_IMAGE_VIEW (object);

  switch (prop_id)
    {
    case PROP_IMAGE:
      g_value_set_object (value, self->image);
      break;
    case PROP_OVERLAY:
      g_value_set_object (value, self->overlay);
      break;
    case PROP_OVERLAY_OPACITY:
      g_value_set_double (value, self->overlay_opacity);
      break;
    case PROP_ZOOM:
      g_value_set_double (value, self->zoom);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_image_view_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  DsImageView *self = DS_IMAGE_VIEW (object);

  switch (prop_id)
    {
    case PROP_IMAGE:
      ds_image_view_set_image (self, g_value_get_object (value));
      break;
    case PROP_OVERLAY:
      ds_image_view_set_overlay (self, g_value_get_object (value));
      break;
    case PROP_OVERLAY_OPACITY:
      ds_image_view_set_overlay_opacity (self, g_value_get_double (value));
      break;
    case PROP_ZOOM:
      ds_image_view_set_zoom (self, g_value_get_double (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_image_view_dispose (GObject *object)
{
  DsImageView *self = DS_IMAGE_VIEW (object);

  g_clear_handle_id (&self->resize_idle_id, g_source_remove);
  g_clear_object (&self->image);
  g_clear_object (&self->overlay);
  G_OBJECT_CLASS (ds_image_view_parent_class)->dispose (object);
}

static void
ds_image_view_finalize (GObject *object)
{
  DsImageView *self = DS_IMAGE_VIEW (object);

  g_free (self->values);
  g_free (self->values_label);
  G_OBJECT_CLASS (ds_image_view_parent_class)->finalize (object);
}

static void
add_key (GtkWidgetClass  *widget_class,
         guint            keyval,
         GdkModifierType  mods,
         const char      *action,
         const char      *format,
         int              dx,
         int              dy)
{
  if (format != NULL)
    gtk_widget_class_add_binding_action (widget_class, keyval, mods, action, format, dx, dy);
  else
    gtk_widget_class_add_binding_action (widget_class, keyval, mods, action, NULL);
}

static void
ds_image_view_class_init (DsImageViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->get_property = ds_image_view_get_property;
  object_class->set_property = ds_image_view_set_property;
  object_class->dispose = ds_image_view_dispose;
  object_class->finalize = ds_image_view_finalize;

  widget_class->measure = ds_image_view_measure;
  widget_class->size_allocate = ds_image_view_size_allocate;
  widget_class->snapshot = ds_image_view_snapshot;
  widget_class->state_flags_changed = ds_image_view_state_flags_changed;

  properties[PROP_IMAGE] =
    g_param_spec_object ("image", NULL, NULL, GDK_TYPE_TEXTURE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_OVERLAY] =
    g_param_spec_object ("overlay", NULL, NULL, GDK_TYPE_TEXTURE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_OVERLAY_OPACITY] =
    g_param_spec_double ("overlay-opacity", NULL, NULL, 0.0, 1.0, 0.6,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ZOOM] =
    g_param_spec_double ("zoom", NULL, NULL, DS_IMAGE_VIEW_ZOOM_MIN, DS_IMAGE_VIEW_ZOOM_MAX, 1.0,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * DsImageView::hover:
   * @u, @v: the pointer in picture coordinates (0..1 inside the picture)
   * @value: the grid value under the pointer, or NaN
   * @inside: whether the pointer is over the picture (FALSE on leave)
   */
  signals[SIGNAL_HOVER] =
    g_signal_new ("hover", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 4,
                  G_TYPE_DOUBLE, G_TYPE_DOUBLE, G_TYPE_DOUBLE, G_TYPE_BOOLEAN);
  /**
   * DsImageView::point-picked:
   * @u, @v: the picked point in picture coordinates, in [0, 1]
   */
  signals[SIGNAL_POINT_PICKED] =
    g_signal_new ("point-picked", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_DOUBLE, G_TYPE_DOUBLE);

  gtk_widget_class_install_action (widget_class, "image-view.pick", NULL, action_pick);
  gtk_widget_class_install_action (widget_class, "image-view.move-marker", "(ii)",
                                   action_move_marker);
  gtk_widget_class_install_action (widget_class, "image-view.zoom-in", NULL, action_zoom);
  gtk_widget_class_install_action (widget_class, "image-view.zoom-out", NULL, action_zoom);
  gtk_widget_class_install_action (widget_class, "image-view.zoom-reset", NULL, action_zoom);

  add_key (widget_class, GDK_KEY_Return, 0, "image-view.pick", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_KP_Enter, 0, "image-view.pick", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_ISO_Enter, 0, "image-view.pick", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_space, 0, "image-view.pick", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_KP_Space, 0, "image-view.pick", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_Left, 0, "image-view.move-marker", "(ii)", -1, 0);
  add_key (widget_class, GDK_KEY_KP_Left, 0, "image-view.move-marker", "(ii)", -1, 0);
  add_key (widget_class, GDK_KEY_Right, 0, "image-view.move-marker", "(ii)", 1, 0);
  add_key (widget_class, GDK_KEY_KP_Right, 0, "image-view.move-marker", "(ii)", 1, 0);
  add_key (widget_class, GDK_KEY_Up, 0, "image-view.move-marker", "(ii)", 0, -1);
  add_key (widget_class, GDK_KEY_KP_Up, 0, "image-view.move-marker", "(ii)", 0, -1);
  add_key (widget_class, GDK_KEY_Down, 0, "image-view.move-marker", "(ii)", 0, 1);
  add_key (widget_class, GDK_KEY_KP_Down, 0, "image-view.move-marker", "(ii)", 0, 1);
  add_key (widget_class, GDK_KEY_plus, 0, "image-view.zoom-in", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_equal, 0, "image-view.zoom-in", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_KP_Add, 0, "image-view.zoom-in", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_minus, 0, "image-view.zoom-out", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_KP_Subtract, 0, "image-view.zoom-out", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_0, 0, "image-view.zoom-reset", NULL, 0, 0);
  add_key (widget_class, GDK_KEY_KP_0, 0, "image-view.zoom-reset", NULL, 0, 0);

  /* link the resource bundle (its constructor registers it) */
  (void) ds_get_resource ();
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-image-view.ui");
  gtk_widget_class_bind_template_callback (widget_class, on_motion_enter);
  gtk_widget_class_bind_template_callback (widget_class, on_motion);
  gtk_widget_class_bind_template_callback (widget_class, on_motion_leave);
  gtk_widget_class_bind_template_callback (widget_class, on_click_pressed);
  gtk_widget_class_bind_template_callback (widget_class, on_scroll);

  gtk_widget_class_set_css_name (widget_class, "imageview");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
ds_image_view_init (DsImageView *self)
{
  self->zoom = 1.0;
  self->overlay_opacity = 0.6;
  self->last_u = self->last_v = NAN;
  gtk_widget_init_template (GTK_WIDGET (self));
}
