/* bench-models: wall-clock medians of the model forwards at the real SD
 * 2.1-base configs (random weights generated in the engine, 512² image,
 * 77-token prompts), on the CPU backend.
 *
 *   build/tests/bench/bench-models [--runs N] [--warmup N] [--only unet|vae|text|unet-l1]
 *                                  [--backend cpu|cuda]   (cuda when built with it)
 *
 * Prints one line per measurement: name, median ms, min ms, runs. Not a test:
 * timings never gate anything; BENCHMARKS.md records them with the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds-nn.h"
#include "ds-probes.h"
#include "ds-text-encoder.h"
#include "ds-unet.h"
#include "ds-vae.h"
#include "ds-test-sd21.h"
#ifdef DS_HAVE_CUDA
#include "ds-cuda.h"
#endif

static double
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

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

typedef DsStatus (*RunFn) (void *ctx, DsError *err);

static void
measure (const char *name, RunFn fn, void *ctx, int warmup, int runs)
{
  DsError err = { 0 };
  double t[64];
  for (int i = 0; i < warmup; i++)
    if (fn (ctx, &err))
      {
        fprintf (stderr, "%s: %s\n", name, err.message);
        return;
      }
  for (int i = 0; i < runs; i++)
    {
      double t0 = now_ms ();
      if (fn (ctx, &err))
        {
          fprintf (stderr, "%s: %s\n", name, err.message);
          return;
        }
      t[i] = now_ms () - t0;
    }
  qsort (t, (size_t) runs, sizeof t[0], cmp_double);
  printf ("%-34s median %10.1f ms   min %10.1f ms   runs %d\n", name, t[runs / 2], t[0], runs);
  fflush (stdout);
}

typedef struct {
  DsBackend *be;
  DsArena arena;
  DsUnet *unet;
  DsVae *vae;
  DsTextEncoder *te;
  DsTensor x, ctx, px, lat, text_out;
  const DsProbeSink *sink;
  int32_t ids[2 * 77];
} Bench;

static DsStatus
run_unet (void *p, DsError *err)
{
  Bench *b = p;
  float ts[2] = { 50, 50 };
  ds_arena_reset (&b->arena);
  DsStatus st = ds_unet_forward (b->unet, b->be, &b->arena, &b->x, ts, &b->ctx, b->sink, NULL, err);
  return st ? st : b->be->synchronize (b->be, err);
}

static DsStatus
run_vae (void *p, DsError *err)
{
  Bench *b = p;
  ds_arena_reset (&b->arena);
  DsStatus st = ds_vae_encode (b->vae, b->be, &b->arena, &b->px, &b->lat, err);
  return st ? st : b->be->synchronize (b->be, err);
}

static DsStatus
run_text (void *p, DsError *err)
{
  Bench *b = p;
  ds_arena_reset (&b->arena);
  DsStatus st = ds_text_encoder_forward (b->te, b->be, &b->arena, b->ids, 2, &b->text_out, err);
  return st ? st : b->be->synchronize (b->be, err);
}

static DsStatus
discard (void *user, int index, const DsTensor *t, DsError *err)
{
  return DS_OK;
}

/* A tensor on the backend's device, filled with values in [-1, 1) from seed
 * (seed 0: left as allocated). */
static DsStatus
input (DsBackend *be, DsTensor *t, int ndim, const int64_t *shape, uint64_t seed, DsError *err)
{
  DsStatus st = be->tensor_alloc (be, t, DS_DTYPE_F32, ndim, shape, err);
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
  st = be->upload (be, t, p, err);
  free (p);
  return st;
}

int
main (int argc, char **argv)
{
  int runs = 3, warmup = 1;
  const char *only = NULL, *backend = "cpu";
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
      else
        {
          fprintf (stderr, "usage: bench-models [--runs N] [--warmup N] [--only unet|unet-l1|vae|text]\n");
          return 2;
        }
    }
  if (runs < 1 || runs > 64)
    runs = 3;
  DsError err = { 0 };
  Bench b = { 0 };
  const DsUnetConfig unet_cfg = ds_test_sd21_unet_config ();
  bool cuda = !strcmp (backend, "cuda");
