/* test-ui-map-grid.c: DsMapGrid under a display: rows and tiles made,
 * replaced and dropped, tile activation with its row and column, tile size
 * and accessible names, and the tile pictures' pixels. */
#include "ds-map-grid.h"
#include "ds-test-ui.h"

typedef struct
{
  int n;
  int row;
  int col;
} Activated;

static void
on_tile_activated (DsMapGrid *grid,
                   int        row,
                   int        col,
                   Activated *act)
{
  act->n++;
  act->row = row;
  act->col = col;
}

static GtkWidget *
tile_picture (GtkWidget *tile)
{
  GtkWidget *box = gtk_button_get_child (GTK_BUTTON (tile));

  return gtk_widget_get_first_child (box);
}

static void
test_rows (void)
{
  GtkWidget *grid_widget = ds_map_grid_new ();
  DsMapGrid *grid = DS_MAP_GRID (grid_widget);
  g_autoptr (GdkTexture) a = ds_test_solid_texture (8, 8, 255, 0, 0);
  g_autoptr (GdkTexture) b = ds_test_solid_texture (8, 8, 0, 255, 0);
  g_autoptr (GdkTexture) c = ds_test_solid_texture (16, 8, 0, 0, 255);
  GdkTexture *row0[] = { a, b, NULL, c };
  const char *captions0[] = { "PCA X_uncond", "PCA X_s (s = 7.5)", "PCA Δcond", "|Δcond|" };
  GdkTexture *row0b[] = { c, a };
  const char *captions0b[] = { "one", "two" };
  GtkWidget *window;
  int size = 0;

  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 0);
  g_object_get (grid_widget, "tile-size", &size, NULL);
  g_assert_cmpint (size, ==, 160);
  window = ds_test_ui_window (grid_widget, 900, 600);

  ds_map_grid_set_row (grid, 0, "U-L1-R1-B0-Cross-Q", row0, captions0, 4);
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 1);
  g_assert_cmpint (ds_map_grid_get_n_tiles (grid, 0), ==, 4);
  g_assert_true (ds_map_grid_get_texture (grid, 0, 0) == a);
  g_assert_true (ds_map_grid_get_texture (grid, 0, 1) == b);
  g_assert_null (ds_map_grid_get_texture (grid, 0, 2));
  g_assert_true (ds_map_grid_get_texture (grid, 0, 3) == c);
  g_assert_null (ds_map_grid_get_texture (grid, 0, 4));
  g_assert_null (ds_map_grid_get_texture (grid, 1, 0));
  g_assert_nonnull (ds_map_grid_get_tile (grid, 0, 3));
  g_assert_null (ds_map_grid_get_tile (grid, 0, 4));
  g_assert_true (GTK_IS_BUTTON (ds_map_grid_get_tile (grid, 0, 2)));
  /* the tile's name: "<title>: <caption>" */
  g_assert_cmpstr (gtk_widget_get_tooltip_text (ds_map_grid_get_tile (grid, 0, 1)), ==,
                   "U-L1-R1-B0-Cross-Q: PCA X_s (s = 7.5)");
  g_assert_true (gtk_picture_get_paintable (GTK_PICTURE (tile_picture (ds_map_grid_get_tile (grid, 0, 3))))
                 == GDK_PAINTABLE (c));
  g_assert_null (gtk_picture_get_paintable (GTK_PICTURE (tile_picture (ds_map_grid_get_tile (grid, 0, 2)))));

  /* row 2 makes row 1 too (empty) */
  ds_map_grid_set_row (grid, 2, "U-L2-R2-Res-Out", row0, captions0, 2);
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 3);
  g_assert_cmpint (ds_map_grid_get_n_tiles (grid, 1), ==, 0);
  g_assert_cmpint (ds_map_grid_get_n_tiles (grid, 2), ==, 2);
  g_assert_true (ds_map_grid_get_texture (grid, 2, 1) == b);

  /* replacing a row's content */
  ds_map_grid_set_row (grid, 0, "D-L0-R0-B0-Self-K", row0b, captions0b, 2);
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 3);
  g_assert_cmpint (ds_map_grid_get_n_tiles (grid, 0), ==, 2);
  g_assert_true (ds_map_grid_get_texture (grid, 0, 0) == c);
  g_assert_true (ds_map_grid_get_texture (grid, 0, 1) == a);
  g_assert_null (ds_map_grid_get_texture (grid, 0, 2));
  g_assert_cmpstr (gtk_widget_get_tooltip_text (ds_map_grid_get_tile (grid, 0, 1)), ==,
                   "D-L0-R0-B0-Self-K: two");

  /* tile size applies to existing and new tiles */
  ds_map_grid_set_tile_size (grid, 80);
  {
    int w = 0, h = 0;

    gtk_widget_get_size_request (tile_picture (ds_map_grid_get_tile (grid, 2, 0)), &w, &h);
    g_assert_cmpint (w, ==, 80);
    g_assert_cmpint (h, ==, 80);
  }
  g_object_set (grid_widget, "tile-size", 96, NULL);
  ds_map_grid_set_row (grid, 1, "new", row0b, NULL, 1);
  {
    int w = 0, h = 0;

    gtk_widget_get_size_request (tile_picture (ds_map_grid_get_tile (grid, 1, 0)), &w, &h);
    g_assert_cmpint (w, ==, 96);
    g_assert_cmpint (h, ==, 96);
    g_assert_cmpstr (gtk_widget_get_tooltip_text (ds_map_grid_get_tile (grid, 1, 0)), ==, "new: ");
  }

  /* dropping rows */
  ds_map_grid_set_rows (grid, 1);
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 1);
  g_assert_null (ds_map_grid_get_texture (grid, 2, 0));
  g_assert_true (ds_map_grid_get_texture (grid, 0, 0) == c);
  ds_map_grid_set_rows (grid, 5);  /* does not add */
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 1);
  ds_map_grid_clear (grid);
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 0);
  g_assert_null (ds_map_grid_get_texture (grid, 0, 0));

  gtk_window_destroy (GTK_WINDOW (window));
}

