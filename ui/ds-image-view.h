/* ds-image-view.h: the picture under study, scaled to fit and zoomable, with a
 * map overlaid at an opacity, a marker at a picked point, and the value of a
 * scalar grid under the pointer. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_IMAGE_VIEW (ds_image_view_get_type ())
G_DECLARE_FINAL_TYPE (DsImageView, ds_image_view, DS, IMAGE_VIEW, GtkWidget)

#define DS_IMAGE_VIEW_ZOOM_MIN 0.25
#define DS_IMAGE_VIEW_ZOOM_MAX 16.0

GtkWidget  *ds_image_view_new                 (void);

void        ds_image_view_set_image           (DsImageView   *self,
                                               GdkTexture    *image);
GdkTexture *ds_image_view_get_image           (DsImageView   *self);
void        ds_image_view_set_overlay         (DsImageView   *self,
                                               GdkTexture    *overlay);
GdkTexture *ds_image_view_get_overlay         (DsImageView   *self);
void        ds_image_view_set_overlay_opacity (DsImageView   *self,
                                               double         opacity);
double      ds_image_view_get_overlay_opacity (DsImageView   *self);

void        ds_image_view_set_values          (DsImageView   *self,
                                               const float   *values,
                                               int            w,
                                               int            h,
                                               const char    *label);
const char *ds_image_view_get_values_label    (DsImageView   *self);
double      ds_image_view_value_at            (DsImageView   *self,
                                               double         u,
                                               double         v);

void        ds_image_view_set_marker          (DsImageView   *self,
                                               gboolean       visible,
                                               double         u,
                                               double         v);
gboolean    ds_image_view_get_marker          (DsImageView   *self,
                                               double        *u,
                                               double        *v);

void        ds_image_view_set_zoom            (DsImageView   *self,
                                               double         zoom);
double      ds_image_view_get_zoom            (DsImageView   *self);
void        ds_image_view_zoom_in             (DsImageView   *self);
void        ds_image_view_zoom_out            (DsImageView   *self);

gboolean    ds_image_view_get_picture_rect    (DsImageView     *self,
                                               graphene_rect_t *rect);
gboolean    ds_image_view_to_picture          (DsImageView   *self,
                                               double         x,
                                               double         y,
                                               double        *u,
                                               double        *v);

G_END_DECLS
