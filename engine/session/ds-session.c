/* ds-session.c: the cached, cancellable request path over a pipeline (see
 * ds-session.h).
 *
 * Three LRU caches, each a small array scanned linearly (a session holds
 * tens of entries, not thousands): latents keyed by the image's pixels (FNV-1a
 * over the RGB bytes and the width, height, size and fit), text contexts by
 * the [uncond, cond] token ids, and UNet results by everything a result
 * depends on but the probe set (ResultKey), which must be a superset of the
 * query's. A result is one immutable, reference-counted block; a cache hit
 * hands out a view: a small result of its own whose probes point into the
 * cached one, which it keeps alive.
 *
 * A run computes into local buffers and commits its result to the cache only
 * when the whole request succeeded (a latent or context it finished is kept
 * even when a later stage fails or is cancelled: both are exact), so a
 * cancelled or failed request leaves no partial result behind.
 */
#include "ds-session.h"
#include "ds-util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ds-analysis.h"
#include "ds-heatmap.h"

#define MAX_HEAT_LAYERS 64

typedef struct {
  uint64_t hash; /* FNV-1a of the RGB bytes */
  int width, height, size, fit;
} ImageKey;

typedef struct {
  ImageKey key;
  float *latent; /* [C, h, w] */
  uint64_t used;
} LatentEntry;

typedef struct {
  int32_t ids[2 * DS_CLIP_CONTEXT]; /* uncond, cond */
  float *ctx;                       /* [2, 77, X] */
  uint64_t used;
} ContextEntry;

/* Everything a result depends on but the probes. Strings and timesteps owned. */
typedef struct {
  ImageKey image;
  bool has_noise;
  uint64_t noise_hash;
  char *prompt, *uncond;
  int t, convention;
  uint64_t seed;
  int *timesteps;
  int n_timesteps, trials;
  int heat_nq; /* resolved: -1 none, else the layers' query count (0 with DAAM) */
  bool daam, head_mean, want_eps;
} ResultKey;

typedef struct Res Res;
struct Res {
  DsSessionResult pub; /* first: a DsSessionResult * is a Res * */
  atomic_int refs;
  Res *parent;           /* a view's cached result (holds a reference), or NULL */
  DsSessionProbe *probes; /* pub.probes */
  /* a root's own buffers (probe data, heat, ε, ε̂, logsumexp), freed with it */
  void **bufs;
  int n_bufs, cap_bufs;
  float **eps, **eps_hat;
  double **lse;
  size_t bytes;
};

typedef struct {
  ResultKey key;
  bool *want; /* [list n]: the probes the result holds */
  int n_list;
  Res *r;     /* a reference */
  uint64_t used;
} ResultEntry;

struct DsSession {
  DsPipeline *p;
  DsSessionLimits lim;
  uint64_t tick;
  LatentEntry *latents;
  int n_latents;
  ContextEntry *contexts;
  int n_contexts;
  ResultEntry *results;
  int n_results, cap_results;
  size_t result_bytes;
  DsSessionStats stats;
};

/* ---- the session ---------------------------------------------------------- */

DsStatus
ds_session_new (DsPipeline *p, const DsSessionLimits *lim, DsSession **out, DsError *err)
{
  *out = NULL;
  DsSession *s = calloc (1, sizeof *s);
  if (s && lim)
    s->lim = *lim;
  if (s)
    {
      if (!s->lim.result_bytes)
        s->lim.result_bytes = (size_t) 256 << 20;
      if (s->lim.latents <= 0)
        s->lim.latents = 8;
      if (s->lim.contexts <= 0)
        s->lim.contexts = 16;
      s->latents = calloc ((size_t) s->lim.latents, sizeof *s->latents);
      s->contexts = calloc ((size_t) s->lim.contexts, sizeof *s->contexts);
    }
  if (!s || !s->latents || !s->contexts)
    {
      if (s)
        {
          free (s->latents);
          free (s->contexts);
          free (s);
        }
      ds_pipeline_free (p);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory for a session");
    }
  s->p = p;
  *out = s;
  return DS_OK;
}

DsPipeline *
ds_session_pipeline (DsSession *s)
{
  return s->p;
}

static void
key_free (ResultKey *k)
{
  free (k->prompt);
  free (k->uncond);
  free (k->timesteps);
  memset (k, 0, sizeof *k);
}

static void
result_entry_drop (DsSession *s, int i)
{
  ResultEntry *e = &s->results[i];
  s->result_bytes -= e->r->bytes;
  ds_session_result_unref (&e->r->pub);
  key_free (&e->key);
  free (e->want);
  s->results[i] = s->results[--s->n_results];
}

