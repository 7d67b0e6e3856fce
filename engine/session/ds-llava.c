/* ds-llava.c: see ds-llava.h. */
#include "ds-llava.h"
#include "ds-util.h"

#include "ds-safetensors-index.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Config and processor files are small; anything bigger is not one. */
#define MAX_JSON_BYTES (16 << 20)

struct DsLlava {
  DsLlavaConfig cfg;
  DsClipImageConfig image;
  char image_token[64];  /* the placeholder text: "<image>" */
  DsBackend *be;
  DsSafetensorsIndex *idx; /* open while the models live: weights may map it */
  DsLlamaTokenizer *tok;
  DsClipVision *vision;
  DsLlama *llm;
  DsWeights proj_w;
  DsLinearW proj1; /* [C, Cv] (+ [C]) */
  DsLinearW proj2; /* [C, C] (+ [C]) */
};

/* ---- files ---- */

/* *text transfer full. */
static DsStatus
read_text (const char *path, char **text, DsError *err)
{
  *text = NULL;
  FILE *f = fopen (path, "rb");
  if (!f)
    return ds_error_set (err, errno == ENOENT ? DS_ERR_NOT_FOUND : DS_ERR_IO,
                         "%s: cannot open: %s", path, strerror (errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  DsStatus st = DS_OK;
  for (;;)
    {
      if (n + 4096 + 1 > cap)
        {
          cap = cap ? 2 * cap : 8192;
          char *b = cap <= MAX_JSON_BYTES ? realloc (buf, cap) : NULL;
          if (!b)
            {
              st = cap > MAX_JSON_BYTES
                     ? ds_error_set (err, DS_ERR_FORMAT, "%s: larger than %d MB: not a "
                                     "config file", path, MAX_JSON_BYTES >> 20)
                     : ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
              break;
            }
          buf = b;
        }
      size_t got = fread (buf + n, 1, 4096, f);
      n += got;
      if (got < 4096)
        {
          if (ferror (f))
            st = ds_error_set (err, DS_ERR_IO, "%s: read error", path);
          break;
        }
    }
  fclose (f);
  if (st != DS_OK)
    {
      free (buf);
      return st;
    }
  buf[n] = '\0';
  *text = buf;
  return DS_OK;
}

static DsStatus
read_dir_text (const char *dir, const char *name, char **text, char **path, DsError *err)
{
  *path = ds_path_join (dir, name);
  if (!*path)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  return read_text (*path, text, err);
}

/* ---- config.json ---- */

DsStatus
ds_llava_config_parse (const char *json_text, const char *path, DsLlavaConfig *out,
                       DsError *err)
{
  assert (json_text && path && out);
  memset (out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loads (json_text, 0, &jerr);
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
  DsStatus st = DS_OK;
  json_t *v;
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON object", path);
  else if (!json_is_string (v = json_object_get (root, "model_type")))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"model_type\" %s, expected \"llava\"", path,
                       v ? "is not a string" : "is missing");
  else if (strcmp (json_string_value (v), "llava") != 0)
    st = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: model_type \"%s\", expected \"llava\" "
                       "(a llava-hf LLaVA-1.5 folder)", path, json_string_value (v));
  else if (!json_is_object (json_object_get (root, "text_config")))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"text_config\" %s, expected the language "
                       "model's LlamaConfig object", path,
                       json_object_get (root, "text_config") ? "is not an object"
                                                            : "is missing");
  if (st != DS_OK)
    goto out;

  v = json_object_get (root, "image_token_index");
  if (!v)
    v = json_object_get (root, "image_token_id");
  if (!json_is_integer (v) || json_integer_value (v) < 0
      || json_integer_value (v) > INT32_MAX)
    {
      st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"image_token_index\" %s, expected the "
                         "<image> token's id (32000 for llava-hf)", path,
                         v ? "is not a non-negative integer" : "is missing");
      goto out;
    }
  out->image_token_id = (int32_t) json_integer_value (v);

  v = json_object_get (root, "projector_hidden_act");
  if (v && (!json_is_string (v) || strcmp (json_string_value (v), "gelu") != 0))
    {
      st = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: projector_hidden_act %s%s%s, expected "
                         "\"gelu\" (LLaVA-1.5's mlp2x_gelu)", path, json_is_string (v) ? "\"" : "",
                         json_is_string (v) ? json_string_value (v) : "not a string",
                         json_is_string (v) ? "\"" : "");
      goto out;
    }
  v = json_object_get (root, "multimodal_projector_bias");
  if (v && !json_is_boolean (v))
    {
      st = ds_error_set (err, DS_ERR_FORMAT, "%s: multimodal_projector_bias is not a boolean",
                         path);
      goto out;
    }
  out->projector_bias = v ? json_is_true (v) : true;

  if ((st = ds_clip_vision_config_parse (json_text, path, &out->vision, err)) != DS_OK
      || (st = ds_llama_config_parse (json_text, path, &out->text, err)) != DS_OK)
    goto out;
  if (out->image_token_id >= out->text.vocab_size)
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: image_token_index %d is outside the "
                       "vocabulary of %d (text_config.vocab_size)", path,
                       (int) out->image_token_id, out->text.vocab_size);
