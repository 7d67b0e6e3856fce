/* ds-map-grid.c: rows of map tiles, one row per feature block: the block's
 * name over a line of tile buttons, each a picture of a map with its caption
 * ("PCA X_uncond", "|Δcond|", …). Activating a tile emits "tile-activated"
 * with its row and column. */
#include "ds-map-grid.h"

#include "ds-resources.h"

#define DEFAULT_TILE_SIZE 160

typedef struct
{
  GtkWidget *box;       /* the row: title over tiles */
  GtkWidget *title;
  GtkWidget *tiles;     /* horizontal box of buttons */
  GPtrArray *textures;  /* GdkTexture or NULL per tile */
  GPtrArray *pictures;  /* GtkPicture per tile, not owned */
} Row;

struct _DsMapGrid
{
  GtkWidget  parent_instance;

  GtkWidget *rows_box;
  GPtrArray *rows;      /* Row */
  int        tile_size;
};

G_DEFINE_FINAL_TYPE (DsMapGrid, ds_map_grid, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_TILE_SIZE,
  N_PROPS
};

enum {
  SIGNAL_TILE_ACTIVATED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

static void
row_free (gpointer data)
{
  Row *row = data;

  g_ptr_array_unref (row->textures);
  g_ptr_array_unref (row->pictures);
  g_free (row);
}

static void
on_tile_clicked (GtkButton *button,
                 DsMapGrid *self)
{
  int row = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "ds-row"));
  int col = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "ds-col"));

  g_signal_emit (self, signals[SIGNAL_TILE_ACTIVATED], 0, row, col);
}

static void
unref_nullable (gpointer object)
{
  if (object != NULL)
    g_object_unref (object);
}

static Row *
row_new (DsMapGrid *self)
{
  Row *row = g_new0 (Row, 1);

  row->textures = g_ptr_array_new_with_free_func (unref_nullable);
  row->pictures = g_ptr_array_new ();

  row->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  row->title = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (row->title), 0.0f);
  gtk_label_set_ellipsize (GTK_LABEL (row->title), PANGO_ELLIPSIZE_END);
  gtk_widget_add_css_class (row->title, "heading");
  row->tiles = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_box_append (GTK_BOX (row->box), row->title);
  gtk_box_append (GTK_BOX (row->box), row->tiles);
  gtk_box_append (GTK_BOX (self->rows_box), row->box);
  return row;
}

static void
row_clear_tiles (Row *row)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (row->tiles)) != NULL)
    gtk_box_remove (GTK_BOX (row->tiles), child);
  g_ptr_array_set_size (row->pictures, 0);
  g_ptr_array_set_size (row->textures, 0);
}

