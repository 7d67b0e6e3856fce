/* ds-application.h: the explorer's GtkApplication (org.diffscope.Diffscope):
 * command-line options, app actions (preferences, about, quit), keyboard
 * shortcuts, and a window per activation or opened file. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_APPLICATION (ds_application_get_type ())
G_DECLARE_FINAL_TYPE (DsApplication, ds_application, DS, APPLICATION, GtkApplication)

DsApplication *ds_application_new (void);

G_END_DECLS
