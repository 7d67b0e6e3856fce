/* test-model-dir.c: the diffusers folder reader and the four config parsers.
 *
 * 1. Every config fixture is parsed and compared field by field with
 *    tests/data/model-dir/expected.json, which diffusers/transformers produced
 *    (tests/reference/gen_model_dir_fixtures.py) — so defaults and head semantics
 *    are checked against the libraries, not against this code.
 * 2. The SD 2.1-base and SD 1.5 folders are opened and checked against the
 *    published facts (docs/models.md §1.1, §3.1, §4.1, §5.1, §5.4).
 * 3. Each error path: wrong JSON types, unsupported choices, missing files,
 *    pickle-only weights, with the message naming the file and key.
 */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-model-dir.h"
#include "ds-test.h"

#define FIXTURES DS_TEST_DATA_DIR "/model-dir"

static char *
read_file (const char *path)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    {
      fprintf (stderr, "cannot read %s: %s\n", path, strerror (errno));
      return NULL;
    }
  fseek (f, 0, SEEK_END);
  long n = ftell (f);
  fseek (f, 0, SEEK_SET);
  char *buf = calloc (1, (size_t)n + 1);
  if (fread (buf, 1, (size_t)n, f) != (size_t)n)
    buf[0] = '\0';
  fclose (f);
  return buf;
}

static bool
ends_with (const char *s, const char *suffix)
{
  size_t a = strlen (s), b = strlen (suffix);
  return a >= b && strcmp (s + a - b, suffix) == 0;
}

/* ------------------------------------------------------------------------ */
/* 1. Parsed values vs diffusers / transformers                             */

static int
jint (json_t *o, const char *key)
{
  return (int)json_integer_value (json_object_get (o, key));
}

static double
jnum (json_t *o, const char *key)
{
  return json_number_value (json_object_get (o, key));
}

static bool
jbool (json_t *o, const char *key)
{
  return json_is_true (json_object_get (o, key));
}

static void
check_int_list (const char *file, const char *key, json_t *want, const int *got, int n_got)
{
  DS_CHECK ((int)json_array_size (want) == n_got, "%s: %s has %d entries, want %zu", file, key,
            n_got, json_array_size (want));
  for (int i = 0; i < n_got && i < (int)json_array_size (want); i++)
    DS_CHECK (got[i] == (int)json_integer_value (json_array_get (want, (size_t)i)),
              "%s: %s[%d] = %d", file, key, i, got[i]);
}

static void
check_blocks (const char *file, const char *key, json_t *want, const DsBlockType *got, int n)
{
  DS_CHECK ((int)json_array_size (want) == n, "%s: %s length", file, key);
  for (int i = 0; i < n && i < (int)json_array_size (want); i++)
    {
      const char *w = json_string_value (json_array_get (want, (size_t)i));
      DsBlockType e = strcmp (w, "DownBlock2D") == 0            ? DS_BLOCK_DOWN
                      : strcmp (w, "CrossAttnDownBlock2D") == 0 ? DS_BLOCK_CROSS_ATTN_DOWN
                      : strcmp (w, "UpBlock2D") == 0            ? DS_BLOCK_UP
                                                                : DS_BLOCK_CROSS_ATTN_UP;
      DS_CHECK (got[i] == e, "%s: %s[%d] = %d, want %s", file, key, i, (int)got[i], w);
    }
}

static void
check_unet (const char *file, const DsUnetConfig *u, json_t *w)
{
  DS_CHECK (u->in_channels == jint (w, "in_channels"), "%s: in_channels %d", file, u->in_channels);
  DS_CHECK (u->out_channels == jint (w, "out_channels"), "%s: out_channels %d", file,
            u->out_channels);
  /* diffusers' default is None; the engine documents 64 */
  json_t *ss = json_object_get (w, "sample_size");
  int want_ss = json_is_null (ss) ? 64 : (int)json_integer_value (ss);
  DS_CHECK (u->sample_size == want_ss, "%s: sample_size %d", file, u->sample_size);
  check_int_list (file, "block_out_channels", json_object_get (w, "block_out_channels"),
                  u->block_out_channels, u->n_levels);
  check_blocks (file, "down_block_types", json_object_get (w, "down_block_types"),
                u->down_block_types, u->n_levels);
  check_blocks (file, "up_block_types", json_object_get (w, "up_block_types"), u->up_block_types,
                u->n_levels);
  check_int_list (file, "heads", json_object_get (w, "heads"), u->heads, u->n_levels);
  DS_CHECK (u->layers_per_block == jint (w, "layers_per_block"), "%s: layers_per_block", file);
  DS_CHECK (u->cross_attention_dim == jint (w, "cross_attention_dim"), "%s: cross_attention_dim %d",
            file, u->cross_attention_dim);
  DS_CHECK (u->use_linear_projection == jbool (w, "use_linear_projection"),
            "%s: use_linear_projection", file);
  DS_CHECK (u->upcast_attention == jbool (w, "upcast_attention"), "%s: upcast_attention", file);
  DS_CHECK (u->norm_num_groups == jint (w, "norm_num_groups"), "%s: norm_num_groups", file);
  DS_CHECK (u->norm_eps == (float)jnum (w, "norm_eps"), "%s: norm_eps %g", file, u->norm_eps);
  DS_CHECK (u->flip_sin_to_cos == jbool (w, "flip_sin_to_cos"), "%s: flip_sin_to_cos", file);
  DS_CHECK (u->freq_shift == (float)jnum (w, "freq_shift"), "%s: freq_shift %g", file,
            u->freq_shift);
  DS_CHECK (u->downsample_padding == jint (w, "downsample_padding"), "%s: downsample_padding",
            file);
  DS_CHECK (u->mid_block_scale_factor == (float)jnum (w, "mid_block_scale_factor"),
            "%s: mid_block_scale_factor %g", file, u->mid_block_scale_factor);
  DS_CHECK (u->transformer_layers_per_block == jint (w, "transformer_layers_per_block"),
            "%s: transformer_layers_per_block", file);
}