void
ds_session_clear (DsSession *s)
{
  for (int i = 0; i < s->n_latents; i++)
    free (s->latents[i].latent);
  memset (s->latents, 0, (size_t) s->lim.latents * sizeof *s->latents);
  s->n_latents = 0;
  for (int i = 0; i < s->n_contexts; i++)
    free (s->contexts[i].ctx);
  memset (s->contexts, 0, (size_t) s->lim.contexts * sizeof *s->contexts);
  s->n_contexts = 0;
  while (s->n_results)
    result_entry_drop (s, s->n_results - 1);
}

void
ds_session_free (DsSession *s)
{
  if (!s)
    return;
  ds_session_clear (s);
  free (s->latents);
  free (s->contexts);
  free (s->results);
  ds_pipeline_free (s->p);
  free (s);
}

const char *
ds_session_stage_name (DsSessionStage stage)
{
  static const char *const names[] = { "image", "vae", "text", "unet" };
  return stage >= 0 && stage < DS_SESSION_STAGE_COUNT ? names[stage] : "?";
}

DsQuery
ds_query_default (const DsSession *s)
{
  return (DsQuery){ .size = ds_pipeline_native_size (s->p), .fit = DS_FIT_STRETCH, .t = 100,
                    .convention = DS_TIMESTEP_DIRECT, .trials = 1 };
}

void
ds_session_stats (const DsSession *s, DsSessionStats *out)
{
  *out = s->stats;
  out->result_bytes = s->result_bytes;
  out->results = s->n_results;
  out->latents = s->n_latents;
  out->contexts = s->n_contexts;
}

/* ---- results -------------------------------------------------------------- */

DsSessionResult *
ds_session_result_ref (DsSessionResult *r)
{
  atomic_fetch_add (&((Res *) r)->refs, 1);
  return r;
}

void
ds_session_result_unref (DsSessionResult *pub)
{
  Res *r = (Res *) pub;
  if (!r || atomic_fetch_sub (&r->refs, 1) != 1)
    return;
  if (r->parent)
    ds_session_result_unref (&r->parent->pub);
  for (int i = 0; i < r->n_bufs; i++)
    free (r->bufs[i]);
  free (r->bufs);
  free (r->probes);
  free (r->eps);
  free (r->eps_hat);
  free (r->lse);
  free (r);
}

const DsSessionProbe *
ds_session_result_probe (const DsSessionResult *r, const char *name)
{
  for (int i = 0; name && i < r->n_probes; i++)
    if (!strcasecmp (r->probes[i].name, name) || !strcasecmp (r->probes[i].id, name))
      return &r->probes[i];
  return NULL;
}

/* Takes buffer b (malloc'ed) into root r; frees it when it cannot. */
static DsStatus
res_keep (Res *r, void *b, size_t bytes, DsError *err)
{
  if (r->n_bufs == r->cap_bufs)
    {
      int cap = r->cap_bufs ? 2 * r->cap_bufs : 16;
      void **nb = realloc (r->bufs, (size_t) cap * sizeof *nb);
      if (!nb)
        {
          free (b);
          return ds_error_set (err, DS_ERR_NOMEM, "out of memory for a result");
        }
      r->bufs = nb;
      r->cap_bufs = cap;
    }
  r->bufs[r->n_bufs++] = b;
  r->bytes += bytes;
  return DS_OK;
}

/* ---- keys ----------------------------------------------------------------- */

static ImageKey
image_key (const DsImage *im, int size, DsImageFit fit)
{
  ImageKey k = { 0 };
  k.hash = ds_fnv1a (DS_FNV1A_OFFSET, im->rgb, (size_t) im->width * im->height * 3);
  k.width = im->width;
  k.height = im->height;
  k.size = size;
  k.fit = (int) fit;
  return k;
}

static bool
image_key_eq (const ImageKey *a, const ImageKey *b)
{
  return a->hash == b->hash && a->width == b->width && a->height == b->height
         && a->size == b->size && a->fit == b->fit;
}

static bool
result_key_eq (const ResultKey *a, const ResultKey *b)
{
  return image_key_eq (&a->image, &b->image) && a->has_noise == b->has_noise
         && a->noise_hash == b->noise_hash && !strcmp (a->prompt, b->prompt)
         && !strcmp (a->uncond, b->uncond) && a->t == b->t && a->convention == b->convention
         && a->seed == b->seed && a->n_timesteps == b->n_timesteps && a->trials == b->trials
         && !memcmp (a->timesteps, b->timesteps, (size_t) a->n_timesteps * sizeof (int))
         && a->heat_nq == b->heat_nq && a->daam == b->daam && a->head_mean == b->head_mean
         && a->want_eps == b->want_eps;
}

