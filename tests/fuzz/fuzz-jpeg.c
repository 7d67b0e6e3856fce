/* fuzz-jpeg.c: JPEG decoding (ds_image_decode: libjpeg with the engine's
 * colour conversions, scan limit, truncation and size checks) and the resize
 * after it (fuzz-image-check.h). The input is the file; inputs that do not
 * start with a JPEG's FF D8 FF are skipped (fuzz-png covers the others), and
 * so are frames declared larger than FUZZ_MAX_PIXELS: with them, half the
 * time went to decoding big pictures (555 inputs a second without them, 285
 * with, in 30-s runs on the same corpus). */
#include "fuzz-image-check.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Larger pictures only cost time: the arithmetic is the same as for smaller
 * ones (the engine's own refusal above DS_IMAGE_MAX_PIXELS is tested in
 * test-image). */
#define FUZZ_MAX_PIXELS (1 << 20)

/* The width x height of the first frame header (SOF0..SOF15 but DHT, JPG
 * and DAC), walking the marker segments from the start; 0 when the data
 * ends or a scan starts first (libjpeg then fails before allocating). */
static uint64_t
declared_pixels (const uint8_t *d, size_t n)
{
  size_t i = 2;
  while (i + 4 <= n && d[i] == 0xff)
    {
      const uint8_t m = d[i + 1];
      if (m == 0xff)
        {
          i++; /* a fill byte */
          continue;
        }
      const size_t len = (size_t) d[i + 2] << 8 | d[i + 3];
      if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc)
        return i + 9 <= n ? (uint64_t) (d[i + 5] << 8 | d[i + 6]) * (d[i + 7] << 8 | d[i + 8])
                          : 0;
      if (m == 0xda || len < 2)
        return 0;
      i += 2 + len;
    }
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 3 || data[0] != 0xff || data[1] != 0xd8 || data[2] != 0xff)
    return 0;
  if (declared_pixels (data, size) > FUZZ_MAX_PIXELS)
    return 0;
  return fuzz_image (data, size, "fuzz.jpg");
}
