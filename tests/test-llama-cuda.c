/* test-llama-cuda.c: the LLaMA decoder (engine/models/ds-llama.c) on the CUDA
 * backend against transformers' fp32 logits (tests/data/llama/{mha,gqa},
 * tests/reference/gen_llama_fixture.py), in f32, f16 and bf16.
 *
 * Per fixture and dtype, with the weights on the GPU in the backend's
 * act_dtype and activations in a device arena of ds_llama_arena_bytes:
 *   - the prefill logits of every position against transformers' (12 tokens:
 *     the split-K kernel of attention-kv.cu, which takes up to 16 queries);
 *   - one prefill of prompt + greedy tokens (44: attention as GEMMs), its
 *     prompt rows against transformers';
 *   - a prefill in two chunks (5 tokens, then the rest at q_pos 5), then one
 *     token at a time (the kernel again) against that one prefill;
 *   - greedy generation: in f32 the same tokens as transformers; in f16 and
 *     bf16 the count that agree is printed (a near-tie may flip a token).
 * Bars: f32 NMSE <= 1e-8 (strict fp32 GEMMs and f32 kernels: the CPU gets
 * ~1e-13, so 1e-8 leaves room only for summation order); f16 <= 1e-4:
 * rounding each of the ~12 activations per layer and the weights (mha's are
 * f32 in the file) to 11 bits gives ~1e-7 each, ~1e-6 through two layers and
 * lm_head (measured on the emulator: 1e-6 to 3e-6); 1e-4 is the CUDA model
 * tests' f16 bar (ds-test-cuda.h), ~30x above it. bf16 keeps 8 bits, 8x
 * f16's step and 64x its NMSE: 6.4e-3 (measured 5e-5 to 2e-4). The chunked
 * and step-by-step runs differ from the one-prefill run by the path taken
 * (GEMMs vs the kernel; in f16 the GEMM path rounds the probabilities, the
 * kernel does not): the same bars.
 * Exits 77 where no CUDA device answers; on the emulator it runs.
 *
 * The decode step as a CUDA graph (ds-llama.c: its position is read on the
 * device): decoding the greedy tokens one at a time with one arena and one
 * logits tensor, the first step runs eagerly, the second is recorded and
 * launched, every later one is a launch and no op; the logits of every step
 * equal, bit for bit, those of the same steps run eagerly (DS_CUDA_GRAPHS=0),
 * and ds_llama_generate replays its steps too.
 *
 * A model generated in f16 (ds_llama_new_random_stored, what the benchmarks
 * use) goes to an f16 device as generated, without the f32 round trip: its
 * prefill logits against the same model on the CPU (mixed linears on the
 * same f16 matrices), within the f16 bar.
 */
#include "ds-test-cuda.h"

#include "ds-llama.h"
#include "ds-nn.h"
#include "ds-safetensors.h"

static const struct {
  DsDType dt;
  double tol;
} modes[3] = {
  { DS_DTYPE_F32, 1e-8 },
  { DS_DTYPE_F16, 1e-4 },
  { DS_DTYPE_BF16, 6.4e-3 },
};

static const int32_t *
ints (const DsSafetensors *st, const char *name, int64_t *n)
{
  const DsSafetensorsEntry *e = ds_safetensors_find (st, name);
  if (!e || e->dtype != DS_DTYPE_I32 || e->ndim != 1)
    return NULL;
  *n = e->shape[0];
  return e->data;
}

