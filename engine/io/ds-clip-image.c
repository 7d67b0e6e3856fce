/* ds-clip-image.c: the CLIP image processor (see ds-clip-image.h,
 * docs/models.md §7.3). Every step works on the 8-bit image until the last,
 * which maps each byte through a per-channel table: the f32 values depend
 * only on the byte, so 256 entries per channel say everything. */
#include "ds-clip-image.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ds-json.h"

/* OPENAI_CLIP_MEAN / OPENAI_CLIP_STD of transformers' image_utils. */
static const double clip_mean[3] = { 0.48145466, 0.4578275, 0.40821073 };
static const double clip_std[3] = { 0.26862954, 0.26130258, 0.27577711 };

static void
config_defaults (DsClipImageConfig *c, int size)
{
  *c = (DsClipImageConfig) {
    .do_resize = true, .shortest_edge = size,
    .do_center_crop = true, .crop_h = size, .crop_w = size,
    .do_rescale = true, .rescale_factor = 1.0 / 255.0,
    .do_normalize = true,
  };
  memcpy (c->mean, clip_mean, sizeof c->mean);
  memcpy (c->std, clip_std, sizeof c->std);
}

void
ds_clip_image_config_l14_336 (DsClipImageConfig *out)
{
  config_defaults (out, 336);
}

/* ---- parsing ---- */

static DsStatus
get_bool (const json_t *root, const char *path, const char *key, bool *out, DsError *err)
{
  const json_t *v = json_object_get (root, key);
  if (!v)
    return DS_OK;
  if (!json_is_boolean (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected a boolean", path, key,
                         ds_json_type_name (v));
  *out = json_is_true (v);
  return DS_OK;
}

static DsStatus
size_value (const json_t *v, const char *path, const char *key, int *out, DsError *err)
{
  if (!json_is_integer (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected an integer", path, key,
                         ds_json_type_name (v));
  json_int_t x = json_integer_value (v);
  if (x < 1 || x > 16384)
    return ds_error_set (err, DS_ERR_INVALID, "%s: key '%s' is %lld, expected a value in "
                         "[1, 16384]", path, key, (long long) x);
  *out = (int) x;
  return DS_OK;
}

/* "size" or "crop_size": an integer n (shortest edge n for "size", n×n for
 * "crop_size", as transformers reads older files) or an object. */
static DsStatus
get_size (const json_t *root, const char *path, const char *key, bool is_crop, int *shortest,
          int *h, int *w, DsError *err)
{
  const json_t *v = json_object_get (root, key);
  if (!v)
    return DS_OK;
  char sub[96];
  DsStatus st;
  if (json_is_integer (v))
    {
      int n = 0;
      if ((st = size_value (v, path, key, &n, err)))
        return st;
      if (is_crop)
        *h = *w = n;
      else
        *shortest = n, *h = *w = 0;
      return DS_OK;
    }
  if (!json_is_object (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected an integer or an "
                         "object", path, key, ds_json_type_name (v));
  const json_t *se = json_object_get (v, "shortest_edge");
  const json_t *hv = json_object_get (v, "height"), *wv = json_object_get (v, "width");
  if (json_object_get (v, "longest_edge") && !json_is_null (json_object_get (v, "longest_edge")))
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: key '%s.longest_edge' is not supported",
                         path, key);
  if (se && !is_crop)
    {
      snprintf (sub, sizeof sub, "%s.shortest_edge", key);
      *h = *w = 0;
      return size_value (se, path, sub, shortest, err);
    }
  if (hv && wv)
    {
      snprintf (sub, sizeof sub, "%s.height", key);
      if ((st = size_value (hv, path, sub, h, err)))
        return st;
      snprintf (sub, sizeof sub, "%s.width", key);
      if ((st = size_value (wv, path, sub, w, err)))
        return st;
      if (shortest)
        *shortest = 0;
      return DS_OK;
    }
  return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' has neither %s nor height and width",
                       path, key, is_crop ? "an integer" : "shortest_edge");
}

static DsStatus
get_triple (const json_t *root, const char *path, const char *key, double *out, bool positive,
            DsError *err)
{
  const json_t *v = json_object_get (root, key);
  if (!v)
    return DS_OK;
  if (json_is_number (v))
    {
      out[0] = out[1] = out[2] = json_number_value (v);
    }
  else if (json_is_array (v) && json_array_size (v) == 3)
    {
      for (int i = 0; i < 3; i++)
        {
          const json_t *e = json_array_get (v, (size_t) i);
          if (!json_is_number (e))
            return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s'[%d] is %s, expected a number",
                                 path, key, i, ds_json_type_name (e));
          out[i] = json_number_value (e);
        }
    }
  else
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected a list of 3 numbers",
                         path, key, json_is_array (v) ? "a list of another length"
                                                      : ds_json_type_name (v));
  for (int i = 0; positive && i < 3; i++)
    if (!(out[i] > 0))
      return ds_error_set (err, DS_ERR_INVALID, "%s: key '%s'[%d] is %g, expected > 0", path,
                           key, i, out[i]);
  return DS_OK;
}

