/* ds-llama.c: the LLaMA-2 decoder graph (see ds-llama.h, docs/models.md §7.4).
 *
 * One sequence (B = 1). Memory plan of a forward of n tokens: the residual
 * stream x [n, C], one [n, C] normed copy h, q and the attention output
 * [n, H*D], the MLP's gate and up [n, I], and the ids and positions (i32 [n])
 * in the arena; the new keys and values are written by their projections
 * straight into the cache rows of their positions (contiguous for B = 1) and
 * rotated there, so the cache needs no copy op. The final RMSNorm and lm_head
 * run on the logit rows only (the last one for a decode step).
 *
 * A decode step (one token from the vocabulary) is instead written so that
 * nothing it launches depends on its position: the ids and the position are
 * uploaded into the arena first, the new key and value go to two scratch rows
 * [1, Hkv*D] and from there into the cache at the position the device holds
 * (ds_set_rows), and attention takes the whole cache with that position
 * (ds_attention_kv_at). On CUDA the step is then recorded once per cache and
 * arena (ds-graph.h) and replayed for every later position: one launch
 * instead of ~15 a layer. The results are the eager path's, bit for bit.
 *
 * 16-bit weights with f32 accumulation: on CUDA DsWeights stores the
 * parameters in the backend's act_dtype and the decoder's ops have kernels
 * that accumulate in f32 (kernels/rms-norm.cu, rope.cu, attention-kv.cu). On
 * the CPU the seven projections and lm_head are loaded with
 * ds_weights_load_matrix: an f16/bf16 checkpoint's matrices stay 16-bit,
 * mapped from the file (kept open for the model's life), and run as mixed
 * linears (ds-ops.h) with f32 activations; embeddings and norms are f32.
 */
#include "ds-llama.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-graph.h"
#include "ds-json.h"
#include "ds-safetensors.h"

typedef struct {
  DsTensor in_norm, post_norm; /* [C] */
  DsTensor q, o;               /* [H*D, C], [C, H*D] */
  DsTensor k, v;               /* [Hkv*D, C] */
  DsTensor gate, up;           /* [I, C] */
  DsTensor down;               /* [C, I] */
} LlamaLayer;

struct DsLlama {
  DsLlamaConfig cfg;
  DsBackend *be;
  DsWeights w;        /* owns every tensor below */
  DsTensor embed;     /* [V, C] */
  DsTensor norm;      /* [C] */
  DsTensor lm_head;   /* [V, C]; embed itself when tied */
  LlamaLayer *layers; /* [num_hidden_layers] */
  char prefix[96], head_prefix[96];
  DsSafetensors *file; /* open while weights point into its mapping, else NULL */
  DsGraphCache graphs; /* recorded decode steps (ds-graph.h) */
};

struct DsLlamaCache {
  DsBackend *be;
  int n_layers;
  int64_t len, cap;
  DsTensor *k, *v; /* [n_layers] of [cap, Hkv*D] */
  uint64_t serial; /* this cache among every one made: part of a recording's key */
};

static atomic_uint_fast64_t next_cache_serial;

/* ---- config ---- */

void
ds_llama_config_default (DsLlamaConfig *c)
{
  *c = (DsLlamaConfig){
    .vocab_size = 32000,
    .hidden_size = 4096,
    .intermediate_size = 11008,
    .num_hidden_layers = 32,
    .num_attention_heads = 32,
    .num_key_value_heads = 32,
    .head_dim = 128,
    .max_position_embeddings = 2048,
    .rms_norm_eps = 1e-6f,
    .rope_theta = 10000.0f,
    .tie_word_embeddings = false,
  };
}

DsStatus
ds_llama_config_check (const DsLlamaConfig *c, DsError *err)
{
  static const struct {
    const char *key;
    size_t off;
  } pos[] = {
    { "vocab_size", offsetof (DsLlamaConfig, vocab_size) },
    { "hidden_size", offsetof (DsLlamaConfig, hidden_size) },
    { "intermediate_size", offsetof (DsLlamaConfig, intermediate_size) },
    { "num_attention_heads", offsetof (DsLlamaConfig, num_attention_heads) },
    { "num_key_value_heads", offsetof (DsLlamaConfig, num_key_value_heads) },
    { "head_dim", offsetof (DsLlamaConfig, head_dim) },
    { "max_position_embeddings", offsetof (DsLlamaConfig, max_position_embeddings) },
  };
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
    {
      int v = *(const int *) ((const char *) c + pos[i].off);
      if (v < 1)
        return ds_error_set (err, DS_ERR_INVALID, "llama config: %s is %d, expected >= 1",
                             pos[i].key, v);
    }
  if (c->num_hidden_layers < 0)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama config: num_hidden_layers is %d, expected >= 0",
                         c->num_hidden_layers);
  if (c->num_attention_heads % c->num_key_value_heads)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama config: num_key_value_heads %d does not divide "
                         "num_attention_heads %d",
                         c->num_key_value_heads, c->num_attention_heads);
  if (c->head_dim % 2)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama config: head_dim %d is odd (RoPE rotates half-dims)", c->head_dim);
  if (!(c->rms_norm_eps >= 0) || !(c->rope_theta > 0))
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama config: rms_norm_eps %g must be >= 0 and rope_theta %g > 0",
                         c->rms_norm_eps, c->rope_theta);
  return DS_OK;
}

typedef struct {
  json_t *obj;  /* the LlamaConfig object */
  json_t *top;  /* the file's root (a LLaVA config's, for tie_word_embeddings) */
  const char *what, *where; /* path, and "" or "text_config." */
  DsError *err;
} Cfg;