out:
  json_decref (root);
  return st;
}

/* ---- opening ---- */

/* preprocessor_config.json, checked against the tower's image size. */
static DsStatus
open_image_config (DsLlava *lv, const char *dir, DsError *err)
{
  char *text = NULL, *path = NULL;
  DsStatus st = read_dir_text (dir, "preprocessor_config.json", &text, &path, err);
  if (st == DS_OK)
    st = ds_clip_image_config_parse (text, path, &lv->image, err);
  const int S = lv->cfg.vision.image_size;
  if (st == DS_OK && (!lv->image.do_center_crop || lv->image.crop_h != S
                      || lv->image.crop_w != S))
    st = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: the processor gives %dx%d pixels "
                       "(crop_size%s), the vision tower takes %dx%d (vision_config.image_size)",
                       path, lv->image.crop_w, lv->image.crop_h,
                       lv->image.do_center_crop ? "" : ", do_center_crop false", S, S);
  free (text);
  free (path);
  return st;
}

/* processor_config.json (optional): the placeholder text and, when it says,
 * the count the processor expands it to, which must be the tower's rows. */
static DsStatus
open_processor_config (DsLlava *lv, const char *dir, DsError *err)
{
  snprintf (lv->image_token, sizeof lv->image_token, "<image>");
  char *path = ds_path_join (dir, "processor_config.json");
  if (!path)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!ds_path_exists (path))
    {
      free (path);
      return DS_OK;
    }
  char *text = NULL;
  DsStatus st = read_text (path, &text, err);
  json_t *root = NULL;
  json_error_t jerr;
  if (st == DS_OK && !(root = json_loads (text, 0, &jerr)))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
  else if (st == DS_OK && !json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON object", path);
  if (st == DS_OK)
    {
      json_t *tokv = json_object_get (root, "image_token");
      json_t *patch = json_object_get (root, "patch_size");
      json_t *extra = json_object_get (root, "num_additional_image_tokens");
      json_t *strat = json_object_get (root, "vision_feature_select_strategy");
      if (tokv && (!json_is_string (tokv) || json_string_length (tokv) == 0
                   || json_string_length (tokv) >= sizeof lv->image_token))
        st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"image_token\" is not a short string",
                           path);
      else if (tokv)
        snprintf (lv->image_token, sizeof lv->image_token, "%s", json_string_value (tokv));
      if (st == DS_OK && json_is_integer (patch) && json_integer_value (patch) > 0)
        {
          /* LlavaProcessor: (h / patch)·(w / patch) + additional, − 1 for "default" */
          long long p = json_integer_value (patch);
          long long n = (lv->image.crop_h / p) * (lv->image.crop_w / p)
                        + (json_is_integer (extra) ? json_integer_value (extra) : 0);
          if (json_is_string (strat) && strcmp (json_string_value (strat), "default") == 0)
            n -= 1;
          if (n != ds_clip_vision_n_tokens (lv->vision))
            st = ds_error_set (err, DS_ERR_FORMAT, "%s: the processor would expand the image "
                               "token into %lld copies (patch_size, "
                               "num_additional_image_tokens, vision_feature_select_strategy), "
                               "the vision tower gives %lld rows",
                               path, n, (long long) ds_clip_vision_n_tokens (lv->vision));
        }
    }
  json_decref (root);
  free (text);
  free (path);
  return st;
}

static DsStatus
open_tokenizer (DsLlava *lv, const char *dir, DsError *err)
{
  DsStatus st = ds_llama_tokenizer_open (dir, &lv->tok, err);
  if (st != DS_OK)
    return st;
  int32_t id = ds_llama_tokenizer_token_id (lv->tok, lv->image_token);
  if (id != lv->cfg.image_token_id)
    return ds_error_set (err, DS_ERR_FORMAT, "%s/tokenizer.json: %s is %s%d, config.json's "
                         "image_token_index is %d", dir, lv->image_token,
                         id < 0 ? "not a token (" : "id ", (int) id,
                         (int) lv->cfg.image_token_id);
  if (ds_llama_tokenizer_n_vocab (lv->tok) > lv->cfg.text.vocab_size)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: the tokenizer has %d ids, the language "
                         "model's vocabulary only %d (text_config.vocab_size)", dir,
                         (int) ds_llama_tokenizer_n_vocab (lv->tok), lv->cfg.text.vocab_size);
  return DS_OK;
}