static DsStatus
parse_keys (const json_t *root, const char *path, DsClipImageConfig *c, DsError *err)
{
  DsStatus st;
  if ((st = get_bool (root, path, "do_resize", &c->do_resize, err))
      || (st = get_bool (root, path, "do_center_crop", &c->do_center_crop, err))
      || (st = get_bool (root, path, "do_rescale", &c->do_rescale, err))
      || (st = get_bool (root, path, "do_normalize", &c->do_normalize, err))
      || (st = get_size (root, path, "size", false, &c->shortest_edge, &c->resize_h,
                         &c->resize_w, err))
      || (st = get_size (root, path, "crop_size", true, NULL, &c->crop_h, &c->crop_w, err))
      || (st = get_triple (root, path, "image_mean", c->mean, false, err))
      || (st = get_triple (root, path, "image_std", c->std, true, err)))
    return st;
  return DS_OK;
}

DsStatus
ds_clip_image_config_parse (const char *json_text, const char *path, DsClipImageConfig *out,
                            DsError *err)
{
  assert (json_text && path && out);
  json_error_t jerr;
  json_t *root = json_loads (json_text, 0, &jerr);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)",
                         path, jerr.text, jerr.line, jerr.column);
  DsClipImageConfig c;
  config_defaults (&c, 224); /* CLIPImageProcessor's class defaults */
  DsStatus st = DS_OK;
  const json_t *rs = json_object_get (root, "resample");
  const json_t *rf = json_object_get (root, "rescale_factor");
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: is %s, expected a JSON object", path,
                       ds_json_type_name (root));
  else if (rs && !(json_is_integer (rs) && json_integer_value (rs) == 3))
    {
      char what[64];
      if (json_is_integer (rs))
        snprintf (what, sizeof what, "%lld", (long long) json_integer_value (rs));
      else
        snprintf (what, sizeof what, "%s", ds_json_type_name (rs));
      st = ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: key 'resample' is %s; the engine supports only 3 (bicubic)", path,
                         what);
    }
  else if (rf && !(json_is_number (rf) && json_number_value (rf) > 0))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: key 'rescale_factor' is %s, expected a "
                       "positive number", path, ds_json_type_name (rf));
  else
    st = parse_keys (root, path, &c, err);
  if (st == DS_OK && rf)
    c.rescale_factor = json_number_value (rf);
  if (st == DS_OK)
    *out = c;
  json_decref (root);
  return st;
}

/* ---- preprocessing ---- */

