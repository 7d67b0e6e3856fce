/* test-sheet.c: the cairo contact sheet and CKA plot (app/ds-sheet.c).
 *
 * Writes a sheet and a plot into a temporary directory, reads them back with
 * ds_image_load and checks sizes against the documented layout constants,
 * pixels where tiles and lines must land (crisp nearest enlargement, centring,
 * the frame, NaN gaps), that titles, captions and labels drew something, and
 * the error paths (bad arguments, a directory that cannot be written).
 * Set DS_TEST_KEEP=1 to keep the PNGs for a look; the directory is printed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-image.h"
#include "ds-sheet.h"
#include "ds-test.h"

static char tmpdir[] = "/tmp/ds-test-sheet-XXXXXX";

static const uint8_t *
pixel (const DsImage *img, int x, int y)
{
  return img->rgb + ((size_t) y * img->width + x) * 3;
}

static bool
is_rgb (const DsImage *img, int x, int y, uint32_t rgb)
{
  const uint8_t *p = pixel (img, x, y);
  return p[0] == (rgb >> 16 & 0xff) && p[1] == (rgb >> 8 & 0xff) && p[2] == (rgb & 0xff);
}

#define CHECK_PIXEL(img, x, y, rgb)                                                  \
  do {                                                                               \
    const uint8_t *p_ = pixel ((img), (x), (y));                                     \
    DS_CHECK (is_rgb ((img), (x), (y), (rgb)), "pixel (%d, %d) = %02x%02x%02x, expected %06x", \
              (int) (x), (int) (y), p_[0], p_[1], p_[2], (unsigned) (rgb));          \
  } while (0)

/* Pixels in a rectangle that differ from the background. */
static long
ink (const DsImage *img, int x0, int y0, int x1, int y1)
{
  long n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      if (!is_rgb (img, x, y, DS_SHEET_BACKGROUND))
        n++;
  return n;
}

static uint8_t *
solid (int w, int h, uint32_t rgb)
{
  uint8_t *p = malloc ((size_t) w * h * 3);
  for (int i = 0; i < w * h; i++)
    {
      p[3 * i] = rgb >> 16 & 0xff;
      p[3 * i + 1] = rgb >> 8 & 0xff;
      p[3 * i + 2] = rgb & 0xff;
    }
  return p;
}