static const char *const projector_prefixes[] = {
  "multi_modal_projector.",       /* llava-hf */
  "model.multi_modal_projector.", /* re-saved by transformers 5 */
};

static DsStatus
load_projector (DsLlava *lv, DsError *err)
{
  const char *prefix = projector_prefixes[0];
  for (size_t i = 0; i < sizeof projector_prefixes / sizeof projector_prefixes[0]; i++)
    {
      char name[128];
      snprintf (name, sizeof name, "%slinear_1.weight", projector_prefixes[i]);
      if (ds_safetensors_index_find (lv->idx, name, NULL))
        {
          prefix = projector_prefixes[i];
          break;
        }
    }
  ds_weights_init (&lv->proj_w, lv->be, NULL, prefix);
  lv->proj_w.index = lv->idx;
  const int64_t Cv = lv->cfg.vision.hidden_size, C = lv->cfg.text.hidden_size;
  const bool bias = lv->cfg.projector_bias;
  DsStatus st = ds_weights_linear (&lv->proj_w, &lv->proj1, C, Cv, bias, err, "linear_1");
  if (st == DS_OK)
    st = ds_weights_linear (&lv->proj_w, &lv->proj2, C, C, bias, err, "linear_2");
  lv->proj_w.st = NULL;
  return st == DS_OK ? DS_OK : ds_error_prefix (err, st, "projector");
}

DsStatus
ds_llava_open (const char *dir, DsBackend *be, DsLlava **out, DsError *err)
{
  assert (dir && be && out);
  *out = NULL;
  DsLlava *lv = calloc (1, sizeof *lv);
  if (!lv)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  lv->be = be;
  char *text = NULL, *path = NULL;
  DsStatus st = read_dir_text (dir, "config.json", &text, &path, err);
  if (st == DS_OK)
    st = ds_llava_config_parse (text, path, &lv->cfg, err);
  free (text);
  free (path);
  if (st == DS_OK)
    st = open_image_config (lv, dir, err);
  if (st == DS_OK)
    st = ds_safetensors_index_open (dir, &lv->idx, err);
  if (st == DS_OK)
    st = ds_clip_vision_load_index (&lv->cfg.vision, lv->idx, NULL, be, &lv->vision, err);
  if (st == DS_OK)
    st = open_processor_config (lv, dir, err);
  if (st == DS_OK)
    st = open_tokenizer (lv, dir, err);
  if (st == DS_OK)
    st = load_projector (lv, err);
  if (st == DS_OK)
    st = ds_llama_load_index (&lv->cfg.text, lv->idx, NULL, be, &lv->llm, err);
  if (st != DS_OK)
    {
      ds_llava_free (lv);
      return ds_error_prefix (err, st, "llava");
    }
  *out = lv;
  return DS_OK;
}

void
ds_llava_free (DsLlava *lv)
{
  if (!lv)
    return;
  ds_llama_free (lv->llm);
  ds_clip_vision_free (lv->vision);
  ds_weights_free (&lv->proj_w);
  ds_llama_tokenizer_free (lv->tok);
  ds_safetensors_index_close (lv->idx); /* last: weights may point into it */
  free (lv);
}

const DsLlavaConfig *
ds_llava_config (const DsLlava *lv)
{
  return &lv->cfg;
}

const DsClipImageConfig *
ds_llava_image_config (const DsLlava *lv)
{
  return &lv->image;
}

const DsLlamaTokenizer *
ds_llava_tokenizer (const DsLlava *lv)
{
  return lv->tok;
}

DsLlama *
ds_llava_decoder (DsLlava *lv)
{
  return lv->llm;
}

int64_t
ds_llava_n_image_tokens (const DsLlava *lv)
{
  return ds_clip_vision_n_tokens (lv->vision);
}

/* ---- the image ---- */

