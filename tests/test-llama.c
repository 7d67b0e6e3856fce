/* test-llama.c: the LLaMA decoder (engine/models/ds-llama.c) against
 * transformers' LlamaForCausalLM in fp32 (tests/reference/gen_llama_fixture.py,
 * tests/data/llama/{mha,gqa}).
 *
 *  - config.json of a plain LlamaConfig and of a LLaVA config (text_config),
 *    and bad configs whose errors name the key;
 *  - weights under "model." (f32) and "language_model.model." (f16, tied head),
 *    a shape mismatch and a missing lm_head naming the tensor;
 *  - prefill logits of every position (NMSE <= 1e-8), the same with input
 *    embeddings at positions 3..6, 32 greedy tokens identical;
 *  - the KV cache: step-by-step decoding and a prefill in two chunks give the
 *    logits of one prefill of the whole sequence;
 *  - sampling: reproducible for a seed, greedy as temperature -> 0, top-p's
 *    kept set, frequencies at top_p = 1, argmax ties to the lowest id;
 *  - errors: ids outside the vocabulary, a full cache.
 * With DIFFSCOPE_LLAMA_REAL=DIR (gen_llama_fixture.py --real DIR): the real
 * LLaVA-1.5 widths at 2 layers, logits NMSE <= 1e-6 and 16 greedy tokens.
 */
#include "ds-test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-llama.h"
#include "ds-nn.h"
#include "ds-safetensors.h"
#include "ds-util.h"

static DsBackend *be;

static char *
data_path (const char *dir, const char *file)
{
  static char buf[4][1024];
  static int i;
  i = (i + 1) % 4;
  snprintf (buf[i], sizeof buf[i], "%s/%s", dir, file);
  return buf[i];
}

typedef struct {
  DsLlamaConfig cfg;
  DsLlama *m;
  DsSafetensors *exp;
  const int32_t *prompt, *greedy;
  int64_t n_prompt, n_greedy;
  DsTensor logits; /* host [n_prompt, V] */
} Case;

static const int32_t *
ints (const DsSafetensors *st, const char *name, int64_t *n)
{
  const DsSafetensorsEntry *e = ds_safetensors_find (st, name);
  if (!e || e->dtype != DS_DTYPE_I32 || e->ndim != 1)
    return NULL;
  *n = e->shape[0];
  return e->data;
}

