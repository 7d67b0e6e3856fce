/* ds-schedule.h: the DDPM noise schedule, forward noising and seeded noise.
 *
 * betas = linspace(sqrt(beta_start), sqrt(beta_end), n)^2 ("scaled_linear", SD)
 * or linspace(beta_start, beta_end, n) ("linear"), computed in float32 the way
 * torch does; alphas_cumprod = cumprod(1 - betas) as torch's float32 cumprod gives
 * it (a double product rounded per element; docs/models.md §4.1).
 * x_t = sqrt(ᾱ_t)·x0 + sqrt(1 - ᾱ_t)·ε (diffusers' DDPMScheduler.add_noise, §4.2).
 *
 * Timestep conventions (§2.4, §9.2): the engine runs the UNet at the timestep
 * the user sets (DIFT's convention). Meng et al.'s code runs it at t - 1 for a
 * requested t, with the noise level of t - 1; DS_TIMESTEP_MENG maps to that.
 *
 * Noise: ds_noise_normal fills a buffer with standard normal floats from a
 * documented generator — xoshiro256** seeded through splitmix64(seed), Box–Muller
 * on pairs of 53-bit uniforms — so a seed gives the same ε on every machine.
 * (It is not torch.randn: tests pass ε explicitly.)
 */
#pragma once

#include <stdint.h>

#include "ds-model-dir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int n_steps;
  float *betas;          /* [n_steps] owned */
  float *alphas_cumprod; /* [n_steps] owned */
} DsSchedule;

typedef enum {
  DS_TIMESTEP_DIRECT, /* UNet timestep = t */
  DS_TIMESTEP_MENG,   /* UNet timestep = t - 1 (Meng et al.'s Euler "linspace" code) */
} DsTimestepConvention;

DsStatus ds_schedule_init (DsSchedule *s, const DsSchedulerConfig *cfg, DsError *err);
void ds_schedule_free (DsSchedule *s);

/* The UNet timestep for a user's t under a convention; DS_ERR_INVALID when the
 * result is outside [0, n_steps). */
DsStatus ds_schedule_unet_timestep (const DsSchedule *s, int t, DsTimestepConvention conv,
                                    int *out, DsError *err);

/* xt[i] = sqrt(ᾱ_t)·x0[i] + sqrt(1-ᾱ_t)·eps[i], float32 as diffusers computes it. */
DsStatus ds_schedule_add_noise (const DsSchedule *s, int t, const float *x0, const float *eps,
                                float *xt, int64_t n, DsError *err);

void ds_noise_normal (uint64_t seed, float *out, int64_t n);

#ifdef __cplusplus
}
#endif