static DsStatus
cfg_int (Cfg *c, const char *key, int *out)
{
  json_t *v = json_object_get (c->obj, key);
  if (!v || json_is_null (v))
    return DS_OK; /* the default stays */
  if (!json_is_integer (v))
    return ds_error_set (c->err, DS_ERR_FORMAT, "%s: key '%s%s' is %s, expected an integer",
                         c->what, c->where, key, ds_json_type_name (v));
  json_int_t x = json_integer_value (v);
  if (x < 0 || x > (1 << 30))
    return ds_error_set (c->err, DS_ERR_INVALID,
                         "%s: key '%s%s' is %lld, expected a value in [0, %d]", c->what,
                         c->where, key, (long long) x, 1 << 30);
  *out = (int) x;
  return DS_OK;
}

static DsStatus
cfg_float (Cfg *c, json_t *obj, const char *key, const char *where, float *out)
{
  json_t *v = json_object_get (obj, key);
  if (!v || json_is_null (v))
    return DS_OK;
  if (!json_is_number (v))
    return ds_error_set (c->err, DS_ERR_FORMAT, "%s: key '%s%s' is %s, expected a number",
                         c->what, where, key, ds_json_type_name (v));
  *out = (float) json_number_value (v);
  return DS_OK;
}

/* A key that must be absent, null, false or the string `want` (when given). */
static DsStatus
cfg_require (Cfg *c, json_t *obj, const char *where, const char *key, const char *want)
{
  json_t *v = json_object_get (obj, key);
  if (!v || json_is_null (v) || json_is_false (v))
    return DS_OK;
  if (want && json_is_string (v) && strcmp (json_string_value (v), want) == 0)
    return DS_OK;
  char *s = json_dumps (v, JSON_ENCODE_ANY | JSON_COMPACT);
  DsStatus st = ds_error_set (c->err, DS_ERR_UNSUPPORTED,
                              "%s: key '%s%s' is %.60s; the engine supports only %s%s%s",
                              c->what, where, key, s ? s : "?", want ? "\"" : "",
                              want ? want : "absent, null or false", want ? "\"" : "");
  free (s);
  return st;
}

static DsStatus
parse (Cfg *c, DsLlamaConfig *cfg)
{
  DsStatus st;
  bool has_head_dim = false, has_kv = false;
  json_t *hd = json_object_get (c->obj, "head_dim"), *kv;
  has_head_dim = hd && !json_is_null (hd);
  kv = json_object_get (c->obj, "num_key_value_heads");
  has_kv = kv && !json_is_null (kv);
  if ((st = cfg_int (c, "vocab_size", &cfg->vocab_size))
      || (st = cfg_int (c, "hidden_size", &cfg->hidden_size))
      || (st = cfg_int (c, "intermediate_size", &cfg->intermediate_size))
      || (st = cfg_int (c, "num_hidden_layers", &cfg->num_hidden_layers))
      || (st = cfg_int (c, "num_attention_heads", &cfg->num_attention_heads))
      || (st = cfg_int (c, "num_key_value_heads", &cfg->num_key_value_heads))
      || (st = cfg_int (c, "head_dim", &cfg->head_dim))
      || (st = cfg_int (c, "max_position_embeddings", &cfg->max_position_embeddings))
      || (st = cfg_float (c, c->obj, "rms_norm_eps", c->where, &cfg->rms_norm_eps))
      || (st = cfg_float (c, c->obj, "rope_theta", c->where, &cfg->rope_theta)))
    return st;
  if (!has_kv)
    cfg->num_key_value_heads = cfg->num_attention_heads;
  if (!has_head_dim && cfg->num_attention_heads > 0)
    {
      if (cfg->hidden_size % cfg->num_attention_heads)
        return ds_error_set (c->err, DS_ERR_INVALID,
                             "%s: key '%shidden_size' %d is not a multiple of "
                             "num_attention_heads %d (and there is no head_dim)",
                             c->what, c->where, cfg->hidden_size, cfg->num_attention_heads);
      cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    }
  /* transformers 5 writes rope_theta inside rope_parameters. */
  json_t *rp = json_object_get (c->obj, "rope_parameters");
  char where[64];
  snprintf (where, sizeof where, "%srope_parameters.", c->where);
  if (rp && json_is_object (rp))
    {
      if ((st = cfg_float (c, rp, "rope_theta", where, &cfg->rope_theta))
          || (st = cfg_require (c, rp, where, "rope_type", "default")))
        return st;
    }
  else if ((st = cfg_require (c, c->obj, c->where, "rope_parameters", NULL)))
    return st;
  if ((st = cfg_require (c, c->obj, c->where, "rope_scaling", NULL))
      || (st = cfg_require (c, c->obj, c->where, "attention_bias", NULL))
      || (st = cfg_require (c, c->obj, c->where, "mlp_bias", NULL))
      || (st = cfg_require (c, c->obj, c->where, "hidden_act", "silu")))
    return st;
  json_t *tie = json_object_get (c->obj, "tie_word_embeddings");
  if (!tie && c->top != c->obj)
    tie = json_object_get (c->top, "tie_word_embeddings");
  if (tie && !json_is_null (tie))
    {
      if (!json_is_boolean (tie))
        return ds_error_set (c->err, DS_ERR_FORMAT,
                             "%s: key 'tie_word_embeddings' is %s, expected true or false",
                             c->what, ds_json_type_name (tie));
      cfg->tie_word_embeddings = json_is_true (tie);
    }
  if ((st = ds_llama_config_check (cfg, c->err)))
    return ds_error_prefix (c->err, st, "%s", c->what);
  return DS_OK;
}