/* Python's a // b for b > 0. */
static int64_t
floor_div (int64_t a, int64_t b)
{
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Step 1: expand2square of the original LLaVA. */
static DsStatus
pad_square (const DsImage *img, const DsClipImageConfig *cfg, DsImage *out, DsError *err)
{
  const int w = img->width, h = img->height, side = w > h ? w : h;
  uint8_t fill[3];
  for (int c = 0; c < 3; c++)
    {
      double v = cfg->mean[c] * 255; /* int(x * 255) in Python: truncation */
      fill[c] = (uint8_t) (v < 0 ? 0 : v > 255 ? 255 : (int) v);
    }
  uint8_t *rgb = malloc ((size_t) side * side * 3);
  if (!rgb)
    return ds_error_set (err, DS_ERR_NOMEM, "pad %d×%d to a square: out of memory", w, h);
  for (size_t p = 0; p < (size_t) side * side; p++)
    memcpy (rgb + 3 * p, fill, 3);
  const int x0 = (side - w) / 2, y0 = (side - h) / 2;
  for (int y = 0; y < h; y++)
    memcpy (rgb + ((size_t) (y0 + y) * side + x0) * 3, img->rgb + (size_t) y * w * 3,
            (size_t) w * 3);
  *out = (DsImage) { .width = side, .height = side, .rgb = rgb };
  return DS_OK;
}

/* Step 2: the size transformers' get_resize_output_image_size gives; an
 * error when the long side would not even fit an int (a 1×131073 image at
 * shortest edge 16384), which used to wrap around to a nonsense size. */
static DsStatus
resize_target (const DsClipImageConfig *cfg, int w, int h, int *rw, int *rh, DsError *err)
{
  if (cfg->shortest_edge <= 0)
    {
      *rw = cfg->resize_w, *rh = cfg->resize_h;
      return DS_OK;
    }
  const int64_t s = cfg->shortest_edge, shorter = w <= h ? w : h, longer = w <= h ? h : w;
  /* int(size * long / short): a true division in double, then truncation */
  const int64_t nl = (int64_t) ((double) (s * longer) / (double) shorter);
  if (nl > INT_MAX)
    return ds_error_set (err, DS_ERR_INVALID,
                         "image %d×%d: resizing its short side to %lld pixels makes the long "
                         "side %lld pixels, more than any image may have",
                         w, h, (long long) s, (long long) nl);
  if (w <= h)
    *rw = (int) s, *rh = (int) nl;
  else
    *rw = (int) nl, *rh = (int) s;
  return DS_OK;
}

DsStatus
ds_clip_image_preprocess (const DsImage *img, const DsClipImageConfig *cfg, DsTensor *out,
                          DsError *err)
{
  assert (img && img->rgb && img->width > 0 && img->height > 0 && cfg && out);
  *out = (DsTensor) { 0 };
  DsImage padded = { 0 }, resized = { 0 };
  const DsImage *cur = img;
  DsStatus st = DS_OK;
  if (cfg->pad_to_square && img->width != img->height)
    {
      if ((st = pad_square (img, cfg, &padded, err)))
        return st;
      cur = &padded;
    }
  if (cfg->do_resize)
    {
      int rw = 0, rh = 0;
      if ((st = resize_target (cfg, cur->width, cur->height, &rw, &rh, err)))
        goto out;
      /* Pillow returns a copy when the size does not change. */
      if (rw != cur->width || rh != cur->height)
        {
          if ((st = ds_image_resize_bicubic (cur, rw, rh, &resized, err)))
            goto out;
          cur = &resized;
        }
    }

  /* Step 3 per axis: the output row y reads source row y − pad + src0. */
  const int64_t W = cur->width, H = cur->height;
  const int64_t oh = cfg->do_center_crop ? cfg->crop_h : H;
  const int64_t ow = cfg->do_center_crop ? cfg->crop_w : W;
  int64_t y_src0 = 0, x_src0 = 0, y_pad = 0, x_pad = 0;
  if (cfg->do_center_crop)
    {
      if (H >= oh)
        y_src0 = floor_div (H - oh, 2);
      else
        y_pad = (oh - H + 1) / 2;
      if (W >= ow)
        x_src0 = floor_div (W - ow, 2);
      else
        x_pad = (ow - W + 1) / 2;
    }

  /* Step 4 as a table: numpy's float64 x * factor cast to float32, then
   * (x − mean) / std with float32 mean and std. */
  float lut[3][256];
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 256; i++)
      {
        float x = cfg->do_rescale ? (float) ((double) i * cfg->rescale_factor) : (float) i;
        lut[c][i] = cfg->do_normalize ? (x - (float) cfg->mean[c]) / (float) cfg->std[c] : x;
      }

  if ((st = ds_tensor_alloc (out, DS_DTYPE_F32, 4, (int64_t[]){ 1, 3, oh, ow }, err)))
    goto out;
  static const uint8_t zero[3] = { 0, 0, 0 }; /* the crop's padding bytes */
  float *dst = ds_tensor_f32 (out);
  const size_t plane = (size_t) (oh * ow);
  for (int64_t y = 0; y < oh; y++)
    for (int64_t x = 0; x < ow; x++)
      {
        const int64_t sy = y - y_pad + y_src0, sx = x - x_pad + x_src0;
        const bool in = sy >= 0 && sy < H && sx >= 0 && sx < W;
        const uint8_t *p = in ? cur->rgb + (sy * W + sx) * 3 : zero;
        for (int c = 0; c < 3; c++)
          dst[c * plane + (size_t) (y * ow + x)] = lut[c][p[c]];
      }
out:
  ds_image_free (&padded);
  ds_image_free (&resized);
  return st;
}
