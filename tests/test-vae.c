/* test-vae.c: the VAE encoder against diffusers.
 *
 * For the tiny SD 2 and SD 1 fixtures (tests/data/sd{2,1}-tiny, written by
 * tests/reference/ with diffusers in fp32) the latent of input.pixels must match
 * the stored vae.latent (= latent_dist.mean * scaling_factor) with NMSE <= 1e-8,
 * for batch 1 and for a batch of two (the image twice, each half checked). The
 * SD 1 fixture stores the mid-block attention under the legacy names
 * query/key/value/proj_attn, SD 2 under to_q/to_k/to_v/to_out.0; the SD 2 file is
 * also rewritten with legacy names (plain and as 1x1-conv shapes) to check the
 * fallback gives the same latent. Error cases: a file missing a tensor, a tensor
 * of the wrong shape, an image size that is not a multiple of 8.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-model-dir.h"
#include "ds-safetensors.h"
#include "ds-test-rewrite.h"
#include "ds-test.h"
#include "ds-vae.h"

#define NMSE_TOL 1e-8

static DsBackend *be;
static char tmp_dir[] = "/tmp/ds-test-vae-XXXXXX";

/* ---- rewriting a weights file with one change ---- */

static const char *const attn_names[][2] = {
  { "to_q", "query" }, { "to_k", "key" }, { "to_v", "value" }, { "to_out.0", "proj_attn" },
};

/* The mid-block attention's to_q/... renamed query/... (a DsTestRename); with
 * *user true, its weights also stored as [C, C, 1, 1]. */
static void
legacy_names (void *user, DsTensor *t, char *name)
{
  const bool as_conv = *(const bool *) user;
  const char *attn = "encoder.mid_block.attentions.0.";
  if (strncmp (name, attn, strlen (attn)) != 0)
    return;
  char rest[256];
  snprintf (rest, sizeof rest, "%s", name + strlen (attn));
  for (int k = 0; k < 4; k++)
    {
      size_t len = strlen (attn_names[k][0]);
      if (strncmp (rest, attn_names[k][0], len) == 0 && rest[len] == '.')
        {
          snprintf (name, 256, "%s%s%.200s", attn, attn_names[k][1], rest + len);
          if (as_conv && t->ndim == 2)
            {
              t->ndim = 4; /* trailing dims are already 1 */
              t->shape[2] = t->shape[3] = 1;
            }
        }
    }
}

/* ---- encoding ---- */

/* Encodes pixels [B,3,H,W] into a new latent; returns the status. */
static DsStatus
encode (DsVae *vae, const DsTensor *pixels, DsTensor *latent, DsError *err)
{
  const int64_t B = pixels->shape[0], H = pixels->shape[2], W = pixels->shape[3];
  const int64_t f = ds_vae_factor (vae);
  int64_t shape[4] = { B, ds_vae_latent_channels (vae), H / f, W / f };
  DsStatus st = ds_tensor_alloc (latent, DS_DTYPE_F32, 4, shape, err);
  if (st != DS_OK)
    return st;
  size_t bytes = ds_vae_arena_bytes (vae, B, H, W);
  DS_CHECK (bytes > 0, "arena size for [%lld,3,%lld,%lld]", (long long) B, (long long) H,
            (long long) W);
  DsArena a;
  if ((st = ds_arena_init (&a, bytes, err)) != DS_OK)
    return st;
  st = ds_vae_encode (vae, be, &a, pixels, latent, err);
  /* The measured size is exact: the real forward reaches it and no more. */
  DS_CHECK (st != DS_OK || a.peak == bytes, "arena peak %zu, planned %zu", a.peak, bytes);
  DS_CHECK (a.used == 0, "arena not returned to its mark (%zu bytes used)", a.used);
  ds_arena_free (&a);
  return st;
}

