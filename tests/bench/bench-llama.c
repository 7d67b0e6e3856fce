/* bench-llama.c: the LLaMA-2 decoder on the CPU at the 7B shape with seeded
 * f16 weights (GitHub issue #13): a prefill, decode tokens/s against the
 * machine's memory bandwidth measured in the same run, peak RSS, and
 * transformers on the same shape for comparison.
 *
 *   bench-llama [--layers N] [--prompt 640] [--decode 16] [--bw-gib 4]
 *               [--no-transformers] [--script PATH]
 *
 * The weights are generated in memory (ds_llama_new_random_stored, f16: the
 * projections and lm_head stay 16-bit and run as mixed linears with f32
 * activations; embeddings and norms f32), 13.5 GB at 32 layers. When
 * MemAvailable cannot hold them the layer count is lowered and the per-layer
 * times are extrapolated to 32, said in the output.
 *
 * Bandwidth: a streaming read (sum of 64-bit words, prefetching) of a buffer
 * of --bw-gib GiB by one thread per OpenBLAS thread, best of 5 passes, on
 * 4 KiB and on 2 MiB pages: before the model is built, just before and just
 * after the decode (half the buffer; the model is in memory), and after the
 * model is freed. Decode is compared with the better of the two next to it,
 * and with the best of the run. Bytes per decoded token: the 16-bit
 * matrices (read once per token), one embedding row, and the KV cache rows
 * the token's attention reads (f32 keys and values of every earlier position).
 *
 * Then tests/bench/bench_llama_transformers.py runs the same shape in
 * transformers (bf16 weights and compute: torch's CPU f16 matmuls are slow)
 * when python3 with torch and transformers is there.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "bench-util.h"
#include "ds-llama.h"

#include <cblas.h>

static int
n_threads (void)
{
#ifdef OPENBLAS_VERSION
  int n = openblas_get_num_threads ();
  return n < 1 ? 1 : n > 64 ? 64 : n;
#else
  return 2;
#endif
}

/* ---- streaming-read bandwidth ---- */

typedef struct
{
  const uint64_t *p;
  size_t n;
  uint64_t sum;
} SumJob;

/* Sums n words. On x86 with AVX-512: four 512-bit sums and a prefetch 1 KiB
 * ahead (more reads in flight: up to 1.5x a plain loop's rate on one core of
 * the development machine); elsewhere a SIMD reduction. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__ ((target ("avx512f"))) static uint64_t
sum_words_avx512 (const uint64_t *p, size_t n)
{
  __m512i a0 = _mm512_setzero_si512 (), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    {
      _mm_prefetch ((const char *) (p + i + 128), _MM_HINT_T0);
      _mm_prefetch ((const char *) (p + i + 136), _MM_HINT_T0);
      _mm_prefetch ((const char *) (p + i + 144), _MM_HINT_T0);
      _mm_prefetch ((const char *) (p + i + 152), _MM_HINT_T0);
      a0 = _mm512_add_epi64 (a0, _mm512_loadu_si512 (p + i));
      a1 = _mm512_add_epi64 (a1, _mm512_loadu_si512 (p + i + 8));
      a2 = _mm512_add_epi64 (a2, _mm512_loadu_si512 (p + i + 16));
      a3 = _mm512_add_epi64 (a3, _mm512_loadu_si512 (p + i + 24));
    }
  uint64_t s = (uint64_t) _mm512_reduce_add_epi64 (
      _mm512_add_epi64 (_mm512_add_epi64 (a0, a1), _mm512_add_epi64 (a2, a3)));
  for (; i < n; i++)
    s += p[i];
  return s;
}
#endif

static uint64_t
sum_words (const uint64_t *p, size_t n)
{
#if defined(__GNUC__) && defined(__x86_64__)
  if (__builtin_cpu_supports ("avx512f"))
    return sum_words_avx512 (p, n);
#endif
  uint64_t s = 0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++)
    s += p[i];
  return s;
}

static void *
sum_worker (void *arg)
{
  SumJob *j = arg;
  j->sum = sum_words (j->p, j->n);
  return NULL;
}

/* GB/s (1e9 bytes) of the best of `passes` threaded sums over `bytes`, on
 * 2 MiB pages (hinted, as DsWeights hints its 16-bit copies) or on 4 KiB ones. */
