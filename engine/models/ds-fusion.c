/* ds-fusion.c: the fusion checkpoint (config.json + fusion.safetensors) and
 * its forward; see ds-fusion.h and docs/models.md §7.9. */
#include "ds-fusion.h"
#include "ds-util.h"
#include "ds-weights.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-json.h"
#include "ds-safetensors.h"

/* A config.json of a few hundred bytes; anything over this is not one. */
#define MAX_CONFIG_BYTES (1 << 20)
#define LN_EPS 1e-5f /* LayerNorm eps of norm_q and norm_kv (PyTorch's default) */

struct DsFusion {
  DsFusionConfig cfg;
  char *config_path; /* dir/config.json, for messages */
  DsBackend *be;
  DsWeights w;
  DsLinearW proj;          /* diffusion_proj: [Cv, C] + [Cv] */
  DsNormW norm_q, norm_kv; /* cross_attn.norm_*: [Cv] */
  DsLinearW q, k, v, out;  /* cross_attn.*_proj: [Cv, Cv] + [Cv] */
};

const char *
ds_fusion_mode_name (DsFusionMode mode)
{
  return mode == DS_FUSION_CONCAT ? "concat" : "cross_attention";
}

/* ---- config.json ---- */

static const char *const config_keys[] = {
  "format", "version", "mode", "probe", "t", "s", "grid", "diffusion_channels",
  "vision_hidden", "heads", "trained", "description",
};

static DsStatus
check_keys (json_t *root, const char *path, DsError *err)
{
  const char *key;
  json_t *v;
  json_object_foreach (root, key, v)
    {
      size_t i = 0;
      while (i < sizeof config_keys / sizeof config_keys[0] && strcmp (key, config_keys[i]) != 0)
        i++;
      if (i == sizeof config_keys / sizeof config_keys[0])
        return ds_error_set (err, DS_ERR_FORMAT, "%s: unknown key \"%s\" (a %s version %d "
                             "config has format, version, mode, probe, t, s, grid, "
                             "diffusion_channels, vision_hidden, heads, trained, description)",
                             path, key, DS_FUSION_FORMAT, DS_FUSION_VERSION);
    }
  return DS_OK;
}

/* An integer key in [lo, hi] into *out. */
static DsStatus
get_int (json_t *root, const char *path, const char *key, long long lo, long long hi,
         const char *what, long long *out, DsError *err)
{
  json_t *v = json_object_get (root, key);
  if (!v)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"%s\" is missing (%s)", path, key, what);
  if (!json_is_integer (v) || json_integer_value (v) < lo || json_integer_value (v) > hi)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"%s\" is %s%s, expected an integer in "
                         "%lld..%lld (%s)", path, key,
                         json_is_integer (v) ? "" : ds_json_type_name (v),
                         json_is_integer (v) ? "out of range" : "", lo, hi, what);
  *out = json_integer_value (v);
  return DS_OK;
}

/* A required string key, copied into buf (size n). */
static DsStatus
get_string (json_t *root, const char *path, const char *key, const char *what, char *buf,
            size_t n, DsError *err)
{
  json_t *v = json_object_get (root, key);
  if (!json_is_string (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"%s\" %s%s, expected a string (%s)", path,
                         key, v ? "is " : "is missing", v ? ds_json_type_name (v) : "", what);
  if (json_string_length (v) == 0 || json_string_length (v) >= n)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"%s\" must be 1..%zu characters (%s)", path,
                         key, n - 1, what);
  snprintf (buf, n, "%s", json_string_value (v));
  return DS_OK;
}

static DsStatus
parse_header (json_t *root, const char *path, DsFusionConfig *out, DsError *err)
{
  json_t *v = json_object_get (root, "format");
  if (!json_is_string (v) || strcmp (json_string_value (v), DS_FUSION_FORMAT) != 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"format\" %s%s%s, expected \"%s\" (a "
                         "Diffscope fusion checkpoint, docs/models.md §7.9)", path,
                         json_is_string (v) ? "is \"" : "",
                         json_is_string (v) ? json_string_value (v)
                         : v                ? "is not a string"
                                            : "is missing",
                         json_is_string (v) ? "\"" : "", DS_FUSION_FORMAT);
  v = json_object_get (root, "version");
  if (!json_is_integer (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"version\" %s, expected %d", path,
                         v ? "is not an integer" : "is missing", DS_FUSION_VERSION);
  if (json_integer_value (v) != DS_FUSION_VERSION)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: \"version\" %lld is not supported, "
                         "expected %d", path, (long long) json_integer_value (v),
                         DS_FUSION_VERSION);
  v = json_object_get (root, "mode");
  if (json_is_string (v) && strcmp (json_string_value (v), "concat") == 0)
    out->mode = DS_FUSION_CONCAT;
  else if (json_is_string (v) && strcmp (json_string_value (v), "cross_attention") == 0)
    out->mode = DS_FUSION_CROSS_ATTENTION;
  else
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"mode\" %s%s%s, expected \"concat\" or "
                         "\"cross_attention\"", path, json_is_string (v) ? "\"" : "",
                         json_is_string (v) ? json_string_value (v)
                         : v                ? "is not a string"
                                            : "is missing",
                         json_is_string (v) ? "\"" : "");
  return DS_OK;
}

