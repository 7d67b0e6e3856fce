/* ds-schedule.c: see ds-schedule.h. */
#include "ds-schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* torch.linspace for float32 on the CPU: the first half counts up from start,
 * the second half down from end, with a float step. */
static float
linspace_at (float start, float end, int n, int i)
{
  if (n == 1)
    return start;
  float step = (end - start) / (float) (n - 1);
  return i < n / 2 ? start + step * (float) i : end - step * (float) (n - i - 1);
}

DsStatus
ds_schedule_init (DsSchedule *s, const DsSchedulerConfig *cfg, DsError *err)
{
  memset (s, 0, sizeof *s);
  int n = cfg->num_train_timesteps;
  if (n < 1 || n > 100000)
    return ds_error_set (err, DS_ERR_INVALID, "scheduler: num_train_timesteps %d out of range", n);
  s->betas = malloc ((size_t) n * sizeof (float));
  s->alphas_cumprod = malloc ((size_t) n * sizeof (float));
  if (!s->betas || !s->alphas_cumprod)
    {
      ds_schedule_free (s);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory for the noise schedule");
    }
  s->n_steps = n;
  /* torch's float32 cumprod matches a double-precision product rounded once
   * per element, not a float running product (checked against diffusers). */
  double prod = 1.0;
  for (int i = 0; i < n; i++)
    {
      float b;
      if (cfg->scaled_linear)
        {
          /* Python computes beta**0.5 in double, torch then stores float32. */
          float v = linspace_at ((float) sqrt ((double) cfg->beta_start),
                                 (float) sqrt ((double) cfg->beta_end), n, i);
          b = v * v;
        }
      else
        b = linspace_at (cfg->beta_start, cfg->beta_end, n, i);
      s->betas[i] = b;
      prod *= (double) (1.0f - b);
      s->alphas_cumprod[i] = (float) prod;
    }
  return DS_OK;
}

void
ds_schedule_free (DsSchedule *s)
{
  free (s->betas);
  free (s->alphas_cumprod);
  memset (s, 0, sizeof *s);
}

DsStatus
ds_schedule_unet_timestep (const DsSchedule *s, int t, DsTimestepConvention conv, int *out,
                           DsError *err)
{
  int u = conv == DS_TIMESTEP_MENG ? t - 1 : t;
  if (u < 0 || u >= s->n_steps)
    return ds_error_set (err, DS_ERR_INVALID,
                         "timestep %d is outside 0..%d%s", t, s->n_steps - 1,
                         conv == DS_TIMESTEP_MENG ? " (Meng et al.'s convention needs t >= 1)" : "");
  *out = u;
  return DS_OK;
}

DsStatus
ds_schedule_add_noise (const DsSchedule *s, int t, const float *x0, const float *eps, float *xt,
                       int64_t n, DsError *err)
{
  if (t < 0 || t >= s->n_steps)
    return ds_error_set (err, DS_ERR_INVALID, "timestep %d is outside 0..%d", t, s->n_steps - 1);
  float ab = s->alphas_cumprod[t];
  float a = sqrtf (ab), b = sqrtf (1.0f - ab);
  for (int64_t i = 0; i < n; i++)
    xt[i] = a * x0[i] + b * eps[i];
  return DS_OK;
}

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static uint64_t
xoshiro256ss (uint64_t s[4])
{
  uint64_t result = rotl (s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

void
ds_noise_normal (uint64_t seed, float *out, int64_t n)
{
  uint64_t st[4], x = seed;
  for (int i = 0; i < 4; i++)
    st[i] = splitmix64 (&x);
  for (int64_t i = 0; i < n; i += 2)
    {
      /* u1 in (0, 1], u2 in [0, 1) */
      double u1 = ((xoshiro256ss (st) >> 11) + 1) * 0x1.0p-53;
      double u2 = (xoshiro256ss (st) >> 11) * 0x1.0p-53;
      double r = sqrt (-2.0 * log (u1)), th = 2.0 * M_PI * u2;
      out[i] = (float) (r * cos (th));
      if (i + 1 < n)
        out[i + 1] = (float) (r * sin (th));
    }
}