/* ---- the request ---------------------------------------------------------- */

/* What one ds_session_run works out before any network runs. */
typedef struct {
  const DsProbeList *list;
  int *index;             /* [n_probes]: the query's probes in the list */
  bool *want;             /* [list n]: the query's probes */
  int heat[MAX_HEAT_LAYERS], n_heat; /* heat layers (list indices) */
  int n_cross;            /* cross-attention layers (for cross_lse) */
  int trials, n_t, runs;  /* the ensemble: runs = 0 when nothing needs it */
  bool shared;            /* the ensemble's run 0 is the features' run */
  bool extra;             /* the features need a run of their own */
  DsLatentShape ls;
  ResultKey key;
  DsTokens cond, uncond;
} Plan;

static void
plan_free (Plan *pl)
{
  free (pl->index);
  free (pl->want);
  key_free (&pl->key);
}

static char *
dup_str (const char *s)
{
  return strdup (s ? s : "");
}

static DsStatus
plan_make (DsSession *s, const DsQuery *q, Plan *pl, DsError *err)
{
  DsPipeline *p = s->p;
  DsStatus st;
  int ut;
  memset (pl, 0, sizeof *pl);
  if (!q->image || !q->image->rgb)
    return ds_error_set (err, DS_ERR_INVALID, "the query has no image");
  if ((st = ds_pipeline_probes (p, q->size, &pl->list, err)))
    return st;
  if ((st = ds_pipeline_unet_timestep (p, q->t, q->convention, &ut, err)))
    return ds_error_prefix (err, st, "t");
  if (q->n_timesteps < 0 || (q->n_timesteps > 0 && !q->timesteps))
    return ds_error_set (err, DS_ERR_INVALID, "n_timesteps %d without timesteps",
                         q->n_timesteps);
  for (int k = 0; k < q->n_timesteps; k++)
    if ((st = ds_pipeline_unet_timestep (p, q->timesteps[k], q->convention, &ut, err)))
      return ds_error_prefix (err, st, "timesteps[%d]", k);
  if (q->trials < 0)
    return ds_error_set (err, DS_ERR_INVALID, "trials %d is negative", q->trials);
  if (q->n_probes < 0 || (q->n_probes > 0 && !q->probes))
    return ds_error_set (err, DS_ERR_INVALID, "n_probes %d without probes", q->n_probes);
  const DsProbeList *list = pl->list;
  pl->index = calloc ((size_t) (q->n_probes ? q->n_probes : 1), sizeof *pl->index);
  pl->want = calloc ((size_t) list->n, sizeof *pl->want);
  if (!pl->index || !pl->want)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  bool named_map = false;
  for (int k = 0; k < q->n_probes; k++)
    {
      int i = ds_probe_list_find (list, q->probes[k]);
      if (i < 0)
        return ds_error_set (err, DS_ERR_NOT_FOUND,
                             "unknown probe \"%s\": use a paper name like U-L1-R1-B0-Cross-Q or "
                             "a long id like up-level1-repeat1-vit-block0-cross-q (%d probes at "
                             "size %d)",
                             q->probes[k] ? q->probes[k] : "(null)", list->n, q->size);
      pl->index[k] = i;
      pl->want[i] = true;
      named_map |= list->probes[i].kind == DS_PROBE_CROSS_MAP
                   || list->probes[i].kind == DS_PROBE_SELF_MAP;
    }
  for (int i = 0; i < list->n; i++)
    pl->n_cross += list->probes[i].kind == DS_PROBE_CROSS_MAP;

  pl->ls = ds_pipeline_latent_shape (p, q->size);
  int heat_nq = -1;
  const bool daam = q->heat_daam && q->heat_nq != -1;
  if (q->heat_nq < -1)
    return ds_error_set (err, DS_ERR_INVALID, "heat_nq %d: use -1 (none), 0 (default) or a "
                         "query count", q->heat_nq);
  if (q->heat_nq != -1)
    {
      const int side = ds_pipeline_heat_side (p, q->size);
      heat_nq = daam ? 0 : q->heat_nq ? q->heat_nq : side * side;
      pl->n_heat = ds_heatmap_cross_layers (list, heat_nq, pl->heat, MAX_HEAT_LAYERS);
      if (pl->n_heat > MAX_HEAT_LAYERS)
        pl->n_heat = MAX_HEAT_LAYERS;
      if (pl->n_heat == 0)
        return ds_error_set (err, DS_ERR_INVALID,
                             "heat_nq %d: no down or up cross-attention layer has %d queries "
                             "at size %d",
                             q->heat_nq, heat_nq, q->size);
    }
  pl->trials = q->trials > 0 ? q->trials : 1;
  pl->n_t = q->n_timesteps;
  pl->runs = pl->n_heat > 0 || q->want_eps ? (pl->n_t ? pl->n_t : 1) * pl->trials : 0;
  pl->shared = pl->runs > 0 && (pl->n_t ? q->timesteps[0] : q->t) == q->t;
  pl->extra = q->n_probes > 0 && !pl->shared;

  const DsTokenizer *tok = ds_pipeline_tokenizer (p);
  if ((st = ds_tokenizer_encode (tok, q->prompt ? q->prompt : "", &pl->cond, err))
      || (st = ds_tokenizer_encode (tok, q->uncond_prompt ? q->uncond_prompt : "", &pl->uncond,
                                    err)))
    return st;

  ResultKey *k = &pl->key;
  k->image = image_key (q->image, q->size, q->fit);
  k->has_noise = q->noise != NULL;
  if (q->noise)
    k->noise_hash = ds_fnv1a (DS_FNV1A_OFFSET, q->noise,
                           (size_t) pl->ls.channels * pl->ls.h * pl->ls.w * sizeof (float));
  k->prompt = dup_str (q->prompt);
  k->uncond = dup_str (q->uncond_prompt);
  k->timesteps = malloc ((size_t) (pl->n_t ? pl->n_t : 1) * sizeof (int));
  if (!k->prompt || !k->uncond || !k->timesteps)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (pl->n_t)
    memcpy (k->timesteps, q->timesteps, (size_t) pl->n_t * sizeof (int));
  k->n_timesteps = pl->n_t;
  k->trials = pl->trials;
  k->t = q->t;
  k->convention = (int) q->convention;
  k->seed = q->seed;
  k->heat_nq = heat_nq;
  k->daam = daam;
  /* DAAM needs every head; otherwise the heat layers come averaged on the
   * backend unless a named attention map must keep its heads */
  k->head_mean = !daam && (q->head_mean_maps || !named_map);
  k->want_eps = q->want_eps;
  return DS_OK;
}

