/* ds-unet.c: the UNet forward with probes (see ds-unet.h; docs/models.md §1).
 *
 * Shapes: B batch, C channels of the level, H x W its spatial size, N = H*W
 * tokens, X the text width (cross_attention_dim), Nc the text length (77).
 * The probe counter `f->probe` advances at every probe point in the order of
 * ds_probe_list_build, which is how a point knows its index.
 *
 * Replayed forwards: on a backend with graphs (CUDA), a forward is recorded
 * once and replayed, since launching a thousand small ops one by one costs
 * more than running them. Then wanted probes cannot be handed out while the
 * forward runs (the sink downloads, which a recording forbids): they are
 * copied into staging tensors at the bottom of the arena and emitted, in
 * order, after the forward. A cache keyed by everything a recording bakes in
 * (tensor addresses, shapes, the arena position, the probe set) holds a few
 * recordings: the first forward with a key runs eagerly (which also sizes the
 * backend's scratch buffers), the second records, the later ones replay.
 * Not recorded: forwards that collect the cross-attention logsumexp (they
 * download mid-forward), DIFFSCOPE_PROFILE runs (they time op by op), and
 * DS_CUDA_GRAPHS=0 in the environment.
 */
#include "ds-unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-graph.h"
#include "ds-nn.h"
#include "ds-safetensors.h"
#include "ds-weights.h"

#define MAX_REPEATS 4
/* Staged probes may take this much memory by default (ds_unet_set_stage_budget);
 * beyond it the forward runs eagerly, emitting as it goes. */
#define STAGE_BUDGET ((size_t) 1 << 30)

typedef struct {
  int C, heads;
  DsNormW norm;               /* GroupNorm, eps 1e-6 */
  DsLinearW proj_in, proj_out; /* [C,C]; SD 1.x's 1x1 convs viewed as [C,C] */
  DsNormW norm1, norm2, norm3; /* LayerNorm, eps 1e-5 */
  DsLinearW q1, k1, v1, o1;    /* self-attention, [C,C] */
  DsLinearW q2, k2, v2, o2;    /* cross-attention; k2, v2 [C,X] */
  DsLinearW ff_in;             /* GEGLU projection [8C, C] */
  DsLinearW ff_out;            /* [C, 4C] */
} TransformerW;

typedef struct {
  int n_res;
  DsResnetW res[MAX_REPEATS];
  bool has_attn;
  TransformerW attn[MAX_REPEATS];
  bool has_sampler;
  DsConvW sampler; /* down: 3x3 stride 2; up: 3x3 after nearest x2 */
} LevelW;

/* What a recorded forward depends on. */
typedef struct {
  const void *sample, *ctx, *out;
  const void *arena_base;
  size_t arena_size, arena_mark;
  int64_t shape[4], n_ctx;
  uint64_t want_hash;
  int last;
  bool head_mean_maps;
} GraphKey;
_Static_assert (sizeof (GraphKey) <= DS_GRAPH_KEY_BYTES, "a UNet graph key fits the cache");

struct DsUnet {
  DsUnetConfig cfg;
  DsGraphCache graphs;
  size_t stage_budget;
  DsWeights w;
  DsConvW conv_in, conv_out;
  DsLinearW time1, time2;
  DsNormW norm_out;
  LevelW down[DS_MAX_LEVELS], up[DS_MAX_LEVELS];
  DsResnetW mid_res[2];
  TransformerW mid_attn;
  /* per probe index, the (1-based) block it is computed in, as forwards have
   * seen it: what a replayed forward reports as its progress */
  int *probe_block;
  int n_probe_block;
};

/* ---- loading ---- */

static DsStatus
load_proj (DsUnet *u, DsLinearW *p, int C, bool conv, DsError *err, const char *name)
{
  if (!conv)
    return ds_weights_linear (&u->w, p, C, C, true, err, name);
  memset (p, 0, sizeof *p);
  DsStatus st = ds_weights_load (&u->w, &p->w, 4, (int64_t[]){ C, C, 1, 1 }, err, "%s.weight",
                                 name);
  if (st == DS_OK)
    st = ds_weights_load (&u->w, &p->b, 1, (int64_t[]){ C }, err, "%s.bias", name);
  p->w = ds_tensor_reshape (&p->w, 2, (int64_t[]){ C, C });
  return st;
}

static DsStatus
load_transformer (DsUnet *u, TransformerW *t, int C, int heads, DsError *err, const char *prefix)
{
  const int X = u->cfg.cross_attention_dim;
  const bool conv = !u->cfg.use_linear_projection;
  char n[256];
  DsStatus st;
  t->C = C;
  t->heads = heads;
#define SUB(s) (snprintf (n, sizeof n, "%s." s, prefix), n)
#define BLK(s) (snprintf (n, sizeof n, "%s.transformer_blocks.0." s, prefix), n)
  if ((st = ds_weights_norm (&u->w, &t->norm, C, err, SUB ("norm")))
      || (st = load_proj (u, &t->proj_in, C, conv, err, SUB ("proj_in")))
      || (st = load_proj (u, &t->proj_out, C, conv, err, SUB ("proj_out")))
      || (st = ds_weights_norm (&u->w, &t->norm1, C, err, BLK ("norm1")))
      || (st = ds_weights_norm (&u->w, &t->norm2, C, err, BLK ("norm2")))
      || (st = ds_weights_norm (&u->w, &t->norm3, C, err, BLK ("norm3")))
      || (st = ds_weights_linear (&u->w, &t->q1, C, C, false, err, BLK ("attn1.to_q")))
      || (st = ds_weights_linear (&u->w, &t->k1, C, C, false, err, BLK ("attn1.to_k")))
      || (st = ds_weights_linear (&u->w, &t->v1, C, C, false, err, BLK ("attn1.to_v")))
      || (st = ds_weights_linear (&u->w, &t->o1, C, C, true, err, BLK ("attn1.to_out.0")))
      || (st = ds_weights_linear (&u->w, &t->q2, C, C, false, err, BLK ("attn2.to_q")))
      || (st = ds_weights_linear (&u->w, &t->k2, C, X, false, err, BLK ("attn2.to_k")))
      || (st = ds_weights_linear (&u->w, &t->v2, C, X, false, err, BLK ("attn2.to_v")))
      || (st = ds_weights_linear (&u->w, &t->o2, C, C, true, err, BLK ("attn2.to_out.0")))
      || (st = ds_weights_linear (&u->w, &t->ff_in, 8 * (int64_t) C, C, true, err,
                                  BLK ("ff.net.0.proj")))
      || (st = ds_weights_linear (&u->w, &t->ff_out, C, 4 * (int64_t) C, true, err,
                                  BLK ("ff.net.2"))))
    return st;
#undef SUB
#undef BLK
  return DS_OK;
}