static void
check_vae (const char *file, const DsVaeConfig *v, json_t *w)
{
  DS_CHECK (v->in_channels == jint (w, "in_channels"), "%s: in_channels", file);
  DS_CHECK (v->latent_channels == jint (w, "latent_channels"), "%s: latent_channels", file);
  check_int_list (file, "block_out_channels", json_object_get (w, "block_out_channels"),
                  v->block_out_channels, v->n_levels);
  DS_CHECK (v->layers_per_block == jint (w, "layers_per_block"), "%s: layers_per_block", file);
  DS_CHECK (v->norm_num_groups == jint (w, "norm_num_groups"), "%s: norm_num_groups", file);
  DS_CHECK (v->scaling_factor == (float)jnum (w, "scaling_factor"), "%s: scaling_factor %g", file,
            v->scaling_factor);
  DS_CHECK (v->use_quant_conv == jbool (w, "use_quant_conv"), "%s: use_quant_conv", file);
  DS_CHECK (v->mid_block_add_attention == jbool (w, "mid_block_add_attention"),
            "%s: mid_block_add_attention", file);
}

static void
check_text (const char *file, const DsTextEncoderConfig *t, json_t *w)
{
  DS_CHECK (t->vocab_size == jint (w, "vocab_size"), "%s: vocab_size", file);
  DS_CHECK (t->hidden_size == jint (w, "hidden_size"), "%s: hidden_size", file);
  DS_CHECK (t->intermediate_size == jint (w, "intermediate_size"), "%s: intermediate", file);
  DS_CHECK (t->num_attention_heads == jint (w, "num_attention_heads"), "%s: heads", file);
  DS_CHECK (t->num_hidden_layers == jint (w, "num_hidden_layers"), "%s: layers", file);
  DS_CHECK (t->max_position_embeddings == jint (w, "max_position_embeddings"),
            "%s: max_position_embeddings", file);
  const char *act = json_string_value (json_object_get (w, "hidden_act"));
  DsActivation want = strcmp (act, "gelu") == 0 ? DS_ACT_GELU : DS_ACT_QUICK_GELU;
  DS_CHECK (t->hidden_act == want, "%s: hidden_act, want %s", file, act);
  DS_CHECK (t->layer_norm_eps == (float)jnum (w, "layer_norm_eps"), "%s: eps", file);
}

static void
check_scheduler (const char *file, const DsSchedulerConfig *s, json_t *w)
{
  DS_CHECK (s->num_train_timesteps == jint (w, "num_train_timesteps"), "%s: steps", file);
  DS_CHECK (s->beta_start == (float)jnum (w, "beta_start"), "%s: beta_start %g", file,
            s->beta_start);
  DS_CHECK (s->beta_end == (float)jnum (w, "beta_end"), "%s: beta_end %g", file, s->beta_end);
  const char *sched = json_string_value (json_object_get (w, "beta_schedule"));
  DS_CHECK (s->scaled_linear == (strcmp (sched, "scaled_linear") == 0),
            "%s: scaled_linear, want %s", file, sched);
}

static void
test_expected_from_python (void)
{
  json_error_t jerr;
  json_t *root = json_load_file (FIXTURES "/expected.json", 0, &jerr);
  DS_CHECK (root != NULL, "expected.json: %s", jerr.text);
  if (!root)
    return;
  json_t *cases = json_object_get (root, "cases");
  DS_CHECK (json_array_size (cases) >= 18, "expected.json has %zu cases", json_array_size (cases));
  size_t i;
  json_t *c;
  json_array_foreach (cases, i, c)
  {
    const char *kind = json_string_value (json_object_get (c, "kind"));
    const char *file = json_string_value (json_object_get (c, "file"));
    json_t *want = json_object_get (c, "expected");
    char path[1024];
    snprintf (path, sizeof path, "%s/%s", FIXTURES, file);
    char *text = read_file (path);
    DS_CHECK (text != NULL, "cannot read %s", path);
    if (!text)
      continue;
    DsError err = { 0 };
    if (strcmp (kind, "unet") == 0)
      {
        DsUnetConfig u;
        DS_CHECK_OK (ds_unet_config_parse (text, path, &u, &err), &err);
        if (err.code == DS_OK)
          check_unet (file, &u, want);
      }
    else if (strcmp (kind, "vae") == 0)
      {
        DsVaeConfig v;
        DS_CHECK_OK (ds_vae_config_parse (text, path, &v, &err), &err);
        if (err.code == DS_OK)
          check_vae (file, &v, want);
      }
    else if (strcmp (kind, "text") == 0)
      {
        DsTextEncoderConfig t;
        DS_CHECK_OK (ds_text_encoder_config_parse (text, path, &t, &err), &err);
        if (err.code == DS_OK)
          check_text (file, &t, want);
      }
    else
      {
        DsSchedulerConfig s;
        DS_CHECK_OK (ds_scheduler_config_parse (text, path, &s, &err), &err);
        if (err.code == DS_OK)
          check_scheduler (file, &s, want);
      }
    free (text);
  }
  json_decref (root);
}

/* ------------------------------------------------------------------------ */
/* 2. The two real-shaped folders against the published values              */

