/* ds-model-dir.c: finds the parts of a diffusers Stable Diffusion folder and
 * parses its config files into the engine's config structs.
 *
 * The parsers mirror the constructor defaults of diffusers'
 * UNet2DConditionModel / AutoencoderKL / PNDM-style schedulers and transformers'
 * CLIPTextConfig: an absent key takes that default. They are strict about the
 * rest: a key of the wrong JSON type is DS_ERR_FORMAT, a number out of range is
 * DS_ERR_INVALID, and any setting that would change the network in a way the
 * engine does not implement (another block type, class embeddings, a different
 * time embedding, ...) is DS_ERR_UNSUPPORTED naming the key, rather than being
 * ignored and silently computing something else.
 *
 * ds_model_dir_open only checks that weight, vocab and merges files exist; the
 * loaders read them. Pickle weights (.bin, .ckpt, .pt) are never opened.
 */
#include "ds-model-dir.h"
#include "ds-atomic.h"
#include "ds-json.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (16u << 20)

/* ------------------------------------------------------------------------ */
/* Typed access to a config object                                          */

typedef struct
{
  json_t *root;
  const char *path;
  DsError *err;
} Cfg;

/* The value as compact JSON for messages, e.g. "\"AttnDownBlock2D\"" or "[1, 2]". */
static const char *
json_repr (const json_t *v, char *buf, size_t size)
{
  char *s = json_dumps (v, JSON_ENCODE_ANY | JSON_COMPACT);
  snprintf (buf, size, "%s", s ? s : "?");
  if (s && strlen (s) >= size && size > 4)
    memcpy (buf + size - 4, "...", 4);
  free (s);
  return buf;
}

static DsStatus
cfg_load (Cfg *c, const char *json_text, const char *path, DsError *err)
{
  json_error_t jerr;
  c->path = path;
  c->err = err;
  c->root = json_loads (json_text, 0, &jerr);
  if (!c->root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path,
                         jerr.text, jerr.line, jerr.column);
  if (!json_is_object (c->root))
    {
      DsStatus s = ds_error_set (err, DS_ERR_FORMAT, "%s: is %s, expected a JSON object", path,
                                 ds_json_type_name (c->root));
      json_decref (c->root);
      c->root = NULL;
      return s;
    }
  return DS_OK;
}

static DsStatus
type_error (Cfg *c, const char *key, const json_t *v, const char *expected)
{
  return ds_error_set (c->err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected %s", c->path, key,
                       ds_json_type_name (v), expected);
}

static DsStatus
unsupported (Cfg *c, const char *key, const json_t *v, const char *supported)
{
  char buf[96];
  return ds_error_set (c->err, DS_ERR_UNSUPPORTED,
                       "%s: key '%s' is %s; the engine supports only %s", c->path, key,
                       json_repr (v, buf, sizeof buf), supported);
}

static DsStatus
int_value (Cfg *c, const char *key, const json_t *v, int min, int max, int *out)
{
  if (!json_is_integer (v))
    return type_error (c, key, v, "an integer");
  json_int_t x = json_integer_value (v);
  if (x < min || x > max)
    return ds_error_set (c->err, DS_ERR_INVALID,
                         "%s: key '%s' is %lld, expected a value in [%d, %d]", c->path, key,
                         (long long)x, min, max);
  *out = (int)x;
  return DS_OK;
}

static DsStatus
cfg_int (Cfg *c, const char *key, int def, int min, int max, int *out)
{
  json_t *v = json_object_get (c->root, key);
  if (!v)
    {
      *out = def;
      return DS_OK;
    }
  return int_value (c, key, v, min, max, out);
}

/* Accepts JSON integers and reals; `min`/`max` bound the value. */
static DsStatus
cfg_float (Cfg *c, const char *key, double def, double min, double max, float *out)
{
  json_t *v = json_object_get (c->root, key);
  double x = def;
  if (v)
    {
      if (!json_is_number (v))
        return type_error (c, key, v, "a number");
      x = json_number_value (v);
      if (!(x >= min && x <= max))
        return ds_error_set (c->err, DS_ERR_INVALID,
                             "%s: key '%s' is %g, expected a value in [%g, %g]", c->path, key, x,
                             min, max);
    }
  *out = (float)x;
  return DS_OK;
}

static DsStatus
cfg_bool (Cfg *c, const char *key, bool def, bool *out)
{
  json_t *v = json_object_get (c->root, key);
  if (!v)
    {
      *out = def;
      return DS_OK;
    }
  if (!json_is_boolean (v))
    return type_error (c, key, v, "true or false");
  *out = json_is_true (v);
  return DS_OK;
}

static DsStatus
cfg_string (Cfg *c, const char *key, const char *def, const char **out)
{
  json_t *v = json_object_get (c->root, key);
  if (!v)
    {
      *out = def;
      return DS_OK;
    }
  if (!json_is_string (v))
    return type_error (c, key, v, "a string");
  *out = json_string_value (v);
  return DS_OK;
}