DsStatus
ds_llama_config_parse (const char *json_text, const char *what, DsLlamaConfig *cfg,
                       DsError *err)
{
  assert (json_text && cfg);
  what = what ? what : "config";
  json_error_t jerr;
  json_t *root = json_loads (json_text, 0, &jerr);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)",
                         what, jerr.text, jerr.line, jerr.column);
  DsStatus st;
  Cfg c = { .obj = root, .top = root, .what = what, .where = "", .err = err };
  json_t *text = json_object_get (root, "text_config");
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: is %s, expected a JSON object", what,
                       ds_json_type_name (root));
  else if (text && !json_is_object (text))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: key 'text_config' is %s, expected an object",
                       what, ds_json_type_name (text));
  else
    {
      if (text)
        {
          c.obj = text;
          c.where = "text_config.";
        }
      DsLlamaConfig tmp;
      ds_llama_config_default (&tmp);
      st = parse (&c, &tmp);
      if (st == DS_OK)
        *cfg = tmp;
    }
  json_decref (root);
  return st;
}

DsStatus
ds_llama_config_load (const char *path, DsLlamaConfig *cfg, DsError *err)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot open: %s", path, strerror (errno));
  fseek (f, 0, SEEK_END);
  long n = ftell (f);
  fseek (f, 0, SEEK_SET);
  char *buf = n >= 0 && n < (1L << 24) ? malloc ((size_t) n + 1) : NULL;
  if (!buf || fread (buf, 1, (size_t) n, f) != (size_t) n)
    {
      fclose (f);
      free (buf);
      return ds_error_set (err, DS_ERR_IO, "%s: cannot read it (size %ld)", path, n);
    }
  fclose (f);
  buf[n] = '\0';
  DsStatus st = ds_llama_config_parse (buf, path, cfg, err);
  free (buf);
  return st;
}

/* ---- loading ---- */

static DsStatus
load_layer (DsWeights *w, const DsLlamaConfig *c, LlamaLayer *l, int i, DsError *err)
{
  const int64_t C = c->hidden_size, I = c->intermediate_size;
  const int64_t QD = (int64_t) c->num_attention_heads * c->head_dim;
  const int64_t KVD = (int64_t) c->num_key_value_heads * c->head_dim;
  DsStatus st;
#define W2(t, a, b, name)                                                                   \
  ds_weights_load_matrix (w, t, a, b, err, "layers.%d." name ".weight", i)
  if ((st = ds_weights_load (w, &l->in_norm, 1, (int64_t[]){ C }, err,
                             "layers.%d.input_layernorm.weight", i))
      || (st = W2 (&l->q, QD, C, "self_attn.q_proj"))
      || (st = W2 (&l->k, KVD, C, "self_attn.k_proj"))
      || (st = W2 (&l->v, KVD, C, "self_attn.v_proj"))
      || (st = W2 (&l->o, C, QD, "self_attn.o_proj"))
      || (st = ds_weights_load (w, &l->post_norm, 1, (int64_t[]){ C }, err,
                                "layers.%d.post_attention_layernorm.weight", i))
      || (st = W2 (&l->gate, I, C, "mlp.gate_proj"))
      || (st = W2 (&l->up, I, C, "mlp.up_proj"))
      || (st = W2 (&l->down, C, I, "mlp.down_proj")))
    return st;
#undef W2
  return DS_OK;
}

static DsStatus
load_all (DsLlama *m, DsError *err)
{
  const DsLlamaConfig *c = &m->cfg;
  DsWeights *w = &m->w;
  const int64_t C = c->hidden_size, V = c->vocab_size;
  DsStatus st;
  if ((st = ds_weights_load (w, &m->embed, 2, (int64_t[]){ V, C }, err,
                             "embed_tokens.weight")))
    return st;
  for (int l = 0; l < c->num_hidden_layers; l++)
    if ((st = load_layer (w, c, &m->layers[l], l, err)))
      return st;
  if ((st = ds_weights_load (w, &m->norm, 1, (int64_t[]){ C }, err, "norm.weight")))
    return st;
  if (c->tie_word_embeddings)
    {
      m->lm_head = m->embed;
      return DS_OK;
    }
  snprintf (w->prefix, sizeof w->prefix, "%s", m->head_prefix);
  return ds_weights_load_matrix (w, &m->lm_head, V, C, err, "lm_head.weight");
}

/* The spellings of docs/models.md §7.8, in the order they are tried. */
static const char *const spellings[][2] = {
  { "model.", "" },
  { "language_model.model.", "language_model." },
  { "model.language_model.", "" },
};

/* Whether the checkpoint (a file, or a sharded index) has `name`. */
static bool
has_tensor (const DsSafetensors *file, const DsSafetensorsIndex *idx, const char *name)
{
  return (file && ds_safetensors_find (file, name))
         || (idx && ds_safetensors_index_find (idx, name, NULL));
}

