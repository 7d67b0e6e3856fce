/* ds-clip-vision.c: the CLIP vision transformer graph and its config (see
 * ds-clip-vision.h, docs/models.md §7.2).
 *
 * Memory plan: the residual stream x [B,N,C] (N = G² + 1 positions) lives in
 * the arena for the whole forward; four [B,N,C] scratch tensors and one
 * [B,N,I] MLP tensor are shared by every layer. The embeddings borrow them:
 * the pixels go into f, the patch convolution writes q, its tokens are
 * permuted into k, and the class token and position embeddings are put
 * together in h before pre_layrnorm writes x. The output rows are copied from
 * x last. On a backend with graphs (CUDA) the forward after the pixels'
 * upload is recorded once per (output, arena position, batch) and replayed.
 */
#include "ds-clip-vision.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-graph.h"
#include "ds-json.h"
#include "ds-safetensors.h"

/* ---- config ---- */

void
ds_clip_vision_config_l14_336 (DsClipVisionConfig *out)
{
  *out = (DsClipVisionConfig) {
    .hidden_size = 1024, .intermediate_size = 4096,
    .num_attention_heads = 16, .num_hidden_layers = 24,
    .image_size = 336, .patch_size = 14, .num_channels = 3,
    .hidden_act = DS_ACT_QUICK_GELU, .layer_norm_eps = 1e-5f,
    .feature_layer = -2, .keep_class_token = false,
  };
}

/* CLIPVisionConfig's defaults (ViT-B/32 at 224), for keys a file leaves out. */
static void
config_defaults (DsClipVisionConfig *out)
{
  *out = (DsClipVisionConfig) {
    .hidden_size = 768, .intermediate_size = 3072,
    .num_attention_heads = 12, .num_hidden_layers = 12,
    .image_size = 224, .patch_size = 32, .num_channels = 3,
    .hidden_act = DS_ACT_QUICK_GELU, .layer_norm_eps = 1e-5f,
    .feature_layer = -2, .keep_class_token = false,
  };
}

static DsStatus
json_int (const json_t *o, const char *what, const char *key, int min, int max, int *out,
          DsError *err)
{
  const json_t *v = json_object_get (o, key);
  if (!v)
    return DS_OK;
  if (!json_is_integer (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected an integer", what,
                         key, ds_json_type_name (v));
  json_int_t x = json_integer_value (v);
  if (x < min || x > max)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: key '%s' is %lld, expected a value in [%d, %d]", what, key,
                         (long long) x, min, max);
  *out = (int) x;
  return DS_OK;
}

static DsStatus
json_str (const json_t *o, const char *what, const char *key, const char **out, DsError *err)
{
  const json_t *v = json_object_get (o, key);
  if (!v)
    return DS_OK;
  if (!json_is_string (v))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected a string", what,
                         key, ds_json_type_name (v));
  *out = json_string_value (v);
  return DS_OK;
}