/* A list of 1..DS_MAX_LEVELS positive integers. */
static DsStatus
cfg_level_ints (Cfg *c, const char *key, const int *def, int n_def, int *out, int *n)
{
  json_t *v = json_object_get (c->root, key);
  if (!v)
    {
      memcpy (out, def, (size_t)n_def * sizeof *out);
      *n = n_def;
      return DS_OK;
    }
  if (!json_is_array (v))
    return type_error (c, key, v, "an array of integers");
  size_t len = json_array_size (v);
  if (len == 0)
    return ds_error_set (c->err, DS_ERR_INVALID, "%s: key '%s' is an empty list", c->path, key);
  if (len > DS_MAX_LEVELS)
    return ds_error_set (c->err, DS_ERR_UNSUPPORTED,
                         "%s: key '%s' has %zu levels; the engine supports at most %d", c->path,
                         key, len, DS_MAX_LEVELS);
  for (size_t i = 0; i < len; i++)
    {
      char k[96];
      snprintf (k, sizeof k, "%s[%zu]", key, i);
      DsStatus s = int_value (c, k, json_array_get (v, i), 1, 1 << 20, &out[i]);
      if (s != DS_OK)
        return s;
    }
  *n = (int)len;
  return DS_OK;
}

/* Maps each string of list `key` through `names` (n_names entries) to `out`. The
 * list must have `n_levels` entries. */
static DsStatus
cfg_block_types (Cfg *c, const char *key, const char *const *def, int n_levels,
                 const char *const *names, const int *values, int n_names, int *out)
{
  json_t *v = json_object_get (c->root, key);
  int len;
  if (v)
    {
      if (!json_is_array (v))
        return type_error (c, key, v, "an array of block type names");
      len = (int)json_array_size (v);
    }
  else
    len = 4;
  if (len != n_levels)
    return ds_error_set (c->err, DS_ERR_INVALID,
                         "%s: key '%s' %s %d entries but block_out_channels has %d", c->path, key,
                         v ? "has" : "is absent and its default has", len, n_levels);
  for (int i = 0; i < len; i++)
    {
      const char *name = def ? def[i] : NULL;
      if (v)
        {
          json_t *e = json_array_get (v, (size_t)i);
          char k[96];
          snprintf (k, sizeof k, "%s[%d]", key, i);
          if (!json_is_string (e))
            return type_error (c, k, e, "a string");
          name = json_string_value (e);
        }
      int found = -1;
      for (int j = 0; j < n_names; j++)
        if (strcmp (name, names[j]) == 0)
          found = j;
      if (found < 0)
        {
          char list[256] = "";
          for (int j = 0; j < n_names; j++)
            {
              strncat (list, j ? ", " : "", sizeof list - strlen (list) - 1);
              strncat (list, names[j], sizeof list - strlen (list) - 1);
            }
          return ds_error_set (c->err, DS_ERR_UNSUPPORTED,
                               "%s: key '%s[%d]' is '%s'; the engine supports %s", c->path, key, i,
                               name, list);
        }
      out[i] = values[found];
    }
  return DS_OK;
}

/* An int for every level: a single integer applies to all; a list needs one
 * entry per level. */
static DsStatus
cfg_per_level (Cfg *c, const char *key, json_t *v, int n_levels, int *out)
{
  if (json_is_integer (v))
    {
      int x;
      DsStatus s = int_value (c, key, v, 1, 1 << 20, &x);
      for (int i = 0; s == DS_OK && i < n_levels; i++)
        out[i] = x;
      return s;
    }
  if (!json_is_array (v))
    return type_error (c, key, v, "an integer or a list of integers");
  if ((int)json_array_size (v) != n_levels)
    return ds_error_set (c->err, DS_ERR_INVALID,
                         "%s: key '%s' has %zu entries but block_out_channels has %d "
                         "levels",
                         c->path, key, json_array_size (v), n_levels);
  for (int i = 0; i < n_levels; i++)
    {
      char k[96];
      snprintf (k, sizeof k, "%s[%d]", key, i);
      DsStatus s = int_value (c, k, json_array_get (v, (size_t)i), 1, 1 << 20, &out[i]);
      if (s != DS_OK)
        return s;
    }
  return DS_OK;
}

/* Settings the engine does not implement must be absent or have the value that
 * means "off". */
typedef enum
{
  FIX_NULL,
  FIX_FALSE,
  FIX_STRING,
  FIX_NUMBER
} FixKind;

typedef struct
{
  const char *key;
  FixKind kind;
  const char *str;
  double num;
} Fixed;

static DsStatus
cfg_check_fixed (Cfg *c, const Fixed *fixed, int n)
{
  for (int i = 0; i < n; i++)
    {
      const Fixed *f = &fixed[i];
      json_t *v = json_object_get (c->root, f->key);
      if (!v)
        continue;
      char want[96];
      bool ok = false;
      switch (f->kind)
        {
        case FIX_NULL:
          ok = json_is_null (v);
          snprintf (want, sizeof want, "null");
          break;
        case FIX_FALSE:
          ok = json_is_false (v) || json_is_null (v);
          if (json_is_array (v))
            {
              /* only_cross_attention may be given per block */
              ok = true;
              for (size_t j = 0; j < json_array_size (v); j++)
                ok &= json_is_false (json_array_get (v, j));
            }
          snprintf (want, sizeof want, "false");
          break;
        case FIX_STRING:
          /* null is a choice here (e.g. mid_block_type null = no mid block) */
          if (!json_is_string (v) && !json_is_null (v))
            return type_error (c, f->key, v, "a string");
          ok = json_is_string (v) && strcmp (json_string_value (v), f->str) == 0;
          snprintf (want, sizeof want, "\"%s\"", f->str);
          break;
        case FIX_NUMBER:
          if (!json_is_number (v))
            return type_error (c, f->key, v, "a number");
          ok = json_number_value (v) == f->num;
          snprintf (want, sizeof want, "%g", f->num);
          break;
        }
      if (!ok)
        return unsupported (c, f->key, v, want);
    }
  return DS_OK;
}