static void
pick_names (DsLlama *m, const DsSafetensors *file, const DsSafetensorsIndex *idx,
            const DsLlamaNames *names)
{
  const char *prefix = names ? names->prefix : NULL;
  const char *head = names ? names->head_prefix : NULL;
  for (size_t i = 0; i < sizeof spellings / sizeof spellings[0] && !prefix; i++)
    {
      char n[160];
      snprintf (n, sizeof n, "%sembed_tokens.weight", spellings[i][0]);
      if (has_tensor (file, idx, n))
        prefix = spellings[i][0];
    }
  for (size_t i = 0; i < sizeof spellings / sizeof spellings[0] && !head; i++)
    {
      char n[160];
      snprintf (n, sizeof n, "%slm_head.weight", spellings[i][1]);
      if (has_tensor (file, idx, n))
        head = spellings[i][1];
    }
  /* Absent every spelling, errors name the plain LlamaForCausalLM's. */
  snprintf (m->prefix, sizeof m->prefix, "%s", prefix ? prefix : spellings[0][0]);
  snprintf (m->head_prefix, sizeof m->head_prefix, "%s", head ? head : spellings[0][1]);
}

static DsStatus
create (const DsLlamaConfig *cfg, const char *path, const DsLlamaNames *names, uint64_t seed,
        DsDType random_dtype, DsBackend *be, DsLlama **out, DsError *err,
        const DsSafetensorsIndex *idx)
{
  assert (cfg && be && out);
  *out = NULL;
  DsStatus st = ds_llama_config_check (cfg, err);
  if (st != DS_OK)
    return st;
  DsLlama *m = calloc (1, sizeof *m);
  if (m)
    m->layers = calloc ((size_t) cfg->num_hidden_layers + 1, sizeof *m->layers);
  if (!m || !m->layers)
    {
      free (m);
      return ds_error_set (err, DS_ERR_NOMEM, "llama: out of host memory");
    }
  m->cfg = *cfg;
  m->be = be;
  DsSafetensors *file = NULL;
  if (path && (st = ds_safetensors_open (path, &file, err)) != DS_OK)
    {
      ds_llama_free (m);
      return ds_error_prefix (err, st, "llama");
    }
  pick_names (m, file, idx, names);
  if (file)
    ds_weights_init (&m->w, be, file, m->prefix);
  else if (idx)
    {
      ds_weights_init (&m->w, be, NULL, m->prefix);
      m->w.index = idx; /* each tensor from its shard; idx outlives m (ds-llama.h) */
    }
  else
    {
      ds_weights_init_random (&m->w, be, seed, m->prefix);
      m->w.random_dtype = random_dtype;
    }
  st = load_all (m, err);
  m->w.st = NULL;
  if (file && m->w.n_mapped > 0)
    m->file = file; /* 16-bit matrices point into the mapping */
  else if (file)
    ds_safetensors_close (file); /* the weights are copies; the mapping goes now */
  if (st != DS_OK)
    {
      ds_llama_free (m);
      return ds_error_prefix (err, st, "llama");
    }
  *out = m;
  return DS_OK;
}

DsStatus
ds_llama_load (const DsLlamaConfig *cfg, const char *weights_path, const DsLlamaNames *names,
               DsBackend *be, DsLlama **out, DsError *err)
{
  assert (weights_path);
  return create (cfg, weights_path, names, 0, DS_DTYPE_F32, be, out, err, NULL);
}

DsStatus
ds_llama_load_index (const DsLlamaConfig *cfg, const DsSafetensorsIndex *idx,
                     const DsLlamaNames *names, DsBackend *be, DsLlama **out, DsError *err)
{
  assert (idx);
  return create (cfg, NULL, names, 0, DS_DTYPE_F32, be, out, err, idx);
}

DsStatus
ds_llama_new_random (const DsLlamaConfig *cfg, uint64_t seed, DsBackend *be, DsLlama **out,
                     DsError *err)
{
  return create (cfg, NULL, NULL, seed, DS_DTYPE_F32, be, out, err, NULL);
}

DsStatus
ds_llama_new_random_stored (const DsLlamaConfig *cfg, uint64_t seed, DsDType stored,
                            DsBackend *be, DsLlama **out, DsError *err)
{
  assert (ds_dtype_is_float (stored));
  return create (cfg, NULL, NULL, seed, stored, be, out, err, NULL);
}

void
ds_llama_free (DsLlama *m)
{
  if (!m)
    return;
  ds_graph_cache_clear (&m->graphs, m->be);
  ds_weights_free (&m->w);
  if (m->file)
    ds_safetensors_close (m->file);
  free (m->layers);
  free (m);
}

const DsLlamaConfig *
ds_llama_config (const DsLlama *m)
{
  return &m->cfg;
}

const char *
ds_llama_prefix (const DsLlama *m)
{
  return m->prefix;
}

size_t
ds_llama_n_params (const DsLlama *m)
{
  return m->w.n_params;
}

size_t
ds_llama_weight_bytes (const DsLlama *m)
{
  return m->w.n_bytes;
}

/* ---- the cache ---- */

DsStatus
ds_llama_cache_new (DsLlama *m, int64_t max_len, DsLlamaCache **out, DsError *err)
{
  assert (m && out);
  *out = NULL;
  const DsLlamaConfig *c = &m->cfg;
  if (max_len < 1 || max_len > c->max_position_embeddings)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama cache: max_len %lld, expected 1 .. max_position_embeddings %d",
                         (long long) max_len, c->max_position_embeddings);
  DsLlamaCache *kv = calloc (1, sizeof *kv);
  const int n = c->num_hidden_layers;
  if (kv)
    {
      kv->k = calloc ((size_t) n + 1, sizeof *kv->k);
      kv->v = calloc ((size_t) n + 1, sizeof *kv->v);
    }
  if (!kv || !kv->k || !kv->v)
    {
      if (kv)
        free (kv->k), free (kv->v);
      free (kv);
      return ds_error_set (err, DS_ERR_NOMEM, "llama cache: out of host memory");
    }
  kv->be = m->be;
  kv->cap = max_len;
  kv->serial = atomic_fetch_add (&next_cache_serial, 1) + 1;
  const int64_t shape[2] = { max_len, (int64_t) c->num_key_value_heads * c->head_dim };
  for (int l = 0; l < n; l++)
    {
      DsStatus st = m->be->tensor_alloc (m->be, &kv->k[l], m->be->act_dtype, 2, shape, err);
      if (st == DS_OK)
        st = m->be->tensor_alloc (m->be, &kv->v[l], m->be->act_dtype, 2, shape, err);
      kv->n_layers = l + 1;
      if (st != DS_OK)
        {
          ds_llama_cache_free (kv);
          return ds_error_prefix (err, st, "llama cache of %lld positions",
                                  (long long) max_len);
        }
    }
  *out = kv;
  return DS_OK;
}

