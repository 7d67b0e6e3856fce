/* test-image.c: decoding, Pillow-exact resizing, model-input conversion and
 * PNG writing of ds-image.c, against fixtures that Pillow and numpy produced
 * (tests/reference/gen_image_fixtures.py writes tests/data/images/).
 *
 * Decoding: every PNG and JPEG variant must give the bytes Pillow's
 * Image.open(f).convert("RGB") gives (grey16 is refused: Pillow clips it).
 * Errors: each bad input must fail with the right status and a message naming
 * the file. Resizing and the model input must match Pillow/numpy exactly.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>

#include "ds-image.h"
#include "ds-test.h"

#define IMAGES DS_TEST_DATA_DIR "/images"

/* How far decoded JPEG pixels may be from Pillow's. Both go through
 * libjpeg-turbo with ISLOW and fancy upsampling; the system's 2.1.5 and the
 * 3.2.0 inside Pillow 13.0.0's wheel gave identical pixels for every fixture. */
#define JPEG_TOLERANCE 0

static char tmpdir[64];

/* Under AddressSanitizer the allocator tells the largest single allocation
 * (test_hostile_chunks); plain builds check only the outcome. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
int __sanitizer_install_malloc_and_free_hooks (void (*) (const volatile void *, size_t),
                                               void (*) (const volatile void *));
static size_t largest_malloc;
static void
note_malloc (const volatile void *p, size_t n)
{
  if (n > largest_malloc)
    largest_malloc = n;
}
static void
note_free (const volatile void *p)
{
}
#endif

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t *
read_all (const char *path, size_t *size)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;)
    {
      if (n == cap)
        {
          cap = cap ? 2 * cap : 65536;
          uint8_t *b = realloc (buf, cap);
          if (!b)
            break;
          buf = b;
        }
      size_t r = fread (buf + n, 1, cap - n, f);
      n += r;
      if (r == 0)
        break;
    }
  fclose (f);
  *size = n;
  return buf;
}

static void
write_all (const char *path, const void *data, size_t size)
{
  FILE *f = fopen (path, "wb");
  DS_CHECK (f != NULL, "cannot create %s", path);
  if (!f)
    return;
  DS_CHECK (fwrite (data, 1, size, f) == size, "cannot write %s", path);
  fclose (f);
}

/* The synthetic picture of gen_image_fixtures.py's pattern(). */
static DsImage
make_pattern (int w, int h)
{
  DsImage img = { w, h, malloc ((size_t) w * h * 3) };
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        {
          int v;
          if (c == 0)
            v = x * 255 / (w - 1 > 1 ? w - 1 : 1);
          else if (c == 1)
            v = y * 255 / (h - 1 > 1 ? h - 1 : 1);
          else
            v = (x + y) * 255 / (w + h);
          if ((x / 7 + y / 5) % 2 == 1 && x < w / 2)
            v = 255 - v;
          if (x >= w - w / 4 && y >= h - h / 4)
            {
              uint32_t hsh = ((uint32_t) x * 73856093u) ^ ((uint32_t) y * 19349663u)
                             ^ ((uint32_t) c * 83492791u);
              v = (int) ((hsh >> 11) & 255);
            }
          img.rgb[((size_t) y * w + x) * 3 + c] = (uint8_t) v;
        }
  return img;
}

/* Compares n bytes; returns the largest difference, counts differing bytes. */
static int
max_diff (const uint8_t *a, const uint8_t *b, size_t n, size_t *count)
{
  int m = 0;
  *count = 0;
  for (size_t i = 0; i < n; i++)
    {
      int d = abs ((int) a[i] - (int) b[i]);
      if (d)
        (*count)++;
      if (d > m)
        m = d;
    }
  return m;
}

static uint32_t
crc32_png (const uint8_t *p, size_t n)
{
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++)
    {
      c ^= p[i];
      for (int k = 0; k < 8; k++)
        c = (c >> 1) ^ (0xedb88320u & -(c & 1u));
    }
  return c ^ 0xffffffffu;
}

