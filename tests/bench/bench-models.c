/* bench-models: wall-clock medians of the model forwards at the real SD
 * 2.1-base configs (random weights generated in the engine, 512² image,
 * 77-token prompts).
 *
 *   build/tests/bench/bench-models [--runs N] [--warmup N] [--backend cpu|cuda]
 *       [--dtype f32|f16|bf16] [--only WHAT[,WHAT...]]
 *   WHAT: text, vae, unet, unet-l1, unet-maps (default: all five)
 *
 * Measures, each after warm-up, with the backend synchronised at the end of
 * every run: the text encoder (batch 2), the VAE encoder (one 512² image), the
 * UNet full forward (batch 2 [uncond, cond]), the UNet up to the U-L1 probes
 * (stops after U-L1-R2-B0-Cross-Q, as the paper's features need), and the UNet
 * full forward keeping every cross-attention map (the 16 per-head softmax
 * maps are computed into device memory and handed to the probe sink, which
 * keeps nothing: the cost of making them available). Then the peak device
 * memory (CUDA: in use per cudaMemGetInfo after each measurement, context
 * included) and the activation arena's size. CUDA defaults to f16, the CPU
 * to f32.
 *
 * Prints one line per measurement: name, median ms, min ms, runs, and how the
 * timed runs went: "replayed" when each launched a recording and issued no op
 * (ds-graph.h), else "eager, N ops"; on the CUDA emulator, also the device
 * operations (kernels, GEMMs, convolutions, copies) per run. Not a test:
 * timings never gate anything; BENCHMARKS.md records them with the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-util.h"

#include "ds-nn.h"
#include "ds-probes.h"
#include "ds-test-sd21.h"
#include "ds-text-encoder.h"
#include "ds-unet.h"
#include "ds-vae.h"
#ifdef DS_HAVE_CUDA
#include "ds-cuda.h"
#endif
#ifdef DS_CUDA_EMU
#include <cuda_runtime.h> /* the emulator's: ds_emu_work_count */
#endif

#define MAX_RUNS 200


static const DsVaeConfig sd21_vae = {
  .in_channels = 3, .latent_channels = 4, .n_levels = 4,
  .block_out_channels = { 128, 256, 512, 512 }, .layers_per_block = 2, .norm_num_groups = 32,
  .scaling_factor = 0.18215f, .use_quant_conv = true, .mid_block_add_attention = true,
};
static const DsTextEncoderConfig sd21_text = {
  .vocab_size = 49408, .hidden_size = 1024, .intermediate_size = 4096, .num_attention_heads = 16,
  .num_hidden_layers = 23, .max_position_embeddings = 77, .hidden_act = DS_ACT_GELU,
  .layer_norm_eps = 1e-5f,
};

typedef struct {
  DsBackend *be;
  bool cuda;
  DsArena arena;
  DsUnet *unet;
  DsVae *vae;
  DsTextEncoder *te;
  DsTensor x, ctx, px, lat, text_out;
  const DsProbeSink *sink;
  int32_t ids[2 * 77];
  size_t peak_device;
} Bench;

typedef DsStatus (*RunFn) (Bench *b, DsError *err);

static void
note_memory (Bench *b)
{
#ifdef DS_HAVE_CUDA
  size_t used, total;
  if (b->cuda && ds_cuda_memory_in_use (&used, &total) == 0 && used > b->peak_device)
    b->peak_device = used;
#endif
}

/* Whether the comma-separated list `only` (NULL: everything) names `what`. */
static bool
wanted (const char *only, const char *what)
{
  if (!only)
    return true;
  const size_t n = strlen (what);
  for (const char *p = only; *p;)
    {
      const char *end = strchr (p, ',');
      const size_t len = end ? (size_t) (end - p) : strlen (p);
      if (len == n && !strncmp (p, what, n))
        return true;
      p += len + (end != NULL);
    }
  return false;
}

/* target_ms: docs/design.md's GPU target for the measurement, printed beside a
 * CUDA result (0: none). */
