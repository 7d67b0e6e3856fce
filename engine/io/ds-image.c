/* ds-image.c: PNG/JPEG decoding to 8-bit RGB, Pillow-exact bicubic resizing,
 * the model-input conversion and atomic PNG writing (see ds-image.h).
 *
 * Decoding aims at the pixels Pillow gives for Image.open(f).convert("RGB"):
 * alpha is discarded (no compositing), palettes are expanded, low-depth grey is
 * scaled to 0..255, 16-bit samples keep their high byte (Pillow does that for
 * 16-bit RGB and grey + alpha; 16-bit grey alone, which Pillow saturates at
 * 255, is refused with a message saying so), and
 * Adobe-inverted CMYK is converted with Pillow's integer formula. JPEGs go
 * through libjpeg with its defaults (ISLOW IDCT, fancy upsampling), as Pillow's
 * decoder does.
 *
 * libpng and libjpeg report fatal errors by longjmp. Each decoder keeps all the
 * state that must survive the jump (library handles, buffers, the message) in a
 * job struct owned by the caller of the function that calls setjmp, so nothing
 * the cleanup reads is an indeterminate non-volatile local of that function.
 *
 * Resizing follows Pillow's Resample.c (docs/models.md §3.4): per output position a
 * window of source samples weighted by the bicubic kernel (a = -0.5), support
 * scaled by the downscale factor, weights normalised then rounded to 22-bit
 * fixed point; each pass rounded and clipped to 8 bits; a pass whose size does
 * not change is skipped. The horizontal pass goes first except where Pillow 13
 * starts vertically (see vertical_first).
 */
#include "ds-image.h"
#include "ds-atomic.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* A progressive JPEG may hold any number of scans; a hostile one with
 * thousands of tiny scans costs minutes of CPU. Real encoders use about ten. */
#define JPEG_MAX_SCANS 1000

static DsStatus
check_size (const char *name, int64_t width, int64_t height, DsError *err)
{
  if (width <= 0 || height <= 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: image has no pixels (%lld×%lld)",
                         name, (long long) width, (long long) height);
  if (width * height > DS_IMAGE_MAX_PIXELS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: image is %lld×%lld pixels; the limit is %lld megapixels",
                         name, (long long) width, (long long) height,
                         DS_IMAGE_MAX_PIXELS / 1000000);
  return DS_OK;
}

void
ds_image_free (DsImage *img)
{
  if (!img)
    return;
  free (img->rgb);
  img->rgb = NULL;
  img->width = img->height = 0;
}

/* ---- PNG ------------------------------------------------------------------ */

typedef struct {
  const uint8_t *data;
  size_t size, pos;
  const char *name;
  png_structp png;
  png_infop info;
  png_uint_32 width, height;
  uint8_t *pixels;  /* (height, width, 3) */
  png_bytep *rows;  /* (height) pointers into pixels */
  bool truncated;
  char message[256];
  DsStatus status;  /* set when we stop on purpose rather than by png_error */
} PngJob;

static void
png_job_error (png_structp png, png_const_charp msg)
{
  PngJob *job = png_get_error_ptr (png);
  snprintf (job->message, sizeof job->message, "%s", msg);
  png_longjmp (png, 1);
}

static void
png_job_warning (png_structp png, png_const_charp msg)
{
  /* Reading: ancillary-chunk trouble (bad CRC, odd iCCP), which Pillow ignores
   * too. Writing: nothing we could act on. The default prints to stderr. */
}

static void
png_job_read (png_structp png, png_bytep out, size_t n)
{
  PngJob *job = png_get_io_ptr (png);
  if (n > job->size - job->pos)
    {
      job->truncated = true;
      png_error (png, "unexpected end of file");
    }
  memcpy (out, job->data + job->pos, n);
  job->pos += n;
}