static void
test_sd21_base (void)
{
  DsModelDir *m = calloc (1, sizeof *m);
  DsError err = { 0 };
  DS_CHECK_OK (ds_model_dir_open (FIXTURES "/sd21-base", m, &err), &err);
  if (err.code != DS_OK)
    {
      free (m);
      return;
    }
  DS_CHECK (strcmp (m->root, FIXTURES "/sd21-base") == 0, "root %s", m->root);
  DS_CHECK (strcmp (m->unet_weights, FIXTURES "/sd21-base/unet/diffusion_pytorch_model.safetensors")
                == 0,
            "unet weights %s", m->unet_weights);
  DS_CHECK (strcmp (m->vae_weights, FIXTURES "/sd21-base/vae/diffusion_pytorch_model.safetensors")
                == 0,
            "vae weights %s", m->vae_weights);
  DS_CHECK (strcmp (m->text_encoder_weights, FIXTURES "/sd21-base/text_encoder/model.safetensors")
                == 0,
            "text weights %s", m->text_encoder_weights);
  DS_CHECK (strcmp (m->vocab_path, FIXTURES "/sd21-base/tokenizer/vocab.json") == 0, "vocab %s",
            m->vocab_path);
  DS_CHECK (strcmp (m->merges_path, FIXTURES "/sd21-base/tokenizer/merges.txt") == 0, "merges %s",
            m->merges_path);
  DS_CHECK (strcmp (m->pad_token, "!") == 0, "pad_token '%s'", m->pad_token);

  const DsUnetConfig *u = &m->unet;
  static const int ch[] = { 320, 640, 1280, 1280 }, heads[] = { 5, 10, 20, 20 };
  DS_CHECK (u->in_channels == 4 && u->out_channels == 4 && u->sample_size == 64, "unet io");
  DS_CHECK (u->n_levels == 4, "unet levels %d", u->n_levels);
  for (int i = 0; i < 4; i++)
    {
      DS_CHECK (u->block_out_channels[i] == ch[i], "channels[%d]", i);
      DS_CHECK (u->heads[i] == heads[i], "heads[%d] = %d", i, u->heads[i]);
      DS_CHECK (u->block_out_channels[i] / u->heads[i] == 64, "head dim 64 at %d", i);
      DS_CHECK (u->down_block_types[i] == (i < 3 ? DS_BLOCK_CROSS_ATTN_DOWN : DS_BLOCK_DOWN),
                "down[%d]", i);
      DS_CHECK (u->up_block_types[i] == (i == 0 ? DS_BLOCK_UP : DS_BLOCK_CROSS_ATTN_UP), "up[%d]",
                i);
    }
  DS_CHECK (u->layers_per_block == 2, "layers_per_block");
  DS_CHECK (u->cross_attention_dim == 1024, "cross_attention_dim");
  DS_CHECK (u->use_linear_projection, "use_linear_projection");
  DS_CHECK (!u->upcast_attention, "upcast_attention");
  DS_CHECK (u->norm_num_groups == 32 && u->norm_eps == 1e-5f, "norm");
  DS_CHECK (u->flip_sin_to_cos && u->freq_shift == 0.0f, "time embedding");
  DS_CHECK (u->downsample_padding == 1 && u->mid_block_scale_factor == 1.0f, "misc");
  DS_CHECK (u->transformer_layers_per_block == 1, "transformer layers");

  const DsVaeConfig *v = &m->vae;
  static const int vch[] = { 128, 256, 512, 512 };
  DS_CHECK (v->in_channels == 3 && v->latent_channels == 4 && v->n_levels == 4, "vae io");
  for (int i = 0; i < 4; i++)
    DS_CHECK (v->block_out_channels[i] == vch[i], "vae channels[%d]", i);
  DS_CHECK (v->layers_per_block == 2 && v->norm_num_groups == 32, "vae blocks");
  DS_CHECK (v->scaling_factor == 0.18215f, "scaling_factor %g (absent -> 0.18215)",
            v->scaling_factor);
  DS_CHECK (v->use_quant_conv && v->mid_block_add_attention, "vae flags");

  const DsTextEncoderConfig *t = &m->text;
  DS_CHECK (t->vocab_size == 49408 && t->hidden_size == 1024 && t->intermediate_size == 4096
                && t->num_attention_heads == 16 && t->num_hidden_layers == 23
                && t->max_position_embeddings == 77,
            "text sizes");
  DS_CHECK (t->hidden_act == DS_ACT_GELU, "text act is exact gelu");
  DS_CHECK (t->layer_norm_eps == 1e-5f, "text eps");

  const DsSchedulerConfig *s = &m->scheduler;
  DS_CHECK (s->num_train_timesteps == 1000 && s->beta_start == 0.00085f && s->beta_end == 0.012f
                && s->scaled_linear,
            "scheduler");
  free (m);
}

static void
test_sd15 (void)
{
  DsModelDir *m = calloc (1, sizeof *m);
  DsError err = { 0 };
  /* a trailing slash is dropped from root */
  DS_CHECK_OK (ds_model_dir_open (FIXTURES "/sd15/", m, &err), &err);
  if (err.code != DS_OK)
    {
      free (m);
      return;
    }
  DS_CHECK (strcmp (m->root, FIXTURES "/sd15") == 0, "root %s", m->root);
  /* fp32 preferred over fp16 when both exist; fp16 used when alone */
  DS_CHECK (strcmp (m->unet_weights, FIXTURES "/sd15/unet/diffusion_pytorch_model.safetensors")
                == 0,
            "unet weights %s", m->unet_weights);
  DS_CHECK (strcmp (m->vae_weights, FIXTURES "/sd15/vae/diffusion_pytorch_model.fp16.safetensors")
                == 0,
            "vae weights %s", m->vae_weights);
  DS_CHECK (strcmp (m->pad_token, "<|endoftext|>") == 0, "pad '%s'", m->pad_token);
  for (int i = 0; i < 4; i++)
    DS_CHECK (m->unet.heads[i] == 8, "sd15 heads[%d] = %d (attention_head_dim 8 int)", i,
              m->unet.heads[i]);
  DS_CHECK (m->unet.cross_attention_dim == 768, "sd15 cross dim");
  DS_CHECK (!m->unet.use_linear_projection, "sd15 conv proj");
  DS_CHECK (m->text.hidden_act == DS_ACT_QUICK_GELU, "sd15 quick_gelu");
  DS_CHECK (m->text.num_hidden_layers == 12 && m->text.hidden_size == 768
                && m->text.num_attention_heads == 12 && m->text.intermediate_size == 3072,
            "sd15 text sizes");
  DS_CHECK (m->vae.scaling_factor == 0.18215f && m->vae.n_levels == 4, "sd15 vae");
  free (m);
}