DsStatus
ds_llava_vision_features (DsLlava *lv, const DsImage *img, DsTensor *clip, DsError *err)
{
  assert (lv && img && clip);
  memset (clip, 0, sizeof *clip);
  DsBackend *be = lv->be;
  const int64_t N = ds_clip_vision_n_tokens (lv->vision), Cv = lv->cfg.vision.hidden_size;
  DsTensor px = { 0 }, vis = { 0 };
  DsArena a = { 0 };
  DsStatus st = ds_clip_image_preprocess (img, &lv->image, &px, err);
  if (st == DS_OK)
    st = ds_backend_arena_init (be, &a, ds_clip_vision_arena_bytes (lv->vision, 1), err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &vis, be->act_dtype, 2, (int64_t[]){ N, Cv }, err);
  if (st == DS_OK)
    {
      DsTensor vis3 = ds_tensor_reshape (&vis, 3, (int64_t[]){ 1, N, Cv });
      st = ds_clip_vision_forward (lv->vision, be, &a, &px, &vis3, err);
    }
  if (st == DS_OK)
    st = ds_backend_download_new_f32 (be, &vis, clip, err); /* [N, Cv] */
  ds_tensor_free (&px);
  if (vis.data)
    be->tensor_free (be, &vis);
  ds_backend_arena_free (be, &a);
  return st == DS_OK ? DS_OK : ds_error_prefix (err, st, "llava image");
}

DsStatus
ds_llava_project (DsLlava *lv, const DsTensor *rows, DsTensor *out, DsError *err)
{
  assert (lv && rows && out);
  memset (out, 0, sizeof *out);
  DsBackend *be = lv->be;
  const int64_t Cv = lv->cfg.vision.hidden_size, C = lv->cfg.text.hidden_size;
  char shape[64];
  if (rows->ndim != 2 || rows->dtype != DS_DTYPE_F32 || rows->device != DS_DEVICE_CPU
      || rows->shape[0] < 1 || rows->shape[1] != Cv)
    return ds_error_set (err, DS_ERR_INVALID, "llava projector: rows %s, expected host f32 "
                         "[E >= 1, %lld] (the vision width)",
                         ds_shape_str (rows->ndim, rows->shape, shape, sizeof shape),
                         (long long) Cv);
  const int64_t E = rows->shape[0];
  DsTensor x = { 0 }, h = { 0 }, g = { 0 }, y = { 0 };
  DsStatus st = be->tensor_alloc (be, &x, be->act_dtype, 2, (int64_t[]){ E, Cv }, err);
  if (st == DS_OK)
    st = ds_backend_upload_f32 (be, &x, ds_tensor_f32 (rows), err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &h, be->act_dtype, 2, (int64_t[]){ E, C }, err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &g, be->act_dtype, 2, (int64_t[]){ E, C }, err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &y, be->act_dtype, 2, (int64_t[]){ E, C }, err);
  /* mlp2x_gelu (docs/models.md §7.1): Linear, exact GELU, Linear */
  if (st == DS_OK)
    st = ds_linear (be, &x, &lv->proj1.w, ds_bias (&lv->proj1.b), &h, err);
  if (st == DS_OK)
    st = ds_gelu (be, &h, &g, err);
  if (st == DS_OK)
    st = ds_linear (be, &g, &lv->proj2.w, ds_bias (&lv->proj2.b), &y, err);
  if (st == DS_OK)
    st = ds_backend_download_new_f32 (be, &y, out, err); /* [E, C] */
  DsTensor *dev[] = { &x, &h, &g, &y };
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    if (dev[i]->data)
      be->tensor_free (be, dev[i]);
  return st == DS_OK ? DS_OK : ds_error_prefix (err, st, "llava projector");
}

DsStatus
ds_llava_image_features (DsLlava *lv, const DsImage *img, DsTensor *features, DsError *err)
{
  assert (lv && img && features);
  memset (features, 0, sizeof *features);
  DsTensor clip = { 0 };
  DsStatus st = ds_llava_vision_features (lv, img, &clip, err);
  if (st == DS_OK)
    st = ds_llava_project (lv, &clip, features, err);
  ds_tensor_free (&clip);
  return st;
}

/* ---- the prompt ---- */

