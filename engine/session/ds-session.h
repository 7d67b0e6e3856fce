/* ds-session.h: what the explorer's worker thread and the CLI drive — a
 * pipeline plus every cache the cost model allows, with cancellation and
 * progress.
 *
 * The cost model (docs/design.md, "The data path"): the clean latent depends
 * only on the image, the text context only on the prompts, a UNet pass on
 * (image, prompts, t, seed, size); guidance scale, colormaps, word choice and
 * PCA need no network. So a session keeps:
 *
 *   latents       per (image pixels, size, fit)               LRU, DsSessionLimits
 *   text contexts per (uncond prompt, cond prompt)            LRU
 *   UNet results  per (image, prompts, t, seed or ε, size,    LRU, bounded in bytes
 *                 fit, ensemble, probe set, heat-map spec,
 *                 want_eps)
 *
 * and ds_session_run answers a query from the cache when it can (a query whose
 * probes are a subset of a cached result's, with everything else equal, is a
 * hit). Each ds_session_run is one "request"; with an ensemble it runs the UNet
 * n_timesteps × trials times and averages the heat maps. Latents and contexts
 * are keyed by content (image pixels; token ids), results by the image's
 * content and the prompts' text.
 *
 * Threading: a session is owned by one thread (the worker). Only the cancel
 * flag is touched from other threads. Results are immutable and reference-
 * counted atomically, so they may be handed to another thread.
 *
 * Usage (the worker's loop):
 *
 *   DsSession *s;
 *   ds_session_new (pipeline, NULL, &s, &err);          // takes the pipeline
 *   atomic_int cancel = 0;
 *   DsRunControl ctl = { .cancel = &cancel, .progress = on_progress, .user = ui };
 *   const char *probes[] = { "U-L1-R1-B0-Cross-Q" };
 *   DsQuery q = ds_query_default (s);                  // native size, t 100, …
 *   q.image = &img; q.prompt = "a red circle"; q.probes = probes; q.n_probes = 1;
 *   DsSessionResult *r;
 *   if (ds_session_run (s, &q, &ctl, &r, &err) == DS_OK) { …; ds_session_result_unref (r); }
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-error.h"
#include "ds-image.h"
#include "ds-pipeline.h"
#include "ds-tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsSession DsSession;

typedef struct {
  size_t result_bytes; /* bound on the cached UNet results' host memory; 0: 256 MiB */
  int latents;         /* latents kept; 0: 8 */
  int contexts;        /* text contexts kept; 0: 16 */
} DsSessionLimits;

/* Takes the pipeline (transfer full; freed with the session, also on failure).
 * lim NULL: the defaults. */
DsStatus ds_session_new (DsPipeline *p, const DsSessionLimits *lim, DsSession **out,
                         DsError *err);
void ds_session_free (DsSession *s);
DsPipeline *ds_session_pipeline (DsSession *s); /* transfer none */
/* Drops every cached latent, context and result (e.g. when memory is short). */
void ds_session_clear (DsSession *s);

/* ---- progress and cancellation ------------------------------------------- */

typedef enum {
  DS_SESSION_STAGE_IMAGE, /* decode-side work: resize to the model input */
  DS_SESSION_STAGE_VAE,   /* the VAE encoder */
  DS_SESSION_STAGE_TEXT,  /* the text encoder */
  DS_SESSION_STAGE_UNET,  /* the UNet: done/total count its blocks */
  DS_SESSION_STAGE_COUNT
} DsSessionStage;

const char *ds_session_stage_name (DsSessionStage stage); /* "image", "vae", "text", "unet" */

/* Called on the session's thread: stage, step done (1-based) of total steps.
 * For the UNet a step is one block (down resnet/transformer, mid, up …) of the
 * current run; `run` and `runs` count the UNet runs of an ensemble. */
typedef void (*DsProgressFn) (void *user, DsSessionStage stage, int done, int total, int run,
                              int runs);

typedef struct {
  /* Polled between network blocks (UNet blocks, VAE and text encoder layers
   * where they check): non-zero stops the request with DS_ERR_CANCELLED; no
   * result of the stopped run is cached, but a latent or text context it had
   * finished is (the next query, often on the same image, reuses it). NULL:
   * never cancelled. */
  const atomic_int *cancel;
  DsProgressFn progress; /* NULL: none */
  void *user;
} DsRunControl;

/* ---- queries and results -------------------------------------------------- */