DsStatus
ds_clip_vision_config_from_json (const json_t *vision, const char *what,
                                 DsClipVisionConfig *out, DsError *err)
{
  assert (vision && what && out);
  DsClipVisionConfig c;
  config_defaults (&c);
  if (!json_is_object (vision))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: is %s, expected a JSON object", what,
                         ds_json_type_name (vision));
  const char *model_type = "clip_vision_model", *act = "quick_gelu";
  DsStatus st;
  if ((st = json_str (vision, what, "model_type", &model_type, err)))
    return st;
  if (strcmp (model_type, "clip_vision_model") != 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: key 'model_type' is \"%s\"; the engine supports only "
                         "\"clip_vision_model\" (CLIPVisionModel)",
                         what, model_type);
  if ((st = json_int (vision, what, "hidden_size", 1, 1 << 16, &c.hidden_size, err))
      || (st = json_int (vision, what, "intermediate_size", 1, 1 << 20, &c.intermediate_size,
                         err))
      || (st = json_int (vision, what, "num_attention_heads", 1, 1 << 12,
                         &c.num_attention_heads, err))
      || (st = json_int (vision, what, "num_hidden_layers", 1, 1 << 12, &c.num_hidden_layers,
                         err))
      || (st = json_int (vision, what, "image_size", 1, 1 << 14, &c.image_size, err))
      || (st = json_int (vision, what, "patch_size", 1, 1 << 14, &c.patch_size, err))
      || (st = json_int (vision, what, "num_channels", 1, 64, &c.num_channels, err))
      || (st = json_str (vision, what, "hidden_act", &act, err)))
    return st;
  if (strcmp (act, "quick_gelu") == 0)
    c.hidden_act = DS_ACT_QUICK_GELU;
  else if (strcmp (act, "gelu") == 0)
    c.hidden_act = DS_ACT_GELU;
  else
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: key 'hidden_act' is \"%s\"; the engine supports only "
                         "\"quick_gelu\" or \"gelu\"",
                         what, act);
  const json_t *eps = json_object_get (vision, "layer_norm_eps");
  if (eps && !json_is_number (eps))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: key 'layer_norm_eps' is %s, expected a number",
                         what, ds_json_type_name (eps));
  if (eps)
    c.layer_norm_eps = (float) json_number_value (eps);
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: key 'layer_norm_eps' is %g, expected a value in (0, 1)", what,
                         (double) c.layer_norm_eps);
  if (c.hidden_size % c.num_attention_heads)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: key 'hidden_size' = %d is not divisible by "
                         "num_attention_heads = %d",
                         what, c.hidden_size, c.num_attention_heads);
  if (c.patch_size > c.image_size)
    return ds_error_set (err, DS_ERR_INVALID,
                         "%s: key 'patch_size' = %d is larger than image_size = %d", what,
                         c.patch_size, c.image_size);
  *out = c;
  return DS_OK;
}

/* The LLaVA keys that pick the output: vision_feature_layer (llava-hf) or
 * mm_vision_select_layer (original), and the class-token choice. */
static DsStatus
parse_feature_keys (const json_t *root, const char *path, DsClipVisionConfig *c, DsError *err)
{
  static const char *const layer_keys[] = { "vision_feature_layer", "mm_vision_select_layer" };
  for (int i = 0; i < 2; i++)
    {
      const json_t *v = json_object_get (root, layer_keys[i]);
      if (!v)
        continue;
      if (!json_is_integer (v))
        return ds_error_set (err, json_is_array (v) ? DS_ERR_UNSUPPORTED : DS_ERR_FORMAT,
                             "%s: key '%s' is %s; the engine supports only one integer layer",
                             path, layer_keys[i], ds_json_type_name (v));
      int lo = -(c->num_hidden_layers + 1), hi = c->num_hidden_layers;
      json_int_t x = json_integer_value (v);
      if (x < lo || x > hi)
        return ds_error_set (err, DS_ERR_INVALID,
                             "%s: key '%s' is %lld, expected a hidden-state index in "
                             "[%d, %d] for %d layers",
                             path, layer_keys[i], (long long) x, lo, hi,
                             c->num_hidden_layers);
      c->feature_layer = (int) x;
      break;
    }
  static const struct { const char *key, *drop, *keep; } select[] = {
    { "vision_feature_select_strategy", "default", "full" },
    { "mm_vision_select_feature", "patch", "cls_patch" },
  };
  for (int i = 0; i < 2; i++)
    {
      const char *s = NULL;
      DsStatus st = json_str (root, path, select[i].key, &s, err);
      if (st)
        return st;
      if (!s)
        continue;
      if (strcmp (s, select[i].drop) != 0 && strcmp (s, select[i].keep) != 0)
        return ds_error_set (err, DS_ERR_UNSUPPORTED,
                             "%s: key '%s' is \"%s\"; the engine supports only \"%s\" or "
                             "\"%s\"",
                             path, select[i].key, s, select[i].drop, select[i].keep);
      c->keep_class_token = strcmp (s, select[i].keep) == 0;
      break;
    }
  return DS_OK;
}