DsStatus
ds_llava_encode_prompt (const DsLlava *lv, const char *prompt, int64_t n_image_tokens,
                        int32_t **ids, int64_t *n_ids, DsError *err)
{
  assert (lv && prompt && ids && n_ids && n_image_tokens >= 0);
  *ids = NULL;
  *n_ids = 0;
  const char *tokstr = lv->image_token;
  const size_t tl = strlen (tokstr);
  size_t n_tok = 0;
  for (const char *p = strstr (prompt, tokstr); p; p = strstr (p + tl, tokstr))
    n_tok++;
  /* LlavaProcessor replaces each placeholder by n copies of itself before
   * tokenising, so the text around it tokenises exactly as transformers'. */
  if (n_image_tokens > 0 && n_tok > (SIZE_MAX / 2 - strlen (prompt)) / tl / (size_t) n_image_tokens)
    return ds_error_set (err, DS_ERR_INVALID, "llava prompt: too many image tokens");
  size_t len = strlen (prompt) + n_tok * tl * ((size_t) n_image_tokens) + 1;
  char *text = malloc (len), *w = text;
  if (!text)
    return ds_error_set (err, DS_ERR_NOMEM, "llava prompt: out of memory");
  const char *r = prompt;
  for (const char *p = strstr (r, tokstr); p; p = strstr (r, tokstr))
    {
      memcpy (w, r, (size_t) (p - r));
      w += p - r;
      for (int64_t k = 0; k < n_image_tokens; k++, w += tl)
        memcpy (w, tokstr, tl);
      r = p + tl;
    }
  strcpy (w, r);
  DsStatus st = ds_llama_tokenizer_encode (lv->tok, text, true, ids, n_ids, err);
  free (text);
  return st == DS_OK ? DS_OK : ds_error_prefix (err, st, "llava prompt");
}

/* ---- generation ---- */

void
ds_llava_params_default (DsLlavaParams *p)
{
  memset (p, 0, sizeof *p);
  p->max_new_tokens = 256;
  p->sampling = (DsLlamaSampling){ .temperature = 0.0f, .top_p = 1.0f, .seed = 0 };
  p->eos_id = DS_LLAVA_EOS_DEFAULT;
}

void
ds_llava_answer_clear (DsLlavaAnswer *ans)
{
  if (!ans)
    return;
  free (ans->ids);
  free (ans->text);
  memset (ans, 0, sizeof *ans);
}

typedef struct {
  char *buf;
  size_t len, cap;
} TextBuf;

static bool
text_append (TextBuf *t, const char *s)
{
  size_t n = strlen (s);
  if (t->len + n + 1 > t->cap)
    {
      size_t cap = t->cap ? t->cap : 256;
      while (cap < t->len + n + 1)
        cap *= 2;
      char *b = realloc (t->buf, cap);
      if (!b)
        return false;
      t->buf = b;
      t->cap = cap;
    }
  memcpy (t->buf + t->len, s, n + 1);
  t->len += n;
  return true;
}

/* Image-token positions -> rows of the embedding block, in order. *rows
 * transfer full. */
static DsStatus
image_rows (const DsLlava *lv, const int32_t *ids, int64_t n, const DsTensor *embeds,
            int32_t **rows, DsError *err)
{
  const int64_t C = lv->cfg.text.hidden_size;
  int64_t E = embeds ? embeds->shape[0] : 0, found = 0;
  *rows = NULL;
  if (embeds && (embeds->ndim != 2 || embeds->shape[1] != C || embeds->dtype != DS_DTYPE_F32
                 || embeds->device != DS_DEVICE_CPU))
    return ds_error_set (err, DS_ERR_INVALID, "llava: the embedding block must be host f32 "
                         "[rows, %lld] (the text width)", (long long) C);
  int32_t *r = malloc ((size_t) n * sizeof *r);
  if (!r)
    return ds_error_set (err, DS_ERR_NOMEM, "llava: out of memory");
  for (int64_t i = 0; i < n; i++)
    r[i] = ids[i] == lv->cfg.image_token_id ? (int32_t) found++ : -1;
  if (found != E)
    {
      free (r);
      return ds_error_set (err, DS_ERR_INVALID, "llava: the prompt has %lld image tokens, the "
                           "embedding block %lld rows", (long long) found, (long long) E);
    }
  *rows = r;
  return DS_OK;
}

/* The embedding block on the backend (*dev->data NULL when E is 0). */
static DsStatus
upload_embeds (DsBackend *be, const DsTensor *embeds, DsTensor *dev, DsError *err)
{
  memset (dev, 0, sizeof *dev);
  if (!embeds || embeds->shape[0] == 0)
    return DS_OK;
  DsStatus st = be->tensor_alloc (be, dev, be->act_dtype, 2, embeds->shape, err);
  if (st == DS_OK)
    st = ds_backend_upload_f32 (be, dev, ds_tensor_f32 (embeds), err);
  return st;
}

static DsStatus
check_context (const DsLlava *lv, int64_t n_ids, DsError *err)
{
  const int64_t max_pos = lv->cfg.text.max_position_embeddings;
  if (n_ids < 1 || n_ids >= max_pos)
    return ds_error_set (err, DS_ERR_INVALID, "llava: a prompt of %lld tokens (with the "
                         "image's) does not fit the context of %lld", (long long) n_ids,
                         (long long) max_pos);
  return DS_OK;
}