static double
bandwidth (size_t bytes, int threads, int passes, bool huge_pages)
{
  const size_t huge = (size_t) 2 << 20;
  bytes = (bytes + huge - 1) / huge * huge;
  size_t n = bytes / 8;
  uint64_t *buf = NULL;
  if (posix_memalign ((void **)&buf, huge, bytes) != 0)
    return 0;
  madvise (buf, bytes, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (size_t i = 0; i < n; i++)
    buf[i] = i;
  double best = 0;
  uint64_t check = 0;
  for (int p = 0; p < passes; p++)
    {
      SumJob jobs[64];
      pthread_t tid[64];
      double t0 = bench_now_ms ();
      for (int t = 0; t < threads; t++)
        {
          jobs[t] = (SumJob){ buf + n * t / threads, n * (t + 1) / threads - n * t / threads, 0 };
          if (t > 0)
            pthread_create (&tid[t], NULL, sum_worker, &jobs[t]);
        }
      sum_worker (&jobs[0]);
      for (int t = 1; t < threads; t++)
        pthread_join (tid[t], NULL);
      double s = (bench_now_ms () - t0) / 1e3;
      for (int t = 0; t < threads; t++)
        check += jobs[t].sum;
      double gbs = (double) (n * 8) / s / 1e9;
      best = gbs > best ? gbs : best;
    }
  free (buf);
  if (check == 42)
    printf ("#\n"); /* keeps the sums alive */
  return best;
}

/* Both kinds of pages; the better is the machine's bandwidth. */
static double
bandwidth_report (const char *when, double gib, int threads)
{
  size_t bytes = (size_t) (gib * 1073741824.0);
  double small = bandwidth (bytes, threads, 5, false), big = bandwidth (bytes, threads, 5, true);
  printf ("streaming read %s, %.1f GiB, %d threads, best of 5: %.1f GB/s on 4 KiB pages, "
          "%.1f GB/s on 2 MiB pages\n",
          when, gib, threads, small, big);
  return small > big ? small : big;
}

static long
mem_available_kib (void)
{
  FILE *f = fopen ("/proc/meminfo", "r");
  char line[256];
  long kib = -1;
  while (f && fgets (line, sizeof line, f))
    if (sscanf (line, "MemAvailable: %ld kB", &kib) == 1)
      break;
  if (f)
    fclose (f);
  return kib;
}

static double
peak_rss_gib (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1048576.0; /* KiB on Linux */
}

int
main (int argc, char **argv)
{
  int layers = 32, prompt = 640, decode = 16, run_tf = 1;
  double bw_gib = 4;
  const char *script = "tests/bench/bench_llama_transformers.py";
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--layers") && i + 1 < argc)
        layers = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--prompt") && i + 1 < argc)
        prompt = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--decode") && i + 1 < argc)
        decode = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--bw-gib") && i + 1 < argc)
        bw_gib = atof (argv[++i]);
      else if (!strcmp (argv[i], "--script") && i + 1 < argc)
        script = argv[++i];
      else if (!strcmp (argv[i], "--no-transformers"))
        run_tf = 0;
      else
        {
          fprintf (stderr,
                   "usage: %s [--layers N] [--prompt N] [--decode N] [--bw-gib G] "
                   "[--no-transformers] [--script PATH]\n",
                   argv[0]);
          return 2;
        }
    }
  if (layers < 1 || prompt < 1 || decode < 1)
    return 2;
  setvbuf (stdout, NULL, _IOLBF, 0); /* progress lines as they come, into a log too */
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  if (!be)
    {
      fprintf (stderr, "no CPU backend: %s\n", err.message);
      return 1;
    }
  const int threads = n_threads ();
  DsLlamaConfig cfg;
  ds_llama_config_default (&cfg); /* LLaMA-2 7B: 4096, 32 x 32 heads, 11008, 32000 */
  cfg.max_position_embeddings = 4096;
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t ctx = prompt + decode + 1;
  const double layer_bytes = 2.0 * (4 * C * C + 3 * C * F) + 4.0 * 2 * C + 8.0 * ctx * C;
  const double fixed_bytes = 4.0 * V * C + 2.0 * V * C + 1.5e9; /* embed, lm_head, slack */
  const long avail = mem_available_kib ();
  printf ("LLaMA-2 7B shape on the CPU (%d threads, %s kernels), seeded f16 matrices, f32 "
          "activations\n",
          threads, ds_cpu_mixed_kernels ());
  printf ("memory: %.1f GiB available; the model needs %.1f GiB at %d layers\n", avail / 1048576.0,
          (fixed_bytes + layers * layer_bytes) / 1073741824.0, layers);
  int want_layers = layers;
  if (avail > 0 && fixed_bytes + layers * layer_bytes > avail * 1024.0)
    {
      layers = (int) ((avail * 1024.0 - fixed_bytes) / layer_bytes);
      layers = layers < 1 ? 1 : layers;
      printf ("DOES NOT FIT: running %d layers and extrapolating per layer to %d\n", layers,
              want_layers);
    }
  cfg.num_hidden_layers = layers;

  double bw0 = bandwidth_report ("before", bw_gib, threads);

  double t0 = bench_now_ms ();
  DsLlama *m;
  if (ds_llama_new_random_stored (&cfg, 7, DS_DTYPE_F16, be, &m, &err) != DS_OK)
    {
      fprintf (stderr, "model: %s\n", err.message);
      return 1;
    }
  const double wbytes = (double) ds_llama_weight_bytes (m);
  printf ("weights: %zu parameters, %.2f GB held (generated in %.0f s)\n", ds_llama_n_params (m),
          wbytes / 1e9, (bench_now_ms () - t0) / 1e3);

  DsLlamaCache *kv;
  DsArena a;
  DsTensor logits;
  if (ds_llama_cache_new (m, ctx, &kv, &err) != DS_OK
      || ds_backend_arena_init (be, &a, ds_llama_arena_bytes (m, prompt, 1), &err) != DS_OK
      || ds_tensor_alloc (&logits, DS_DTYPE_F32, 2, (int64_t[]){ 1, V }, &err) != DS_OK)
    {
      fprintf (stderr, "setup: %s\n", err.message);
      return 1;
    }
  int32_t *ids = malloc ((size_t) prompt * sizeof *ids);
  uint64_t s = 12345;
  for (int i = 0; i < prompt; i++)
    {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      ids[i] = (int32_t) ((s >> 33) % (uint64_t) V);
    }
  DsLlamaInput in = { .ids = ids, .n = prompt };
  t0 = bench_now_ms ();
  if (ds_llama_forward (m, &a, kv, &in, &logits, &err) != DS_OK)
    {
      fprintf (stderr, "prefill: %s\n", err.message);
      return 1;
    }
  const double prefill_s = (bench_now_ms () - t0) / 1e3;
  /* the model's peak: the bandwidth buffers below would add to it */
  const double rss_model = peak_rss_gib ();
  /* the bandwidth again next to the decode, the model in memory (the machine
   * is shared: what other processes leave changes by the minute) */
  const double bw_pre = bandwidth_report ("just before the decode", bw_gib / 2, threads);
  double *step = malloc ((size_t) decode * sizeof *step);
  int32_t tok = ds_llama_argmax (ds_tensor_f32 (&logits), V);
  double total_ms = 0;
  for (int t = 0; t < decode; t++)
    {
      in = (DsLlamaInput){ .ids = &tok, .n = 1 };
      t0 = bench_now_ms ();
      if (ds_llama_forward (m, &a, kv, &in, &logits, &err) != DS_OK)
        {
          fprintf (stderr, "decode: %s\n", err.message);
          return 1;
        }
      step[t] = bench_now_ms () - t0;
      total_ms += step[t];
      tok = ds_llama_argmax (ds_tensor_f32 (&logits), V);
    }
  const double bw_post = bandwidth_report ("just after the decode", bw_gib / 2, threads);
  /* bytes per token: 16-bit matrices, one f32 embedding row, KV rows read
   * (keys and values of every position up to the middle of the decode) */
  const double mats = wbytes - 4.0 * V * C - 4.0 * (2 * layers + 1) * C;
  const double kv_bytes = 2.0 * layers * (prompt + decode / 2.0) * C * 4;
  const double per_tok = mats + 4.0 * C + kv_bytes;
  const double mean_s = total_ms / decode / 1e3;
  bench_sort (step, decode);
  const double med_s = step[decode / 2] / 1e3, best_s = step[0] / 1e3;
  const double scale = (double) want_layers / layers;
  printf ("prefill of %d tokens: %.1f s (%.1f tokens/s)\n", prompt, prefill_s, prompt / prefill_s);
  printf ("decode, %d tokens after the prompt: %.3f s/token mean, %.3f median, best %.3f "
          "-> %.2f tokens/s\n",
          decode, mean_s, med_s, step[0] / 1e3, 1 / mean_s);
  printf ("bytes per decoded token: %.2f GB (matrices %.2f, KV cache %.2f) -> %.1f GB/s mean, "
          "%.1f median, %.1f best step\n",
          per_tok / 1e9, mats / 1e9, kv_bytes / 1e9, per_tok / mean_s / 1e9, per_tok / med_s / 1e9,
          per_tok / best_s / 1e9);
  const double bw_near = bw_pre > bw_post ? bw_pre : bw_post;
  printf ("decode against the better bandwidth next to it (%.1f GB/s): %.0f%% mean, %.0f%% "
          "median, %.0f%% best step\n",
          bw_near, 100 * per_tok / mean_s / 1e9 / bw_near, 100 * per_tok / med_s / 1e9 / bw_near,
          100 * per_tok / best_s / 1e9 / bw_near);
  if (layers != want_layers)
    printf ("extrapolated to %d layers (time x %.2f, the lm_head counted %.2fx too, an upper "
            "bound): prefill %.0f s, decode %.2f s/token\n",
            want_layers, scale, scale, prefill_s * scale, mean_s * scale);
  printf ("peak RSS through the prefill: %.2f GiB (getrusage; with the bandwidth buffers "
          "next to the decode %.2f GiB)\n",
          rss_model, peak_rss_gib ());
  fflush (stdout);
  ds_tensor_free (&logits);
  ds_backend_arena_free (be, &a);
  ds_llama_cache_free (kv);
  ds_llama_free (m);
  free (ids);
  free (step);
  double bw1 = bandwidth_report ("after the model", bw_gib, threads);
  double bw_all = bw0 > bw1 ? bw0 : bw1;
  bw_all = bw_all > bw_near ? bw_all : bw_near;
  printf ("decode against the best bandwidth of the run (%.1f GB/s): %.0f%% mean, %.0f%% "
          "median, %.0f%% best step\n",
          bw_all, 100 * per_tok / mean_s / 1e9 / bw_all, 100 * per_tok / med_s / 1e9 / bw_all,
          100 * per_tok / best_s / 1e9 / bw_all);
  ds_backend_free (be);

  if (run_tf)
    {
      if (system ("python3 -c 'import torch, transformers' 2>/dev/null") != 0)
        printf ("transformers: skipped (no python3 with torch and transformers)\n");
      else
        {
          char cmd[1024];
          snprintf (cmd, sizeof cmd, "python3 %s --layers %d --prompt %d --decode %d --threads %d",
                    script, layers, prompt, decode, threads);
          printf ("transformers: %s\n", cmd);
          fflush (stdout);
          int rc = system (cmd);
          if (rc != 0)
            printf ("transformers: exit status %d\n", rc);
        }
    }
  return 0;
}