DsStatus
ds_clip_vision_config_parse (const char *json_text, const char *path, DsClipVisionConfig *out,
                             DsError *err)
{
  assert (json_text && path && out);
  json_error_t jerr;
  json_t *root = json_loads (json_text, 0, &jerr);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)",
                         path, jerr.text, jerr.line, jerr.column);
  DsStatus st = DS_OK;
  DsClipVisionConfig c;
  const json_t *mt = json_object_get (root, "model_type");
  const char *model_type = json_is_string (mt) ? json_string_value (mt) : "";
  const json_t *vision = json_object_get (root, "vision_config");
  char what[512];
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: is %s, expected a JSON object", path,
                       ds_json_type_name (root));
  else if (vision && !json_is_null (vision))
    {
      /* CLIPConfig and LlavaConfig nest the tower's keys here. */
      snprintf (what, sizeof what, "%s: vision_config", path);
      st = ds_clip_vision_config_from_json (vision, what, &c, err);
    }
  else if (strcmp (model_type, "llava") == 0)
    ds_clip_vision_config_l14_336 (&c); /* LlavaConfig's default tower */
  else if (strcmp (model_type, "clip") == 0)
    config_defaults (&c); /* CLIPConfig's default vision_config */
  else
    st = ds_clip_vision_config_from_json (root, path, &c, err);
  if (st == DS_OK)
    st = parse_feature_keys (root, path, &c, err);
  if (st == DS_OK)
    *out = c;
  json_decref (root);
  return st;
}

/* ---- the model ---- */

struct DsClipVision {
  DsClipVisionConfig cfg;
  int grid;                  /* G = image_size / patch_size (the remainder is never seen) */
  int n_run;                 /* encoder layers run: the feature layer's index */
  DsWeights w;               /* owns every tensor below */
  DsTensor patch_w;          /* [C, channels, P, P] */
  DsTensor class_emb;        /* [1, 1, C]: a view of the stored [C] */
  DsTensor pos_emb;          /* [G² + 1, C] */
  DsNormW pre_ln;            /* [C] */
  DsClipLayerW *layers;       /* [n_run] */
  DsGraphCache graphs;       /* recorded forwards (ds-graph.h) */
};

static DsStatus
check_config (const DsClipVisionConfig *c, DsError *err)
{
  if (c->hidden_size < 1 || c->intermediate_size < 1 || c->num_attention_heads < 1
      || c->num_hidden_layers < 1 || c->patch_size < 1 || c->image_size < c->patch_size
      || c->num_channels < 1 || !(c->layer_norm_eps > 0))
    return ds_error_set (err, DS_ERR_INVALID,
                         "vision tower config: hidden_size %d, intermediate_size %d, "
                         "num_attention_heads %d, num_hidden_layers %d, num_channels %d, "
                         "patch_size %d must be positive, image_size %d at least patch_size "
                         "and layer_norm_eps %g positive",
                         c->hidden_size, c->intermediate_size, c->num_attention_heads,
                         c->num_hidden_layers, c->num_channels, c->patch_size, c->image_size,
                         (double) c->layer_norm_eps);
  if (c->hidden_size % c->num_attention_heads)
    return ds_error_set (err, DS_ERR_INVALID,
                         "vision tower config: hidden_size %d is not a multiple of "
                         "num_attention_heads %d",
                         c->hidden_size, c->num_attention_heads);
  if (c->feature_layer < -(c->num_hidden_layers + 1) || c->feature_layer > c->num_hidden_layers)
    return ds_error_set (err, DS_ERR_INVALID,
                         "vision tower config: feature_layer %d, expected a hidden-state "
                         "index in [%d, %d] for %d layers",
                         c->feature_layer, -(c->num_hidden_layers + 1), c->num_hidden_layers,
                         c->num_hidden_layers);
  return DS_OK;
}