static bool
case_open (Case *c, const char *dir)
{
  DsError err = { 0 };
  memset (c, 0, sizeof *c);
  DsStatus st = ds_llama_config_load (data_path (dir, "config.json"), &c->cfg, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    st = ds_llama_load (&c->cfg, data_path (dir, "model.safetensors"), NULL, be, &c->m, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    st = ds_safetensors_open (data_path (dir, "expected.safetensors"), &c->exp, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    return false;
  c->prompt = ints (c->exp, "prompt", &c->n_prompt);
  c->greedy = ints (c->exp, "greedy", &c->n_greedy);
  DS_CHECK (c->prompt && c->greedy, "%s: prompt and greedy ids", dir);
  st = ds_safetensors_load_f32 (c->exp, "logits", 2,
                                (int64_t[]){ c->n_prompt, c->cfg.vocab_size }, &c->logits, &err);
  DS_CHECK_OK (st, &err);
  return c->prompt && c->greedy && st == DS_OK;
}

static void
case_close (Case *c)
{
  ds_llama_free (c->m);
  ds_tensor_free (&c->logits);
  ds_safetensors_close (c->exp);
}

/* Runs `in` on top of kv and returns its logits, host [n_logits, V]. */
static DsTensor
run (DsLlama *m, DsLlamaCache *kv, const DsLlamaInput *in, int64_t n_logits)
{
  DsError err = { 0 };
  const int64_t V = ds_llama_config (m)->vocab_size;
  DsTensor logits;
  DsArena a;
  ds_tensor_alloc (&logits, DS_DTYPE_F32, 2, (int64_t[]){ n_logits, V }, &err);
  DsStatus st = ds_arena_init (&a, ds_llama_arena_bytes (m, in->n, n_logits), &err);
  if (st == DS_OK)
    st = ds_llama_forward (m, &a, kv, in, &logits, &err);
  DS_CHECK_OK (st, &err);
  DS_CHECK (a.used == 0, "arena back at its mark");
  ds_arena_free (&a);
  return logits;
}

/* ---- config ---- */

static void
test_configs (void)
{
  DsError err = { 0 };
  DsLlamaConfig c;
  DS_CHECK_OK (ds_llama_config_load (DS_TEST_DATA_DIR "/llama/mha/config.json", &c, &err),
               &err);
  DS_CHECK (c.hidden_size == 64 && c.num_attention_heads == 4 && c.num_key_value_heads == 4
                && c.head_dim == 16 && c.num_hidden_layers == 2 && c.intermediate_size == 128
                && c.vocab_size == 300 && c.max_position_embeddings == 128
                && !c.tie_word_embeddings,
            "mha config");
  DS_CHECK_CLOSE (c.rms_norm_eps, 1e-6, 1e-12);
  DS_CHECK_CLOSE (c.rope_theta, 10000, 0);
  DS_CHECK_OK (ds_llama_config_load (DS_TEST_DATA_DIR "/llama/gqa/config.json", &c, &err),
               &err);
  DS_CHECK (c.num_key_value_heads == 2 && c.intermediate_size == 96 && c.tie_word_embeddings,
            "gqa config (LLaVA text_config)");
  DS_CHECK_CLOSE (c.rms_norm_eps, 1e-5, 1e-12);
  DS_CHECK_CLOSE (c.rope_theta, 500000, 0);

  /* llava-hf/llava-1.5-7b-hf's text_config: the rest are LlamaConfig's defaults. */
  DS_CHECK_OK (ds_llama_config_parse ("{\"model_type\": \"llava\", \"text_config\": "
                                      "{\"max_position_embeddings\": 4096, \"rms_norm_eps\": "
                                      "1e-05, \"vocab_size\": 32064, \"rope_scaling\": null}}",
                                      "llava", &c, &err),
               &err);
  DS_CHECK (c.hidden_size == 4096 && c.num_attention_heads == 32 && c.num_key_value_heads == 32
                && c.head_dim == 128 && c.intermediate_size == 11008 && c.num_hidden_layers == 32
                && c.vocab_size == 32064 && c.max_position_embeddings == 4096,
            "llava-1.5-7b-hf text config");
  /* transformers 4.x writes rope_theta at the top level */
  DS_CHECK_OK (ds_llama_config_parse ("{\"rope_theta\": 1000000.0}", "old", &c, &err), &err);
  DS_CHECK_CLOSE (c.rope_theta, 1e6, 0);

  static const struct {
    const char *json, *names;
    DsStatus st;
  } bad[] = {
    { "{\"hidden_size\": \"64\"}", "'hidden_size' is a string", DS_ERR_FORMAT },
    { "{\"num_attention_heads\": 32, \"num_key_value_heads\": 3}", "num_key_value_heads 3",
      DS_ERR_INVALID },
    { "{\"hidden_size\": 100, \"num_attention_heads\": 32}", "'hidden_size' 100",
      DS_ERR_INVALID },
    { "{\"vocab_size\": 0}", "vocab_size is 0", DS_ERR_INVALID },
    { "{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", "'rope_scaling'",
      DS_ERR_UNSUPPORTED },
    { "{\"rope_parameters\": {\"rope_type\": \"llama3\"}}", "'rope_parameters.rope_type'",
      DS_ERR_UNSUPPORTED },
    { "{\"hidden_act\": \"gelu\"}", "'hidden_act' is \"gelu\"", DS_ERR_UNSUPPORTED },
    { "{\"attention_bias\": true}", "'attention_bias'", DS_ERR_UNSUPPORTED },
    { "{\"text_config\": {\"rms_norm_eps\": \"x\"}}", "'text_config.rms_norm_eps'",
      DS_ERR_FORMAT },
    { "{\"text_config\": 3}", "'text_config' is an integer", DS_ERR_FORMAT },
    { "{\"tie_word_embeddings\": 1}", "'tie_word_embeddings'", DS_ERR_FORMAT },
    { "[1]", "expected a JSON object", DS_ERR_FORMAT },
    { "{", "not valid JSON", DS_ERR_FORMAT },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      DsError e = { 0 };
      DsStatus st = ds_llama_config_parse (bad[i].json, "bad.json", &c, &e);
      DS_CHECK_STATUS (st, bad[i].st, &e);
      DS_CHECK_CONTAINS (e.message, bad[i].names);
      DS_CHECK_CONTAINS (e.message, "bad.json");
    }
}

/* ---- weights ---- */

static void
test_load_errors (void)
{
  DsError err = { 0 };
  DsLlamaConfig mha, gqa;
  DsLlama *m = NULL;
  DS_CHECK_OK (ds_llama_config_load (DS_TEST_DATA_DIR "/llama/mha/config.json", &mha, &err),
               &err);
  DS_CHECK_OK (ds_llama_config_load (DS_TEST_DATA_DIR "/llama/gqa/config.json", &gqa, &err),
               &err);
  /* the GQA config on the MHA file: k_proj is [64, 64], not [32, 64] */
  DsStatus st = ds_llama_load (&gqa, DS_TEST_DATA_DIR "/llama/mha/model.safetensors", NULL, be,
                               &m, &err);
  DS_CHECK_STATUS (st, DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "model.layers.0.self_attn.k_proj.weight");
  DS_CHECK (!m, "no model on failure");
  /* the tied file with an untied config: no language_model.lm_head.weight */
  gqa.tie_word_embeddings = false;
  st = ds_llama_load (&gqa, DS_TEST_DATA_DIR "/llama/gqa/model.safetensors", NULL, be, &m, &err);
  DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
  DS_CHECK_CONTAINS (err.message, "lm_head.weight");
  DS_CHECK_CONTAINS (err.message, "llama");
  /* an explicit prefix the file does not have */
  DsLlamaNames names = { .prefix = "model.language_model." };
  st = ds_llama_load (&mha, DS_TEST_DATA_DIR "/llama/mha/model.safetensors", &names, be, &m,
                      &err);
  DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
  DS_CHECK_CONTAINS (err.message, "model.language_model.embed_tokens.weight");
  /* a config check */
  mha.num_key_value_heads = 3;
  st = ds_llama_load (&mha, DS_TEST_DATA_DIR "/llama/mha/model.safetensors", NULL, be, &m, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "num_key_value_heads");
}

/* ---- against transformers ---- */

static void
test_case (const char *name, const char *prefix)
{
  printf ("%s\n", name);
  char dir[512];
  snprintf (dir, sizeof dir, "%s/llama/%s", DS_TEST_DATA_DIR, name);
  Case c;
  if (!case_open (&c, dir))
    return;
  DsError err = { 0 };
  DS_CHECK (strcmp (ds_llama_prefix (c.m), prefix) == 0, "prefix %s", ds_llama_prefix (c.m));
  /* mha's file is f32 (copied in f32); gqa's f16, whose matrices stay 16-bit
   * on the CPU (mixed linears), everything but the embeddings and norms */
  const size_t np = ds_llama_n_params (c.m), nbytes = ds_llama_weight_bytes (c.m);
  const int64_t E = (int64_t) c.cfg.vocab_size * c.cfg.hidden_size;
  const int64_t norms = (2 * (int64_t) c.cfg.num_hidden_layers + 1) * c.cfg.hidden_size;
  DS_CHECK (strcmp (name, "gqa") == 0 ? nbytes == 2 * (np - E - norms) + 4 * (E + norms)
                                      : nbytes == 4 * np,
            "%s: %zu bytes of weights for %zu parameters", name, nbytes, np);
  const int64_t V = c.cfg.vocab_size, C = c.cfg.hidden_size, L = c.n_prompt;
  const int64_t total = c.n_prompt + c.n_greedy;
  DsLlamaCache *kv;
  DS_CHECK_OK (ds_llama_cache_new (c.m, c.cfg.max_position_embeddings, &kv, &err), &err);

  /* prefill, every position */
  DsLlamaInput in = { .ids = c.prompt, .n = L };
  DsTensor got = run (c.m, kv, &in, L);
  ds_test_check_tensor ("prefill logits", &got, &c.logits, 1e-8);
  DS_CHECK (ds_llama_cache_len (kv) == L, "cache holds the prompt");
  ds_tensor_free (&got);

  /* the same with input embeddings at positions 3..6 */
  DsTensor embeds, want;
  if (ds_safetensors_load_f32 (c.exp, "embeds", 2, (int64_t[]){ 4, C }, &embeds, &err) == DS_OK
      && ds_safetensors_load_f32 (c.exp, "embeds_logits", 2, (int64_t[]){ L, V }, &want, &err)
           == DS_OK)
    {
      int32_t rows[64], ids[64];
      for (int64_t i = 0; i < L; i++)
        {
          rows[i] = i >= 3 && i < 7 ? (int32_t) (i - 3) : -1;
          ids[i] = rows[i] >= 0 ? 999999 : c.prompt[i]; /* ignored there */
        }
      ds_llama_cache_truncate (kv, 0);
      in = (DsLlamaInput){ .ids = ids, .n = L, .embeds = &embeds, .embed_rows = rows };
      got = run (c.m, kv, &in, L);
      ds_test_check_tensor ("logits with input embeddings", &got, &want, 1e-8);
      ds_tensor_free (&got);
      ds_tensor_free (&want);
      /* a row outside the given embeddings */
      rows[5] = 4;
      ds_llama_cache_truncate (kv, 0);
      DsArena a;
      ds_arena_init (&a, ds_llama_arena_bytes (c.m, L, 1), &err);
      DS_CHECK_STATUS (ds_llama_forward (c.m, &a, kv, &in, NULL, &err), DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "embedding row 4 at position 5");
      DS_CHECK (ds_llama_cache_len (kv) == 0, "a refused forward leaves the cache");
      ds_arena_free (&a);
    }
  else
    DS_CHECK (false, "embeds fixture: %s", err.message);
  ds_tensor_free (&embeds);

  /* greedy generation */
  int32_t out[64];
  int64_t n_out = 0;
  ds_llama_cache_truncate (kv, 0);
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, c.n_greedy, NULL, -1, out, &n_out, &err),
               &err);
  int same = 0;
  while (same < n_out && same < c.n_greedy && out[same] == c.greedy[same])
    same++;
  printf ("  greedy: %d of %lld tokens as transformers\n", same, (long long) c.n_greedy);
  DS_CHECK (n_out == c.n_greedy && same == c.n_greedy, "greedy differs at step %d", same);
  DS_CHECK (ds_llama_cache_len (kv) == total - 1, "cache after generate");

  /* decode with the cache == one prefill of the whole sequence */
  int32_t seq[128];
  memcpy (seq, c.prompt, (size_t) L * sizeof *seq);
  memcpy (seq + L, c.greedy, (size_t) c.n_greedy * sizeof *seq);
  ds_llama_cache_truncate (kv, 0);
  in = (DsLlamaInput){ .ids = seq, .n = total };
  DsTensor full = run (c.m, kv, &in, total);
  ds_llama_cache_truncate (kv, 0);
  double worst = 0;
  /* a prefill in two chunks (5 + the rest), then one token at a time */
  in = (DsLlamaInput){ .ids = seq, .n = 5 };
  got = run (c.m, kv, &in, 5);
  worst = fmax (worst, ds_test_nmse (ds_tensor_f32 (&got), ds_tensor_f32 (&full), 5 * V));
  ds_tensor_free (&got);
  in = (DsLlamaInput){ .ids = seq + 5, .n = L - 5 };
  got = run (c.m, kv, &in, L - 5);
  worst = fmax (worst, ds_test_nmse (ds_tensor_f32 (&got), ds_tensor_f32 (&full) + 5 * V,
                                     (L - 5) * V));
  ds_tensor_free (&got);
  for (int64_t t = L; t < total; t++)
    {
      in = (DsLlamaInput){ .ids = seq + t, .n = 1 };
      got = run (c.m, kv, &in, 1);
      worst = fmax (worst, ds_test_nmse (ds_tensor_f32 (&got), ds_tensor_f32 (&full) + t * V, V));
      DS_CHECK (t + 1 >= total || ds_llama_argmax (ds_tensor_f32 (&got), V) == seq[t + 1],
                "decode step %lld picks %d", (long long) t, seq[t + 1]);
      ds_tensor_free (&got);
    }
  printf ("  chunked prefill + decode vs one prefill: worst NMSE %.3g\n", worst);
  DS_CHECK (worst <= 1e-11, "decode vs recompute NMSE %g", worst);
  /* and against transformers' prefill rows */
  DsTensor head = ds_tensor_slice0 (&full, 0, L);
  ds_test_check_tensor ("long prefill, prompt rows", &head, &c.logits, 1e-8);
  ds_tensor_free (&full);

  /* sampling: one seed, one sequence; temperature -> 0 is greedy */
  DsLlamaSampling s = { .temperature = 0.8f, .top_p = 0.9f, .seed = 42 };
  int32_t s1[64], s2[64], s3[64];
  int64_t n1 = 0, n2 = 0, n3 = 0;
  ds_llama_cache_truncate (kv, 0);
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, 16, &s, -1, s1, &n1, &err), &err);
  ds_llama_cache_truncate (kv, 0);
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, 16, &s, -1, s2, &n2, &err), &err);
  s.seed = 43;
  ds_llama_cache_truncate (kv, 0);
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, 16, &s, -1, s3, &n3, &err), &err);
  DS_CHECK (n1 == 16 && n2 == 16 && memcmp (s1, s2, sizeof (int32_t) * 16) == 0,
            "a seed gives one sequence");
  DS_CHECK (memcmp (s1, s3, sizeof (int32_t) * 16) != 0, "another seed, another sequence");
  for (float temp = 0.0f; temp >= 0; temp = temp == 0 ? 1e-4f : -1)
    {
      s = (DsLlamaSampling){ .temperature = temp, .top_p = 1.0f, .seed = 7 };
      ds_llama_cache_truncate (kv, 0);
      DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, c.n_greedy, &s, -1, s1, &n1, &err),
                   &err);
      DS_CHECK (n1 == c.n_greedy && memcmp (s1, c.greedy, sizeof (int32_t) * n1) == 0,
                "temperature %g samples the greedy tokens", temp);
    }
  /* an eos stops (and is included) */
  ds_llama_cache_truncate (kv, 0);
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, c.n_greedy, NULL, c.greedy[3], s1, &n1,
                                  &err),
               &err);
  DS_CHECK (n1 == 4 && s1[3] == c.greedy[3], "stops at eos after %lld", (long long) n1);

  /* errors */
  DsArena a;
  ds_arena_init (&a, ds_llama_arena_bytes (c.m, L, 1), &err);
  int32_t badids[2] = { 1, (int32_t) V };
  ds_llama_cache_truncate (kv, 0);
  in = (DsLlamaInput){ .ids = badids, .n = 2 };
  DS_CHECK_STATUS (ds_llama_forward (c.m, &a, kv, &in, NULL, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "token id 300 at position 1");
  DsLlamaCache *small;
  DS_CHECK_OK (ds_llama_cache_new (c.m, 4, &small, &err), &err);
  in = (DsLlamaInput){ .ids = c.prompt, .n = 5 };
  DS_CHECK_STATUS (ds_llama_forward (c.m, &a, small, &in, NULL, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "do not fit the cache of 4");
  DsLlamaCache *too_long;
  DS_CHECK_STATUS (ds_llama_cache_new (c.m, c.cfg.max_position_embeddings + 1, &too_long, &err),
                   DS_ERR_INVALID, &err);
  DS_CHECK (!too_long, "no cache on failure");
  DS_CHECK_CONTAINS (err.message, "max_position_embeddings");
  ds_llama_cache_free (small);
  ds_arena_free (&a);

  ds_llama_cache_free (kv);
  case_close (&c);
}

/* ---- sampling on known distributions ---- */

static void
test_sampling (void)
{
  DS_CHECK (ds_llama_argmax ((float[]){ 1, 3, 3, 2 }, 4) == 1, "ties go to the lowest id");
  DS_CHECK (ds_llama_argmax ((float[]){ NAN, -1, -2 }, 3) == 1, "NaN skipped");

  /* p = [0.5, 0.3, 0.15, 0.05]; top_p 0.75 drops the tokens whose ascending
   * cumulative probability is <= 0.25 (0.05, then 0.2): {0, 1} stay. */
  float lg[4] = { logf (0.5f), logf (0.3f), logf (0.15f), logf (0.05f) };
  DsLlamaSampling s = { .temperature = 1.0f, .top_p = 0.75f };
  uint64_t state = 1;
  int count[4] = { 0 };
  for (int i = 0; i < 4000; i++)
    count[ds_llama_sample (lg, 4, &s, &state)]++;
  DS_CHECK (count[2] == 0 && count[3] == 0 && count[0] > 0 && count[1] > 0,
            "top_p 0.75 keeps {0, 1}: %d %d %d %d", count[0], count[1], count[2], count[3]);
  DS_CHECK (fabs (count[0] / 4000.0 - 0.625) < 0.03, "renormalised 0.5/0.8: %d", count[0]);
  /* a tiny top_p keeps only the most likely */
  s.top_p = 0.01f;
  bool only_best = true;
  for (int i = 0; i < 200; i++)
    only_best &= ds_llama_sample (lg, 4, &s, &state) == 0;
  DS_CHECK (only_best, "top_p 0.01 keeps the best token");
  /* top_p 1: the softmax's frequencies */
  s.top_p = 1.0f;
  memset (count, 0, sizeof count);
  const int n = 40000;
  for (int i = 0; i < n; i++)
    count[ds_llama_sample (lg, 4, &s, &state)]++;
  const double p[4] = { 0.5, 0.3, 0.15, 0.05 };
  for (int i = 0; i < 4; i++)
    DS_CHECK (fabs (count[i] / (double) n - p[i]) < 0.01, "token %d: %d of %d, p %g", i,
              count[i], n, p[i]);
  /* temperature 2 flattens: p ∝ sqrt(p) */
  s.temperature = 2.0f;
  memset (count, 0, sizeof count);
  for (int i = 0; i < n; i++)
    count[ds_llama_sample (lg, 4, &s, &state)]++;
  double z = 0;
  for (int i = 0; i < 4; i++)
    z += sqrt (p[i]);
  for (int i = 0; i < 4; i++)
    DS_CHECK (fabs (count[i] / (double) n - sqrt (p[i]) / z) < 0.01, "T=2 token %d", i);
  /* the same seed, the same draws */
  s = (DsLlamaSampling){ .temperature = 1.0f, .top_p = 0.9f };
  uint64_t a = 99, b = 99;
  bool same = true;
  for (int i = 0; i < 100; i++)
    same &= ds_llama_sample (lg, 4, &s, &a) == ds_llama_sample (lg, 4, &s, &b);
  DS_CHECK (same, "reproducible draws");
}

/* ---- a seeded random model ---- */

static void
test_random_model (void)
{
  DsError err = { 0 };
  DsLlamaConfig c;
  ds_llama_config_default (&c);
  c.hidden_size = 32, c.num_attention_heads = 4, c.num_key_value_heads = 1, c.head_dim = 8;
  c.intermediate_size = 48, c.num_hidden_layers = 3, c.vocab_size = 50;
  c.max_position_embeddings = 64;
  DsLlama *m1, *m2;
  DS_CHECK_OK (ds_llama_new_random (&c, 5, be, &m1, &err), &err);
  DS_CHECK_OK (ds_llama_new_random (&c, 5, be, &m2, &err), &err);
  DS_CHECK (ds_llama_n_params (m1) == (size_t) (2 * 50 * 32 + 32
                                                + 3 * (2 * 32 + 32 * 32 * 2 + 2 * 8 * 32
                                                       + 3 * 32 * 48)),
            "parameter count %zu", ds_llama_n_params (m1));
  DsLlamaCache *k1, *k2;
  ds_llama_cache_new (m1, 64, &k1, &err);
  ds_llama_cache_new (m2, 64, &k2, &err);
  int32_t prompt[3] = { 1, 7, 9 }, o1[20], o2[20];
  int64_t n1, n2;
  DS_CHECK_OK (ds_llama_generate (m1, k1, prompt, 3, 20, NULL, -1, o1, &n1, &err), &err);
  DS_CHECK_OK (ds_llama_generate (m2, k2, prompt, 3, 20, NULL, -1, o2, &n2, &err), &err);
  DS_CHECK (n1 == 20 && n2 == 20 && memcmp (o1, o2, sizeof o1) == 0, "seeded models agree");
  /* a cache too short for the request */
  DS_CHECK_STATUS (ds_llama_generate (m1, k1, prompt, 3, 60, NULL, -1, o1, &n1, &err),
                   DS_ERR_INVALID, &err);
  ds_llama_cache_free (k1);
  ds_llama_cache_free (k2);
  ds_llama_free (m1);
  ds_llama_free (m2);

  /* Matrices "stored" in f16: 16-bit mixed linears on the CPU give the logits
   * of the same rounded weights widened to f32 (a backend without mixed
   * linears), up to the order of f32 sums. */
  DsBackend plain = *be;
  plain.mixed_linear = false;
  DS_CHECK_OK (ds_llama_new_random_stored (&c, 5, DS_DTYPE_F16, be, &m1, &err), &err);
  DS_CHECK_OK (ds_llama_new_random_stored (&c, 5, DS_DTYPE_F16, &plain, &m2, &err), &err);
  DS_CHECK (ds_llama_weight_bytes (m1) < ds_llama_weight_bytes (m2)
                && ds_llama_weight_bytes (m2) == 4 * ds_llama_n_params (m2),
            "f16 matrices held in 16 bits (%zu bytes, %zu in f32)", ds_llama_weight_bytes (m1),
            ds_llama_weight_bytes (m2));
  int32_t ids[12] = { 1, 7, 9, 3, 4, 5, 6, 8, 10, 11, 2, 0 };
  DsLlamaInput in = { .ids = ids, .n = 12 };
  ds_llama_cache_new (m1, 64, &k1, &err);
  ds_llama_cache_new (m2, 64, &k2, &err);
  DsTensor l1 = run (m1, k1, &in, 12), l2 = run (m2, k2, &in, 12);
  ds_test_check_tensor ("f16-stored random model, mixed vs f32 (prefill)", &l1, &l2, 1e-10);
  ds_tensor_free (&l1), ds_tensor_free (&l2);
  in = (DsLlamaInput){ .ids = ids, .n = 1 };
  l1 = run (m1, k1, &in, 1), l2 = run (m2, k2, &in, 1);
  ds_test_check_tensor ("f16-stored random model, mixed vs f32 (decode)", &l1, &l2, 1e-10);
  ds_tensor_free (&l1), ds_tensor_free (&l2);
  ds_llama_cache_free (k1);
  ds_llama_cache_free (k2);
  ds_llama_free (m1);
  ds_llama_free (m2);
}

/* ---- a weights file that shrinks during a decode (issue #14, Faults) ----
 *
 * The mha fixture rewritten with its matrices in f16, so on the CPU they stay
 * mapped and the mixed linears read them from the file at every step. Cut
 * the file to its first page between two decode steps: the next step reads
 * past the new end, which is SIGBUS; it must be an error naming the file and
 * saying it shrank (the step ran on zeros, ds-safetensors.h), every later
 * step too, and the process lives on: the file written again loads and
 * decodes as before. */
static void
test_shrinking_weights (void)
{
  DsError err = { 0 };
  DsLlamaConfig cfg;
  DsSafetensors *src = NULL;
  DS_CHECK_OK (ds_llama_config_load (DS_TEST_DATA_DIR "/llama/mha/config.json", &cfg, &err),
               &err);
  DS_CHECK_OK (ds_safetensors_open (DS_TEST_DATA_DIR "/llama/mha/model.safetensors", &src, &err),
               &err);
  if (!src)
    return;
  const int n = ds_safetensors_count (src);
  DsTensor *t = calloc ((size_t) n, sizeof *t);
  DsSafetensorsItem *items = calloc ((size_t) n, sizeof *items);
  for (int i = 0; i < n; i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (src, i);
      DsTensor f = { 0 };
      DS_CHECK_OK (ds_safetensors_load_f32 (src, e->name, 0, NULL, &f, &err), &err);
      if (f.ndim == 2 && strstr (e->name, "embed") == NULL)
        {
          ds_tensor_alloc (&t[i], DS_DTYPE_F16, 2, f.shape, &err);
          uint16_t *h = t[i].data;
          for (int64_t k = 0; k < ds_tensor_numel (&f); k++)
            h[k] = ds_f32_to_f16 (ds_tensor_f32 (&f)[k]);
          ds_tensor_free (&f);
        }
      else
        t[i] = f;
      items[i] = (DsSafetensorsItem){ e->name, &t[i] };
    }
  char path[] = "/tmp/ds-test-llama-XXXXXX.safetensors";
  int fd = mkstemps (path, 12);
  DS_CHECK (fd >= 0, "scratch file");
  if (fd >= 0)
    close (fd);
  DS_CHECK_OK (ds_safetensors_write (path, items, n, NULL, &err), &err);

  int32_t prompt[4] = { 1, 5, 9, 2 }, out1[8], out2[8];
  int64_t got = 0;
  for (int round = 0; round < 2; round++)
    {
      DsLlama *m = NULL;
      DsLlamaCache *kv = NULL;
      DS_CHECK_OK (ds_llama_load (&cfg, path, NULL, be, &m, &err), &err);
      if (!m)
        break;
      DS_CHECK_OK (ds_llama_cache_new (m, 32, &kv, &err), &err);
      int32_t *out = round ? out2 : out1;
      DS_CHECK_OK (ds_llama_generate (m, kv, prompt, 4, 8, NULL, -1, out, &got, &err), &err);
      if (round == 0)
        {
          DS_CHECK (truncate (path, 4096) == 0, "truncate: %s", strerror (errno));
          DsLlamaInput in = { .ids = &out[got - 1], .n = 1 };
          DsTensor logits;
          ds_tensor_alloc (&logits, DS_DTYPE_F32, 2, (int64_t[]){ 1, cfg.vocab_size }, &err);
          DsArena a;
          DS_CHECK_OK (ds_backend_arena_init (be, &a, ds_llama_arena_bytes (m, 1, 1), &err),
                       &err);
          for (int step = 0; step < 2; step++)
            {
              DsStatus st = ds_llama_forward (m, &a, kv, &in, &logits, &err);
              DS_CHECK (st == DS_ERR_IO && strstr (err.message, "shorter")
                          && strstr (err.message, path),
                        "decode step %d on a shrunk file: %s", step, err.message);
            }
          printf ("  shrunk during decode: %s\n", err.message);
          ds_backend_arena_free (be, &a);
          ds_tensor_free (&logits);
          DS_CHECK_OK (ds_safetensors_write (path, items, n, NULL, &err), &err);
        }
      ds_llama_cache_free (kv);
      ds_llama_free (m);
    }
  DS_CHECK (memcmp (out1, out2, sizeof out1) == 0, "the rewritten file decodes as before");
  unlink (path);
  for (int i = 0; i < n; i++)
    ds_tensor_free (&t[i]);
  free (t);
  free (items);
  ds_safetensors_close (src);
}

/* ---- the real widths at reduced depth (DIFFSCOPE_LLAMA_REAL) ---- */

static void
test_real (const char *dir)
{
  printf ("real widths: %s\n", dir);
  double t0 = ds_now_ms ();
  Case c;
  if (!case_open (&c, dir))
    return;
  printf ("  loaded %zu parameters in %.1f s\n", ds_llama_n_params (c.m),
          (ds_now_ms () - t0) / 1000);
  DsError err = { 0 };
  const int64_t L = c.n_prompt, V = c.cfg.vocab_size;
  DsLlamaCache *kv;
  DS_CHECK_OK (ds_llama_cache_new (c.m, L + c.n_greedy, &kv, &err), &err);
  DsLlamaInput in = { .ids = c.prompt, .n = L };
  t0 = ds_now_ms ();
  DsTensor got = run (c.m, kv, &in, L);
  printf ("  prefill of %lld tokens: %.2f s\n", (long long) L, (ds_now_ms () - t0) / 1000);
  ds_test_check_tensor ("real-width prefill logits", &got, &c.logits, 1e-6);
  ds_tensor_free (&got);
  int32_t out[64];
  int64_t n_out = 0;
  ds_llama_cache_truncate (kv, 0);
  t0 = ds_now_ms ();
  DS_CHECK_OK (ds_llama_generate (c.m, kv, c.prompt, L, c.n_greedy, NULL, -1, out, &n_out, &err),
               &err);
  printf ("  %lld greedy tokens: %.2f s\n", (long long) n_out, (ds_now_ms () - t0) / 1000);
  int same = 0;
  while (same < n_out && same < c.n_greedy && out[same] == c.greedy[same])
    same++;
  printf ("  greedy: %d of %lld tokens as transformers\n", same, (long long) c.n_greedy);
  DS_CHECK (same == c.n_greedy, "real-width greedy differs at step %d (vocab %lld)", same,
            (long long) V);
  ds_llama_cache_free (kv);
  case_close (&c);
}

int
main (void)
{
  DsError err = { 0 };
  be = ds_backend_cpu_new (&err);
  if (!be)
    {
      fprintf (stderr, "no CPU backend: %s\n", err.message);
      return 1;
    }
  test_configs ();
  test_load_errors ();
  test_case ("mha", "model.");
  test_case ("gqa", "language_model.model.");
  test_sampling ();
  test_random_model ();
  test_shrinking_weights ();
  const char *real = getenv ("DIFFSCOPE_LLAMA_REAL");
  if (real && *real)
    test_real (real);
  ds_backend_free (be);
  return ds_test_finish ();
}
