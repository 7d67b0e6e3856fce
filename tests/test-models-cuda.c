/* test-models-cuda.c: the text encoder and the VAE encoder on the CUDA
 * backend against transformers and diffusers, and their recorded forwards.
 *
 * For the sd2-tiny and sd1-tiny fixtures (tests/reference/gen_sd_fixtures.py,
 * fp32 references), with weights uploaded to the GPU and activations in a
 * device arena planned by *_arena_bytes, in f32, f16 and bf16:
 *   - the text encoder on the batch [uncond, cond] must match text.uncond and
 *     text.cond, then on cond alone (a second batch size: another recording);
 *   - the VAE encoder on input.pixels must match vae.latent, then on the image
 *     twice (both halves checked).
 * Bars (ds-test-cuda.h): NMSE <= 1e-6 in f32, 1e-4 in f16, 3e-2 in bf16.
 * Each forward runs three times on the same tensors, and the counters of the
 * backend show how (ds-graph.h): eagerly (ops issued, nothing launched),
 * recorded (the same ops issued, one launch), replayed (no op issued, one
 * launch). Every run is checked against the reference and the three outputs
 * must be bit-identical. With DS_CUDA_GRAPHS=0 all three must run eagerly.
 * On the emulator, a VAE whose recordings fail (DS_CUDA_EMU_CAPTURE_FAIL=1)
 * must still give the right latents, eagerly.
 * Exits 77 where no CUDA device answers.
 */
#include "ds-test-cuda.h"

#include <stdlib.h>
#include <string.h>

#include "ds-model-dir.h"
#include "ds-safetensors.h"
#include "ds-text-encoder.h"
#include "ds-vae.h"

static DsBackend *gpu;
static double tol;

typedef DsStatus (*Forward) (void *user, DsError *err);

/* DS_CUDA_EMU_CAPTURE_FAIL=1 on the emulator: every recording fails */
static bool
captures_fail (void)
{
  const char *env = getenv ("DS_CUDA_EMU_CAPTURE_FAIL");
  return env && strcmp (env, "1") == 0;
}

/* Runs fwd three times (eager, recorded, replayed) and checks each run's
 * `out` (on the GPU) against want (host f32, numel(out) values), the three
 * bit-identical, and from the backend's counters that each ran as it should
 * (ds_test_cuda_check_run). */
static void
check_runs (const char *what, Forward fwd, void *user, const DsTensor *out, const float *want)
{
  static const char *const how[] = { "eager", "recorded", "replayed" };
  const bool failing = ds_test_cuda_graphs () && captures_fail ();
  const int64_t n = ds_tensor_numel (out);
  float *first = malloc ((size_t) n * sizeof *first), *got = malloc ((size_t) n * sizeof *got);
  uint64_t eager_ops = 0;
  for (int rep = 0; rep < 3; rep++)
    {
      DsError err = { 0 };
      const DsTestCounters before = ds_test_cuda_counters (gpu);
      DsStatus st = fwd (user, &err);
      DS_CHECK_OK (st, &err);
      if (st)
        break;
      const DsTestCounters after = ds_test_cuda_counters (gpu);
      DS_CHECK_OK (ds_backend_download_f32 (gpu, out, got, &err), &err);
      double nmse = ds_test_nmse (got, want, n);
      printf ("    %-8s %-28s NMSE %.3g (%llu ops issued, %llu launched, %llu failed)\n",
              failing ? "fallback" : how[rep], what, nmse,
              (unsigned long long) (after.ops - before.ops),
              (unsigned long long) (after.launches - before.launches),
              (unsigned long long) (after.failures - before.failures));
      DS_CHECK (nmse <= tol, "%s %s %s: NMSE %.3g", ds_dtype_name (gpu->act_dtype), what,
                how[rep], nmse);
      if (rep == 0)
        memcpy (first, got, (size_t) n * sizeof *got);
      else
        DS_CHECK (memcmp (first, got, (size_t) n * sizeof *got) == 0,
                  "%s: the %s run differs from the eager one", what, how[rep]);
      ds_test_cuda_check_run (what, rep, failing, before, after, &eager_ops);
    }
  free (first);
  free (got);
}

