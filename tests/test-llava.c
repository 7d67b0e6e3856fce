/* test-llava.c: LLaVA-1.5 end to end (engine/session/ds-llava.c) and sharded
 * checkpoints (engine/io/ds-safetensors-index.c) against transformers'
 * LlavaProcessor + LlavaForConditionalGeneration in fp32
 * (tests/reference/gen_llava_fixture.py: tests/data/llava-tiny/, two shards,
 * and tests/data/llava-tiny-expected.safetensors), for a square and a wide
 * image:
 *  - the prompt ids with "<image>" expanded (exact), pixels (exact), the
 *    projected image features and the prefill logits (NMSE <= 1e-8);
 *  - 32 greedy ids identical; the streamed pieces put together equal the
 *    answer text, the ids' decode and transformers' text;
 *  - cancellation between tokens, a stop id, the token cap, seeded sampling;
 *  - the index: lookups across shards, a single model.safetensors;
 *  - bad folders: a missing shard, shard paths leaving the folder or naming a
 *    pickle, a tensor in two shards, missing config keys, a wrong tensor
 *    shape, no weights or only pickle weights: each error names the fault.
 *
 * Built a second time as test-llava-cuda (DS_TEST_LLAVA_CUDA, the cuda
 * suite): the same model end to end on the CUDA backend in strict f32, with
 * the bars of CUDA f32 (ds-test-cuda.h: 1e-6 for features and logits, whose
 * GEMMs sum in another order) and the same 32 greedy ids; the index and the
 * bad folders, which are the loader's, run only on the CPU. Exits 77 where
 * no CUDA device answers.
 */
#include "ds-test.h"

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "ds-image.h"
#include "ds-llava.h"
#include "ds-safetensors-index.h"
#ifdef DS_TEST_LLAVA_CUDA
#include "ds-test-cuda.h"
/* strict f32 on the GPU: the order of sums differs from the CPU's */
#define FEATURES_TOL 1e-6
#define LOGITS_TOL 1e-6
#else
/* the same f32 function as transformers', summed in another order */
#define FEATURES_TOL 1e-10
#define LOGITS_TOL 1e-8
#endif

#define TINY DS_TEST_DATA_DIR "/llava-tiny"

static DsBackend *be;
static DsSafetensors *expected;

static const char *const tiny_files[] = {
  "config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json",
  "tokenizer_config.json", "model.safetensors.index.json",
  "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
};

static const int32_t *
ints (const char *name, int64_t *n)
{
  const DsSafetensorsEntry *e = ds_safetensors_find (expected, name);
  if (!e || e->dtype != DS_DTYPE_I32 || e->ndim != 1)
    return NULL;
  *n = e->shape[0];
  return e->data;
}

static bool
copy_file (const char *src, const char *dst)
{
  FILE *in = fopen (src, "rb"), *out = in ? fopen (dst, "wb") : NULL;
  char buf[65536];
  size_t n;
  bool ok = in && out;
  while (ok && (n = fread (buf, 1, sizeof buf, in)) > 0)
    ok = fwrite (buf, 1, n, out) == n;
  if (in)
    fclose (in);
  if (out && fclose (out) != 0)
    ok = false;
  return ok;
}

/* A fresh copy of llava-tiny in a temporary folder (buf holds its path). */
static const char *
tiny_copy (char *buf, size_t size)
{
  snprintf (buf, size, "/tmp/ds-test-llava-XXXXXX");
  if (!mkdtemp (buf))
    return NULL;
  for (size_t i = 0; i < sizeof tiny_files / sizeof tiny_files[0]; i++)
    {
      char src[1024], dst[1024];
      snprintf (src, sizeof src, "%s/%s", TINY, tiny_files[i]);
      snprintf (dst, sizeof dst, "%s/%s", buf, tiny_files[i]);
      if (!copy_file (src, dst))
        return NULL;
    }
  return buf;
}

static void
remove_dir (const char *dir)
{
  char cmd[1200];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", dir);
}

static json_t *
load_json (const char *dir, const char *name)
{
  char p[1024];
  snprintf (p, sizeof p, "%s/%s", dir, name);
  return json_load_file (p, 0, NULL);
}