#define TRY(expr)                                                                                  \
  do                                                                                               \
    {                                                                                              \
      if ((status = (expr)) != DS_OK)                                                              \
        goto out;                                                                                  \
    }                                                                                              \
  while (0)

/* ------------------------------------------------------------------------ */
/* UNet                                                                      */

static const Fixed unet_fixed[] = {
  { "act_fn", FIX_STRING, "silu", 0 },
  { "center_input_sample", FIX_FALSE, NULL, 0 },
  { "dual_cross_attention", FIX_FALSE, NULL, 0 },
  { "only_cross_attention", FIX_FALSE, NULL, 0 },
  { "mid_block_only_cross_attention", FIX_FALSE, NULL, 0 },
  { "class_embed_type", FIX_NULL, NULL, 0 },
  { "addition_embed_type", FIX_NULL, NULL, 0 },
  { "num_class_embeds", FIX_NULL, NULL, 0 },
  { "encoder_hid_dim", FIX_NULL, NULL, 0 },
  { "encoder_hid_dim_type", FIX_NULL, NULL, 0 },
  { "time_embedding_type", FIX_STRING, "positional", 0 },
  { "time_embedding_dim", FIX_NULL, NULL, 0 },
  { "time_embedding_act_fn", FIX_NULL, NULL, 0 },
  { "timestep_post_act", FIX_NULL, NULL, 0 },
  { "time_cond_proj_dim", FIX_NULL, NULL, 0 },
  { "conv_in_kernel", FIX_NUMBER, NULL, 3 },
  { "conv_out_kernel", FIX_NUMBER, NULL, 3 },
  { "resnet_time_scale_shift", FIX_STRING, "default", 0 },
  { "resnet_skip_time_act", FIX_FALSE, NULL, 0 },
  { "resnet_out_scale_factor", FIX_NUMBER, NULL, 1.0 },
  { "cross_attention_norm", FIX_NULL, NULL, 0 },
  { "attention_type", FIX_STRING, "default", 0 },
  { "reverse_transformer_layers_per_block", FIX_NULL, NULL, 0 },
  { "mid_block_type", FIX_STRING, "UNetMidBlock2DCrossAttn", 0 },
};

static const char *const unet_down_names[] = { "CrossAttnDownBlock2D", "DownBlock2D" };
static const int unet_down_values[] = { DS_BLOCK_CROSS_ATTN_DOWN, DS_BLOCK_DOWN };
static const char *const unet_up_names[] = { "UpBlock2D", "CrossAttnUpBlock2D" };
static const int unet_up_values[] = { DS_BLOCK_UP, DS_BLOCK_CROSS_ATTN_UP };
static const char *const unet_down_default[] = {
  "CrossAttnDownBlock2D",
  "CrossAttnDownBlock2D",
  "CrossAttnDownBlock2D",
  "DownBlock2D",
};
static const char *const unet_up_default[] = {
  "UpBlock2D",
  "CrossAttnUpBlock2D",
  "CrossAttnUpBlock2D",
  "CrossAttnUpBlock2D",
};

/* sample_size: diffusers' default is None (it only sets the pipeline's default
 * resolution); we use 64, the SD 1.x / 2.x-base latent size. A [h, w] pair is
 * accepted when square. */
static DsStatus
unet_sample_size (Cfg *c, int *out)
{
  json_t *v = json_object_get (c->root, "sample_size");
  if (!v || json_is_null (v))
    {
      *out = 64;
      return DS_OK;
    }
  if (json_is_array (v) && json_array_size (v) == 2)
    {
      json_t *h = json_array_get (v, 0), *w = json_array_get (v, 1);
      if (json_is_integer (h) && json_is_integer (w)
          && json_integer_value (h) != json_integer_value (w))
        return unsupported (c, "sample_size", v, "square sizes");
      return int_value (c, "sample_size[0]", h, 1, 1 << 16, out);
    }
  return int_value (c, "sample_size", v, 1, 1 << 16, out);
}

/* layers_per_block / transformer_layers_per_block: an integer, or a per-level
 * list whose entries are all equal. */
static DsStatus
unet_uniform_int (Cfg *c, const char *key, int def, int n_levels, int *out)
{
  json_t *v = json_object_get (c->root, key);
  if (!v)
    {
      *out = def;
      return DS_OK;
    }
  int per[DS_MAX_LEVELS];
  DsStatus s = cfg_per_level (c, key, v, n_levels, per);
  if (s != DS_OK)
    return s;
  for (int i = 1; i < n_levels; i++)
    if (per[i] != per[0])
      return unsupported (c, key, v, "the same value at every level");
  *out = per[0];
  return DS_OK;
}

