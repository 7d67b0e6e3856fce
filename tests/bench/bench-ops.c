/* bench-ops: one engine op at a time at SD 2.1's shapes (512² image: the UNet
 * at batch 2, the VAE encoder's convolutions, the text encoder's linears), with
 * the rate it reaches: TFLOP/s for GEMM-like ops, GB/s of
 * tensor traffic (bytes read + written once) for the memory-bound ones.
 *
 *   build/tests/bench/bench-ops [--backend cpu|cuda] [--dtype f32|f16|bf16]
 *                               [--runs N] [--warmup N] [--only NAME-PREFIX]
 *
 * Each line: the op and shape, median and min ms over the runs (each run one
 * op call then a synchronize, so launch overhead is in), and the rate at the
 * median. On CUDA both convolution paths (cuDNN, im2col + cuBLAS) and both
 * attention paths (fused, materialised) are measured. Inputs are uniform in
 * [-1, 1). For finding where the UNet's time goes next to DIFFSCOPE_PROFILE,
 * not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-util.h"

#include "ds-ops.h"
#ifdef DS_HAVE_CUDA
#include "ds-cuda.h"
#endif

#define MAX_RUNS 200
#define NDIMS(...) ((int) (sizeof ((int64_t[]){ __VA_ARGS__ }) / sizeof (int64_t)))
#define SHAPE(...) NDIMS (__VA_ARGS__), (int64_t[]){ __VA_ARGS__ }

static DsBackend *be;
static int runs = 20, warmup = 3;
static const char *only;
static uint64_t seed = 1;


/* A backend tensor of the backend's dtype, values in [-1, 1). */
static DsTensor
tensor (int ndim, const int64_t *shape)
{
  DsTensor t;
  DsError err = { 0 };
  if (be->tensor_alloc (be, &t, be->act_dtype, ndim, shape, &err))
    {
      fprintf (stderr, "bench-ops: %s\n", err.message);
      exit (1);
    }
  const int64_t n = ds_tensor_numel (&t);
  float *h = malloc ((size_t) (n ? n : 1) * sizeof *h);
  for (int64_t i = 0; i < n; i++)
    {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      h[i] = (float) ((seed >> 40) / (double) (1 << 24)) * 2.0f - 1.0f;
    }
  if (ds_backend_upload_f32 (be, &t, h, &err))
    {
      fprintf (stderr, "bench-ops: %s\n", err.message);
      exit (1);
    }
  free (h);
  return t;
}

static void
release (DsTensor *t, int n)
{
  for (int i = 0; i < n; i++)
    if (t[i].data)
      be->tensor_free (be, &t[i]);
}

/* Times `c`; flops (0: none) and bytes give the rates. */
static void
run (const char *name, const DsOpCall *c, double flops, double bytes)
{
  if (only && strncmp (name, only, strlen (only)) != 0)
    return;
  DsError err = { 0 };
  double t[MAX_RUNS];
  for (int i = 0; i < warmup + runs; i++)
    {
      double t0 = bench_now_ms ();
      if (ds_op_run (be, c, &err) || be->synchronize (be, &err))
        {
          printf ("%-58s failed: %s\n", name, err.message);
          return;
        }
      if (i >= warmup)
        t[i - warmup] = bench_now_ms () - t0;
    }
  bench_sort (t, runs);
  const double med = t[runs / 2];
  printf ("%-58s median %8.3f ms  min %8.3f ms", name, med, t[0]);
  if (flops > 0)
    printf ("  %7.1f TFLOP/s", flops / (med * 1e-3) / 1e12);
  printf ("  %7.1f GB/s\n", bytes / (med * 1e-3) / 1e9);
  fflush (stdout);
}

static double
bytes_of (const DsTensor *const *ts, int n)
{
  double b = 0;
  for (int i = 0; i < n; i++)
    if (ts[i])
      b += (double) ds_tensor_nbytes (ts[i]);
  return b;
}

static void
bench_linear (const char *name, int64_t m, int64_t k, int64_t n, bool residual)
{
  DsTensor t[4] = { tensor (SHAPE (m, k)), tensor (SHAPE (n, k)), tensor (SHAPE (n)),
                    tensor (SHAPE (m, n)) };
  DsOpCall c = { .op = DS_OP_LINEAR, .src = { &t[0], &t[1], &t[2], residual ? &t[3] : NULL },
                 .dst = &t[3] };
  const DsTensor *io[] = { &t[0], &t[1], &t[3], residual ? &t[3] : NULL };
  run (name, &c, 2.0 * m * n * k, bytes_of (io, 4));
  release (t, 4);
}

static void
bench_conv (const char *name, int64_t nb, int64_t ci, int64_t hw, int64_t co, int k, int stride)
{
  const int pad = k / 2;
  const int64_t ho = ds_conv2d_out_size (hw, k, stride, pad, pad);
  DsTensor t[4] = { tensor (SHAPE (nb, ci, hw, hw)), tensor (SHAPE (co, ci, k, k)),
                    tensor (SHAPE (co)), tensor (SHAPE (nb, co, ho, ho)) };
  DsOpCall c = { .op = DS_OP_CONV2D, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3] };
  c.p.conv2d.stride = stride;
  c.p.conv2d.pad_top = c.p.conv2d.pad_left = c.p.conv2d.pad_bottom = c.p.conv2d.pad_right = pad;
  const DsTensor *io[] = { &t[0], &t[1], &t[3] };
  run (name, &c, 2.0 * nb * co * ho * ho * ci * k * k, bytes_of (io, 3));
  release (t, 4);
}

