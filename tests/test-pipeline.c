/* test-pipeline.c: one request end to end on the committed sd2-tiny model, the
 * caches (a second request with another timestep runs only the UNet, and gives
 * what an uncached run gives), ε̂ and the per-layer logsumexp outputs. */
#include "ds-test.h"

#include <stdlib.h>

#include "ds-pipeline.h"
#include "ds-safetensors.h"

#define DATA DS_TEST_DATA_DIR

static DsTensor
ref (const DsSafetensors *st, const char *name)
{
  DsTensor t = { 0 };
  DsError err = { 0 };
  DS_CHECK_OK (ds_safetensors_load_f32 (st, name, 0, NULL, &t, &err), &err);
  return t;
}

int
main (void)
{
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsPipeline *p;
  DsSafetensors *ex;
  DsImage img;
  if (ds_pipeline_open (DATA "/sd2-tiny", be, &p, &err)
      || ds_safetensors_open (DATA "/sd2-tiny-expected.safetensors", &ex, &err)
      || ds_image_load (DATA "/sd-input.png", &img, &err))
    {
      DS_CHECK_OK (err.code, &err);
      return ds_test_finish ();
    }
  DS_CHECK (!ds_pipeline_is_untrained (p), "a real model folder");
  const DsProbeList *list;
  DS_CHECK_OK (ds_pipeline_probes (p, 128, &list, &err), &err);
  bool *want = calloc ((size_t) list->n, 1);
  int q = ds_probe_list_find (list, "U-L2-R1-B0-Cross-Q");
  want[q] = true;
  DsTensor noise = ref (ex, "input.noise"), out_ref = ref (ex, "unet.out");
  DsTensor q_ref = ref (ex, "probe.up-level2-repeat1-vit-block0-cross-q");
  double lse[32];
  DsFeatureRequest req = { .image = &img, .size = 128, .fit = DS_FIT_STRETCH,
                           .prompt = "a photo of a red cube, on a table!", .uncond_prompt = "",
                           .t = 50, .noise = ds_tensor_f32 (&noise), .want = want,
                           .want_eps = true, .cross_lse = lse };
  DsFeatures f1, f2, f3;
  DS_CHECK_OK (ds_pipeline_features (p, &req, &f1, &err), &err);
  DS_CHECK (!f1.cached_latent && !f1.cached_text, "first request computes everything");
  int64_t n = ds_tensor_numel (&q_ref);
  double nmse = ds_test_nmse (ds_tensor_f32 (&f1.values[q]), ds_tensor_f32 (&q_ref), n);
  DS_CHECK (nmse <= 1e-8, "probe NMSE %.3g", nmse);
  nmse = ds_test_nmse (ds_tensor_f32 (&f1.eps), ds_tensor_f32 (&out_ref), ds_tensor_numel (&out_ref));
  DS_CHECK (nmse <= 1e-8, "eps NMSE %.3g", nmse);
  DS_CHECK (memcmp (f1.noise, noise.data, ds_tensor_nbytes (&noise)) == 0, "noise returned");
  DS_CHECK (lse[0] > 0 && lse[0] < 20, "logsumexp filled (%g)", lse[0]);

  /* Same image and prompts at t = 999: only the UNet runs... */
  req.t = 999;
  req.noise = NULL;
  req.seed = 3;
  DS_CHECK_OK (ds_pipeline_features (p, &req, &f2, &err), &err);
  DS_CHECK (f2.cached_latent && f2.cached_text, "latent and text come from the cache");
  DS_CHECK (f2.ms_vae == 0 && f2.ms_text == 0, "no VAE or text time");
  /* ...and gives what a fresh pipeline gives. */
  DsPipeline *fresh;
  DS_CHECK_OK (ds_pipeline_open (DATA "/sd2-tiny", be, &fresh, &err), &err);
  DS_CHECK_OK (ds_pipeline_features (fresh, &req, &f3, &err), &err);
  DS_CHECK (!f3.cached_latent, "fresh pipeline");
  DS_CHECK (memcmp (f2.values[q].data, f3.values[q].data, ds_tensor_nbytes (&f2.values[q])) == 0,
            "cached and uncached runs agree exactly");
  DS_CHECK (memcmp (f1.values[q].data, f2.values[q].data, ds_tensor_nbytes (&f2.values[q])) != 0,
            "another timestep gives other features");
  ds_features_free (&f3);
  ds_pipeline_free (fresh);

  /* Another prompt re-runs the text encoder only; the seed decides the noise. */
  req.prompt = "a blue sphere";
  DS_CHECK_OK (ds_pipeline_features (p, &req, &f3, &err), &err);
  DS_CHECK (f3.cached_latent && !f3.cached_text, "new prompt, same image");
  DS_CHECK (memcmp (f2.noise, f3.noise, ds_tensor_nbytes (&noise)) == 0, "same seed, same noise");
  ds_features_free (&f3);

  /* Bad requests keep the pipeline usable. */
  req.t = 1000;
  DS_CHECK_STATUS (ds_pipeline_features (p, &req, &f3, &err), DS_ERR_INVALID, &err);
  req.t = 50;
  req.size = 100;
  DS_CHECK_STATUS (ds_pipeline_features (p, &req, &f3, &err), DS_ERR_INVALID, &err);
  req.size = 128;
  DS_CHECK_OK (ds_pipeline_features (p, &req, &f3, &err), &err);
  ds_features_free (&f3);

  ds_features_free (&f1);
  ds_features_free (&f2);
  ds_tensor_free (&noise);
  ds_tensor_free (&out_ref);
  ds_tensor_free (&q_ref);
  free (want);
  ds_image_free (&img);
  ds_safetensors_close (ex);
  ds_pipeline_free (p);
  ds_backend_free (be);
  return ds_test_finish ();
}
