/* ds-unet.h: the Stable Diffusion UNet (diffusers' UNet2DConditionModel) with probes.
 *
 * Hyperparameters come from DsUnetConfig (SD 2.x: linear projections, per-level
 * head counts; SD 1.x: 1x1-conv projections, one head count). The forward takes
 * a batch of noisy latents, one timestep per item and a text context per item —
 * typically [uncond, cond] — and hands named activations to a DsProbeSink as
 * they are computed (ds-probes.h), stopping after the deepest one wanted.
 *
 * Usage:
 *   ds_unet_load (&model_dir.unet, model_dir.unet_weights, be, &unet, err);
 *   size_t bytes = ds_unet_arena_bytes (unet, 2, 64, 64, 77, &sink);
 *   ds_arena_init (&arena, bytes, err);
 *   ds_unet_forward (unet, be, &arena, &x_t, timesteps, &context, &sink, &eps, err);
 */
#pragma once

#include <stdint.h>

#include "ds-model-dir.h"
#include "ds-ops.h"
#include "ds-probes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsUnet DsUnet;

DsStatus ds_unet_load (const DsUnetConfig *cfg, const char *weights_path, DsBackend *be,
                       DsUnet **out, DsError *err);
/* The same model with seeded random parameters (ds_weights_init_random): the
 * built-in, untrained demo model and the benchmarks at the real configs. */
DsStatus ds_unet_new_random (const DsUnetConfig *cfg, uint64_t seed, DsBackend *be,
                             DsUnet **out, DsError *err);
void ds_unet_free (DsUnet *unet);
/* On a backend that records forwards (CUDA graphs), wanted probes are copied
 * into the arena and handed out after the forward, up to this many bytes
 * (default 1 GiB); a probe set above it runs eagerly, handed out as it comes
 * (and ds_unet_arena_bytes plans it so). */
void ds_unet_set_stage_budget (DsUnet *unet, size_t bytes);
const DsUnetConfig *ds_unet_config (const DsUnet *unet);
size_t ds_unet_n_params (const DsUnet *unet);

/* Exact activation-arena size for a forward of this shape and probe set. */
size_t ds_unet_arena_bytes (DsUnet *unet, int64_t B, int64_t h, int64_t w, int64_t n_ctx,
                            const DsProbeSink *sink);

/* sample  [B, in_channels, h, w] on the backend (the noisy latent x_t)
 * timesteps  host [B], the UNet timestep of each item (float, as diffusers passes it)
 * context [B, n_ctx, cross_attention_dim] on the backend
 * sink    may be NULL (no probes, full forward)
 * out     [B, out_channels, h, w] preallocated, or NULL; written only when the
 *         forward runs to the end (no wanted probe, or the deepest is unet-out). */
DsStatus ds_unet_forward (DsUnet *unet, DsBackend *be, DsArena *a, const DsTensor *sample,
                          const float *timesteps, const DsTensor *context,
                          const DsProbeSink *sink, DsTensor *out, DsError *err);

#ifdef __cplusplus
}
#endif