void
ds_llama_cache_free (DsLlamaCache *kv)
{
  if (!kv)
    return;
  for (int l = 0; l < kv->n_layers; l++)
    {
      if (kv->k[l].data)
        kv->be->tensor_free (kv->be, &kv->k[l]);
      if (kv->v[l].data)
        kv->be->tensor_free (kv->be, &kv->v[l]);
    }
  free (kv->k);
  free (kv->v);
  free (kv);
}

int64_t
ds_llama_cache_len (const DsLlamaCache *kv)
{
  return kv->len;
}

int64_t
ds_llama_cache_capacity (const DsLlamaCache *kv)
{
  return kv->cap;
}

void
ds_llama_cache_truncate (DsLlamaCache *kv, int64_t len)
{
  assert (len >= 0 && len <= kv->len);
  kv->len = len;
}

/* ---- forward ---- */

/* Rows [r0, r0 + n) of a [rows, C] tensor, viewed as [1, n, C]. */
static DsTensor
rows3 (const DsTensor *t, int64_t r0, int64_t n)
{
  DsTensor flat = ds_tensor_reshape (t, 2, (int64_t[]){ ds_tensor_numel (t) / t->shape[t->ndim - 1],
                                                        t->shape[t->ndim - 1] });
  DsTensor s = ds_tensor_slice0 (&flat, r0, n);
  return ds_tensor_reshape (&s, 3, (int64_t[]){ 1, n, flat.shape[1] });
}

/* What one forward runs on. src/pos/embed_rows are host arrays (NULL when
 * planning); k, v the cache tensors of every layer. step: a decode step whose
 * position only the device knows (see the top). */
typedef struct {
  DsLlama *m;
  DsBackend *be;
  DsTensor *k, *v; /* written: the new rows */
  int64_t pos0, n, n_logits;
  const int32_t *ids, *embed_rows;
  const DsTensor *embeds;
  DsTensor *logits;
  bool step;
} Fwd;

/* The arena's tensors of one forward: ids (or embedding rows) and positions
 * i32 [n], x and h [1, n, C], q and att [1, n, H*D], g and u [1, n, I]; for a
 * step also kn and vn [1, 1, Hkv*D]. */
typedef struct {
  DsTensor src, pos, x, h, q, att, g, u, kn, vn;
} Acts;

/* x [1, n, C] += attention and MLP of layer l. */
static DsStatus
layer_forward (const Fwd *f, int l, Acts *t, DsError *err)
{
  const DsLlamaConfig *c = &f->m->cfg;
  const LlamaLayer *w = &f->m->layers[l];
  DsBackend *be = f->be;
  const int heads = c->num_attention_heads, kv_heads = c->num_key_value_heads;
  const float scale = 1.0f / sqrtf ((float) c->head_dim);
  /* the new rows: in the cache at their positions, or a step's scratch rows;
   * what attention reads: the rows up to the last position, or the whole
   * cache for a step */
  const int64_t seen = f->step ? f->k[l].shape[0] : f->pos0 + f->n;
  DsTensor kn = f->step ? t->kn : rows3 (&f->k[l], f->pos0, f->n);
  DsTensor vn = f->step ? t->vn : rows3 (&f->v[l], f->pos0, f->n);
  DsTensor kall = rows3 (&f->k[l], 0, seen), vall = rows3 (&f->v[l], 0, seen);
  DsTensor *x = &t->x, *h = &t->h, *q = &t->q, *att = &t->att, *g = &t->g, *u = &t->u;
  DsStatus st;
  if ((st = ds_rms_norm (be, x, &w->in_norm, c->rms_norm_eps, h, err))
      || (st = ds_linear (be, h, &w->q, NULL, q, err))
      || (st = ds_linear (be, h, &w->k, NULL, &kn, err))
      || (st = ds_linear (be, h, &w->v, NULL, &vn, err))
      || (st = ds_rope (be, q, &t->pos, heads, c->rope_theta, q, err))
      || (st = ds_rope (be, &kn, &t->pos, kv_heads, c->rope_theta, &kn, err)))
    return st;
  if (f->step)
    st = ds_set_rows (be, &kn, &t->pos, &f->k[l], err);
  if (f->step && st == DS_OK)
    st = ds_set_rows (be, &vn, &t->pos, &f->v[l], err);
  if (st == DS_OK)
    st = f->step ? ds_attention_kv_at (be, q, &kall, &vall, heads, kv_heads, scale, &t->pos, att,
                                       err)
                 : ds_attention_kv (be, q, &kall, &vall, heads, kv_heads, scale, f->pos0, att,
                                    err);
  if (st || (st = ds_linear_add (be, att, &w->o, NULL, x, x, err)))
    return st;
  if ((st = ds_rms_norm (be, x, &w->post_norm, c->rms_norm_eps, h, err))
      || (st = ds_linear (be, h, &w->gate, NULL, g, err))
      || (st = ds_linear (be, h, &w->up, NULL, u, err))
      || (st = ds_silu (be, g, g, err))
      || (st = ds_mul (be, g, u, g, err))
      || (st = ds_linear_add (be, g, &w->down, NULL, x, x, err)))
    return st;
  return DS_OK;
}