/* Runs `in` on top of kv; its logits, host f32 [n_logits, V]. */
static float *
run (DsBackend *be, DsLlama *m, DsLlamaCache *kv, const int32_t *ids, int64_t n, int64_t n_logits)
{
  DsError err = { 0 };
  const int64_t V = ds_llama_config (m)->vocab_size;
  DsArena a = { 0 };
  DsTensor logits = { 0 };
  float *host = calloc ((size_t) (n_logits * V), sizeof *host);
  DsLlamaInput in = { .ids = ids, .n = n };
  DsStatus st = ds_backend_arena_init (be, &a, ds_llama_arena_bytes (m, n, n_logits), &err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &logits, be->act_dtype, 2, (int64_t[]){ n_logits, V }, &err);
  if (st == DS_OK)
    st = ds_llama_forward (m, &a, kv, &in, &logits, &err);
  if (st == DS_OK)
    st = ds_backend_download_f32 (be, &logits, host, &err);
  DS_CHECK_OK (st, &err);
  if (logits.data)
    be->tensor_free (be, &logits);
  ds_backend_arena_free (be, &a);
  return host;
}

/* Decodes seq[0 .. n) one token at a time on top of kv with one arena and one
 * logits tensor (what a recording is keyed on); the logits, host [n, V]. */
static float *
steps (DsBackend *be, DsLlama *m, DsLlamaCache *kv, const int32_t *seq, int64_t n)
{
  DsError err = { 0 };
  const int64_t V = ds_llama_config (m)->vocab_size;
  DsArena a = { 0 };
  DsTensor logits = { 0 };
  float *host = calloc ((size_t) (n * V), sizeof *host);
  DsStatus st = ds_backend_arena_init (be, &a, ds_llama_arena_bytes (m, 1, 1), &err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &logits, be->act_dtype, 2, (int64_t[]){ 1, V }, &err);
  for (int64_t t = 0; st == DS_OK && t < n; t++)
    {
      DsLlamaInput in = { .ids = seq + t, .n = 1 };
      st = ds_llama_forward (m, &a, kv, &in, &logits, &err);
      if (st == DS_OK)
        st = ds_backend_download_f32 (be, &logits, host + t * V, &err);
    }
  DS_CHECK_OK (st, &err);
  if (logits.data)
    be->tensor_free (be, &logits);
  ds_backend_arena_free (be, &a);
  return host;
}

static void
check_nmse (const char *what, const float *got, const float *want, int64_t n, double tol)
{
  const double e = ds_test_nmse (got, want, (long) n);
  printf ("    %-44s NMSE %.3g (bar %.0e)\n", what, e, tol);
  DS_CHECK (e <= tol, "%s: NMSE %g > %g", what, e, tol);
}

