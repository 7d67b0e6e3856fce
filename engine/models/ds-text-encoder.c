/* ds-text-encoder.c: the CLIP text transformer graph (see ds-text-encoder.h,
 * docs/models.md §5.2).
 *
 * Memory plan: the residual stream x [B,77,C] lives in the arena for the whole
 * forward; four [B,77,C] scratch tensors and one [B,77,I] MLP tensor are shared
 * by every layer; final_layer_norm writes straight into the caller's output.
 * On a backend with graphs (CUDA) the forward after the ids' upload is
 * recorded once per (output, arena position, batch) and replayed (ds-graph.h).
 */
#include "ds-text-encoder.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-graph.h"
#include "ds-safetensors.h"

struct DsTextEncoder {
  DsTextEncoderConfig cfg;
  DsWeights w;               /* owns every tensor below */
  DsTensor tok_emb;          /* [vocab, C] */
  DsTensor pos_emb;          /* [77, C]: the first rows of [max_positions, C] */
  DsClipLayerW *layers;         /* [num_hidden_layers] */
  DsNormW final_ln;          /* [C] */
  DsGraphCache graphs;       /* recorded forwards (ds-graph.h) */
};

/* ---- loading ---- */

static DsStatus
check_config (const DsTextEncoderConfig *c, DsError *err)
{
  if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1
      || c->num_attention_heads < 1 || c->num_hidden_layers < 0)
    return ds_error_set (err, DS_ERR_INVALID,
                         "text encoder config: vocab_size %d, hidden_size %d, "
                         "intermediate_size %d, num_attention_heads %d must be positive and "
                         "num_hidden_layers %d not negative",
                         c->vocab_size, c->hidden_size, c->intermediate_size,
                         c->num_attention_heads, c->num_hidden_layers);
  if (c->hidden_size % c->num_attention_heads)
    return ds_error_set (err, DS_ERR_INVALID,
                         "text encoder config: hidden_size %d is not a multiple of "
                         "num_attention_heads %d",
                         c->hidden_size, c->num_attention_heads);
  if (c->max_position_embeddings < DS_TEXT_LEN)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "text encoder config: max_position_embeddings %d, expected at "
                         "least %d",
                         c->max_position_embeddings, DS_TEXT_LEN);
  return DS_OK;
}

static DsStatus
load_all (DsTextEncoder *te, DsError *err)
{
  const DsTextEncoderConfig *c = &te->cfg;
  DsWeights *w = &te->w;
  const int64_t C = c->hidden_size;
  DsStatus st;
  DsTensor pos;
  if ((st = ds_weights_load (w, &te->tok_emb, 2, (int64_t[]){ c->vocab_size, C }, err,
                             "embeddings.token_embedding.weight"))
      || (st = ds_weights_load (w, &pos, 2, (int64_t[]){ c->max_position_embeddings, C },
                                err, "embeddings.position_embedding.weight")))
    return st;
  te->pos_emb = ds_tensor_slice0 (&pos, 0, DS_TEXT_LEN);
  for (int l = 0; l < c->num_hidden_layers; l++)
    if ((st = ds_clip_layer_load (w, &te->layers[l], C, c->intermediate_size, l, err)))
      return st;
  return ds_weights_norm (w, &te->final_ln, C, err, "final_layer_norm");
}