static DsStatus
load_all (DsClipVision *vt, DsError *err)
{
  const DsClipVisionConfig *c = &vt->cfg;
  DsWeights *w = &vt->w;
  const int64_t C = c->hidden_size, P = c->patch_size, G = vt->grid;
  DsStatus st;
  DsTensor cls;
  if ((st = ds_weights_load (w, &vt->patch_w, 4, (int64_t[]){ C, c->num_channels, P, P }, err,
                             "embeddings.patch_embedding.weight"))
      || (st = ds_weights_load (w, &cls, 1, (int64_t[]){ C }, err,
                                "embeddings.class_embedding"))
      || (st = ds_weights_load (w, &vt->pos_emb, 2, (int64_t[]){ G * G + 1, C }, err,
                                "embeddings.position_embedding.weight"))
      || (st = ds_weights_norm (w, &vt->pre_ln, C, err, "pre_layrnorm")))
    return st;
  vt->class_emb = ds_tensor_reshape (&cls, 3, (int64_t[]){ 1, 1, C });
  for (int l = 0; l < vt->n_run; l++)
    if ((st = ds_clip_layer_load (w, &vt->layers[l], C, c->intermediate_size, l, err)))
      return st;
  return DS_OK;
}

/* The spellings of the tower's prefix, most common first (docs/models.md §7.8);
 * "" is a CLIPVisionModel saved by transformers 5, which has no vision_model
 * level. */
static const char *const known_prefixes[] = {
  "vision_model.",
  "vision_tower.vision_model.",
  "model.vision_tower.vision_model.",
  "",
  "vision_tower.",       /* llava-hf re-saved by transformers 5.2x: no vision_model level */
  "model.vision_tower.",
};

static const char *
detect_prefix (const DsSafetensors *st)
{
  char name[256];
  for (size_t i = 0; i < sizeof known_prefixes / sizeof known_prefixes[0]; i++)
    {
      snprintf (name, sizeof name, "%sembeddings.patch_embedding.weight", known_prefixes[i]);
      if (ds_safetensors_find (st, name))
        return known_prefixes[i];
    }
  return known_prefixes[0]; /* the error then names the classic spelling */
}

/* The same through a sharded checkpoint's index. */
static const char *
detect_prefix_index (const DsSafetensorsIndex *idx)
{
  char name[256];
  for (size_t i = 0; i < sizeof known_prefixes / sizeof known_prefixes[0]; i++)
    {
      snprintf (name, sizeof name, "%sembeddings.patch_embedding.weight", known_prefixes[i]);
      if (ds_safetensors_index_find (idx, name, NULL))
        return known_prefixes[i];
    }
  return known_prefixes[0];
}

/* idx: a sharded checkpoint instead of `file` (both NULL: random). */
static DsStatus
vt_create_any (const DsClipVisionConfig *cfg, const DsSafetensors *file,
               const DsSafetensorsIndex *idx, const char *prefix, uint64_t seed,
               DsBackend *be, DsClipVision **out, DsError *err)
{
  assert (cfg && be && out);
  *out = NULL;
  DsStatus st = check_config (cfg, err);
  if (st != DS_OK)
    return st;
  const int n_run = cfg->feature_layer >= 0 ? cfg->feature_layer
                                            : cfg->num_hidden_layers + 1 + cfg->feature_layer;
  DsClipVision *vt = calloc (1, sizeof *vt);
  if (vt)
    vt->layers = calloc ((size_t) n_run + 1, sizeof *vt->layers);
  if (!vt || !vt->layers)
    {
      free (vt);
      return ds_error_set (err, DS_ERR_NOMEM, "vision tower: out of host memory");
    }
  vt->cfg = *cfg;
  vt->grid = cfg->image_size / cfg->patch_size;
  vt->n_run = n_run;
  if (idx)
    {
      ds_weights_init (&vt->w, be, NULL, prefix ? prefix : detect_prefix_index (idx));
      vt->w.index = idx; /* each tensor from its shard (ds-weights.h) */
    }
  else if (!file)
    ds_weights_init_random (&vt->w, be, seed, prefix ? prefix : known_prefixes[0]);
  else
    ds_weights_init (&vt->w, be, file, prefix ? prefix : detect_prefix (file));
  st = load_all (vt, err);
  vt->w.st = NULL; /* the weights are copies; the file may go now */
  if (st != DS_OK)
    {
      ds_clip_vision_free (vt);
      return ds_error_prefix (err, st, "vision tower");
    }
  *out = vt;
  return DS_OK;
}