DsStatus
ds_unet_config_parse (const char *json_text, const char *path, DsUnetConfig *out, DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  Cfg c;
  DsStatus status = cfg_load (&c, json_text, path, err);
  if (status != DS_OK)
    return status;
  DsUnetConfig u = { 0 };
  static const int def_channels[] = { 320, 640, 1280, 1280 };

  TRY (cfg_check_fixed (&c, unet_fixed, sizeof unet_fixed / sizeof unet_fixed[0]));
  TRY (cfg_int (&c, "in_channels", 4, 1, 1 << 16, &u.in_channels));
  TRY (cfg_int (&c, "out_channels", 4, 1, 1 << 16, &u.out_channels));
  TRY (unet_sample_size (&c, &u.sample_size));
  TRY (cfg_int (&c, "_diffscope_heat_divisor", DS_UNET_HEAT_DIVISOR_DEFAULT, 1, 64, &u.heat_divisor));
  TRY (cfg_level_ints (&c, "block_out_channels", def_channels, 4, u.block_out_channels,
                       &u.n_levels));
  int down[DS_MAX_LEVELS], up[DS_MAX_LEVELS];
  TRY (cfg_block_types (&c, "down_block_types", unet_down_default, u.n_levels, unet_down_names,
                        unet_down_values, 2, down));
  TRY (cfg_block_types (&c, "up_block_types", unet_up_default, u.n_levels, unet_up_names,
                        unet_up_values, 2, up));
  for (int i = 0; i < u.n_levels; i++)
    {
      u.down_block_types[i] = (DsBlockType)down[i];
      u.up_block_types[i] = (DsBlockType)up[i];
    }
  TRY (unet_uniform_int (&c, "layers_per_block", 2, u.n_levels, &u.layers_per_block));
  if (u.layers_per_block < 1)
    {
      status = ds_error_set (err, DS_ERR_INVALID,
                             "%s: key 'layers_per_block' is %d, "
                             "expected at least 1",
                             path, u.layers_per_block);
      goto out;
    }
  TRY (unet_uniform_int (&c, "transformer_layers_per_block", 1, u.n_levels,
                         &u.transformer_layers_per_block));
  if (u.transformer_layers_per_block != 1)
    {
      status = unsupported (&c, "transformer_layers_per_block",
                            json_object_get (c.root, "transformer_layers_per_block"), "1");
      goto out;
    }

  /* Heads: diffusers reads num_attention_heads, falling back to
   * attention_head_dim, which in these configs holds the head count. */
  const char *hkey = "num_attention_heads";
  json_t *hv = json_object_get (c.root, hkey);
  if (!hv || json_is_null (hv))
    {
      hkey = "attention_head_dim";
      hv = json_object_get (c.root, hkey);
    }
  if (hv)
    TRY (cfg_per_level (&c, hkey, hv, u.n_levels, u.heads));
  else
    for (int i = 0; i < u.n_levels; i++)
      u.heads[i] = 8;

  json_t *cad = json_object_get (c.root, "cross_attention_dim");
  if (cad && json_is_array (cad))
    {
      status = unsupported (&c, "cross_attention_dim", cad, "a single integer");
      goto out;
    }
  TRY (cfg_int (&c, "cross_attention_dim", 1280, 1, 1 << 20, &u.cross_attention_dim));
  TRY (cfg_bool (&c, "use_linear_projection", false, &u.use_linear_projection));
  TRY (cfg_bool (&c, "upcast_attention", false, &u.upcast_attention));
  json_t *ng = json_object_get (c.root, "norm_num_groups");
  if (ng && json_is_null (ng))
    {
      status = unsupported (&c, "norm_num_groups", ng, "group normalization (an integer)");
      goto out;
    }
  TRY (cfg_int (&c, "norm_num_groups", 32, 1, 1 << 16, &u.norm_num_groups));
  TRY (cfg_float (&c, "norm_eps", 1e-5, 0, 1, &u.norm_eps));
  if (!(u.norm_eps > 0))
    {
      status = ds_error_set (err, DS_ERR_INVALID, "%s: key 'norm_eps' must be > 0", path);
      goto out;
    }
  TRY (cfg_bool (&c, "flip_sin_to_cos", true, &u.flip_sin_to_cos));
  TRY (cfg_float (&c, "freq_shift", 0, -1e6, 1e6, &u.freq_shift));
  TRY (cfg_int (&c, "downsample_padding", 1, 0, 16, &u.downsample_padding));
  TRY (cfg_float (&c, "mid_block_scale_factor", 1, -1e6, 1e6, &u.mid_block_scale_factor));

  for (int i = 0; i < u.n_levels; i++)
    {
      int ch = u.block_out_channels[i];
      if (ch % u.norm_num_groups != 0)
        {
          status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: key 'block_out_channels[%d]' = %d is not divisible "
                                 "by norm_num_groups = %d",
                                 path, i, ch, u.norm_num_groups);
          goto out;
        }
      if (ch % u.heads[i] != 0)
        {
          status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                                 "%s: key '%s' gives %d heads at level %d, which does not "
                                 "divide block_out_channels[%d] = %d",
                                 path, hkey, u.heads[i], i, i, ch);
          goto out;
        }
    }
  *out = u;