static DsStatus
cancelled (const DsRunControl *ctl, const char *before, DsError *err)
{
  if (ctl && ctl->cancel && atomic_load (ctl->cancel))
    return ds_error_set (err, DS_ERR_CANCELLED, "cancelled before %s", before);
  return DS_OK;
}

static void
report (const DsRunControl *ctl, DsSessionStage stage, int done, int total, int run, int runs)
{
  if (ctl && ctl->progress)
    ctl->progress (ctl->user, stage, done, total, run, runs);
}

typedef struct {
  const DsRunControl *ctl;
  int run, runs;
} UnetProgress;

static void
unet_progress (void *user, int done, int total)
{
  UnetProgress *u = user;
  report (u->ctl, DS_SESSION_STAGE_UNET, done, total, u->run, u->runs);
}

/* A view of cached result `root` with the query's probes, in its order. */
static DsStatus
make_view (Res *root, const Plan *pl, int n_probes, Res **out, DsError *err)
{
  Res *v = calloc (1, sizeof *v);
  DsSessionProbe *pr = calloc ((size_t) (n_probes ? n_probes : 1), sizeof *pr);
  if (!v || !pr)
    {
      free (v);
      free (pr);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory for a result");
    }
  for (int k = 0; k < n_probes; k++)
    for (int j = 0; j < root->pub.n_probes; j++)
      if (root->probes[j].index == pl->index[k])
        {
          pr[k] = root->probes[j];
          break;
        }
  v->pub = root->pub;
  v->pub.n_probes = n_probes;
  v->pub.probes = pr;
  v->probes = pr;
  v->pub.from_cache = true;
  v->pub.unet_forwards = 0;
  v->pub.cached_latent = v->pub.cached_text = true;
  v->pub.ms_image = v->pub.ms_vae = v->pub.ms_text = v->pub.ms_unet = 0;
  atomic_init (&v->refs, 1);
  v->parent = (Res *) ds_session_result_ref (&root->pub);
  *out = v;
  return DS_OK;
}

static int
lru_oldest_latent (const DsSession *s)
{
  int o = 0;
  for (int i = 1; i < s->n_latents; i++)
    if (s->latents[i].used < s->latents[o].used)
      o = i;
  return o;
}

static int
lru_oldest_context (const DsSession *s)
{
  int o = 0;
  for (int i = 1; i < s->n_contexts; i++)
    if (s->contexts[i].used < s->contexts[o].used)
      o = i;
  return o;
}

