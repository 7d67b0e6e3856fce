/* test-text-encoder.c: the CLIP text encoder against transformers.
 *
 * For the tiny SD 2 fixture (fp32 weights, exact GELU, pad id 0) and the tiny
 * SD 1 fixture (fp16 weights, quick_gelu) the hidden states of the stored
 * tokens.cond / tokens.uncond ids must match text.cond / text.uncond
 * (CLIPTextModel(ids).last_hidden_state in fp32) with NMSE <= 1e-8, one prompt
 * at a time and as a batch [uncond, cond]. Error cases: a file missing a tensor,
 * a tensor of the wrong shape, token ids outside the vocabulary.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-model-dir.h"
#include "ds-safetensors.h"
#include "ds-test-rewrite.h"
#include "ds-test.h"
#include "ds-text-encoder.h"

#define NMSE_TOL 1e-8

static DsBackend *be;
static char tmp_dir[] = "/tmp/ds-test-text-XXXXXX";

typedef struct {
  int32_t ids[2][DS_TEXT_LEN]; /* uncond, cond */
  DsTensor want[2];            /* [1, 77, hidden] each */
} Expected;

static bool
load_expected (const char *model, int hidden, Expected *ex)
{
  char path[DS_PATH_MAX];
  snprintf (path, sizeof path, "%s/%s-expected.safetensors", DS_TEST_DATA_DIR, model);
  DsError err = { 0 };
  DsSafetensors *st;
  DsStatus s = ds_safetensors_open (path, &st, &err);
  DS_CHECK_OK (s, &err);
  if (s != DS_OK)
    return false;
  static const char *const names[2][2] = { { "tokens.uncond", "text.uncond" },
                                           { "tokens.cond", "text.cond" } };
  for (int i = 0; s == DS_OK && i < 2; i++)
    {
      DsTensor ids;
      s = ds_safetensors_load_f32 (st, names[i][0], 1, (int64_t[]){ DS_TEXT_LEN }, &ids, &err);
      DS_CHECK_OK (s, &err);
      if (s != DS_OK)
        break;
      for (int j = 0; j < DS_TEXT_LEN; j++) /* ids < 2^24 are exact in f32 */
        ex->ids[i][j] = (int32_t) ds_tensor_f32 (&ids)[j];
      ds_tensor_free (&ids);
      s = ds_safetensors_load_f32 (st, names[i][1], 3,
                                   (int64_t[]){ 1, DS_TEXT_LEN, hidden }, &ex->want[i], &err);
      DS_CHECK_OK (s, &err);
    }
  ds_safetensors_close (st);
  /* The two prompts differ, so the batch test can tell them apart. */
  DS_CHECK (s != DS_OK || memcmp (ex->ids[0], ex->ids[1], sizeof ex->ids[0]) != 0,
            "%s: cond and uncond tokens are the same", model);
  return s == DS_OK;
}

/* Runs B prompts (ids [B,77]) into a new out [B,77,hidden]. */
static DsStatus
run (DsTextEncoder *te, const int32_t *ids, int64_t B, DsTensor *out, DsError *err)
{
  int64_t shape[3] = { B, DS_TEXT_LEN, ds_text_encoder_hidden_size (te) };
  DsStatus st = ds_tensor_alloc (out, DS_DTYPE_F32, 3, shape, err);
  if (st != DS_OK)
    return st;
  size_t bytes = ds_text_encoder_arena_bytes (te, B);
  DS_CHECK (bytes > 0, "arena size for B = %lld", (long long) B);
  DsArena a;
  if ((st = ds_arena_init (&a, bytes, err)) != DS_OK)
    return st;
  st = ds_text_encoder_forward (te, be, &a, ids, B, out, err);
  DS_CHECK (st != DS_OK || a.peak == bytes, "arena peak %zu, planned %zu", a.peak, bytes);
  DS_CHECK (a.used == 0, "arena not returned to its mark (%zu bytes used)", a.used);
  ds_arena_free (&a);
  return st;
}