static void
save_json (const char *dir, const char *name, json_t *root)
{
  char p[1024];
  snprintf (p, sizeof p, "%s/%s", dir, name);
  if (json_dump_file (root, p, JSON_INDENT (2)) != 0)
    fprintf (stderr, "could not write %s\n", p);
  json_decref (root);
}

/* Opening `dir` fails with `code` and a message containing `needle`. */
static void
check_open_fails (const char *what, const char *dir, DsStatus code, const char *needle)
{
  DsError err = { 0 };
  DsLlava *lv = NULL;
  DsStatus st = ds_llava_open (dir, be, &lv, &err);
  DS_CHECK (st == code, "%s: status %s, expected %s (%s)", what, ds_status_name (st),
            ds_status_name (code), err.message);
  DS_CHECK (lv == NULL, "%s: a model came back", what);
  DS_CHECK (strstr (err.message, needle) != NULL, "%s: \"%s\" does not mention \"%s\"", what,
            err.message, needle);
  printf ("  %-28s %s\n", what, err.message);
  ds_llava_free (lv);
}

/* ---- streaming and cancellation ---- */

typedef struct {
  char text[8192];
  int n_calls, cancel_at;
  int32_t cancel_id;
  bool empty_piece;
  atomic_int *cancel;
} Sink;

static void
on_text (const char *text, int32_t id, void *user)
{
  Sink *s = user;
  if (!text[0])
    s->empty_piece = true;
  strncat (s->text, text, sizeof s->text - strlen (s->text) - 1);
  if (++s->n_calls == s->cancel_at)
    {
      s->cancel_id = id;
      atomic_store (s->cancel, 1);
    }
}

static void
test_index (void)
{
  DsError err = { 0 };
  DsSafetensorsIndex *idx = NULL;
  DS_CHECK_OK (ds_safetensors_index_open (TINY, &idx, &err), &err);
  if (!idx)
    return;
  DS_CHECK (ds_safetensors_index_n_shards (idx) == 2, "%d shards",
            ds_safetensors_index_n_shards (idx));
  DS_CHECK (ds_safetensors_index_count (idx) == 80, "%lld tensors",
            (long long) ds_safetensors_index_count (idx));
  const DsSafetensors *s1 = NULL, *s2 = NULL;
  const DsSafetensorsEntry *e1 = ds_safetensors_index_find (
    idx, "vision_tower.vision_model.embeddings.patch_embedding.weight", &s1);
  const DsSafetensorsEntry *e2 = ds_safetensors_index_find (idx, "language_model.lm_head.weight",
                                                            &s2);
  DS_CHECK (e1 && s1 && strstr (ds_safetensors_path (s1), "model-00001-of-00002"),
            "patch_embedding in shard 1");
  DS_CHECK (e2 && s2 && strstr (ds_safetensors_path (s2), "model-00002-of-00002"),
            "lm_head in shard 2");
  DS_CHECK (e2 && e2->ndim == 2 && e2->shape[0] == 2002 && e2->shape[1] == 64, "lm_head shape");
  DS_CHECK (!ds_safetensors_index_find (idx, "nope", NULL), "a missing name is found");
  DsTensor t = { 0 };
  DsStatus st = ds_safetensors_index_load_float (idx, "nope.weight", 1, NULL, &t, &err);
  DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
  DS_CHECK_CONTAINS (err.message, "nope.weight");
  DS_CHECK_CONTAINS (err.message, "model.safetensors.index.json");
  st = ds_safetensors_index_load_float (idx, "language_model.model.norm.weight", 1,
                                        (int64_t[]){ 64 }, &t, &err);
  DS_CHECK_OK (st, &err);
  ds_tensor_free (&t);
  ds_safetensors_index_close (idx);

  /* a folder with one model.safetensors */
  DS_CHECK_OK (ds_safetensors_index_open (DS_TEST_DATA_DIR "/clip-vision/tiny-llava", &idx,
                                          &err), &err);
  if (idx)
    {
      DS_CHECK (ds_safetensors_index_n_shards (idx) == 1, "single file: %d shards",
                ds_safetensors_index_n_shards (idx));
      DS_CHECK (ds_safetensors_index_find (
                  idx, "vision_tower.vision_model.embeddings.patch_embedding.weight", NULL),
                "single file lookup");
    }
  ds_safetensors_index_close (idx);
}