static void
test_fixture (DsBackend *be, double tol, const char *name)
{
  printf ("  %s\n", name);
  char dir[512], path[600];
  snprintf (dir, sizeof dir, "%s/llama/%s", DS_TEST_DATA_DIR, name);
  DsError err = { 0 };
  DsLlamaConfig cfg;
  DsLlama *m = NULL;
  DsSafetensors *exp = NULL;
  DsTensor want = { 0 };
  snprintf (path, sizeof path, "%s/config.json", dir);
  DsStatus st = ds_llama_config_load (path, &cfg, &err);
  snprintf (path, sizeof path, "%s/model.safetensors", dir);
  if (st == DS_OK)
    st = ds_llama_load (&cfg, path, NULL, be, &m, &err);
  snprintf (path, sizeof path, "%s/expected.safetensors", dir);
  if (st == DS_OK)
    st = ds_safetensors_open (path, &exp, &err);
  int64_t L = 0, G = 0;
  const int32_t *prompt = exp ? ints (exp, "prompt", &L) : NULL;
  const int32_t *greedy = exp ? ints (exp, "greedy", &G) : NULL;
  if (st == DS_OK && prompt && greedy)
    st = ds_safetensors_load_f32 (exp, "logits", 2, (int64_t[]){ L, cfg.vocab_size }, &want,
                                  &err);
  DS_CHECK_OK (st, &err);
  DS_CHECK (prompt && greedy && L > 5 && L + G <= 128, "%s: prompt and greedy ids", name);
  if (st != DS_OK || !prompt || !greedy || L <= 5 || L + G > 128)
    goto out;
  const int64_t V = cfg.vocab_size, total = L + G;
  DsLlamaCache *kv = NULL;
  DS_CHECK_OK (ds_llama_cache_new (m, cfg.max_position_embeddings, &kv, &err), &err);
  if (!kv)
    goto out;
  const DsTestCounters before = ds_test_cuda_counters (be);

  /* prefill, every position */
  float *got = run (be, m, kv, prompt, L, L);
  check_nmse ("prefill logits vs transformers", got, ds_tensor_f32 (&want), L * V, tol);
  free (got);

  /* greedy */
  int32_t out[128];
  int64_t n_out = 0;
  ds_llama_cache_truncate (kv, 0);
  DsTestCounters c0 = ds_test_cuda_counters (be);
  DS_CHECK_OK (ds_llama_generate (m, kv, prompt, L, G, NULL, -1, out, &n_out, &err), &err);
  DsTestCounters c1 = ds_test_cuda_counters (be);
  if (ds_test_cuda_graphs ())
    DS_CHECK (c1.launches - c0.launches >= (uint64_t) G - 3,
              "%s: generation launched %llu recorded steps for %lld tokens", name,
              (unsigned long long) (c1.launches - c0.launches), (long long) G);
  int same = 0;
  while (same < n_out && same < G && out[same] == greedy[same])
    same++;
  printf ("    greedy: %d of %lld tokens as transformers\n", same, (long long) G);
  if (be->act_dtype == DS_DTYPE_F32)
    DS_CHECK (n_out == G && same == G, "%s: greedy differs at step %d", name, same);

  /* one prefill of the whole sequence, then chunks and single steps */
  int32_t seq[128];
  memcpy (seq, prompt, (size_t) L * sizeof *seq);
  memcpy (seq + L, greedy, (size_t) G * sizeof *seq);
  ds_llama_cache_truncate (kv, 0);
  float *full = run (be, m, kv, seq, total, total);
  check_nmse ("prompt rows of a prefill of all tokens", full, ds_tensor_f32 (&want), L * V, tol);
  ds_llama_cache_truncate (kv, 0);
  got = run (be, m, kv, seq, 5, 5);
  double worst = ds_test_nmse (got, full, (long) (5 * V));
  free (got);
  got = run (be, m, kv, seq + 5, L - 5, L - 5);
  worst = fmax (worst, ds_test_nmse (got, full + 5 * V, (long) ((L - 5) * V)));
  free (got);
  int steps_agree = 0;
  for (int64_t t = L; t < total; t++)
    {
      got = run (be, m, kv, seq + t, 1, 1);
      worst = fmax (worst, ds_test_nmse (got, full + t * V, (long) V));
      steps_agree += ds_llama_argmax (got, V) == ds_llama_argmax (full + t * V, V);
      free (got);
    }
  printf ("    chunked prefill + %lld decode steps vs one prefill: worst NMSE %.3g, "
          "argmax agrees %d/%lld\n",
          (long long) G, worst, steps_agree, (long long) G);
  DS_CHECK (worst <= tol, "%s: decode vs one prefill NMSE %g > %g", name, worst, tol);
  if (be->act_dtype == DS_DTYPE_F32)
    DS_CHECK (steps_agree == G, "%s: decode steps pick other tokens", name);
  (void) before;

  /* the same steps recorded and replayed, then eagerly: the same bits */
  const bool graphs = ds_test_cuda_graphs ();
  ds_llama_cache_truncate (kv, L);
  c0 = ds_test_cuda_counters (be);
  float *replayed = steps (be, m, kv, seq + L, G);
  const DsTestCounters c_rec = ds_test_cuda_counters (be);
  setenv ("DS_CUDA_GRAPHS", "0", 1);
  ds_llama_cache_truncate (kv, L);
  float *eager = steps (be, m, kv, seq + L, G);
  const DsTestCounters c_eager = ds_test_cuda_counters (be);
  if (graphs)
    unsetenv ("DS_CUDA_GRAPHS");
  const uint64_t step_ops = (c_eager.ops - c_rec.ops) / (uint64_t) G; /* one eager step */
  const uint64_t ops = c_rec.ops - c0.ops, launches = c_rec.launches - c0.launches;
  printf ("    %lld steps with one arena: %llu ops (eagerly %llu a step), %llu graph "
          "launches\n",
          (long long) G, (unsigned long long) ops, (unsigned long long) step_ops,
          (unsigned long long) launches);
  DS_CHECK (c_eager.launches == c_rec.launches, "%s: DS_CUDA_GRAPHS=0 launched graphs", name);
  if (graphs)
    /* a new arena and logits tensor: eager, recorded, then replays; or, when
     * the allocator handed out the addresses of an earlier recording's, only
     * replays */
    DS_CHECK ((launches == (uint64_t) G - 1 && ops == 2 * step_ops)
                  || (launches == (uint64_t) G && ops == 0),
              "%s: %llu ops and %llu launches for %lld steps", name, (unsigned long long) ops,
              (unsigned long long) launches, (long long) G);
  const bool same_bits = memcmp (replayed, eager, (size_t) (G * V) * sizeof *eager) == 0;
  printf ("    recorded steps vs eager steps: %s\n", same_bits ? "the same bits" : "DIFFER");
  DS_CHECK (same_bits, "%s: replayed decode steps differ from eager ones", name);
  free (eager);
  free (replayed);
  free (full);
  ds_llama_cache_free (kv);
out:
  ds_tensor_free (&want);
  ds_safetensors_close (exp);
  ds_llama_free (m);
}

