/* ds-pipeline.h: one feature-extraction request, end to end (docs/design.md, "The data path").
 *
 *   image -> 512² [-1,1] -> VAE encoder -> mean·scaling      (the clean latent x0)
 *   prompt, uncond prompt -> CLIP BPE -> text encoder         (context [2,77,X])
 *   (t, seed) -> ε -> x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε
 *   UNet on the batch [uncond, cond] -> the wanted probes, both halves
 *
 * The pipeline owns the loaded models, tokenizer, schedule and arenas, and
 * caches the last image's latent and the last prompts' text context, so a
 * new timestep, seed or probe set runs only the UNet. A caller with caches
 * of its own (DsSession) runs the stages itself (ds_pipeline_encode_image,
 * ds_pipeline_encode_text) and hands the latent and context to the request,
 * which then bypasses the pipeline's one-entry caches. It is not thread-safe:
 * one worker thread owns a pipeline.
 *
 * The built-in model (ds_pipeline_open_builtin) is a small SD 2.x trained on
 * the synthetic shapes world (scripts/shapes/, docs/shapes.md), shipped under
 * DATA_DIR/models/shapes in the diffusers layout and loaded by exactly the
 * code a user's SD 2.1 folder takes; it is labelled DS_BUILTIN_MODEL_LABEL
 * everywhere. A model with random weights (ds_pipeline_open_untrained) is a
 * test fixture only and is labelled untrained.
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

#define DS_BUILTIN_MODEL_SUBDIR "models/shapes"
#define DS_BUILTIN_MODEL_LABEL "toy shapes model, trained on synthetic scenes"
/* The built-in model folder: data_dir/DS_BUILTIN_MODEL_SUBDIR into buf. */
void ds_pipeline_builtin_dir (const char *data_dir, char *buf, size_t n);
/* ds_pipeline_open of that folder, labelled DS_BUILTIN_MODEL_LABEL; a missing
 * or broken folder is an error naming it. */
DsStatus ds_pipeline_open_builtin (const char *data_dir, DsBackend *be, DsPipeline **out,
                                   DsError *err);
/* A test fixture: SD 2.x's topology at tiny widths with seeded random weights.
 * data_dir holds clip-tokenizer/{vocab.json,merges.txt}. Untrained. */
DsStatus ds_pipeline_open_untrained (uint64_t seed, const char *data_dir, DsBackend *be,
                                     DsPipeline **out, DsError *err);
/* A model with the configs of `configs` (its unet, vae, text, scheduler and
 * pad_token; the paths are ignored) and seeded random weights (the VAE from
 * seed + 1, the text encoder seed + 2, the UNet seed + 3):
 * ds_pipeline_open_untrained is this with its tiny configs; a benchmark passes
 * SD 2.1-base's. ds_pipeline_is_untrained answers true. */
DsStatus ds_pipeline_open_random (const DsModelDir *configs, uint64_t seed, const char *data_dir,
                                  DsBackend *be, DsPipeline **out, DsError *err);
void ds_pipeline_free (DsPipeline *p);

/* "SD 2.x (path)", DS_BUILTIN_MODEL_LABEL, or "... random weights (untrained, seed N)". */
const char *ds_pipeline_label (const DsPipeline *p);
bool ds_pipeline_is_untrained (const DsPipeline *p);
bool ds_pipeline_is_builtin (const DsPipeline *p);
/* The model's native input side: the UNet's sample_size times the VAE's
 * downsampling factor (512 for SD 2.1-base, 128 for the built-in model). */
int ds_pipeline_native_size (const DsPipeline *p);
/* The side of the cross-attention layers the default word heat maps average
 * at input size `size`: the latent side / unet heat_divisor (DsUnetConfig). */
int ds_pipeline_heat_side (const DsPipeline *p, int size);
const DsModelDir *ds_pipeline_model (const DsPipeline *p);
const DsTokenizer *ds_pipeline_tokenizer (const DsPipeline *p);
/* The probes for an image of size x size (transfer none; valid until the next call). */
DsStatus ds_pipeline_probes (DsPipeline *p, int size, const DsProbeList **out, DsError *err);

typedef struct {
  int channels, h, w; /* the clean latent of one image */
} DsLatentShape;

DsLatentShape ds_pipeline_latent_shape (const DsPipeline *p, int size);
/* X of the text context [2, 77, X]. */
int ds_pipeline_context_width (const DsPipeline *p);
/* The UNet timestep for a user's t; DS_ERR_INVALID naming t when outside the schedule. */
DsStatus ds_pipeline_unet_timestep (const DsPipeline *p, int t, DsTimestepConvention conv,
                                    int *out, DsError *err);

/* The clean latent of an image: latent host [C, h, w] (ds_pipeline_latent_shape)
 * = VAE mean · scaling. ms_image, ms_vae (may be NULL): the wall-clock of the
 * resize and of the encoder. Uses no cache. */
DsStatus ds_pipeline_encode_image (DsPipeline *p, const DsImage *image, int size, DsImageFit fit,
                                   float *latent, double *ms_image, double *ms_vae, DsError *err);
/* The text context of [uncond, cond]: ctx host [2, 77, X]. Uses no cache. */
DsStatus ds_pipeline_encode_text (DsPipeline *p, const DsTokens *uncond, const DsTokens *cond,
                                  float *ctx, DsError *err);

/* DsProbeSink.progress */
typedef void (*DsBlockProgressFn) (void *user, int done, int total);

typedef struct {
  const DsImage *image;     /* may be NULL when latent is given */
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
  const atomic_int *cancel; /* DsProbeSink.cancel */
  DsBlockProgressFn progress; /* DsProbeSink.progress: the UNet's blocks; NULL: none */
  void *progress_user;
  /* Precomputed stages (host f32; NULL: computed here, through the one-entry
   * caches): the clean latent [C, h, w] of the image at size and fit, and the
   * context [2, 77, X] of [uncond_prompt, prompt]. The prompts are tokenized
   * either way (DsFeatures.cond, .uncond). */
  const float *latent;
  const float *context;
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