/* Returns 0 when done (job->status says how), 1 after a libpng error. */
static int
png_job_run (PngJob *job, DsError *err)
{
  if (setjmp (png_jmpbuf (job->png)))
    return 1;

  png_set_read_fn (job->png, job, png_job_read);
#ifdef PNG_HANDLE_AS_UNKNOWN_SUPPORTED
  /* Only IHDR, PLTE, tRNS, IDAT and IEND make the pixels. libpng allocates a
   * text, ICC or palette-histogram chunk's declared length before reading it
   * (a 300-byte file can ask for 2 GB), so the other chunks it knows are
   * skipped unread, as unknown ancillary chunks always are. */
  static const png_byte skipped[] = "bKGD\0cHRM\0cICP\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0"
                                    "pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0sRGB\0tEXt\0tIME\0zTXt";
  png_set_keep_unknown_chunks (job->png, PNG_HANDLE_CHUNK_NEVER, skipped,
                               (int) (sizeof skipped / 5));
#endif
  png_read_info (job->png, job->info);

  png_uint_32 width = png_get_image_width (job->png, job->info);
  png_uint_32 height = png_get_image_height (job->png, job->info);
  job->width = width;
  job->height = height;
  job->status = check_size (job->name, width, height, err);
  if (job->status != DS_OK)
    return 0;

  int color = png_get_color_type (job->png, job->info);
  int depth = png_get_bit_depth (job->png, job->info);
  if (color == PNG_COLOR_TYPE_GRAY && depth == 16)
    {
      /* Pillow, which the reference pipelines read images with, saturates
       * 16-bit grey at 255 (nearly every pixel white); any other reading would
       * not match them, so say so instead of guessing. */
      job->status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                                  "%s: a 16-bit greyscale PNG is not supported (Pillow, which "
                                  "diffusers pipelines read images with, clips it to white above "
                                  "255): save it as 8-bit grey or RGB",
                                  job->name);
      return 0;
    }
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb (job->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8 (job->png);
  if (depth == 16)
    png_set_strip_16 (job->png); /* high byte, as Pillow's "RGB;16B" */
  png_set_strip_alpha (job->png); /* also the alpha a palette tRNS expands to */
  if (!(color & PNG_COLOR_MASK_COLOR))
    png_set_gray_to_rgb (job->png);
  png_set_interlace_handling (job->png);
  png_read_update_info (job->png, job->info);

  if (png_get_channels (job->png, job->info) != 3
      || png_get_bit_depth (job->png, job->info) != 8
      || png_get_rowbytes (job->png, job->info) != (size_t) width * 3)
    {
      job->status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                                  "%s: PNG colour type %d, depth %d did not convert to RGB",
                                  job->name, color, depth);
      return 0;
    }

  job->pixels = malloc ((size_t) width * height * 3);
  job->rows = malloc (sizeof (png_bytep) * height);
  if (!job->pixels || !job->rows)
    {
      job->status = ds_error_set (err, DS_ERR_NOMEM, "%s: no memory for %u×%u pixels",
                                  job->name, width, height);
      return 0;
    }
  for (png_uint_32 y = 0; y < height; y++)
    job->rows[y] = job->pixels + (size_t) y * width * 3;
  png_read_image (job->png, job->rows);
  png_read_end (job->png, NULL); /* reaches IEND: catches truncation and bad CRCs */
  job->status = DS_OK;
  return 0;
}

static DsStatus
png_decode (const uint8_t *data, size_t size, const char *name, DsImage *out,
            DsError *err)
{
  PngJob job = { .data = data, .size = size, .name = name, .status = DS_OK };
  job.png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &job, png_job_error,
                                    png_job_warning);
  if (job.png)
    job.info = png_create_info_struct (job.png);
  if (!job.png || !job.info)
    {
      png_destroy_read_struct (&job.png, NULL, NULL);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: cannot start the PNG decoder", name);
    }

  DsStatus status;
  if (png_job_run (&job, err) != 0)
    status = job.truncated
               ? ds_error_set (err, DS_ERR_FORMAT, "%s: truncated PNG (%s)", name,
                               job.message)
               : ds_error_set (err, DS_ERR_FORMAT, "%s: corrupt PNG: %s", name,
                               job.message);
  else
    status = job.status;

  png_destroy_read_struct (&job.png, &job.info, NULL);
  free (job.rows);
  if (status != DS_OK)
    {
      free (job.pixels);
      return status;
    }
  out->width = (int) job.width;
  out->height = (int) job.height;
  out->rgb = job.pixels;
  return DS_OK;
}

/* ---- JPEG ----------------------------------------------------------------- */

typedef struct {
  struct jpeg_error_mgr pub; /* first, so a j_common_ptr's err casts to this */
  struct jpeg_progress_mgr progress;
  jmp_buf jmp;
  bool truncated, too_many_scans;
  char message[JMSG_LENGTH_MAX];
} JpegErrorMgr;