static void
test_random_stored (DsBackend *be)
{
  DsError err = { 0 };
  DsLlamaConfig cfg;
  char path[600];
  snprintf (path, sizeof path, "%s/llama/gqa/config.json", DS_TEST_DATA_DIR);
  DS_CHECK_OK (ds_llama_config_load (path, &cfg, &err), &err);
  DsBackend *cpu = ds_backend_cpu_new (&err);
  DsLlama *mg = NULL, *mc = NULL;
  DsLlamaCache *kg = NULL, *kc = NULL;
  DS_CHECK_OK (ds_llama_new_random_stored (&cfg, 5, DS_DTYPE_F16, be, &mg, &err), &err);
  DS_CHECK_OK (ds_llama_new_random_stored (&cfg, 5, DS_DTYPE_F16, cpu, &mc, &err), &err);
  if (!mg || !mc)
    goto out;
  DS_CHECK_OK (ds_llama_cache_new (mg, 16, &kg, &err), &err);
  DS_CHECK_OK (ds_llama_cache_new (mc, 16, &kc, &err), &err);
  int32_t ids[9];
  for (int i = 0; i < 9; i++)
    ids[i] = (int32_t) ((i * 37 + 3) % cfg.vocab_size);
  float *g = run (be, mg, kg, ids, 9, 9), *c = run (cpu, mc, kc, ids, 9, 9);
  check_nmse ("f16-generated model vs the CPU's", g, c, 9 * (int64_t) cfg.vocab_size, 1e-4);
  free (g);
  free (c);
out:
  ds_llama_cache_free (kg);
  ds_llama_cache_free (kc);
  ds_llama_free (mg);
  ds_llama_free (mc);
  ds_backend_free (cpu);
}

int
main (void)
{
  ds_test_cuda_begin ();
  for (int i = 0; i < 3; i++)
    {
      DsError err = { 0 };
      DsBackend *be = ds_backend_cuda_new (0, modes[i].dt, &err);
      DS_CHECK (be != NULL, "CUDA backend: %s", err.message);
      if (!be)
        break;
      printf ("%s, computing in %s\n", be->name, ds_dtype_name (be->act_dtype));
      test_fixture (be, modes[i].tol, "mha");
      test_fixture (be, modes[i].tol, "gqa");
      if (modes[i].dt == DS_DTYPE_F16)
        test_random_stored (be);
      ds_backend_free (be);
    }
  return ds_test_finish ();
}