static void
test_case (DsLlava *lv, const char *name, const char *image_path, bool all_rows)
{
  printf ("%s (%s)\n", name, image_path);
  char key[128];
  DsError err = { 0 };
  const int64_t V = ds_llava_config (lv)->text.vocab_size;
  DsImage img = { 0 };
  DS_CHECK_OK (ds_image_load (image_path, &img, &err), &err);

  /* prompt ids */
  int64_t n_want = 0, n_greedy = 0;
  snprintf (key, sizeof key, "%s.ids", name);
  const int32_t *want = ints (key, &n_want);
  snprintf (key, sizeof key, "%s.greedy", name);
  const int32_t *greedy = ints (key, &n_greedy);
  DS_CHECK (want && greedy && n_greedy == 32, "%s: fixture ids", name);
  if (!want || !greedy)
    return;
  char *prompt = NULL;
  DS_CHECK_OK (ds_llava_prompt (NULL, "What is shown in this picture?", true, &prompt, &err),
               &err);
  DS_CHECK (strcmp (prompt, ds_safetensors_metadata (expected, "prompt")) == 0,
            "prompt \"%s\"", prompt);
  int32_t *ids = NULL;
  int64_t n = 0;
  DS_CHECK_OK (ds_llava_encode_prompt (lv, prompt, ds_llava_n_image_tokens (lv), &ids, &n, &err),
               &err);
  DS_CHECK (n == n_want && ids && memcmp (ids, want, (size_t) n * sizeof *ids) == 0,
            "%s: prompt ids differ from LlavaProcessor's (%lld vs %lld)", name, (long long) n,
            (long long) n_want);

  /* pixels, features, logits */
  DsTensor px = { 0 }, ref = { 0 }, feats = { 0 }, logits = { 0 };
  DS_CHECK_OK (ds_clip_image_preprocess (&img, ds_llava_image_config (lv), &px, &err), &err);
  snprintf (key, sizeof key, "%s.pixels", name);
  DS_CHECK_OK (ds_safetensors_load_f32 (expected, key, 4, px.shape, &ref, &err), &err);
  DS_CHECK (ref.data && px.data
              && memcmp (px.data, ref.data, ds_tensor_nbytes (&px)) == 0,
            "%s: pixels differ", name);
  ds_tensor_free (&ref);
  DS_CHECK_OK (ds_llava_image_features (lv, &img, &feats, &err), &err);
  snprintf (key, sizeof key, "%s.features", name);
  DS_CHECK_OK (ds_safetensors_load_f32 (expected, key, 2, (int64_t[]){ 9, 64 }, &ref, &err),
               &err);
  if (feats.data && ref.data)
    ds_test_check_tensor ("image features", &feats, &ref, FEATURES_TOL);
  ds_tensor_free (&ref);
  DS_CHECK_OK (ds_llava_prompt_logits (lv, ids, n, &feats, &logits, &err), &err);
  snprintf (key, sizeof key, "%s.logits", name);
  const int64_t rows = all_rows ? n : 1;
  DS_CHECK_OK (ds_safetensors_load_f32 (expected, key, 2, (int64_t[]){ rows, V }, &ref, &err),
               &err);
  if (logits.data && ref.data)
    {
      DsTensor got = ds_tensor_slice0 (&logits, n - rows, rows);
      ds_test_check_tensor (all_rows ? "prefill logits (every row)" : "prefill logits (last)",
                            &got, &ref, LOGITS_TOL);
    }
  ds_tensor_free (&ref);
  ds_tensor_free (&logits);

  /* 32 greedy ids, streamed */
  atomic_int cancel = 0;
  Sink sink = { .cancel = &cancel };
  DsLlavaParams p;
  ds_llava_params_default (&p);
  p.max_new_tokens = 32;
  p.eos_id = DS_LLAVA_EOS_NONE;
  p.on_text = on_text;
  p.user = &sink;
  p.cancel = &cancel;
  DsLlavaAnswer ans = { 0 };
  DS_CHECK_OK (ds_llava_ask (lv, &img, "What is shown in this picture?", &p, &ans, &err), &err);
  DS_CHECK (ans.n_ids == 32 && memcmp (ans.ids, greedy, 32 * sizeof *greedy) == 0,
            "%s: greedy ids differ", name);
  int same = 0;
  while (same < ans.n_ids && same < 32 && ans.ids[same] == greedy[same])
    same++;
  printf ("  greedy ids                           %d/32 identical\n", same);
  DS_CHECK (ans.n_prompt == n, "n_prompt %lld", (long long) ans.n_prompt);
  DS_CHECK (!ans.stopped_at_eos, "stopped at eos");
  snprintf (key, sizeof key, "%s.text", name);
  const char *want_text = ds_safetensors_metadata (expected, key);
  DS_CHECK (ans.text && want_text && strcmp (ans.text, want_text) == 0,
            "%s: text \"%s\", transformers' \"%s\"", name, ans.text, want_text);
  DS_CHECK (strcmp (sink.text, ans.text) == 0, "%s: streamed \"%s\" != \"%s\"", name, sink.text,
            ans.text);
  DS_CHECK (!sink.empty_piece && sink.n_calls > 1, "%s: %d pieces (an empty one: %d)", name,
            sink.n_calls, sink.empty_piece);
  char *decoded = NULL;
  DS_CHECK_OK (ds_llama_tokenizer_decode (ds_llava_tokenizer (lv), ans.ids, ans.n_ids, true,
                                          &decoded, &err), &err);
  DS_CHECK (decoded && strcmp (decoded, ans.text) == 0, "%s: decode differs", name);
  free (decoded);
  ds_llava_answer_clear (&ans);

  /* the same through ds_llava_generate with the features given */
  ds_llava_params_default (&p);
  p.max_new_tokens = 32;
  p.eos_id = DS_LLAVA_EOS_NONE;
  DS_CHECK_OK (ds_llava_generate (lv, ids, n, &feats, &p, &ans, &err), &err);
  DS_CHECK (ans.n_ids == 32 && memcmp (ans.ids, greedy, 32 * sizeof *greedy) == 0,
            "%s: generate's greedy ids differ", name);
  ds_llava_answer_clear (&ans);

  /* a wrong number of embedding rows */
  DsTensor short_feats = ds_tensor_slice0 (&feats, 0, 8);
  DsStatus st = ds_llava_generate (lv, ids, n, &short_feats, &p, &ans, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "9 image tokens");
  ds_llava_answer_clear (&ans);

  ds_tensor_free (&feats);
  ds_tensor_free (&px);
  free (ids);
  free (prompt);
  ds_image_free (&img);
}