DsStatus
ds_llava_prompt_logits (DsLlava *lv, const int32_t *ids, int64_t n_ids, const DsTensor *embeds,
                        DsTensor *logits, DsError *err)
{
  assert (lv && ids && logits);
  memset (logits, 0, sizeof *logits);
  DsBackend *be = lv->be;
  const int64_t V = lv->cfg.text.vocab_size;
  int32_t *rows = NULL;
  DsTensor dev = { 0 }, lg = { 0 };
  DsArena a = { 0 };
  DsLlamaCache *kv = NULL;
  DsStatus st = check_context (lv, n_ids, err);
  if (st == DS_OK)
    st = image_rows (lv, ids, n_ids, embeds, &rows, err);
  if (st == DS_OK)
    st = upload_embeds (be, embeds, &dev, err);
  if (st == DS_OK)
    st = ds_llama_cache_new (lv->llm, n_ids, &kv, err);
  if (st == DS_OK)
    st = ds_backend_arena_init (be, &a, ds_llama_arena_bytes (lv->llm, n_ids, n_ids), err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &lg, be->act_dtype, 2, (int64_t[]){ n_ids, V }, err);
  if (st == DS_OK)
    {
      DsLlamaInput in = { .ids = ids, .n = n_ids, .embeds = dev.data ? &dev : NULL,
                          .embed_rows = dev.data ? rows : NULL };
      st = ds_llama_forward (lv->llm, &a, kv, &in, &lg, err);
    }
  if (st == DS_OK)
    st = ds_backend_download_new_f32 (be, &lg, logits, err); /* [n_ids, V] */
  if (lg.data)
    be->tensor_free (be, &lg);
  if (dev.data)
    be->tensor_free (be, &dev);
  ds_backend_arena_free (be, &a);
  ds_llama_cache_free (kv);
  free (rows);
  return st;
}

/* One new id into the answer: its text (if any) to the buffer and callback. */
static DsStatus
emit (DsLlava *lv, DsLlamaDecodeStream *ds, int32_t id, bool finish, const DsLlavaParams *p,
      TextBuf *text, DsError *err)
{
  char *piece = NULL;
  DsStatus st = DS_OK;
  if (finish)
    st = ds_llama_decode_stream_finish (ds, &piece, err);
  else if (id < ds_llama_tokenizer_n_vocab (lv->tok))
    st = ds_llama_decode_stream_push (ds, id, &piece, err);
  /* else: a padding row of the embedding table (llava-hf's 32002..32063)
   * has no text */
  if (st == DS_OK && piece && piece[0])
    {
      if (!text_append (text, piece))
        st = ds_error_set (err, DS_ERR_NOMEM, "llava: out of memory");
      else if (p->on_text)
        p->on_text (piece, id, p->user);
    }
  free (piece);
  return st;
}