static DsStatus
parse_numbers (json_t *root, const char *path, DsFusionConfig *out, DsError *err)
{
  long long t, g, c, cv, h = 0;
  DsStatus st;
  if ((st = get_string (root, path, "probe", "the UNet probe, e.g. \"U-L1-R1-B0-Cross-Q\"",
                        out->probe, sizeof out->probe, err))
      || (st = get_int (root, path, "t", 0, 100000, "the UNet timestep", &t, err))
      || (st = get_int (root, path, "grid", 1, 256, "the diffusion tokens' grid side", &g, err))
      || (st = get_int (root, path, "diffusion_channels", 1, 1 << 20, "the probe's channels",
                        &c, err))
      || (st = get_int (root, path, "vision_hidden", 1, 1 << 20, "the CLIP tower's width", &cv,
                        err)))
    return st;
  json_t *v = json_object_get (root, "s");
  if (!json_is_number (v) || !isfinite (json_number_value (v))
      || fabs (json_number_value (v)) > 1e6)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"s\" %s, expected a number (the guidance "
                         "scale, e.g. 7.5)", path, v ? "is not a number of at most 1e6"
                                                     : "is missing");
  if (out->mode == DS_FUSION_CROSS_ATTENTION)
    {
      if ((st = get_int (root, path, "heads", 1, cv, "the cross-attention heads", &h, err)))
        return st;
      if (cv % h != 0)
        return ds_error_set (err, DS_ERR_FORMAT, "%s: \"heads\" %lld does not divide "
                             "\"vision_hidden\" %lld", path, h, cv);
    }
  else if (json_object_get (root, "heads"))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"heads\" is given, but mode \"concat\" has "
                         "no attention (it is for \"cross_attention\")", path);
  out->t = (int) t;
  out->s = (float) json_number_value (v);
  out->grid = (int) g;
  out->channels = c;
  out->vision_hidden = cv;
  out->heads = (int) h;
  return DS_OK;
}