/* Defaults spelled out (also covered against diffusers via expected.json). */
static void
test_defaults (void)
{
  DsError err = { 0 };
  DsUnetConfig u;
  DS_CHECK_OK (ds_unet_config_parse ("{}", "u.json", &u, &err), &err);
  DS_CHECK (u.in_channels == 4 && u.out_channels == 4 && u.sample_size == 64 && u.n_levels == 4
                && u.block_out_channels[3] == 1280 && u.layers_per_block == 2 && u.heads[0] == 8
                && u.heads[3] == 8 && u.cross_attention_dim == 1280 && !u.use_linear_projection
                && !u.upcast_attention && u.norm_num_groups == 32 && u.norm_eps == 1e-5f
                && u.flip_sin_to_cos && u.freq_shift == 0 && u.downsample_padding == 1
                && u.mid_block_scale_factor == 1 && u.transformer_layers_per_block == 1
                && u.down_block_types[0] == DS_BLOCK_CROSS_ATTN_DOWN
                && u.down_block_types[3] == DS_BLOCK_DOWN && u.up_block_types[0] == DS_BLOCK_UP
                && u.up_block_types[3] == DS_BLOCK_CROSS_ATTN_UP,
            "unet defaults");
  DsVaeConfig v;
  DS_CHECK_OK (ds_vae_config_parse ("{}", "v.json", &v, &err), &err);
  DS_CHECK (v.n_levels == 1 && v.block_out_channels[0] == 64 && v.latent_channels == 4
                && v.in_channels == 3 && v.layers_per_block == 1 && v.norm_num_groups == 32
                && v.scaling_factor == 0.18215f && v.use_quant_conv && v.mid_block_add_attention,
            "vae defaults");
  DsTextEncoderConfig t;
  DS_CHECK_OK (ds_text_encoder_config_parse ("{}", "t.json", &t, &err), &err);
  DS_CHECK (t.vocab_size == 49408 && t.hidden_size == 512 && t.intermediate_size == 2048
                && t.num_attention_heads == 8 && t.num_hidden_layers == 12
                && t.max_position_embeddings == 77 && t.hidden_act == DS_ACT_QUICK_GELU
                && t.layer_norm_eps == 1e-5f,
            "text defaults");
  DsSchedulerConfig s;
  DS_CHECK_OK (ds_scheduler_config_parse ("{}", "s.json", &s, &err), &err);
  DS_CHECK (s.num_train_timesteps == 1000 && s.beta_start == 0.0001f && s.beta_end == 0.02f
                && !s.scaled_linear,
            "scheduler defaults");

  /* accepted spellings of supported values */
  DS_CHECK_OK (ds_unet_config_parse ("{\"transformer_layers_per_block\": [1, 1, 1, 1],"
                                     " \"layers_per_block\": [2, 2, 2, 2],"
                                     " \"only_cross_attention\": [false, false, false,"
                                     " false], \"sample_size\": [96, 96],"
                                     " \"num_attention_heads\": 4}",
                                     "u.json", &u, &err),
               &err);
  DS_CHECK (u.layers_per_block == 2 && u.sample_size == 96 && u.heads[2] == 4, "list forms");

  /* Diffscope's own key: the default heat-map layers (4 when absent, above) */
  DS_CHECK (u.heat_divisor == 4, "heat divisor default %d", u.heat_divisor);
  DS_CHECK_OK (ds_unet_config_parse ("{\"_diffscope_heat_divisor\": 2}", "u.json", &u, &err), &err);
  DS_CHECK (u.heat_divisor == 2, "heat divisor %d", u.heat_divisor);
  for (int k = 0; k < 3; k++)
    {
      static const char *const bad[] = { "{\"_diffscope_heat_divisor\": 0}",
                                         "{\"_diffscope_heat_divisor\": 65}",
                                         "{\"_diffscope_heat_divisor\": \"2\"}" };
      DsError e2 = { 0 };
      DS_CHECK (ds_unet_config_parse (bad[k], "u.json", &u, &e2) != DS_OK
                    && strstr (e2.message, "_diffscope_heat_divisor"),
                "bad heat divisor %d: %s", k, e2.message);
    }
  DS_CHECK_OK (
      ds_vae_config_parse ("{\"shift_factor\": null, \"latents_mean\": null}", "v.json", &v, &err),
      &err);
}

/* ------------------------------------------------------------------------ */
/* 3. Errors                                                                 */

typedef DsStatus (*Parser) (const char *, const char *, void *, DsError *);

static DsStatus
p_unet (const char *t, const char *p, void *o, DsError *e)
{
  return ds_unet_config_parse (t, p, o, e);
}

static DsStatus
p_vae (const char *t, const char *p, void *o, DsError *e)
{
  return ds_vae_config_parse (t, p, o, e);
}

static DsStatus
p_text (const char *t, const char *p, void *o, DsError *e)
{
  return ds_text_encoder_config_parse (t, p, o, e);
}

static DsStatus
p_sched (const char *t, const char *p, void *o, DsError *e)
{
  return ds_scheduler_config_parse (t, p, o, e);
}