static bool
measure (const char *name, double target_ms, RunFn fn, Bench *b, int warmup, int runs)
{
  DsError err = { 0 };
  double t[MAX_RUNS];
  uint64_t ops0 = 0, launches0 = 0;
#ifdef DS_CUDA_EMU
  unsigned long long work0 = 0;
#endif
  for (int i = 0; i < warmup + runs; i++)
    {
      if (i == warmup)
        {
#ifdef DS_CUDA_EMU
          work0 = ds_emu_work_count ();
#endif
          ops0 = b->be->n_ops, launches0 = b->be->n_graph_launches;
          if (ds_op_profiling ())
            ds_op_profile_reset (b->be); /* the profile covers the timed runs only */
        }
      double t0 = bench_now_ms ();
      DsStatus st = fn (b, &err);
      if (st == DS_OK)
        st = b->be->synchronize (b->be, &err);
      if (st != DS_OK)
        {
          fprintf (stderr, "%s: %s\n", name, err.message);
          return false;
        }
      if (i >= warmup)
        t[i - warmup] = bench_now_ms () - t0;
    }
  bench_sort (t, runs);
  const uint64_t ops = b->be->n_ops - ops0, launches = b->be->n_graph_launches - launches0;
  char how[64];
  if (ops == 0 && launches == (uint64_t) runs)
    snprintf (how, sizeof how, "replayed");
  else if (launches == 0)
    snprintf (how, sizeof how, "eager, %llu ops", (unsigned long long) (ops / (uint64_t) runs));
  else
    snprintf (how, sizeof how, "%llu ops, %llu launches in all", (unsigned long long) ops,
              (unsigned long long) launches);
  printf ("%-40s median %9.2f ms   min %9.2f ms   runs %d   %s", name, t[runs / 2], t[0], runs,
          how);
#ifdef DS_CUDA_EMU /* what a GPU would be handed per run, counted by the emulator */
  if (b->cuda)
    printf (", %llu device operations", (ds_emu_work_count () - work0) / (unsigned long long) runs);
#endif
  if (b->cuda && target_ms > 0)
    printf ("   target <= %g ms: %s", target_ms, t[runs / 2] <= target_ms ? "met" : "missed");
  printf ("\n");
  fflush (stdout);
  note_memory (b);
  return true;
}

static DsStatus
run_unet (Bench *b, DsError *err)
{
  float ts[2] = { 50, 50 };
  ds_arena_reset (&b->arena);
  return ds_unet_forward (b->unet, b->be, &b->arena, &b->x, ts, &b->ctx, b->sink, NULL, err);
}

static DsStatus
run_vae (Bench *b, DsError *err)
{
  ds_arena_reset (&b->arena);
  return ds_vae_encode (b->vae, b->be, &b->arena, &b->px, &b->lat, err);
}

static DsStatus
run_text (Bench *b, DsError *err)
{
  ds_arena_reset (&b->arena);
  return ds_text_encoder_forward (b->te, b->be, &b->arena, b->ids, 2, &b->text_out, err);
}

static DsStatus
discard (void *user, int index, const DsTensor *t, DsError *err)
{
  return DS_OK;
}

/* A tensor in the backend's dtype on its device, filled with values in
 * [-1, 1) from seed (seed 0: left as allocated). */
static DsStatus
input (DsBackend *be, DsTensor *t, int ndim, const int64_t *shape, uint64_t seed, DsError *err)
{
  DsStatus st = be->tensor_alloc (be, t, be->act_dtype, ndim, shape, err);
  if (st || !seed)
    return st;
  int64_t n = ds_tensor_numel (t);
  float *p = malloc ((size_t) n * sizeof *p);
  if (!p)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      p[i] = (float) ((seed >> 40) / (double) (1 << 24)) * 2.0f - 1.0f;
    }
  st = ds_backend_upload_f32 (be, t, p, err);
  free (p);
  return st;
}

/* A sink wanting the probes for which `pick` says yes; the forward stops after
 * the last of them. want is calloc'ed for the caller to free. */
static DsProbeSink
sink_for (const DsProbeList *list, bool (*pick) (const DsProbeInfo *), bool **want)
{
  DsProbeSink s = { .last = -1, .emit = discard };
  *want = calloc ((size_t) list->n, 1);
  for (int i = 0; i < list->n; i++)
    if (pick (&list->probes[i]))
      (*want)[i] = true, s.last = i;
  s.want = *want;
  return s;
}

static bool
pick_l1 (const DsProbeInfo *p)
{
  return !strcmp (p->name, "U-L1-R1-B0-Cross-Q") || !strcmp (p->name, "U-L1-R2-B0-Cross-Q");
}