static DsStatus
parse_flags (json_t *root, const char *path, DsFusionConfig *out, DsError *err)
{
  json_t *v = json_object_get (root, "trained");
  if (!json_is_boolean (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"trained\" %s, expected true or false "
                         "(whether the weights were trained; false marks random or "
                         "unfinished ones)", path, v ? "is not a boolean" : "is missing");
  out->trained = json_is_true (v);
  v = json_object_get (root, "description");
  if (v && !json_is_string (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"description\" is %s, expected a string",
                         path, ds_json_type_name (v));
  snprintf (out->description, sizeof out->description, "%s", v ? json_string_value (v) : "");
  return DS_OK;
}

DsStatus
ds_fusion_config_parse (const char *json_text, const char *path, DsFusionConfig *out,
                        DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loads (json_text, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
  DsStatus st = DS_OK;
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON object", path);
  if (st == DS_OK)
    st = check_keys (root, path, err);
  if (st == DS_OK)
    st = parse_header (root, path, out, err);
  if (st == DS_OK)
    st = parse_numbers (root, path, out, err);
  if (st == DS_OK)
    st = parse_flags (root, path, out, err);
  json_decref (root);
  return st;
}

/* ---- fusion.safetensors ---- */

typedef struct {
  char name[48];
  int ndim;
  int64_t shape[2];
} ExpectedTensor;

/* The mode's tensors (docs/models.md §7.9); returns how many (at most 14). */
static int
expected_tensors (const DsFusionConfig *c, ExpectedTensor *e)
{
  const int64_t cv = c->vision_hidden;
  int n = 0;
  e[n++] = (ExpectedTensor){ "diffusion_proj.weight", 2, { cv, c->channels } };
  e[n++] = (ExpectedTensor){ "diffusion_proj.bias", 1, { cv } };
  if (c->mode != DS_FUSION_CROSS_ATTENTION)
    return n;
  static const char *const norms[] = { "norm_q", "norm_kv" };
  static const char *const projs[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
  for (int i = 0; i < 2; i++)
    for (int b = 0; b < 2; b++)
      {
        e[n] = (ExpectedTensor){ "", 1, { cv } };
        snprintf (e[n++].name, sizeof e->name, "cross_attn.%s.%s", norms[i],
                  b ? "bias" : "weight");
      }
  for (int i = 0; i < 4; i++)
    {
      e[n] = (ExpectedTensor){ "", 2, { cv, cv } };
      snprintf (e[n++].name, sizeof e->name, "cross_attn.%s.weight", projs[i]);
      e[n] = (ExpectedTensor){ "", 1, { cv } };
      snprintf (e[n++].name, sizeof e->name, "cross_attn.%s.bias", projs[i]);
    }
  return n;
}

/* Every expected tensor present with a float dtype and its shape; none else. */
static DsStatus
check_tensors (const DsSafetensors *st, const DsFusionConfig *c, DsError *err)
{
  ExpectedTensor e[16];
  const int n = expected_tensors (c, e);
  const char *path = ds_safetensors_path (st);
  for (int i = 0; i < n; i++)
    {
      const DsSafetensorsEntry *t = ds_safetensors_find (st, e[i].name);
      char got[64], want[64];
      if (!t)
        return ds_error_set (err, DS_ERR_NOT_FOUND, "%s: tensor '%s' is missing (mode \"%s\" "
                             "needs it)", path, e[i].name, ds_fusion_mode_name (c->mode));
      if (!ds_dtype_is_float (t->dtype))
        return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s' is %s, expected f32, f16 or "
                             "bf16", path, e[i].name, ds_dtype_name (t->dtype));
      if (t->ndim != e[i].ndim
          || memcmp (t->shape, e[i].shape, (size_t) e[i].ndim * sizeof (int64_t)) != 0)
        return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s "
                             "(from config.json's diffusion_channels and vision_hidden)", path,
                             e[i].name, ds_shape_str (t->ndim, t->shape, got, sizeof got),
                             ds_shape_str (e[i].ndim, e[i].shape, want, sizeof want));
    }
  for (int j = 0; j < ds_safetensors_count (st); j++)
    {
      const char *name = ds_safetensors_entry (st, j)->name;
      int i = 0;
      while (i < n && strcmp (name, e[i].name) != 0)
        i++;
      if (i == n)
        return ds_error_set (err, DS_ERR_FORMAT, "%s: unexpected tensor '%s' (mode \"%s\" has "
                             "%d tensors: docs/models.md §7.9)", path, name,
                             ds_fusion_mode_name (c->mode), n);
    }
  return DS_OK;
}

static DsStatus
load_weights (DsFusion *f, const DsSafetensors *st, DsError *err)
{
  const int64_t cv = f->cfg.vision_hidden;
  ds_weights_init (&f->w, f->be, st, "");
  DsStatus s = ds_weights_linear (&f->w, &f->proj, cv, f->cfg.channels, true, err,
                                  "diffusion_proj");
  if (s == DS_OK && f->cfg.mode == DS_FUSION_CROSS_ATTENTION)
    s = ds_weights_norm (&f->w, &f->norm_q, cv, err, "cross_attn.norm_q");
  if (s == DS_OK && f->cfg.mode == DS_FUSION_CROSS_ATTENTION)
    s = ds_weights_norm (&f->w, &f->norm_kv, cv, err, "cross_attn.norm_kv");
  DsLinearW *lin[] = { &f->q, &f->k, &f->v, &f->out };
  static const char *const names[] = { "cross_attn.q_proj", "cross_attn.k_proj",
                                       "cross_attn.v_proj", "cross_attn.out_proj" };
  for (int i = 0; i < 4 && s == DS_OK && f->cfg.mode == DS_FUSION_CROSS_ATTENTION; i++)
    s = ds_weights_linear (&f->w, lin[i], cv, cv, true, err, names[i]);
  f->w.st = NULL; /* every tensor was copied: the file may close */
  return s;
}

/* ---- opening ---- */

/* *text transfer full. */
static DsStatus
read_config (const char *path, char **text, DsError *err)
{
  *text = NULL;
  FILE *fp = fopen (path, "rb");
  if (!fp)
    return ds_error_set (err, errno == ENOENT ? DS_ERR_NOT_FOUND : DS_ERR_IO,
                         "%s: cannot open: %s (a fusion checkpoint folder holds config.json "
                         "and fusion.safetensors)", path, strerror (errno));
  char *buf = malloc (MAX_CONFIG_BYTES + 1);
  size_t n = buf ? fread (buf, 1, MAX_CONFIG_BYTES + 1, fp) : 0;
  DsStatus st = DS_OK;
  if (!buf)
    st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
  else if (ferror (fp))
    st = ds_error_set (err, DS_ERR_IO, "%s: read error", path);
  else if (n > MAX_CONFIG_BYTES)
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: larger than %d MB: not a fusion config", path,
                       MAX_CONFIG_BYTES >> 20);
  fclose (fp);
  if (st != DS_OK)
    {
      free (buf);
      return st;
    }
  buf[n] = '\0';
  *text = buf;
  return DS_OK;
}

DsStatus
ds_fusion_open (const char *dir, DsBackend *be, DsFusion **out, DsError *err)
{
  assert (dir && be && out);
  *out = NULL;
  DsFusion *f = calloc (1, sizeof *f);
  char *text = NULL, *wpath = NULL;
  DsSafetensors *st = NULL;
  if (!f)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  f->be = be;
  DsStatus s = DS_OK;
  if (!(f->config_path = ds_path_join (dir, DS_FUSION_CONFIG))
      || !(wpath = ds_path_join (dir, DS_FUSION_WEIGHTS)))
    s = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (s == DS_OK)
    s = read_config (f->config_path, &text, err);
  if (s == DS_OK)
    s = ds_fusion_config_parse (text, f->config_path, &f->cfg, err);
  if (s == DS_OK)
    s = ds_safetensors_open (wpath, &st, err);
  if (s == DS_OK)
    s = check_tensors (st, &f->cfg, err);
  if (s == DS_OK)
    s = load_weights (f, st, err);
  ds_safetensors_close (st);
  free (wpath);
  free (text);
  if (s != DS_OK)
    {
      ds_fusion_free (f);
      return ds_error_prefix (err, s, "fusion checkpoint");
    }
  *out = f;
  return DS_OK;
}

void
ds_fusion_free (DsFusion *f)
{
  if (!f)
    return;
  ds_weights_free (&f->w);
  free (f->config_path);
  free (f);
}

const DsFusionConfig *
ds_fusion_config (const DsFusion *f)
{
  return &f->cfg;
}

const char *
ds_fusion_config_path (const DsFusion *f)
{
  return f->config_path;
}

int64_t
ds_fusion_n_tokens (const DsFusion *f)
{
  return (int64_t) f->cfg.grid * f->cfg.grid;
}

int64_t
ds_fusion_n_rows (const DsFusion *f, int64_t n_clip)
{
  return f->cfg.mode == DS_FUSION_CONCAT ? n_clip + ds_fusion_n_tokens (f) : n_clip;
}

/* ---- checks against the models ---- */

DsStatus
ds_fusion_check_probe (const DsFusion *f, const DsProbeInfo *p, DsError *err)
{
  const DsFusionConfig *c = &f->cfg;
  if (p->kind == DS_PROBE_SELF_MAP || p->kind == DS_PROBE_CROSS_MAP)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: probe \"%s\" is an attention map "
                         "[heads, Nq, Nk]; a fusion takes a feature map [C, h, w] (e.g. "
                         "U-L1-R1-B0-Cross-Q)", f->config_path, c->probe);
  if (p->shape[0] != c->channels)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"diffusion_channels\" is %lld, the SD "
                         "model's probe %s has %lld channels", f->config_path,
                         (long long) c->channels, p->name, (long long) p->shape[0]);
  if (p->shape[1] % c->grid != 0 || p->shape[2] % c->grid != 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"grid\" %d does not divide the SD model's "
                         "probe %s of %lldx%lld (h x w)", f->config_path, c->grid, p->name,
                         (long long) p->shape[1], (long long) p->shape[2]);
  return DS_OK;
}