out:
  json_decref (c.root);
  return status;
}

/* ------------------------------------------------------------------------ */
/* VAE                                                                       */

static const Fixed vae_fixed[] = {
  { "act_fn", FIX_STRING, "silu", 0 },
};

DsStatus
ds_vae_config_parse (const char *json_text, const char *path, DsVaeConfig *out, DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  Cfg c;
  DsStatus status = cfg_load (&c, json_text, path, err);
  if (status != DS_OK)
    return status;
  DsVaeConfig v = { 0 };
  static const int def_channels[] = { 64 };

  TRY (cfg_check_fixed (&c, vae_fixed, sizeof vae_fixed / sizeof vae_fixed[0]));
  TRY (cfg_int (&c, "in_channels", 3, 1, 1 << 16, &v.in_channels));
  TRY (cfg_int (&c, "latent_channels", 4, 1, 1 << 16, &v.latent_channels));
  TRY (cfg_level_ints (&c, "block_out_channels", def_channels, 1, v.block_out_channels,
                       &v.n_levels));

  /* Every encoder level is a DownEncoderBlock2D; the default list has one entry,
   * matching the default block_out_channels. */
  static const char *const names[] = { "DownEncoderBlock2D" };
  static const int values[] = { 0 };
  int types[DS_MAX_LEVELS];
  json_t *dbt = json_object_get (c.root, "down_block_types");
  if (dbt)
    TRY (cfg_block_types (&c, "down_block_types", NULL, v.n_levels, names, values, 1, types));
  else if (v.n_levels != 1)
    {
      status = ds_error_set (err, DS_ERR_INVALID,
                             "%s: key 'down_block_types' is absent (default: one "
                             "DownEncoderBlock2D) but block_out_channels has %d levels",
                             path, v.n_levels);
      goto out;
    }

  TRY (cfg_int (&c, "layers_per_block", 1, 1, 64, &v.layers_per_block));
  TRY (cfg_int (&c, "norm_num_groups", 32, 1, 1 << 16, &v.norm_num_groups));
  TRY (cfg_float (&c, "scaling_factor", 0.18215, 1e-12, 1e12, &v.scaling_factor));
  TRY (cfg_bool (&c, "use_quant_conv", true, &v.use_quant_conv));
  TRY (cfg_bool (&c, "mid_block_add_attention", true, &v.mid_block_add_attention));

  /* shift_factor (SD3/Flux VAEs) would change the latent normalisation. */
  json_t *sf = json_object_get (c.root, "shift_factor");
  if (sf && !json_is_null (sf) && !(json_is_number (sf) && json_number_value (sf) == 0))
    {
      status = unsupported (&c, "shift_factor", sf, "null or 0");
      goto out;
    }

  for (int i = 0; i < v.n_levels; i++)
    if (v.block_out_channels[i] % v.norm_num_groups != 0)
      {
        status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                               "%s: key 'block_out_channels[%d]' = %d is not divisible "
                               "by norm_num_groups = %d",
                               path, i, v.block_out_channels[i], v.norm_num_groups);
        goto out;
      }
  *out = v;

out:
  json_decref (c.root);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Text encoder                                                              */