static void
bench_attention (const char *name, int64_t nb, int64_t nq, int64_t nk, int heads, bool probs)
{
  const int64_t ch = heads * 64;
  DsTensor t[5] = { tensor (SHAPE (nb, nq, ch)), tensor (SHAPE (nb, nk, ch)),
                    tensor (SHAPE (nb, nk, ch)), tensor (SHAPE (nb, nq, ch)),
                    probs ? tensor (SHAPE (nb, heads, nq, nk)) : (DsTensor){ 0 } };
  DsOpCall c = { .op = DS_OP_ATTENTION, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3],
                 .dst2 = probs ? &t[4] : NULL };
  c.p.attention.heads = heads;
  c.p.attention.scale = 0.125f;
  const DsTensor *io[] = { &t[0], &t[1], &t[2], &t[3], probs ? &t[4] : NULL };
  run (name, &c, 4.0 * nb * heads * nq * nk * 64, bytes_of (io, 5));
  release (t, 5);
}

static void
bench_norms (void)
{
  DsTensor x = tensor (SHAPE (2, 320, 64, 64)), y = tensor (SHAPE (2, 320, 64, 64));
  DsTensor g = tensor (SHAPE (320)), b = tensor (SHAPE (320));
  DsOpCall c = { .op = DS_OP_GROUP_NORM, .src = { &x, &g, &b }, .dst = &y };
  c.p.group_norm.groups = 32;
  c.p.group_norm.eps = 1e-5f;
  c.p.group_norm.silu = true;
  const DsTensor *io[] = { &x, &y };
  run ("group_norm+silu [2,320,64,64] 32 groups", &c, 0, bytes_of (io, 2));
  DsTensor tok = ds_tensor_reshape (&x, 3, (int64_t[]){ 2, 4096, 320 });
  DsTensor toky = ds_tensor_reshape (&y, 3, (int64_t[]){ 2, 4096, 320 });
  DsOpCall l = { .op = DS_OP_LAYER_NORM, .src = { &tok, &g, &b }, .dst = &toky };
  l.p.layer_norm.eps = 1e-5f;
  run ("layer_norm [2,4096,320]", &l, 0, bytes_of (io, 2));
  DsTensor xt = ds_tensor_reshape (&x, 3, (int64_t[]){ 2, 320, 4096 });
  DsOpCall p = { .op = DS_OP_PERMUTE, .src = { &xt }, .dst = &toky };
  p.p.permute.perm[0] = 0, p.p.permute.perm[1] = 2, p.p.permute.perm[2] = 1,
  p.p.permute.perm[3] = 3;
  run ("permute [2,320,4096] -> [2,4096,320]", &p, 0, bytes_of (io, 2));
  DsOpCall a = { .op = DS_OP_ADD, .src = { &x, &y }, .dst = &y };
  const DsTensor *io3[] = { &x, &y, &y };
  run ("add [2,320,64,64] in place", &a, 0, bytes_of (io3, 3));
  DsTensor t[4] = { x, y, g, b };
  release (t, 4);

  DsTensor gx = tensor (SHAPE (8192, 2560)), gy = tensor (SHAPE (8192, 1280));
  DsOpCall gg = { .op = DS_OP_GEGLU, .src = { &gx }, .dst = &gy };
  const DsTensor *io2[] = { &gx, &gy };
  run ("geglu [8192,2560] -> [8192,1280]", &gg, 0, bytes_of (io2, 2));
  DsTensor m[2] = { gx, gy };
  release (m, 2);
}

int
main (int argc, char **argv)
{
  const char *backend = "cpu", *dtype = NULL;
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--runs") && i + 1 < argc)
        runs = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--warmup") && i + 1 < argc)
        warmup = atoi (argv[++i]);
      else if (!strcmp (argv[i], "--backend") && i + 1 < argc)
        backend = argv[++i];
      else if (!strcmp (argv[i], "--dtype") && i + 1 < argc)
        dtype = argv[++i];
      else if (!strcmp (argv[i], "--only") && i + 1 < argc)
        only = argv[++i];
      else
        {
          fprintf (stderr, "usage: bench-ops [--backend cpu|cuda] [--dtype f32|f16|bf16] "
                           "[--runs N] [--warmup N] [--only NAME-PREFIX]\n");
          return 2;
        }
    }
  if (runs < 1 || runs > MAX_RUNS || warmup < 0)
    return 2;
  const bool cuda = !strcmp (backend, "cuda");
  DsDType dt = cuda ? DS_DTYPE_F16 : DS_DTYPE_F32;
  if (dtype)
    dt = !strcmp (dtype, "f32") ? DS_DTYPE_F32 : !strcmp (dtype, "bf16") ? DS_DTYPE_BF16
                                                                         : DS_DTYPE_F16;
  if (!cuda && dt != DS_DTYPE_F32)
    {
      fprintf (stderr, "bench-ops: the CPU backend computes in f32 only\n");
      return 2;
    }
  DsError err = { 0 };
  DsBackend *im2col = NULL, *unfused = NULL;