static void
put_be32 (uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}

static uint32_t
get_be32 (const uint8_t *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* Appends a PNG chunk with a correct CRC at buf + *len. */
static void
put_chunk (uint8_t *buf, size_t *len, const char *type, const uint8_t *data, uint32_t n)
{
  put_be32 (buf + *len, n);
  memcpy (buf + *len + 4, type, 4);
  if (n)
    memcpy (buf + *len + 8, data, n);
  put_be32 (buf + *len + 8 + n, crc32_png (buf + *len + 4, n + 4));
  *len += 12 + n;
}

/* Offset of the first chunk of `type` in a PNG (its length field), or 0. */
static size_t
find_chunk (const uint8_t *png, size_t size, const char *type)
{
  size_t off = 8;
  while (off + 12 <= size)
    {
      uint32_t n = get_be32 (png + off);
      if (memcmp (png + off + 4, type, 4) == 0)
        return off;
      off += 12 + (size_t) n;
    }
  return 0;
}

/* ---- decoding ---------------------------------------------------------------- */

static void
check_decodes_like_pillow (const char *name, const char *ext, int tolerance)
{
  char path[512], expected_path[512];
  snprintf (path, sizeof path, "%s/%s.%s", IMAGES, name, ext);
  snprintf (expected_path, sizeof expected_path, "%s/%s.rgb", IMAGES, name);

  DsImage img;
  DsError err = { 0 };
  DsStatus st = ds_image_load (path, &img, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    return;
  size_t size = 0;
  uint8_t *expected = read_all (expected_path, &size);
  DS_CHECK (expected && size == 37 * 23 * 3, "%s: expected pixels missing", expected_path);
  DS_CHECK (img.width == 37 && img.height == 23, "%s: decoded as %d×%d", name,
            img.width, img.height);
  if (expected && size == 37 * 23 * 3 && img.width == 37 && img.height == 23)
    {
      size_t count;
      int m = max_diff (img.rgb, expected, size, &count);
      DS_CHECK (m <= tolerance, "%s.%s: %zu bytes differ from Pillow, max by %d", name,
                ext, count, m);
    }
  free (expected);
  ds_image_free (&img);
  DS_CHECK (img.rgb == NULL && img.width == 0, "ds_image_free clears the image");
}

static void
test_decode_paths (void)
{
  static const char *const pngs[] = {
    "rgb", "rgba", "rgb_trns", "palette_trns", "palette4", "grey", "grey_alpha",
    "grey2", "rgb16", "rgba16", "interlaced", "interlaced_palette",
    /* issue #14 (gen_image_fixtures.py more_decode_fixtures) */
    "grey_alpha16", "interlaced16", "grey1",
  };
  static const char *const jpegs[] = {
    "jpeg420", "jpeg422", "jpeg444", "progressive", "greyjpeg", "cmyk", "cmyk_progressive",
  };
  for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++)
    check_decodes_like_pillow (pngs[i], "png", 0);
  for (size_t i = 0; i < sizeof jpegs / sizeof jpegs[0]; i++)
    check_decodes_like_pillow (jpegs[i], "jpg", JPEG_TOLERANCE);
}

static void
test_decode_from_memory (void)
{
  size_t size, esize;
  uint8_t *png = read_all (IMAGES "/rgb.png", &size);
  uint8_t *expected = read_all (IMAGES "/rgb.rgb", &esize);
  DS_CHECK (png && expected, "fixtures missing");
  if (!png || !expected)
    goto out;
  DsImage img;
  DsError err = { 0 };
  DS_CHECK_OK (ds_image_decode (png, size, "pasted image", &img, &err), &err);
  DS_CHECK (img.width == 37 && img.height == 23 && memcmp (img.rgb, expected, esize) == 0,
            "decoding from memory differs from the file");
  ds_image_free (&img);
out:
  free (png);
  free (expected);
}

/* Status and message of decoding `data` under `name`. */
static void
check_decode_fails (const void *data, size_t size, const char *name, DsStatus expected,
                    const char *needle)
{
  DsImage img = { 1, 1, NULL };
  DsError err = { 0 };
  DsStatus st = ds_image_decode (data, size, name, &img, &err);
  DS_CHECK_STATUS (st, expected, &err);
  DS_CHECK_CONTAINS (err.message, name);
  if (needle)
    DS_CHECK_CONTAINS (err.message, needle);
  DS_CHECK (img.rgb == NULL && img.width == 0, "%s: output not cleared on failure", name);
}

static void
check_load_fails (const char *path, DsStatus expected, const char *needle)
{
  DsImage img;
  DsError err = { 0 };
  DsStatus st = ds_image_load (path, &img, &err);
  DS_CHECK_STATUS (st, expected, &err);
  DS_CHECK_CONTAINS (err.message, path);
  if (needle)
    DS_CHECK_CONTAINS (err.message, needle);
  if (st == DS_OK)
    ds_image_free (&img);
}

static void
test_not_images (void)
{
  check_load_fails (IMAGES "/not-image.txt", DS_ERR_UNSUPPORTED,
                    "not a PNG or JPEG image");
  check_load_fails (IMAGES "/not-image.txt", DS_ERR_UNSUPPORTED, "text");
  check_load_fails (IMAGES "/tiny.gif", DS_ERR_UNSUPPORTED, "GIF");
  /* 16-bit grey: Pillow saturates it at 255, so it is refused, saying why */
  check_load_fails (IMAGES "/grey16.png", DS_ERR_UNSUPPORTED, "16-bit greyscale");
  check_load_fails (IMAGES "/does-not-exist.png", DS_ERR_IO, strerror (ENOENT));
  check_load_fails (IMAGES, DS_ERR_IO, "directory");

  static const uint8_t webp[] = "RIFF\x24\0\0\0WEBPVP8 ";
  check_decode_fails (webp, sizeof webp - 1, "drop.webp", DS_ERR_UNSUPPORTED, "WebP");
  static const uint8_t bmp[] = "BM\x36\0\0\0\0\0";
  check_decode_fails (bmp, sizeof bmp - 1, "x.bmp", DS_ERR_UNSUPPORTED, "BMP");
  static const uint8_t junk[] = { 0x00, 0x01, 0xfe, 0x80, 0x7f, 0x12 };
  check_decode_fails (junk, sizeof junk, "junk.png", DS_ERR_UNSUPPORTED,
                      "00 01 fe 80 7f 12");
  check_decode_fails ("", 0, "empty.jpg", DS_ERR_UNSUPPORTED, "empty");
  /* Only part of a signature. */
  check_decode_fails ("\x89PNG", 4, "short.png", DS_ERR_UNSUPPORTED, NULL);
  check_decode_fails ("\xff\xd8", 2, "short.jpg", DS_ERR_UNSUPPORTED, NULL);
}

static void
test_truncated (void)
{
  size_t psize, jsize, qsize;
  uint8_t *png = read_all (IMAGES "/interlaced.png", &psize);
  uint8_t *jpg = read_all (IMAGES "/jpeg420.jpg", &jsize);
  uint8_t *prog = read_all (IMAGES "/progressive.jpg", &qsize);
  DS_CHECK (png && jpg && prog, "fixtures missing");
  if (!png || !jpg || !prog)
    goto out;

  /* Inside IHDR, inside IDAT, without IEND, one byte short. */
  size_t png_cuts[] = { 20, psize / 2, psize - 12, psize - 1 };
  for (size_t i = 0; i < sizeof png_cuts / sizeof png_cuts[0]; i++)
    check_decode_fails (png, png_cuts[i], "cut.png", DS_ERR_FORMAT, "truncated");
  size_t jpg_cuts[] = { 40, jsize / 2, jsize - 2 };
  for (size_t i = 0; i < sizeof jpg_cuts / sizeof jpg_cuts[0]; i++)
    check_decode_fails (jpg, jpg_cuts[i], "cut.jpg", DS_ERR_FORMAT, "truncated");
  size_t prog_cuts[] = { qsize / 3, qsize / 2, qsize - 2 };
  for (size_t i = 0; i < sizeof prog_cuts / sizeof prog_cuts[0]; i++)
    check_decode_fails (prog, prog_cuts[i], "cut-progressive.jpg", DS_ERR_FORMAT,
                        "truncated");

  /* The same through a file, so the message names the path. */
  char path[128];
  snprintf (path, sizeof path, "%s/truncated.png", tmpdir);
  write_all (path, png, psize / 2);
  check_load_fails (path, DS_ERR_FORMAT, "truncated");
  unlink (path);
  snprintf (path, sizeof path, "%s/truncated.jpg", tmpdir);
  write_all (path, jpg, jsize / 2);
  check_load_fails (path, DS_ERR_FORMAT, "truncated");
  unlink (path);
out:
  free (png);
  free (jpg);
  free (prog);
}

static void
test_corrupt (void)
{
  size_t size, jsize;
  uint8_t *png = read_all (IMAGES "/rgb.png", &size);
  uint8_t *jpg = read_all (IMAGES "/jpeg420.jpg", &jsize);
  DS_CHECK (png && jpg, "fixtures missing");
  if (!png || !jpg)
    goto out;
  size_t idat = find_chunk (png, size, "IDAT");
  DS_CHECK (idat > 0, "rgb.png has no IDAT");
  if (idat == 0)
    goto out;
  uint32_t n = get_be32 (png + idat);
  uint8_t *bad = malloc (size);

  /* A flipped bit in the compressed data: zlib's checksum or the chunk CRC,
   * whichever libpng reaches first, refuses it. */
  memcpy (bad, png, size);
  bad[idat + 8 + n / 2] ^= 0x10;
  check_decode_fails (bad, size, "flipped.png", DS_ERR_FORMAT, "corrupt PNG");

  /* Intact data under a wrong CRC. */
  memcpy (bad, png, size);
  bad[idat + 8 + n] ^= 0x01;
  check_decode_fails (bad, size, "crc.png", DS_ERR_FORMAT, "CRC");

  /* A wrong CRC on IHDR. */
  memcpy (bad, png, size);
  bad[8 + 8 + 13] ^= 0xff;
  check_decode_fails (bad, size, "ihdr-crc.png", DS_ERR_FORMAT, "CRC");

  /* An invalid zlib header with a correct CRC: the inflater refuses it. */
  memcpy (bad, png, size);
  bad[idat + 8] = 0xff;
  bad[idat + 9] = 0xff;
  put_be32 (bad + idat + 8 + n, crc32_png (bad + idat + 4, n + 4));
  check_decode_fails (bad, size, "zlib.png", DS_ERR_FORMAT, "corrupt PNG");
  free (bad);

  /* A JPEG whose Huffman table section is garbage. */
  uint8_t *badj = malloc (jsize);
  memcpy (badj, jpg, jsize);
  for (size_t i = 2; i + 1 < jsize; i++)
    if (badj[i] == 0xff && badj[i + 1] == 0xc4) /* DHT */
      {
        badj[i + 4] = 0x7f; /* table class/id out of range */
        break;
      }
  check_decode_fails (badj, jsize, "dht.jpg", DS_ERR_FORMAT, "corrupt JPEG");
  free (badj);
out:
  free (png);
  free (jpg);
}

/* Issue #14 (fuzz-png): libpng allocated a text chunk's declared length before
 * reading it, so a 50-byte file asked for 1.8 GB; now the chunks that do not
 * make the pixels are skipped unread. */
static void
test_hostile_chunks (void)
{
  size_t size, esize;
  uint8_t *png = read_all (IMAGES "/rgb.png", &size);
  uint8_t *expected = read_all (IMAGES "/rgb.rgb", &esize);
  DS_CHECK (png && expected, "fixtures missing");
  if (!png || !expected)
    goto out;
  size_t idat = find_chunk (png, size, "IDAT");
  uint8_t *buf = malloc (size + 4096);

  /* The signature and IHDR, then an iTXt chunk claiming 1.8 GB and ending. */
  memcpy (buf, png, 33);
  put_be32 (buf + 33, 1821947485u);
  memcpy (buf + 37, "iTXtabc", 7);
#ifdef TEST_ASAN
  static int hooked;
  if (!hooked)
    hooked = __sanitizer_install_malloc_and_free_hooks (note_malloc, note_free);
  largest_malloc = 0;
#endif
  check_decode_fails (buf, 44, "huge-itxt.png", DS_ERR_FORMAT, "truncated");
#ifdef TEST_ASAN
  DS_CHECK (hooked && largest_malloc < (16u << 20),
            "decoding a 44-byte PNG allocated %zu bytes at once", largest_malloc);
#endif

  /* Whole text, ICC, histogram and suggested-palette chunks with nonsense in
   * them change nothing: the pixels are rgb.png's. */
  static const char *const types[] = { "iTXt", "zTXt", "tEXt", "iCCP", "sPLT", "hIST", "eXIf" };
  size_t n = idat;
  memcpy (buf, png, idat);
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    put_chunk (buf, &n, types[i], (const uint8_t *) "\x78\x9c\xff\x00garbage", 12);
  memcpy (buf + n, png + idat, size - idat);
  n += size - idat;
  DsImage img;
  DsError err = { 0 };
  DS_CHECK_OK (ds_image_decode (buf, n, "chunks.png", &img, &err), &err);
  DS_CHECK (img.rgb && img.width == 37 && img.height == 23
              && memcmp (img.rgb, expected, esize) == 0,
            "ancillary chunks changed the pixels");
  ds_image_free (&img);
  free (buf);
out:
  free (png);
  free (expected);
}

static void
test_too_large (void)
{
  /* A PNG header for 20000×20000 RGB, a token IDAT and IEND, all with
   * correct CRCs: refused after the header, before anything is allocated. */
  uint8_t buf[128];
  size_t len = 8;
  memcpy (buf, "\x89PNG\r\n\x1a\n", 8);
  uint8_t ihdr[13] = { 0 };
  put_be32 (ihdr, 20000);
  put_be32 (ihdr + 4, 20000);
  ihdr[8] = 8; /* depth */
  ihdr[9] = 2; /* RGB */
  put_chunk (buf, &len, "IHDR", ihdr, 13);
  static const uint8_t idat[] = { 0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01 };
  put_chunk (buf, &len, "IDAT", idat, sizeof idat);
  put_chunk (buf, &len, "IEND", NULL, 0);
  check_decode_fails (buf, len, "huge.png", DS_ERR_UNSUPPORTED, "20000×20000");
  check_decode_fails (buf, len, "huge.png", DS_ERR_UNSUPPORTED, "100 megapixels");

  char path[128];
  snprintf (path, sizeof path, "%s/huge.png", tmpdir);
  write_all (path, buf, len);
  check_load_fails (path, DS_ERR_UNSUPPORTED, "20000×20000");
  unlink (path);

  /* Just over the limit: 10001×10000. */
  len = 8;
  put_be32 (ihdr, 10001);
  put_be32 (ihdr + 4, 10000);
  put_chunk (buf, &len, "IHDR", ihdr, 13);
  put_chunk (buf, &len, "IDAT", idat, sizeof idat);
  put_chunk (buf, &len, "IEND", NULL, 0);
  check_decode_fails (buf, len, "over.png", DS_ERR_UNSUPPORTED, "10001×10000");

  /* The baseline JPEG with its frame header rewritten to 20000×20000. */
  size_t jsize;
  uint8_t *jpg = read_all (IMAGES "/jpeg420.jpg", &jsize);
  DS_CHECK (jpg != NULL, "jpeg420.jpg missing");
  if (!jpg)
    return;
  size_t sof = 0;
  for (size_t i = 2; i + 9 < jsize; i++)
    if (jpg[i] == 0xff && jpg[i + 1] == 0xc0)
      {
        sof = i;
        break;
      }
  DS_CHECK (sof > 0, "no SOF0 in jpeg420.jpg");
  if (sof)
    {
      jpg[sof + 5] = 20000 >> 8; /* height */
      jpg[sof + 6] = 20000 & 0xff;
      jpg[sof + 7] = 20000 >> 8; /* width */
      jpg[sof + 8] = 20000 & 0xff;
      check_decode_fails (jpg, jsize, "huge.jpg", DS_ERR_UNSUPPORTED, "20000×20000");
    }
  free (jpg);

  /* A file over DS_IMAGE_MAX_FILE_BYTES (sparse: no disk used) is refused
   * before it is read into memory. */
  snprintf (path, sizeof path, "%s/huge-file.png", tmpdir);
  FILE *f = fopen (path, "wb");
  DS_CHECK (f != NULL, "cannot create %s", path);
  if (f)
    {
      fwrite (buf, 1, len, f);
      DS_CHECK (ftruncate (fileno (f), DS_IMAGE_MAX_FILE_BYTES + 1) == 0, "ftruncate: %s",
                strerror (errno));
      fclose (f);
      check_load_fails (path, DS_ERR_UNSUPPORTED, "images over 1024 MB are not read");
      unlink (path);
    }
}

/* ---- resizing ---------------------------------------------------------------- */

static void
test_resize_matches_pillow (void)
{
  FILE *f = fopen (IMAGES "/resize/cases.txt", "r");
  DS_CHECK (f != NULL, "resize/cases.txt missing");
  if (!f)
    return;
  char line[256], file[128];
  int cases = 0;
  while (fgets (line, sizeof line, f))
    {
      int sw, sh, dw, dh;
      if (line[0] == '#' || sscanf (line, "%d %d %d %d %127s", &sw, &sh, &dw, &dh, file) != 5)
        continue;
      cases++;
      char path[512];
      snprintf (path, sizeof path, "%s/resize/%s", IMAGES, file);
      DsImage expected, src = make_pattern (sw, sh), out;
      DsError err = { 0 };
      DsStatus st = ds_image_load (path, &expected, &err);
      DS_CHECK_OK (st, &err);
      if (st != DS_OK)
        {
          ds_image_free (&src);
          continue;
        }
      st = ds_image_resize_bicubic (&src, dw, dh, &out, &err);
      DS_CHECK_OK (st, &err);
      if (st == DS_OK)
        {
          DS_CHECK (out.width == dw && out.height == dh, "%s: got %d×%d", file, out.width,
                    out.height);
          size_t count;
          int m = max_diff (out.rgb, expected.rgb, (size_t) dw * dh * 3, &count);
          DS_CHECK (m == 0, "%dx%d -> %dx%d: %zu bytes differ from Pillow, max by %d", sw,
                    sh, dw, dh, count, m);
        }
      ds_image_free (&out);
      ds_image_free (&expected);
      ds_image_free (&src);
    }
  fclose (f);
  DS_CHECK (cases >= 10, "only %d resize cases read", cases);
}

static void
test_resize_invalid (void)
{
  DsImage src = make_pattern (8, 8), out;
  DsError err = { 0 };
  DS_CHECK_STATUS (ds_image_resize_bicubic (&src, 0, 8, &out, &err), DS_ERR_INVALID, &err);
  DS_CHECK_STATUS (ds_image_resize_bicubic (&src, 8, -1, &out, &err), DS_ERR_INVALID, &err);
  DS_CHECK_STATUS (ds_image_resize_bicubic (&src, 20000, 20000, &out, &err), DS_ERR_INVALID,
                   &err);
  DS_CHECK_CONTAINS (err.message, "20000×20000");
  ds_image_free (&src);
}

/* ---- model input ------------------------------------------------------------- */

static void
check_model_input (const char *fit_name, DsImageFit fit, int sw, int sh, int size)
{
  char path[512];
  snprintf (path, sizeof path, "%s/input/%s_%dx%d_%d.f32", IMAGES, fit_name, sw, sh, size);
  size_t n = (size_t) 3 * size * size, bytes = 0;
  float *expected = (float *) read_all (path, &bytes);
  DS_CHECK (expected && bytes == n * sizeof (float), "%s missing or wrong size", path);
  DsImage src = make_pattern (sw, sh);
  DsTensor t = { 0 };
  DsError err = { 0 };
  DsStatus st = ds_image_to_model_input (&src, size, fit, &t, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK && expected && bytes == n * sizeof (float))
    {
      DS_CHECK (t.dtype == DS_DTYPE_F32 && t.ndim == 4 && t.shape[0] == 1
                  && t.shape[1] == 3 && t.shape[2] == size && t.shape[3] == size,
                "%s: wrong tensor shape", path);
      const float *got = ds_tensor_f32 (&t);
      size_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < n; i++)
        if (got[i] != expected[i])
          {
            bad++;
            worst = fmax (worst, fabs ((double) got[i] - expected[i]));
          }
      DS_CHECK (bad == 0, "%s: %zu of %zu values differ from numpy, max by %g", path,
                bad, n, worst);
    }
  ds_tensor_free (&t);
  ds_image_free (&src);
  free (expected);
}