typedef struct {
  struct jpeg_decompress_struct cinfo;
  JpegErrorMgr jerr;
  const char *name;
  int width, height;
  uint8_t *pixels; /* (height, width, 3) */
  uint8_t *row;    /* (width, 4) CMYK scanline */
  DsStatus status; /* set when we stop on purpose rather than by an error */
} JpegJob;

static void
jpeg_job_error_exit (j_common_ptr cinfo)
{
  JpegErrorMgr *jerr = (JpegErrorMgr *) cinfo->err;
  cinfo->err->format_message (cinfo, jerr->message);
  longjmp (jerr->jmp, 1);
}

static void
jpeg_job_emit_message (j_common_ptr cinfo, int level)
{
  JpegErrorMgr *jerr = (JpegErrorMgr *) cinfo->err;
  /* The memory source pads a short file with a fake EOI and warns: the image
   * would come out grey at the bottom, so this warning is an error for us.
   * Other warnings (extraneous bytes, a marker inside a scan) are accepted, as
   * Pillow accepts them. */
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
    {
      jerr->truncated = true;
      cinfo->err->format_message (cinfo, jerr->message);
      longjmp (jerr->jmp, 1);
    }
}

static void
jpeg_job_output_message (j_common_ptr cinfo)
{
  /* The default prints to stderr; errors reach the caller as a DsError. */
}

static void
jpeg_job_progress (j_common_ptr cinfo)
{
  JpegErrorMgr *jerr = (JpegErrorMgr *) cinfo->err;
  j_decompress_ptr d = (j_decompress_ptr) cinfo;
  if (d->input_scan_number > JPEG_MAX_SCANS)
    {
      jerr->too_many_scans = true;
      snprintf (jerr->message, sizeof jerr->message, "more than %d scans",
                JPEG_MAX_SCANS);
      longjmp (jerr->jmp, 1);
    }
}

/* Pillow's CMYK -> RGB (Convert.c cmyk2rgb) after un-inverting Adobe's stored
 * values ("CMYK;I"): with s = stored sample, C = 255 - s_c and 255 - K = s_k,
 * R = s_k - round(C * s_k / 255) using Pillow's MULDIV255 rounding. */
static inline uint8_t
cmyk_channel (uint8_t stored_c, uint8_t stored_k)
{
  int t = (255 - stored_c) * stored_k + 128;
  return (uint8_t) (stored_k - (((t >> 8) + t) >> 8));
}

/* One scanline: src (width, 4) CMYK to dst (width, 3) RGB. Branch-free per
 * pixel, so a fuzzer's coverage hooks would only slow it (they made it most
 * of a JPEG fuzzing run's time): clang builds it without them, and not
 * inlined, where they would come back. */
#if defined(__clang__)
__attribute__ ((no_sanitize ("coverage"), noinline))
#endif
static void
cmyk_row_to_rgb (uint8_t *dst, const uint8_t *src, int width)
{
  for (int x = 0; x < width; x++)
    {
      const uint8_t *s = src + 4 * x;
      dst[3 * x + 0] = cmyk_channel (s[0], s[3]);
      dst[3 * x + 1] = cmyk_channel (s[1], s[3]);
      dst[3 * x + 2] = cmyk_channel (s[2], s[3]);
    }
}

static int
jpeg_job_run (JpegJob *job, const uint8_t *data, size_t size, DsError *err)
{
  j_decompress_ptr cinfo = &job->cinfo;
  if (setjmp (job->jerr.jmp))
    return 1;

  jpeg_create_decompress (cinfo);
  cinfo->progress = &job->jerr.progress;
  jpeg_mem_src (cinfo, data, (unsigned long) size);
  jpeg_read_header (cinfo, TRUE);

  job->status = check_size (job->name, cinfo->image_width, cinfo->image_height, err);
  if (job->status != DS_OK)
    return 0;
  job->width = (int) cinfo->image_width;
  job->height = (int) cinfo->image_height;

  bool cmyk = false;
  switch (cinfo->jpeg_color_space)
    {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
      cinfo->out_color_space = JCS_RGB;
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      /* Pillow reads every 4-component JPEG as Adobe-inverted CMYK. */
      cinfo->out_color_space = JCS_CMYK;
      cmyk = true;
      break;
    default:
      job->status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                                  "%s: JPEG with %d components in an unknown colour space",
                                  job->name, cinfo->num_components);
      return 0;
    }
  cinfo->dct_method = JDCT_ISLOW;
  cinfo->do_fancy_upsampling = TRUE;
  jpeg_start_decompress (cinfo);

  size_t stride = (size_t) job->width * 3;
  job->pixels = malloc (stride * job->height);
  if (cmyk)
    job->row = malloc ((size_t) job->width * 4);
  if (!job->pixels || (cmyk && !job->row))
    {
      job->status = ds_error_set (err, DS_ERR_NOMEM, "%s: no memory for %d×%d pixels",
                                  job->name, job->width, job->height);
      return 0;
    }
  while (cinfo->output_scanline < cinfo->output_height)
    {
      uint8_t *dst = job->pixels + cinfo->output_scanline * stride;
      JSAMPROW row = cmyk ? job->row : dst;
      if (jpeg_read_scanlines (cinfo, &row, 1) != 1)
        {
          /* Only a suspending data source returns no line; ours never does. */
          job->status = ds_error_set (err, DS_ERR_FORMAT, "%s: JPEG decoder stalled",
                                      job->name);
          return 0;
        }
      if (cmyk)
        cmyk_row_to_rgb (dst, job->row, job->width);
    }
  jpeg_finish_decompress (cinfo);
  job->status = DS_OK;
  return 0;
}

