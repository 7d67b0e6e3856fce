/* ds-image.h: image files in and out, and the model's input preprocessing.
 *
 * Decoding: PNG (libpng; palette, grey, 16-bit and alpha converted; alpha is
 * dropped, as PIL's convert("RGB") does) and JPEG (libjpeg; grey and CMYK
 * converted) to 8-bit RGB. The format is detected from the file's magic bytes,
 * not its name. Images larger than DS_IMAGE_MAX_PIXELS are refused with a
 * message giving their size, from the PNG or JPEG header, before the pixels
 * are allocated (files over DS_IMAGE_MAX_FILE_BYTES before they are read);
 * truncated or corrupt files and non-images get a
 * DsError naming the file.
 *
 * Preprocessing (the paper's protocol, docs/models.md §2.4 and §3.4): resize with
 * Pillow's bicubic filter (a = -0.5, support scaled on downscale, 8-bit result
 * after each separable pass, as Pillow computes it), or scale the short side to
 * `size` and centre-crop, then map to [-1, 1] as float CHW.
 */
#pragma once

#include <stdint.h>

#include "ds-tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_IMAGE_MAX_PIXELS (100LL * 1000 * 1000) /* 100 megapixels */
/* Files larger than this are refused before they are read into memory: a
 * 100-megapixel 16-bit RGBA PNG stored without compression is 800 MB. */
#define DS_IMAGE_MAX_FILE_BYTES (1LL << 30)

typedef struct {
  int width, height;
  uint8_t *rgb; /* width * height * 3, row-major; owned */
} DsImage;

DsStatus ds_image_load (const char *path, DsImage *out, DsError *err);
/* From memory (drag-and-drop, paste); `name` is used in messages. */
DsStatus ds_image_decode (const void *data, size_t size, const char *name,
                          DsImage *out, DsError *err);
void ds_image_free (DsImage *img);

/* Pillow-exact bicubic resize to w x h (Image.resize((w, h), BICUBIC)). */
DsStatus ds_image_resize_bicubic (const DsImage *src, int w, int h, DsImage *out,
                                  DsError *err);

typedef enum {
  DS_FIT_STRETCH,     /* resize straight to size x size (the paper's protocol) */
  DS_FIT_CENTER_CROP, /* short side to size, then centre-crop to size x size */
} DsImageFit;

/* The model input: [1, 3, size, size] f32 in [-1, 1] (x/255*2-1). size must be
 * a positive multiple of 64. `out` is allocated (owned). */
DsStatus ds_image_to_model_input (const DsImage *img, int size, DsImageFit fit,
                                  DsTensor *out, DsError *err);

/* Writes 8-bit RGB or RGBA PNG atomically (temporary file + rename). */
DsStatus ds_png_write (const char *path, const uint8_t *pixels, int width, int height,
                       int channels, DsError *err);

#ifdef __cplusplus
}
#endif
