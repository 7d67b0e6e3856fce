/* ds-map-grid.h: rows of map tiles, one row per feature block, each tile a
 * button showing a map with its caption. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_MAP_GRID (ds_map_grid_get_type ())
G_DECLARE_FINAL_TYPE (DsMapGrid, ds_map_grid, DS, MAP_GRID, GtkWidget)

GtkWidget  *ds_map_grid_new           (void);
void        ds_map_grid_clear         (DsMapGrid         *self);
void        ds_map_grid_set_row       (DsMapGrid         *self,
                                       int                row,
                                       const char        *title,
                                       GdkTexture *const *textures,
                                       const char *const *captions,
                                       int                n);
void        ds_map_grid_set_rows      (DsMapGrid         *self,
                                       int                n_rows);
int         ds_map_grid_get_n_rows    (DsMapGrid         *self);
int         ds_map_grid_get_n_tiles   (DsMapGrid         *self,
                                       int                row);
GdkTexture *ds_map_grid_get_texture   (DsMapGrid         *self,
                                       int                row,
                                       int                col);
GtkWidget  *ds_map_grid_get_tile      (DsMapGrid         *self,
                                       int                row,
                                       int                col);
void        ds_map_grid_set_tile_size (DsMapGrid         *self,
                                       int                tile_size);
int         ds_map_grid_get_tile_size (DsMapGrid         *self);

G_END_DECLS
