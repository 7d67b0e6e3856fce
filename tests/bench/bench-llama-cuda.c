/* bench-llama-cuda.c: the LLaMA-2 decoder on the CUDA backend at the 7B widths
 * with seeded random weights (issue #13; generated in f16 as a checkpoint
 * stores them, ds_llama_new_random_stored, then in the backend's dtype): one
 * prefill, then decode
 * steps as ds_llama_generate runs them (forward of one token, logits
 * downloaded, argmax), each timed; the median step as tokens/s and as the
 * bandwidth it implies (every parameter read once per token, plus the KV
 * cache rows the step's attention reads), and peak device memory. Then
 * LLaVA-1.5's vision tower, CLIP ViT-L/14-336 (seeded random weights, one
 * 336x336 image, the 23 layers up to hidden state -2): the median of 10
 * forwards after one warm-up.
 *
 *   bench-llama-cuda [--layers 32] [--prompt 512] [--decode 64] [--dtype f16|bf16|f32]
 *                    [--vision-layers N: the tower cut to N layers, 0: not run]
 *                    [--with-sd]
 *
 * --with-sd first opens SD 2.1-base's configuration with seeded weights on
 * the same backend (ds_pipeline_open_random: VAE, text encoder, UNet) and
 * runs what the explorer asks of it once (a 512x512 image, a prompt, the
 * first up block's probes and their attention maps at t = 100), and keeps it
 * open while LLaMA and the vision tower run, as the explorer holds both: the
 * peak device memory printed at the end is then that of SD and LLaVA
 * together (issue #13: under 24 GB at 32 layers).
 *
 * The decode steps run twice from the same prefill: recorded as a CUDA graph
 * and replayed (ds-llama.c; the first two steps eager and recording), then
 * eagerly (DS_CUDA_GRAPHS=0): the launch overhead a graph saves is the
 * difference of the two medians.
 * Without a GPU it says so and exits 0 (a benchmark, not a test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "ds-clip-vision.h"
#include "ds-cuda.h"
#include "ds-llama.h"
#include "ds-pipeline.h"
#include "ds-test-sd21.h"

#include <cuda_runtime.h>

/* The most device memory seen in use (cudaMemGetInfo: weights, arenas,
 * scratch, the CUDA context), sampled after each stage. */
static size_t peak_device;

static void
note_memory (void)
{
  size_t used, total;
  if (ds_cuda_memory_in_use (&used, &total) == 0 && used > peak_device)
    peak_device = used;
}

/* CLIP ViT-L/14-336 on be (`layers` of them when > 0, e.g. to check the
 * benchmark on the emulator): the median ms of 10 forwards of one image. */