static DsTensor
load_ref (const DsSafetensors *st, const char *name)
{
  DsError err = { 0 };
  DsTensor t = { 0 };
  DS_CHECK_OK (ds_safetensors_load_f32 (st, name, 0, NULL, &t, &err), &err);
  return t;
}

/* ---- text encoder ---- */

typedef struct {
  DsTextEncoder *te;
  DsArena *a;
  const int32_t *ids;
  int64_t B;
  DsTensor *out;
} TextRun;

static DsStatus
text_forward (void *user, DsError *err)
{
  TextRun *r = user;
  return ds_text_encoder_forward (r->te, gpu, r->a, r->ids, r->B, r->out, err);
}

/* ids [B, 77] against want [B * 77 * hidden] */
static void
text_case (DsTextEncoder *te, const char *what, const int32_t *ids, int64_t B, const float *want)
{
  DsError err = { 0 };
  const size_t bytes = ds_text_encoder_arena_bytes (te, B);
  DsArena a;
  DsTensor out;
  DS_CHECK_OK (ds_backend_arena_init (gpu, &a, bytes, &err), &err);
  DS_CHECK_OK (gpu->tensor_alloc (gpu, &out, gpu->act_dtype, 3,
                                  (int64_t[]){ B, DS_TEXT_LEN, ds_text_encoder_hidden_size (te) },
                                  &err),
               &err);
  if (err.code)
    return;
  TextRun r = { te, &a, ids, B, &out };
  check_runs (what, text_forward, &r, &out, want);
  DS_CHECK (a.peak == bytes && a.used == 0, "%s: arena planned %zu, peak %zu, left %zu", what,
            bytes, a.peak, a.used);
  gpu->tensor_free (gpu, &out);
  ds_backend_arena_free (gpu, &a);
}

static void
test_text (const DsModelDir *md, const DsSafetensors *ex)
{
  DsError err = { 0 };
  DsTextEncoder *te;
  DsStatus st = ds_text_encoder_load (&md->text, md->text_encoder_weights, gpu, &te, &err);
  DS_CHECK_OK (st, &err);
  if (st)
    return;
  DsTensor tok[2] = { load_ref (ex, "tokens.uncond"), load_ref (ex, "tokens.cond") };
  DsTensor ref[2] = { load_ref (ex, "text.uncond"), load_ref (ex, "text.cond") };
  if (tok[0].data && tok[1].data && ref[0].data && ref[1].data)
    {
      int32_t ids[2 * DS_TEXT_LEN];
      for (int i = 0; i < 2 * DS_TEXT_LEN; i++) /* ids < 2^24 are exact in f32 */
        ids[i] = (int32_t) ds_tensor_f32 (&tok[i / DS_TEXT_LEN])[i % DS_TEXT_LEN];
      const int64_t n = ds_tensor_numel (&ref[0]);
      float *both = malloc (2 * (size_t) n * sizeof *both);
      memcpy (both, ds_tensor_f32 (&ref[0]), (size_t) n * sizeof *both);
      memcpy (both + n, ds_tensor_f32 (&ref[1]), (size_t) n * sizeof *both);
      text_case (te, "text [uncond, cond]", ids, 2, both);
      text_case (te, "text [cond]", ids + DS_TEXT_LEN, 1, ds_tensor_f32 (&ref[1]));
      free (both);
    }
  for (int i = 0; i < 2; i++)
    {
      ds_tensor_free (&tok[i]);
      ds_tensor_free (&ref[i]);
    }
  ds_text_encoder_free (te);
}

/* ---- VAE encoder ---- */

typedef struct {
  DsVae *vae;
  DsArena *a;
  const DsTensor *pixels;
  DsTensor *latent;
} VaeRun;

static DsStatus
vae_forward (void *user, DsError *err)
{
  VaeRun *r = user;
  return ds_vae_encode (r->vae, gpu, r->a, r->pixels, r->latent, err);
}