static void
test_control (DsLlava *lv)
{
  printf ("cancel, stop id, cap, sampling\n");
  DsError err = { 0 };
  DsImage img = { 0 };
  DS_CHECK_OK (ds_image_load (DS_TEST_DATA_DIR "/sd-input.png", &img, &err), &err);
  int64_t n_greedy = 0;
  const int32_t *greedy = ints ("square.greedy", &n_greedy);
  if (!greedy)
    return;
  const char *q = "What is shown in this picture?";

  /* cancelled from the callback at its third piece: no token after that one */
  atomic_int cancel = 0;
  Sink sink = { .cancel = &cancel, .cancel_at = 3 };
  DsLlavaParams p;
  ds_llava_params_default (&p);
  p.max_new_tokens = 32;
  p.eos_id = DS_LLAVA_EOS_NONE;
  p.on_text = on_text;
  p.user = &sink;
  p.cancel = &cancel;
  DsLlavaAnswer ans = { 0 };
  DsStatus st = ds_llava_ask (lv, &img, q, &p, &ans, &err);
  DS_CHECK_STATUS (st, DS_ERR_CANCELLED, &err);
  DS_CHECK (ans.n_ids >= 3 && ans.n_ids < 32 && ans.ids[ans.n_ids - 1] == sink.cancel_id,
            "cancel: %lld ids, the last %d, cancelled at %d", (long long) ans.n_ids,
            ans.n_ids ? ans.ids[ans.n_ids - 1] : -1, sink.cancel_id);
  DS_CHECK (memcmp (ans.ids, greedy, (size_t) ans.n_ids * sizeof *greedy) == 0,
            "cancel: the ids so far differ");
  DS_CHECK (strcmp (sink.text, ans.text) == 0, "cancel: text");
  printf ("  cancelled after %lld tokens: \"%s\"\n", (long long) ans.n_ids, ans.text);
  ds_llava_answer_clear (&ans);

  /* cancelled before the first token */
  atomic_store (&cancel, 1);
  p.on_text = NULL;
  st = ds_llava_ask (lv, &img, q, &p, &ans, &err);
  DS_CHECK_STATUS (st, DS_ERR_CANCELLED, &err);
  DS_CHECK (ans.n_ids == 0 && ans.text && !ans.text[0], "cancel first: %lld ids",
            (long long) ans.n_ids);
  ds_llava_answer_clear (&ans);
  atomic_store (&cancel, 0);

  /* a stop id: the first occurrence of greedy[5] ends the answer, included */
  int first = 0;
  while (greedy[first] != greedy[5])
    first++;
  p.eos_id = greedy[5];
  DS_CHECK_OK (ds_llava_ask (lv, &img, q, &p, &ans, &err), &err);
  DS_CHECK (ans.stopped_at_eos && ans.n_ids == first + 1, "stop id: %lld ids, expected %d",
            (long long) ans.n_ids, first + 1);
  ds_llava_answer_clear (&ans);

  /* the cap */
  p.eos_id = DS_LLAVA_EOS_DEFAULT;
  p.max_new_tokens = 5;
  DS_CHECK_OK (ds_llava_ask (lv, &img, q, &p, &ans, &err), &err);
  DS_CHECK (ans.n_ids == 5 && memcmp (ans.ids, greedy, 5 * sizeof *greedy) == 0,
            "cap: %lld ids", (long long) ans.n_ids);
  ds_llava_answer_clear (&ans);
  p.max_new_tokens = 0;
  st = ds_llava_ask (lv, &img, q, &p, &ans, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  ds_llava_answer_clear (&ans);

  /* seeded sampling: reproducible, and the seed matters */
  DsLlavaAnswer a2 = { 0 }, a3 = { 0 };
  p.max_new_tokens = 24;
  p.eos_id = DS_LLAVA_EOS_NONE;
  p.sampling = (DsLlamaSampling){ .temperature = 1.0f, .top_p = 0.9f, .seed = 7 };
  DS_CHECK_OK (ds_llava_ask (lv, &img, q, &p, &ans, &err), &err);
  DS_CHECK_OK (ds_llava_ask (lv, &img, q, &p, &a2, &err), &err);
  p.sampling.seed = 8;
  DS_CHECK_OK (ds_llava_ask (lv, &img, q, &p, &a3, &err), &err);
  DS_CHECK (ans.n_ids == 24 && a2.n_ids == 24
              && memcmp (ans.ids, a2.ids, 24 * sizeof *ans.ids) == 0,
            "sampling is not reproducible");
  DS_CHECK (a3.n_ids == 24 && memcmp (ans.ids, a3.ids, 24 * sizeof *ans.ids) != 0,
            "seeds 7 and 8 sample the same 24 ids");
  ds_llava_answer_clear (&ans);
  ds_llava_answer_clear (&a2);
  ds_llava_answer_clear (&a3);
  ds_image_free (&img);
}

/* Rewrites shard `file` of dir with tensor `name` replaced by zeros of
 * `shape` (or, with extra, a copy of `name` from shard `extra` added). */
static bool
rewrite_shard (const char *dir, const char *file, const char *name, int ndim,
               const int64_t *shape, const char *extra)
{
  char path[1024], epath[1024];
  snprintf (path, sizeof path, "%s/%s", dir, file);
  DsSafetensors *st = NULL, *ex = NULL;
  DsError err = { 0 };
  if (ds_safetensors_open (path, &st, &err) != DS_OK)
    return false;
  if (extra)
    {
      snprintf (epath, sizeof epath, "%s/%s", dir, extra);
      if (ds_safetensors_open (epath, &ex, &err) != DS_OK)
        return false;
    }
  int n = ds_safetensors_count (st);
  DsTensor *ts = calloc ((size_t) n + 1, sizeof *ts);
  DsSafetensorsItem *items = calloc ((size_t) n + 1, sizeof *items);
  char **names = calloc ((size_t) n + 1, sizeof *names);
  bool ok = ts && items && names;
  for (int i = 0; ok && i < n; i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (st, i);
      names[i] = strdup (e->name);
      if (!extra && strcmp (e->name, name) == 0)
        ok = ds_tensor_alloc (&ts[i], DS_DTYPE_F32, ndim, shape, NULL) == DS_OK;
      else
        ok = ds_safetensors_load_f32 (st, e->name, 0, NULL, &ts[i], NULL) == DS_OK;
      if (ok && !extra && strcmp (e->name, name) == 0)
        memset (ts[i].data, 0, ds_tensor_nbytes (&ts[i]));
      items[i] = (DsSafetensorsItem){ names[i], &ts[i] };
    }
  if (ok && extra)
    {
      names[n] = strdup (name);
      ok = ds_safetensors_load_f32 (ex, name, 0, NULL, &ts[n], NULL) == DS_OK;
      items[n] = (DsSafetensorsItem){ names[n], &ts[n] };
      n++;
    }
  ds_safetensors_close (st);
  ds_safetensors_close (ex);
  if (ok)
    ok = ds_safetensors_write (path, items, n, NULL, &err) == DS_OK;
  for (int i = 0; i < n && ts && names; i++)
    {
      ds_tensor_free (&ts[i]);
      free (names[i]);
    }
  free (ts);
  free (items);
  free (names);
  return ok;
}

static void
test_bad_folders (void)
{
  printf ("bad folders\n");
  char dir[256];
  const char *idx_name = "model.safetensors.index.json";
  const char *lm_head = "language_model.lm_head.weight";

  /* the index names a shard that is not there */
  if (tiny_copy (dir, sizeof dir))
    {
      json_t *root = load_json (dir, idx_name);
      json_object_set_new (json_object_get (root, "weight_map"), lm_head,
                           json_string ("model-00003-of-00003.safetensors"));
      save_json (dir, idx_name, root);
      check_open_fails ("missing shard", dir, DS_ERR_NOT_FOUND, "model-00003-of-00003");
      remove_dir (dir);
    }
  static const struct {
    const char *what, *shard, *needle;
  } bad_names[] = {
    { "shard outside (..)", "../model-00002-of-00002.safetensors", "outside the folder" },
    { "shard outside (a/../..)", "a/../../x.safetensors", "outside the folder" },
    { "shard absolute", "/tmp/model-00002-of-00002.safetensors", "absolute path" },
    { "shard a pickle", "pytorch_model-00002-of-00002.bin", "pickle" },
  };
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
    if (tiny_copy (dir, sizeof dir))
      {
        json_t *root = load_json (dir, idx_name);
        json_object_set_new (json_object_get (root, "weight_map"), lm_head,
                             json_string (bad_names[i].shard));
        save_json (dir, idx_name, root);
        check_open_fails (bad_names[i].what, dir, DS_ERR_FORMAT, bad_names[i].needle);
        remove_dir (dir);
      }
  /* a mapped tensor not in its shard */
  if (tiny_copy (dir, sizeof dir))
    {
      json_t *root = load_json (dir, idx_name);
      json_object_set_new (json_object_get (root, "weight_map"), lm_head,
                           json_string ("model-00001-of-00002.safetensors"));
      save_json (dir, idx_name, root);
      check_open_fails ("tensor not in its shard", dir, DS_ERR_NOT_FOUND, lm_head);
      remove_dir (dir);
    }
  /* a name in two shards */
  if (tiny_copy (dir, sizeof dir))
    {
      const char *norm = "language_model.model.layers.0.input_layernorm.weight";
      DS_CHECK (rewrite_shard (dir, "model-00002-of-00002.safetensors", norm, 0, NULL,
                               "model-00001-of-00002.safetensors"),
                "rewriting a shard");
      check_open_fails ("tensor in two shards", dir, DS_ERR_FORMAT, "two shards");
      remove_dir (dir);
    }
  /* a tensor of the wrong shape */
  if (tiny_copy (dir, sizeof dir))
    {
      const char *w = "multi_modal_projector.linear_2.weight";
      DS_CHECK (rewrite_shard (dir, "model-00001-of-00002.safetensors", w, 2,
                               (int64_t[]){ 64, 32 }, NULL),
                "rewriting a shard");
      check_open_fails ("wrong shape", dir, DS_ERR_FORMAT, w);
      remove_dir (dir);
    }
  /* config.json keys */
  static const struct {
    const char *what, *key, *needle;
    DsStatus code;
  } keys[] = {
    { "no image_token_index", "image_token_index", "image_token_index", DS_ERR_FORMAT },
    { "no text_config", "text_config", "text_config", DS_ERR_FORMAT },
    { "no model_type", "model_type", "model_type", DS_ERR_FORMAT },
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (tiny_copy (dir, sizeof dir))
      {
        json_t *root = load_json (dir, "config.json");
        json_object_del (root, keys[i].key);
        save_json (dir, "config.json", root);
        check_open_fails (keys[i].what, dir, keys[i].code, keys[i].needle);
        remove_dir (dir);
      }
  if (tiny_copy (dir, sizeof dir))
    {
      json_t *root = load_json (dir, "config.json");
      json_object_set_new (root, "projector_hidden_act", json_string ("relu"));
      save_json (dir, "config.json", root);
      check_open_fails ("projector relu", dir, DS_ERR_UNSUPPORTED, "projector_hidden_act");
      remove_dir (dir);
    }
  if (tiny_copy (dir, sizeof dir))
    {
      json_t *root = load_json (dir, "config.json");
      json_object_set_new (root, "image_token_index", json_integer (5));
      save_json (dir, "config.json", root);
      check_open_fails ("image token mismatch", dir, DS_ERR_FORMAT, "image_token_index");
      remove_dir (dir);
    }
  if (tiny_copy (dir, sizeof dir))
    {
      json_t *root = load_json (dir, "config.json");
      json_object_set_new (json_object_get (root, "text_config"), "intermediate_size",
                           json_integer (96));
      save_json (dir, "config.json", root);
      check_open_fails ("config vs weights", dir, DS_ERR_FORMAT, "mlp.gate_proj.weight");
      remove_dir (dir);
    }
  if (tiny_copy (dir, sizeof dir))
    {
      char p[1024];
      snprintf (p, sizeof p, "%s/preprocessor_config.json", dir);
      unlink (p);
      check_open_fails ("no preprocessor_config", dir, DS_ERR_NOT_FOUND,
                        "preprocessor_config.json");
      remove_dir (dir);
    }
  /* no weights; only pickle weights */
  if (tiny_copy (dir, sizeof dir))
    {
      char p[1024];
      snprintf (p, sizeof p, "%s/%s", dir, idx_name);
      unlink (p);
      check_open_fails ("no weights", dir, DS_ERR_NOT_FOUND, "model.safetensors");
      snprintf (p, sizeof p, "%s/pytorch_model.bin", dir);
      FILE *f = fopen (p, "wb");
      if (f)
        fclose (f);
      check_open_fails ("only pickle weights", dir, DS_ERR_UNSUPPORTED, "pickle");
      remove_dir (dir);
    }
}

int
main (void)
{
  DsError err = { 0 };
#ifdef DS_TEST_LLAVA_CUDA
  ds_test_cuda_begin ();
  be = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
#else
  be = ds_backend_cpu_new (&err);
#endif
  if (!be || ds_safetensors_open (DS_TEST_DATA_DIR "/llava-tiny-expected.safetensors", &expected,
                                  &err) != DS_OK)
    {
      fprintf (stderr, "setup: %s\n", err.message);
      return 1;
    }
  test_index ();
  DsLlava *lv = NULL;
  DS_CHECK_OK (ds_llava_open (TINY, be, &lv, &err), &err);
  if (lv)
    {
      DS_CHECK (ds_llava_n_image_tokens (lv) == 9, "%lld image tokens",
                (long long) ds_llava_n_image_tokens (lv));
      DS_CHECK (ds_llava_config (lv)->image_token_id == 2000, "image token id");
      test_case (lv, "square", DS_TEST_DATA_DIR "/sd-input.png", true);
      test_case (lv, "wide", DS_TEST_DATA_DIR "/clip-vision/images/landscape_97x41.png", false);
      test_control (lv);
    }
  ds_llava_free (lv);
  test_bad_folders ();
  ds_safetensors_close (expected);
  ds_backend_free (be);
  return ds_test_finish ();
}