typedef struct {
  const DsImage *image;      /* the picture; the session keys its latent by content */
  int size;                  /* model input side; ds_query_default gives the model's native one */
  DsImageFit fit;
  const char *prompt;        /* the question or caption (cond half); NULL = "" */
  const char *uncond_prompt; /* NULL = "" (classifier-free guidance's uncond half) */
  int t;                     /* timestep 0..999 */
  DsTimestepConvention convention;
  uint64_t seed;             /* ε from the seed */
  const float *noise;        /* or ε given explicitly, host [C, h, w] of the latent; NULL:
                                from the seed (an ensemble's other trials still take
                                seed + trial) */
  const char *const *probes; /* feature probes by paper name or long id; may be 0 */
  int n_probes;
  /* Attention-map probes come averaged over heads on the backend, c = 1
   * ([1, Nq, Nk]). The heat maps' layers are always averaged on the backend
   * unless a probe of the query is an attention map kept with its heads. */
  bool head_mean_maps;
  /* Cross-attention heat maps of the cond half, averaged over heads and over
   * the down/up layers whose query count is heat_nq (0: the model's default,
   * ds_pipeline_heat_side: a quarter of the latent side unless the model says
   * otherwise; -1: no heat maps). With
   * more than 64 such layers, the first 64. */
  int heat_nq;
  /* Instead, DAAM's aggregation (docs/models.md §6.2, ds_daam_*): every down/up
   * cross-attention layer, per head, upsampled to the latent side (heat_h =
   * heat_w = size / 8), clamped at 0 and averaged; not normalised. heat_nq
   * must not be -1. The maps keep their heads on the way out (head_mean_maps
   * is ignored). */
  bool heat_daam;
  /* Ensemble for the heat maps (and with want_eps the per-run outputs): the
   * UNet runs at each timestep × trial (run r at timesteps[r / trials], seed
   * seed + r % trials) and the heat maps are averaged (P2P's mean). The
   * features are those of the run at (t, seed): the ensemble's first run when
   * timesteps[0] == t, else one run more (and only when there are probes), as
   * `diffscope-cli render --timesteps` has always done. n_timesteps 0: just t;
   * trials 0 counts as 1. */
  const int *timesteps;
  int n_timesteps;
  int trials;
  /* ε̂ of both halves and the per-layer cross-attention logsumexp of every run
   * (for the image–text score; runs the whole UNet). */
  bool want_eps;
} DsQuery;

/* size: the model's native input side; t 100, seed 0, DS_FIT_STRETCH,
 * DS_TIMESTEP_DIRECT, heat_nq 0, trials 1; no image, prompt or probes. */
DsQuery ds_query_default (const DsSession *s);

typedef struct {
  char name[64];           /* the paper's name */
  char id[80];             /* Meng et al.'s long id */
  int index;               /* in ds_pipeline_probes (size) */
  int64_t c, h, w;         /* as emitted: an attention map is [heads or 1, Nq, Nk] */
  const float *uncond;     /* [c, h, w] host f32 */
  const float *cond;       /* [c, h, w] */
} DsSessionProbe;

typedef struct {
  int n_probes;                /* in the query's order */
  const DsSessionProbe *probes;
  /* heat maps (when asked): [heat_h·heat_w, heat_k], position-major, cond half */
  const float *heat;
  int64_t heat_h, heat_w, heat_k;
  int heat_layers;             /* layers averaged per run */
  int runs;                    /* UNet runs of the ensemble (n_timesteps × trials; 1 without
                                  one); 0 when nothing asked for them (no heat, no ε̂) */
  DsTokens cond, uncond;       /* the prompts' tokens (cond: words for the token strip) */
  int unet_timestep;           /* of the features' run (t) */
  /* with want_eps, per ensemble run r < runs: eps[r] the ε used [C·h·w],
   * eps_hat[r] [2, C·h·w] (uncond, cond), cross_lse[r] [n_cross_layers · 2]
   * (DsProbeSink.cross_lse's layout) */
  const float *const *eps, *const *eps_hat;
  const double *const *cross_lse;
  int n_cross_layers;
  /* where the work went */
  bool from_cache;             /* the whole result came from the cache */
  int unet_forwards;           /* UNet forwards this call ran (0 from the cache) */
  bool cached_latent, cached_text;
  double ms_image, ms_vae, ms_text, ms_unet, ms_total; /* this call's; a cached stage 0 */
} DsSessionResult;

/* Answers q (from the cache or by running the networks). *out is transfer
 * full: release with ds_session_result_unref. Errors name what is wrong (an
 * unknown probe name lists both naming styles; a size that is not a positive
 * multiple of 64; a bad timestep …). DS_ERR_CANCELLED when ctl->cancel was
 * set. */
DsStatus ds_session_run (DsSession *s, const DsQuery *q, const DsRunControl *ctl,
                         DsSessionResult **out, DsError *err);
DsSessionResult *ds_session_result_ref (DsSessionResult *r);
void ds_session_result_unref (DsSessionResult *r);
/* The probe of r by name (paper name or long id), or NULL. */
const DsSessionProbe *ds_session_result_probe (const DsSessionResult *r, const char *name);

typedef struct {
  uint64_t unet_forwards;   /* since the session opened */
  uint64_t vae_forwards;
  uint64_t text_forwards;
  uint64_t result_hits, result_misses;
  size_t result_bytes;      /* cached now */
  int results, latents, contexts;
} DsSessionStats;

void ds_session_stats (const DsSession *s, DsSessionStats *out);

/* ---- analyses across results (no network) ---------------------------------- */

/* Linear CKA between every two probes of r (X_s of each, s as given, positions
 * as examples; maps of different sizes are brought to the smaller one's size by
 * ds_map_resize_bilinear first): out [n_probes, n_probes], every entry
 * computed (the diagonal is 1 and the matrix symmetric up to rounding).
 * DS_ERR_INVALID naming the probe when one is an attention map. */
DsStatus ds_session_cka_matrix (const DsSessionResult *r, float s, double *out, DsError *err);

#ifdef __cplusplus
}
#endif