static void
test_sheet (void)
{
  DsError err = { 0 };
  /* A 4x4 picture whose every pixel differs: (x*60, y*60, 200). */
  uint8_t grid[4 * 4 * 3];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++)
      {
        grid[(y * 4 + x) * 3] = (uint8_t) (x * 60);
        grid[(y * 4 + x) * 3 + 1] = (uint8_t) (y * 60);
        grid[(y * 4 + x) * 3 + 2] = 200;
      }
  uint8_t *red = solid (16, 16, 0xff0000);
  uint8_t *wide = solid (8, 4, 0x2060c0);
  uint8_t *big = solid (512, 512, 0x0ac81e);
  DsSheetTile tiles[] = {
    { red, 16, 16, "U-L1-R1-B0-Cross-Q · X_s (s=7.5)" },
    { grid, 4, 4, "4×4 grid\nsecond line" },
    { wide, 8, 4, "wide 8×4" },
    { big, 512, 512, "big 512×512 shrunk" },
    { NULL, 0, 0, "no picture" },
  };
  const int n = 5, columns = 3;
  const char *title = "Diffscope — demo model (untrained: random weights)\nprompt: a cat";

  /* The documented layout, worked out from the constants. */
  int caption_lines = 2, title_lines = 2, rows = 2;
  int cell_h = DS_SHEET_TILE_SIZE + 4 + caption_lines * DS_SHEET_CAPTION_LINE;
  int title_h = DS_SHEET_MARGIN + title_lines * DS_SHEET_TITLE_LINE;
  int want_w = 2 * DS_SHEET_MARGIN + columns * DS_SHEET_TILE_SIZE + (columns - 1) * DS_SHEET_GAP;
  int grid_y = title_h + DS_SHEET_MARGIN / 2;
  int want_h = grid_y + rows * cell_h + (rows - 1) * DS_SHEET_GAP + DS_SHEET_MARGIN;

  DsSheetLayout l;
  DS_CHECK_OK (ds_sheet_layout (tiles, n, columns, title, &l, &err), &err);
  DS_CHECK (l.width == want_w && l.height == want_h, "layout %d×%d, expected %d×%d", l.width,
            l.height, want_w, want_h);
  DS_CHECK (l.title_height == title_h && l.caption_lines == 2 && l.rows == 2,
            "title %d, captions %d, rows %d", l.title_height, l.caption_lines, l.rows);

  char path[256];
  snprintf (path, sizeof path, "%s/sheet.png", tmpdir);
  DS_CHECK_OK (ds_sheet_write_png (path, tiles, n, columns, title, &err), &err);
  DsImage img = { 0 };
  DsStatus st = ds_image_load (path, &img, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    goto out;
  DS_CHECK (img.width == want_w && img.height == want_h, "PNG %d×%d, expected %d×%d",
            img.width, img.height, want_w, want_h);
  if (img.width != want_w || img.height != want_h)
    goto out;

  int x, y, w, h;
  /* Tile 0: 16x16 red enlarged 16x to fill the box at the first grid cell. */
  ds_sheet_tile_rect (&l, &tiles[0], 0, &x, &y, &w, &h);
  DS_CHECK (x == DS_SHEET_MARGIN && y == grid_y && w == 256 && h == 256,
            "tile 0 at (%d, %d) %d×%d", x, y, w, h);
  CHECK_PIXEL (&img, x + 128, y + 128, 0xff0000);
  CHECK_PIXEL (&img, x, y, 0xff0000);
  CHECK_PIXEL (&img, x + 255, y + 255, 0xff0000);
  CHECK_PIXEL (&img, x - 1, y + 100, 0xb8b8b8); /* the frame */
  CHECK_PIXEL (&img, x - 3, y + 100, DS_SHEET_BACKGROUND);
  /* Its caption drew text below the box, and not across into the gap. */
  long cap = ink (&img, x, y + 256 + 2, x + 256, y + 256 + 4 + DS_SHEET_CAPTION_LINE);
  DS_CHECK (cap > 80, "caption of tile 0: %ld ink pixels", cap);

  /* Tile 1: 4x4 -> 64-pixel blocks, exact at block corners (nearest, crisp). */
  ds_sheet_tile_rect (&l, &tiles[1], 1, &x, &y, &w, &h);
  DS_CHECK (x == DS_SHEET_MARGIN + 256 + DS_SHEET_GAP && w == 256 && h == 256,
            "tile 1 at (%d, %d) %d×%d", x, y, w, h);
  for (int by = 0; by < 4; by++)
    for (int bx = 0; bx < 4; bx++)
      {
        uint32_t c = (uint32_t) (bx * 60) << 16 | (uint32_t) (by * 60) << 8 | 200;
        CHECK_PIXEL (&img, x + bx * 64, y + by * 64, c);
        CHECK_PIXEL (&img, x + bx * 64 + 63, y + by * 64 + 63, c);
      }
  long cap2 = ink (&img, x, y + 256 + 4 + DS_SHEET_CAPTION_LINE, x + 256,
                   y + 256 + 4 + 2 * DS_SHEET_CAPTION_LINE);
  DS_CHECK (cap2 > 40, "second caption line of tile 1: %ld ink pixels", cap2);

  /* Tile 2: 8x4 -> 32x: 256x128, centred vertically in its box. */
  ds_sheet_tile_rect (&l, &tiles[2], 2, &x, &y, &w, &h);
  DS_CHECK (w == 256 && h == 128 && y == grid_y + 64, "tile 2 at (%d, %d) %d×%d", x, y, w, h);
  CHECK_PIXEL (&img, x + 128, y + 64, 0x2060c0);
  CHECK_PIXEL (&img, x + 128, y, 0x2060c0);
  CHECK_PIXEL (&img, x + 128, y - 1, 0xb8b8b8);
  CHECK_PIXEL (&img, x + 128, y - 10, DS_SHEET_BACKGROUND);
  CHECK_PIXEL (&img, x + 128, y + h + 10, DS_SHEET_BACKGROUND);

  /* Tile 3, second row: 512x512 shrunk to the box; a solid picture stays solid. */
  ds_sheet_tile_rect (&l, &tiles[3], 3, &x, &y, &w, &h);
  DS_CHECK (x == DS_SHEET_MARGIN && y == grid_y + cell_h + DS_SHEET_GAP && w == 256 && h == 256,
            "tile 3 at (%d, %d) %d×%d", x, y, w, h);
  CHECK_PIXEL (&img, x + 128, y + 128, 0x0ac81e);
  CHECK_PIXEL (&img, x + 2, y + 253, 0x0ac81e);

  /* Tile 4: an empty box, light grey, with a note in it. */
  ds_sheet_tile_rect (&l, &tiles[4], 4, &x, &y, &w, &h);
  CHECK_PIXEL (&img, x + 5, y + 5, 0xe2e2e2);
  DS_CHECK (ink (&img, x, y, x + w, y + h) == (long) w * h, "empty box is filled");

  /* The third cell of the second row is unused: background only. */
  DS_CHECK (ink (&img, DS_SHEET_MARGIN + 2 * (256 + DS_SHEET_GAP), y,
                 DS_SHEET_MARGIN + 2 * (256 + DS_SHEET_GAP) + 256, y + cell_h)
              == 0,
            "unused cell is blank");

  /* The title band holds text on both lines. */
  long t1 = ink (&img, 0, DS_SHEET_MARGIN, want_w, DS_SHEET_MARGIN + DS_SHEET_TITLE_LINE);
  long t2 = ink (&img, 0, DS_SHEET_MARGIN + DS_SHEET_TITLE_LINE, want_w, title_h);
  DS_CHECK (t1 > 300 && t2 > 100, "title ink: line 1 %ld, line 2 %ld", t1, t2);
  DS_CHECK (ink (&img, 0, 0, want_w, DS_SHEET_MARGIN - 4) == 0, "top margin is blank");

out:
  ds_image_free (&img);
  free (red);
  free (wide);
  free (big);
}