static DsStatus
check_config (const DsUnetConfig *c, DsError *err)
{
  if (c->n_levels < 1 || c->n_levels > DS_MAX_LEVELS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED, "UNet with %d levels is not supported",
                         c->n_levels);
  if (c->layers_per_block < 1 || c->layers_per_block + 1 > MAX_REPEATS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "UNet layers_per_block %d is not supported (1 to %d)",
                         c->layers_per_block, MAX_REPEATS - 1);
  if (c->transformer_layers_per_block != 1)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "UNet transformer_layers_per_block %d is not supported (only 1)",
                         c->transformer_layers_per_block);
  if (c->mid_block_scale_factor != 1.0f)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "UNet mid_block_scale_factor %g is not supported (only 1)",
                         c->mid_block_scale_factor);
  return DS_OK;
}

static DsStatus
load_all (DsUnet *u, DsError *err)
{
  const DsUnetConfig *c = &u->cfg;
  const int L = c->n_levels, T = 4 * c->block_out_channels[0];
  const int C0 = c->block_out_channels[0];
  char n[256];
  DsStatus st;
  if ((st = ds_weights_conv (&u->w, &u->conv_in, C0, c->in_channels, 3, err, "conv_in"))
      || (st = ds_weights_linear (&u->w, &u->time1, T, C0, true, err, "time_embedding.linear_1"))
      || (st = ds_weights_linear (&u->w, &u->time2, T, T, true, err, "time_embedding.linear_2"))
      || (st = ds_weights_norm (&u->w, &u->norm_out, C0, err, "conv_norm_out"))
      || (st = ds_weights_conv (&u->w, &u->conv_out, c->out_channels, C0, 3, err, "conv_out")))
    return st;

  int prev = C0;
  for (int i = 0; i < L; i++)
    {
      LevelW *lv = &u->down[i];
      int C = c->block_out_channels[i];
      lv->n_res = c->layers_per_block;
      lv->has_attn = c->down_block_types[i] == DS_BLOCK_CROSS_ATTN_DOWN;
      lv->has_sampler = i < L - 1;
      for (int r = 0; r < lv->n_res; r++)
        {
          snprintf (n, sizeof n, "down_blocks.%d.resnets.%d", i, r);
          if ((st = ds_resnet_load (&u->w, &lv->res[r], r == 0 ? prev : C, C, T, err, n)))
            return st;
          snprintf (n, sizeof n, "down_blocks.%d.attentions.%d", i, r);
          if (lv->has_attn && (st = load_transformer (u, &lv->attn[r], C, c->heads[i], err, n)))
            return st;
        }
      snprintf (n, sizeof n, "down_blocks.%d.downsamplers.0.conv", i);
      if (lv->has_sampler && (st = ds_weights_conv (&u->w, &lv->sampler, C, C, 3, err, n)))
        return st;
      prev = C;
    }

  const int Cm = c->block_out_channels[L - 1];
  if ((st = ds_resnet_load (&u->w, &u->mid_res[0], Cm, Cm, T, err, "mid_block.resnets.0"))
      || (st = load_transformer (u, &u->mid_attn, Cm, c->heads[L - 1], err,
                                 "mid_block.attentions.0"))
      || (st = ds_resnet_load (&u->w, &u->mid_res[1], Cm, Cm, T, err, "mid_block.resnets.1")))
    return st;

  prev = Cm;
  for (int i = 0; i < L; i++)
    {
      LevelW *lv = &u->up[i];
      int C = c->block_out_channels[L - 1 - i];
      int skip_last = c->block_out_channels[L - 2 - i < 0 ? 0 : L - 2 - i];
      lv->n_res = c->layers_per_block + 1;
      lv->has_attn = c->up_block_types[i] == DS_BLOCK_CROSS_ATTN_UP;
      lv->has_sampler = i < L - 1;
      for (int r = 0; r < lv->n_res; r++)
        {
          /* docs/models.md §1.11: the last resnet's skip comes from the level below. */
          int c_in = (r == 0 ? prev : C) + (r == lv->n_res - 1 ? skip_last : C);
          snprintf (n, sizeof n, "up_blocks.%d.resnets.%d", i, r);
          if ((st = ds_resnet_load (&u->w, &lv->res[r], c_in, C, T, err, n)))
            return st;
          snprintf (n, sizeof n, "up_blocks.%d.attentions.%d", i, r);
          if (lv->has_attn
              && (st = load_transformer (u, &lv->attn[r], C, c->heads[L - 1 - i], err, n)))
            return st;
        }
      snprintf (n, sizeof n, "up_blocks.%d.upsamplers.0.conv", i);
      if (lv->has_sampler && (st = ds_weights_conv (&u->w, &lv->sampler, C, C, 3, err, n)))
        return st;
      prev = C;
    }
  return DS_OK;
}