/* Loads `weights` with md's config and checks the batch-1 latent. */
static void
check_file (const char *what, const DsModelDir *md, const char *weights,
            const DsTensor *pixels, const DsTensor *want)
{
  DsError err = { 0 };
  DsVae *vae;
  DsStatus st = ds_vae_load (&md->vae, weights, be, &vae, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    return;
  DsTensor latent = { 0 };
  st = encode (vae, pixels, &latent, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    ds_test_check_tensor (what, &latent, want, NMSE_TOL);
  ds_tensor_free (&latent);
  ds_vae_free (vae);
}

static bool
load_expected (const char *model, DsTensor *pixels, DsTensor *latent)
{
  char path[DS_PATH_MAX];
  snprintf (path, sizeof path, "%s/%s-expected.safetensors", DS_TEST_DATA_DIR, model);
  DsError err = { 0 };
  DsSafetensors *st;
  DsStatus s = ds_safetensors_open (path, &st, &err);
  DS_CHECK_OK (s, &err);
  if (s != DS_OK)
    return false;
  /* Shapes as the generator documents them: a 128x128 image, f = 8. */
  s = ds_safetensors_load_f32 (st, "input.pixels", 4, (int64_t[]){ 1, 3, 128, 128 }, pixels,
                               &err);
  DS_CHECK_OK (s, &err);
  if (s == DS_OK)
    {
      s = ds_safetensors_load_f32 (st, "vae.latent", 4, (int64_t[]){ 1, 4, 16, 16 }, latent,
                                   &err);
      DS_CHECK_OK (s, &err);
    }
  ds_safetensors_close (st);
  return s == DS_OK;
}

static void
test_model (const char *model)
{
  printf ("%s:\n", model);
  char root[DS_PATH_MAX];
  snprintf (root, sizeof root, "%s/%s", DS_TEST_DATA_DIR, model);
  DsError err = { 0 };
  DsModelDir *md = calloc (1, sizeof *md);
  DsStatus st = ds_model_dir_open (root, md, &err);
  DS_CHECK_OK (st, &err);
  DsTensor pixels = { 0 }, want = { 0 };
  if (st != DS_OK || !load_expected (model, &pixels, &want))
    goto out;

  DsVae *vae;
  st = ds_vae_load (&md->vae, md->vae_weights, be, &vae, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    goto out;
  DS_CHECK (ds_vae_factor (vae) == 8, "factor %d", ds_vae_factor (vae));

  DsTensor latent = { 0 };
  st = encode (vae, &pixels, &latent, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    ds_test_check_tensor ("batch 1", &latent, &want, NMSE_TOL);
  ds_tensor_free (&latent);

  /* Batch of two: the same image twice; each half must match on its own. */
  DsTensor pixels2;
  int64_t shape2[4] = { 2, 3, 128, 128 };
  if (ds_tensor_alloc (&pixels2, DS_DTYPE_F32, 4, shape2, &err) == DS_OK)
    {
      size_t n = ds_tensor_nbytes (&pixels);
      memcpy (pixels2.data, pixels.data, n);
      memcpy ((char *) pixels2.data + n, pixels.data, n);
      st = encode (vae, &pixels2, &latent, &err);
      DS_CHECK_OK (st, &err);
      for (int b = 0; st == DS_OK && b < 2; b++)
        {
          DsTensor half = ds_tensor_slice0 (&latent, b, 1);
          ds_test_check_tensor (b == 0 ? "batch 2, item 0" : "batch 2, item 1", &half, &want,
                                NMSE_TOL);
        }
      ds_tensor_free (&latent);
      ds_tensor_free (&pixels2);
    }

  /* 124 is not a multiple of 8. */
  DsTensor odd = pixels; /* the first 124 rows of the image */
  odd.owned = false;
  odd.shape[2] = 124;
  DsTensor small;
  ds_tensor_alloc (&small, DS_DTYPE_F32, 4, (int64_t[]){ 1, 4, 15, 16 }, &err);
  DsArena a;
  ds_arena_init (&a, 1 << 20, &err);
  st = ds_vae_encode (vae, be, &a, &odd, &small, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "multiple");
  DS_CHECK (ds_vae_arena_bytes (vae, 1, 124, 128) == 0, "arena bytes for 124 rows");
  ds_arena_free (&a);
  ds_tensor_free (&small);
  ds_vae_free (vae);

out:
  ds_tensor_free (&pixels);
  ds_tensor_free (&want);
  free (md);
}

/* Rewritten copies of the SD 2 file: legacy names load to the same result;
 * a missing or misshapen tensor is an error naming it and the file. */
static void
test_edited_files (void)
{
  printf ("edited sd2-tiny files:\n");
  char root[DS_PATH_MAX], path[DS_PATH_MAX + 64];
  snprintf (root, sizeof root, "%s/sd2-tiny", DS_TEST_DATA_DIR);
  DsError err = { 0 };
  DsModelDir *md = calloc (1, sizeof *md);
  DsTensor pixels = { 0 }, want = { 0 };
  DsStatus st = ds_model_dir_open (root, md, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK || !load_expected ("sd2-tiny", &pixels, &want))
    goto out;
  if (!mkdtemp (tmp_dir))
    {
      DS_CHECK (false, "mkdtemp %s failed", tmp_dir);
      goto out;
    }
  snprintf (path, sizeof path, "%s/vae.safetensors", tmp_dir);

  if (ds_test_rewrite (md->vae_weights, path, &(DsTestEdit){ 0 }, legacy_names, &(bool){ false },
                       NULL, 0))
    check_file ("legacy names", md, path, &pixels, &want);
  if (ds_test_rewrite (md->vae_weights, path, &(DsTestEdit){ 0 }, legacy_names, &(bool){ true },
                       NULL, 0))
    check_file ("legacy names, 1x1 conv shapes", md, path, &pixels, &want);

  DsVae *vae = NULL;
  /* Late in the load order, so many tensors are loaded (and must be freed)
   * before the failure. */
  const char *missing = "encoder.mid_block.resnets.1.norm2.bias";
  if (ds_test_rewrite (md->vae_weights, path, &(DsTestEdit){ .drop = missing }, NULL, NULL, NULL,
                       0))
    {
      st = ds_vae_load (&md->vae, path, be, &vae, &err);
      DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
      DS_CHECK_CONTAINS (err.message, missing);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK_CONTAINS (err.message, "VAE encoder");
      DS_CHECK (vae == NULL, "no model on failure");
      ds_vae_free (vae);
      vae = NULL;
      printf ("  missing tensor: %s\n", err.message);
    }
  const char *bad = "encoder.mid_block.attentions.0.to_k.weight";
  if (ds_test_rewrite (md->vae_weights, path, &(DsTestEdit){ .shrink = bad }, NULL, NULL, NULL, 0))
    {
      st = ds_vae_load (&md->vae, path, be, &vae, &err);
      DS_CHECK_STATUS (st, DS_ERR_FORMAT, &err);
      DS_CHECK_CONTAINS (err.message, bad);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK (vae == NULL, "no model on failure");
      ds_vae_free (vae);
      printf ("  wrong shape: %s\n", err.message);
    }
  unlink (path);
  rmdir (tmp_dir);

out:
  ds_tensor_free (&pixels);
  ds_tensor_free (&want);
  free (md);
}

int
main (void)
{
  DsError err = { 0 };
  be = ds_backend_cpu_new (&err);
  DS_CHECK (be != NULL, "CPU backend: %s", err.message);
  if (!be)
    return ds_test_finish ();
  test_model ("sd2-tiny");
  test_model ("sd1-tiny");
  test_edited_files ();
  ds_backend_free (be);
  return ds_test_finish ();
}