DsStatus
ds_fusion_check_vision (const DsFusion *f, int64_t vision_hidden, const char *what,
                        DsError *err)
{
  if (f->cfg.vision_hidden != vision_hidden)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: \"vision_hidden\" is %lld, the vision tower "
                         "of %s is %lld wide", f->config_path, (long long) f->cfg.vision_hidden,
                         what, (long long) vision_hidden);
  return DS_OK;
}

/* ---- diffusion tokens ---- */

DsStatus
ds_fusion_tokens (const DsFusionConfig *cfg, const float *xu, const float *xc, int64_t c,
                  int64_t h, int64_t w, DsTensor *tokens, DsError *err)
{
  assert (cfg && xu && xc && tokens && c > 0 && h > 0 && w > 0);
  memset (tokens, 0, sizeof *tokens);
  const int64_t g = cfg->grid;
  if (h % g != 0 || w % g != 0)
    return ds_error_set (err, DS_ERR_INVALID, "fusion: grid %lld does not divide the probe's "
                         "%lldx%lld", (long long) g, (long long) h, (long long) w);
  DsStatus st = ds_tensor_alloc (tokens, DS_DTYPE_F32, 2, (int64_t[]){ g * g, c }, err);
  if (st != DS_OK)
    return st;
  const int64_t ch = h / g, cw = w / g;
  float *F = ds_tensor_f32 (tokens); /* [g², c] */
  for (int64_t k = 0; k < c; k++)
    for (int64_t gy = 0; gy < g; gy++)
      for (int64_t gx = 0; gx < g; gx++)
        {
          double acc = 0;
          for (int64_t y = gy * ch; y < (gy + 1) * ch; y++)
            for (int64_t x = gx * cw; x < (gx + 1) * cw; x++)
              {
                const int64_t i = (k * h + y) * w + x;
                /* ds_guidance_amplify's steps, each rounded to f32 */
                float d = xc[i] - xu[i];
                float sd = cfg->s * d;
                acc += (double) (xu[i] + sd);
              }
          F[(gy * g + gx) * c + k] = (float) (acc / (double) (ch * cw));
        }
  for (int64_t i = 0; i < g * g * c; i++)
    if (!isfinite (F[i]))
      {
        ds_tensor_free (tokens);
        return ds_error_set (err, DS_ERR_INVALID, "fusion: the guided probe %s holds a NaN or "
                             "infinity (s %g)", cfg->probe, (double) cfg->s);
      }
  return DS_OK;
}