static bool
pick_cross_maps (const DsProbeInfo *p)
{
  return p->kind == DS_PROBE_CROSS_MAP;
}

static int
usage (void)
{
  fprintf (stderr, "usage: bench-models [--runs N] [--warmup N] [--backend cpu|cuda] "
                   "[--dtype f32|f16|bf16] [--only WHAT[,WHAT...]]\n"
                   "  WHAT: text, vae, unet, unet-l1, unet-maps\n");
  return 2;
}

int
main (int argc, char **argv)
{
  int runs = 3, warmup = 2; /* on CUDA the first run is eager, the second records */
  const char *only = NULL, *backend = "cpu", *dtype = NULL;
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--runs") && i + 1 < argc)
        runs = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--warmup") && i + 1 < argc)
        warmup = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--only") && i + 1 < argc)
        only = argv[++i];
      else if (!strcmp (argv[i], "--backend") && i + 1 < argc)
        backend = argv[++i];
      else if (!strcmp (argv[i], "--dtype") && i + 1 < argc)
        dtype = argv[++i];
      else
        return usage ();
    }
  if (runs < 1 || runs > MAX_RUNS || warmup < 0)
    return usage ();
  Bench b = { .cuda = !strcmp (backend, "cuda") };
  if (!b.cuda && strcmp (backend, "cpu"))
    return usage ();
  DsDType dt = b.cuda ? DS_DTYPE_F16 : DS_DTYPE_F32;
  if (dtype)
    {
      if (!strcmp (dtype, "f32"))
        dt = DS_DTYPE_F32;
      else if (!strcmp (dtype, "f16"))
        dt = DS_DTYPE_F16;
      else if (!strcmp (dtype, "bf16"))
        dt = DS_DTYPE_BF16;
      else
        return usage ();
    }
  DsError err = { 0 };
  const DsUnetConfig unet_cfg = ds_test_sd21_unet_config ();
#ifdef DS_HAVE_CUDA
  b.be = b.cuda ? ds_backend_cuda_new (0, dt, &err) : ds_backend_cpu_new (&err);
#else
  if (b.cuda)
    {
      fprintf (stderr, "bench-models: built without CUDA\n");
      return 2;
    }
  b.be = ds_backend_cpu_new (&err);
#endif
  if (!b.be)
    goto fail;
  if (b.be->act_dtype != dt)
    {
      fprintf (stderr, "bench-models: the %s backend computes in %s only\n", b.be->name,
               ds_dtype_name (b.be->act_dtype));
      return 2;
    }
  printf ("# backend %s, %s; SD 2.1-base configs, random weights; 512x512 image, batch 2 "
          "[uncond, cond]\n", b.be->name, ds_dtype_name (dt));
#ifdef DS_HAVE_CUDA
  if (b.cuda)
    printf ("# convolutions: %s; attention: %s; CUDA graphs: %s\n",
            ds_cuda_backend_conv_path (b.be),
            getenv ("DS_CUDA_FLASH") && !strcmp (getenv ("DS_CUDA_FLASH"), "0")
              ? "materialised (DS_CUDA_FLASH=0)" : "fused where f16/bf16 and head size 64",
            getenv ("DS_CUDA_GRAPHS") && !strcmp (getenv ("DS_CUDA_GRAPHS"), "0")
              ? "off (DS_CUDA_GRAPHS=0)" : "forwards recorded and replayed");