/* Builds the model from `w` (a file or a random source); takes ownership of w. */
static DsStatus
unet_new (const DsUnetConfig *cfg, DsWeights *w, DsUnet **out, DsError *err)
{
  DsUnet *u = calloc (1, sizeof *u);
  if (!u)
    {
      ds_weights_free (w);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory loading the UNet");
    }
  u->cfg = *cfg;
  u->w = *w;
  u->stage_budget = STAGE_BUDGET;
  DsStatus st = load_all (u, err);
  u->w.st = NULL;
  if (st)
    {
      ds_unet_free (u);
      return st;
    }
  *out = u;
  return DS_OK;
}

DsStatus
ds_unet_load (const DsUnetConfig *cfg, const char *weights_path, DsBackend *be, DsUnet **out,
              DsError *err)
{
  *out = NULL;
  DsStatus st = check_config (cfg, err);
  if (st)
    return ds_error_prefix (err, st, "%s", weights_path);
  DsSafetensors *sf;
  if ((st = ds_safetensors_open (weights_path, &sf, err)))
    return ds_error_prefix (err, st, "UNet");
  DsWeights w;
  ds_weights_init (&w, be, sf, "");
  st = unet_new (cfg, &w, out, err);
  ds_safetensors_close (sf);
  return st ? ds_error_prefix (err, st, "UNet") : DS_OK;
}

DsStatus
ds_unet_new_random (const DsUnetConfig *cfg, uint64_t seed, DsBackend *be, DsUnet **out,
                    DsError *err)
{
  *out = NULL;
  DsStatus st = check_config (cfg, err);
  if (st)
    return st;
  DsWeights w;
  ds_weights_init_random (&w, be, seed, "");
  return unet_new (cfg, &w, out, err);
}

void
ds_unet_free (DsUnet *unet)
{
  if (!unet)
    return;
  ds_graph_cache_clear (&unet->graphs, unet->w.be);
  ds_weights_free (&unet->w);
  free (unet->probe_block);
  free (unet);
}

void
ds_unet_set_stage_budget (DsUnet *unet, size_t bytes)
{
  unet->stage_budget = bytes;
}

const DsUnetConfig *
ds_unet_config (const DsUnet *unet)
{
  return &unet->cfg;
}

size_t
ds_unet_n_params (const DsUnet *unet)
{
  return unet->w.n_params;
}

/* ---- forward ---- */

typedef struct {
  const DsUnet *u;
  DsBackend *be;
  DsArena *a;
  const DsProbeSink *sink;
  const DsTensor *ctx; /* [B,Nc,X] */
  DsTensor temb_act;   /* [B,T] = SiLU(time embedding) */
  int probe;           /* index of the next probe point */
  int cross_layer;     /* index of the next cross-attention layer (for cross_lse) */
  int block, n_blocks; /* blocks done, of all (DsProbeSink.progress) */
  bool done;           /* the deepest wanted probe has been emitted */
  bool measuring;
  DsTensor *staged;    /* per probe index: where a wanted probe is copied; NULL:
                          probes are emitted as they come */
  int n_probes;        /* entries of the sink's want (set when staging) */
  DsError *err;
} Fwd;

/* Notes the block probe `index` belongs to (see DsUnet.probe_block); a table
 * that cannot grow stays as it was (only replayed progress reports need it). */
static void
note_probe_block (const Fwd *f, int index)
{
  DsUnet *u = (DsUnet *) f->u;
  if (index >= u->n_probe_block)
    {
      int n = index + 64;
      int *t = realloc (u->probe_block, (size_t) n * sizeof *t);
      if (!t)
        return;
      for (int i = u->n_probe_block; i < n; i++)
        t[i] = 0;
      u->probe_block = t;
      u->n_probe_block = n;
    }
  u->probe_block[index] = f->block + 1;
}

/* True when probe `index` is wanted; a measuring run answers the same, so that
 * the buffers wanted maps need are counted, but emits nothing. */
static bool
wants (const Fwd *f, int index)
{
  const DsProbeSink *s = f->sink;
  return s && s->want && s->want[index];
}

/* One probe point. `t` is [B,C,H,W], or tokens [B,N,C] when `tokens` (then
 * turned into [B,C,H,W] first), or an attention map [B,heads,Nq,Nk]. */
static DsStatus
probe (Fwd *f, const DsTensor *t, bool tokens, int64_t H, int64_t W)
{
  int index = f->probe++;
  DsStatus st = DS_OK;
  note_probe_block (f, index);
  if (wants (f, index) && f->staged)
    {
      /* copied now, emitted after the forward (see the top of the file) */
      DsTensor *dst = &f->staged[index];
      if (tokens)
        {
          DsTensor m = ds_tensor_reshape (dst, 3, (int64_t[]){ t->shape[0], t->shape[2],
                                                                t->shape[1] });
          st = ds_permute (f->be, t, (int[]){ 0, 2, 1, 3 }, &m, f->err);
        }
      else
        st = ds_permute (f->be, t, (int[]){ 0, 1, 2, 3 }, dst, f->err);
    }
  else if (wants (f, index))
    {
      if (tokens)
        {
          const int64_t B = t->shape[0], N = t->shape[1], C = t->shape[2];
          size_t mark = ds_arena_mark (f->a);
          DsTensor m;
          if ((st = ds_arena_act (f->a, &m, f->err, 3, B, C, N))
              || (st = ds_permute (f->be, t, (int[]){ 0, 2, 1, 3 }, &m, f->err)))
            return st;
          m = ds_tensor_reshape (&m, 4, (int64_t[]){ B, C, H, W });
          if (!f->measuring)
            st = f->sink->emit (f->sink->user, index, &m, f->err);
          ds_arena_reset_to (f->a, mark);
        }
      else if (!f->measuring)
        st = f->sink->emit (f->sink->user, index, t, f->err);
    }
  if (f->sink && index == f->sink->last)
    f->done = true;
  return st;
}

