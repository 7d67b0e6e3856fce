/* ds-image-view-private.h: the image view's pointer paths, for the widget's
 * own controllers and for tests, which cannot synthesize GDK events. */
#pragma once

#include "ds-image-view.h"

G_BEGIN_DECLS

/* x, y in widget coordinates; what the motion controller and the click
 * gesture do. _ds_image_view_press returns whether it picked a point. */
void     _ds_image_view_motion (DsImageView *self,
                                double       x,
                                double       y);
void     _ds_image_view_leave  (DsImageView *self);
gboolean _ds_image_view_press  (DsImageView *self,
                                double       x,
                                double       y);

G_END_DECLS