DsStatus
ds_text_encoder_config_parse (const char *json_text, const char *path, DsTextEncoderConfig *out,
                              DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  Cfg c;
  DsStatus status = cfg_load (&c, json_text, path, err);
  if (status != DS_OK)
    return status;
  DsTextEncoderConfig t = { 0 };

  /* A full CLIPModel config ("clip") nests these keys under text_config; reading
   * its top level would silently give CLIPTextConfig defaults. */
  const char *model_type = NULL;
  TRY (cfg_string (&c, "model_type", "clip_text_model", &model_type));
  if (strcmp (model_type, "clip_text_model") != 0)
    {
      status = unsupported (&c, "model_type", json_object_get (c.root, "model_type"),
                            "\"clip_text_model\" (CLIPTextModel)");
      goto out;
    }
  TRY (cfg_int (&c, "vocab_size", 49408, 1, 1 << 24, &t.vocab_size));
  TRY (cfg_int (&c, "hidden_size", 512, 1, 1 << 16, &t.hidden_size));
  TRY (cfg_int (&c, "intermediate_size", 2048, 1, 1 << 20, &t.intermediate_size));
  TRY (cfg_int (&c, "num_attention_heads", 8, 1, 1 << 12, &t.num_attention_heads));
  TRY (cfg_int (&c, "num_hidden_layers", 12, 1, 1 << 12, &t.num_hidden_layers));
  TRY (cfg_int (&c, "max_position_embeddings", 77, 1, 1 << 20, &t.max_position_embeddings));
  const char *act = NULL;
  TRY (cfg_string (&c, "hidden_act", "quick_gelu", &act));
  if (strcmp (act, "quick_gelu") == 0)
    t.hidden_act = DS_ACT_QUICK_GELU;
  else if (strcmp (act, "gelu") == 0)
    t.hidden_act = DS_ACT_GELU;
  else
    {
      status = unsupported (&c, "hidden_act", json_object_get (c.root, "hidden_act"),
                            "\"gelu\" or \"quick_gelu\"");
      goto out;
    }
  TRY (cfg_float (&c, "layer_norm_eps", 1e-5, 0, 1, &t.layer_norm_eps));
  if (!(t.layer_norm_eps > 0))
    {
      status = ds_error_set (err, DS_ERR_INVALID, "%s: key 'layer_norm_eps' must be > 0", path);
      goto out;
    }
  if (t.hidden_size % t.num_attention_heads != 0)
    {
      status = ds_error_set (err, DS_ERR_INVALID,
                             "%s: key 'hidden_size' = %d is not divisible by "
                             "num_attention_heads = %d",
                             path, t.hidden_size, t.num_attention_heads);
      goto out;
    }
  *out = t;

out:
  json_decref (c.root);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Scheduler                                                                 */

DsStatus
ds_scheduler_config_parse (const char *json_text, const char *path, DsSchedulerConfig *out,
                           DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  Cfg c;
  DsStatus status = cfg_load (&c, json_text, path, err);
  if (status != DS_OK)
    return status;
  DsSchedulerConfig s = { 0 };

  json_t *tb = json_object_get (c.root, "trained_betas");
  if (tb && !json_is_null (tb))
    {
      status = ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "%s: key 'trained_betas' is set; the engine supports only "
                             "beta schedules computed from beta_start/beta_end",
                             path);
      goto out;
    }
  TRY (cfg_int (&c, "num_train_timesteps", 1000, 2, 1 << 20, &s.num_train_timesteps));
  TRY (cfg_float (&c, "beta_start", 0.0001, 0, 1, &s.beta_start));
  TRY (cfg_float (&c, "beta_end", 0.02, 0, 1, &s.beta_end));
  const char *sched = NULL;
  TRY (cfg_string (&c, "beta_schedule", "linear", &sched));
  if (strcmp (sched, "scaled_linear") == 0)
    s.scaled_linear = true;
  else if (strcmp (sched, "linear") != 0)
    {
      status = unsupported (&c, "beta_schedule", json_object_get (c.root, "beta_schedule"),
                            "\"linear\" or \"scaled_linear\"");
      goto out;
    }
  *out = s;

out:
  json_decref (c.root);
  return status;
}

/* ------------------------------------------------------------------------ */
/* The folder                                                                */

static DsStatus
join_path (char *buf, const char *root, const char *rel, DsError *err)
{
  int n = snprintf (buf, DS_PATH_MAX, "%s/%s", root, rel);
  if (n < 0 || n >= DS_PATH_MAX)
    return ds_error_set (err, DS_ERR_INVALID, "%s/%s: path longer than %d bytes", root, rel,
                         DS_PATH_MAX - 1);
  return DS_OK;
}

/* *found: whether path exists (links followed). When it exists but is not a
 * regular file (a directory, a FIFO, /dev/zero) it is an error saying what it
 * is, rather than "not found" or a read that never ends. */
static DsStatus
probe_file (const char *path, bool *found, DsError *err)
{
  struct stat sb;
  *found = false;
  if (stat (path, &sb) != 0)
    return errno == ENOENT || errno == ENOTDIR
             ? DS_OK
             : ds_error_set (err, DS_ERR_IO, "%s: cannot read: %s", path, strerror (errno));
  if (S_ISDIR (sb.st_mode))
    return ds_error_set (err, DS_ERR_IO, "%s: is a directory, expected a file", path);
  if (!S_ISREG (sb.st_mode))
    return ds_error_set (err, DS_ERR_IO, "%s: is not a regular file (it is %s)", path,
                         ds_file_kind (sb.st_mode));
  *found = true;
  return DS_OK;
}

/* DS_OK for a regular file; "not found" (plus hint) when absent. */
static DsStatus
need_file (const char *path, const char *hint, DsError *err)
{
  bool found;
  DsStatus s = probe_file (path, &found, err);
  if (s == DS_OK && !found)
    s = ds_error_set (err, DS_ERR_NOT_FOUND, "%s: not found%s", path, hint);
  return s;
}

/* Reads a whole (small) text file. transfer full: *out must be free()d. */
static DsStatus
read_text (const char *path, char **out, DsError *err)
{
  *out = NULL;
  FILE *f = fopen (path, "rb");
  if (!f)
    {
      int e = errno;
      return ds_error_set (err, e == ENOENT ? DS_ERR_NOT_FOUND : DS_ERR_IO, "%s: cannot open: %s",
                           path, strerror (e));
    }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;)
    {
      if (cap - len < 4096)
        {
          cap = cap ? 2 * cap : 8192;
          if (cap > CONFIG_MAX_BYTES + 1)
            {
              free (buf);
              fclose (f);
              return ds_error_set (err, DS_ERR_FORMAT,
                                   "%s: larger than %u bytes; not a config file?", path,
                                   CONFIG_MAX_BYTES);
            }
          char *nb = realloc (buf, cap);
          if (!nb)
            {
              free (buf);
              fclose (f);
              return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
            }
          buf = nb;
        }
      size_t r = fread (buf + len, 1, cap - len - 1, f);
      len += r;
      if (r == 0)
        break;
    }
  bool failed = ferror (f);
  fclose (f);
  if (failed)
    {
      free (buf);
      return ds_error_set (err, DS_ERR_IO, "%s: read error", path);
    }
  buf[len] = '\0';
  if (strlen (buf) != len)
    {
      free (buf);
      return ds_error_set (err, DS_ERR_FORMAT, "%s: contains NUL bytes; not a JSON file", path);
    }
  *out = buf;
  return DS_OK;
}

