/* ds-render.h: analysis results to pixels (colormaps, map resizing, overlays).
 *
 * Everything here works on host memory and writes 8-bit row-major images
 * (RGB8: 3 bytes a pixel, RGBA8: 4, not premultiplied). It draws no text and
 * knows no toolkit: the CLI's contact sheets (app/ds-sheet.c, cairo) and the
 * explorer put these images on screen or into PNGs (ds_png_write).
 *
 * The conventions are the reference tools', so a picture made here matches one
 * made in Python from the same numbers:
 *   - colormaps are matplotlib's tables and index rule (ds_colormap_apply);
 *   - PCA pictures follow Meng et al. (docs/models.md §8.2): per-channel min-max,
 *     uint8(x * 255) by truncation, torchvision Resize(NEAREST) upscaling;
 *   - heatmaps are upsampled like torch's bilinear, align_corners=False.
 *
 * Typical use, a cross-attention heatmap over the input image:
 *
 *   float *big = malloc (512 * 512 * sizeof *big);
 *   ds_render_resize_bilinear (map16, 16, 16, 512, 512, big, &err);
 *   ds_render_minmax (big, 512 * 512, 1, big);
 *   ds_colormap_apply (big, 512 * 512, 0.0, 1.0, DS_COLORMAP_JET, heat, &err);
 *   ds_render_overlay (image_rgb, heat, 512, 512, 0.5f, out_rgb, &err);
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  DS_COLORMAP_VIRIDIS, /* matplotlib "viridis" */
  DS_COLORMAP_INFERNO, /* matplotlib "inferno" */
  DS_COLORMAP_JET,     /* matplotlib "jet", 256 samples */
  DS_COLORMAP_GREY,    /* matplotlib "gray": black (low) to white (high) */
  DS_COLORMAP_GREYS,   /* matplotlib "Greys": white (low) to black (high) */
  DS_COLORMAP_COUNT
} DsColormap;

#define DS_COLORMAP_SIZE 256

/* "viridis", "inferno", "jet", "grey", "greys". */
const char *ds_colormap_name (DsColormap map);

/* Accepts the names above, case-insensitively, and "gray" for grey. An unknown
 * name is DS_ERR_INVALID with a message listing the known ones. */
DsStatus ds_colormap_from_name (const char *name, DsColormap *out, DsError *err);

/* The table: DS_COLORMAP_SIZE RGBA8 entries, matplotlib's
 * Colormap(np.arange(256), bytes=True). transfer none (static). */
const uint8_t *ds_colormap_table (DsColormap map);

/* rgba[i] = Colormap(Normalize(vmin, vmax)(values[i]), bytes=True), as matplotlib
 * computes it on a float32 array:
 *   t = float32(v - vmin), x = float32(t / (vmax - vmin)) (each step in double,
 *   rounded to float, as numpy's in-place float32 arithmetic does);
 *   x * 256 == 256 -> entry 255; x < 0 (and -inf) -> entry 0 (the "under"
 *   colour); x * 256 >= 256 (and +inf) -> entry 255 ("over"); otherwise entry
 *   (int) (x * 256).
 * NaN -> (0, 0, 0, 0), matplotlib's "bad" colour. vmin == vmax maps every
 * non-NaN value to entry 0 (matplotlib's Normalize fills with 0; it also turns
 * NaN into entry 0 there, where this keeps NaN transparent).
 * vmin > vmax or a non-finite vmin/vmax is DS_ERR_INVALID.
 * values: [n] f32; rgba: [n, 4] u8 (caller-allocated). */
DsStatus ds_colormap_apply (const float *values, size_t n, double vmin, double vmax,
                            DsColormap map, uint8_t *rgba, DsError *err);

/* uint8(x * 255) with truncation (numpy astype after a float32 multiply), the
 * Meng et al. PCA convention, for n pixels. Inputs are clamped to [0, 1] first
 * (numpy leaves out-of-range casts undefined); NaN gives 0.
 * rgb01: [n, 3] f32; rgb: [n, 3] u8. */
