/* fuzz-image-check.h: what fuzz-png.c and fuzz-jpeg.c do with an input:
 * ds_image_decode, then the pixel buffer's ends read (a short buffer is an
 * ASan report) and, for small images (larger ones only cost time: the arithmetic is the
 * same), the resize (up to 256×256) and model-input (up to 64×64) steps that
 * follow decoding in the pipeline. */
#pragma once

#include <stdint.h>
#include <stdlib.h>

#include "ds-image.h"

static inline int
fuzz_image (const uint8_t *data, size_t size, const char *name)
{
  DsImage img;
  DsError err = { 0 };
  if (ds_image_decode (data, size, name, &img, &err) != DS_OK)
    return 0;
  if (img.width <= 0 || img.height <= 0 || (int64_t) img.width * img.height > DS_IMAGE_MAX_PIXELS)
    abort ();
  /* the first and last bytes: a short buffer is an ASan report */
  unsigned sum = img.rgb[0] + img.rgb[(size_t) img.width * img.height * 3 - 1];
  if ((int64_t) img.width * img.height <= 256 * 256)
    {
      DsImage small;
      if (ds_image_resize_bicubic (&img, 13, 7, &small, &err) == DS_OK)
        {
          sum += small.rgb[0];
          ds_image_free (&small);
        }
      DsTensor x;
      if (img.width <= 64 && img.height <= 64
          && ds_image_to_model_input (&img, 64, sum & 1 ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH,
                                      &x, &err)
               == DS_OK)
        ds_tensor_free (&x);
    }
  ds_image_free (&img);
  return 0;
}