DsStatus
ds_llava_generate (DsLlava *lv, const int32_t *ids, int64_t n_ids, const DsTensor *embeds,
                   const DsLlavaParams *p, DsLlavaAnswer *ans, DsError *err)
{
  assert (lv && ids && p && ans);
  memset (ans, 0, sizeof *ans);
  ans->n_prompt = n_ids;
  DsBackend *be = lv->be;
  const int64_t V = lv->cfg.text.vocab_size;
  const int64_t max_pos = lv->cfg.text.max_position_embeddings;
  if (p->max_new_tokens < 1)
    return ds_error_set (err, DS_ERR_INVALID, "llava: max_new_tokens %lld, expected >= 1",
                         (long long) p->max_new_tokens);
  DsStatus st = check_context (lv, n_ids, err);
  if (st != DS_OK)
    return st;
  const int64_t n_new = p->max_new_tokens < max_pos - n_ids ? p->max_new_tokens
                                                             : max_pos - n_ids;
  const int32_t eos = p->eos_id == DS_LLAVA_EOS_DEFAULT ? ds_llama_tokenizer_eos_id (lv->tok)
                      : p->eos_id == DS_LLAVA_EOS_NONE  ? -1
                                                        : p->eos_id;
  int32_t *rows = NULL;
  DsTensor dev = { 0 }, lg = { 0 };
  DsArena a = { 0 };
  DsLlamaCache *kv = NULL;
  DsLlamaDecodeStream *ds = NULL;
  TextBuf text = { 0 };
  float *host = malloc ((size_t) V * sizeof *host);
  ans->ids = malloc ((size_t) n_new * sizeof *ans->ids);
  if (!host || !ans->ids)
    st = ds_error_set (err, DS_ERR_NOMEM, "llava: out of memory");
  if (st == DS_OK)
    st = image_rows (lv, ids, n_ids, embeds, &rows, err);
  if (st == DS_OK)
    st = upload_embeds (be, embeds, &dev, err);
  if (st == DS_OK)
    st = ds_llama_cache_new (lv->llm, n_ids + n_new, &kv, err);
  if (st == DS_OK)
    {
      size_t b0 = ds_llama_arena_bytes (lv->llm, n_ids, 1);
      size_t b1 = ds_llama_arena_bytes (lv->llm, 1, 1);
      st = ds_backend_arena_init (be, &a, b0 > b1 ? b0 : b1, err);
    }
  if (st == DS_OK)
    st = be->tensor_alloc (be, &lg, be->act_dtype, 2, (int64_t[]){ 1, V }, err);
  if (st == DS_OK)
    st = ds_llama_decode_stream_new (lv->tok, true, &ds, err);
  if (st == DS_OK && !text_append (&text, ""))
    st = ds_error_set (err, DS_ERR_NOMEM, "llava: out of memory");

  uint64_t state = p->sampling.seed;
  DsLlamaInput in = { .ids = ids, .n = n_ids, .embeds = dev.data ? &dev : NULL,
                      .embed_rows = dev.data ? rows : NULL };
  for (int64_t t = 0; st == DS_OK && t < n_new; t++)
    {
      if (p->cancel && atomic_load (p->cancel))
        {
          st = ds_error_set (err, DS_ERR_CANCELLED, "llava: cancelled after %lld tokens",
                             (long long) ans->n_ids);
          break;
        }
      if ((st = ds_llama_forward (lv->llm, &a, kv, &in, &lg, err))
          || (st = ds_backend_download_f32 (be, &lg, host, err)))
        break;
      int32_t next = ds_llama_sample (host, V, &p->sampling, &state);
      ans->ids[ans->n_ids++] = next;
      if ((st = emit (lv, ds, next, false, p, &text, err)) != DS_OK)
        break;
      if (next == eos)
        {
          ans->stopped_at_eos = true;
          break;
        }
      in = (DsLlamaInput){ .ids = &ans->ids[t], .n = 1 };
    }
  /* The held-back bytes, also after a cancel, so text is the ids' decode. */
  if (ds && (st == DS_OK || st == DS_ERR_CANCELLED))
    {
      DsError e2 = { 0 };
      DsStatus st2 = emit (lv, ds, -1, true, p, &text, &e2);
      if (st == DS_OK && st2 != DS_OK)
        {
          st = st2;
          if (err)
            *err = e2;
        }
    }
  ans->text = text.buf;
  if (!ans->text)
    ans->text = strdup ("");
  ds_llama_decode_stream_free (ds);
  if (lg.data)
    be->tensor_free (be, &lg);
  if (dev.data)
    be->tensor_free (be, &dev);
  ds_backend_arena_free (be, &a);
  ds_llama_cache_free (kv);
  free (rows);
  free (host);
  return st;
}

DsStatus
ds_llava_ask (DsLlava *lv, const DsImage *img, const char *question, const DsLlavaParams *p,
              DsLlavaAnswer *ans, DsError *err)
{
  assert (lv && img && question && p && ans);
  memset (ans, 0, sizeof *ans);
  char *prompt = NULL;
  int32_t *ids = NULL;
  int64_t n = 0;
  DsTensor feats = { 0 };
  DsStatus st = ds_llava_prompt (NULL, question, true, &prompt, err);
  if (st == DS_OK)
    st = ds_llava_image_features (lv, img, &feats, err);
  if (st == DS_OK)
    st = ds_llava_encode_prompt (lv, prompt, feats.shape[0], &ids, &n, err);
  if (st == DS_OK)
    st = ds_llava_generate (lv, ids, n, &feats, p, ans, err);
  ds_tensor_free (&feats);
  free (ids);
  free (prompt);
  return st;
}

/* ---- fusion with diffusion features ---- */