/* An attention-map probe point, probs [B,heads,Nq,Nk]: with the sink's
 * head_mean_maps, the mean over heads [B,1,Nq,Nk] is what goes out. */
static DsStatus
probe_map (Fwd *f, const DsTensor *probs)
{
  if (!wants (f, f->probe) || !f->sink->head_mean_maps)
    return probe (f, probs, false, 0, 0);
  const int64_t B = probs->shape[0], Nq = probs->shape[2], Nk = probs->shape[3];
  size_t mark = ds_arena_mark (f->a);
  DsTensor m;
  DsStatus st = ds_arena_act (f->a, &m, f->err, 4, B, (int64_t) 1, Nq, Nk);
  if (st == DS_OK)
    st = ds_mean_heads (f->be, probs, &m, f->err);
  if (st == DS_OK)
    st = probe (f, &m, false, 0, 0);
  ds_arena_reset_to (f->a, mark);
  return st;
}

static DsStatus
check_cancel (const Fwd *f)
{
  if (f->sink && f->sink->cancel && atomic_load (f->sink->cancel))
    return ds_error_set (f->err, DS_ERR_CANCELLED, "UNet forward cancelled");
  return DS_OK;
}

/* One more block is done: tells the sink's progress callback. */
static void
block_done (Fwd *f)
{
  f->block++;
  if (!f->measuring && f->sink && f->sink->progress)
    f->sink->progress (f->sink->progress_user, f->block, f->n_blocks);
}

/* The blocks of a full forward, as block_done counts them. */
static int
count_blocks (const DsUnet *u)
{
  int n = 2 + 3; /* the input (time embedding, conv_in) and the output head; the mid block */
  for (int i = 0; i < u->cfg.n_levels; i++)
    {
      n += u->down[i].n_res * (u->down[i].has_attn ? 2 : 1) + (u->down[i].has_sampler ? 1 : 0);
      n += u->up[i].n_res * (u->up[i].has_attn ? 2 : 1) + (u->up[i].has_sampler ? 1 : 0);
    }
  return n;
}

#define TRY(expr)                                                                              \
  do {                                                                                         \
    DsStatus st_ = (expr);                                                                     \
    if (st_ != DS_OK)                                                                          \
      return st_;                                                                              \
  } while (0)

/* Runs a probe point and returns from the calling function once the deepest
 * wanted probe is out. */
#define PROBE(t, tokens, H, W)                                                                 \
  do {                                                                                         \
    TRY (probe (f, (t), (tokens), (H), (W)));                                                  \
    if (f->done)                                                                               \
      return DS_OK;                                                                            \
  } while (0)
#define PROBE_MAP(t)                                                                           \
  do {                                                                                         \
    TRY (probe_map (f, (t)));                                                                  \
    if (f->done)                                                                               \
      return DS_OK;                                                                            \
  } while (0)

/* Discffusion's per-layer statistic: for each batch item, the mean over heads
 * and queries of logsumexp over keys of S = q·kᵀ·scale. q [B,N,C], kc [B,Nc,C]. */
static DsStatus
cross_lse (Fwd *f, const DsTensor *q, const DsTensor *kc, int heads, float scale)
{
  const int64_t B = q->shape[0], N = q->shape[1], C = q->shape[2], Nc = kc->shape[1];
  const int64_t D = C / heads;
  size_t mark = ds_arena_mark (f->a);
  DsTensor qh, kh, logits;
  DsTensor q4 = ds_tensor_reshape (q, 4, (int64_t[]){ B, N, heads, D });
  DsTensor k4 = ds_tensor_reshape (kc, 4, (int64_t[]){ B, Nc, heads, D });
  TRY (ds_arena_act (f->a, &qh, f->err, 4, B, (int64_t) heads, N, D));
  TRY (ds_arena_act (f->a, &kh, f->err, 4, B, (int64_t) heads, Nc, D));
  TRY (ds_arena_act (f->a, &logits, f->err, 3, B * heads, N, Nc));
  TRY (ds_permute (f->be, &q4, (int[]){ 0, 2, 1, 3 }, &qh, f->err));
  TRY (ds_permute (f->be, &k4, (int[]){ 0, 2, 1, 3 }, &kh, f->err));
  DsTensor q3 = ds_tensor_reshape (&qh, 3, (int64_t[]){ B * heads, N, D });
  DsTensor k3 = ds_tensor_reshape (&kh, 3, (int64_t[]){ B * heads, Nc, D });
  TRY (ds_matmul (f->be, &q3, &k3, false, true, scale, &logits, f->err));
  if (!f->measuring)
    {
      size_t n = (size_t) (B * heads * N * Nc);
      float *host = malloc (n * sizeof *host);
      if (!host)
        return ds_error_set (f->err, DS_ERR_NOMEM, "out of memory for attention scores");
      DsStatus st = ds_backend_download_f32 (f->be, &logits, host, f->err);
      for (int64_t b = 0; b < B && st == DS_OK; b++)
        {
          double sum = 0;
          for (int64_t r = 0; r < heads * N; r++)
            {
              const float *row = host + ((size_t) (b * heads * N + r)) * (size_t) Nc;
              float m = row[0];
              for (int64_t k = 1; k < Nc; k++)
                m = row[k] > m ? row[k] : m;
              double e = 0;
              for (int64_t k = 0; k < Nc; k++)
                e += exp ((double) row[k] - m);
              sum += m + log (e);
            }
          f->sink->cross_lse[f->cross_layer * B + b] = sum / (double) (heads * N);
        }
      free (host);
      if (st)
        return st;
    }
  ds_arena_reset_to (f->a, mark);
  return DS_OK;
}