static GtkWidget *
tile_new (DsMapGrid  *self,
          int         row_index,
          int         col,
          const char *title,
          GdkTexture *texture,
          const char *caption,
          GtkWidget **picture_out)
{
  GtkWidget *button = gtk_button_new ();
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
  GtkWidget *picture = gtk_picture_new_for_paintable (GDK_PAINTABLE (texture));
  GtkWidget *label = gtk_label_new (caption != NULL ? caption : "");
  g_autofree char *name = NULL;

  gtk_picture_set_can_shrink (GTK_PICTURE (picture), TRUE);
  gtk_picture_set_content_fit (GTK_PICTURE (picture), GTK_CONTENT_FIT_CONTAIN);
  gtk_widget_set_size_request (picture, self->tile_size, self->tile_size);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
  gtk_label_set_max_width_chars (GTK_LABEL (label), 1);
  gtk_widget_set_size_request (label, self->tile_size, -1);
  gtk_widget_add_css_class (label, "map-caption");
  gtk_box_append (GTK_BOX (box), picture);
  gtk_box_append (GTK_BOX (box), label);
  gtk_button_set_child (GTK_BUTTON (button), box);
  gtk_widget_add_css_class (button, "flat");
  gtk_widget_add_css_class (button, "map-tile");
  if (texture == NULL)
    gtk_widget_add_css_class (button, "placeholder");

  name = g_strdup_printf ("%s: %s", title != NULL ? title : "", caption != NULL ? caption : "");
  gtk_accessible_update_property (GTK_ACCESSIBLE (button),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
  gtk_widget_set_tooltip_text (button, name);

  g_object_set_data (G_OBJECT (button), "ds-row", GINT_TO_POINTER (row_index));
  g_object_set_data (G_OBJECT (button), "ds-col", GINT_TO_POINTER (col));
  g_signal_connect (button, "clicked", G_CALLBACK (on_tile_clicked), self);
  *picture_out = picture;
  return button;
}

/* Puts a new texture and caption into tile i of row (its widgets stay). */
static void
tile_update (Row        *row,
             int         i,
             const char *title,
             GdkTexture *texture,
             const char *caption)
{
  GtkWidget *picture = g_ptr_array_index (row->pictures, i);
  GtkWidget *label = gtk_widget_get_next_sibling (picture);
  GtkWidget *button = gtk_widget_get_ancestor (picture, GTK_TYPE_BUTTON);
  g_autofree char *name = g_strdup_printf ("%s: %s", title != NULL ? title : "",
                                           caption != NULL ? caption : "");

  g_return_if_fail (texture == NULL || GDK_IS_TEXTURE (texture));
  gtk_picture_set_paintable (GTK_PICTURE (picture), GDK_PAINTABLE (texture));
  gtk_label_set_text (GTK_LABEL (label), caption != NULL ? caption : "");
  if (texture == NULL)
    gtk_widget_add_css_class (button, "placeholder");
  else
    gtk_widget_remove_css_class (button, "placeholder");
  gtk_accessible_update_property (GTK_ACCESSIBLE (button),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
  gtk_widget_set_tooltip_text (button, name);
  if (g_ptr_array_index (row->textures, i) != NULL)
    g_object_unref (g_ptr_array_index (row->textures, i));
  g_ptr_array_index (row->textures, i) = texture != NULL ? g_object_ref (texture) : NULL;
}

GtkWidget *
ds_map_grid_new (void)
{
  return g_object_new (DS_TYPE_MAP_GRID, NULL);
}

void
ds_map_grid_clear (DsMapGrid *self)
{
  g_return_if_fail (DS_IS_MAP_GRID (self));
  ds_map_grid_set_rows (self, 0);
}

void
ds_map_grid_set_rows (DsMapGrid *self,
                      int        n_rows)
{
  g_return_if_fail (DS_IS_MAP_GRID (self));
  g_return_if_fail (n_rows >= 0);

  while ((int) self->rows->len > n_rows)
    {
      Row *row = g_ptr_array_index (self->rows, self->rows->len - 1);

      gtk_box_remove (GTK_BOX (self->rows_box), row->box);
      g_ptr_array_remove_index (self->rows, self->rows->len - 1);
    }
}

void
ds_map_grid_set_row (DsMapGrid         *self,
                     int                row_index,
                     const char        *title,
                     GdkTexture *const *textures,
                     const char *const *captions,
                     int                n)
{
  Row *row;

  g_return_if_fail (DS_IS_MAP_GRID (self));
  g_return_if_fail (row_index >= 0);
  g_return_if_fail (n >= 0);
  g_return_if_fail (n == 0 || textures != NULL);

  while ((int) self->rows->len <= row_index)
    g_ptr_array_add (self->rows, row_new (self));
  row = g_ptr_array_index (self->rows, row_index);

  gtk_label_set_text (GTK_LABEL (row->title), title != NULL ? title : "");
  gtk_widget_set_visible (row->title, title != NULL && *title != '\0');
  /* The same number of tiles: new pictures and captions in the widgets there
   * are (a slider moving through values rebuilds no widget). */
  if ((int) row->textures->len == n)
    {
      for (int i = 0; i < n; i++)
        tile_update (row, i, title, textures[i], captions != NULL ? captions[i] : NULL);
      return;
    }
  row_clear_tiles (row);
  for (int i = 0; i < n; i++)
    {
      GdkTexture *texture = textures[i];
      const char *caption = captions != NULL ? captions[i] : NULL;
      GtkWidget *picture = NULL;
      GtkWidget *tile;

      g_return_if_fail (texture == NULL || GDK_IS_TEXTURE (texture));
      tile = tile_new (self, row_index, i, title, texture, caption, &picture);
      gtk_box_append (GTK_BOX (row->tiles), tile);
      g_ptr_array_add (row->textures, texture != NULL ? g_object_ref (texture) : NULL);
      g_ptr_array_add (row->pictures, picture);
    }
}

int
ds_map_grid_get_n_rows (DsMapGrid *self)
{
  g_return_val_if_fail (DS_IS_MAP_GRID (self), 0);
  return (int) self->rows->len;
}

int
ds_map_grid_get_n_tiles (DsMapGrid *self,
                         int        row)
{
  g_return_val_if_fail (DS_IS_MAP_GRID (self), 0);

  if (row < 0 || row >= (int) self->rows->len)
    return 0;
  return (int) ((Row *) g_ptr_array_index (self->rows, row))->textures->len;
}

GdkTexture *
ds_map_grid_get_texture (DsMapGrid *self,
                         int        row,
                         int        col)
{
  Row *r;

  g_return_val_if_fail (DS_IS_MAP_GRID (self), NULL);

  if (row < 0 || row >= (int) self->rows->len)
    return NULL;
  r = g_ptr_array_index (self->rows, row);
  if (col < 0 || col >= (int) r->textures->len)
    return NULL;
  return g_ptr_array_index (r->textures, col);
}

GtkWidget *
ds_map_grid_get_tile (DsMapGrid *self,
                      int        row,
                      int        col)
{
  Row *r;
  GtkWidget *child;

  g_return_val_if_fail (DS_IS_MAP_GRID (self), NULL);

  if (row < 0 || row >= (int) self->rows->len)
    return NULL;
  r = g_ptr_array_index (self->rows, row);
  child = gtk_widget_get_first_child (r->tiles);
  for (int i = 0; child != NULL && i < col; i++)
    child = gtk_widget_get_next_sibling (child);
  return col >= 0 ? child : NULL;
}

void
ds_map_grid_set_tile_size (DsMapGrid *self,
                           int        tile_size)
{
  g_return_if_fail (DS_IS_MAP_GRID (self));
  g_return_if_fail (tile_size > 0);

  if (tile_size == self->tile_size)
    return;
  self->tile_size = tile_size;
  for (guint i = 0; i < self->rows->len; i++)
    {
      Row *row = g_ptr_array_index (self->rows, i);

      for (guint j = 0; j < row->pictures->len; j++)
        {
          GtkWidget *picture = g_ptr_array_index (row->pictures, j);

          gtk_widget_set_size_request (picture, tile_size, tile_size);
          gtk_widget_set_size_request (gtk_widget_get_next_sibling (picture), tile_size, -1);
        }
    }
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TILE_SIZE]);
}