static void
test_sheet_small (void)
{
  /* One tile, no title, no caption: minimum width, no caption rows. */
  DsError err = { 0 };
  uint8_t *p = solid (3, 5, 0x123456);
  DsSheetTile t = { p, 3, 5, NULL };
  char path[256];
  snprintf (path, sizeof path, "%s/single.png", tmpdir);
  DS_CHECK_OK (ds_sheet_write_png (path, &t, 1, 0, NULL, &err), &err);
  DsImage img = { 0 };
  if (ds_image_load (path, &img, &err) == DS_OK)
    {
      int want_h = 2 * DS_SHEET_MARGIN + DS_SHEET_TILE_SIZE;
      DS_CHECK (img.width == DS_SHEET_MIN_WIDTH && img.height == want_h, "%d×%d, expected %d×%d",
                img.width, img.height, DS_SHEET_MIN_WIDTH, want_h);
      /* 3x5 -> 51x enlargement: 153x255, centred. */
      int gx = (DS_SHEET_MIN_WIDTH - DS_SHEET_TILE_SIZE) / 2;
      int x = gx + (256 - 153) / 2, y = DS_SHEET_MARGIN + (256 - 255) / 2;
      CHECK_PIXEL (&img, x, y, 0x123456);
      CHECK_PIXEL (&img, x + 152, y + 254, 0x123456);
      CHECK_PIXEL (&img, x - 1, y + 100, 0xb8b8b8);
      CHECK_PIXEL (&img, x + 153, y + 100, 0xb8b8b8);
    }
  ds_image_free (&img);
  free (p);
}