static void
expect_parse_fail (Parser parse, const char *json, DsStatus code, const char *needle1,
                   const char *needle2)
{
  union
  {
    DsUnetConfig u;
    DsVaeConfig v;
    DsTextEncoderConfig t;
    DsSchedulerConfig s;
  } out;
  DsError err = { 0 };
  const char *path = "some/dir/config.json";
  DsStatus s = parse (json, path, &out, &err);
  DS_CHECK (s == code, "%s: status %s, expected %s (%s)", json, ds_status_name (s),
            ds_status_name (code), err.message);
  DS_CHECK_CONTAINS (err.message, path);
  if (needle1)
    DS_CHECK_CONTAINS (err.message, needle1);
  if (needle2)
    DS_CHECK_CONTAINS (err.message, needle2);
}

static void
test_parse_errors (void)
{
  /* not JSON / not an object */
  expect_parse_fail (p_unet, "{\"in_channels\": 4,", DS_ERR_FORMAT, "not valid JSON", NULL);
  expect_parse_fail (p_vae, "[1, 2]", DS_ERR_FORMAT, "expected a JSON object", NULL);

  /* wrong JSON types */
  expect_parse_fail (p_unet, "{\"layers_per_block\": \"two\"}", DS_ERR_FORMAT,
                     "'layers_per_block' is a string", "expected an integer");
  expect_parse_fail (p_unet, "{\"use_linear_projection\": 1}", DS_ERR_FORMAT,
                     "'use_linear_projection'", "true or false");
  expect_parse_fail (p_unet, "{\"norm_eps\": \"1e-5\"}", DS_ERR_FORMAT, "'norm_eps'", "a number");
  expect_parse_fail (p_unet, "{\"block_out_channels\": 320}", DS_ERR_FORMAT, "'block_out_channels'",
                     "an array");
  expect_parse_fail (p_unet, "{\"block_out_channels\": [320, \"640\", 1280, 1280]}", DS_ERR_FORMAT,
                     "'block_out_channels[1]'", "an integer");
  expect_parse_fail (p_unet, "{\"in_channels\": 4.0}", DS_ERR_FORMAT, "'in_channels'",
                     "a real number");
  expect_parse_fail (p_unet, "{\"attention_head_dim\": \"8\"}", DS_ERR_FORMAT,
                     "'attention_head_dim'", "an integer or a list");
  expect_parse_fail (p_unet, "{\"down_block_types\": [\"DownBlock2D\", 2, 3, 4]}", DS_ERR_FORMAT,
                     "'down_block_types[1]'", "a string");
  expect_parse_fail (p_vae, "{\"scaling_factor\": \"0.18215\"}", DS_ERR_FORMAT, "'scaling_factor'",
                     "a number");
  expect_parse_fail (p_vae, "{\"latent_channels\": 4.5}", DS_ERR_FORMAT, "'latent_channels'",
                     "an integer");
  expect_parse_fail (p_text, "{\"hidden_size\": \"1024\"}", DS_ERR_FORMAT, "'hidden_size'",
                     "an integer");
  expect_parse_fail (p_text, "{\"hidden_act\": 1}", DS_ERR_FORMAT, "'hidden_act'", "a string");
  expect_parse_fail (p_sched, "{\"num_train_timesteps\": \"1000\"}", DS_ERR_FORMAT,
                     "'num_train_timesteps'", "an integer");

  /* out of range */
  expect_parse_fail (p_unet, "{\"in_channels\": -1}", DS_ERR_INVALID, "'in_channels'", "-1");
  expect_parse_fail (p_unet, "{\"block_out_channels\": []}", DS_ERR_INVALID, "'block_out_channels'",
                     "empty");
  expect_parse_fail (p_unet, "{\"norm_eps\": 0}", DS_ERR_INVALID, "'norm_eps'", NULL);
  expect_parse_fail (p_sched, "{\"beta_end\": 2}", DS_ERR_INVALID, "'beta_end'", NULL);
  expect_parse_fail (p_text, "{\"hidden_size\": 1000, \"num_attention_heads\": 16}", DS_ERR_INVALID,
                     "'hidden_size'", "num_attention_heads");

  /* levels and per-level lists */
  expect_parse_fail (p_unet, "{\"attention_head_dim\": [5, 10, 20]}", DS_ERR_INVALID,
                     "'attention_head_dim' has 3 entries", "4 levels");
  expect_parse_fail (p_unet, "{\"attention_head_dim\": 8, \"num_attention_heads\": [1, 2]}",
                     DS_ERR_INVALID, "'num_attention_heads' has 2 entries", NULL);
  expect_parse_fail (p_unet, "{\"block_out_channels\": [320, 640]}", DS_ERR_INVALID,
                     "'down_block_types'", "block_out_channels has 2");
  expect_parse_fail (p_unet, "{\"block_out_channels\": [32, 32, 32, 32, 32, 32, 32]}",
                     DS_ERR_UNSUPPORTED, "'block_out_channels' has 7 levels", "at most 6");
  expect_parse_fail (p_vae, "{\"block_out_channels\": [128, 256]}", DS_ERR_INVALID,
                     "'down_block_types'", "2 levels");

  /* unsupported choices */
  expect_parse_fail (p_unet,
                     "{\"down_block_types\": [\"AttnDownBlock2D\", \"DownBlock2D\","
                     " \"DownBlock2D\", \"DownBlock2D\"]}",
                     DS_ERR_UNSUPPORTED, "'down_block_types[0]'", "AttnDownBlock2D");
  expect_parse_fail (p_unet,
                     "{\"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\","
                     " \"SimpleCrossAttnUpBlock2D\", \"UpBlock2D\"]}",
                     DS_ERR_UNSUPPORTED, "'up_block_types[2]'", "SimpleCrossAttnUpBlock2D");
  expect_parse_fail (p_unet, "{\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\"}",
                     DS_ERR_UNSUPPORTED, "'mid_block_type'", "UNetMidBlock2DCrossAttn");
  expect_parse_fail (p_unet, "{\"mid_block_type\": null}", DS_ERR_UNSUPPORTED, "'mid_block_type'",
                     NULL);
  expect_parse_fail (p_unet, "{\"transformer_layers_per_block\": 2}", DS_ERR_UNSUPPORTED,
                     "'transformer_layers_per_block'", NULL);
  expect_parse_fail (p_unet, "{\"transformer_layers_per_block\": [1, 2, 10, 1]}",
                     DS_ERR_UNSUPPORTED, "'transformer_layers_per_block'", NULL);
  expect_parse_fail (p_unet, "{\"layers_per_block\": [1, 2, 2, 2]}", DS_ERR_UNSUPPORTED,
                     "'layers_per_block'", "same value");
  expect_parse_fail (p_unet, "{\"class_embed_type\": \"timestep\"}", DS_ERR_UNSUPPORTED,
                     "'class_embed_type'", "\"timestep\"");
  expect_parse_fail (p_unet, "{\"addition_embed_type\": \"text_time\"}", DS_ERR_UNSUPPORTED,
                     "'addition_embed_type'", NULL);
  expect_parse_fail (p_unet, "{\"time_embedding_type\": \"fourier\"}", DS_ERR_UNSUPPORTED,
                     "'time_embedding_type'", "positional");
  expect_parse_fail (p_unet, "{\"resnet_time_scale_shift\": \"scale_shift\"}", DS_ERR_UNSUPPORTED,
                     "'resnet_time_scale_shift'", NULL);
  expect_parse_fail (p_unet, "{\"act_fn\": \"gelu\"}", DS_ERR_UNSUPPORTED, "'act_fn'", "silu");
  expect_parse_fail (p_unet, "{\"only_cross_attention\": true}", DS_ERR_UNSUPPORTED,
                     "'only_cross_attention'", NULL);
  expect_parse_fail (p_unet, "{\"num_class_embeds\": 10}", DS_ERR_UNSUPPORTED, "'num_class_embeds'",
                     NULL);
  expect_parse_fail (p_unet, "{\"conv_in_kernel\": 5}", DS_ERR_UNSUPPORTED, "'conv_in_kernel'",
                     NULL);
  expect_parse_fail (p_unet, "{\"cross_attention_dim\": [768, 768, 768, 768]}", DS_ERR_UNSUPPORTED,
                     "'cross_attention_dim'", NULL);
  expect_parse_fail (p_unet, "{\"norm_num_groups\": null}", DS_ERR_UNSUPPORTED, "'norm_num_groups'",
                     NULL);
  expect_parse_fail (p_unet, "{\"sample_size\": [64, 96]}", DS_ERR_UNSUPPORTED, "'sample_size'",
                     NULL);
  expect_parse_fail (p_unet, "{\"attention_head_dim\": [3, 10, 20, 20]}", DS_ERR_UNSUPPORTED,
                     "'attention_head_dim'", "block_out_channels[0]");
  expect_parse_fail (p_unet, "{\"block_out_channels\": [320, 640, 1280, 1000]}", DS_ERR_UNSUPPORTED,
                     "'block_out_channels[3]'", "norm_num_groups");
  expect_parse_fail (p_vae,
                     "{\"block_out_channels\": [128, 256], \"down_block_types\":"
                     " [\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"]}",
                     DS_ERR_UNSUPPORTED, "'down_block_types[1]'", "AttnDownEncoderBlock2D");
  expect_parse_fail (p_vae, "{\"shift_factor\": 0.1159}", DS_ERR_UNSUPPORTED, "'shift_factor'",
                     NULL);
  expect_parse_fail (p_vae, "{\"block_out_channels\": [100]}", DS_ERR_UNSUPPORTED,
                     "'block_out_channels[0]'", "norm_num_groups");
  expect_parse_fail (p_text, "{\"hidden_act\": \"gelu_new\"}", DS_ERR_UNSUPPORTED, "'hidden_act'",
                     "gelu_new");
  expect_parse_fail (p_text, "{\"model_type\": \"clip\"}", DS_ERR_UNSUPPORTED, "'model_type'",
                     "clip_text_model");
  expect_parse_fail (p_sched, "{\"beta_schedule\": \"squaredcos_cap_v2\"}", DS_ERR_UNSUPPORTED,
                     "'beta_schedule'", "squaredcos_cap_v2");
  expect_parse_fail (p_sched, "{\"trained_betas\": [0.1, 0.2]}", DS_ERR_UNSUPPORTED,
                     "'trained_betas'", NULL);
}