int
ds_map_grid_get_tile_size (DsMapGrid *self)
{
  g_return_val_if_fail (DS_IS_MAP_GRID (self), DEFAULT_TILE_SIZE);
  return self->tile_size;
}

static void
ds_map_grid_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  DsMapGrid *self = DS_MAP_GRID (object);

  switch (prop_id)
    {
    case PROP_TILE_SIZE:
      g_value_set_int (value, self->tile_size);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_map_grid_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  DsMapGrid *self = DS_MAP_GRID (object);

  switch (prop_id)
    {
    case PROP_TILE_SIZE:
      ds_map_grid_set_tile_size (self, g_value_get_int (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_map_grid_dispose (GObject *object)
{
  DsMapGrid *self = DS_MAP_GRID (object);

  g_clear_pointer (&self->rows, g_ptr_array_unref);
  gtk_widget_dispose_template (GTK_WIDGET (self), DS_TYPE_MAP_GRID);
  G_OBJECT_CLASS (ds_map_grid_parent_class)->dispose (object);
}

static void
ds_map_grid_class_init (DsMapGridClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->get_property = ds_map_grid_get_property;
  object_class->set_property = ds_map_grid_set_property;
  object_class->dispose = ds_map_grid_dispose;

  properties[PROP_TILE_SIZE] =
    g_param_spec_int ("tile-size", NULL, NULL, 1, 4096, DEFAULT_TILE_SIZE,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * DsMapGrid::tile-activated:
   * @row: the tile's row (feature block)
   * @col: the tile's column
   */
  signals[SIGNAL_TILE_ACTIVATED] =
    g_signal_new ("tile-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_INT);

  /* link the resource bundle (its constructor registers it) */
  (void) ds_get_resource ();
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-map-grid.ui");
  gtk_widget_class_bind_template_child (widget_class, DsMapGrid, rows_box);
  gtk_widget_class_set_css_name (widget_class, "mapgrid");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
ds_map_grid_init (DsMapGrid *self)
{
  self->tile_size = DEFAULT_TILE_SIZE;
  self->rows = g_ptr_array_new_with_free_func (row_free);
  gtk_widget_init_template (GTK_WIDGET (self));
}