static DsStatus
te_create (const DsTextEncoderConfig *cfg, const char *weights_path, uint64_t seed,
           DsBackend *be, DsTextEncoder **out, DsError *err)
{
  assert (cfg && be && out);
  *out = NULL;
  DsStatus st = check_config (cfg, err);
  if (st != DS_OK)
    return st;

  DsTextEncoder *te = calloc (1, sizeof *te);
  if (te)
    te->layers = calloc ((size_t) cfg->num_hidden_layers + 1, sizeof *te->layers);
  if (!te || !te->layers)
    {
      free (te);
      return ds_error_set (err, DS_ERR_NOMEM, "text encoder: out of host memory");
    }
  te->cfg = *cfg;

  DsSafetensors *file = NULL;
  if (!weights_path)
    ds_weights_init_random (&te->w, be, seed, "text_model.");
  else if ((st = ds_safetensors_open (weights_path, &file, err)) != DS_OK)
    {
      ds_text_encoder_free (te);
      return ds_error_prefix (err, st, "text encoder");
    }
  else
    {
      /* transformers <= 4.x saves CLIPTextModel's parameters under "text_model."
       * (SD 1.x/2.x files); 5.x saves them without it. Absent both, the error
       * names the classic spelling. */
      bool bare = !ds_safetensors_find (file, "text_model.embeddings.token_embedding.weight")
                  && ds_safetensors_find (file, "embeddings.token_embedding.weight");
      ds_weights_init (&te->w, be, file, bare ? "" : "text_model.");
    }
  st = load_all (te, err);
  te->w.st = NULL; /* the weights are copies; the mapping goes now */
  if (file)
    ds_safetensors_close (file);
  if (st != DS_OK)
    {
      ds_text_encoder_free (te);
      return ds_error_prefix (err, st, "text encoder");
    }
  *out = te;
  return DS_OK;
}

DsStatus
ds_text_encoder_load (const DsTextEncoderConfig *cfg, const char *weights_path,
                      DsBackend *be, DsTextEncoder **out, DsError *err)
{
  assert (weights_path);
  return te_create (cfg, weights_path, 0, be, out, err);
}

DsStatus
ds_text_encoder_new_random (const DsTextEncoderConfig *cfg, uint64_t seed, DsBackend *be,
                            DsTextEncoder **out, DsError *err)
{
  return te_create (cfg, NULL, seed, be, out, err);
}

void
ds_text_encoder_free (DsTextEncoder *te)
{
  if (!te)
    return;
  ds_graph_cache_clear (&te->graphs, te->w.be);
  ds_weights_free (&te->w);
  free (te->layers);
  free (te);
}

int
ds_text_encoder_hidden_size (const DsTextEncoder *te)
{
  return te->cfg.hidden_size;
}

/* ---- forward ---- */

/* x [B,77,C] += attn (ln1 (x)); x += mlp (ln2 (x)). h, q, k, v: [B,77,C]
 * scratch; f: [B,77,I] scratch. */
/* What the layers run on: the ids and the arena tensors, all in place. */
typedef struct {
  DsTextEncoder *te;
  DsBackend *be;
  DsTensor ids, x, h, q, k, v, f;
  DsTensor *out;
} Fwd;

/* Everything after the ids' upload (a DsGraphBody). */
static DsStatus
body (void *user, DsError *err)
{
  Fwd *d = user;
  DsTextEncoder *te = d->te;
  DsBackend *be = d->be;
  const int64_t B = d->x.shape[0], N = DS_TEXT_LEN, C = te->cfg.hidden_size;
  DsStatus st;
  if ((st = ds_embedding (be, &d->ids, &te->tok_emb, &d->x, err)))
    return st;
  for (int64_t b = 0; b < B; b++)
    {
      DsTensor row = ds_tensor_slice0 (&d->x, b, 1);
      row = ds_tensor_reshape (&row, 2, (int64_t[]){ N, C });
      if ((st = ds_add (be, &row, &te->pos_emb, &row, err)))
        return st;
    }
  for (int l = 0; l < te->cfg.num_hidden_layers; l++)
    if ((st = ds_clip_layer_forward (be, &te->layers[l], te->cfg.num_attention_heads,
                                     te->cfg.layer_norm_eps, te->cfg.hidden_act, true, &d->x, &d->h,
                                     &d->q, &d->k, &d->v, &d->f, err)))
      return st;
  return ds_layer_norm (be, &d->x, &te->final_ln.g, &te->final_ln.b, te->cfg.layer_norm_eps,
                        d->out, err);
}

/* What a recorded forward bakes in (ds-graph.h). */
typedef struct {
  const void *out, *arena_base;
  size_t arena_size, arena_mark;
  int64_t B;
} GraphKey;
_Static_assert (sizeof (GraphKey) <= DS_GRAPH_KEY_BYTES, "a text graph key fits the cache");