/* ---- the forward ---- */

/* Backend tensors of one forward, freed together. */
typedef struct {
  DsBackend *be;
  DsTensor t[12];
  int n;
} Scratch;

/* A new [rows, cols] tensor on the backend, in its act_dtype. */
static DsStatus
scratch_new (Scratch *s, int64_t rows, int64_t cols, DsTensor **out, DsError *err)
{
  assert (s->n < (int) (sizeof s->t / sizeof s->t[0]));
  DsTensor *t = &s->t[s->n];
  DsStatus st = s->be->tensor_alloc (s->be, t, s->be->act_dtype, 2, (int64_t[]){ rows, cols },
                                     err);
  if (st == DS_OK)
    s->n++;
  *out = t;
  return st;
}

static void
scratch_free (Scratch *s)
{
  for (int i = 0; i < s->n; i++)
    s->be->tensor_free (s->be, &s->t[i]);
  s->n = 0;
}

/* x host f32 [rows, cols] onto the backend. */
static DsStatus
scratch_upload (Scratch *s, const DsTensor *x, DsTensor **out, DsError *err)
{
  DsStatus st = scratch_new (s, x->shape[0], x->shape[1], out, err);
  return st == DS_OK ? ds_backend_upload_f32 (s->be, *out, ds_tensor_f32 (x), err) : st;
}