/* Scratch copies of the sd21-base folder, then broken in one way each. */

static char scratch[256];

static const char *const sd21_files[] = {
  "model_index.json",
  "unet/config.json",
  "unet/diffusion_pytorch_model.safetensors",
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "tokenizer/vocab.json",
  "tokenizer/merges.txt",
  "tokenizer/tokenizer_config.json",
  "scheduler/scheduler_config.json",
};

static void
put_file (const char *root, const char *rel, const char *text, size_t n)
{
  char path[1024];
  snprintf (path, sizeof path, "%s/%s", root, rel);
  char *slash = strrchr (path, '/');
  *slash = '\0';
  mkdir (path, 0700);
  *slash = '/';
  FILE *f = fopen (path, "wb");
  if (!f)
    {
      fprintf (stderr, "cannot write %s: %s\n", path, strerror (errno));
      exit (1);
    }
  fwrite (text, 1, n, f);
  fclose (f);
}

static void
put_text (const char *root, const char *rel, const char *text)
{
  put_file (root, rel, text, strlen (text));
}

static void
rm_rel (const char *root, const char *rel)
{
  char path[1024];
  snprintf (path, sizeof path, "%s/%s", root, rel);
  unlink (path);
}

static int
rm_entry (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb, (void)flag, (void)ftw;
  return remove (path);
}