void ds_render_rgb01 (const float *rgb01, size_t n, uint8_t *rgb);

/* Min-max normalisation per channel, in place or not (out may equal in):
 * out[i, c] = (in[i, c] - min_c) / (max_c - min_c) in float arithmetic, with
 * min_c and max_c over the finite values of channel c. A constant channel (or
 * one without finite values) gives 0; non-finite inputs give NaN (so a
 * colormap shows them transparent). in, out: [n, channels] f32. */
void ds_render_minmax (const float *in, size_t n, int channels, float *out);

/* Nearest-neighbour resize of an 8-bit image with 1..4 channels, as torch's
 * interpolate(mode="nearest") computes it (and so torchvision's
 * Resize(NEAREST) on tensors): src = min(floor(dst * scale), in - 1) with the
 * float32 scale = in / out (dst >> 1 when out == 2 * in). Works for
 * downscaling too (no antialiasing).
 * src: [h, w, channels] u8; dst: [out_h, out_w, channels] u8.
 * Non-positive sizes or a result over DS_RENDER_MAX_PIXELS: DS_ERR_INVALID. */
DsStatus ds_render_resize_nearest (const uint8_t *src, int w, int h, int channels,
                                   int out_w, int out_h, uint8_t *dst, DsError *err);

/* Bilinear resize of a scalar map, torch's interpolate(mode="bilinear",
 * align_corners=False, antialias=False): src = max((dst + 0.5) * scale - 0.5, 0)
 * (one fused multiply-add, as torch's build computes it) with the float32
 * scale = in / out, edge pixels repeated. Sample positions and weights are
 * torch's bit for bit; results agree to the last bit or two (torch's
 * vectorised loop fuses some multiply-adds).
 * src: [h, w] f32; dst: [out_h, out_w] f32. */
DsStatus ds_render_resize_bilinear (const float *src, int w, int h, int out_w, int out_h,
                                    float *dst, DsError *err);

/* Blends a heatmap over an image: with a = opacity * heat_alpha / 255,
 * out = floor(img * (1 - a) + heat * a + 0.5) per channel, computed in double
 * (round half up; the result is always in 0..255). A transparent heat pixel
 * (NaN through the colormap) leaves the image pixel unchanged.
 * rgb: [h, w, 3] u8; heat_rgba: [h, w, 4] u8; out: [h, w, 3] u8 (may equal rgb).
 * opacity outside [0, 1] (or NaN) is DS_ERR_INVALID. */
DsStatus ds_render_overlay (const uint8_t *rgb, const uint8_t *heat_rgba, int w, int h,
                            float opacity, uint8_t *out, DsError *err);

/* Meng et al.'s PCA picture from a projection P [h * w, 3] (row-major over the
 * map, as F.reshape(C, H*W)^T gives it): ds_render_minmax per channel,
 * ds_render_rgb01, then ds_render_resize_nearest to out_w x out_h.
 * P is raw scores (ds_pca_project). Colours already in [0, 1] (ds_pca_rgb,
 * which shows a constant component as 0.5) go straight to ds_render_rgb01 and
 * ds_render_resize_nearest instead: min-max here would turn 0.5 into 0.
 * pca: [h * w, 3] f32; rgb: [out_h, out_w, 3] u8. */
DsStatus ds_render_pca_rgb (const float *pca, int w, int h, int out_w, int out_h,
                            uint8_t *rgb, DsError *err);

/* A scalar map as a colour heatmap at out_w x out_h: bilinear resize, then the
 * colormap over [vmin, vmax]; when vmin and vmax are both NaN, over the
 * resized map's own range (ds_render_minmax, then [0, 1]).
 * map: [h, w] f32; rgba: [out_h, out_w, 4] u8. */
DsStatus ds_render_heatmap (const float *map, int w, int h, int out_w, int out_h,
                            DsColormap cmap, double vmin, double vmax, uint8_t *rgba,
                            DsError *err);

/* The largest picture these functions make (out_w * out_h). */
#define DS_RENDER_MAX_PIXELS (100LL * 1000 * 1000)

#ifdef __cplusplus
}
#endif