/* Transformer2DModel with one BasicTransformerBlock (docs/models.md §1.6–1.9).
 * x [B,C,H,W] -> out [B,C,H,W] (preallocated). */
static DsStatus
transformer_forward (Fwd *f, const TransformerW *t, const DsTensor *x, DsTensor *out)
{
  DsBackend *be = f->be;
  DsArena *a = f->a;
  DsError *err = f->err;
  const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const int64_t N = H * W, Nc = f->ctx->shape[1];
  const float scale = 1.0f / sqrtf ((float) (C / t->heads));
  size_t mark = ds_arena_mark (a);
  DsTensor n, tok, h, t1, q, k, v, att, o, kc, vc, g, ff, probs;

  TRY (ds_arena_act (a, &n, err, 4, B, C, H, W));
  TRY (ds_group_norm (be, x, &t->norm.g, &t->norm.b, f->u->cfg.norm_num_groups, 1e-6f, false,
                      &n, err));
  TRY (ds_arena_act (a, &tok, err, 3, B, N, C));
  DsTensor n3 = ds_tensor_reshape (&n, 3, (int64_t[]){ B, C, N });
  TRY (ds_permute (be, &n3, (int[]){ 0, 2, 1, 3 }, &tok, err));
  TRY (ds_arena_act (a, &h, err, 3, B, N, C));
  TRY (ds_linear (be, &tok, &t->proj_in.w, &t->proj_in.b, &h, err));

  /* self-attention */
  TRY (ds_arena_act (a, &t1, err, 3, B, N, C));
  TRY (ds_arena_act (a, &q, err, 3, B, N, C));
  TRY (ds_arena_act (a, &k, err, 3, B, N, C));
  TRY (ds_arena_act (a, &v, err, 3, B, N, C));
  TRY (ds_arena_act (a, &att, err, 3, B, N, C));
  TRY (ds_arena_act (a, &o, err, 3, B, N, C));
  TRY (ds_layer_norm (be, &h, &t->norm1.g, &t->norm1.b, 1e-5f, &t1, err));
  TRY (ds_linear (be, &t1, &t->q1.w, NULL, &q, err));
  TRY (ds_linear (be, &t1, &t->k1.w, NULL, &k, err));
  TRY (ds_linear (be, &t1, &t->v1.w, NULL, &v, err));
  PROBE (&q, true, H, W);
  PROBE (&k, true, H, W);
  PROBE (&v, true, H, W);
  bool want_map = wants (f, f->probe);
  if (want_map)
    TRY (ds_arena_act (a, &probs, err, 4, B, (int64_t) t->heads, N, N));
  TRY (ds_attention (be, &q, &k, &v, t->heads, scale, false, &att, want_map ? &probs : NULL, err));
  PROBE_MAP (&probs);
  TRY (ds_linear_add (be, &att, &t->o1.w, &t->o1.b, &h, &h, err));

  /* cross-attention: queries from the image tokens, keys and values from the text */
  TRY (ds_layer_norm (be, &h, &t->norm2.g, &t->norm2.b, 1e-5f, &t1, err));
  TRY (ds_linear (be, &t1, &t->q2.w, NULL, &q, err));
  PROBE (&q, true, H, W);
  TRY (ds_arena_act (a, &kc, err, 3, B, Nc, C));
  TRY (ds_arena_act (a, &vc, err, 3, B, Nc, C));
  TRY (ds_linear (be, f->ctx, &t->k2.w, NULL, &kc, err));
  TRY (ds_linear (be, f->ctx, &t->v2.w, NULL, &vc, err));
  want_map = wants (f, f->probe);
  if (want_map)
    TRY (ds_arena_act (a, &probs, err, 4, B, (int64_t) t->heads, N, Nc));
  if (f->sink && f->sink->cross_lse)
    TRY (cross_lse (f, &q, &kc, t->heads, scale));
  f->cross_layer++;
  TRY (ds_attention (be, &q, &kc, &vc, t->heads, scale, false, &att, want_map ? &probs : NULL,
                     err));
  PROBE_MAP (&probs);
  TRY (ds_linear_add (be, &att, &t->o2.w, &t->o2.b, &h, &h, err));

  /* GEGLU feed-forward */
  TRY (ds_layer_norm (be, &h, &t->norm3.g, &t->norm3.b, 1e-5f, &t1, err));
  TRY (ds_arena_act (a, &g, err, 3, B, N, 8 * C));
  TRY (ds_arena_act (a, &ff, err, 3, B, N, 4 * C));
  /* ff_in's bias is added inside GEGLU: one pass less over [B, N, 8C] */
  TRY (ds_linear (be, &t1, &t->ff_in.w, NULL, &g, err));
  TRY (ds_geglu_bias (be, &g, &t->ff_in.b, &ff, err));
  PROBE (&ff, true, H, W);
  TRY (ds_linear_add (be, &ff, &t->ff_out.w, &t->ff_out.b, &h, &h, err));
  PROBE (&h, true, H, W);

  /* back to a map, plus the residual */
  TRY (ds_linear (be, &h, &t->proj_out.w, &t->proj_out.b, &o, err));
  DsTensor m = ds_tensor_reshape (&n, 3, (int64_t[]){ B, C, N });
  TRY (ds_permute (be, &o, (int[]){ 0, 2, 1, 3 }, &m, err));
  m = ds_tensor_reshape (&m, 4, (int64_t[]){ B, C, H, W });
  TRY (ds_add (be, &m, x, out, err));
  ds_arena_reset_to (a, mark);
  PROBE (out, false, H, W);
  return DS_OK;
}