/* x [n, C] from the token table or the caller's embeddings, one ds_embedding
 * per run of positions with the same source. */
static DsStatus
embed (const Fwd *f, const DsTensor *src, DsTensor *x2, DsError *err)
{
  if (!f->embed_rows || !f->embeds)
    return ds_embedding (f->be, src, &f->m->embed, x2, err);
  for (int64_t i = 0; i < f->n;)
    {
      const bool from_embeds = f->embed_rows[i] >= 0;
      int64_t j = i + 1;
      while (j < f->n && (f->embed_rows[j] >= 0) == from_embeds)
        j++;
      DsTensor s = ds_tensor_slice0 (src, i, j - i), y = ds_tensor_slice0 (x2, i, j - i);
      DsStatus st = ds_embedding (f->be, &s, from_embeds ? f->embeds : &f->m->embed, &y, err);
      if (st)
        return st;
      i = j;
    }
  return DS_OK;
}

/* Everything after the upload: the arena's activations, the embedding, the
 * layers and the logits. A step's recording (ds-graph.h) is of this. */
typedef struct {
  const Fwd *f;
  DsArena *a;
  Acts *t;
} Body;

static DsStatus
compute (void *user, DsError *err)
{
  const Body *b = user;
  const Fwd *f = b->f;
  Acts *t = b->t;
  DsArena *a = b->a;
  const DsLlamaConfig *c = &f->m->cfg;
  DsBackend *be = f->be;
  const int64_t n = f->n, C = c->hidden_size, I = c->intermediate_size;
  const int64_t QD = (int64_t) c->num_attention_heads * c->head_dim;
  const int64_t KD = (int64_t) c->num_key_value_heads * c->head_dim;
  DsStatus st;
  if ((st = ds_arena_act (a, &t->x, err, 3, (int64_t) 1, n, C))
      || (st = ds_arena_act (a, &t->h, err, 3, (int64_t) 1, n, C))
      || (st = ds_arena_act (a, &t->q, err, 3, (int64_t) 1, n, QD))
      || (st = ds_arena_act (a, &t->att, err, 3, (int64_t) 1, n, QD))
      || (st = ds_arena_act (a, &t->g, err, 3, (int64_t) 1, n, I))
      || (st = ds_arena_act (a, &t->u, err, 3, (int64_t) 1, n, I))
      || (f->step && (st = ds_arena_act (a, &t->kn, err, 3, (int64_t) 1, (int64_t) 1, KD)))
      || (f->step && (st = ds_arena_act (a, &t->vn, err, 3, (int64_t) 1, (int64_t) 1, KD))))
    return st;
  DsTensor x2 = ds_tensor_reshape (&t->x, 2, (int64_t[]){ n, C });
  if ((st = embed (f, &t->src, &x2, err)))
    return st;
  for (int l = 0; l < c->num_hidden_layers; l++)
    if ((st = layer_forward (f, l, t, err)))
      return st;
  if (!f->logits)
    return DS_OK;
  DsTensor xl = ds_tensor_slice0 (&x2, n - f->n_logits, f->n_logits);
  DsTensor h2 = ds_tensor_reshape (&t->h, 2, (int64_t[]){ n, C });
  h2 = ds_tensor_slice0 (&h2, 0, f->n_logits);
  if ((st = ds_rms_norm (be, &xl, &f->m->norm, c->rms_norm_eps, &h2, err)))
    return st;
  return ds_linear (be, &h2, &f->m->lm_head, NULL, f->logits, err);
}

/* What a recorded step bakes in besides the model (its own cache of
 * recordings): the cache's tensors (by its serial: a new cache may reuse a
 * freed one's address, not its tensors'), the arena's memory and position,
 * the logits. */
typedef struct {
  uint64_t cache;
  const void *arena_base, *logits;
  size_t arena_size, arena_mark;
} StepKey;
_Static_assert (sizeof (StepKey) <= DS_GRAPH_KEY_BYTES, "a step's key fits the cache");

static DsStatus
forward (const Fwd *f, uint64_t cache_serial, DsArena *a, DsError *err)
{
  const int64_t n = f->n;
  DsBackend *be = f->be;
  Acts t = { 0 };
  DsStatus st;
  if ((st = ds_arena_tensor (a, &t.src, DS_DTYPE_I32, 1, (int64_t[]){ n }, err))
      || (st = ds_arena_tensor (a, &t.pos, DS_DTYPE_I32, 1, (int64_t[]){ n }, err)))
    return st;
  if (f->ids)
    {
      int32_t *host = malloc ((size_t) n * 2 * sizeof *host);
      if (!host)
        return ds_error_set (err, DS_ERR_NOMEM, "llama: out of host memory");
      for (int64_t i = 0; i < n; i++)
        {
          bool e = f->embed_rows && f->embeds && f->embed_rows[i] >= 0;
          host[i] = e ? f->embed_rows[i] : f->ids[i];
          host[n + i] = (int32_t) (f->pos0 + i);
        }
      st = be->upload (be, &t.src, host, err);
      if (st == DS_OK)
        st = be->upload (be, &t.pos, host + n, err);
      free (host);
      if (st)
        return st;
    }
  Body b = { f, a, &t };
  if (!f->step)
    return compute (&b, err);
  StepKey k;
  memset (&k, 0, sizeof k); /* padding too: keys are compared byte for byte */
  k.cache = cache_serial;
  k.arena_base = a->base;
  k.arena_size = a->size;
  k.arena_mark = ds_arena_mark (a);
  k.logits = f->logits ? f->logits->data : NULL;
  return ds_graph_run (&f->m->graphs, be, a, &k, sizeof k, compute, &b, err);
}