static DsStatus
jpeg_decode (const uint8_t *data, size_t size, const char *name, DsImage *out,
             DsError *err)
{
  JpegJob *job = calloc (1, sizeof *job);
  if (!job)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: cannot start the JPEG decoder", name);
  job->name = name;
  job->cinfo.err = jpeg_std_error (&job->jerr.pub);
  job->jerr.pub.error_exit = jpeg_job_error_exit;
  job->jerr.pub.emit_message = jpeg_job_emit_message;
  job->jerr.pub.output_message = jpeg_job_output_message;
  job->jerr.progress.progress_monitor = jpeg_job_progress;

  DsStatus status;
  if (jpeg_job_run (job, data, size, err) != 0)
    {
      if (job->jerr.truncated)
        status = ds_error_set (err, DS_ERR_FORMAT, "%s: truncated JPEG (%s)", name,
                               job->jerr.message);
      else if (job->jerr.too_many_scans)
        status = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: progressive JPEG with %s",
                               name, job->jerr.message);
      else if (job->jerr.pub.msg_code == JERR_BAD_PRECISION)
        status = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: %s", name,
                               job->jerr.message); /* 12-bit JPEG */
      else
        status = ds_error_set (err, DS_ERR_FORMAT, "%s: corrupt JPEG: %s", name,
                               job->jerr.message);
    }
  else
    status = job->status;

  jpeg_destroy_decompress (&job->cinfo); /* harmless if creation never finished */
  free (job->row);
  if (status == DS_OK)
    {
      out->width = job->width;
      out->height = job->height;
      out->rgb = job->pixels;
    }
  else
    free (job->pixels);
  free (job);
  return status;
}

/* ---- format detection and loading ----------------------------------------- */

static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