/* The cond half of heat layer `li`'s emitted map: [heads, side², k]. */
static DsAttnMaps
cond_maps (const DsFeatures *f, int li)
{
  const DsTensor *v = &f->values[li];
  const int64_t heads = v->shape[1], nq = v->shape[2], k = v->shape[3];
  const int64_t side = (int64_t) llround (sqrt ((double) nq));
  return (DsAttnMaps){ ds_tensor_f32 (v) + ds_tensor_numel (v) / 2, heads, side, side, k };
}

/* The networks: latent, context, the UNet runs; fills root r. */
static DsStatus
compute (DsSession *s, const DsQuery *q, const DsRunControl *ctl, Plan *pl, Res *r,
         float **new_latent, float **new_ctx, DsError *err)
{
  DsPipeline *p = s->p;
  DsSessionResult *pub = &r->pub;
  const DsProbeList *list = pl->list;
  const int64_t n_lat = (int64_t) pl->ls.channels * pl->ls.h * pl->ls.w;
  const int total_unet = pl->runs + (pl->extra ? 1 : 0);
  DsStatus st = ds_pipeline_unet_timestep (p, q->t, q->convention, &pub->unet_timestep, err);
  if (st)
    return st;

  /* the clean latent */
  const float *latent = NULL;
  for (int i = 0; i < s->n_latents; i++)
    if (image_key_eq (&s->latents[i].key, &pl->key.image))
      {
        latent = s->latents[i].latent;
        s->latents[i].used = ++s->tick;
      }
  pub->cached_latent = latent != NULL;
  if (!latent)
    {
      if ((st = cancelled (ctl, "the VAE", err)))
        return st;
      if (!(*new_latent = malloc ((size_t) n_lat * sizeof (float))))
        return ds_error_set (err, DS_ERR_NOMEM, "out of memory for the latent");
      s->stats.vae_forwards++;
      if ((st = ds_pipeline_encode_image (p, q->image, q->size, q->fit, *new_latent,
                                          &pub->ms_image, &pub->ms_vae, err)))
        {
          free (*new_latent); /* only finished inputs are kept */
          *new_latent = NULL;
          return st;
        }
      report (ctl, DS_SESSION_STAGE_IMAGE, 1, 1, 0, total_unet);
      report (ctl, DS_SESSION_STAGE_VAE, 1, 1, 0, total_unet);
      latent = *new_latent;
    }

  /* the text context */
  const float *ctx = NULL;
  int32_t ids[2 * DS_CLIP_CONTEXT];
  memcpy (ids, pl->uncond.ids, sizeof pl->uncond.ids);
  memcpy (ids + DS_CLIP_CONTEXT, pl->cond.ids, sizeof pl->cond.ids);
  for (int i = 0; i < s->n_contexts; i++)
    if (!memcmp (s->contexts[i].ids, ids, sizeof ids))
      {
        ctx = s->contexts[i].ctx;
        s->contexts[i].used = ++s->tick;
      }
  pub->cached_text = ctx != NULL;
  if (!ctx)
    {
      if ((st = cancelled (ctl, "the text encoder", err)))
        return st;
      const size_t n = (size_t) 2 * DS_CLIP_CONTEXT * ds_pipeline_context_width (p);
      if (!(*new_ctx = malloc (n * sizeof (float))))
        return ds_error_set (err, DS_ERR_NOMEM, "out of memory for the text context");
      double t0 = ds_now_ms ();
      s->stats.text_forwards++;
      if ((st = ds_pipeline_encode_text (p, &pl->uncond, &pl->cond, *new_ctx, err)))
        {
          free (*new_ctx);
          *new_ctx = NULL;
          return st;
        }
      pub->ms_text = ds_now_ms () - t0;
      report (ctl, DS_SESSION_STAGE_TEXT, 1, 1, 0, total_unet);
      ctx = *new_ctx;
    }

  /* the UNet runs: [the features' own run,] then the ensemble */
  bool *want_feat = malloc ((size_t) list->n * sizeof *want_feat);
  bool *want_heat = calloc ((size_t) list->n, sizeof *want_heat);
  float *one = NULL;
  DsHeatmapAccum acc = { 0 };
  DsDaam *daam = NULL;
  int64_t heat_hw = 0;
  if (!want_feat || !want_heat)
    st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    {
      memcpy (want_feat, pl->want, (size_t) list->n * sizeof *want_feat);
      for (int i = 0; i < pl->n_heat; i++)
        want_heat[pl->heat[i]] = true;
    }
  if (!st && pl->runs > 0 && q->want_eps)
    {
      r->eps = calloc ((size_t) pl->runs, sizeof *r->eps);
      r->eps_hat = calloc ((size_t) pl->runs, sizeof *r->eps_hat);
      r->lse = calloc ((size_t) pl->runs, sizeof *r->lse);
      if (!r->eps || !r->eps_hat || !r->lse)
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
    }
  if (!st && pl->n_heat > 0)
    {
      const int64_t side = pl->key.daam ? pl->ls.h : (int64_t) llround (sqrt ((double) list->probes[pl->heat[0]].shape[1]));
      heat_hw = side * side;
      pub->heat_h = pub->heat_w = side;
      pub->heat_k = list->probes[pl->heat[0]].shape[2];
      pub->heat_layers = pl->n_heat;
      if (pl->key.daam)
        st = ds_daam_new (side, &daam, err);
      else if (!(one = malloc ((size_t) (heat_hw * pub->heat_k) * sizeof *one)))
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      else
        st = ds_heatmap_accum_init (&acc, heat_hw, pub->heat_k, err);
    }

  const int first = pl->extra ? -1 : 0;
  int done_runs = 0;
  for (int run = first; !st && run < pl->runs; run++)
    {
      const bool feat = run == -1 || (run == 0 && pl->shared);
      const bool ens = run >= 0;
      const int trial = ens ? run % pl->trials : 0;
      int t = ens && pl->n_t ? q->timesteps[run / pl->trials] : q->t;
      bool *want = want_heat;
      if (feat && ens)
        for (int i = 0; i < list->n; i++)
          want_feat[i] = pl->want[i] || want_heat[i];
      if (feat)
        want = want_feat;
      double *lse = NULL;
      if (ens && q->want_eps && !(lse = calloc ((size_t) pl->n_cross * 2 + 1, sizeof *lse)))
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
          break;
        }
      UnetProgress up = { ctl, ++done_runs, total_unet };
      DsFeatureRequest req = {
        .image = q->image, .size = q->size, .fit = q->fit, .prompt = q->prompt,
        .uncond_prompt = q->uncond_prompt, .t = t, .convention = q->convention,
        .seed = q->seed + (uint64_t) trial, .noise = trial == 0 ? q->noise : NULL, .want = want,
        .want_eps = ens && q->want_eps, .cross_lse = lse, .head_mean_maps = pl->key.head_mean,
        .cancel = ctl ? ctl->cancel : NULL, .progress = ctl && ctl->progress ? unet_progress : NULL,
        .progress_user = &up, .latent = latent, .context = ctx,
      };
      DsFeatures f;
      s->stats.unet_forwards++;
      pub->unet_forwards++;
      if ((st = ds_pipeline_features (p, &req, &f, err)))
        {
          free (lse);
          break;
        }
      pub->ms_unet += f.ms_unet;
      if (feat)
        {
          for (int k = 0; !st && k < q->n_probes; k++)
            {
              const int i = pl->index[k];
              DsTensor *v = &f.values[i];
              DsSessionProbe *pr = &r->probes[k];
              snprintf (pr->name, sizeof pr->name, "%s", list->probes[i].name);
              snprintf (pr->id, sizeof pr->id, "%s", list->probes[i].id);
              pr->index = i;
              pr->c = v->shape[1];
              pr->h = v->shape[2];
              pr->w = v->shape[3];
              for (int j = 0; j < k; j++)
                if (r->probes[j].index == i)
                  pr->uncond = r->probes[j].uncond; /* asked twice: one buffer */
              if (!pr->uncond)
                {
                  float *data = v->data;
                  v->owned = false; /* the result takes the buffer */
                  st = res_keep (r, data, ds_tensor_nbytes (v), err);
                  pr->uncond = data;
                }
              pr->cond = pr->uncond + pr->c * pr->h * pr->w;
            }
        }
      if (!st && ens && pl->n_heat > 0)
        {
          DsAttnMaps maps[MAX_HEAT_LAYERS];
          for (int i = 0; i < pl->n_heat; i++)
            maps[i] = cond_maps (&f, pl->heat[i]);
          if (daam)
            for (int i = 0; i < pl->n_heat && !st; i++)
              st = ds_daam_add (daam, pl->heat[i], &maps[i], err);
          else if (!(st = ds_heatmap_mean (maps, pl->n_heat, one, err)))
            st = ds_heatmap_accum_add (&acc, one, heat_hw, pub->heat_k, err);
        }
      if (!st && ens && q->want_eps)
        {
          r->eps[run] = f.noise;
          f.noise = NULL;
          r->eps_hat[run] = f.eps.data;
          f.eps.owned = false;
          r->lse[run] = lse;
          lse = NULL;
          if (!(st = res_keep (r, r->eps[run], (size_t) n_lat * sizeof (float), err))
              && !(st = res_keep (r, r->eps_hat[run], (size_t) n_lat * 2 * sizeof (float), err)))
            st = res_keep (r, r->lse[run], (size_t) pl->n_cross * 2 * sizeof (double), err);
        }
      free (lse);
      ds_features_free (&f);
    }
  if (!st && pl->n_heat > 0)
    {
      float *heat = malloc ((size_t) (heat_hw * pub->heat_k) * sizeof *heat);
      if (!heat)
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      else
        {
          st = daam ? ds_daam_finish (daam, pl->cond.n_tokens, false, heat, err)
                    : ds_heatmap_accum_finish (&acc, heat, err);
          DsStatus st2 = res_keep (r, heat, (size_t) (heat_hw * pub->heat_k) * sizeof *heat, err);
          st = st ? st : st2;
          pub->heat = heat;
        }
    }
  if (!st)
    {
      pub->runs = pl->runs;
      pub->n_cross_layers = q->want_eps ? pl->n_cross : 0;
      pub->eps = (const float *const *) r->eps;
      pub->eps_hat = (const float *const *) r->eps_hat;
      pub->cross_lse = (const double *const *) r->lse;
    }
  free (one);
  ds_heatmap_accum_free (&acc);
  ds_daam_free (daam);
  free (want_feat);
  free (want_heat);
  return st;
}