static DsStatus
vt_create (const DsClipVisionConfig *cfg, const DsSafetensors *file, const char *prefix,
           uint64_t seed, DsBackend *be, DsClipVision **out, DsError *err)
{
  return vt_create_any (cfg, file, NULL, prefix, seed, be, out, err);
}

DsStatus
ds_clip_vision_load_index (const DsClipVisionConfig *cfg, const DsSafetensorsIndex *idx,
                           const char *prefix, DsBackend *be, DsClipVision **out, DsError *err)
{
  assert (idx);
  return vt_create_any (cfg, NULL, idx, prefix, 0, be, out, err);
}

DsStatus
ds_clip_vision_load_from (const DsClipVisionConfig *cfg, const DsSafetensors *st,
                          const char *prefix, DsBackend *be, DsClipVision **out, DsError *err)
{
  assert (st);
  return vt_create (cfg, st, prefix, 0, be, out, err);
}

DsStatus
ds_clip_vision_load (const DsClipVisionConfig *cfg, const char *weights_path,
                     const char *prefix, DsBackend *be, DsClipVision **out, DsError *err)
{
  assert (weights_path && out);
  *out = NULL;
  DsSafetensors *file;
  DsStatus st = ds_safetensors_open (weights_path, &file, err);
  if (st != DS_OK)
    return ds_error_prefix (err, st, "vision tower");
  st = vt_create (cfg, file, prefix, 0, be, out, err);
  ds_safetensors_close (file);
  return st;
}

DsStatus
ds_clip_vision_new_random (const DsClipVisionConfig *cfg, uint64_t seed, DsBackend *be,
                           DsClipVision **out, DsError *err)
{
  return vt_create (cfg, NULL, NULL, seed, be, out, err);
}

void
ds_clip_vision_free (DsClipVision *vt)
{
  if (!vt)
    return;
  if (vt->w.be)
    ds_graph_cache_clear (&vt->graphs, vt->w.be);
  ds_weights_free (&vt->w);
  free (vt->layers);
  free (vt);
}

const DsClipVisionConfig *
ds_clip_vision_config (const DsClipVision *vt)
{
  return &vt->cfg;
}

int64_t
ds_clip_vision_n_tokens (const DsClipVision *vt)
{
  return (int64_t) vt->grid * vt->grid + (vt->cfg.keep_class_token ? 1 : 0);
}

int
ds_clip_vision_n_layers_run (const DsClipVision *vt)
{
  return vt->n_run;
}

/* ---- forward ---- */

/* x [B,N,C] += attn (ln1 (x)); x += mlp (ln2 (x)). h, q, k, v: [B,N,C]
 * scratch; f: [B,N,I] scratch. Full attention (docs/models.md §7.2). */
/* What the forward runs on: the arena tensors, all in place. */
typedef struct {
  DsClipVision *vt;
  DsBackend *be;
  DsTensor px;               /* [B, channels, S, S]: shares f's memory */
  DsTensor x, h, q, k, v, f; /* [B,N,C] x5, [B,N,I] */
  DsTensor *out;             /* [B, n_tokens, C] */
} Fwd;

/* A tensor of `shape` over the start of mem's memory (at most its numel). */
static DsTensor
view (const DsTensor *mem, int ndim, const int64_t *shape)
{
  DsTensor v = ds_tensor_make (mem->dtype, ndim, shape);
  assert (ds_tensor_numel (&v) <= ds_tensor_numel (mem));
  v.device = mem->device;
  v.data = mem->data;
  return v;
}