DsStatus
ds_llava_fusion_check (DsLlava *lv, DsSession *s, const DsFusion *f, DsError *err)
{
  assert (lv && s && f);
  const DsFusionConfig *c = ds_fusion_config (f);
  const char *path = ds_fusion_config_path (f);
  DsStatus st = ds_fusion_check_vision (f, lv->cfg.vision.hidden_size, "the LLaVA model", err);
  if (st != DS_OK)
    return st;
  DsPipeline *p = ds_session_pipeline (s);
  const int size = ds_query_default (s).size;
  const DsProbeList *list;
  if ((st = ds_pipeline_probes (p, size, &list, err)) != DS_OK)
    return st;
  int i = ds_probe_list_find (list, c->probe);
  if (i < 0)
    return ds_error_set (err, DS_ERR_NOT_FOUND, "%s: \"probe\" \"%s\" is not a probe of the SD "
                         "model (%s at %d; `diffscope-cli probes` lists them)", path, c->probe,
                         ds_pipeline_label (p), size);
  if ((st = ds_fusion_check_probe (f, &list->probes[i], err)) != DS_OK)
    return st;
  int unet_t;
  if ((st = ds_pipeline_unet_timestep (p, c->t, DS_TIMESTEP_DIRECT, &unet_t, err)) != DS_OK)
    return ds_error_prefix (err, st, "%s: \"t\"", path);
  return DS_OK;
}

/* The checkpoint's probe for the image and question -> *tokens host [g², C]. */
static DsStatus
diffusion_tokens (DsSession *s, const DsFusion *f, const DsImage *img, const char *question,
                  const atomic_int *cancel, DsTensor *tokens, DsError *err)
{
  const DsFusionConfig *c = ds_fusion_config (f);
  const char *probes[] = { c->probe };
  DsQuery q = ds_query_default (s); /* native size, DS_FIT_STRETCH, DS_TIMESTEP_DIRECT */
  q.image = img;
  q.prompt = question;
  q.uncond_prompt = "";
  q.t = c->t;
  q.seed = 0;
  q.probes = probes;
  q.n_probes = 1;
  q.heat_nq = -1; /* no heat maps */
  DsRunControl ctl = { .cancel = cancel };
  DsSessionResult *r = NULL;
  DsStatus st = ds_session_run (s, &q, &ctl, &r, err);
  if (st != DS_OK)
    return ds_error_prefix (err, st, "fusion: the SD model");
  const DsSessionProbe *pr = &r->probes[0];
  st = ds_fusion_tokens (c, pr->uncond, pr->cond, pr->c, pr->h, pr->w, tokens, err);
  ds_session_result_unref (r);
  return st;
}

DsStatus
ds_llava_fused_features (DsLlava *lv, DsSession *s, DsFusion *f, const DsImage *img,
                         const char *question, const atomic_int *cancel, DsTensor *features,
                         DsError *err)
{
  assert (lv && s && f && img && question && features);
  memset (features, 0, sizeof *features);
  DsTensor F = { 0 }, V = { 0 }, fused = { 0 };
  DsStatus st = ds_llava_fusion_check (lv, s, f, err);
  if (st == DS_OK)
    st = diffusion_tokens (s, f, img, question, cancel, &F, err); /* [g², C] */
  if (st == DS_OK)
    st = ds_llava_vision_features (lv, img, &V, err);             /* [N, Cv] */
  if (st == DS_OK)
    st = ds_fusion_forward (f, &V, &F, &fused, err);              /* [N (+ g²), Cv] */
  if (st == DS_OK)
    st = ds_llava_project (lv, &fused, features, err);            /* [N (+ g²), C] */
  ds_tensor_free (&fused);
  ds_tensor_free (&V);
  ds_tensor_free (&F);
  return st;
}

DsStatus
ds_llava_ask_fused (DsLlava *lv, DsSession *s, DsFusion *f, const DsImage *img,
                    const char *question, const DsLlavaParams *p, DsLlavaAnswer *ans,
                    DsError *err)
{
  assert (lv && s && f && img && question && p && ans);
  memset (ans, 0, sizeof *ans);
  const bool untrained = !ds_fusion_config (f)->trained;
  if (untrained && !p->allow_untrained_fusion)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: \"trained\" is false: an untrained "
                         "fusion's output is not an answer (allow it explicitly to see it, "
                         "labelled as such)", ds_fusion_config_path (f));
  char *prompt = NULL;
  int32_t *ids = NULL;
  int64_t n = 0;
  DsTensor feats = { 0 };
  DsStatus st = ds_llava_prompt (NULL, question, true, &prompt, err);
  if (st == DS_OK)
    st = ds_llava_fused_features (lv, s, f, img, question, p->cancel, &feats, err);
  if (st == DS_OK)
    st = ds_llava_encode_prompt (lv, prompt, feats.shape[0], &ids, &n, err);
  if (st == DS_OK)
    st = ds_llava_generate (lv, ids, n, &feats, p, ans, err);
  ans->untrained_fusion = untrained;
  ds_tensor_free (&feats);
  free (ids);
  free (prompt);
  return st;
}