static void
test_plot (void)
{
  DsError err = { 0 };
  /* s deliberately unsorted; series 0 is flat at 0.5, series 1 has a gap. */
  const double s[] = { 7.5, 1, 3, 5 };
  const double a[] = { 0.5, 0.5, 0.5, 0.5 };
  const double b[] = { 0.8, 0.9, NAN, 0.7 };
  const double *series[] = { a, b };
  const char *names[] = { "U-L1-R1-B0-Cross-Q vs s=1", NULL };
  char path[256];
  snprintf (path, sizeof path, "%s/cka.png", tmpdir);
  DS_CHECK_OK (ds_plot_cka_png (path, s, series, 2, names, 4,
                                "CKA against guidance scale\ndemo model (untrained)", &err),
               &err);
  DsImage img = { 0 };
  DsStatus st = ds_image_load (path, &img, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    return;
  DS_CHECK (img.width == DS_PLOT_WIDTH && img.height == DS_PLOT_HEIGHT, "plot %d×%d",
            img.width, img.height);
  if (img.width != DS_PLOT_WIDTH || img.height != DS_PLOT_HEIGHT)
    goto out;

  /* s in [1, 7.5] widened by 4% of 6.5 on each side: x of s is
   * LEFT + (s - 0.74) / 7.02 * (RIGHT - LEFT); CKA 0.5 is the middle row. */
  double span = DS_PLOT_RIGHT - DS_PLOT_LEFT;
  int x_mid = (int) (DS_PLOT_LEFT + (6.25 - 0.74) / 7.02 * span);
  int y_half = (DS_PLOT_TOP + DS_PLOT_BOTTOM) / 2;
  CHECK_PIXEL (&img, x_mid, y_half, ds_plot_colors[0]);
  CHECK_PIXEL (&img, x_mid, y_half - 1, ds_plot_colors[0]);
  CHECK_PIXEL (&img, x_mid, y_half + 3, 0xffffff); /* plot area is white */

  /* Series 1 runs from (5, 0.7) to (7.5, 0.8): at s = 6.25 its (antialiased,
   * sloping) line crosses 0.75, so some pixel there is close to orange. */
  int y75 = (int) (DS_PLOT_BOTTOM - 0.75 * (DS_PLOT_BOTTOM - DS_PLOT_TOP));
  bool orange = false;
  for (int yy = y75 - 6; yy <= y75 + 6; yy++)
    {
      const uint8_t *p = pixel (&img, x_mid, yy);
      orange |= abs (p[0] - 0xff) < 24 && abs (p[1] - 0x7f) < 24 && abs (p[2] - 0x0e) < 24;
    }
  DS_CHECK (orange, "series 1 line near (%d, %d)", x_mid, y75);
  /* ... but not from s = 1 to s = 5, where s = 3 is NaN: column at s = 2. */
  int x2 = (int) (DS_PLOT_LEFT + (2 - 0.74) / 7.02 * span);
  int y85 = (int) (DS_PLOT_BOTTOM - 0.85 * (DS_PLOT_BOTTOM - DS_PLOT_TOP));
  for (int yy = y85 - 8; yy <= y85 + 8; yy++)
    {
      const uint8_t *p = pixel (&img, x2, yy);
      DS_CHECK (!(p[0] > 200 && p[2] < 120), "gap at s=2 drew orange at y=%d", yy);
    }

  /* Legend: swatches in series colours to the right of the data area. */
  CHECK_PIXEL (&img, DS_PLOT_RIGHT + 16 + 2, DS_PLOT_TOP + 10, ds_plot_colors[0]);
  CHECK_PIXEL (&img, DS_PLOT_RIGHT + 16 + 2, DS_PLOT_TOP + 30, ds_plot_colors[1]);
  long legend_text = ink (&img, DS_PLOT_RIGHT + 48, DS_PLOT_TOP, DS_PLOT_WIDTH,
                          DS_PLOT_TOP + 40);
  DS_CHECK (legend_text > 100, "legend names: %ld ink pixels", legend_text);

  /* Axis label "guidance scale s" under the ticks, "CKA" on the left. */
  long xlabel = ink (&img, DS_PLOT_LEFT, DS_PLOT_BOTTOM + 30, DS_PLOT_RIGHT,
                     DS_PLOT_BOTTOM + 50);
  long ylabel = ink (&img, 8, DS_PLOT_TOP, 30, DS_PLOT_BOTTOM);
  long title = ink (&img, 0, 0, DS_PLOT_WIDTH, DS_PLOT_TOP - 8);
  DS_CHECK (xlabel > 100 && ylabel > 40 && title > 300, "ink: x label %ld, y label %ld, "
            "title %ld", xlabel, ylabel, title);

out:
  ds_image_free (&img);
}

static void
test_errors (void)
{
  DsError err = { 0 };
  uint8_t px[3] = { 1, 2, 3 };
  DsSheetTile t = { px, 1, 1, "one" };
  const double s[] = { 1 }, v[] = { 0.5 };
  const double *series[] = { v };

  /* A directory that cannot be written: a regular file used as one. */
  char file[256], path[300];
  snprintf (file, sizeof file, "%s/not-a-dir", tmpdir);
  FILE *f = fopen (file, "w");
  DS_CHECK (f != NULL, "cannot create %s", file);
  if (f)
    fclose (f);
  snprintf (path, sizeof path, "%s/sheet.png", file);
  DsStatus st = ds_sheet_write_png (path, &t, 1, 1, "title", &err);
  DS_CHECK_STATUS (st, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, path);
  st = ds_plot_cka_png (path, s, series, 1, NULL, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, path);
  st = ds_sheet_write_png ("/nonexistent-ds-dir/x/sheet.png", &t, 1, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, "/nonexistent-ds-dir/x/sheet.png");

  snprintf (path, sizeof path, "%s/bad.png", tmpdir);
  st = ds_sheet_write_png (path, &t, 0, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, path);
  DsSheetTile zero = { px, 0, 1, "zero-width" };
  st = ds_sheet_write_png (path, &zero, 1, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "zero-width");
  /* 100 tiles in one column: 100 * (256 + 12 + 20) pixels is over the limit. */
  DsSheetTile many[100];
  for (int i = 0; i < 100; i++)
    many[i] = t;
  st = ds_sheet_write_png (path, many, 100, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "limit");

  const double bad_s[] = { NAN };
  st = ds_plot_cka_png (path, bad_s, series, 1, NULL, 1, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "s[0]");
  st = ds_plot_cka_png (path, s, series, 1, NULL, 0, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK (access (path, F_OK) != 0, "nothing written on invalid input");
}

/* Atomic writes leave no temporaries behind; removes everything when done. */
static void
cleanup (bool keep)
{
  DIR *d = opendir (tmpdir);
  if (!d)
    return;
  struct dirent *e;
  char path[512];
  while ((e = readdir (d)))
    {
      if (e->d_name[0] == '.')
        continue;
      DS_CHECK (strstr (e->d_name, ".tmp") == NULL, "left-over temporary %s", e->d_name);
      if (!keep)
        {
          snprintf (path, sizeof path, "%s/%s", tmpdir, e->d_name);
          unlink (path);
        }
    }
  closedir (d);
  if (keep)
    printf ("PNGs kept in %s\n", tmpdir);
  else
    rmdir (tmpdir);
}

int
main (void)
{
  if (!mkdtemp (tmpdir))
    {
      perror ("mkdtemp");
      return 1;
    }
  test_sheet ();
  test_sheet_small ();
  test_plot ();
  test_errors ();
  cleanup (getenv ("DS_TEST_KEEP") != NULL);
  ds_sheet_cleanup (); /* for LeakSanitizer: fontconfig's caches */
  return ds_test_finish ();
}