/* Patch embedding, class token, positions, pre_layrnorm: px -> x. */
static DsStatus
embed (Fwd *d, DsError *err)
{
  DsClipVision *vt = d->vt;
  DsBackend *be = d->be;
  const int64_t B = d->x.shape[0], N = d->x.shape[1], C = vt->cfg.hidden_size;
  const int64_t G = vt->grid, P = vt->cfg.patch_size;
  DsTensor conv = view (&d->q, 4, (int64_t[]){ B, C, G, G });
  DsTensor tokens_in = ds_tensor_reshape (&conv, 3, (int64_t[]){ B, C, G * G });
  DsTensor tokens = view (&d->k, 3, (int64_t[]){ B, G * G, C });
  DsStatus st;
  if ((st = ds_conv2d (be, &d->px, &vt->patch_w, NULL, (int) P, 0, 0, 0, 0, &conv, err))
      || (st = ds_permute (be, &tokens_in, (const int[]){ 0, 2, 1 }, &tokens, err)))
    return st;
  for (int64_t b = 0; b < B; b++)
    {
      DsTensor row = ds_tensor_slice0 (&d->h, b, 1);        /* [1, N, C] */
      DsTensor tok = ds_tensor_slice0 (&tokens, b, 1);      /* [1, G², C] */
      if ((st = ds_concat (be, &vt->class_emb, &tok, 1, &row, err)))
        return st;
      row = ds_tensor_reshape (&row, 2, (int64_t[]){ N, C });
      if ((st = ds_add (be, &row, &vt->pos_emb, &row, err)))
        return st;
    }
  return ds_layer_norm (be, &d->h, &vt->pre_ln.g, &vt->pre_ln.b, vt->cfg.layer_norm_eps,
                        &d->x, err);
}

/* Everything after the pixels' upload (a DsGraphBody). */
static DsStatus
body (void *user, DsError *err)
{
  Fwd *d = user;
  DsClipVision *vt = d->vt;
  DsBackend *be = d->be;
  const int64_t B = d->x.shape[0], N = d->x.shape[1], C = vt->cfg.hidden_size;
  DsStatus st;
  if ((st = embed (d, err)))
    return st;
  for (int l = 0; l < vt->n_run; l++)
    if ((st = ds_clip_layer_forward (be, &vt->layers[l], vt->cfg.num_attention_heads,
                                     vt->cfg.layer_norm_eps, vt->cfg.hidden_act, false, &d->x, &d->h,
                                     &d->q, &d->k, &d->v, &d->f, err)))
      return st;
  /* The class token is row 0 of each image (docs/models.md §7.2). */
  const int64_t skip = vt->cfg.keep_class_token ? 0 : 1, T = N - skip;
  for (int64_t b = 0; b < B; b++)
    {
      DsTensor src = ds_tensor_slice0 (&d->x, b, 1);
      src = ds_tensor_reshape (&src, 2, (int64_t[]){ N, C });
      src = ds_tensor_slice0 (&src, skip, T);
      DsTensor dst = ds_tensor_slice0 (d->out, b, 1);
      dst = ds_tensor_reshape (&dst, 2, (int64_t[]){ T, C });
      if ((st = ds_scale (be, &src, 1.0f, &dst, err))) /* a copy */
        return st;
    }
  return DS_OK;
}

/* What a recorded forward bakes in (ds-graph.h). */
typedef struct {
  const void *out, *arena_base;
  size_t arena_size, arena_mark;
  int64_t B;
} GraphKey;
_Static_assert (sizeof (GraphKey) <= DS_GRAPH_KEY_BYTES, "a vision graph key fits the cache");

/* The graph. pixels may be NULL when planning on the null backend (which has
 * no graphs). */