static void
test_model_input (void)
{
  check_model_input ("stretch", DS_FIT_STRETCH, 100, 75, 64);
  check_model_input ("stretch", DS_FIT_STRETCH, 64, 64, 64);
  check_model_input ("stretch", DS_FIT_STRETCH, 60, 150, 64);
  check_model_input ("crop", DS_FIT_CENTER_CROP, 100, 75, 64);
  check_model_input ("crop", DS_FIT_CENTER_CROP, 75, 130, 64);
  check_model_input ("crop", DS_FIT_CENTER_CROP, 64, 97, 64);

  /* The crop path computes only the window; it must equal resizing the whole
   * image with the public call and cutting the centre. 300×200 at 128:
   * 192×128, crop from x = 32. */
  DsImage src = make_pattern (300, 200), full;
  DsTensor t = { 0 };
  DsError err = { 0 };
  DS_CHECK_OK (ds_image_resize_bicubic (&src, 192, 128, &full, &err), &err);
  DS_CHECK_OK (ds_image_to_model_input (&src, 128, DS_FIT_CENTER_CROP, &t, &err), &err);
  if (full.rgb && t.data)
    {
      size_t bad = 0;
      const float *x = ds_tensor_f32 (&t);
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < 128; y++)
          for (int i = 0; i < 128; i++)
            {
              float v = full.rgb[((size_t) y * 192 + 32 + i) * 3 + c] / 255.0f * 2 - 1;
              if (x[((size_t) c * 128 + y) * 128 + i] != v)
                bad++;
            }
      DS_CHECK (bad == 0, "windowed crop differs from resize + crop in %zu values", bad);
    }
  ds_tensor_free (&t);
  ds_image_free (&full);

  static const int bad_sizes[] = { 0, -64, 100, 32 };
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++)
    {
      DsStatus st = ds_image_to_model_input (&src, bad_sizes[i], DS_FIT_STRETCH, &t, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "multiple of 64");
    }
  ds_image_free (&src);
}

