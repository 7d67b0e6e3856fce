/* test-schedule.c: the SD noise schedule, add_noise, timestep conventions and
 * the seeded noise generator. Reference values: docs/models.md §4.1 (float32) and
 * diffusers' DDPMScheduler in the committed fixture. */
#include "ds-test.h"

#include <stdlib.h>

#include "ds-safetensors.h"
#include "ds-schedule.h"

static const DsSchedulerConfig sd = { 1000, 0.00085f, 0.012f, true };

static void
test_spec_table (void)
{
  DsSchedule s;
  DsError err = { 0 };
  DS_CHECK_OK (ds_schedule_init (&s, &sd, &err), &err);
  static const struct { int t; double beta, ab; } rows[] = {
    { 0, 8.5000e-4, 0.99915 },     { 49, 1.09546e-3, 0.9526254 }, { 50, 1.10080e-3, 0.9515768 },
    { 99, 1.37799e-3, 0.8954625 }, { 261, 2.51577e-3, 0.6556693 }, { 499, 4.80379e-3, 0.2776695 },
    { 999, 1.2e-2, 0.00466009 },
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    {
      DS_CHECK_CLOSE (s.betas[rows[i].t] / rows[i].beta, 1.0, 1e-5);
      DS_CHECK_CLOSE (s.alphas_cumprod[rows[i].t] / rows[i].ab, 1.0, 2e-6);
    }
  ds_schedule_free (&s);
}

static void
test_against_diffusers (void)
{
  DsSafetensors *st;
  DsError err = { 0 };
  DsStatus r = ds_safetensors_open (DS_TEST_DATA_DIR "/sd2-tiny-expected.safetensors", &st, &err);
  DS_CHECK_OK (r, &err);
  if (r)
    return;
  DsTensor ref;
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "schedule.alphas_cumprod", 1, (int64_t[]){ 1000 },
                                        &ref, &err), &err);
  DsSchedule s;
  DS_CHECK_OK (ds_schedule_init (&s, &sd, &err), &err);
  double worst = 0;
  for (int t = 0; t < 1000; t++)
    worst = fmax (worst, fabs (s.alphas_cumprod[t] / ds_tensor_f32 (&ref)[t] - 1.0));
  printf ("alphas_cumprod: worst relative difference to diffusers %.3g\n", worst);
  DS_CHECK (worst <= 1e-6, "worst relative difference %.3g", worst);

  /* x_t at t = 50 from the fixture's latent and noise */
  DsTensor x0, eps, xt;
  int64_t shape[] = { 1, 4, 16, 16 };
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "vae.latent", 4, shape, &x0, &err), &err);
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "input.noise", 4, shape, &eps, &err), &err);
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "unet.x_t", 4, shape, &xt, &err), &err);
  if (x0.data && eps.data && xt.data)
    {
      float out[1024];
      DS_CHECK_OK (ds_schedule_add_noise (&s, 50, ds_tensor_f32 (&x0), ds_tensor_f32 (&eps), out,
                                          1024, &err), &err);
      double nmse = ds_test_nmse (out, ds_tensor_f32 (&xt), 1024);
      printf ("x_t NMSE vs diffusers: %.3g\n", nmse);
      DS_CHECK (nmse < 1e-12, "x_t NMSE %.3g", nmse);
    }
  DS_CHECK_STATUS (ds_schedule_add_noise (&s, 1000, NULL, NULL, NULL, 0, &err), DS_ERR_INVALID,
                   &err);
  ds_tensor_free (&x0);
  ds_tensor_free (&eps);
  ds_tensor_free (&xt);
  ds_tensor_free (&ref);
  ds_schedule_free (&s);
  ds_safetensors_close (st);
}

static void
test_conventions (void)
{
  DsSchedule s;
  DsError err = { 0 };
  DS_CHECK_OK (ds_schedule_init (&s, &sd, &err), &err);
  int u = -5;
  DS_CHECK_OK (ds_schedule_unet_timestep (&s, 50, DS_TIMESTEP_DIRECT, &u, &err), &err);
  DS_CHECK (u == 50, "direct");
  DS_CHECK_OK (ds_schedule_unet_timestep (&s, 50, DS_TIMESTEP_MENG, &u, &err), &err);
  DS_CHECK (u == 49, "Meng et al. run the UNet at t-1");
  DS_CHECK_STATUS (ds_schedule_unet_timestep (&s, 0, DS_TIMESTEP_MENG, &u, &err), DS_ERR_INVALID,
                   &err);
  DS_CHECK_STATUS (ds_schedule_unet_timestep (&s, 1000, DS_TIMESTEP_DIRECT, &u, &err),
                   DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "0..999");
  ds_schedule_free (&s);
  DsSchedulerConfig bad = { 0, 0.1f, 0.2f, false };
  DS_CHECK_STATUS (ds_schedule_init (&s, &bad, &err), DS_ERR_INVALID, &err);
}

static void
test_noise (void)
{
  enum { N = 1 << 20 };
  float *a = malloc (N * sizeof *a), *b = malloc (N * sizeof *b);
  ds_noise_normal (7, a, N);
  ds_noise_normal (7, b, N);
  DS_CHECK (memcmp (a, b, N * sizeof *a) == 0, "same seed, same noise");
  ds_noise_normal (8, b, N);
  DS_CHECK (memcmp (a, b, N * sizeof *a) != 0, "another seed, other noise");
  double m = 0, v = 0, k = 0;
  long tail = 0;
  for (int i = 0; i < N; i++)
    {
      m += a[i];
      v += (double) a[i] * a[i];
      k += (double) a[i] * a[i] * a[i] * a[i];
      tail += fabsf (a[i]) > 3.0f;
    }
  m /= N, v /= N, k /= N;
  /* Standard normal: mean 0, variance 1, fourth moment 3, P(|x| > 3) = 0.0027. */
  DS_CHECK (fabs (m) < 0.005, "mean %g", m);
  DS_CHECK (fabs (v - 1) < 0.01, "variance %g", v);
  DS_CHECK (fabs (k - 3) < 0.05, "fourth moment %g", k);
  DS_CHECK (fabs ((double) tail / N - 0.0027) < 0.0005, "tail %g", (double) tail / N);
  /* An odd count fills the last element too. */
  float odd[3] = { 99, 99, 99 };
  ds_noise_normal (1, odd, 3);
  DS_CHECK (odd[2] != 99 && fabsf (odd[2]) < 10, "odd count");
  free (a);
  free (b);
}

int
main (void)
{
  test_spec_table ();
  test_against_diffusers ();
  test_conventions ();
  test_noise ();
  return ds_test_finish ();
}