static void
rm_tree (const char *root)
{
  nftw (root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh copy of sd21-base at <scratch>/<name>; returns its path. */
static const char *
fresh_copy (const char *name)
{
  static char root[512];
  snprintf (root, sizeof root, "%s/%s", scratch, name);
  rm_tree (root);
  mkdir (root, 0700);
  for (size_t i = 0; i < sizeof sd21_files / sizeof sd21_files[0]; i++)
    {
      char src[1024];
      snprintf (src, sizeof src, "%s/sd21-base/%s", FIXTURES, sd21_files[i]);
      FILE *f = fopen (src, "rb");
      if (!f)
        {
          fprintf (stderr, "missing fixture %s\n", src);
          exit (1);
        }
      char buf[8192];
      size_t n = fread (buf, 1, sizeof buf, f);
      fclose (f);
      put_file (root, sd21_files[i], buf, n);
    }
  return root;
}

static void
expect_open_fail (const char *root, DsStatus code, const char *needle1, const char *needle2)
{
  DsModelDir *m = calloc (1, sizeof *m);
  DsError err = { 0 };
  DsStatus s = ds_model_dir_open (root, m, &err);
  DS_CHECK (s == code, "%s: status %s, expected %s (%s)", root, ds_status_name (s),
            ds_status_name (code), err.message);
  if (needle1)
    DS_CHECK_CONTAINS (err.message, needle1);
  if (needle2)
    DS_CHECK_CONTAINS (err.message, needle2);
  free (m);
}

static void
expect_pad (const char *root, const char *want)
{
  DsModelDir *m = calloc (1, sizeof *m);
  DsError err = { 0 };
  DS_CHECK_OK (ds_model_dir_open (root, m, &err), &err);
  DS_CHECK (strcmp (m->pad_token, want) == 0, "pad_token '%s', expected '%s'", m->pad_token, want);
  free (m);
}

static void
test_folder_errors (void)
{
  const char *r;
  char buf[1024];

  /* the untouched copy opens */
  r = fresh_copy ("ok");
  expect_pad (r, "!");

  /* not a model folder */
  snprintf (buf, sizeof buf, "%s/nothing-here", scratch);
  expect_open_fail (buf, DS_ERR_NOT_FOUND, "nothing-here/model_index.json",
                    "is this a diffusers Stable Diffusion folder?");
  r = fresh_copy ("no-index");
  rm_rel (r, "model_index.json");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "no-index/model_index.json: not found", "diffusers");
  r = fresh_copy ("bad-index");
  put_text (r, "model_index.json", "{\"_class_name\": ");
  expect_open_fail (r, DS_ERR_FORMAT, "bad-index/model_index.json", "not valid JSON");

  /* missing configs */
  r = fresh_copy ("no-unet-config");
  rm_rel (r, "unet/config.json");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "no-unet-config/unet/config.json", "not found");
  r = fresh_copy ("no-sched");
  rm_rel (r, "scheduler/scheduler_config.json");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "scheduler/scheduler_config.json", NULL);
  r = fresh_copy ("no-text-config");
  rm_rel (r, "text_encoder/config.json");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "text_encoder/config.json", NULL);

  /* a config with a wrong type: the message names the file and the key */
  r = fresh_copy ("bad-type");
  put_text (r, "vae/config.json", "{\"layers_per_block\": \"two\"}");
  expect_open_fail (r, DS_ERR_FORMAT, "bad-type/vae/config.json",
                    "'layers_per_block' is a string, expected an integer");
  r = fresh_copy ("bad-block");
  put_text (r, "unet/config.json",
            "{\"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\","
            " \"AttnDownBlock2D\", \"DownBlock2D\"]}");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "bad-block/unet/config.json",
                    "'down_block_types[2]' is 'AttnDownBlock2D'");
  r = fresh_copy ("bad-heads");
  put_text (r, "unet/config.json", "{\"attention_head_dim\": [5, 10, 20, 20, 20]}");
  expect_open_fail (r, DS_ERR_INVALID, "bad-heads/unet/config.json",
                    "'attention_head_dim' has 5 entries");

  /* weights */
  r = fresh_copy ("pickle-unet");
  rm_rel (r, "unet/diffusion_pytorch_model.safetensors");
  put_text (r, "unet/diffusion_pytorch_model.bin", "not really a pickle");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "diffusion_pytorch_model.bin", "pickle");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "not loaded for safety", "safetensors");
  r = fresh_copy ("pickle-text");
  rm_rel (r, "text_encoder/model.safetensors");
  put_text (r, "text_encoder/pytorch_model.bin", "x");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "pytorch_model.bin", "pickle-text/text_encoder");
  r = fresh_copy ("ckpt-vae");
  rm_rel (r, "vae/diffusion_pytorch_model.safetensors");
  put_text (r, "vae/model.ckpt", "x");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "model.ckpt", "pickle");
  r = fresh_copy ("no-vae-weights");
  rm_rel (r, "vae/diffusion_pytorch_model.safetensors");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "no-vae-weights/vae",
                    "diffusion_pytorch_model.safetensors");
  r = fresh_copy ("sharded");
  rm_rel (r, "unet/diffusion_pytorch_model.safetensors");
  put_text (r, "unet/diffusion_pytorch_model.safetensors.index.json", "{}");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "sharded", "index.json");
  r = fresh_copy ("fp16-only");
  rm_rel (r, "text_encoder/model.safetensors");
  put_text (r, "text_encoder/model.fp16.safetensors", "x");
  {
    DsModelDir *m = calloc (1, sizeof *m);
    DsError err = { 0 };
    DS_CHECK_OK (ds_model_dir_open (r, m, &err), &err);
    DS_CHECK (ends_with (m->text_encoder_weights, "fp16-only/text_encoder/model.fp16.safetensors"),
              "fp16 text weights: %s", m->text_encoder_weights);
    free (m);
  }

  /* tokenizer files */
  r = fresh_copy ("no-vocab");
  rm_rel (r, "tokenizer/vocab.json");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "no-vocab/tokenizer/vocab.json", NULL);
  r = fresh_copy ("no-merges");
  rm_rel (r, "tokenizer/merges.txt");
  expect_open_fail (r, DS_ERR_NOT_FOUND, "no-merges/tokenizer/merges.txt", NULL);

  /* pad token sources: the original Hub 2.1-base layout has "!" only in
   * special_tokens_map.json, which overrides tokenizer_config.json */
  r = fresh_copy ("pad-map");
  put_text (r, "tokenizer/tokenizer_config.json", "{\"pad_token\": \"<|endoftext|>\"}");
  put_text (r, "tokenizer/special_tokens_map.json", "{\"pad_token\": \"!\"}");
  expect_pad (r, "!");
  put_text (r, "tokenizer/special_tokens_map.json",
            "{\"pad_token\": {\"content\": \"<|pad|>\", \"lstrip\": false}}");
  expect_pad (r, "<|pad|>");
  put_text (r, "tokenizer/special_tokens_map.json", "{\"pad_token\": null}");
  expect_pad (r, "<|endoftext|>");
  rm_rel (r, "tokenizer/special_tokens_map.json");
  rm_rel (r, "tokenizer/tokenizer_config.json");
  expect_pad (r, "<|endoftext|>");
  put_text (r, "tokenizer/tokenizer_config.json", "{\"model_max_length\": 77}");
  expect_pad (r, "<|endoftext|>");
  put_text (r, "tokenizer/tokenizer_config.json", "{\"pad_token\": 0}");
  expect_open_fail (r, DS_ERR_FORMAT, "tokenizer_config.json", "'pad_token'");
  put_text (r, "tokenizer/tokenizer_config.json", "{\"pad_token\": {\"id\": 0}}");
  expect_open_fail (r, DS_ERR_FORMAT, "tokenizer_config.json", "content");
  put_text (r, "tokenizer/tokenizer_config.json",
            "{\"pad_token\": \"0123456789012345678901234567890123456789012345678901234567"
            "890123456789\"}");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "'pad_token'", "63");
  put_text (r, "tokenizer/tokenizer_config.json", "not json");
  expect_open_fail (r, DS_ERR_FORMAT, "tokenizer_config.json", "not valid JSON");

  /* issue #14: parts that exist but are not files say what they are, not "not
   * found"; unsupported pipeline families are refused up front */
  r = fresh_copy ("dir-config");
  rm_rel (r, "unet/config.json");
  snprintf (buf, sizeof buf, "%s/unet/config.json", r);
  mkdir (buf, 0700);
  expect_open_fail (r, DS_ERR_IO, "dir-config/unet/config.json", "is a directory");
  r = fresh_copy ("fifo-vocab");
  rm_rel (r, "tokenizer/vocab.json");
  snprintf (buf, sizeof buf, "%s/tokenizer/vocab.json", r);
  DS_CHECK (mkfifo (buf, 0600) == 0, "mkfifo %s: %s", buf, strerror (errno));
  expect_open_fail (r, DS_ERR_IO, "tokenizer/vocab.json: is not a regular file", "a FIFO");
  r = fresh_copy ("zero-config");
  rm_rel (r, "vae/config.json");
  snprintf (buf, sizeof buf, "%s/vae/config.json", r);
  DS_CHECK (symlink ("/dev/zero", buf) == 0, "symlink %s: %s", buf, strerror (errno));
  expect_open_fail (r, DS_ERR_IO, "vae/config.json: is not a regular file",
                    "a character device");
  r = fresh_copy ("dir-weights");
  rm_rel (r, "unet/diffusion_pytorch_model.safetensors");
  snprintf (buf, sizeof buf, "%s/unet/diffusion_pytorch_model.safetensors", r);
  mkdir (buf, 0700);
  expect_open_fail (r, DS_ERR_IO, "unet/diffusion_pytorch_model.safetensors", "is a directory");
  r = fresh_copy ("empty-index");
  put_text (r, "model_index.json", "{}");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "empty-index/model_index.json: no \"_class_name\"",
                    "StableDiffusionPipeline");
  r = fresh_copy ("sdxl");
  put_text (r, "model_index.json", "{\"_class_name\": \"StableDiffusionXLPipeline\"}");
  expect_open_fail (r, DS_ERR_UNSUPPORTED, "\"StableDiffusionXLPipeline\", which this engine "
                    "does not run", "supported: StableDiffusionPipeline");
  r = fresh_copy ("num-index");
  put_text (r, "model_index.json", "{\"_class_name\": 2}");
  expect_open_fail (r, DS_ERR_FORMAT, "'_class_name' is an integer", NULL);

  /* a root too long for the fixed-size buffers */
  char *longroot = malloc (DS_PATH_MAX + 16);
  memset (longroot, 'a', DS_PATH_MAX + 15);
  longroot[0] = '/';
  longroot[DS_PATH_MAX + 15] = '\0';
  expect_open_fail (longroot, DS_ERR_INVALID, "longer than", NULL);
  free (longroot);
}

int
main (void)
{
  const char *tmp = getenv ("TMPDIR");
  snprintf (scratch, sizeof scratch, "%s/ds-test-md-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp (scratch))
    {
      perror ("mkdtemp");
      return 1;
    }
  test_expected_from_python ();
  test_sd21_base ();
  test_sd15 ();
  test_defaults ();
  test_parse_errors ();
  test_folder_errors ();
  rm_tree (scratch);
  return ds_test_finish ();
}