/* Keeps a latent and a context the run finished (takes them; NULL: none). */
static void
commit_inputs (DsSession *s, const Plan *pl, float *latent, float *ctx)
{
  if (latent)
    {
      int i = s->n_latents < s->lim.latents ? s->n_latents++ : lru_oldest_latent (s);
      free (s->latents[i].latent); /* NULL in a fresh slot */
      s->latents[i] = (LatentEntry){ pl->key.image, latent, ++s->tick };
    }
  if (ctx)
    {
      int i = s->n_contexts < s->lim.contexts ? s->n_contexts++ : lru_oldest_context (s);
      free (s->contexts[i].ctx);
      ContextEntry *e = &s->contexts[i];
      memcpy (e->ids, pl->uncond.ids, sizeof pl->uncond.ids);
      memcpy (e->ids + DS_CLIP_CONTEXT, pl->cond.ids, sizeof pl->cond.ids);
      e->ctx = ctx;
      e->used = ++s->tick;
    }
}

/* Commits what a successful run computed: the latent, the context, the result. */
static void
commit (DsSession *s, const Plan *pl, Res *r, float *latent, float *ctx)
{
  commit_inputs (s, pl, latent, ctx);
  if (r->bytes > s->lim.result_bytes)
    return; /* would evict everything and still not fit */
  while (s->n_results && s->result_bytes + r->bytes > s->lim.result_bytes)
    {
      int o = 0;
      for (int i = 1; i < s->n_results; i++)
        if (s->results[i].used < s->results[o].used)
          o = i;
      result_entry_drop (s, o);
    }
  if (s->n_results == s->cap_results)
    {
      int cap = s->cap_results ? 2 * s->cap_results : 16;
      ResultEntry *nr = realloc (s->results, (size_t) cap * sizeof *nr);
      if (!nr)
        return;
      s->results = nr;
      s->cap_results = cap;
    }
  ResultEntry e = { .n_list = pl->list->n, .r = r, .used = ++s->tick };
  e.want = malloc ((size_t) pl->list->n * sizeof *e.want);
  e.key = pl->key;
  e.key.prompt = strdup (pl->key.prompt);
  e.key.uncond = strdup (pl->key.uncond);
  e.key.timesteps = malloc ((size_t) (pl->n_t ? pl->n_t : 1) * sizeof (int));
  if (!e.want || !e.key.prompt || !e.key.uncond || !e.key.timesteps)
    {
      free (e.want);
      key_free (&e.key);
      return;
    }
  memcpy (e.want, pl->want, (size_t) pl->list->n * sizeof *e.want);
  memcpy (e.key.timesteps, pl->key.timesteps, (size_t) pl->n_t * sizeof (int));
  ds_session_result_ref (&r->pub);
  s->results[s->n_results++] = e;
  s->result_bytes += r->bytes;
}