/* The image B times against its latent B times. */
static void
vae_case (DsVae *vae, const char *what, const DsTensor *pixels1, const DsTensor *latent1,
          int64_t B)
{
  DsError err = { 0 };
  const int64_t H = pixels1->shape[2], W = pixels1->shape[3], f = ds_vae_factor (vae);
  const int64_t np = ds_tensor_numel (pixels1), nl = ds_tensor_numel (latent1);
  float *px = malloc ((size_t) (B * np) * sizeof *px), *want = malloc ((size_t) (B * nl) * 4);
  for (int64_t b = 0; b < B; b++)
    {
      memcpy (px + b * np, ds_tensor_f32 (pixels1), (size_t) np * sizeof *px);
      memcpy (want + b * nl, ds_tensor_f32 (latent1), (size_t) nl * sizeof *want);
    }
  const size_t bytes = ds_vae_arena_bytes (vae, B, H, W);
  DsArena a;
  DsTensor pixels, latent;
  DS_CHECK_OK (ds_backend_arena_init (gpu, &a, bytes, &err), &err);
  DS_CHECK_OK (gpu->tensor_alloc (gpu, &pixels, gpu->act_dtype, 4,
                                  (int64_t[]){ B, pixels1->shape[1], H, W }, &err),
               &err);
  DS_CHECK_OK (gpu->tensor_alloc (gpu, &latent, gpu->act_dtype, 4,
                                  (int64_t[]){ B, ds_vae_latent_channels (vae), H / f, W / f },
                                  &err),
               &err);
  DS_CHECK_OK (ds_backend_upload_f32 (gpu, &pixels, px, &err), &err);
  if (!err.code)
    {
      VaeRun r = { vae, &a, &pixels, &latent };
      check_runs (what, vae_forward, &r, &latent, want);
      DS_CHECK (a.peak == bytes && a.used == 0, "%s: arena planned %zu, peak %zu, left %zu",
                what, bytes, a.peak, a.used);
      gpu->tensor_free (gpu, &pixels);
      gpu->tensor_free (gpu, &latent);
      ds_backend_arena_free (gpu, &a);
    }
  free (px);
  free (want);
}

static void
test_vae (const DsModelDir *md, const DsSafetensors *ex)
{
  DsError err = { 0 };
  DsVae *vae;
  DsStatus st = ds_vae_load (&md->vae, md->vae_weights, gpu, &vae, &err);
  DS_CHECK_OK (st, &err);
  if (st)
    return;
  DsTensor pixels = load_ref (ex, "input.pixels"), latent = load_ref (ex, "vae.latent");
  if (pixels.data && latent.data)
    {
      vae_case (vae, "VAE [image]", &pixels, &latent, 1);
      vae_case (vae, "VAE [image, image]", &pixels, &latent, 2);
      DsCudaDevice dev;
      if (ds_cuda_device_info (0, &dev) == 0 && strstr (dev.name, "emulator"))
        {
          /* every recording failing (a new key: batch 3): the forwards go on eagerly */
          setenv ("DS_CUDA_EMU_CAPTURE_FAIL", "1", 1);
          vae_case (vae, "VAE, recordings failing", &pixels, &latent, 3);
          unsetenv ("DS_CUDA_EMU_CAPTURE_FAIL");
        }
    }
  ds_tensor_free (&pixels);
  ds_tensor_free (&latent);
  ds_vae_free (vae);
}

static void
test_model (const char *model)
{
  char dir[DS_PATH_MAX], path[DS_PATH_MAX];
  snprintf (dir, sizeof dir, "%s/%s", DS_TEST_DATA_DIR, model);
  snprintf (path, sizeof path, "%s/%s-expected.safetensors", DS_TEST_DATA_DIR, model);
  printf ("  %s\n", model);
  DsError err = { 0 };
  DsModelDir *md = calloc (1, sizeof *md);
  DsSafetensors *ex = NULL;
  DsStatus st = ds_model_dir_open (dir, md, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    {
      st = ds_safetensors_open (path, &ex, &err);
      DS_CHECK_OK (st, &err);
    }
  if (st == DS_OK)
    {
      test_text (md, ex);
      test_vae (md, ex);
      ds_safetensors_close (ex);
    }
  free (md);
}

static void
run_mode (DsBackend *be, double mode_tol)
{
  gpu = be;
  tol = mode_tol;
  test_model ("sd2-tiny");
  test_model ("sd1-tiny");
}

int
main (void)
{
  ds_test_cuda_begin ();
  ds_test_cuda_each_mode (run_mode);
  return ds_test_finish ();
}
