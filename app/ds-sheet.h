/* ds-sheet.h: contact sheets and CKA plots as PNG files, drawn with cairo.
 *
 * For diffscope-cli: a labelled grid of pictures (probe feature maps, PCA
 * pictures, heatmaps from ds-render) under a title, and a line plot of CKA
 * against the guidance scale. Only cairo (its toy text API with the
 * "sans-serif" face, no pango, no GTK); built only when cairo is found.
 * Files are written atomically through ds_png_write (temporary + rename), as
 * 8-bit RGB. Errors follow the engine's DsError convention and name the path.
 *
 * Sheet layout (fixed, so callers and tests can find things):
 *
 *   +---------------------------------------------------------------+
 *   | title line 1 (bold)                       <- title band       |
 *   | title line 2 ...                                              |
 *   |   +--------+  gap  +--------+                                 |
 *   |   | tile 0 |       | tile 1 |   each tile is scaled into a    |
 *   |   +--------+       +--------+   DS_SHEET_TILE_SIZE square box  |
 *   |    caption          caption                                   |
 *   |   +--------+                                                  |
 *   |   | tile 2 | ...                                              |
 *   +---------------------------------------------------------------+
 *
 * A picture no larger than the box is enlarged by the largest whole factor
 * that fits, with nearest-neighbour sampling, so a 16x16 map becomes crisp
 * 16x16-pixel blocks; a larger one is shrunk smoothly to fit. It is centred in
 * its box on whole pixels and framed by a 1-pixel grey line just outside it.
 */
#pragma once

#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_SHEET_TILE_SIZE 256    /* the square box a tile's picture is fitted into */
#define DS_SHEET_MARGIN 16        /* around everything */
#define DS_SHEET_GAP 12           /* between cells */
#define DS_SHEET_MIN_WIDTH 512    /* a narrow grid is centred in this width */
#define DS_SHEET_TITLE_LINE 22    /* pixels per title line */
#define DS_SHEET_CAPTION_LINE 16  /* pixels per caption line */
#define DS_SHEET_MAX_CAPTION_LINES 3
#define DS_SHEET_MAX_SIDE 16384   /* the largest sheet, in either direction */

/* Background (light grey) and text colours, 0xRRGGBB. */
#define DS_SHEET_BACKGROUND 0xf4f4f4
#define DS_SHEET_TEXT 0x202020

typedef struct {
  const uint8_t *rgb;  /* [height, width, 3] u8, row-major; NULL draws an empty box */
  int width, height;   /* pixels (ignored when rgb is NULL) */
  const char *caption; /* UTF-8; '\n' starts a new line (at most 3); may be NULL */
} DsSheetTile;

typedef struct {
  int width, height;       /* the whole sheet */
  int title_height;        /* rows [0, title_height) hold the title */
  int columns, rows;
  int caption_lines;       /* caption lines reserved under every tile */
  int cell_width, cell_height; /* one box plus its captions */
  int grid_x, grid_y;      /* top-left corner of the first box */
} DsSheetLayout;

/* The layout ds_sheet_write_png uses. columns <= 0 picks ceil(sqrt(n_tiles));
 * more columns than tiles are cut to n_tiles. title may be NULL (no band) and
 * may hold several '\n'-separated lines. DS_ERR_INVALID when n_tiles < 1, a
 * tile has a picture of non-positive size, or the sheet would exceed
 * DS_SHEET_MAX_SIDE. */
DsStatus ds_sheet_layout (const DsSheetTile *tiles, int n_tiles, int columns,
                          const char *title, DsSheetLayout *out, DsError *err);

/* Where tile i's picture lands: its rectangle (x, y, w, h) in sheet pixels
 * (the whole box for an empty tile). */
void ds_sheet_tile_rect (const DsSheetLayout *layout, const DsSheetTile *tile, int i,
                         int *x, int *y, int *w, int *h);

/* Draws the sheet and writes it to `path` (PNG, RGB). */
DsStatus ds_sheet_write_png (const char *path, const DsSheetTile *tiles, int n_tiles,
                             int columns, const char *title, DsError *err);

/* ---- CKA against guidance scale ---- */

#define DS_PLOT_WIDTH 900
#define DS_PLOT_HEIGHT 520
/* The data area: the range of s, widened by 4% of its width on each side so
 * that end points clear the frame, maps to x in [DS_PLOT_LEFT, DS_PLOT_RIGHT];
 * CKA 1 maps to y = DS_PLOT_TOP and 0 to y = DS_PLOT_BOTTOM. The legend sits
 * to the right of it. */
#define DS_PLOT_LEFT 72
#define DS_PLOT_RIGHT 612
#define DS_PLOT_TOP 56
#define DS_PLOT_BOTTOM 456

/* Series colours in order (matplotlib's tab10), 0xRRGGBB; series i uses
 * entry i % 10. */
extern const uint32_t ds_plot_colors[10];

/* One line per series over the points (s_values[j], cka_values[i][j]), drawn in
 * increasing s; a NaN CKA value leaves a gap. Axes: x "guidance scale s" with
 * round ticks over the range of s (a single s value is centred in a range of
 * width 2, before the 4% margins), y "CKA" from 0 to 1 with ticks every 0.2;
 * a legend with series_names
 * (NULL, or a NULL name, gives "series N"); `title` on top (may be NULL; its
 * first two '\n'-separated lines are shown, the first in bold).
 * s_values: [n_points]; cka_values: [n_series][n_points].
 * DS_ERR_INVALID: n_series < 1, n_points < 1 or a non-finite s. */
DsStatus ds_plot_cka_png (const char *path, const double *s_values,
                          const double *const *cka_values, int n_series,
                          const char *const *series_names, int n_points,
                          const char *title, DsError *err);

/* Frees cairo's and fontconfig's process-wide caches (fonts, glyphs), so that
 * leak checkers see a clean exit. Call it once at the end of a program that
 * drew sheets or plots, when no cairo object is alive any more; never in the
 * GTK explorer, which shares those caches. */
void ds_sheet_cleanup (void);

#ifdef __cplusplus
}
#endif