/* What a non-PNG, non-JPEG file looks like, for the message. */
static const char *
describe_magic (const uint8_t *d, size_t n)
{
  if (n >= 6 && (memcmp (d, "GIF87a", 6) == 0 || memcmp (d, "GIF89a", 6) == 0))
    return "a GIF image";
  if (n >= 12 && memcmp (d, "RIFF", 4) == 0 && memcmp (d + 8, "WEBP", 4) == 0)
    return "a WebP image";
  if (n >= 2 && memcmp (d, "BM", 2) == 0)
    return "a BMP image";
  if (n >= 4 && (memcmp (d, "II*\0", 4) == 0 || memcmp (d, "MM\0*", 4) == 0))
    return "a TIFF image";
  if (n >= 12 && memcmp (d + 4, "ftyp", 4) == 0)
    {
      if (memcmp (d + 8, "avif", 4) == 0 || memcmp (d + 8, "avis", 4) == 0)
        return "an AVIF image";
      if (memcmp (d + 8, "heic", 4) == 0 || memcmp (d + 8, "heix", 4) == 0
          || memcmp (d + 8, "mif1", 4) == 0)
        return "a HEIF image";
    }
  if (n >= 5 && memcmp (d, "%PDF-", 5) == 0)
    return "a PDF document";
  if (n >= 2 && memcmp (d, "\xff\x0a", 2) == 0)
    return "a JPEG XL image";
  if (n >= 12 && memcmp (d, "\0\0\0\x0cJXL ", 8) == 0)
    return "a JPEG XL image";
  size_t printable = 0, look = n < 64 ? n : 64;
  for (size_t i = 0; i < look; i++)
    if ((d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t')
      printable++;
  if (look > 0 && printable == look)
    return "text";
  return NULL;
}

DsStatus
ds_image_decode (const void *data, size_t size, const char *name, DsImage *out,
                 DsError *err)
{
  assert (out && (data || size == 0));
  const uint8_t *d = data;
  if (!name)
    name = "image";
  *out = (DsImage) { 0 };

  if (size >= 8 && memcmp (d, png_magic, 8) == 0)
    return png_decode (d, size, name, out, err);
  if (size >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    return jpeg_decode (d, size, name, out, err);

  if (size == 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: not a PNG or JPEG image (the file is empty)", name);
  const char *kind = describe_magic (d, size);
  if (kind)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: not a PNG or JPEG image (it looks like %s)", name, kind);
  char hex[3 * 8 + 1] = "";
  size_t n = size < 8 ? size : 8, len = 0;
  for (size_t i = 0; i < n; i++)
    len += (size_t) snprintf (hex + len, sizeof hex - len, i ? " %02x" : "%02x", d[i]);
  return ds_error_set (err, DS_ERR_UNSUPPORTED,
                       "%s: not a PNG or JPEG image (it starts with bytes %s)", name, hex);
}

DsStatus
ds_image_load (const char *path, DsImage *out, DsError *err)
{
  assert (path && out);
  *out = (DsImage) { 0 };
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot open: %s", path, strerror (errno));
  struct stat st;
  if (fstat (fd, &st) != 0)
    {
      int e = errno;
      close (fd);
      return ds_error_set (err, DS_ERR_IO, "%s: cannot read: %s", path, strerror (e));
    }
  if (!S_ISREG (st.st_mode))
    {
      close (fd);
      return ds_error_set (err, DS_ERR_IO, "%s: cannot read: %s", path,
                           S_ISDIR (st.st_mode) ? "it is a directory"
                                                : "not a regular file");
    }
  if ((long long) st.st_size > DS_IMAGE_MAX_FILE_BYTES)
    {
      close (fd);
      return ds_error_set (err, DS_ERR_UNSUPPORTED,
                           "%s: the file is %lld bytes; images over %lld MB are not read", path,
                           (long long) st.st_size, DS_IMAGE_MAX_FILE_BYTES >> 20);
    }
  size_t size = (size_t) st.st_size;
  uint8_t *data = malloc (size ? size : 1);
  if (!data)
    {
      close (fd);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: no memory to read %zu bytes", path,
                           size);
    }
  size_t got = 0;
  while (got < size)
    {
      ssize_t r = read (fd, data + got, size - got);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        {
          int e = r < 0 ? errno : 0;
          close (fd);
          free (data);
          return ds_error_set (err, DS_ERR_IO, "%s: cannot read: %s", path,
                               e ? strerror (e) : "the file shrank while being read");
        }
      got += (size_t) r;
    }
  close (fd);
  DsStatus status = ds_image_decode (data, size, path, out, err);
  free (data);
  return status;
}

/* ---- Pillow-exact bicubic resampling --------------------------------------- */

#define PRECISION_BITS (32 - 8 - 2)

static double
bicubic_filter (double x)
{
  const double a = -0.5;
  if (x < 0.0)
    x = -x;
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0)
    return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* The taps of outputs [first, first + n) out of out_size along one axis. */
typedef struct {
  int ksize;
  int *bounds; /* (n, 2): first source index, number of taps */
  int32_t *k;  /* (n, ksize) weights in PRECISION_BITS fixed point */
} Taps;

static void
taps_free (Taps *t)
{
  free (t->bounds);
  free (t->k);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc, kept in its order of
 * floating-point operations (the input box is Pillow's default, 0..in_size,
 * held in a float there, hence the cast). */
static bool
taps_init (Taps *t, int in_size, int64_t out_size, int64_t first, int n)
{
  double scale = (double) (float) in_size / (double) out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * filterscale; /* bicubic support 2 */
  double ss = 1.0 / filterscale;
  int ksize = (int) ceil (support) * 2 + 1;

  t->ksize = ksize;
  t->bounds = malloc (sizeof (int) * 2 * (size_t) n);
  t->k = calloc ((size_t) n * ksize, sizeof (int32_t));
  double *w = malloc (sizeof (double) * (size_t) ksize);
  if (!t->bounds || !t->k || !w)
    {
      free (w);
      taps_free (t);
      return false;
    }
  for (int i = 0; i < n; i++)
    {
      double center = (double) (first + i + 0.5) * scale;
      int xmin = (int) (center - support + 0.5);
      if (xmin < 0)
        xmin = 0;
      int xmax = (int) (center + support + 0.5);
      if (xmax > in_size)
        xmax = in_size;
      xmax -= xmin;

      double ww = 0.0;
      for (int x = 0; x < xmax; x++)
        {
          w[x] = bicubic_filter ((x + xmin - center + 0.5) * ss);
          ww += w[x];
        }
      int32_t *k = t->k + (size_t) i * ksize;
      for (int x = 0; x < xmax; x++)
        {
          double v = ww != 0.0 ? w[x] / ww : w[x];
          k[x] = v < 0 ? (int32_t) (-0.5 + v * (1 << PRECISION_BITS))
                       : (int32_t) (0.5 + v * (1 << PRECISION_BITS));
        }
      t->bounds[2 * i] = xmin;
      t->bounds[2 * i + 1] = xmax;
    }
  free (w);
  return true;
}

static inline uint8_t
clip8 (int32_t v)
{
  if (v >= (1 << PRECISION_BITS << 8))
    return 255;
  if (v <= 0)
    return 0;
  return (uint8_t) (v >> PRECISION_BITS);
}

/* in: (rows, *, 3) with in_stride bytes per row, column 0 being source column
 * `col0` of the taps' index space; out: (rows, n, 3). */
static void
pass_horizontal (const uint8_t *in, size_t in_stride, int col0, int rows, const Taps *t,
                 int n, uint8_t *out, size_t out_stride)
{
  for (int y = 0; y < rows; y++)
    {
      const uint8_t *src = in + (size_t) y * in_stride;
      uint8_t *dst = out + (size_t) y * out_stride;
      for (int i = 0; i < n; i++)
        {
          const int32_t *k = t->k + (size_t) i * t->ksize;
          const uint8_t *s = src + (size_t) (t->bounds[2 * i] - col0) * 3;
          int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
          for (int x = 0; x < t->bounds[2 * i + 1]; x++)
            {
              s0 += s[3 * x + 0] * k[x];
              s1 += s[3 * x + 1] * k[x];
              s2 += s[3 * x + 2] * k[x];
            }
          dst[3 * i + 0] = clip8 (s0);
          dst[3 * i + 1] = clip8 (s1);
          dst[3 * i + 2] = clip8 (s2);
        }
    }
}

/* in: row 0 is source row `row0` of the taps' index space; out: (n, width, 3). */
static void
pass_vertical (const uint8_t *in, size_t in_stride, int row0, int width, const Taps *t,
               int n, uint8_t *out, size_t out_stride)
{
  for (int i = 0; i < n; i++)
    {
      const int32_t *k = t->k + (size_t) i * t->ksize;
      const uint8_t *base = in + (size_t) (t->bounds[2 * i] - row0) * in_stride;
      int taps = t->bounds[2 * i + 1];
      uint8_t *dst = out + (size_t) i * out_stride;
      for (int x = 0; x < width * 3; x += 3)
        {
          int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
          for (int y = 0; y < taps; y++)
            {
              const uint8_t *s = base + (size_t) y * in_stride + x;
              s0 += s[0] * k[y];
              s1 += s[1] * k[y];
              s2 += s[2] * k[y];
            }
          dst[x + 0] = clip8 (s0);
          dst[x + 1] = clip8 (s1);
          dst[x + 2] = clip8 (s2);
        }
    }
}

/* Which pass Pillow runs first when both are needed. Pillow 13.0 goes
 * vertically first when the height shrinks by more than twice what the width
 * shrinks (python-pillow/Pillow PR #9549); earlier releases always started
 * horizontally. The 8-bit rounding between the passes makes the order visible
 * (±1 here and there). The rule was checked against Pillow 13.0.0 on some 2000
 * random sizes, including the boundary where the two sides are equal. */
static bool
vertical_first (int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h)
{
  return out_h < in_h && in_h - out_h > 2 * (in_w - out_w);
}

/* The window [x0, x0 + win_w) × [y0, y0 + win_h) of src resized to
 * out_w × out_h, into dst (win_h, win_w, 3). Only the taps and intermediate
 * pixels the window needs are computed; each output pixel is the one Pillow's
 * full resize gives, since every output sample depends only on its own taps. */
static bool
resample_window (const DsImage *src, int64_t out_w, int64_t out_h, int64_t x0,
                 int64_t y0, int win_w, int win_h, uint8_t *dst)
{
  bool need_h = out_w != src->width, need_v = out_h != src->height;
  size_t src_stride = (size_t) src->width * 3, dst_stride = (size_t) win_w * 3;
  Taps th = { 0 }, tv = { 0 };
  uint8_t *tmp = NULL;
  bool ok = false;

  if (!need_h && !need_v)
    {
      for (int y = 0; y < win_h; y++)
        memcpy (dst + y * dst_stride, src->rgb + (y0 + y) * src_stride + x0 * 3,
                dst_stride);
      return true;
    }
  if (need_h && !taps_init (&th, src->width, out_w, x0, win_w))
    goto out;
  if (need_v && !taps_init (&tv, src->height, out_h, y0, win_h))
    goto out;

  if (!need_v)
    pass_horizontal (src->rgb + y0 * src_stride, src_stride, 0, win_h, &th, win_w, dst,
                     dst_stride);
  else if (!need_h)
    pass_vertical (src->rgb + x0 * 3, src_stride, 0, win_w, &tv, win_h, dst,
                   dst_stride);
  else if (vertical_first (src->width, src->height, out_w, out_h))
    {
      /* Only the source columns the horizontal taps touch. */
      int col_first = th.bounds[0];
      int col_last = th.bounds[2 * (win_w - 1)] + th.bounds[2 * (win_w - 1) + 1];
      size_t tmp_stride = (size_t) (col_last - col_first) * 3;
      tmp = malloc ((size_t) win_h * tmp_stride);
      if (!tmp)
        goto out;
      pass_vertical (src->rgb + (size_t) col_first * 3, src_stride, 0,
                     col_last - col_first, &tv, win_h, tmp, tmp_stride);
      pass_horizontal (tmp, tmp_stride, col_first, win_h, &th, win_w, dst, dst_stride);
    }
  else
    {
      /* Only the source rows the vertical taps touch, as Pillow does. */
      int row_first = tv.bounds[0];
      int row_last = tv.bounds[2 * (win_h - 1)] + tv.bounds[2 * (win_h - 1) + 1];
      tmp = malloc ((size_t) (row_last - row_first) * dst_stride);
      if (!tmp)
        goto out;
      pass_horizontal (src->rgb + row_first * src_stride, src_stride, 0,
                       row_last - row_first, &th, win_w, tmp, dst_stride);
      pass_vertical (tmp, dst_stride, row_first, win_w, &tv, win_h, dst, dst_stride);
    }
  ok = true;
out:
  free (tmp);
  taps_free (&th);
  taps_free (&tv);
  return ok;
}

static bool
image_valid (const DsImage *img)
{
  return img && img->rgb && img->width > 0 && img->height > 0;
}

DsStatus
ds_image_resize_bicubic (const DsImage *src, int w, int h, DsImage *out, DsError *err)
{
  assert (image_valid (src) && out);
  *out = (DsImage) { 0 };
  if (w <= 0 || h <= 0 || (int64_t) w * h > DS_IMAGE_MAX_PIXELS)
    return ds_error_set (err, DS_ERR_INVALID,
                         "resize to %d×%d: the size must be positive and at most %lld "
                         "megapixels",
                         w, h, DS_IMAGE_MAX_PIXELS / 1000000);
  uint8_t *rgb = malloc ((size_t) w * h * 3);
  if (!rgb || !resample_window (src, w, h, 0, 0, w, h, rgb))
    {
      free (rgb);
      return ds_error_set (err, DS_ERR_NOMEM, "resize %d×%d to %d×%d: out of memory",
                           src->width, src->height, w, h);
    }
  *out = (DsImage) { .width = w, .height = h, .rgb = rgb };
  return DS_OK;
}

/* ---- model input ----------------------------------------------------------- */

DsStatus
ds_image_to_model_input (const DsImage *img, int size, DsImageFit fit, DsTensor *out,
                         DsError *err)
{
  assert (image_valid (img) && out);
  *out = (DsTensor) { 0 };
  if (size <= 0 || size % 64 != 0 || (int64_t) size * size > DS_IMAGE_MAX_PIXELS)
    return ds_error_set (err, DS_ERR_INVALID,
                         "model input size %d: expected a positive multiple of 64", size);
  if (fit != DS_FIT_STRETCH && fit != DS_FIT_CENTER_CROP)
    return ds_error_set (err, DS_ERR_INVALID, "unknown image fit mode %d", (int) fit);

  /* CENTER_CROP: the short side becomes `size`, the other side is rounded half
   * up, then the centre is cut at floor((side - size) / 2). */
  int64_t rw = size, rh = size, x0 = 0, y0 = 0;
  if (fit == DS_FIT_CENTER_CROP)
    {
      int64_t w = img->width, h = img->height, s = w < h ? w : h;
      rw = (2 * w * size + s) / (2 * s);
      rh = (2 * h * size + s) / (2 * s);
      x0 = (rw - size) / 2;
      y0 = (rh - size) / 2;
    }

  size_t n = (size_t) size * size;
  uint8_t *rgb = malloc (n * 3);
  if (!rgb || !resample_window (img, rw, rh, x0, y0, size, size, rgb))
    {
      free (rgb);
      return ds_error_set (err, DS_ERR_NOMEM, "model input %d×%d: out of memory", size,
                           size);
    }

  int64_t shape[4] = { 1, 3, size, size };
  DsStatus st = ds_tensor_alloc (out, DS_DTYPE_F32, 4, shape, err);
  if (st != DS_OK)
    {
      free (rgb);
      return st;
    }
  /* numpy's float32 x / 255.0 * 2 - 1; t + t is t * 2 exactly and leaves the
   * compiler no multiply-add to fuse into one rounding. */
  float lut[256];
  for (int i = 0; i < 256; i++)
    {
      float t = (float) i / 255.0f;
      lut[i] = (t + t) - 1.0f;
    }
  float *dst = ds_tensor_f32 (out); /* (1, 3, size, size) */
  for (size_t p = 0; p < n; p++)
    for (int c = 0; c < 3; c++)
      dst[c * n + p] = lut[rgb[3 * p + c]];
  free (rgb);
  return DS_OK;
}

/* ---- PNG writing ----------------------------------------------------------- */

typedef struct {
  png_structp png;
  png_infop info;
  char message[256];
} PngWriteJob;

static void
png_write_job_error (png_structp png, png_const_charp msg)
{
  PngWriteJob *job = png_get_error_ptr (png);
  snprintf (job->message, sizeof job->message, "%s", msg);
  png_longjmp (png, 1);
}

static int
png_write_job_run (PngWriteJob *job, FILE *f, const uint8_t *pixels, int width,
                   int height, int channels)
{
  if (setjmp (png_jmpbuf (job->png)))
    return 1;
  png_init_io (job->png, f);
  png_set_IHDR (job->png, job->info, (png_uint_32) width, (png_uint_32) height, 8,
                channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB,
                PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                PNG_FILTER_TYPE_DEFAULT);
  png_write_info (job->png, job->info);
  size_t stride = (size_t) width * channels;
  for (int y = 0; y < height; y++)
    png_write_row (job->png, pixels + (size_t) y * stride);
  png_write_end (job->png, NULL);
  return 0;
}

DsStatus
ds_png_write (const char *path, const uint8_t *pixels, int width, int height,
              int channels, DsError *err)
{
  assert (path && pixels);
  if (channels != 3 && channels != 4)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: PNG with %d channels; expected 3 (RGB) or 4 (RGBA)", path,
                         channels);
  if (width <= 0 || height <= 0 || width > PNG_USER_WIDTH_MAX
      || height > PNG_USER_HEIGHT_MAX)
    return ds_error_set (err, DS_ERR_INVALID, "%s: cannot write a %d×%d PNG", path,
                         width, height);

  DsAtomicFile af;
  DsStatus status = ds_atomic_open (&af, path, err);
  if (status != DS_OK)
    return status;
  PngWriteJob job = { 0 };
  job.png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &job, png_write_job_error,
                                     png_job_warning);
  if (job.png)
    job.info = png_create_info_struct (job.png);
  if (!job.png || !job.info)
    status = ds_error_set (err, DS_ERR_NOMEM, "%s: cannot start the PNG encoder", path);
  else if (png_write_job_run (&job, af.f, pixels, width, height, channels) != 0)
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot write PNG: %s", path,
                           job.message);
  png_destroy_write_struct (&job.png, &job.info);
  return ds_atomic_commit (&af, status, err);
}
