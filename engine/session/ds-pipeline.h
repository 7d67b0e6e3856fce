/* ds-pipeline.h: one feature-extraction request, end to end (DESIGN "data path").
 *
 *   image -> 512² [-1,1] -> VAE encoder -> mean·scaling      (the clean latent x0)
 *   prompt, uncond prompt -> CLIP BPE -> text encoder         (context [2,77,X])
 *   (t, seed) -> ε -> x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε
 *   UNet on the batch [uncond, cond] -> the wanted probes, both halves
 *
 * The pipeline owns the loaded models, tokenizer, schedule and arenas, and
 * caches the last image's latent and the last prompts' text context, so a
 * new timestep, seed or probe set runs only the UNet. It is not thread-safe:
 * one worker thread owns a pipeline. The built-in demo model
 * (ds_pipeline_open_demo) has the SD 2.x topology at small widths with seeded
 * random weights: it runs everywhere and is labelled untrained everywhere.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-image.h"
#include "ds-model-dir.h"
#include "ds-ops.h"
#include "ds-probes.h"
#include "ds-schedule.h"
#include "ds-tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsPipeline DsPipeline;

DsStatus ds_pipeline_open (const char *model_dir, DsBackend *be, DsPipeline **out, DsError *err);
/* data_dir holds clip-tokenizer/{vocab.json,merges.txt}. */
DsStatus ds_pipeline_open_demo (uint64_t seed, const char *data_dir, DsBackend *be,
                                DsPipeline **out, DsError *err);
void ds_pipeline_free (DsPipeline *p);

/* "SD 2.x (path)" or "demo model (untrained, seed N)". */
const char *ds_pipeline_label (const DsPipeline *p);
bool ds_pipeline_is_demo (const DsPipeline *p);
const DsModelDir *ds_pipeline_model (const DsPipeline *p);
const DsTokenizer *ds_pipeline_tokenizer (const DsPipeline *p);
/* The probes for an image of size x size (transfer none; valid until the next call). */
DsStatus ds_pipeline_probes (DsPipeline *p, int size, const DsProbeList **out, DsError *err);

typedef struct {
  int channels, h, w; /* the clean latent of one image */
} DsLatentShape;

DsLatentShape ds_pipeline_latent_shape (const DsPipeline *p, int size);

typedef struct {
  const DsImage *image;
  int size;                 /* model input side, a multiple of 64 (512 for SD 2.1-base) */
  DsImageFit fit;
  const char *prompt;       /* the question or caption (cond half) */
  const char *uncond_prompt; /* "" for classifier-free guidance's uncond half */
  int t;                    /* user timestep */
  DsTimestepConvention convention;
  uint64_t seed;            /* for ε */
  const float *noise;       /* or ε given explicitly: host [latent C, h, w]; NULL: from seed */
  const bool *want;         /* one per probe of ds_pipeline_probes (size); NULL: none */
  bool want_eps;            /* run the whole UNet and return ε̂ for both halves */
  double *cross_lse;        /* optional: DsProbeSink.cross_lse, [n_cross_layers * 2] */
  bool head_mean_maps;      /* DsProbeSink.head_mean_maps: wanted attention maps come
                               averaged over heads, [2, 1, Nq, Nk] */
  const volatile int *cancel;
} DsFeatureRequest;

typedef struct {
  DsProbeList probes;       /* copy of the list the request was indexed by */
  DsTensor *values;         /* [probes.n]: wanted ones host f32 [2, ...], batch [uncond, cond] */
  DsTokens cond, uncond;
  int unet_timestep;
  float *noise;             /* ε used, host [C,h,w] */
  DsTensor eps;             /* with want_eps: ε̂, host [2,C,h,w] for [uncond, cond] */
  bool cached_latent, cached_text; /* the VAE / text encoder did not run */
  double ms_image, ms_vae, ms_text, ms_unet; /* wall-clock per stage (0 when cached) */
} DsFeatures;

DsStatus ds_pipeline_features (DsPipeline *p, const DsFeatureRequest *req, DsFeatures *out,
                               DsError *err);
void ds_features_free (DsFeatures *f);

#ifdef __cplusplus
}
#endif