typedef DsStatus (*ConfigParser) (const char *, const char *, void *, DsError *);

static DsStatus
load_config (const char *root, const char *rel, ConfigParser parse, void *out, DsError *err)
{
  char path[DS_PATH_MAX];
  DsStatus s = join_path (path, root, rel, err);
  if (s != DS_OK)
    return s;
  if ((s = need_file (path, "", err)) != DS_OK)
    return s;
  char *text;
  if ((s = read_text (path, &text, err)) != DS_OK)
    return s;
  s = parse (text, path, out, err);
  free (text);
  return s;
}

static DsStatus
unet_parser (const char *t, const char *p, void *o, DsError *e)
{
  return ds_unet_config_parse (t, p, o, e);
}

static DsStatus
vae_parser (const char *t, const char *p, void *o, DsError *e)
{
  return ds_vae_config_parse (t, p, o, e);
}

static DsStatus
text_parser (const char *t, const char *p, void *o, DsError *e)
{
  return ds_text_encoder_config_parse (t, p, o, e);
}

static DsStatus
scheduler_parser (const char *t, const char *p, void *o, DsError *e)
{
  return ds_scheduler_config_parse (t, p, o, e);
}

/* A pickle-format file in `dir`, for the error message; NULL if none. */
static bool
find_pickle (const char *dir, char *name, size_t size)
{
  static const char *const exts[] = { ".bin", ".ckpt", ".pt", ".pth" };
  DIR *d = opendir (dir);
  if (!d)
    return false;
  bool found = false;
  struct dirent *de;
  while (!found && (de = readdir (d)))
    {
      size_t n = strlen (de->d_name);
      for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        {
          size_t m = strlen (exts[i]);
          if (n > m && strcmp (de->d_name + n - m, exts[i]) == 0)
            {
              snprintf (name, size, "%s", de->d_name);
              found = true;
              break;
            }
        }
    }
  closedir (d);
  return found;
}

/* Finds "<sub>/<stem>.safetensors", else "<sub>/<stem>.fp16.safetensors". */
static DsStatus
find_weights (const char *root, const char *sub, const char *stem, char *out, DsError *err)
{
  char rel[256], dir[DS_PATH_MAX];
  DsStatus s;
  bool found;
  snprintf (rel, sizeof rel, "%s/%s.safetensors", sub, stem);
  if ((s = join_path (out, root, rel, err)) != DS_OK || (s = probe_file (out, &found, err)))
    return s;
  if (found)
    return DS_OK;
  snprintf (rel, sizeof rel, "%s/%s.fp16.safetensors", sub, stem);
  if ((s = join_path (out, root, rel, err)) != DS_OK || (s = probe_file (out, &found, err)))
    return s;
  if (found)
    return DS_OK;

  if ((s = join_path (dir, root, sub, err)) != DS_OK)
    return s;
  char index[DS_PATH_MAX];
  snprintf (rel, sizeof rel, "%s/%s.safetensors.index.json", sub, stem);
  if (join_path (index, root, rel, NULL) == DS_OK && probe_file (index, &found, NULL) == DS_OK
      && found)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: sharded weights are not supported; save the %s weights "
                         "as one %s.safetensors",
                         index, sub, stem);
  char pickle[256];
  if (find_pickle (dir, pickle, sizeof pickle))
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: no %s.safetensors, only the pickle file '%s'; pickle "
                         "files are not loaded for safety (they can run code). "
                         "Convert the folder to safetensors, e.g. in Python: "
                         "pipe.save_pretrained(dir, safe_serialization=True)",
                         dir, stem, pickle);
  return ds_error_set (err, DS_ERR_NOT_FOUND,
                       "%s: no weights found (expected %s.safetensors or "
                       "%s.fp16.safetensors)",
                       dir, stem, stem);
}

/* pad_token from a tokenizer JSON file: *found is false when the file or key is
 * absent (or null). */
static DsStatus
read_pad_token (const char *path, char *out, size_t size, bool *found, DsError *err)
{
  *found = false;
  bool exists;
  DsStatus s = probe_file (path, &exists, err);
  if (s != DS_OK || !exists)
    return s;
  char *text;
  s = read_text (path, &text, err);
  if (s != DS_OK)
    return s;
  Cfg c;
  s = cfg_load (&c, text, path, err);
  free (text);
  if (s != DS_OK)
    return s;
  json_t *v = json_object_get (c.root, "pad_token");
  if (v && json_is_object (v))
    {
      json_t *content = json_object_get (v, "content");
      if (!json_is_string (content))
        {
          s = ds_error_set (err, DS_ERR_FORMAT,
                            "%s: key 'pad_token' is an object without a string "
                            "\"content\"",
                            path);
          goto out;
        }
      v = content;
    }
  if (v && !json_is_null (v))
    {
      if (!json_is_string (v))
        {
          s = type_error (&c, "pad_token", v, "a string or an object with \"content\"");
          goto out;
        }
      const char *tok = json_string_value (v);
      if (strlen (tok) == 0 || strlen (tok) >= size)
        {
          s = ds_error_set (err, DS_ERR_UNSUPPORTED,
                            "%s: key 'pad_token' must be 1 to %zu bytes long", path, size - 1);
          goto out;
        }
      snprintf (out, size, "%s", tok);
      *found = true;
    }
out:
  json_decref (c.root);
  return s;
}