/* fused [N, Cv] = V + out_proj(MHA(q_proj(LN_q(V)), k_proj(LN_kv(D)), v_proj(LN_kv(D)))). */
static DsStatus
cross_attention (DsFusion *f, Scratch *s, const DsTensor *V, const DsTensor *D, DsTensor *fused,
                 DsError *err)
{
  DsBackend *be = f->be;
  const int64_t N = V->shape[0], G = D->shape[0], cv = f->cfg.vision_hidden;
  DsTensor *nq = NULL, *q = NULL, *nkv = NULL, *k = NULL, *w = NULL, *a = NULL;
  DsStatus st;
  if ((st = scratch_new (s, N, cv, &nq, err)) || (st = scratch_new (s, N, cv, &q, err))
      || (st = scratch_new (s, G, cv, &nkv, err)) || (st = scratch_new (s, G, cv, &k, err))
      || (st = scratch_new (s, G, cv, &w, err)) || (st = scratch_new (s, N, cv, &a, err)))
    return st;
  if ((st = ds_layer_norm (be, V, &f->norm_q.g, &f->norm_q.b, LN_EPS, nq, err))
      || (st = ds_linear (be, nq, &f->q.w, &f->q.b, q, err))
      || (st = ds_layer_norm (be, D, &f->norm_kv.g, &f->norm_kv.b, LN_EPS, nkv, err))
      || (st = ds_linear (be, nkv, &f->k.w, &f->k.b, k, err))
      || (st = ds_linear (be, nkv, &f->v.w, &f->v.b, w, err)))
    return st;
  /* the attention op takes [B, tokens, H·D]: one batch item */
  DsTensor q3 = ds_tensor_reshape (q, 3, (int64_t[]){ 1, N, cv });
  DsTensor k3 = ds_tensor_reshape (k, 3, (int64_t[]){ 1, G, cv });
  DsTensor w3 = ds_tensor_reshape (w, 3, (int64_t[]){ 1, G, cv });
  DsTensor a3 = ds_tensor_reshape (a, 3, (int64_t[]){ 1, N, cv });
  const float scale = 1.0f / sqrtf ((float) (cv / f->cfg.heads));
  if ((st = ds_attention (be, &q3, &k3, &w3, f->cfg.heads, scale, false, &a3, NULL, err)))
    return st;
  return ds_linear_add (be, a, &f->out.w, &f->out.b, V, fused, err);
}

static DsStatus
check_inputs (const DsFusion *f, const DsTensor *clip, const DsTensor *tokens, DsError *err)
{
  char a[64], b[64];
  if (clip->ndim != 2 || clip->dtype != DS_DTYPE_F32 || clip->device != DS_DEVICE_CPU
      || clip->shape[0] < 1 || clip->shape[1] != f->cfg.vision_hidden)
    return ds_error_set (err, DS_ERR_INVALID, "fusion: the CLIP tokens are %s, expected host "
                         "f32 [N, %lld] (vision_hidden)",
                         ds_shape_str (clip->ndim, clip->shape, a, sizeof a),
                         (long long) f->cfg.vision_hidden);
  if (tokens->ndim != 2 || tokens->dtype != DS_DTYPE_F32 || tokens->device != DS_DEVICE_CPU
      || tokens->shape[0] != ds_fusion_n_tokens (f) || tokens->shape[1] != f->cfg.channels)
    return ds_error_set (err, DS_ERR_INVALID, "fusion: the diffusion tokens are %s, expected "
                         "host f32 %s (grid², diffusion_channels)",
                         ds_shape_str (tokens->ndim, tokens->shape, a, sizeof a),
                         ds_shape_str (2, (int64_t[]){ ds_fusion_n_tokens (f), f->cfg.channels },
                                       b, sizeof b));
  return DS_OK;
}

DsStatus
ds_fusion_forward (DsFusion *f, const DsTensor *clip, const DsTensor *tokens, DsTensor *fused,
                   DsError *err)
{
  assert (f && clip && tokens && fused);
  memset (fused, 0, sizeof *fused);
  DsStatus st = check_inputs (f, clip, tokens, err);
  if (st != DS_OK)
    return st;
  DsBackend *be = f->be;
  const int64_t N = clip->shape[0], G = ds_fusion_n_tokens (f), cv = f->cfg.vision_hidden;
  const int64_t R = ds_fusion_n_rows (f, N);
  Scratch s = { .be = be };
  DsTensor *V = NULL, *F = NULL, *D = NULL, *out = NULL;
  if ((st = scratch_upload (&s, clip, &V, err)) == DS_OK       /* [N, Cv] */
      && (st = scratch_upload (&s, tokens, &F, err)) == DS_OK  /* [G, C] */
      && (st = scratch_new (&s, G, cv, &D, err)) == DS_OK      /* [G, Cv] */
      && (st = scratch_new (&s, R, cv, &out, err)) == DS_OK    /* [R, Cv] */
      && (st = ds_linear (be, F, &f->proj.w, &f->proj.b, D, err)) == DS_OK)
    st = f->cfg.mode == DS_FUSION_CONCAT ? ds_concat (be, V, D, 0, out, err)
                                         : cross_attention (f, &s, V, D, out, err);
  if (st == DS_OK)
    st = ds_tensor_alloc (fused, DS_DTYPE_F32, 2, (int64_t[]){ R, cv }, err);
  if (st == DS_OK)
    st = ds_backend_download_f32 (be, out, ds_tensor_f32 (fused), err);
  if (st != DS_OK)
    ds_tensor_free (fused);
  scratch_free (&s);
  return st == DS_OK ? DS_OK : ds_error_prefix (err, st, "fusion forward");
}