#ifdef DS_HAVE_CUDA
  b.be = cuda ? ds_backend_cuda_new (0, &err) : ds_backend_cpu_new (&err);
#else
  if (cuda)
    {
      fprintf (stderr, "bench-models: built without CUDA\n");
      return 2;
    }
  b.be = ds_backend_cpu_new (&err);
#endif
  if (!b.be)
    goto fail;
  printf ("# backend %s; SD 2.1-base configs, random weights; 512x512 image, batch 2 "
          "[uncond, cond]\n", b.be->name);

  size_t arena = 0;
  bool want_unet = !only || !strncmp (only, "unet", 4);
  if (want_unet)
    {
      if (ds_unet_new_random (&unet_cfg, 1, b.be, &b.unet, &err))
        goto fail;
      if (input (b.be, &b.x, 4, (int64_t[]){ 2, 4, 64, 64 }, 1, &err)
          || input (b.be, &b.ctx, 3, (int64_t[]){ 2, 77, 1024 }, 2, &err))
        goto fail;
      size_t s = ds_unet_arena_bytes (b.unet, 2, 64, 64, 77, NULL);
      arena = s > arena ? s : arena;
    }
  if (!only || !strcmp (only, "vae"))
    {
      if (ds_vae_new_random (&sd21_vae, 3, b.be, &b.vae, &err))
        goto fail;
      if (input (b.be, &b.px, 4, (int64_t[]){ 1, 3, 512, 512 }, 3, &err)
          || input (b.be, &b.lat, 4, (int64_t[]){ 1, 4, 64, 64 }, 0, &err))
        goto fail;
      size_t s = ds_vae_arena_bytes (b.vae, 1, 512, 512);
      arena = s > arena ? s : arena;
    }
  if (!only || !strcmp (only, "text"))
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
#ifdef DS_HAVE_CUDA
  if (cuda ? ds_cuda_arena_init (&b.arena, arena, &err) : ds_arena_init (&b.arena, arena, &err))
    goto fail;
#else
  if (ds_arena_init (&b.arena, arena, &err))
    goto fail;
#endif
  printf ("# arena %.0f MiB\n", arena / 1048576.0);

  if (b.te)
    measure ("text encoder, batch 2", run_text, &b, warmup, runs);
  if (b.vae)
    measure ("VAE encoder, 512x512", run_vae, &b, warmup, runs);
  if (b.unet && (!only || !strcmp (only, "unet-l1")))
    {
      /* Up to the U-L1 probes: the deepest of the paper's U-L1 features. */
      DsProbeList list;
      ds_probe_list_build (&unet_cfg, 64, 64, 77, &list, &err);
      bool *want = calloc ((size_t) list.n, 1);
      int last = ds_probe_list_find (&list, "U-L1-R2-B0-Cross-Q");
      want[ds_probe_list_find (&list, "U-L1-R1-B0-Cross-Q")] = want[last] = true;
      DsProbeSink sink = { .want = want, .last = last, .emit = discard };
      b.sink = &sink;
      measure ("UNet to U-L1 probes, batch 2", run_unet, &b, warmup, runs);
      b.sink = NULL;
      free (want);
      ds_probe_list_free (&list);
    }
  if (b.unet && (!only || !strcmp (only, "unet")))
    measure ("UNet full, batch 2", run_unet, &b, warmup, runs);
  printf ("# peak arena use %.0f MiB\n", b.arena.peak / 1048576.0);
  ds_unet_free (b.unet);
  ds_vae_free (b.vae);
  ds_text_encoder_free (b.te);
#ifdef DS_HAVE_CUDA
  if (cuda)
    ds_cuda_arena_free (&b.arena);
  else
#endif
    ds_arena_free (&b.arena);
  DsTensor *inputs[] = { &b.x, &b.ctx, &b.px, &b.lat, &b.text_out };
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
    if (inputs[i]->data)
      b.be->tensor_free (b.be, inputs[i]);
  ds_backend_free (b.be); /* prints the op profile with DIFFSCOPE_PROFILE=1 */
  return 0;

fail:
  fprintf (stderr, "bench-models: %s\n", err.message);
  return 1;
}