#ifdef DS_HAVE_CUDA
  if (cuda)
    {
      be = ds_backend_cuda_new (0, dt, &err);
      setenv ("DS_CUDA_CONV", "im2col", 1);
      setenv ("DS_CUDA_FLASH", "0", 1);
      if (be)
        unfused = im2col = ds_backend_cuda_new (0, dt, &err);
      unsetenv ("DS_CUDA_CONV");
      unsetenv ("DS_CUDA_FLASH");
    }
  else
#endif
    be = cuda ? NULL : ds_backend_cpu_new (&err);
  if (!be)
    {
      fprintf (stderr, "bench-ops: %s\n", cuda && !err.message[0] ? "built without CUDA"
                                                                  : err.message);
      return 1;
    }
  printf ("# bench-ops on %s, %s; SD 2.1 shapes (UNet batch 2, VAE 512², text batch 2)\n",
          be->name, ds_dtype_name (be->act_dtype));
#ifdef DS_HAVE_CUDA
  if (cuda)
    printf ("# convolutions: %s\n", ds_cuda_backend_conv_path (be));
#endif

  bench_linear ("linear q/k/v/o [8192,320] x [320,320]^T", 8192, 320, 320, false);
  bench_linear ("linear ff in [8192,320] -> 2560", 8192, 320, 2560, false);
  bench_linear ("linear ff out + residual [8192,1280] -> 320", 8192, 1280, 320, true);
  bench_linear ("linear 16x16 ff in [512,1280] -> 10240", 512, 1280, 10240, false);
  bench_linear ("linear cross k [154,1024] -> 320", 154, 1024, 320, false);
  bench_linear ("linear text q/k/v [154,1024] -> 1024", 154, 1024, 1024, false);
  bench_linear ("linear text fc1 [154,1024] -> 4096", 154, 1024, 4096, false);

  /* the UNet's convolutions at batch 2, then the VAE encoder's at 512² */
  typedef struct {
    const char *name;
    int64_t nb, ci, hw, co;
    int k, stride;
  } ConvCase;
  static const ConvCase convs[] = {
    { "3x3 320->320 64x64 B2", 2, 320, 64, 320, 3, 1 },
    { "3x3 640->640 32x32 B2", 2, 640, 32, 640, 3, 1 },
    { "3x3 1280->1280 16x16 B2", 2, 1280, 16, 1280, 3, 1 },
    { "3x3 960->320 64x64 B2 (up, skip)", 2, 960, 64, 320, 3, 1 },
    { "3x3 stride 2 320 64x64 B2", 2, 320, 64, 320, 3, 2 },
    { "1x1 640->320 32x32 B2", 2, 640, 32, 320, 1, 1 },
    { "3x3 128->128 512x512 B1 (VAE)", 1, 128, 512, 128, 3, 1 },
    { "3x3 256->256 256x256 B1 (VAE)", 1, 256, 256, 256, 3, 1 },
    { "3x3 512->512 128x128 B1 (VAE)", 1, 512, 128, 512, 3, 1 },
  };
  DsBackend *main_be = be;
  bool cudnn = false; /* a second convolution pass only where the first was cuDNN's */
#ifdef DS_HAVE_CUDA
  cudnn = cuda && strncmp (ds_cuda_backend_conv_path (be), "cuDNN", 5) == 0;
#endif
  for (int pass = 0; pass < (im2col && cudnn ? 2 : 1); pass++)
    {
      be = pass ? im2col : main_be;
      const char *tag = pass ? " (im2col)" : "";
      char n[128];
      for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
        {
          const ConvCase *cc = &convs[i];
          snprintf (n, sizeof n, "conv2d %s%s", cc->name, tag);
          bench_conv (n, cc->nb, cc->ci, cc->hw, cc->co, cc->k, cc->stride);
        }
    }
  for (int pass = 0; pass < (unfused ? 2 : 1); pass++)
    {
      be = pass ? unfused : main_be;
      const char *tag = pass ? " (materialised)" : "";
      char n[128];
      snprintf (n, sizeof n, "attention self 5 heads 4096x4096 B2%s", tag);
      bench_attention (n, 2, 4096, 4096, 5, false);
      snprintf (n, sizeof n, "attention self 10 heads 1024x1024 B2%s", tag);
      bench_attention (n, 2, 1024, 1024, 10, false);
      snprintf (n, sizeof n, "attention cross 5 heads 4096x77 B2%s", tag);
      bench_attention (n, 2, 4096, 77, 5, false);
    }
  be = main_be;
  bench_attention ("attention cross 5 heads 4096x77 B2 + probs", 2, 4096, 77, 5, true);
  bench_norms ();

  if (im2col)
    ds_backend_free (im2col);
  ds_backend_free (main_be);
  return 0;
}