static void
test_activation (void)
{
  GtkWidget *grid_widget = ds_map_grid_new ();
  DsMapGrid *grid = DS_MAP_GRID (grid_widget);
  g_autoptr (GdkTexture) a = ds_test_solid_texture (8, 8, 255, 0, 0);
  GdkTexture *tex[] = { a, a, NULL };
  const char *captions[] = { "x", "y", "z" };
  Activated act = { 0 };
  GtkWidget *window, *tile;

  g_signal_connect (grid_widget, "tile-activated", G_CALLBACK (on_tile_activated), &act);
  window = ds_test_ui_window (grid_widget, 700, 500);
  ds_map_grid_set_row (grid, 0, "A", tex, captions, 3);
  ds_map_grid_set_row (grid, 1, "B", tex, captions, 3);
  ds_test_ui_wait_ms (100);

  /* click (the button's "clicked") */
  g_signal_emit_by_name (ds_map_grid_get_tile (grid, 1, 2), "clicked");
  g_assert_cmpint (act.n, ==, 1);
  g_assert_cmpint (act.row, ==, 1);
  g_assert_cmpint (act.col, ==, 2);

  /* keyboard: the tile takes focus, and activating it (Enter/space) emits */
  tile = ds_map_grid_get_tile (grid, 0, 1);
  g_assert_true (gtk_widget_get_focusable (tile) || gtk_widget_get_focus_on_click (tile));
  g_assert_true (gtk_widget_grab_focus (tile));
  g_assert_true (gtk_widget_is_focus (tile)); /* has_focus needs the window active */
  g_assert_true (ds_test_ui_press (tile));  /* waits: a button shows itself pressed before "clicked" */
  g_assert_cmpint (act.n, ==, 2);
  g_assert_cmpint (act.row, ==, 0);
  g_assert_cmpint (act.col, ==, 1);

  /* after replacing row 1 the new tiles carry the right indices */
  ds_map_grid_set_row (grid, 1, "B2", tex, captions, 1);
  g_assert_true (ds_test_ui_press (ds_map_grid_get_tile (grid, 1, 0)));
  g_assert_cmpint (act.n, ==, 3);
  g_assert_cmpint (act.row, ==, 1);
  g_assert_cmpint (act.col, ==, 0);

  gtk_window_destroy (GTK_WINDOW (window));
}

static void
test_pixels (void)
{
  GtkWidget *grid_widget = ds_map_grid_new ();
  DsMapGrid *grid = DS_MAP_GRID (grid_widget);
  g_autoptr (GdkTexture) red = ds_test_solid_texture (8, 8, 255, 0, 0);
  g_autoptr (GdkTexture) green = ds_test_solid_texture (8, 8, 0, 200, 0);
  GdkTexture *tex[] = { red, green };
  const char *captions[] = { "PCA X_uncond", "|Δcond|" };
  GtkWidget *window;
  DsTestPixels *px;

  window = ds_test_ui_window (grid_widget, 600, 400);
  ds_map_grid_set_row (grid, 0, "U-L1-R1-B0-Cross-Q", tex, captions, 2);
  ds_test_ui_wait_ms (200);

  px = ds_test_ui_render (grid_widget);
  for (int col = 0; col < 2; col++)
    {
      GtkWidget *picture = tile_picture (ds_map_grid_get_tile (grid, 0, col));
      graphene_rect_t b;
      int x, y;

      g_assert_true (gtk_widget_compute_bounds (picture, grid_widget, &b));
      g_test_message ("tile %d picture at %.0f,%.0f %.0fx%.0f", col,
                      b.origin.x, b.origin.y, b.size.width, b.size.height);
      g_assert_cmpfloat (b.size.width, >=, 159);
      g_assert_cmpfloat (b.size.height, >=, 159);
      x = (int) (b.origin.x + b.size.width / 2);
      y = (int) (b.origin.y + b.size.height / 2);
      if (col == 0)
        g_assert_true (ds_test_pixel_near (px, x, y, 255, 0, 0, 2));
      else
        g_assert_true (ds_test_pixel_near (px, x, y, 0, 200, 0, 2));
    }
  ds_test_pixels_free (px);

  gtk_window_destroy (GTK_WINDOW (window));
}

int
main (int   argc,
      char *argv[])
{
  ds_test_ui_init_or_skip (&argc, &argv);

  g_test_add_func ("/ui/map-grid/rows", test_rows);
  g_test_add_func ("/ui/map-grid/activation", test_activation);
  g_test_add_func ("/ui/map-grid/pixels", test_pixels);
  return g_test_run ();
}