/* A resnet with its two probe points; out is taken from the arena. */
static DsStatus
resnet_step (Fwd *f, const DsResnetW *r, const DsTensor *x, DsTensor *out)
{
  const int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
  DsTensor inc;
  TRY (ds_arena_act (f->a, out, f->err, 4, B, (int64_t) r->c_out, H, W));
  size_t mark = ds_arena_mark (f->a);
  TRY (ds_resnet_forward (f->be, f->a, r, x, &f->temb_act, f->u->cfg.norm_num_groups,
                          f->u->cfg.norm_eps, out, &inc, f->err));
  PROBE (&inc, false, H, W);
  PROBE (out, false, H, W);
  ds_arena_reset_to (f->a, mark);
  return DS_OK;
}

/* An up-block resnet: its input is [h, skip] concatenated on channels. */
static DsStatus
up_resnet_step (Fwd *f, const DsResnetW *r, const DsTensor *h, const DsTensor *skip,
                DsTensor *out)
{
  const int64_t B = h->shape[0], H = h->shape[2], W = h->shape[3];
  DsTensor cat, inc;
  TRY (ds_arena_act (f->a, out, f->err, 4, B, (int64_t) r->c_out, H, W));
  size_t mark = ds_arena_mark (f->a);
  TRY (ds_arena_act (f->a, &cat, f->err, 4, B, h->shape[1] + skip->shape[1], H, W));
  TRY (ds_concat (f->be, h, skip, 1, &cat, f->err));
  TRY (ds_resnet_forward (f->be, f->a, r, &cat, &f->temb_act, f->u->cfg.norm_num_groups,
                          f->u->cfg.norm_eps, out, &inc, f->err));
  PROBE (&inc, false, H, W);
  PROBE (out, false, H, W);
  ds_arena_reset_to (f->a, mark);
  return DS_OK;
}

static DsStatus
attn_step (Fwd *f, const TransformerW *t, const DsTensor *x, DsTensor *out)
{
  TRY (ds_arena_act (f->a, out, f->err, 4, x->shape[0], x->shape[1], x->shape[2], x->shape[3]));
  return transformer_forward (f, t, x, out);
}

/* One block: the cancel check before it, the progress report after it (also
 * when it ended early at the deepest wanted probe). */
#define STEP(call)                                                                             \
  do {                                                                                         \
    TRY (check_cancel (f));                                                                    \
    TRY (call);                                                                                \
    block_done (f);                                                                            \
    if (f->done)                                                                               \
      return DS_OK;                                                                            \
  } while (0)
/* A probe point that ends a block (or, when it is the deepest wanted, ends
 * the forward inside one). */
#define PROBE_END_BLOCK(t, H, W)                                                               \
  do {                                                                                         \
    TRY (probe (f, (t), false, (H), (W)));                                                     \
    block_done (f);                                                                            \
    if (f->done)                                                                               \
      return DS_OK;                                                                            \
  } while (0)

/* ts [B] on the backend: the timesteps, uploaded by the caller (outside any
 * recording). */
static DsStatus
forward (Fwd *f, const DsTensor *sample, const DsTensor *ts, DsTensor *out)
{
  const DsUnet *u = f->u;
  const DsUnetConfig *c = &u->cfg;
  DsBackend *be = f->be;
  DsArena *a = f->a;
  DsError *err = f->err;
  const int L = c->n_levels;
  const int64_t B = sample->shape[0], T = 4 * (int64_t) c->block_out_channels[0];
  int64_t H = sample->shape[2], W = sample->shape[3];

  TRY (check_cancel (f));
  /* time embedding: sinusoid -> linear -> SiLU -> linear, then SiLU for the resnets */
  DsTensor temb0, temb1;
  TRY (ds_arena_act (a, &temb0, err, 2, B, (int64_t) c->block_out_channels[0]));
  TRY (ds_timestep_embedding (be, ts, c->flip_sin_to_cos, c->freq_shift, 10000.0f, &temb0, err));
  TRY (ds_arena_act (a, &temb1, err, 2, B, T));
  TRY (ds_linear (be, &temb0, &u->time1.w, &u->time1.b, &temb1, err));
  TRY (ds_silu (be, &temb1, &temb1, err));
  TRY (ds_arena_act (a, &f->temb_act, err, 2, B, T));
  TRY (ds_linear (be, &temb1, &u->time2.w, &u->time2.b, &f->temb_act, err));
  TRY (ds_silu (be, &f->temb_act, &f->temb_act, err));

  TRY (probe (f, sample, false, H, W));
  if (f->done)
    {
      block_done (f);
      return DS_OK;
    }
  DsTensor h, next, skips[4 * DS_MAX_LEVELS + 1];
  int n_skips = 0;
  TRY (ds_arena_act (a, &h, err, 4, B, (int64_t) c->block_out_channels[0], H, W));
  TRY (ds_conv2d (be, sample, &u->conv_in.w, &u->conv_in.b, 1, 1, 1, 1, 1, &h, err));
  PROBE_END_BLOCK (&h, H, W);
  skips[n_skips++] = h;

  for (int i = 0; i < L; i++)
    {
      const LevelW *lv = &u->down[i];
      for (int r = 0; r < lv->n_res; r++)
        {
          STEP (resnet_step (f, &lv->res[r], &h, &next));
          h = next;
          if (lv->has_attn)
            {
              STEP (attn_step (f, &lv->attn[r], &h, &next));
              h = next;
            }
          skips[n_skips++] = h;
        }
      if (lv->has_sampler)
        {
          TRY (check_cancel (f));
          int p = c->downsample_padding;
          /* padding 0 means diffusers' asymmetric (0, 1, 0, 1) pad before the conv */
          TRY (ds_arena_act (a, &next, err, 4, B, h.shape[1], H / 2, W / 2));
          TRY (ds_conv2d (be, &h, &lv->sampler.w, &lv->sampler.b, 2, p, p, p ? p : 1, p ? p : 1,
                          &next, err));
          H /= 2, W /= 2;
          h = next;
          PROBE_END_BLOCK (&h, H, W);
          skips[n_skips++] = h;
        }
    }

  STEP (resnet_step (f, &u->mid_res[0], &h, &next));
  h = next;
  STEP (attn_step (f, &u->mid_attn, &h, &next));
  h = next;
  STEP (resnet_step (f, &u->mid_res[1], &h, &next));
  h = next;

  for (int i = 0; i < L; i++)
    {
      const LevelW *lv = &u->up[i];
      for (int r = 0; r < lv->n_res; r++)
        {
          STEP (up_resnet_step (f, &lv->res[r], &h, &skips[--n_skips], &next));
          h = next;
          if (lv->has_attn)
            {
              STEP (attn_step (f, &lv->attn[r], &h, &next));
              h = next;
            }
        }
      if (lv->has_sampler)
        {
          TRY (check_cancel (f));
          DsTensor up;
          TRY (ds_arena_act (a, &next, err, 4, B, h.shape[1], 2 * H, 2 * W));
          size_t mark = ds_arena_mark (a);
          TRY (ds_arena_act (a, &up, err, 4, B, h.shape[1], 2 * H, 2 * W));
          TRY (ds_upsample_nearest2x (be, &h, &up, err));
          H *= 2, W *= 2;
          TRY (ds_conv2d (be, &up, &lv->sampler.w, &lv->sampler.b, 1, 1, 1, 1, 1, &next, err));
          ds_arena_reset_to (a, mark);
          h = next;
          PROBE_END_BLOCK (&h, H, W);
        }
    }

  TRY (check_cancel (f));
  DsTensor n, eps;
  TRY (ds_arena_act (a, &n, err, 4, B, h.shape[1], H, W));
  TRY (ds_group_norm (be, &h, &u->norm_out.g, &u->norm_out.b, c->norm_num_groups, c->norm_eps,
                      true, &n, err));
  if (out)
    eps = *out;
  else
    TRY (ds_arena_act (a, &eps, err, 4, B, (int64_t) c->out_channels, H, W));
  TRY (ds_conv2d (be, &n, &u->conv_out.w, &u->conv_out.b, 1, 1, 1, 1, 1, &eps, err));
  PROBE_END_BLOCK (&eps, H, W);
  return DS_OK;
}