size_t
ds_llama_arena_bytes (DsLlama *m, int64_t n, int64_t n_logits)
{
  assert (m);
  if (n < 1)
    return 0;
  DsBackend *null = ds_backend_null_new (m->be);
  if (!null)
    return 0;
  const DsLlamaConfig *c = &m->cfg;
  const int L = c->num_hidden_layers;
  DsTensor *kv = calloc (2 * (size_t) L + 1, sizeof *kv);
  const int64_t shape[2] = { n, (int64_t) c->num_key_value_heads * c->head_dim };
  for (int i = 0; kv && i < 2 * L; i++)
    {
      kv[i] = ds_tensor_make (m->be->act_dtype, 2, shape);
      kv[i].device = m->be->device;
      /* stand-ins, never dereferenced, apart from each other and the arena's */
      kv[i].data = (void *) (((uintptr_t) 1 << 44) + ((uintptr_t) i << 36));
    }
  DsArena a;
  ds_arena_init_measure (&a, m->be);
  DsTensor logits = ds_tensor_make (m->be->act_dtype, 2,
                                    (int64_t[]){ n_logits, c->vocab_size });
  logits.device = m->be->device;
  logits.data = (void *) ((uintptr_t) 1 << 43);
  Fwd f = { .m = m, .be = null, .k = kv, .v = kv ? kv + L : NULL, .pos0 = 0, .n = n,
            .n_logits = n_logits, .logits = n_logits > 0 ? &logits : NULL, .step = n == 1 };
  size_t result = kv && forward (&f, 0, &a, NULL) == DS_OK ? a.peak : 0;
  free (kv);
  ds_backend_free (null);
  return result;
}

DsStatus
ds_llama_forward (DsLlama *m, DsArena *a, DsLlamaCache *kv, const DsLlamaInput *in,
                  DsTensor *logits, DsError *err)
{
  assert (m && a && kv && in && in->ids);
  const DsLlamaConfig *c = &m->cfg;
  const int64_t n = in->n;
  if (n < 1)
    return ds_error_set (err, DS_ERR_INVALID, "llama: %lld tokens, expected >= 1",
                         (long long) n);
  if (kv->len + n > kv->cap)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama: %lld tokens after %lld cached do not fit the cache of %lld",
                         (long long) n, (long long) kv->len, (long long) kv->cap);
  const int64_t n_embeds = in->embeds ? in->embeds->shape[0] : 0;
  if (in->embeds && (in->embeds->ndim != 2 || in->embeds->shape[1] != c->hidden_size
                     || in->embeds->dtype != m->be->act_dtype))
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama: input embeddings must be %s [E, %d]",
                         ds_dtype_name (m->be->act_dtype), c->hidden_size);
  for (int64_t i = 0; i < n; i++)
    {
      int32_t r = in->embed_rows && in->embeds ? in->embed_rows[i] : -1;
      if (r >= n_embeds || (in->embed_rows && in->embeds && r < -1))
        return ds_error_set (err, DS_ERR_INVALID,
                             "llama: embedding row %d at position %lld is outside the %lld "
                             "rows given",
                             r, (long long) i, (long long) n_embeds);
      if (r < 0 && (in->ids[i] < 0 || in->ids[i] >= c->vocab_size))
        return ds_error_set (err, DS_ERR_INVALID,
                             "llama: token id %d at position %lld is outside the vocabulary "
                             "of %d",
                             in->ids[i], (long long) i, c->vocab_size);
    }
  int64_t n_logits = 0;
  if (logits)
    {
      n_logits = logits->ndim == 2 ? logits->shape[0] : -1;
      if ((n_logits != 1 && n_logits != n) || logits->shape[1] != c->vocab_size
          || logits->dtype != m->be->act_dtype)
        return ds_error_set (err, DS_ERR_INVALID,
                             "llama: logits must be %s [1 or %lld, %d]",
                             ds_dtype_name (m->be->act_dtype), (long long) n, c->vocab_size);
    }
  /* one token from the vocabulary: a step that may be recorded */
  const bool step = n == 1 && !(in->embed_rows && in->embeds && in->embed_rows[0] >= 0);
  Fwd f = { .m = m, .be = m->be, .k = kv->k, .v = kv->v, .pos0 = kv->len, .n = n,
            .n_logits = n_logits, .ids = in->ids, .embed_rows = in->embed_rows,
            .embeds = in->embeds, .logits = logits, .step = step };
  size_t mark = ds_arena_mark (a);
  DsStatus st = forward (&f, kv->serial, a, err);
  ds_arena_reset_to (a, mark);
  /* Mapped 16-bit matrices were read straight from the files: if one shrank
   * meanwhile, the step ran on zeros (ds-safetensors.h) and is an error. */
  for (int i = 0; st == DS_OK && m->w.n_mapped > 0 && m->w.index
                  && i < ds_safetensors_index_n_shards (m->w.index);
       i++)
    st = ds_safetensors_check_intact (ds_safetensors_index_shard (m->w.index, i), err);
  if (st == DS_OK && m->file)
    st = ds_safetensors_check_intact (m->file, err);
  if (st == DS_OK)
    kv->len += n;
  return st;
}

