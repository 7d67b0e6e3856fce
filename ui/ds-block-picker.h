/* ds-block-picker.h: choose several UNet blocks by the paper's names
 * ("U-L1-R1-B0-Cross-Q", …) from a filterable list of check buttons. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_BLOCK_PICKER (ds_block_picker_get_type ())

G_DECLARE_FINAL_TYPE (DsBlockPicker, ds_block_picker, DS, BLOCK_PICKER, GtkWidget)

GtkWidget  *ds_block_picker_new          (void);
void        ds_block_picker_set_blocks   (DsBlockPicker      *self,
                                          const char *const  *names,
                                          int                 n);
void        ds_block_picker_set_selected (DsBlockPicker      *self,
                                          const char *const  *names);
char      **ds_block_picker_get_selected (DsBlockPicker      *self);

G_END_DECLS