static DsStatus
check_inputs (const DsUnet *u, const DsTensor *sample, const DsTensor *context, DsError *err)
{
  const DsUnetConfig *c = &u->cfg;
  const int64_t f = (int64_t) 1 << (c->n_levels - 1);
  if (sample->ndim != 4 || sample->shape[1] != c->in_channels)
    return ds_error_set (err, DS_ERR_INVALID, "UNet input must be [B, %d, h, w]", c->in_channels);
  if (sample->shape[2] % f || sample->shape[3] % f || sample->shape[2] < f || sample->shape[3] < f)
    return ds_error_set (err, DS_ERR_INVALID,
                         "UNet latent %lldx%lld is not a positive multiple of %lld",
                         (long long) sample->shape[2], (long long) sample->shape[3], (long long) f);
  if (context->ndim != 3 || context->shape[0] != sample->shape[0]
      || context->shape[2] != c->cross_attention_dim)
    return ds_error_set (err, DS_ERR_INVALID,
                         "UNet text context must be [%lld, n, %d] to match the batch and "
                         "cross_attention_dim",
                         (long long) sample->shape[0], c->cross_attention_dim);
  return DS_OK;
}

/* Whether forwards with this sink are recorded and replayed (see the top). */
static bool
use_graphs (const DsUnet *u, const DsProbeSink *sink)
{
  return ds_graph_available (u->w.be) && !(sink && sink->cross_lse);
}

/* Staging tensors from the arena for the wanted probes, when they fit the
 * budget; *staged stays NULL otherwise (or when none is wanted). The caller
 * frees *staged (and resets the arena). */
static DsStatus
stage_probes (const DsUnet *u, DsArena *a, const DsProbeSink *sink, int64_t B, int64_t h,
              int64_t w, int64_t n_ctx, DsTensor **staged, int *n_probes, DsError *err)
{
  *staged = NULL;
  *n_probes = 0;
  if (!sink || !sink->want)
    return DS_OK;
  DsProbeList list;
  TRY (ds_probe_list_build (&u->cfg, (int) h, (int) w, (int) n_ctx, &list, err));
  *n_probes = list.n;
  size_t bytes = 0;
  int n = 0;
  const size_t el = ds_dtype_size (a->dtype);
  /* what each wanted probe emits: maps may be averaged over their heads */
  for (int i = 0; i < list.n; i++)
    {
      DsProbeInfo *p = &list.probes[i];
      if (sink->head_mean_maps && (p->kind == DS_PROBE_SELF_MAP || p->kind == DS_PROBE_CROSS_MAP))
        p->shape[0] = 1;
      if (sink->want[i])
        {
          bytes += (size_t) (B * p->shape[0] * p->shape[1] * p->shape[2]) * el;
          n++;
        }
    }
  DsStatus st = DS_OK;
  if (n > 0 && bytes <= u->stage_budget)
    {
      *staged = calloc ((size_t) list.n, sizeof **staged);
      if (!*staged)
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory staging probes");
      for (int i = 0; st == DS_OK && i < list.n; i++)
        if (sink->want[i])
          {
            const int64_t *s = list.probes[i].shape;
            st = ds_arena_act (a, &(*staged)[i], err, 4, B, s[0], s[1], s[2]);
          }
      if (st != DS_OK)
        {
          free (*staged);
          *staged = NULL;
        }
    }
  ds_probe_list_free (&list);
  return st;
}