static DsStatus
bench_vision (DsBackend *be, int layers, double *median_ms, DsError *err)
{
  DsClipVisionConfig cfg;
  ds_clip_vision_config_l14_336 (&cfg);
  if (layers > 0)
    cfg.num_hidden_layers = layers;
  DsClipVision *vt = NULL;
  DsArena a = { 0 };
  DsTensor px = { 0 }, out = { 0 };
  double ms[10];
  DsStatus st = ds_clip_vision_new_random (&cfg, 11, be, &vt, err);
  if (st == DS_OK)
    st = ds_backend_arena_init (be, &a, ds_clip_vision_arena_bytes (vt, 1), err);
  if (st == DS_OK)
    st = ds_tensor_alloc (&px, DS_DTYPE_F32, 4,
                          (int64_t[]){ 1, cfg.num_channels, cfg.image_size, cfg.image_size },
                          err);
  if (st == DS_OK)
    st = be->tensor_alloc (be, &out, be->act_dtype, 3,
                           (int64_t[]){ 1, ds_clip_vision_n_tokens (vt), cfg.hidden_size }, err);
  for (int64_t i = 0; st == DS_OK && i < ds_tensor_numel (&px); i++)
    ds_tensor_f32 (&px)[i] = (float) ((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  for (int r = -1; st == DS_OK && r < 10; r++)
    {
      const double t0 = bench_now_ms ();
      st = ds_clip_vision_forward (vt, be, &a, &px, &out, err);
      if (st == DS_OK)
        st = be->synchronize (be, err);
      if (r >= 0)
        ms[r] = bench_now_ms () - t0;
    }
  note_memory ();
  if (st == DS_OK)
    {
      bench_sort (ms, 10);
      *median_ms = ms[5];
    }
  if (out.data)
    be->tensor_free (be, &out);
  ds_tensor_free (&px);
  ds_backend_arena_free (be, &a);
  ds_clip_vision_free (vt);
  return st;
}

/* SD 2.1-base (seeded) opened on be and run once as the explorer runs it:
 * features of the first up block's probes with their attention maps. */
static DsStatus
open_sd (DsBackend *be, DsPipeline **out, DsError *err)
{
  DsModelDir dir;
  ds_test_sd21_configs (&dir);
  const double t0 = bench_now_ms ();
  DsStatus st = ds_pipeline_open_random (&dir, 1, DS_RESOURCES_DIR, be, out, err);
  if (st != DS_OK)
    return st;
  const DsProbeList *probes = NULL;
  if ((st = ds_pipeline_probes (*out, 512, &probes, err)) != DS_OK)
    return st;
  bool *want = calloc ((size_t) probes->n, sizeof *want);
  DsImage img = { 512, 512, malloc (512 * 512 * 3) };
  if (!want || !img.rgb)
    {
      free (want);
      free (img.rgb);
      return ds_error_set (err, DS_ERR_NOMEM, "out of host memory");
    }
  int n_want = 0;
  for (int i = 0; i < probes->n; i++)
    if (strncmp (probes->probes[i].name, "U-L1-", 5) == 0)
      want[i] = true, n_want++;
  for (int i = 0; i < 512 * 512 * 3; i++)
    img.rgb[i] = (uint8_t) ((i * 2654435761u) >> 24);
  DsFeatureRequest req = { .image = &img, .size = 512, .prompt = "a red disc above a green "
                           "triangle", .uncond_prompt = "", .t = 100, .seed = 1, .want = want };
  DsFeatures f = { 0 };
  st = ds_pipeline_features (*out, &req, &f, err);
  if (st == DS_OK)
    st = be->synchronize (be, err);
  if (st == DS_OK)
    printf ("SD 2.1-base (seeded) opened and run once on the same device in %.1f s: %d "
            "probes of U-L1 with their maps\n",
            (bench_now_ms () - t0) / 1e3, n_want);
  note_memory ();
  ds_features_free (&f);
  free (want);
  free (img.rgb);
  return st;
}

int
main (int argc, char **argv)
{
  int layers = 32, prompt = 512, decode = 64, vision_layers = -1;
  bool with_sd = false;
  DsDType dt = DS_DTYPE_F16;
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--layers") && i + 1 < argc)
        layers = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--prompt") && i + 1 < argc)
        prompt = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--decode") && i + 1 < argc)
        decode = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--vision-layers") && i + 1 < argc)
        vision_layers = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--with-sd"))
        with_sd = true;
      else if (!strcmp (argv[i], "--dtype") && i + 1 < argc)
        {
          const char *s = argv[++i];
          dt = !strcmp (s, "f32")    ? DS_DTYPE_F32
               : !strcmp (s, "bf16") ? DS_DTYPE_BF16
                                     : DS_DTYPE_F16;
        }
      else
        {
          fprintf (stderr,
                   "usage: %s [--layers N] [--prompt N] [--decode N] [--dtype f16|bf16|f32] "
                   "[--vision-layers N (0: none)] [--with-sd]\n",
                   argv[0]);
          return 2;
        }
    }
  if (layers < 0 || prompt < 1 || decode < 1)
    return 2;
  DsError err = { 0 };
  DsBackend *be = ds_backend_cuda_new (0, dt, &err);
  if (!be)
    {
      printf ("no CUDA backend (%s): nothing to measure\n", err.message);
      return 0;
    }
  DsLlamaConfig cfg;
  ds_llama_config_default (&cfg); /* LLaMA-2 7B: 4096, 32 x 32 heads of 128, 11008, 32000 */
  cfg.num_hidden_layers = layers;
  cfg.max_position_embeddings = 4096;
  if (prompt + decode > cfg.max_position_embeddings)
    {
      fprintf (stderr, "prompt + decode must be <= %d\n", cfg.max_position_embeddings);
      return 2;
    }
  printf ("%s, computing in %s; LLaMA-2 7B widths, %d layers, prompt %d, %d decode steps\n",
          be->name, ds_dtype_name (dt), layers, prompt, decode);
  DsLlama *m = NULL;
  DsLlamaCache *kv = NULL;
  DsArena a = { 0 };
  DsTensor logits = { 0 };
  const int64_t V = cfg.vocab_size;
  int32_t *ids = malloc ((size_t) (prompt + decode) * sizeof *ids);
  float *host = malloc ((size_t) V * sizeof *host);
  double *step = malloc ((size_t) decode * 2 * sizeof *step);
  DsPipeline *sd = NULL;
  DsStatus st = with_sd ? open_sd (be, &sd, &err) : DS_OK;
  double t0 = bench_now_ms ();
  if (st == DS_OK)
    st = ds_llama_new_random_stored (&cfg, 7, DS_DTYPE_F16, be, &m, &err);
  const double t_load = bench_now_ms () - t0;
  if (st == DS_OK)
    st = ds_llama_cache_new (m, prompt + decode, &kv, &err);
  if (st == DS_OK)
    {
      size_t bytes = ds_llama_arena_bytes (m, prompt, 1), b1 = ds_llama_arena_bytes (m, 1, 1);
      st = ds_backend_arena_init (be, &a, bytes > b1 ? bytes : b1, &err);
    }
  if (st == DS_OK)
    st = be->tensor_alloc (be, &logits, dt, 2, (int64_t[]){ 1, V }, &err);
  for (int i = 0; i < prompt; i++)
    ids[i] = (int32_t) ((i * 7919 + 13) % V);
  double t_prefill = 0;
  if (st == DS_OK)
    {
      DsLlamaInput in = { .ids = ids, .n = prompt };
      t0 = bench_now_ms ();
      st = ds_llama_forward (m, &a, kv, &in, &logits, &err);
      if (st == DS_OK)
        st = ds_backend_download_f32 (be, &logits, host, &err);
      t_prefill = bench_now_ms () - t0;
    }
  /* steps with graphs into step[decode ..), then eagerly into step[0 ..) */
  const int32_t first = st == DS_OK ? ds_llama_argmax (host, V) : 0;
  uint64_t launches = 0;
  for (int mode = 0; mode < 2 && st == DS_OK; mode++)
    {
      double *times = mode == 0 ? step + decode : step;
      if (mode == 1)
        setenv ("DS_CUDA_GRAPHS", "0", 1);
      ds_llama_cache_truncate (kv, prompt);
      const uint64_t launches0 = be->n_graph_launches;
      for (int t = 0; st == DS_OK && t < decode; t++)
        {
          ids[prompt + t] = t == 0 ? first : ds_llama_argmax (host, V);
          DsLlamaInput in = { .ids = ids + prompt + t, .n = 1 };
          t0 = bench_now_ms ();
          st = ds_llama_forward (m, &a, kv, &in, &logits, &err);
          if (st == DS_OK)
            st = ds_backend_download_f32 (be, &logits, host, &err);
          times[t] = bench_now_ms () - t0;
        }
      if (mode == 0)
        launches = be->n_graph_launches - launches0;
      bench_sort (times, decode);
    }
  unsetenv ("DS_CUDA_GRAPHS");
  if (st != DS_OK)
    fprintf (stderr, "bench-llama-cuda: %s\n", err.message);
  else
    {
      const double eager = step[decode / 2];
      memmove (step, step + decode, (size_t) decode * sizeof *step);
      const double med = step[decode / 2];
      const double wbytes = (double) ds_llama_n_params (m) * ds_dtype_size (dt);
      /* keys and values of every layer at the middle step's position */
      const double kvbytes = 2.0 * layers * (prompt + decode / 2)
                             * cfg.num_key_value_heads * cfg.head_dim * ds_dtype_size (dt);
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo (&free_b, &total_b);
      note_memory ();
      printf ("weights: %.2f GB generated and uploaded in %.1f s\n", wbytes / 1e9, t_load / 1e3);
      printf ("prefill %d tokens: %.1f ms (%.0f tokens/s)\n", prompt, t_prefill,
              prompt / (t_prefill / 1e3));
      printf ("decode: median %.3f ms/token (min %.3f, max %.3f) = %.1f tokens/s, "
              "%.0f GB/s of weights + KV cache\n",
              med, step[0], step[decode - 1], 1e3 / med, (wbytes + kvbytes) / (med / 1e3) / 1e9);
      printf ("decode as a CUDA graph: %llu of %d steps replayed; eagerly the median step takes "
              "%.3f ms (%.1f tokens/s)\n",
              (unsigned long long) launches, decode, eager, 1e3 / eager);
      printf ("device memory in use: %.2f GiB of %.2f GiB\n",
              (double) (total_b - free_b) / (1 << 30), (double) total_b / (1 << 30));
    }
  /* the vision tower while the decoder (and SD) stay loaded, as in the explorer */
  double vision_ms = 0;
  if (st == DS_OK && vision_layers != 0
      && (st = bench_vision (be, vision_layers, &vision_ms, &err)) == DS_OK)
    printf ("CLIP ViT-L/14-336 vision tower%s, one image: median %.2f ms of 10\n",
            vision_layers > 0 ? " (cut to --vision-layers)" : "", vision_ms);
  else if (st != DS_OK)
    fprintf (stderr, "bench-llama-cuda: %s\n", err.message);
  if (st == DS_OK)
    printf ("peak device memory in use: %.2f GiB (%s LLaMA at %d layers, its cache and arena, "
            "the vision tower, scratch and the CUDA context)\n",
            (double) peak_device / (1 << 30), sd ? "SD 2.1-base with its arena and caches," : "",
            layers);
  if (logits.data)
    be->tensor_free (be, &logits);
  ds_backend_arena_free (be, &a);
  ds_llama_cache_free (kv);
  ds_llama_free (m);
  ds_pipeline_free (sd);
  ds_backend_free (be);
  free (ids);
  free (host);
  free (step);
  return st == DS_OK ? 0 : 1;
}