/* ---- choosing the next token ---- */

int32_t
ds_llama_argmax (const float *logits, int64_t n)
{
  int64_t best = -1;
  for (int64_t i = 0; i < n; i++)
    if (!isnan (logits[i]) && (best < 0 || logits[i] > logits[best]))
      best = i;
  return (int32_t) (best < 0 ? 0 : best);
}

static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct {
  float p;
  int32_t id;
} Prob;

/* Ascending by probability, ties by id descending, so that the most likely
 * token with the lowest id ends last (kept first). */
static int
prob_cmp (const void *a, const void *b)
{
  const Prob *x = a, *y = b;
  if (x->p != y->p)
    return x->p < y->p ? -1 : 1;
  return x->id > y->id ? -1 : x->id < y->id;
}

int32_t
ds_llama_sample (const float *logits, int64_t n, const DsLlamaSampling *s, uint64_t *state)
{
  assert (logits && s && state && n >= 1);
  if (!(s->temperature > 0))
    return ds_llama_argmax (logits, n);
  Prob *pr = malloc ((size_t) n * sizeof *pr);
  if (!pr)
    return ds_llama_argmax (logits, n);
  /* softmax of logits / temperature in f32 (max subtracted, sum in double) */
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    {
      float z = logits[i] / s->temperature;
      mx = z > mx ? z : mx;
    }
  double sum = 0;
  for (int64_t i = 0; i < n; i++)
    {
      pr[i] = (Prob){ expf (logits[i] / s->temperature - mx), (int32_t) i };
      sum += pr[i].p;
    }
  for (int64_t i = 0; i < n; i++)
    pr[i].p = (float) (pr[i].p / sum);
  int64_t first = 0; /* kept: sorted[first .. n) */
  if (s->top_p < 1.0f)
    {
      qsort (pr, (size_t) n, sizeof *pr, prob_cmp);
      /* TopPLogitsWarper: drop while the ascending cumulative sum <= 1 - top_p,
       * never the last (most likely) token. */
      float cum = 0.0f;
      const float drop = 1.0f - s->top_p;
      while (first < n - 1 && (cum += pr[first].p) <= drop)
        first++;
      /* back to index order for the draw (ids are distinct) */
      for (int64_t i = first + 1; i < n; i++)
        for (int64_t j = i; j > first && pr[j - 1].id > pr[j].id; j--)
          {
            Prob t = pr[j];
            pr[j] = pr[j - 1];
            pr[j - 1] = t;
          }
    }
  double kept = 0;
  for (int64_t i = first; i < n; i++)
    kept += pr[i].p;
  const double u = (double) (splitmix64 (state) >> 11) * 0x1.0p-53 * kept;
  double acc = 0;
  int32_t id = pr[n - 1].id;
  for (int64_t i = first; i < n; i++)
    {
      acc += pr[i].p;
      if (u < acc && pr[i].p > 0)
        {
          id = pr[i].id;
          break;
        }
    }
  free (pr);
  return id;
}

DsStatus
ds_llama_generate (DsLlama *m, DsLlamaCache *kv, const int32_t *ids, int64_t n_prompt,
                   int64_t n_new, const DsLlamaSampling *sampling, int32_t eos_id, int32_t *out,
                   int64_t *n_out, DsError *err)
{
  assert (m && kv && ids && n_out && (out || n_new == 0));
  *n_out = 0;
  const int64_t V = m->cfg.vocab_size;
  if (n_prompt < 1 || n_new < 0)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama generate: prompt of %lld tokens and %lld new, expected >= 1 "
                         "and >= 0",
                         (long long) n_prompt, (long long) n_new);
  if (n_new == 0)
    return DS_OK;
  if (kv->len + n_prompt + n_new - 1 > kv->cap)
    return ds_error_set (err, DS_ERR_INVALID,
                         "llama generate: %lld cached + %lld prompt + %lld new tokens do not "
                         "fit the cache of %lld",
                         (long long) kv->len, (long long) n_prompt, (long long) n_new,
                         (long long) kv->cap);
  DsBackend *be = m->be;
  size_t bytes = ds_llama_arena_bytes (m, n_prompt, 1), b1 = ds_llama_arena_bytes (m, 1, 1);
  DsArena a = { 0 };
  DsTensor logits = { 0 };
  float *host = malloc ((size_t) V * sizeof *host);
  DsStatus st = host ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "llama: out of host memory");
  if (st == DS_OK)
    st = ds_backend_arena_init (be, &a, bytes > b1 ? bytes : b1, err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &logits, be->act_dtype, 2, (int64_t[]){ 1, V }, err);
  uint64_t state = sampling ? sampling->seed : 0;
  DsLlamaInput in = { .ids = ids, .n = n_prompt };
  for (int64_t t = 0; st == DS_OK && t < n_new; t++)
    {
      if ((st = ds_llama_forward (m, &a, kv, &in, &logits, err))
          || (st = ds_backend_download_f32 (be, &logits, host, err)))
        break;
      int32_t next = sampling ? ds_llama_sample (host, V, sampling, &state)
                              : ds_llama_argmax (host, V);
      out[(*n_out)++] = next;
      if (next == eos_id)
        break;
      in = (DsLlamaInput){ .ids = &out[t], .n = 1 };
    }
  if (logits.data)
    be->tensor_free (be, &logits);
  ds_backend_arena_free (be, &a);
  free (host);
  return st;
}
