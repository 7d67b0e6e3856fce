/* ds-vae.h: the AutoencoderKL encoder (docs/models.md §3): pixels -> latents.
 *
 * Only the encoder half and quant_conv are loaded (the decoder is never needed
 * for feature extraction). The latent is the posterior mean times the config's
 * scaling_factor, i.e. diffusers' `vae.encode(x).latent_dist.mode() * sf`: a
 * deterministic stand-in for the pipelines' `latent_dist.sample() * sf`.
 *
 * Both spellings of the mid-block attention parameters are accepted: current
 * diffusers' to_q/to_k/to_v/to_out.0 and the legacy query/key/value/proj_attn
 * (files written by diffusers <= 0.13, such as SD 2.1-base's own VAE).
 *
 * Hyperparameters come from the DsVaeConfig; what diffusers hard-codes for the
 * encoder (GroupNorm eps 1e-6, one attention head spanning all channels, the
 * right/bottom-padded stride-2 downsampler) is hard-coded here too.
 *
 * Usage:
 *   DsVae *vae;
 *   ds_vae_load (&md.vae, md.vae_weights, be, &vae, err);
 *   DsArena a;
 *   ds_arena_init (&a, ds_vae_arena_bytes (vae, B, H, W), err);
 *   ds_vae_encode (vae, be, &a, &pixels, &latent, err);
 *   ds_arena_free (&a);
 *   ds_vae_free (vae);
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ds-model-dir.h"
#include "ds-nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsVae DsVae;

/* Opens the safetensors file at weights_path, loads every encoder.* and
 * quant_conv.* tensor onto `be` (shape-checked against cfg), and closes the
 * file. Errors name the file and tensor, prefixed with "VAE encoder".
 * transfer full: *out must be freed with ds_vae_free. */
DsStatus ds_vae_load (const DsVaeConfig *cfg, const char *weights_path, DsBackend *be,
                      DsVae **out, DsError *err);
/* The same encoder with seeded random parameters (the built-in demo model). */
DsStatus ds_vae_new_random (const DsVaeConfig *cfg, uint64_t seed, DsBackend *be, DsVae **out,
                            DsError *err);
void ds_vae_free (DsVae *vae);

/* The downsampling factor f = 2^(n_levels - 1) (8 for SD). */
int ds_vae_factor (const DsVae *vae);
/* Latent channels (4 for SD). */
int ds_vae_latent_channels (const DsVae *vae);

/* The exact arena size ds_vae_encode needs for a [B,3,H,W] input, measured by
 * running the forward on the null backend with a measuring arena. 0 when H or
 * W is not a positive multiple of the factor, or B < 1. */
size_t ds_vae_arena_bytes (DsVae *vae, int64_t B, int64_t H, int64_t W);

/* pixels [B, in_channels, H, W] f32 in [-1, 1], on be's device;
 * latent [B, latent_channels, H/f, W/f] f32, preallocated on be's device,
 * receives mean(posterior) * scaling_factor.
 * H and W must be multiples of f (else DS_ERR_INVALID); `a` must hold at least
 * ds_vae_arena_bytes (B, H, W) free bytes; it is returned to its entry mark. */
DsStatus ds_vae_encode (DsVae *vae, DsBackend *be, DsArena *a, const DsTensor *pixels,
                        DsTensor *latent, DsError *err);

#ifdef __cplusplus
}
#endif
