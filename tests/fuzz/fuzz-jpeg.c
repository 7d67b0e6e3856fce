/* fuzz-jpeg.c: JPEG decoding (ds_image_decode: libjpeg with the engine's
 * colour conversions, scan limit, truncation and size checks) and the resize
 * after it (fuzz-image-check.h). The input is the file; inputs that do not
 * start with a JPEG's FF D8 FF are skipped (fuzz-png covers the others). */
#include "fuzz-image-check.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 3 || data[0] != 0xff || data[1] != 0xd8 || data[2] != 0xff)
    return 0;
  return fuzz_image (data, size, "fuzz.jpg");
}