#endif

  size_t arena = 0;
  const bool want_unet = wanted (only, "unet") || wanted (only, "unet-l1")
                         || wanted (only, "unet-maps");
  if (want_unet)
    {
      if (ds_unet_new_random (&unet_cfg, 1, b.be, &b.unet, &err))
        goto fail;
      if (input (b.be, &b.x, 4, (int64_t[]){ 2, 4, 64, 64 }, 1, &err)
          || input (b.be, &b.ctx, 3, (int64_t[]){ 2, 77, 1024 }, 2, &err))
        goto fail;
    }
  if (wanted (only, "vae"))
    {
      if (ds_vae_new_random (&sd21_vae, 3, b.be, &b.vae, &err))
        goto fail;
      if (input (b.be, &b.px, 4, (int64_t[]){ 1, 3, 512, 512 }, 3, &err)
          || input (b.be, &b.lat, 4, (int64_t[]){ 1, 4, 64, 64 }, 0, &err))
        goto fail;
      size_t s = ds_vae_arena_bytes (b.vae, 1, 512, 512);
      arena = s > arena ? s : arena;
    }
  if (wanted (only, "text"))
    {
      if (ds_text_encoder_new_random (&sd21_text, 4, b.be, &b.te, &err))
        goto fail;
      if (input (b.be, &b.text_out, 3, (int64_t[]){ 2, 77, 1024 }, 0, &err))
        goto fail;
      for (int i = 0; i < 2 * 77; i++)
        b.ids[i] = i % 77 == 0 ? 49406 : (i % 77 < 8 ? 320 + 17 * i : 49407);
      size_t s = ds_text_encoder_arena_bytes (b.te, 2);
      arena = s > arena ? s : arena;
    }

  DsProbeList list = { 0 };
  bool *want_l1 = NULL, *want_maps = NULL;
  DsProbeSink sink_l1 = { .last = -1 }, sink_maps = { .last = -1 };
  if (want_unet)
    {
      if (ds_probe_list_build (&unet_cfg, 64, 64, 77, &list, &err))
        goto fail;
      sink_l1 = sink_for (&list, pick_l1, &want_l1);
      sink_maps = sink_for (&list, pick_cross_maps, &want_maps);
      const DsProbeSink *sinks[] = { NULL, &sink_l1, &sink_maps };
      for (int i = 0; i < 3; i++)
        {
          size_t s = ds_unet_arena_bytes (b.unet, 2, 64, 64, 77, sinks[i]);
          arena = s > arena ? s : arena;
        }
    }
  if (ds_backend_arena_init (b.be, &b.arena, arena, &err))
    goto fail;
  printf ("# activation arena %.0f MiB\n", arena / 1048576.0);
  note_memory (&b);

  if (b.te)
    measure ("text encoder, batch 2", 2, run_text, &b, warmup, runs);
  if (b.vae)
    measure ("VAE encoder, 512x512", 5, run_vae, &b, warmup, runs);
  if (b.unet && wanted (only, "unet"))
    measure ("UNet full, batch 2", 8, run_unet, &b, warmup, runs);
  if (b.unet && wanted (only, "unet-l1"))
    {
      b.sink = &sink_l1;
      measure ("UNet to U-L1 probes, batch 2", 5, run_unet, &b, warmup, runs);
    }
  if (b.unet && wanted (only, "unet-maps"))
    {
      b.sink = &sink_maps;
      measure ("UNet full + all cross-attn maps, batch 2", 9, run_unet, &b, warmup, runs);
    }
  b.sink = NULL;
  if (b.be->n_graph_failures)
    printf ("# %llu recordings failed on the device: those forwards ran eagerly\n",
            (unsigned long long) b.be->n_graph_failures);
  printf ("# peak arena use %.0f MiB\n", b.arena.peak / 1048576.0);
  if (b.cuda)
    printf ("# peak device memory in use %.0f MiB (weights, arena, scratch, CUDA context)\n",
            b.peak_device / 1048576.0);
#ifdef DS_HAVE_CUDA
  if (b.cuda)
    {
      DsCudaConvStats cs;
      ds_cuda_backend_conv_stats (b.be, &cs);
      printf ("# convolution calls (eager and recorded runs): %lld by cuDNN, %lld by GEMMs%s%s\n",
              (long long) cs.cudnn, (long long) cs.gemm,
              cs.last_refusal[0] ? "; cuDNN last passed over: " : "", cs.last_refusal);
    }
#endif

  free (want_l1);
  free (want_maps);
  ds_probe_list_free (&list);
  ds_unet_free (b.unet);
  ds_vae_free (b.vae);
  ds_text_encoder_free (b.te);
  ds_backend_arena_free (b.be, &b.arena);
  DsTensor *inputs[] = { &b.x, &b.ctx, &b.px, &b.lat, &b.text_out };
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
    if (inputs[i]->data)
      b.be->tensor_free (b.be, inputs[i]);
  ds_backend_free (b.be); /* prints the op profile with DIFFSCOPE_PROFILE=1: the timed
                             runs of the last measurement */
  return 0;

fail:
  fprintf (stderr, "bench-models: %s\n", err.message);
  return 1;
}