/* The pipeline families whose folders this engine runs: the same UNet, VAE,
 * CLIP text encoder and scheduler layout (SD 1.x and 2.x; img2img folders hold
 * the same parts). Anything else (SDXL's two text encoders, SD 3's MMDiT, ...)
 * is refused here, before half of it is loaded. */
static const char *const supported_pipelines[] = {
  "StableDiffusionPipeline",
  "StableDiffusionImg2ImgPipeline",
};
#define SUPPORTED_LIST "StableDiffusionPipeline (SD 1.x and 2.x) or StableDiffusionImg2ImgPipeline"

static DsStatus
check_pipeline_class (Cfg *index)
{
  json_t *v = json_object_get (index->root, "_class_name");
  if (!v)
    return ds_error_set (index->err, DS_ERR_UNSUPPORTED,
                         "%s: no \"_class_name\"; expected a diffusers pipeline folder of a "
                         "supported family: " SUPPORTED_LIST,
                         index->path);
  if (!json_is_string (v))
    return type_error (index, "_class_name", v, "a string");
  for (size_t i = 0; i < sizeof supported_pipelines / sizeof supported_pipelines[0]; i++)
    if (strcmp (json_string_value (v), supported_pipelines[i]) == 0)
      return DS_OK;
  return ds_error_set (index->err, DS_ERR_UNSUPPORTED,
                       "%s: \"_class_name\" is \"%.80s\", which this engine does not run; "
                       "supported: " SUPPORTED_LIST,
                       index->path, json_string_value (v));
}

DsStatus
ds_model_dir_open (const char *root, DsModelDir *out, DsError *err)
{
  assert (root && out);
  memset (out, 0, sizeof *out);
  DsStatus s;
  char path[DS_PATH_MAX];

  size_t rl = strlen (root);
  while (rl > 1 && root[rl - 1] == '/')
    rl--;
  if (rl >= DS_PATH_MAX - 64)
    return ds_error_set (err, DS_ERR_INVALID, "model folder path is longer than %d bytes",
                         DS_PATH_MAX - 64);
  memcpy (out->root, root, rl);
  out->root[rl] = '\0';
  const char *r = out->root;

  if ((s = join_path (path, r, "model_index.json", err)) != DS_OK)
    return s;
  if ((s = need_file (path, " — is this a diffusers Stable Diffusion folder?", err)) != DS_OK)
    return s;
  char *text;
  if ((s = read_text (path, &text, err)) != DS_OK)
    return s;
  Cfg index;
  s = cfg_load (&index, text, path, err);
  free (text);
  if (s != DS_OK)
    return s;
  s = check_pipeline_class (&index);
  json_decref (index.root);
  if (s != DS_OK)
    return s;

  if ((s = load_config (r, "unet/config.json", unet_parser, &out->unet, err)) != DS_OK
      || (s = find_weights (r, "unet", "diffusion_pytorch_model", out->unet_weights, err)) != DS_OK
      || (s = load_config (r, "vae/config.json", vae_parser, &out->vae, err)) != DS_OK
      || (s = find_weights (r, "vae", "diffusion_pytorch_model", out->vae_weights, err)) != DS_OK
      || (s = load_config (r, "text_encoder/config.json", text_parser, &out->text, err)) != DS_OK
      || (s = find_weights (r, "text_encoder", "model", out->text_encoder_weights, err)) != DS_OK
      || (s = load_config (r, "scheduler/scheduler_config.json", scheduler_parser, &out->scheduler,
                           err))
             != DS_OK)
    return s;

  if ((s = join_path (out->vocab_path, r, "tokenizer/vocab.json", err)) != DS_OK
      || (s = join_path (out->merges_path, r, "tokenizer/merges.txt", err)) != DS_OK)
    return s;
  if ((s = need_file (out->vocab_path, "", err)) != DS_OK
      || (s = need_file (out->merges_path, "", err)) != DS_OK)
    return s;

  /* transformers lets special_tokens_map.json override tokenizer_config.json;
   * SD 2.x folders pad with "!", SD 1.x with <|endoftext|> (the default). */
  bool found = false;
  if ((s = join_path (path, r, "tokenizer/special_tokens_map.json", err)) != DS_OK
      || (s = read_pad_token (path, out->pad_token, sizeof out->pad_token, &found, err)) != DS_OK)
    return s;
  if (!found
      && ((s = join_path (path, r, "tokenizer/tokenizer_config.json", err)) != DS_OK
          || (s = read_pad_token (path, out->pad_token, sizeof out->pad_token, &found, err))
                 != DS_OK))
    return s;
  if (!found)
    snprintf (out->pad_token, sizeof out->pad_token, "<|endoftext|>");
  return DS_OK;
}

int
ds_model_dir_native_size (const DsModelDir *d)
{
  return d->unet.sample_size << (d->vae.n_levels - 1);
}