static DsStatus
forward (DsClipVision *vt, DsBackend *be, DsArena *a, const DsTensor *pixels, int64_t B,
         DsTensor *out, DsError *err)
{
  const DsClipVisionConfig *c = &vt->cfg;
  const int64_t N = (int64_t) vt->grid * vt->grid + 1, C = c->hidden_size;
  const int64_t I = c->intermediate_size, S = c->image_size;
  Fwd d = { .vt = vt, .be = be, .out = out };
  DsStatus st;
  if ((st = ds_arena_act (a, &d.x, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.h, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.q, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.k, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.v, err, 3, B, N, C)))
    return st;
  /* f holds the pixels until the first MLP; it grows to fit them. */
  const int64_t px_n = B * c->num_channels * S * S, f_n = B * N * I;
  DsTensor mem;
  if ((st = ds_arena_act (a, &mem, err, 1, px_n > f_n ? px_n : f_n)))
    return st;
  d.px = view (&mem, 4, (int64_t[]){ B, c->num_channels, S, S });
  d.f = view (&mem, 3, (int64_t[]){ B, N, I });
  if (pixels && (st = ds_backend_upload_f32 (be, &d.px, ds_tensor_f32 (pixels), err)))
    return st;
  GraphKey k;
  memset (&k, 0, sizeof k); /* padding too: keys are compared byte for byte */
  k.out = out->data;
  k.arena_base = a->base;
  k.arena_size = a->size;
  k.arena_mark = ds_arena_mark (a);
  k.B = B;
  return ds_graph_run (&vt->graphs, be, a, &k, sizeof k, body, &d, err);
}

DsStatus
ds_clip_vision_forward (DsClipVision *vt, DsBackend *be, DsArena *a, const DsTensor *pixels,
                        DsTensor *out, DsError *err)
{
  assert (vt && be && a && pixels && out);
  const DsClipVisionConfig *c = &vt->cfg;
  char s1[96], s2[96];
  const int64_t B = pixels->shape[0];
  const int64_t want_px[4] = { B, c->num_channels, c->image_size, c->image_size };
  if (pixels->ndim != 4 || pixels->dtype != DS_DTYPE_F32 || pixels->device != DS_DEVICE_CPU
      || B < 1 || memcmp (pixels->shape, want_px, sizeof want_px) != 0)
    return ds_error_set (err, DS_ERR_INVALID,
                         "vision tower: pixels are %s %s %s, expected host f32 %s (B >= 1)",
                         ds_device_name (pixels->device), ds_dtype_name (pixels->dtype),
                         ds_shape_str (pixels->ndim, pixels->shape, s1, sizeof s1),
                         ds_shape_str (4, want_px, s2, sizeof s2));
  const int64_t want[3] = { B, ds_clip_vision_n_tokens (vt), c->hidden_size };
  if (out->ndim != 3 || out->dtype != be->act_dtype
      || memcmp (out->shape, want, sizeof want) != 0)
    return ds_error_set (err, DS_ERR_INVALID, "vision tower: output is %s %s, expected %s %s",
                         ds_dtype_name (out->dtype),
                         ds_shape_str (out->ndim, out->shape, s1, sizeof s1),
                         ds_dtype_name (be->act_dtype), ds_shape_str (3, want, s2, sizeof s2));
  size_t mark = ds_arena_mark (a);
  DsStatus st = forward (vt, be, a, pixels, B, out, err);
  ds_arena_reset_to (a, mark);
  return st;
}

size_t
ds_clip_vision_arena_bytes (DsClipVision *vt, int64_t B)
{
  assert (vt);
  if (B < 1)
    return 0;
  DsBackend *null = ds_backend_null_new (vt->w.be);
  if (!null)
    return 0;
  DsArena a;
  ds_arena_init_measure (&a, vt->w.be);
  DsTensor out;
  size_t result = 0;
  /* The output gets a stand-in address below the mark (see ds_vae_arena_bytes). */
  if (ds_arena_act (&a, &out, NULL, 3, B, ds_clip_vision_n_tokens (vt),
                    (int64_t) vt->cfg.hidden_size) == DS_OK)
    {
      size_t mark = ds_arena_mark (&a);
      if (forward (vt, null, &a, NULL, B, &out, NULL) == DS_OK)
        result = a.peak - mark;
    }
  ds_backend_free (null);
  return result;
}