/* The graph. host_ids may be NULL when planning on the null backend (which
 * has no graphs). On a backend with graphs, the forward after the upload is
 * recorded and replayed. */
static DsStatus
forward (DsTextEncoder *te, DsBackend *be, DsArena *a, const int32_t *host_ids, int64_t B,
         DsTensor *out, DsError *err)
{
  const int64_t N = DS_TEXT_LEN, C = te->cfg.hidden_size, I = te->cfg.intermediate_size;
  Fwd d = { .te = te, .be = be, .out = out };
  DsStatus st;
  if ((st = ds_arena_tensor (a, &d.ids, DS_DTYPE_I32, 2, (int64_t[]){ B, N }, err)))
    return st;
  if (host_ids && (st = be->upload (be, &d.ids, host_ids, err)))
    return st;
  if ((st = ds_arena_act (a, &d.x, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.h, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.q, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.k, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.v, err, 3, B, N, C))
      || (st = ds_arena_act (a, &d.f, err, 3, B, N, I)))
    return st;
  GraphKey k;
  memset (&k, 0, sizeof k); /* padding too: keys are compared byte for byte */
  k.out = out->data;
  k.arena_base = a->base;
  k.arena_size = a->size;
  k.arena_mark = ds_arena_mark (a);
  k.B = B;
  return ds_graph_run (&te->graphs, be, a, &k, sizeof k, body, &d, err);
}

DsStatus
ds_text_encoder_forward (DsTextEncoder *te, DsBackend *be, DsArena *a, const int32_t *ids,
                         int64_t B, DsTensor *out, DsError *err)
{
  assert (te && be && a && ids && out);
  char s1[96], s2[96];
  const int64_t want[3] = { B, DS_TEXT_LEN, te->cfg.hidden_size };
  if (B < 1)
    return ds_error_set (err, DS_ERR_INVALID, "text encoder: batch size %lld, expected >= 1",
                         (long long) B);
  if (out->ndim != 3 || out->dtype != be->act_dtype
      || memcmp (out->shape, want, sizeof want) != 0)
    return ds_error_set (err, DS_ERR_INVALID, "text encoder: output is %s %s, expected %s %s",
                         ds_dtype_name (out->dtype),
                         ds_shape_str (out->ndim, out->shape, s1, sizeof s1),
                         ds_dtype_name (be->act_dtype),
                         ds_shape_str (3, want, s2, sizeof s2));
  for (int64_t i = 0; i < B * DS_TEXT_LEN; i++)
    if (ids[i] < 0 || ids[i] >= te->cfg.vocab_size)
      return ds_error_set (err, DS_ERR_INVALID,
                           "text encoder: token id %d (prompt %lld, position %lld) is "
                           "outside the vocabulary of %d",
                           ids[i], (long long) (i / DS_TEXT_LEN),
                           (long long) (i % DS_TEXT_LEN), te->cfg.vocab_size);
  size_t mark = ds_arena_mark (a);
  DsStatus st = forward (te, be, a, ids, B, out, err);
  ds_arena_reset_to (a, mark);
  return st;
}

size_t
ds_text_encoder_arena_bytes (DsTextEncoder *te, int64_t B)
{
  assert (te);
  if (B < 1)
    return 0;
  DsBackend *null = ds_backend_null_new (te->w.be);
  if (!null)
    return 0;
  DsArena a;
  ds_arena_init_measure (&a, te->w.be);
  DsTensor out;
  size_t result = 0;
  /* The output gets a stand-in address below the mark (see ds_vae_arena_bytes). */
  if (ds_arena_act (&a, &out, NULL, 3, B, (int64_t) DS_TEXT_LEN,
                    (int64_t) te->cfg.hidden_size) == DS_OK)
    {
      size_t mark = ds_arena_mark (&a);
      if (forward (te, null, &a, NULL, B, &out, NULL) == DS_OK)
        result = a.peak - mark;
    }
  ds_backend_free (null);
  return result;
}