static void
test_model (const char *model)
{
  printf ("%s:\n", model);
  char root[DS_PATH_MAX];
  snprintf (root, sizeof root, "%s/%s", DS_TEST_DATA_DIR, model);
  DsError err = { 0 };
  DsModelDir *md = calloc (1, sizeof *md);
  Expected ex = { 0 };
  DsTextEncoder *te = NULL;
  DsStatus st = ds_model_dir_open (root, md, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK || !load_expected (model, md->text.hidden_size, &ex))
    goto out;
  st = ds_text_encoder_load (&md->text, md->text_encoder_weights, be, &te, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    goto out;

  static const char *const what[2] = { "uncond", "cond" };
  for (int i = 0; i < 2; i++)
    {
      DsTensor out = { 0 };
      st = run (te, ex.ids[i], 1, &out, &err);
      DS_CHECK_OK (st, &err);
      if (st == DS_OK)
        ds_test_check_tensor (what[i], &out, &ex.want[i], NMSE_TOL);
      ds_tensor_free (&out);
    }

  /* Batch [uncond, cond]: each row must match its own reference. */
  DsTensor out = { 0 };
  st = run (te, &ex.ids[0][0], 2, &out, &err);
  DS_CHECK_OK (st, &err);
  for (int i = 0; st == DS_OK && i < 2; i++)
    {
      DsTensor row = ds_tensor_slice0 (&out, i, 1);
      ds_test_check_tensor (i == 0 ? "batch 2, uncond" : "batch 2, cond", &row, &ex.want[i],
                            NMSE_TOL);
    }

  ds_tensor_free (&out);

  /* Ids outside [0, vocab) are refused before anything runs. */
  DsArena a;
  int64_t shape1[3] = { 1, DS_TEXT_LEN, md->text.hidden_size };
  if (ds_tensor_alloc (&out, DS_DTYPE_F32, 3, shape1, &err) == DS_OK
      && ds_arena_init (&a, ds_text_encoder_arena_bytes (te, 1), &err) == DS_OK)
    {
      int32_t bad[DS_TEXT_LEN];
      memcpy (bad, ex.ids[1], sizeof bad);
      bad[3] = md->text.vocab_size;
      st = ds_text_encoder_forward (te, be, &a, bad, 1, &out, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "vocabulary");
      bad[3] = -1;
      st = ds_text_encoder_forward (te, be, &a, bad, 1, &out, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      ds_arena_free (&a);
    }
  ds_tensor_free (&out);

out:
  ds_text_encoder_free (te);
  ds_tensor_free (&ex.want[0]);
  ds_tensor_free (&ex.want[1]);
  free (md);
}

/* The prefix the file's parameter names carry: "text_model." (transformers
 * 4.x, the SD releases) or "" (transformers 5.x). */
static const char *
file_prefix (const char *path)
{
  DsSafetensors *st;
  if (ds_safetensors_open (path, &st, NULL) != DS_OK)
    return "";
  bool classic = ds_safetensors_find (st, "text_model.embeddings.token_embedding.weight");
  ds_safetensors_close (st);
  return classic ? "text_model." : "";
}

/* Adds or strips "text_model." (a DsTestRename). */
static void
swap_prefix (void *user, DsTensor *t, char *name)
{
  (void) user, (void) t;
  const char *p = "text_model.";
  char old[256];
  snprintf (old, sizeof old, "%s", name);
  if (strncmp (old, p, strlen (p)) == 0)
    snprintf (name, 256, "%s", old + strlen (p));
  else
    snprintf (name, 256, "%s%.240s", p, old); /* names here are short */
}

/* src with the other naming convention, plus the int64 position_ids buffer
 * of the classic files. */
static bool
write_swapped (const char *src, const char *dst)
{
  int64_t position_ids[DS_TEXT_LEN];
  for (int i = 0; i < DS_TEXT_LEN; i++)
    position_ids[i] = i;
  DsTensor ids = ds_tensor_make (DS_DTYPE_I64, 2, (int64_t[]){ 1, DS_TEXT_LEN });
  ids.data = position_ids;
  const DsSafetensorsItem extra = { "text_model.embeddings.position_ids", &ids };
  return ds_test_rewrite (src, dst, &(DsTestEdit){ 0 }, swap_prefix, NULL, &extra, 1);
}

/* Rewritten copies of the SD 1 file (fp16): the other naming convention loads
 * to the same result; a missing or misshapen tensor is an error naming it and
 * the file. */
static void
test_edited_files (void)
{
  printf ("edited sd1-tiny files:\n");
  char root[DS_PATH_MAX], path[DS_PATH_MAX + 64], name[256];
  snprintf (root, sizeof root, "%s/sd1-tiny", DS_TEST_DATA_DIR);
  DsError err = { 0 };
  DsModelDir *md = calloc (1, sizeof *md);
  Expected ex = { 0 };
  DsStatus st = ds_model_dir_open (root, md, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK || !load_expected ("sd1-tiny", md->text.hidden_size, &ex))
    goto out;
  if (!mkdtemp (tmp_dir))
    {
      DS_CHECK (false, "mkdtemp %s failed", tmp_dir);
      goto out;
    }
  snprintf (path, sizeof path, "%s/model.safetensors", tmp_dir);
  const char *src = md->text_encoder_weights;
  const char *prefix = file_prefix (src);
  DsTextEncoder *te = NULL;

  /* The other naming convention (with an int64 position_ids buffer, as in the
   * SD 2.1-base release) gives the same hidden states. */
  if (write_swapped (src, path))
    {
      st = ds_text_encoder_load (&md->text, path, be, &te, &err);
      DS_CHECK_OK (st, &err);
      DsTensor out = { 0 };
      if (st == DS_OK && (st = run (te, ex.ids[1], 1, &out, &err)) == DS_OK)
        ds_test_check_tensor (*prefix ? "names without text_model." : "text_model.* names", &out,
                      &ex.want[1], NMSE_TOL);
      DS_CHECK_OK (st, &err);
      ds_tensor_free (&out);
      ds_text_encoder_free (te);
      te = NULL;
    }

  snprintf (name, sizeof name, "%sencoder.layers.1.mlp.fc1.bias", prefix);
  if (ds_test_rewrite (src, path, &(DsTestEdit){ .drop = name }, NULL, NULL, NULL, 0))
    {
      st = ds_text_encoder_load (&md->text, path, be, &te, &err);
      DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
      DS_CHECK_CONTAINS (err.message, name);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK_CONTAINS (err.message, "text encoder");
      DS_CHECK (te == NULL, "no model on failure");
      ds_text_encoder_free (te);
      te = NULL;
      printf ("  missing tensor: %s\n", err.message);
    }
  snprintf (name, sizeof name, "%sembeddings.position_embedding.weight", prefix);
  if (ds_test_rewrite (src, path, &(DsTestEdit){ .shrink = name }, NULL, NULL, NULL, 0))
    {
      st = ds_text_encoder_load (&md->text, path, be, &te, &err);
      DS_CHECK_STATUS (st, DS_ERR_FORMAT, &err);
      DS_CHECK_CONTAINS (err.message, name);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK (te == NULL, "no model on failure");
      ds_text_encoder_free (te);
      te = NULL;
      printf ("  wrong shape: %s\n", err.message);
    }
  unlink (path);
  rmdir (tmp_dir);

out:
  ds_tensor_free (&ex.want[0]);
  ds_tensor_free (&ex.want[1]);
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
