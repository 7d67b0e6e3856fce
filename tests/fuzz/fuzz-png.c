/* fuzz-png.c: PNG decoding (ds_image_decode: libpng with the engine's
 * conversions to 8-bit RGB, size limits and error handling) and the resize
 * after it (fuzz-image-check.h). The input is the file, except that every
 * whole chunk gets its correct CRC first: otherwise nearly every mutation
 * stops at libpng's CRC check (test-image covers bad CRCs). Inputs that start
 * as a JPEG are left to fuzz-jpeg; anything else that is not a PNG exercises
 * the "not a PNG or JPEG" messages. */
#include <string.h>

#include "fuzz-image-check.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static uint32_t crc_table[256];

static uint32_t
crc32_png (const uint8_t *p, size_t n)
{
  if (!crc_table[1])
    for (uint32_t i = 0; i < 256; i++)
      {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
          c = (c >> 1) ^ (0xedb88320u & -(c & 1u));
        crc_table[i] = c;
      }
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++)
    c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static void
fix_crcs (uint8_t *png, size_t size)
{
  if (size < 8 || memcmp (png, "\x89PNG\r\n\x1a\n", 8) != 0)
    return;
  for (size_t off = 8; off + 12 <= size;)
    {
      uint32_t n = (uint32_t) png[off] << 24 | (uint32_t) png[off + 1] << 16
                   | (uint32_t) png[off + 2] << 8 | png[off + 3];
      if (n > size - off - 12)
        break;
      uint32_t crc = crc32_png (png + off + 4, (size_t) n + 4);
      uint8_t *c = png + off + 8 + n;
      c[0] = (uint8_t) (crc >> 24), c[1] = (uint8_t) (crc >> 16);
      c[2] = (uint8_t) (crc >> 8), c[3] = (uint8_t) crc;
      off += 12 + (size_t) n;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return 0;
  uint8_t *png = malloc (size ? size : 1);
  if (!png)
    abort ();
  memcpy (png, data, size);
  fix_crcs (png, size);
  fuzz_image (png, size, "fuzz.png");
  free (png);
  return 0;
}
