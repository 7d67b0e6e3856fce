/* ds-cka-plot.h: a line plot of CKA(X_s, X_uncond) against the guidance scale
 * s, one curve per feature block, with a marker at the current s. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_CKA_PLOT (ds_cka_plot_get_type ())
G_DECLARE_FINAL_TYPE (DsCkaPlot, ds_cka_plot, DS, CKA_PLOT, GtkWidget)

GtkWidget *ds_cka_plot_new          (void);
void       ds_cka_plot_set_curves   (DsCkaPlot         *self,
                                     const double      *s,
                                     int                n_s,
                                     const double      *values,
                                     const char *const *labels,
                                     int                n_curves);
void       ds_cka_plot_set_marker   (DsCkaPlot         *self,
                                     double             s);
int        ds_cka_plot_get_n_curves (DsCkaPlot         *self);
/* the colour curve i is drawn in (the palette repeats after 10) */
void       ds_cka_plot_get_color    (int                i,
                                     GdkRGBA           *color);

G_END_DECLS