/* ---- PNG writing ------------------------------------------------------------- */

static int
count_temp_files (void)
{
  int n = 0;
  DIR *d = opendir (tmpdir);
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir (d)))
    if (strstr (e->d_name, ".tmp-"))
      n++;
  closedir (d);
  return n;
}

static void
test_png_write (void)
{
  char path[128];
  snprintf (path, sizeof path, "%s/out.png", tmpdir);
  DsImage src = make_pattern (41, 19), back;
  DsError err = { 0 };

  /* RGB round trip, twice: the second replaces the first. */
  for (int round = 0; round < 2; round++)
    {
      if (round == 1)
        src.rgb[0] ^= 0xff;
      DS_CHECK_OK (ds_png_write (path, src.rgb, 41, 19, 3, &err), &err);
      DsStatus st = ds_image_load (path, &back, &err);
      DS_CHECK_OK (st, &err);
      if (st == DS_OK)
        {
          DS_CHECK (back.width == 41 && back.height == 19
                      && memcmp (back.rgb, src.rgb, 41 * 19 * 3) == 0,
                    "RGB PNG round trip %d differs", round);
          ds_image_free (&back);
        }
    }
  struct stat st_buf;
  DS_CHECK (stat (path, &st_buf) == 0 && (st_buf.st_mode & 0444) == 0444,
            "written PNG is not readable by all");

  /* RGBA: our decoder drops alpha; libpng's own reader checks all four. */
  uint8_t *rgba = malloc (41 * 19 * 4);
  for (int i = 0; i < 41 * 19; i++)
    {
      memcpy (rgba + 4 * i, src.rgb + 3 * i, 3);
      rgba[4 * i + 3] = (uint8_t) (i * 7);
    }
  DS_CHECK_OK (ds_png_write (path, rgba, 41, 19, 4, &err), &err);
  if (ds_image_load (path, &back, &err) == DS_OK)
    {
      DS_CHECK (memcmp (back.rgb, src.rgb, 41 * 19 * 3) == 0, "RGBA PNG: RGB differs");
      ds_image_free (&back);
    }
  png_image pi = { .version = PNG_IMAGE_VERSION };
  if (png_image_begin_read_from_file (&pi, path))
    {
      pi.format = PNG_FORMAT_RGBA;
      uint8_t *got = malloc (PNG_IMAGE_SIZE (pi));
      DS_CHECK (pi.width == 41 && pi.height == 19, "RGBA PNG is %u×%u", pi.width,
                pi.height);
      DS_CHECK (png_image_finish_read (&pi, NULL, got, 0, NULL)
                  && PNG_IMAGE_SIZE (pi) == 41 * 19 * 4
                  && memcmp (got, rgba, 41 * 19 * 4) == 0,
                "RGBA PNG read back by libpng differs");
      free (got);
    }
  else
    DS_CHECK (0, "libpng cannot read %s: %s", path, pi.message);
  png_image_free (&pi);
  free (rgba);
  unlink (path);

  /* Errors. */
  DsStatus st = ds_png_write (path, src.rgb, 41, 19, 2, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, path);
  DS_CHECK (access (path, F_OK) != 0, "a refused write left %s behind", path);

  char missing[160];
  snprintf (missing, sizeof missing, "%s/no-such-dir/out.png", tmpdir);
  st = ds_png_write (missing, src.rgb, 41, 19, 3, &err);
  DS_CHECK_STATUS (st, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, missing);

  /* The target is a directory: the rename fails, the temporary file goes. */
  char dir[160];
  snprintf (dir, sizeof dir, "%s/a-directory", tmpdir);
  mkdir (dir, 0755);
  st = ds_png_write (dir, src.rgb, 41, 19, 3, &err);
  DS_CHECK_STATUS (st, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, dir);
  DS_CHECK (count_temp_files () == 0, "a temporary file was left in %s", tmpdir);
  rmdir (dir);
  ds_image_free (&src);
}

int
main (void)
{
  snprintf (tmpdir, sizeof tmpdir, "/tmp/ds-test-image-XXXXXX");
  if (!mkdtemp (tmpdir))
    {
      perror ("mkdtemp");
      return 1;
    }
  test_decode_paths ();
  test_decode_from_memory ();
  test_not_images ();
  test_truncated ();
  test_corrupt ();
  test_hostile_chunks ();
  test_too_large ();
  test_resize_matches_pillow ();
  test_resize_invalid ();
  test_model_input ();
  test_png_write ();
  rmdir (tmpdir);
  return ds_test_finish ();
}