static uint64_t
hash_wants (const DsProbeSink *sink, int n)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; sink && sink->want && i < n; i++)
    h = (h ^ (uint64_t) (sink->want[i] ? i + 1 : 0)) * 0x100000001b3ull;
  return h;
}

/* The forward after the timestep upload, as a DsGraphBody. It may run twice
 * (a failed recording, then eagerly): each run starts from the same state. */
typedef struct {
  Fwd *f;
  Fwd start;
  const DsTensor *sample, *ts;
  DsTensor *out;
} Body;

static DsStatus
body_run (void *user, DsError *err)
{
  (void) err; /* the forward reports through f->err, the same error */
  Body *b = user;
  *b->f = b->start;
  return forward (b->f, b->sample, b->ts, b->out);
}

/* The body of a forward, eagerly, by recording it, or by replaying the
 * recording (ds-graph.h). */
static DsStatus
run_body (DsUnet *u, Fwd *f, const DsTensor *sample, const DsTensor *ts, const DsTensor *context,
          DsTensor *out, bool graphs)
{
  if (!graphs || f->measuring)
    return forward (f, sample, ts, out);
  GraphKey k;
  memset (&k, 0, sizeof k); /* padding too: keys are compared byte for byte */
  k.sample = sample->data;
  k.ctx = context->data;
  k.out = out ? out->data : NULL;
  k.arena_base = f->a->base;
  k.arena_size = f->a->size;
  k.arena_mark = ds_arena_mark (f->a);
  memcpy (k.shape, sample->shape, sizeof k.shape);
  k.n_ctx = context->shape[1];
  k.want_hash = hash_wants (f->sink, f->n_probes);
  k.last = f->sink ? f->sink->last : -1;
  k.head_mean_maps = f->sink && f->sink->head_mean_maps;
  TRY (check_cancel (f));
  Body b = { f, *f, sample, ts, out };
  return ds_graph_run (&u->graphs, f->be, f->a, &k, sizeof k, body_run, &b, f->err);
}

DsStatus
ds_unet_forward (DsUnet *unet, DsBackend *be, DsArena *a, const DsTensor *sample,
                 const float *timesteps, const DsTensor *context, const DsProbeSink *sink,
                 DsTensor *out, DsError *err)
{
  TRY (check_inputs (unet, sample, context, err));
  const bool measuring = ds_arena_is_measuring (a);
  Fwd f = { .u = unet, .be = be, .a = a, .sink = sink, .ctx = context, .err = err,
            .measuring = measuring, .n_blocks = count_blocks (unet) };
  const int64_t B = sample->shape[0];
  bool graphs = use_graphs (unet, sink);
  size_t mark = ds_arena_mark (a);
  DsTensor ts;
  DsStatus st = graphs ? stage_probes (unet, a, sink, B, sample->shape[2], sample->shape[3],
                                       context->shape[1], &f.staged, &f.n_probes, err)
                       : DS_OK;
  /* wanted probes that could not be staged go out as they come: no recording */
  for (int i = 0; graphs && !f.staged && sink && sink->want && i < f.n_probes; i++)
    if (sink->want[i])
      graphs = false;
  if (st == DS_OK)
    st = ds_arena_act (a, &ts, err, 1, B);
  if (st == DS_OK && !measuring)
    st = ds_backend_upload_f32 (be, &ts, timesteps, err);
  if (st == DS_OK)
    st = run_body (unet, &f, sample, &ts, context, out, graphs);
  /* A replayed forward ran no body: its progress is its end, the block the
   * recorded forward stopped in. */
  if (st == DS_OK && f.block == 0 && !measuring && sink && sink->progress)
    sink->progress (sink->progress_user,
                    sink->last >= 0 && sink->last < unet->n_probe_block
                        && unet->probe_block[sink->last] > 0
                      ? unet->probe_block[sink->last]
                      : f.n_blocks,
                    f.n_blocks);
  /* Staged probes go out in forward order, up to the deepest wanted one (a
   * replayed forward ran exactly as far as the recorded one did). */
  for (int i = 0; st == DS_OK && f.staged && !measuring && i < f.n_probes; i++)
    if (sink->want[i] && (sink->last < 0 || i <= sink->last))
      st = sink->emit (sink->user, i, &f.staged[i], err);
  free (f.staged);
  ds_arena_reset_to (a, mark);
  return st;
}

size_t
ds_unet_arena_bytes (DsUnet *unet, int64_t B, int64_t h, int64_t w, int64_t n_ctx,
                     const DsProbeSink *sink)
{
  DsBackend *null = ds_backend_null_new (unet->w.be);
  if (!null)
    return 0;
  DsArena a;
  ds_arena_init_measure (&a, unet->w.be);
  /* The inputs get placeholder addresses from the arena too; what they take
   * is not part of the answer. */
  DsTensor sample, ctx;
  DsError err;
  /* The forward itself on the null backend and the measuring arena: it stages
   * wanted probes as the real backend would (null has no graphs itself) and
   * allocates their maps' buffers, but uploads and emits nothing. */
  size_t bytes = 0;
  if (!ds_arena_act (&a, &sample, &err, 4, B, (int64_t) unet->cfg.in_channels, h, w)
      && !ds_arena_act (&a, &ctx, &err, 3, B, n_ctx, (int64_t) unet->cfg.cross_attention_dim))
    {
      const size_t inputs = ds_arena_mark (&a);
      if (ds_unet_forward (unet, null, &a, &sample, NULL, &ctx, sink, NULL, &err) == DS_OK)
        bytes = a.peak - inputs;
    }
  ds_backend_free (null);
  return bytes;
}