DsStatus
ds_session_run (DsSession *s, const DsQuery *q, const DsRunControl *ctl, DsSessionResult **out,
                DsError *err)
{
  *out = NULL;
  const double t_start = ds_now_ms ();
  Plan pl;
  DsStatus st = plan_make (s, q, &pl, err);
  if (st)
    {
      plan_free (&pl);
      return st;
    }

  /* a cached result with everything equal and a superset of the probes */
  for (int i = 0; i < s->n_results; i++)
    {
      ResultEntry *e = &s->results[i];
      if (e->n_list != pl.list->n || !result_key_eq (&e->key, &pl.key))
        continue;
      bool covers = true;
      for (int k = 0; covers && k < q->n_probes; k++)
        covers = e->want[pl.index[k]];
      if (!covers)
        continue;
      Res *v = NULL;
      if ((st = make_view (e->r, &pl, q->n_probes, &v, err)))
        break;
      e->used = ++s->tick;
      s->stats.result_hits++;
      v->pub.cond = pl.cond;
      v->pub.uncond = pl.uncond;
      v->pub.ms_total = ds_now_ms () - t_start;
      *out = &v->pub;
      plan_free (&pl);
      return DS_OK;
    }
  if (st)
    {
      plan_free (&pl);
      return st;
    }
  s->stats.result_misses++;

  Res *r = calloc (1, sizeof *r);
  if (r)
    r->probes = calloc ((size_t) (q->n_probes ? q->n_probes : 1), sizeof *r->probes);
  if (!r || !r->probes)
    {
      free (r);
      plan_free (&pl);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory for a result");
    }
  atomic_init (&r->refs, 1);
  r->pub.n_probes = q->n_probes;
  r->pub.probes = r->probes;
  r->pub.cond = pl.cond;
  r->pub.uncond = pl.uncond;
  float *new_latent = NULL, *new_ctx = NULL;
  st = compute (s, q, ctl, &pl, r, &new_latent, &new_ctx, err);
  if (st)
    {
      /* A superseded run's finished latent and context stay: the next query
       * (often the same image) need not encode them again. */
      commit_inputs (s, &pl, new_latent, new_ctx);
      ds_session_result_unref (&r->pub);
      plan_free (&pl);
      return st;
    }
  r->pub.ms_total = ds_now_ms () - t_start;
  commit (s, &pl, r, new_latent, new_ctx);
  plan_free (&pl);
  *out = &r->pub;
  return DS_OK;
}

/* ---- analyses ------------------------------------------------------------- */

DsStatus
ds_session_cka_matrix (const DsSessionResult *r, float s, double *out, DsError *err)
{
  const int np = r->n_probes;
  DsStatus st = DS_OK;
  float **xs = calloc ((size_t) (np ? np : 1), sizeof *xs);
  if (!xs)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  /* X_s of every probe */
  for (int i = 0; i < np && !st; i++)
    {
      const DsSessionProbe *q = &r->probes[i];
      if (strstr (q->name, "-Map"))
        {
          st = ds_error_set (err, DS_ERR_INVALID,
                             "%s is an attention map: CKA between probes takes feature maps",
                             q->name);
          break;
        }
      const int64_t cn = q->c * q->h * q->w;
      if (!(xs[i] = malloc ((size_t) cn * sizeof (float))))
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      else
        ds_guidance_amplify (q->uncond, q->cond, s, xs[i], cn);
    }
  for (int i = 0; i < np && !st; i++)
    {
      const DsSessionProbe *qi = &r->probes[i];
      for (int j = 0; j < np && !st; j++)
        {
          const DsSessionProbe *qj = &r->probes[j];
          /* both at the smaller of the two sizes */
          const DsSessionProbe *small = qi->h * qi->w <= qj->h * qj->w ? qi : qj;
          const int64_t h = small->h, w = small->w;
          float *ri = NULL, *rj = NULL;
          const float *ai = xs[i], *aj = xs[j];
          if (qi->h != h || qi->w != w)
            {
              ri = malloc ((size_t) (qi->c * h * w) * sizeof *ri);
              st = ri ? ds_map_resize_bilinear (xs[i], qi->c, qi->h, qi->w, ri, h, w, err)
                      : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
              ai = ri;
            }
          if (!st && (qj->h != h || qj->w != w))
            {
              rj = malloc ((size_t) (qj->c * h * w) * sizeof *rj);
              st = rj ? ds_map_resize_bilinear (xs[j], qj->c, qj->h, qj->w, rj, h, w, err)
                      : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
              aj = rj;
            }
          double v = NAN;
          if (!st)
            st = ds_cka_maps ((DsFeatureMap){ ai, qi->c, h, w }, (DsFeatureMap){ aj, qj->c, h, w },
                              &v, err);
          out[i * np + j] = v;
          free (ri);
          free (rj);
        }
    }
  for (int i = 0; i < np; i++)
    free (xs[i]);
  free (xs);
  return st;
}
