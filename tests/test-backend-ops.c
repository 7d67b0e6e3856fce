/* test-backend-ops.c: every op of the CUDA backend against the CPU reference.
 *
 * Each case builds random inputs from a fixed seed, uploads them, runs the op
 * on the CUDA backend and on the CPU backend (engine/core/ds-backend-cpu.c, itself
 * checked against PyTorch by test-ops), downloads the result and compares by
 * NMSE. Every case runs three times: in f32, in f16 and in bf16 storage. In
 * the narrow dtypes the random inputs are first rounded to the dtype on the
 * host, so the CPU reference (f32) sees exactly the values the GPU stores and
 * only the GPU's own rounding is measured. Tolerances per kind of op and dtype:
 *   - data movement (concat, upsample, embedding, permute): bit-identical,
 *     NMSE 0, in every dtype;
 *   - exact arithmetic (add, mul, scale): 0 in f32;
 *   - elementwise maps through expf/erff, softmax, norms: 1e-10 in f32 (the
 *     device math library may differ from glibc in the last ulp or two);
 *   - GEMM-based ops (conv2d, linear, matmul, attention) and the timestep
 *     embedding: 1e-8 in f32 (summation order; the embedding's sin/cos of
 *     arguments near 1000 turn one ulp of a frequency into ~1e-5 absolute
 *     error);
 *   - everything but data movement, in f16: 1e-6 (rounding the result to
 *     f16 alone gives NMSE ~1e-7; attention also rounds its probabilities);
 *     in bf16: 3e-5 (8-bit significands: ~2e-6 from the final rounding).
 * The LLaMA decoder's ops: rms_norm and rope as norms/maps (1e-10 in f32:
 * rope's inv_freq comes from the host as on the CPU, so only cosf/sinf may
 * differ), attention_kv as a GEMM-based op (1e-8: the split-K kernel sums in
 * another order; up to 16 queries it runs, beyond them GEMMs + softmax),
 * with decode shapes (1 query over 4096 keys, GQA, chunk edges at 256 keys,
 * q_pos offsets with the cache longer than what the queries see) and
 * prefill chunks; attention_kv at a position read on the device (the whole
 * cache given, the same bits as the position fixed at launch with the rows
 * up to it); set_rows into a cache (bit-identical, the other rows kept; a
 * row outside the destination an error on the CPU, skipped on the device).
 * f16/bf16 attention with head size 64 and no probabilities runs the fused
 * kernel (attention.cu), again with DS_CUDA_LDMATRIX=0 (its plain-load
 * fragments); the others the materialised path: all are covered.
 * Device destinations are first filled with NaN, so an element a kernel
 * forgets to write fails the comparison. Shapes include the real SD 2.1 ones
 * (64x64 latents, 4096-token self-attention, 77-token cross-attention, CLIP's
 * causal mask) and odd small ones for the edges; cases big enough to take the
 * backend's blocked paths (im2col row blocks, attention query blocks) are
 * included and labelled.
 * Plus: the backend's identity, upload/download, zeroed allocation, out of
 * device memory, a device arena, an out-of-range embedding id, and bad device
 * indices.
 *
 * Without a GPU (CI, the development machine) it checks that creating the
 * backend fails cleanly with DS_ERR_DEVICE, then exits 77 (skip).
 */
#include "ds-test.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "ds-cuda.h"
#ifdef DS_CUDA_EMU
#include <cuda_runtime.h> /* the emulator's: ds_emu_work_count */
#endif
#include "ds-nn.h"
#include "ds-ops.h"

/* The dtype the cases run in; tolerances follow it. */
static DsDType case_dt = DS_DTYPE_F32;
#define TOL_NARROW (case_dt == DS_DTYPE_F16 ? 1e-6 : 3e-5)
#define TOL_MOVE 0.0
#define TOL_EXACT (case_dt == DS_DTYPE_F32 ? 0.0 : TOL_NARROW)
#define TOL_MAP (case_dt == DS_DTYPE_F32 ? 1e-10 : TOL_NARROW)
#define TOL_GEMM (case_dt == DS_DTYPE_F32 ? 1e-8 : TOL_NARROW)

/* Under the host emulator (tests/cuda-emu) attention cases above this many
 * scores are skipped: emulated tensor-core MMAs are too slow for them. */
#define EMU_MAX_SCORES ((int64_t) 1 << 22)
static bool emulated;
/* Under the emulator, while a variant backend (a cuDNN that fails or refuses,
 * DS_CUDA_LDMATRIX=0) reruns a set of cases, those doing more work than this
 * (a convolution's multiply-adds, an attention's scores) are skipped: the
 * code paths they reach are the small cases' too, their size only costs time
 * (a 256x256 VAE convolution takes 20 s emulated), and the main run has
 * checked them. 0: no cap. */
static int64_t emu_variant_cap;
#define EMU_VARIANT_CAP ((int64_t) 1 << 20)

/* Whether a case of `work` is skipped under the emulator: above `limit` (the
 * op's own, INT64_MAX for none) or, in a variant run, above the variant cap.
 * Says so. */
static bool
emu_skip (const char *op, const char *label, int64_t work, int64_t limit)
{
  if (!emulated)
    return false;
  const char *why = work > limit                             ? ""
                    : emu_variant_cap && work > emu_variant_cap ? " in a variant run"
                                                                : NULL;
  if (why)
    printf ("  %-4s %s %s: skipped%s under the emulator\n", ds_dtype_name (case_dt), op, label,
            why);
  return why != NULL;
}

static DsBackend *cpu, *gpu;
/* gpu convolves by cuDNN wherever cuDNN takes the shape (symmetric padding,
 * not a 1x1 the GEMM runs on the image itself) */
static bool conv_by_cudnn;
/* gpu runs biased f16/bf16 linears as one cuBLASLt call (not DS_CUDA_LT=0) */
static bool linear_by_lt;
/* device operations the last check_case's op issued (the emulator counts them) */
static long long case_device_ops = -1;
static bool op_tested[DS_OP_COUNT];


#define NDIMS(...) ((int) (sizeof ((int64_t[]){ __VA_ARGS__ }) / sizeof (int64_t)))
#define SHAPE(...) NDIMS (__VA_ARGS__), (int64_t[]){ __VA_ARGS__ }

/* ---- host tensors ---- */

static DsTensor
host_new (DsDType dtype, int ndim, const int64_t *shape)
{
  DsTensor t;
  DsError err = { 0 };
  if (ds_tensor_alloc (&t, dtype, ndim, shape, &err) != DS_OK)
    {
      fprintf (stderr, "host allocation failed: %s\n", err.message);
      exit (1);
    }
  return t;
}

static uint64_t
splitmix (uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rng_state = 20261101;

/* Rounds host values to what case_dt can hold (nothing for f32). */
static void
round_to_case (float *p, int64_t n)
{
  if (case_dt == DS_DTYPE_F32)
    return;
  for (int64_t i = 0; i < n; i++)
    p[i] = case_dt == DS_DTYPE_F16 ? ds_f16_to_f32 (ds_f32_to_f16 (p[i]))
                                   : ds_bf16_to_f32 (ds_f32_to_bf16 (p[i]));
}

/* shift + scale * U[-1, 1), representable in case_dt */
static DsTensor
rnd (float scale, float shift, int ndim, const int64_t *shape)
{
  DsTensor t = host_new (DS_DTYPE_F32, ndim, shape);
  float *p = ds_tensor_f32 (&t);
  for (int64_t i = 0; i < ds_tensor_numel (&t); i++)
    p[i] = shift + scale * (float) ((double) (splitmix (&rng_state) >> 11) * 0x1p-52 - 1.0);
  round_to_case (p, ds_tensor_numel (&t));
  return t;
}

static DsTensor
zeros (int ndim, const int64_t *shape)
{
  return host_new (DS_DTYPE_F32, ndim, shape);
}

/* ids uniform in [0, v) */
static DsTensor
rnd_ids (int64_t v, int ndim, const int64_t *shape)
{
  DsTensor t = host_new (DS_DTYPE_I32, ndim, shape);
  int32_t *p = t.data;
  for (int64_t i = 0; i < ds_tensor_numel (&t); i++)
    p[i] = (int32_t) (splitmix (&rng_state) % (uint64_t) v);
  return t;
}

/* ---- device twins: f32 host tensors become case_dt device tensors ---- */

static DsTensor
dev_new (const DsTensor *like)
{
  DsTensor t;
  DsError err = { 0 };
  const DsDType dt = like->dtype == DS_DTYPE_F32 ? case_dt : like->dtype;
  DsStatus st = gpu->tensor_alloc (gpu, &t, dt, like->ndim, like->shape, &err);
  if (st != DS_OK)
    {
      fprintf (stderr, "device allocation failed: %s\n", err.message);
      exit (1);
    }
  return t;
}

static DsTensor
dev_upload (const DsTensor *host)
{
  DsTensor t = dev_new (host);
  DsError err = { 0 };
  if (ds_dtype_is_float (t.dtype))
    DS_CHECK_OK (ds_backend_upload_f32 (gpu, &t, ds_tensor_f32 (host), &err), &err);
  else
    DS_CHECK_OK (gpu->upload (gpu, &t, host->data, &err), &err);
  return t;
}

/* A device tensor shaped like `host`, every element NaN. */
static DsTensor
dev_nan (const DsTensor *host)
{
  DsTensor t = dev_new (host);
  size_t n = (size_t) ds_tensor_numel (host);
  float *fill = malloc ((n ? n : 1) * sizeof *fill);
  for (size_t i = 0; i < n; i++)
    fill[i] = NAN;
  DsError err = { 0 };
  DS_CHECK_OK (ds_backend_upload_f32 (gpu, &t, fill, &err), &err);
  free (fill);
  return t;
}

static float *
dev_download (const DsTensor *t)
{
  size_t n = (size_t) ds_tensor_numel (t);
  float *h = malloc ((n ? n : 1) * sizeof *h);
  DsError err = { 0 };
  DS_CHECK_OK (ds_backend_download_f32 (gpu, t, h, &err), &err);
  return h;
}

static double
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Largest |a - b| relative to the largest |b|. */
static double
max_rel_err (const float *a, const float *b, int64_t n)
{
  double e = 0, m = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - b[i]);
      e = d > e || isnan (d) ? d : e;
      m = fmax (m, fabs (b[i]));
    }
  return m > 0 ? e / m : e;
}

static void
compare (const char *op, const char *label, const char *what, const DsTensor *dev,
         const DsTensor *ref, double tol, double gpu_ms, double cpu_ms)
{
  float *got = dev_download (dev);
  const int64_t n = ds_tensor_numel (ref);
  const float *want = ds_tensor_f32 (ref);
  double nmse = ds_test_nmse (got, want, n);
  char s[96];
  printf ("  %-4s %-18s %-46s %-5s %-22s NMSE %-9.3g max rel %-9.3g gpu %8.2f ms  cpu %8.1f ms\n",
          ds_dtype_name (dev->dtype), op, label, what,
          ds_shape_str (ref->ndim, ref->shape, s, sizeof s), nmse, max_rel_err (got, want, n),
          gpu_ms, cpu_ms);
  DS_CHECK (nmse <= tol, "%s %s %s (%s): NMSE %.3g above %.3g", ds_dtype_name (dev->dtype), op,
            label, what, nmse, tol);
  free (got);
}

/* Runs `hc` (host tensors) on both backends and compares dst (and dst2). A dst
 * that is one of the sources (an in-place call) stays one on the device.
 * Frees nothing: the caller owns the host tensors. */
/* Runs dc on gpu and waits for it; on the emulator, case_device_ops says how
 * many device operations it issued. */
static DsStatus
run_on_gpu (const DsOpCall *dc)
{
  DsError err = { 0 };
#ifdef DS_CUDA_EMU
  const unsigned long long work0 = ds_emu_work_count ();
#endif
  DsStatus st = ds_op_run (gpu, dc, &err);
  DS_CHECK_OK (st, &err);
  DS_CHECK_OK (gpu->synchronize (gpu, &err), &err);
#ifdef DS_CUDA_EMU
  case_device_ops = (long long) (ds_emu_work_count () - work0);
#endif
  return st;
}

static void
check_case (const char *label, const DsOpCall *hc, double tol)
{
  DsError err = { 0 };
  DsOpCall dc = *hc;
  DsTensor dsrc[4] = { { 0 } }, ddst = { 0 }, ddst2 = { 0 };
  int dst_src = -1;
  for (int i = 0; i < 4; i++)
    if (hc->src[i])
      {
        dsrc[i] = dev_upload (hc->src[i]);
        dc.src[i] = &dsrc[i];
        if (hc->src[i] == hc->dst)
          dst_src = i;
      }
  if (dst_src >= 0)
    dc.dst = &dsrc[dst_src];
  else
    {
      ddst = dev_nan (hc->dst);
      dc.dst = &ddst;
    }
  if (hc->dst2)
    {
      ddst2 = dev_nan (hc->dst2);
      dc.dst2 = &ddst2;
    }

  double t0 = now_ms ();
  DsStatus st = run_on_gpu (&dc);
  double t1 = now_ms ();
  DS_CHECK_OK (ds_op_run (cpu, hc, &err), &err);
  double t2 = now_ms ();

  const char *op = ds_op_name (hc->op);
  op_tested[hc->op] = true;
  if (st == DS_OK)
    {
      compare (op, label, "out", dc.dst, hc->dst, tol, t1 - t0, t2 - t1);
      if (hc->dst2)
        compare (op, label, "probs", &ddst2, hc->dst2, tol, t1 - t0, t2 - t1);
    }
  for (int i = 0; i < 4; i++)
    gpu->tensor_free (gpu, &dsrc[i]);
  gpu->tensor_free (gpu, &ddst);
  gpu->tensor_free (gpu, &ddst2);
}

static void
free_all (DsTensor *t, int n)
{
  for (int i = 0; i < n; i++)
    ds_tensor_free (&t[i]);
}

/* ---- cases, op by op ---- */

static void
conv_case (const char *label, int64_t nb, int64_t ci, int64_t h, int64_t w, int64_t co, int kh,
           int kw, int stride, int pt, int pl, int pb, int pr, bool bias)
{
  int64_t ho = ds_conv2d_out_size (h, kh, stride, pt, pb);
  int64_t wo = ds_conv2d_out_size (w, kw, stride, pl, pr);
  if (emu_skip ("conv2d", label, nb * co * ho * wo * ci * kh * kw, INT64_MAX))
    return;
  DsTensor t[4];
  t[0] = rnd (1.0f, 0.0f, SHAPE (nb, ci, h, w));
  t[1] = rnd (1.0f / sqrtf ((float) (ci * kh * kw)), 0.0f, SHAPE (co, ci, kh, kw));
  t[2] = bias ? rnd (0.5f, 0.0f, SHAPE (co)) : (DsTensor){ 0 };
  t[3] = zeros (SHAPE (nb, co, ho, wo));
  DsOpCall c = { .op = DS_OP_CONV2D, .src = { &t[0], &t[1], bias ? &t[2] : NULL }, .dst = &t[3] };
  c.p.conv2d.stride = stride;
  c.p.conv2d.pad_top = pt;
  c.p.conv2d.pad_left = pl;
  c.p.conv2d.pad_bottom = pb;
  c.p.conv2d.pad_right = pr;
  DsCudaConvStats before, after;
  ds_cuda_backend_conv_stats (gpu, &before);
  check_case (label, &c, TOL_GEMM);
  ds_cuda_backend_conv_stats (gpu, &after);
  const bool direct = kh == 1 && kw == 1 && stride == 1 && !pt && !pl && !pb && !pr;
  const bool want_cudnn = conv_by_cudnn && !direct && pt == pb && pl == pr;
  DS_CHECK (after.cudnn - before.cudnn == want_cudnn && after.gemm - before.gemm == !want_cudnn,
            "%s: ran by %s, expected %s (last cuDNN refusal: %s)", label,
            after.cudnn > before.cudnn ? "cuDNN" : "GEMM", want_cudnn ? "cuDNN" : "GEMM",
            after.last_refusal[0] ? after.last_refusal : "none");
  free_all (t, 4);
}

static void
test_conv2d (void)
{
  printf ("conv2d\n");
  conv_case ("SD 320->320 3x3 pad 1, 64x64 B2", 2, 320, 64, 64, 320, 3, 3, 1, 1, 1, 1, 1, true);
  conv_case ("SD conv_in 4->320 3x3", 2, 4, 64, 64, 320, 3, 3, 1, 1, 1, 1, 1, true);
  conv_case ("SD conv_out 320->4 3x3", 2, 320, 64, 64, 4, 3, 3, 1, 1, 1, 1, 1, true);
  conv_case ("SD downsampler 320 3x3 stride 2 pad 1", 2, 320, 64, 64, 320, 3, 3, 2, 1, 1, 1, 1,
             true);
  conv_case ("VAE downsampler pad (0,0,1,1) stride 2", 1, 128, 256, 256, 128, 3, 3, 2, 0, 0, 1, 1,
             true);
  conv_case ("VAE 128->128 3x3 256x256 (2 im2col blocks)", 1, 128, 256, 256, 128, 3, 3, 1, 1, 1,
             1, 1, true);
  conv_case ("1x1 shortcut 640->320 (direct GEMM)", 2, 640, 32, 32, 320, 1, 1, 1, 0, 0, 0, 0,
             true);
  conv_case ("1x1 no bias (direct GEMM)", 2, 96, 16, 16, 160, 1, 1, 1, 0, 0, 0, 0, false);
  conv_case ("1x1 pad 1 (im2col)", 1, 8, 5, 5, 6, 1, 1, 1, 1, 1, 1, 1, true);
  conv_case ("1x1 stride 2 (im2col)", 2, 8, 9, 7, 6, 1, 1, 2, 0, 0, 0, 0, true);
  conv_case ("3x3 pad 2 rows, 1 column, each side", 2, 5, 9, 7, 6, 3, 3, 1, 2, 1, 2, 1, true);
  conv_case ("3x3 stride 3 pad (1,2,0,1) no bias", 1, 3, 17, 23, 5, 3, 3, 3, 1, 2, 0, 1, false);
  conv_case ("2x3 kernel, odd sizes", 2, 6, 9, 11, 4, 2, 3, 1, 0, 0, 0, 0, true);
  conv_case ("3x3 on 1x1 image pad 1", 3, 16, 1, 1, 8, 3, 3, 1, 1, 1, 1, 1, true);
}

/* More convolution shapes than cuDNN plans are cached (64), then the first
 * ones again, whose plans were evicted: each must still be right. */
static void
test_conv_plans (void)
{
  printf ("conv2d, 70 shapes and 6 evicted ones again\n");
  for (int i = 0; i < 76; i++)
    {
      const int h = 2 + i % 70;
      char label[64];
      snprintf (label, sizeof label, "3x3 pad 1 on %dx%d%s", h, h, i >= 70 ? " again" : "");
      conv_case (label, 1, 3, h, h, 4, 3, 3, 1, 1, 1, 1, 1, i % 2 == 0);
    }
  /* shapes with the same output size that differ from the first in one thing
   * the plan depends on, each run right after it */
  printf ("conv2d, plans that differ in one dimension\n");
  static const struct {
    const char *what;
    int nb, ci, h, w, co, kh, kw;
  } v[] = {
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "batch", 2, 3, 8, 8, 4, 3, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "in channels", 1, 5, 8, 8, 4, 3, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "height", 1, 3, 7, 8, 4, 3, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "width", 1, 3, 8, 7, 4, 3, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "out channels", 1, 3, 8, 8, 6, 3, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "kernel height", 1, 3, 8, 8, 4, 4, 3 },
    { "base", 1, 3, 8, 8, 4, 3, 3 },  { "kernel width", 1, 3, 8, 8, 4, 3, 4 },
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) /* stride 2, pad 1: 4x4 out */
    conv_case (v[i].what, v[i].nb, v[i].ci, v[i].h, v[i].w, v[i].co, v[i].kh, v[i].kw, 2, 1, 1,
               1, 1, true);
}

/* The emulator's cuDNN stand-in unusable (DS_CUDA_EMU_CUDNN=0: the backend
 * says why and convolves by im2col) or refusing every shape (=refuse: each
 * convolution falls back to im2col when planned). */
static void
test_cudnn_fallbacks (void)
{
  DsBackend *main_gpu = gpu;
  DsError err = { 0 };
  const bool main_by_cudnn = conv_by_cudnn;
  conv_by_cudnn = false;
  emu_variant_cap = EMU_VARIANT_CAP;
  setenv ("DS_CUDA_EMU_CUDNN", "0", 1);
  gpu = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  DS_CHECK (gpu != NULL, "backend without cuDNN: %s", err.message);
  if (gpu)
    {
      DS_CHECK_CONTAINS (ds_cuda_backend_conv_path (gpu),
                         "im2col + cuBLAS (cuDNN create: CUDNN_STATUS_NOT_INITIALIZED)");
      printf ("(again with %s)\n", ds_cuda_backend_conv_path (gpu));
      test_conv2d ();
      ds_backend_free (gpu);
    }
  setenv ("DS_CUDA_EMU_CUDNN", "refuse", 1);
  gpu = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  DS_CHECK (gpu != NULL, "backend with a refusing cuDNN: %s", err.message);
  if (gpu)
    {
      DS_CHECK (strncmp (ds_cuda_backend_conv_path (gpu), "cuDNN", 5) == 0, "conv path %s",
                ds_cuda_backend_conv_path (gpu));
      printf ("(again with a cuDNN that refuses every shape)\n");
      conv_by_cudnn = false;
      test_conv2d ();
      conv_by_cudnn = true;
      DsCudaConvStats st;
      ds_cuda_backend_conv_stats (gpu, &st);
      DS_CHECK_CONTAINS (st.last_refusal, "CUDNN_STATUS_NOT_SUPPORTED");
      ds_backend_free (gpu);
    }
  unsetenv ("DS_CUDA_EMU_CUDNN");
  emu_variant_cap = 0;
  gpu = main_gpu;
  conv_by_cudnn = main_by_cudnn;
}

static void
group_norm_case (const char *label, int ndim, const int64_t *shape, int groups, float eps,
                 bool silu, float shift)
{
  DsTensor t[4];
  t[0] = rnd (2.0f, shift, ndim, shape);
  t[1] = rnd (0.5f, 1.0f, SHAPE (shape[1]));
  t[2] = rnd (0.2f, 0.0f, SHAPE (shape[1]));
  t[3] = zeros (ndim, shape);
  DsOpCall c = { .op = DS_OP_GROUP_NORM, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3] };
  c.p.group_norm.groups = groups;
  c.p.group_norm.eps = eps;
  c.p.group_norm.silu = silu;
  check_case (label, &c, TOL_MAP);
  /* one launch for a group of at most 16384 values, else partials + normalize */
  int64_t per_group = ds_tensor_numel (&t[0]) / (shape[0] * groups);
  const long long want = per_group <= 16384 ? 1 : 2;
  if (case_device_ops >= 0)
    DS_CHECK (case_device_ops == want, "%s: %lld launches, expected %lld", label,
              case_device_ops, want);
  free_all (t, 4);
}

static void
test_norms (void)
{
  printf ("group_norm, layer_norm\n");
  group_norm_case ("SD 32 groups", SHAPE (2, 320, 64, 64), 32, 1e-5f, false, 0.0f);
  group_norm_case ("SD 32 groups + SiLU", SHAPE (2, 320, 64, 64), 32, 1e-5f, true, 0.0f);
  group_norm_case ("32 groups + SiLU, eps 1e-6, mean 5", SHAPE (2, 640, 32, 32), 32, 1e-6f, true,
                   5.0f);
  group_norm_case ("SD 8x8 level, one launch", SHAPE (2, 1280, 8, 8), 32, 1e-5f, true, 0.0f);
  group_norm_case ("SD 16x16 level, one launch", SHAPE (2, 1280, 16, 16), 32, 1e-5f, true, 1.0f);
  group_norm_case ("16384 values per group, one launch", SHAPE (2, 64, 128, 64), 32, 1e-5f,
                   false, 0.0f);
  group_norm_case ("16385 values per group, two launches", SHAPE (1, 1, 5, 3277), 1, 1e-5f,
                   false, 0.0f);
  group_norm_case ("3-D [B, C, N], 8 groups", SHAPE (2, 64, 100), 8, 1e-5f, false, -1.0f);
  group_norm_case ("2-D, no spatial dims", SHAPE (3, 12), 4, 1e-5f, true, 0.0f);
  group_norm_case ("one channel per group", SHAPE (1, 6, 5, 3), 6, 1e-5f, false, 0.0f);
  /* 16 channels x 32768 per group: more slices than the 64 a group may have,
   * so each is longer than 4096 and the last ends short (as the VAE at 512²) */
  group_norm_case ("64 slices per group, uneven", SHAPE (1, 32, 257, 127), 2, 1e-6f, true, 0.5f);

  struct { const char *label; int ndim; int64_t shape[DS_MAX_DIMS]; float shift; } ln[] = {
    { "SD tokens", 3, { 2, 4096, 320 }, 0.0f },
    { "CLIP tokens, mean 3", 3, { 2, 77, 1024 }, 3.0f },
    { "wide rows", 2, { 3, 1000 }, 0.0f },
    { "narrow rows", 2, { 5, 7 }, -2.0f },
    { "1-D", 1, { 320 }, 0.5f },
  };
  for (size_t i = 0; i < sizeof ln / sizeof ln[0]; i++)
    {
      const int64_t ch = ln[i].shape[ln[i].ndim - 1];
      DsTensor t[4];
      t[0] = rnd (1.5f, ln[i].shift, ln[i].ndim, ln[i].shape);
      t[1] = rnd (0.5f, 1.0f, SHAPE (ch));
      t[2] = rnd (0.2f, 0.0f, SHAPE (ch));
      t[3] = zeros (ln[i].ndim, ln[i].shape);
      DsOpCall c = { .op = DS_OP_LAYER_NORM, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3] };
      c.p.layer_norm.eps = 1e-5f;
      check_case (ln[i].label, &c, TOL_MAP);
      free_all (t, 4);
    }
}

/* residual: 0 none, 1 into a fresh y, 2 in place (y is the residual) */
/* The last linear's device operations (on the emulator): one call with
 * cuBLASLt's bias epilogue, else GEMM + bias kernel (or + the residual's
 * copy when out of place); a GEMM alone without either. */
static void
check_linear_ops (const char *label, bool bias, int residual)
{
  const long long want = bias ? (linear_by_lt && case_dt != DS_DTYPE_F32 ? 1 : 2)
                              : (residual == 1 ? 2 : 1);
  if (case_device_ops >= 0)
    DS_CHECK (case_device_ops == want, "%s: %lld device operations, expected %lld", label,
              case_device_ops, want);
}

static void
linear_case (const char *label, int ndim, const int64_t *xshape, int64_t n, bool bias,
             int residual)
{
  const int64_t k = xshape[ndim - 1];
  int64_t yshape[DS_MAX_DIMS];
  memcpy (yshape, xshape, (size_t) ndim * sizeof *yshape);
  yshape[ndim - 1] = n;
  DsTensor t[5];
  t[0] = rnd (1.0f, 0.0f, ndim, xshape);
  t[1] = rnd (1.0f / sqrtf ((float) k), 0.0f, SHAPE (n, k));
  t[2] = bias ? rnd (0.5f, 0.0f, SHAPE (n)) : (DsTensor){ 0 };
  t[3] = zeros (ndim, yshape);
  t[4] = residual ? rnd (2.0f, 0.0f, ndim, yshape) : (DsTensor){ 0 };
  DsOpCall c = { .op = DS_OP_LINEAR,
                 .src = { &t[0], &t[1], bias ? &t[2] : NULL, residual ? &t[4] : NULL },
                 .dst = residual == 2 ? &t[4] : &t[3] };
  check_case (label, &c, TOL_GEMM);
  check_linear_ops (label, bias, residual);
  free_all (t, 5);
}

/* cuBLASLt is told each pointer's alignment: a linear whose input starts one
 * element into its allocation (2-byte aligned in f16) must still be right. */
static void
test_linear_misaligned (void)
{
  enum { M = 6, K = 40, N = 24 };
  DsTensor xp = rnd (1.0f, 0.0f, SHAPE (M * K + 1)), w = rnd (0.2f, 0.0f, SHAPE (N, K));
  DsTensor b = rnd (0.5f, 0.0f, SHAPE (N)), y = zeros (SHAPE (M, N));
  DsTensor x = xp; /* a view [M, K] one element in */
  x.ndim = 2, x.shape[0] = M, x.shape[1] = K;
  x.data = (float *) xp.data + 1;
  DsError err = { 0 };
  DsOpCall hc = { .op = DS_OP_LINEAR, .src = { &x, &w, &b }, .dst = &y };
  DS_CHECK_OK (ds_op_run (cpu, &hc, &err), &err);
  DsTensor dxp = dev_upload (&xp), dw = dev_upload (&w), db = dev_upload (&b), dy = dev_nan (&y);
  DsTensor dx = dxp;
  dx.ndim = 2, dx.shape[0] = M, dx.shape[1] = K;
  dx.data = (char *) dxp.data + ds_dtype_size (dxp.dtype);
  DsOpCall dc = { .op = DS_OP_LINEAR, .src = { &dx, &dw, &db }, .dst = &dy };
  const char *label = "input 1 element past its allocation";
  run_on_gpu (&dc);
  check_linear_ops (label, true, 0);
  compare ("linear", label, "out", &dy, &y, TOL_GEMM, 0, 0);
  gpu->tensor_free (gpu, &dxp), gpu->tensor_free (gpu, &dw);
  gpu->tensor_free (gpu, &db), gpu->tensor_free (gpu, &dy);
  ds_tensor_free (&xp), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
}

static void
matmul_case (const char *label, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
             float alpha, bool two_d)
{
  DsTensor t[3];
  int64_t as[3] = { batch, ta ? k : m, ta ? m : k }, bs[3] = { batch, tb ? n : k, tb ? k : n };
  int64_t ys[3] = { batch, m, n };
  int nd = two_d ? 2 : 3, off = two_d ? 1 : 0;
  t[0] = rnd (1.0f, 0.0f, nd, as + off);
  t[1] = rnd (1.0f, 0.0f, nd, bs + off);
  t[2] = zeros (nd, ys + off);
  DsOpCall c = { .op = DS_OP_MATMUL, .src = { &t[0], &t[1] }, .dst = &t[2] };
  c.p.matmul.trans_a = ta;
  c.p.matmul.trans_b = tb;
  c.p.matmul.alpha = alpha;
  check_case (label, &c, TOL_GEMM);
  free_all (t, 3);
}

static void
test_gemms (void)
{
  printf ("linear, matmul\n");
  linear_case ("SD ff/proj [2, 4096, 320] x [1280, 320]^T", SHAPE (2, 4096, 320), 1280, true, 0);
  linear_case ("[2, 4096, 1280] x [320, 1280]^T", SHAPE (2, 4096, 1280), 320, true, 0);
  linear_case ("cross to_k [2, 77, 1024], no bias", SHAPE (2, 77, 1024), 320, false, 0);
  linear_case ("time embedding [2, 320] -> 1280", SHAPE (2, 320), 1280, true, 0);
  linear_case ("odd [3, 5] -> 7", SHAPE (3, 5), 7, true, 0);
  linear_case ("4-D [2, 3, 4, 9] -> 5", SHAPE (2, 3, 4, 9), 5, false, 0);
  linear_case ("SD ff out + residual in place [2, 4096, 1280] -> 320", SHAPE (2, 4096, 1280), 320,
               true, 2);
  linear_case ("CLIP out + residual [2, 77, 1024] -> 1024", SHAPE (2, 77, 1024), 1024, true, 1);
  linear_case ("odd + residual, no bias [3, 5] -> 7", SHAPE (3, 5), 7, false, 1);
  linear_case ("odd + residual in place, no bias", SHAPE (4, 6), 3, false, 2);
  test_linear_misaligned ();

  matmul_case ("q k^T per head, [10, 4096, 64] x [10, 77, 64]^T", 10, 4096, 77, 64, false, true,
               0.125f, false);
  matmul_case ("a^T b", 4, 17, 9, 33, true, false, 1.0f, false);
  matmul_case ("a^T b^T, alpha -0.5", 3, 5, 6, 8, true, true, -0.5f, false);
  matmul_case ("a b", 2, 31, 29, 47, false, false, 1.0f, false);
  matmul_case ("2-D a b", 1, 50, 30, 40, false, false, 2.0f, true);
  matmul_case ("2-D a^T b^T", 1, 7, 11, 13, true, true, 1.0f, true);
}

static void
softmax_case (const char *label, int ndim, const int64_t *shape, float scale, bool in_place)
{
  DsTensor t[2];
  t[0] = rnd (scale, 0.0f, ndim, shape);
  t[1] = zeros (ndim, shape);
  DsOpCall c = { .op = DS_OP_SOFTMAX, .src = { &t[0] }, .dst = in_place ? &t[0] : &t[1] };
  check_case (label, &c, TOL_MAP);
  free_all (t, 2);
}

static void
attention_case (const char *label, int64_t nb, int64_t nq, int64_t nk, int heads, int64_t d,
                bool causal, bool want_probs)
{
  const int64_t ch = heads * d;
  if (emu_skip ("attention", label, nb * heads * nq * nk, EMU_MAX_SCORES))
    return;
  DsTensor t[5];
  t[0] = rnd (3.0f, 0.0f, SHAPE (nb, nq, ch));
  t[1] = rnd (3.0f, 0.0f, SHAPE (nb, nk, ch));
  t[2] = rnd (1.0f, 0.0f, SHAPE (nb, nk, ch));
  t[3] = zeros (SHAPE (nb, nq, ch));
  t[4] = want_probs ? zeros (SHAPE (nb, heads, nq, nk)) : (DsTensor){ 0 };
  DsOpCall c = { .op = DS_OP_ATTENTION, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3],
                 .dst2 = want_probs ? &t[4] : NULL };
  c.p.attention.heads = heads;
  c.p.attention.scale = 1.0f / sqrtf ((float) d);
  c.p.attention.causal = causal;
  check_case (label, &c, TOL_GEMM);
  free_all (t, 5);
}

/* A q that starts one element into its buffer (a view) cannot feed the fused
 * kernel's 16-byte copies: the backend must take the materialised path, and
 * the emulator traps a misaligned cp.async, so a wrong choice fails here. */
static void
attention_misaligned_case (void)
{
  const int64_t nb = 2, nq = 70, nk = 50, heads = 2, d = 64, ch = heads * d;
  DsTensor t[4];
  t[0] = rnd (3.0f, 0.0f, SHAPE (nb, nq, ch));
  t[1] = rnd (3.0f, 0.0f, SHAPE (nb, nk, ch));
  t[2] = rnd (1.0f, 0.0f, SHAPE (nb, nk, ch));
  t[3] = zeros (SHAPE (nb, nq, ch));
  DsOpCall hc = { .op = DS_OP_ATTENTION, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3] };
  hc.p.attention.heads = (int) heads;
  hc.p.attention.scale = 0.125f;
  DsError err = { 0 };
  DsTensor buf, q, k = dev_upload (&t[1]), v = dev_upload (&t[2]), o = dev_nan (&t[3]);
  DS_CHECK_OK (gpu->tensor_alloc (gpu, &buf, case_dt, 1, (int64_t[]){ nb * nq * ch + 8 }, &err),
               &err);
  q = ds_tensor_make (case_dt, 3, t[0].shape);
  q.device = buf.device;
  q.data = (char *) buf.data + ds_dtype_size (case_dt);
  DS_CHECK_OK (ds_backend_upload_f32 (gpu, &q, ds_tensor_f32 (&t[0]), &err), &err);
  DsOpCall dc = hc;
  dc.src[0] = &q, dc.src[1] = &k, dc.src[2] = &v, dc.dst = &o;
  DS_CHECK_OK (ds_op_run (gpu, &dc, &err), &err);
  DS_CHECK_OK (ds_op_run (cpu, &hc, &err), &err);
  compare ("attention", "D 64, q one element off alignment", "out", &o, &t[3], TOL_GEMM, 0, 0);
  gpu->tensor_free (gpu, &buf);
  gpu->tensor_free (gpu, &k);
  gpu->tensor_free (gpu, &v);
  gpu->tensor_free (gpu, &o);
  free_all (t, 4);
}

static void
test_softmax_attention (void)
{
  printf ("softmax, attention\n");
  softmax_case ("cross maps [2, 20, 256, 77]", SHAPE (2, 20, 256, 77), 4.0f, false);
  softmax_case ("[10, 4096]", SHAPE (10, 4096), 4.0f, false);
  softmax_case ("large logits (x30)", SHAPE (6, 333), 30.0f, false);
  softmax_case ("in place [4, 33]", SHAPE (4, 33), 2.0f, true);
  softmax_case ("one column", SHAPE (3, 1), 1.0f, false);

  attention_case ("SD self 5 heads 4096x4096 (3 query blocks)", 2, 4096, 4096, 5, 64, false,
                  false);
  attention_case ("SD self 10 heads 1024x1024 + probs", 2, 1024, 1024, 10, 64, false, true);
  attention_case ("SD cross 20 heads 256x77 + probs", 2, 256, 77, 20, 64, false, true);
  attention_case ("SD cross 5 heads 4096x77", 2, 4096, 77, 5, 64, false, false);
  attention_case ("CLIP causal 16 heads 77x77 + probs", 2, 77, 77, 16, 64, true, true);
  attention_case ("CLIP causal 16 heads 77x77", 2, 77, 77, 16, 64, true, false);
  attention_case ("causal 16 heads 1500x1500 (uneven blocks)", 1, 1500, 1500, 16, 8, true, false);
  attention_case ("causal Nq < Nk 50x80 + probs", 2, 50, 80, 3, 16, true, true);
  attention_case ("one head, D = C = 40", 3, 33, 21, 1, 40, false, true);
  attention_case ("one key", 2, 9, 1, 2, 8, false, true);
  /* shapes for the fused kernel's edges (head size 64, no probs): partial
   * query and key tiles, causal with Nq != Nk, a single key, several tiles */
  attention_case ("D 64: 3 heads 200x150", 2, 200, 150, 3, 64, false, false);
  attention_case ("D 64: causal 130x130", 1, 130, 130, 2, 64, true, false);
  attention_case ("D 64: causal Nq < Nk 70x200", 2, 70, 200, 1, 64, true, false);
  attention_case ("D 64: one key", 1, 65, 1, 2, 64, false, false);
  attention_case ("D 64: 1 query, 300 keys", 3, 1, 300, 4, 64, false, false);
  attention_case ("D 64: 8 heads 256x256", 1, 256, 256, 8, 64, false, false);
  attention_misaligned_case ();
}

static void
unary_case (const char *label, DsOp op, int ndim, const int64_t *shape, float s, bool in_place,
            double tol)
{
  DsTensor t[2];
  t[0] = rnd (4.0f, 0.0f, ndim, shape);
  t[1] = zeros (ndim, shape);
  DsOpCall c = { .op = op, .src = { &t[0] }, .dst = in_place ? &t[0] : &t[1] };
  c.p.scale.s = s;
  check_case (label, &c, tol);
  free_all (t, 2);
}

static void
binary_case (const char *label, DsOp op, int nda, const int64_t *sa, int ndb, const int64_t *sb,
             int alias)
{
  DsTensor t[3];
  t[0] = rnd (2.0f, 0.0f, nda, sa);
  t[1] = rnd (2.0f, 0.0f, ndb, sb);
  t[2] = zeros (nda, sa);
  /* alias: 0 a fresh y, 1 y is a, 2 y is b */
  DsOpCall c = { .op = op, .src = { &t[0], &t[1] }, .dst = &t[alias ? alias - 1 : 2] };
  check_case (label, &c, TOL_EXACT);
  free_all (t, 3);
}

static void
test_elementwise (void)
{
  printf ("gelu, quick_gelu, silu, scale, geglu, add, mul\n");
  unary_case ("[2, 4096, 1280]", DS_OP_GELU, SHAPE (2, 4096, 1280), 0, false, TOL_MAP);
  unary_case ("in place [5, 7]", DS_OP_GELU, SHAPE (5, 7), 0, true, TOL_MAP);
  unary_case ("CLIP mlp [2, 77, 4096]", DS_OP_QUICK_GELU, SHAPE (2, 77, 4096), 0, false, TOL_MAP);
  unary_case ("[2, 320, 64, 64]", DS_OP_SILU, SHAPE (2, 320, 64, 64), 0, false, TOL_MAP);
  unary_case ("in place temb [2, 1280]", DS_OP_SILU, SHAPE (2, 1280), 0, true, TOL_MAP);
  unary_case ("x 0.18215", DS_OP_SCALE, SHAPE (2, 4, 64, 64), 0.18215f, false, TOL_EXACT);
  unary_case ("in place x -3", DS_OP_SCALE, SHAPE (3, 11), -3.0f, true, TOL_EXACT);

  struct { const char *label; int64_t rows, f; bool bias; } gg[] = {
    { "SD [2, 4096, 2560] -> 1280", 2 * 4096, 1280, false },
    { "SD with bias [2, 4096, 2560] -> 1280", 2 * 4096, 1280, true },
    { "[3, 10] -> 5", 3, 5, false },
    { "with bias [3, 10] -> 5", 3, 5, true },
  };
  for (size_t i = 0; i < sizeof gg / sizeof gg[0]; i++)
    {
      DsTensor t[3];
      t[0] = rnd (3.0f, 0.0f, SHAPE (gg[i].rows, 2 * gg[i].f));
      t[1] = zeros (SHAPE (gg[i].rows, gg[i].f));
      t[2] = gg[i].bias ? rnd (0.5f, 0.0f, SHAPE (2 * gg[i].f)) : (DsTensor){ 0 };
      DsOpCall c = { .op = DS_OP_GEGLU, .src = { &t[0], gg[i].bias ? &t[2] : NULL },
                     .dst = &t[1] };
      check_case (gg[i].label, &c, TOL_MAP);
      free_all (t, 3);
    }

  binary_case ("same shape", DS_OP_ADD, SHAPE (2, 320, 64, 64), SHAPE (2, 320, 64, 64), 0);
  binary_case ("bias over last dim [2, 4096, 320] + [320]", DS_OP_ADD, SHAPE (2, 4096, 320),
               SHAPE (320), 0);
  binary_case ("temb [2, 320, 64, 64] + [2, 320]", DS_OP_ADD, SHAPE (2, 320, 64, 64),
               SHAPE (2, 320), 0);
  binary_case ("leading [4, 3, 5] + [4]", DS_OP_ADD, SHAPE (4, 3, 5), SHAPE (4), 0);
  binary_case ("both fit [3, 5, 3] + [3]: last dim", DS_OP_ADD, SHAPE (3, 5, 3), SHAPE (3), 0);
  binary_case ("in place y = a", DS_OP_ADD, SHAPE (2, 77, 1024), SHAPE (2, 77, 1024), 1);
  binary_case ("in place y = b", DS_OP_ADD, SHAPE (7, 9), SHAPE (7, 9), 2);
  binary_case ("in place bias y = a", DS_OP_ADD, SHAPE (2, 77, 1024), SHAPE (1024), 1);
  binary_case ("[2, 4096, 320]", DS_OP_MUL, SHAPE (2, 4096, 320), SHAPE (2, 4096, 320), 0);
  binary_case ("in place y = a", DS_OP_MUL, SHAPE (13, 3), SHAPE (13, 3), 1);
  binary_case ("in place y = b", DS_OP_MUL, SHAPE (13, 3), SHAPE (13, 3), 2);
}

static void
concat_case (const char *label, int ndim, const int64_t *sa, const int64_t *sb, int dim)
{
  int64_t sy[DS_MAX_DIMS];
  for (int i = 0; i < ndim; i++)
    sy[i] = i == dim ? sa[i] + sb[i] : sa[i];
  DsTensor t[3];
  t[0] = rnd (1.0f, 0.0f, ndim, sa);
  t[1] = rnd (1.0f, 0.0f, ndim, sb);
  t[2] = zeros (ndim, sy);
  DsOpCall c = { .op = DS_OP_CONCAT, .src = { &t[0], &t[1] }, .dst = &t[2] };
  c.p.concat.dim = dim;
  check_case (label, &c, TOL_MOVE);
  free_all (t, 3);
}

static void
permute_case (const char *label, int ndim, const int64_t *shape, const int *perm)
{
  int64_t sy[DS_MAX_DIMS];
  for (int i = 0; i < ndim; i++)
    sy[i] = shape[perm[i]];
  DsTensor t[2];
  t[0] = rnd (1.0f, 0.0f, ndim, shape);
  t[1] = zeros (ndim, sy);
  DsOpCall c = { .op = DS_OP_PERMUTE, .src = { &t[0] }, .dst = &t[1] };
  for (int i = 0; i < DS_MAX_DIMS; i++)
    c.p.permute.perm[i] = i < ndim ? perm[i] : i;
  check_case (label, &c, TOL_MOVE);
  free_all (t, 2);
}

static void
mean_heads_case (const char *label, int ndim, const int64_t *shape)
{
  int64_t sy[DS_MAX_DIMS];
  memcpy (sy, shape, (size_t) ndim * sizeof *sy);
  sy[1] = 1;
  DsTensor t[2];
  t[0] = rnd (1.0f, 0.5f, ndim, shape);
  t[1] = zeros (ndim, sy);
  DsOpCall c = { .op = DS_OP_MEAN_HEADS, .src = { &t[0] }, .dst = &t[1] };
  check_case (label, &c, TOL_MAP);
  free_all (t, 2);
}

static void
test_mean_heads (void)
{
  printf ("mean_heads\n");
  mean_heads_case ("SD cross maps [2, 20, 256, 77]", 4, (int64_t[]){ 2, 20, 256, 77 });
  mean_heads_case ("SD cross maps [2, 5, 4096, 77]", 4, (int64_t[]){ 2, 5, 4096, 77 });
  mean_heads_case ("one head [3, 1, 5, 4]", 4, (int64_t[]){ 3, 1, 5, 4 });
  mean_heads_case ("3-D [4, 7, 9]", 3, (int64_t[]){ 4, 7, 9 });
}

static void
test_data_movement (void)
{
  printf ("concat, upsample, permute\n");
  concat_case ("UNet skip, dim 1", 4, (int64_t[]){ 2, 640, 32, 32 }, (int64_t[]){ 2, 320, 32, 32 },
               1);
  concat_case ("dim 0", 3, (int64_t[]){ 2, 77, 1024 }, (int64_t[]){ 1, 77, 1024 }, 0);
  concat_case ("last dim", 4, (int64_t[]){ 2, 3, 4, 5 }, (int64_t[]){ 2, 3, 4, 7 }, 3);
  concat_case ("dim 1 of 3-D", 3, (int64_t[]){ 3, 2, 6 }, (int64_t[]){ 3, 5, 6 }, 1);

  struct { const char *label; int64_t b, c, h, w; } up[] = {
    { "SD [2, 1280, 8, 8]", 2, 1280, 8, 8 },
    { "SD [2, 640, 32, 32]", 2, 640, 32, 32 },
    { "odd [1, 3, 5, 7]", 1, 3, 5, 7 },
  };
  for (size_t i = 0; i < sizeof up / sizeof up[0]; i++)
    {
      DsTensor t[2];
      t[0] = rnd (1.0f, 0.0f, SHAPE (up[i].b, up[i].c, up[i].h, up[i].w));
      t[1] = zeros (SHAPE (up[i].b, up[i].c, 2 * up[i].h, 2 * up[i].w));
      DsOpCall c = { .op = DS_OP_UPSAMPLE_NEAREST2X, .src = { &t[0] }, .dst = &t[1] };
      check_case (up[i].label, &c, TOL_MOVE);
      free_all (t, 2);
    }

  permute_case ("SD [2, 320, 4096] -> [2, 4096, 320]", 3, (int64_t[]){ 2, 320, 4096 },
                (int[]){ 0, 2, 1 });
  permute_case ("[2, 4096, 320] -> [2, 320, 4096]", 3, (int64_t[]){ 2, 4096, 320 },
                (int[]){ 0, 2, 1 });
  permute_case ("heads [2, 77, 16, 64] -> [2, 16, 77, 64]", 4, (int64_t[]){ 2, 77, 16, 64 },
                (int[]){ 0, 2, 1, 3 });
  permute_case ("[2, 3, 4, 5] by (3, 1, 0, 2)", 4, (int64_t[]){ 2, 3, 4, 5 },
                (int[]){ 3, 1, 0, 2 });
  permute_case ("2-D transpose [33, 65]", 2, (int64_t[]){ 33, 65 }, (int[]){ 1, 0 });
  permute_case ("last two swapped, partial tiles [3, 37, 45]", 3, (int64_t[]){ 3, 37, 45 },
                (int[]){ 0, 2, 1 });
  permute_case ("last two swapped, 4-D [2, 5, 33, 70]", 4, (int64_t[]){ 2, 5, 33, 70 },
                (int[]){ 0, 1, 3, 2 });
  permute_case ("first and last swapped [4, 6, 9] (not a batched transpose)", 3,
                (int64_t[]){ 4, 6, 9 }, (int[]){ 2, 1, 0 });
  permute_case ("1-D identity", 1, (int64_t[]){ 7 }, (int[]){ 0 });
}

static void
timestep_case (const char *label, const float *ts, int64_t nb, int64_t dim, bool flip,
               float shift, float max_period)
{
  DsTensor t[2];
  t[0] = zeros (SHAPE (nb));
  memcpy (t[0].data, ts, (size_t) nb * sizeof *ts);
  round_to_case (ds_tensor_f32 (&t[0]), nb);
  t[1] = zeros (SHAPE (nb, dim));
  DsOpCall c = { .op = DS_OP_TIMESTEP_EMBEDDING, .src = { &t[0] }, .dst = &t[1] };
  c.p.timestep.flip_sin_to_cos = flip;
  c.p.timestep.freq_shift = shift;
  c.p.timestep.max_period = max_period;
  check_case (label, &c, TOL_GEMM);
  free_all (t, 2);
}

static void
embedding_case (const char *label, int64_t v, int64_t ch, int nd, const int64_t *ids_shape)
{
  int64_t ys[DS_MAX_DIMS];
  memcpy (ys, ids_shape, (size_t) nd * sizeof *ys);
  ys[nd] = ch;
  DsTensor t[3];
  t[0] = rnd_ids (v, nd, ids_shape);
  t[1] = rnd (1.0f, 0.0f, SHAPE (v, ch));
  t[2] = zeros (nd + 1, ys);
  DsOpCall c = { .op = DS_OP_EMBEDDING, .src = { &t[0], &t[1] }, .dst = &t[2] };
  check_case (label, &c, TOL_MOVE);
  free_all (t, 3);
}

/* An id outside the table fails with DS_ERR_INVALID, as on the CPU, and
 * writes nothing. */
static void
test_embedding_bad_ids (void)
{
  const int32_t bad[][4] = { { 1, 2, -1, 3 }, { 0, 10, 1, 2 }, { 0, 1, 2, 2147483647 } };
  DsTensor table = rnd (1.0f, 0.0f, SHAPE (10, 6));
  DsTensor dtable = dev_upload (&table);
  for (int i = 0; i < 3; i++)
    {
      DsTensor ids = host_new (DS_DTYPE_I32, SHAPE (4));
      memcpy (ids.data, bad[i], sizeof bad[i]);
      DsTensor y = zeros (SHAPE (4, 6));
      DsTensor dids = dev_upload (&ids), dy = dev_nan (&y);
      DsError err = { 0 };
      DsStatus st = ds_embedding (gpu, &dids, &dtable, &dy, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "outside the table");
      DsError cerr = { 0 };
      DS_CHECK_STATUS (ds_embedding (cpu, &ids, &table, &y, &cerr), DS_ERR_INVALID, &cerr);
      DS_CHECK (strcmp (err.message, cerr.message) == 0, "CUDA \"%s\", CPU \"%s\"", err.message,
                cerr.message);
      float *got = dev_download (&dy);
      bool untouched = true;
      for (int j = 0; j < 24; j++)
        untouched &= isnan (got[j]);
      DS_CHECK (untouched, "embedding with a bad id wrote its output");
      printf ("  bad id case %d: %s\n", i, err.message);
      free (got);
      gpu->tensor_free (gpu, &dids);
      gpu->tensor_free (gpu, &dy);
      ds_tensor_free (&ids);
      ds_tensor_free (&y);
    }
  gpu->tensor_free (gpu, &dtable);
  ds_tensor_free (&table);
}

static void
test_embeddings (void)
{
  printf ("timestep_embedding, embedding\n");
  timestep_case ("SD 2.1: 320, flip, shift 0, t 999 and 50", (float[]){ 999, 50 }, 2, 320, true,
                 0.0f, 10000.0f);
  timestep_case ("odd dim 7, no flip, shift 1", (float[]){ 0, 1, 500.5f, 999 }, 4, 7, false, 1.0f,
                 10000.0f);
  timestep_case ("dim 1 (zero column only)", (float[]){ 3 }, 1, 1, true, 0.0f, 10000.0f);
  timestep_case ("1280, max period 100", (float[]){ 12.5f, 0.25f, 700 }, 3, 1280, false, 0.0f,
                 100.0f);

  embedding_case ("CLIP tokens [2, 77] of [49408, 1024]", 49408, 1024, 2, (int64_t[]){ 2, 77 });
  embedding_case ("positions [1, 77] of [77, 1024]", 77, 1024, 2, (int64_t[]){ 1, 77 });
  embedding_case ("[5] of [10, 3]", 10, 3, 1, (int64_t[]){ 5 });
  if (case_dt == DS_DTYPE_F32)
    test_embedding_bad_ids ();
}

/* ---- the decoder's ops (LLaMA) ---- */

static void
rms_norm_case (const char *label, int ndim, const int64_t *shape, float eps, float shift,
               bool in_place)
{
  DsTensor t[3];
  t[0] = rnd (1.5f, shift, ndim, shape);
  t[1] = rnd (0.5f, 1.0f, SHAPE (shape[ndim - 1]));
  t[2] = zeros (ndim, shape);
  DsOpCall c = { .op = DS_OP_RMS_NORM, .src = { &t[0], &t[1] },
                 .dst = in_place ? &t[0] : &t[2] };
  c.p.rms_norm.eps = eps;
  check_case (label, &c, TOL_MAP);
  free_all (t, 3);
}

/* x [nb, n, heads*d] at positions p0, p0 + step, ... */
static void
rope_case (const char *label, int64_t nb, int64_t n, int heads, int64_t d, int32_t p0,
           int32_t step, float theta, bool in_place)
{
  DsTensor t[3];
  t[0] = rnd (2.0f, 0.0f, SHAPE (nb, n, heads * d));
  t[1] = host_new (DS_DTYPE_I32, SHAPE (n));
  for (int64_t i = 0; i < n; i++)
    ((int32_t *) t[1].data)[i] = p0 + (int32_t) i * step;
  t[2] = zeros (SHAPE (nb, n, heads * d));
  DsOpCall c = { .op = DS_OP_ROPE, .src = { &t[0], &t[1] }, .dst = in_place ? &t[0] : &t[2] };
  c.p.rope.heads = heads;
  c.p.rope.theta = theta;
  check_case (label, &c, TOL_MAP);
  free_all (t, 3);
}

/* nq queries at positions q_pos.. over a cache of nk keys (q_pos + nq <= nk:
 * the keys past the last query's position must not be read). Up to 16
 * queries run the split-K kernel (a second launch combines the chunks of
 * 256 keys when a row sees more than 256), more the GEMM path (2 * group
 * GEMMs and a softmax per block of query rows). */
static void
attention_kv_case (const char *label, int64_t nb, int64_t nq, int64_t nk, int heads, int kv_heads,
                   int64_t d, int64_t q_pos)
{
  DsTensor t[4];
  t[0] = rnd (3.0f, 0.0f, SHAPE (nb, nq, heads * d));
  t[1] = rnd (3.0f, 0.0f, SHAPE (nb, nk, kv_heads * d));
  t[2] = rnd (1.0f, 0.0f, SHAPE (nb, nk, kv_heads * d));
  t[3] = zeros (SHAPE (nb, nq, heads * d));
  DsOpCall c = { .op = DS_OP_ATTENTION_KV, .src = { &t[0], &t[1], &t[2] }, .dst = &t[3] };
  c.p.attention_kv.heads = heads;
  c.p.attention_kv.kv_heads = kv_heads;
  c.p.attention_kv.scale = 1.0f / sqrtf ((float) d);
  c.p.attention_kv.q_pos = q_pos;
  check_case (label, &c, TOL_GEMM);
  if (case_device_ops >= 0)
    {
      const long long want = nq > 16 ? -1 : q_pos + nq > 256 ? 2 : 1;
      if (want > 0)
        DS_CHECK (case_device_ops == want, "%s: %lld launches, expected %lld", label,
                  case_device_ops, want);
      else
        DS_CHECK (case_device_ops >= 3, "%s: %lld device operations, expected GEMMs and a softmax",
                  label, case_device_ops);
    }
  free_all (t, 4);
}

/* One query at position p of a cache of nk rows, the position read on the
 * device: against the CPU, and bit for bit against the same query given
 * q_pos = p with only the p + 1 rows it sees (what an eager decode step
 * passes); one launch up to 256 keys seen, two past them. */
static void
attention_kv_at_case (const char *label, int64_t nk, int heads, int kv_heads, int64_t d,
                      int32_t p)
{
  DsTensor t[5];
  t[0] = rnd (3.0f, 0.0f, SHAPE (1, 1, heads * d));
  t[1] = rnd (3.0f, 0.0f, SHAPE (1, nk, kv_heads * d));
  t[2] = rnd (1.0f, 0.0f, SHAPE (1, nk, kv_heads * d));
  t[3] = zeros (SHAPE (1, 1, heads * d));
  t[4] = host_new (DS_DTYPE_I32, SHAPE (1));
  *(int32_t *) t[4].data = p;
  DsOpCall c = { .op = DS_OP_ATTENTION_KV, .src = { &t[0], &t[1], &t[2], &t[4] },
                 .dst = &t[3] };
  c.p.attention_kv.heads = heads;
  c.p.attention_kv.kv_heads = kv_heads;
  c.p.attention_kv.scale = 1.0f / sqrtf ((float) d);
  check_case (label, &c, TOL_GEMM);
  if (case_device_ops >= 0)
    DS_CHECK (case_device_ops == (nk > 256 ? 2 : 1), "%s: %lld launches, expected %d", label,
              case_device_ops, nk > 256 ? 2 : 1);

  DsError err = { 0 };
  DsTensor q = dev_upload (&t[0]), k = dev_upload (&t[1]), v = dev_upload (&t[2]);
  DsTensor pos = dev_upload (&t[4]), o_at = dev_nan (&t[3]), o_fixed = dev_nan (&t[3]);
  const int64_t ckv = kv_heads * d;
  DsTensor k_seen = ds_tensor_reshape (&k, 2, (int64_t[]){ nk, ckv });
  DsTensor v_seen = ds_tensor_reshape (&v, 2, (int64_t[]){ nk, ckv });
  k_seen = ds_tensor_slice0 (&k_seen, 0, p + 1);
  v_seen = ds_tensor_slice0 (&v_seen, 0, p + 1);
  k_seen = ds_tensor_reshape (&k_seen, 3, (int64_t[]){ 1, p + 1, ckv });
  v_seen = ds_tensor_reshape (&v_seen, 3, (int64_t[]){ 1, p + 1, ckv });
  const float scale = 1.0f / sqrtf ((float) d);
  DS_CHECK_OK (ds_attention_kv_at (gpu, &q, &k, &v, heads, kv_heads, scale, &pos, &o_at, &err),
               &err);
  DS_CHECK_OK (ds_attention_kv (gpu, &q, &k_seen, &v_seen, heads, kv_heads, scale, p, &o_fixed,
                                &err),
               &err);
  float *a = dev_download (&o_at), *b = dev_download (&o_fixed);
  DS_CHECK (memcmp (a, b, (size_t) (heads * d) * sizeof *a) == 0,
            "%s: the device position gives other bits than q_pos %d", label, (int) p);
  free (a);
  free (b);
  DsTensor *dev[] = { &q, &k, &v, &pos, &o_at, &o_fixed };
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    gpu->tensor_free (gpu, dev[i]);
  free_all (t, 5);
}

/* x [n, ch] into rows pos of y [rows, ch] holding random values, on both
 * backends: the whole of y compared (the rows not written must be kept). */
static void
set_rows_case (const char *label, int64_t n, int64_t ch, int64_t rows, int32_t p0, int32_t step)
{
  DsError err = { 0 };
  DsTensor x = rnd (2.0f, 0.0f, SHAPE (1, n, ch)), y = rnd (1.0f, 5.0f, SHAPE (rows, ch));
  DsTensor pos = host_new (DS_DTYPE_I32, SHAPE (n));
  for (int64_t i = 0; i < n; i++)
    ((int32_t *) pos.data)[i] = (int32_t) ((p0 + i * step) % rows);
  DsTensor dx = dev_upload (&x), dy = dev_upload (&y), dp = dev_upload (&pos);
  const double t0 = now_ms ();
  DS_CHECK_OK (ds_set_rows (gpu, &dx, &dp, &dy, &err), &err);
  DS_CHECK_OK (gpu->synchronize (gpu, &err), &err);
  const double t1 = now_ms ();
  DS_CHECK_OK (ds_set_rows (cpu, &x, &pos, &y, &err), &err);
  op_tested[DS_OP_SET_ROWS] = true;
  compare ("set_rows", label, "out", &dy, &y, TOL_MOVE, t1 - t0, now_ms () - t1);
  /* a row past the end: the CPU refuses before writing, the device skips it */
  ((int32_t *) pos.data)[0] = (int32_t) rows;
  DS_CHECK_OK (gpu->upload (gpu, &dp, pos.data, &err), &err);
  DS_CHECK (ds_set_rows (cpu, &x, &pos, &y, &err) == DS_ERR_INVALID
                && strstr (err.message, "outside"),
            "%s: a row past the end on the CPU: %s", label, err.message);
  memset (&err, 0, sizeof err);
  DS_CHECK_OK (ds_set_rows (gpu, &dx, &dp, &dy, &err), &err);
  compare ("set_rows", label, "skip", &dy, &y, TOL_MOVE, 0, 0);
  gpu->tensor_free (gpu, &dx);
  gpu->tensor_free (gpu, &dy);
  gpu->tensor_free (gpu, &dp);
  ds_tensor_free (&x);
  ds_tensor_free (&y);
  ds_tensor_free (&pos);
}

static void
test_decoder_ops (void)
{
  printf ("rms_norm, rope, attention_kv\n");
  rms_norm_case ("LLaMA decode [1, 1, 4096]", SHAPE (1, 1, 4096), 1e-5f, 0.0f, false);
  rms_norm_case ("LLaMA prefill [1, 37, 4096] in place", SHAPE (1, 37, 4096), 1e-6f, 0.5f, true);
  rms_norm_case ("narrow rows [5, 7], mean 3", SHAPE (5, 7), 1e-5f, 3.0f, false);
  rms_norm_case ("1-D [320], eps 0", SHAPE (320), 0.0f, 0.0f, false);
  rms_norm_case ("[2, 3, 1000]", SHAPE (2, 3, 1000), 1e-5f, -1.0f, false);

  rope_case ("decode: 32 heads D 128 at 4095", 1, 1, 32, 128, 4095, 1, 10000.0f, false);
  rope_case ("prefill in place: 37 tokens from 0", 1, 37, 32, 128, 0, 1, 10000.0f, true);
  rope_case ("kv heads 8 D 128 at 1000..1006", 1, 7, 8, 128, 1000, 1, 10000.0f, false);
  rope_case ("batch 2 shares positions, D 64, theta 5e5", 2, 5, 3, 64, 17, 3, 500000.0f, false);
  rope_case ("D 2 (one pair per head)", 1, 4, 5, 2, 2, 7, 10000.0f, false);
  rope_case ("D 512 (inv_freq on the device)", 1, 3, 2, 512, 0, 6, 10000.0f, false);

  attention_kv_case ("decode LLaMA-2 7B: 32 heads D 128, 4096 keys", 1, 1, 4096, 32, 32, 128,
                     4095);
  attention_kv_case ("decode GQA 32/8 D 128 at 3000 of a 4096 cache", 1, 1, 4096, 32, 8, 128,
                     3000);
  attention_kv_case ("decode, one chunk: 4 heads D 64 at 99", 1, 1, 100, 4, 4, 64, 99);
  attention_kv_case ("decode at position 0 (one key)", 1, 1, 8, 2, 1, 64, 0);
  attention_kv_case ("decode, 256 keys: exactly one chunk", 1, 1, 256, 2, 2, 32, 255);
  attention_kv_case ("decode, 257 keys: a 1-key second chunk", 1, 1, 300, 2, 2, 32, 256);
  attention_kv_case ("5 queries at 250 across a chunk edge, GQA 6/2 D 32", 1, 5, 300, 6, 2, 32,
                     250);
  attention_kv_case ("16 queries, batch 2, MQA 4/1 D 16 at 600", 2, 16, 700, 4, 1, 16, 600);
  attention_kv_case ("decode D 256, batch 3", 3, 1, 520, 2, 1, 256, 519);
  attention_kv_case ("prefill 64 from 0, GQA 8/2 D 64", 1, 64, 64, 8, 2, 64, 0);
  attention_kv_case ("prefill chunk of 37 at 100, cache 200, D 128", 1, 37, 200, 4, 4, 128, 100);
  attention_kv_case ("prefill batch 2 MQA 4/1 D 16, 20 at 30", 2, 20, 50, 4, 1, 16, 30);
  attention_kv_case ("prefill 128 at 3968 of 4096, 8 heads D 128", 1, 128, 4096, 8, 8, 128, 3968);

  attention_kv_at_case ("at device pos 17 of a 4096 cache, 32 heads D 128", 4096, 32, 32, 128, 17);
  attention_kv_at_case ("at device pos 3000 of 4096, GQA 32/8 D 128", 4096, 32, 8, 128, 3000);
  attention_kv_at_case ("at device pos 255 of 300 (one chunk seen)", 300, 2, 2, 32, 255);
  attention_kv_at_case ("at device pos 256 of 300 (two chunks seen)", 300, 2, 2, 32, 256);
  attention_kv_at_case ("at device pos 0 of a 200 cache, MQA 4/1 D 64", 200, 4, 1, 64, 0);

  set_rows_case ("a decode step's kv row: 1 x 1024 into row 37 of 4096", 1, 1024, 4096, 37, 1);
  set_rows_case ("5 rows x 96, scattered", 5, 96, 40, 3, 7);
  set_rows_case ("3 rows x 1 into the last rows", 3, 1, 3, 0, 1);
}

/* ---- the backend itself ---- */

static void
test_backend_basics (void)
{
  printf ("backend: %s\n", gpu->name);
  DS_CHECK (strncmp (gpu->name, "CUDA · ", strlen ("CUDA · ")) == 0, "name \"%s\"", gpu->name);
  DS_CHECK (strlen (gpu->name) > strlen ("CUDA · "), "name has the device");
  DS_CHECK (gpu->device == DS_DEVICE_CUDA, "device %d", (int) gpu->device);
  for (int op = 0; op < DS_OP_COUNT; op++)
    DS_CHECK (gpu->supports (gpu, (DsOp) op), "supports %s", ds_op_name ((DsOp) op));

  DsError err = { 0 };
  /* Allocation is zeroed; upload and download round-trip exactly. */
  DsTensor h = rnd (1e30f, 0.0f, SHAPE (3, 1000)), d = dev_new (&h);
  DS_CHECK (d.device == DS_DEVICE_CUDA && d.owned && d.data, "device tensor");
  float *z = dev_download (&d);
  bool all_zero = true;
  for (int64_t i = 0; i < ds_tensor_numel (&h); i++)
    all_zero &= z[i] == 0.0f;
  DS_CHECK (all_zero, "tensor_alloc zeroes device memory");
  DS_CHECK_OK (gpu->upload (gpu, &d, h.data, &err), &err);
  float *back = dev_download (&d);
  DS_CHECK (memcmp (back, h.data, ds_tensor_nbytes (&h)) == 0, "upload/download round trip");
  free (z);
  free (back);
  gpu->tensor_free (gpu, &d);
  DS_CHECK (d.data == NULL && !d.owned, "tensor_free clears the struct");
  ds_tensor_free (&h);

  /* A zero-sized tensor is fine end to end. */
  DsTensor e;
  DS_CHECK_OK (gpu->tensor_alloc (gpu, &e, DS_DTYPE_F32, 2, (int64_t[]){ 0, 5 }, &err), &err);
  DS_CHECK_OK (gpu->upload (gpu, &e, "", &err), &err);
  DS_CHECK_OK (ds_silu (gpu, &e, &e, &err), &err);
  gpu->tensor_free (gpu, &e);

  /* Out of device memory is an error naming the sizes, and the backend goes on. */
  DsTensor huge;
  DsStatus st = gpu->tensor_alloc (gpu, &huge, DS_DTYPE_F32, 2, (int64_t[]){ 1 << 20, 1 << 20 },
                                   &err);
  DS_CHECK_STATUS (st, DS_ERR_DEVICE, &err);
  DS_CHECK_CONTAINS (err.message, "out of device memory");
  DS_CHECK_CONTAINS (err.message, "MiB free");
  DS_CHECK_CONTAINS (err.message, "[1048576, 1048576]");
  printf ("  out of memory: %s\n", err.message);
  DsTensor small = rnd (1.0f, 0.0f, SHAPE (4, 4)), ds = dev_upload (&small);
  DS_CHECK_OK (ds_scale (gpu, &ds, 2.0f, &ds, &err), &err);
  float *twice = dev_download (&ds);
  DS_CHECK (twice[5] == 2.0f * ds_tensor_f32 (&small)[5], "backend works after out of memory");
  free (twice);
  gpu->tensor_free (gpu, &ds);
  ds_tensor_free (&small);

  DsArena big;
  DS_CHECK_STATUS (ds_backend_arena_init (gpu, &big, (size_t) 1 << 50, &err), DS_ERR_DEVICE, &err);
  DS_CHECK_CONTAINS (err.message, "activation arena");
  DS_CHECK_CONTAINS (err.message, "out of device memory");
  DS_CHECK (big.base == NULL && big.size == 0, "failed arena left empty");
}

/* linear -> SiLU (in place) -> layer norm, all in a device arena of a backend
 * computing in case_dt, against the same chain on the CPU. */
static void
test_device_arena (void)
{
  printf ("device arena (%s)\n", ds_dtype_name (case_dt));
  DsError err = { 0 };
  DsArena arena;
  DsBackend *f32 = gpu;
  gpu = ds_backend_cuda_new (0, case_dt, &err);
  DS_CHECK (gpu && gpu->act_dtype == case_dt, "backend computing in %s", ds_dtype_name (case_dt));
  DS_CHECK_OK (ds_backend_arena_init (gpu, &arena, (size_t) 64 << 20, &err), &err);
  if (err.code)
    {
      ds_backend_free (gpu);
      gpu = f32;
      return;
    }
  DS_CHECK (arena.device == DS_DEVICE_CUDA && arena.base && arena.size == (size_t) 64 << 20
              && arena.dtype == case_dt,
            "arena fields");
  DsTensor x = rnd (1.0f, 0.0f, SHAPE (2, 77, 1024)), w = rnd (0.03f, 0.0f, SHAPE (320, 1024));
  DsTensor b = rnd (0.1f, 0.0f, SHAPE (320)), g = rnd (0.5f, 1.0f, SHAPE (320));
  DsTensor beta = rnd (0.1f, 0.0f, SHAPE (320));
  DsTensor h = zeros (SHAPE (2, 77, 320)), y = zeros (SHAPE (2, 77, 320));

  DsTensor dx, dh, dy;
  DsTensor dw = dev_upload (&w), db = dev_upload (&b);
  DsTensor dg = dev_upload (&g), dbe = dev_upload (&beta);
  DS_CHECK_OK (ds_arena_act (&arena, &dx, &err, 3, (int64_t) 2, (int64_t) 77, (int64_t) 1024),
               &err);
  DS_CHECK_OK (ds_arena_act (&arena, &dh, &err, 3, (int64_t) 2, (int64_t) 77, (int64_t) 320), &err);
  DS_CHECK_OK (ds_arena_act (&arena, &dy, &err, 3, (int64_t) 2, (int64_t) 77, (int64_t) 320), &err);
  DS_CHECK (dx.device == DS_DEVICE_CUDA && dx.dtype == case_dt, "arena tensors are CUDA %s",
            ds_dtype_name (case_dt));
  DS_CHECK_OK (ds_backend_upload_f32 (gpu, &dx, ds_tensor_f32 (&x), &err), &err);
  DS_CHECK_OK (ds_linear (gpu, &dx, &dw, &db, &dh, &err), &err);
  DS_CHECK_OK (ds_silu (gpu, &dh, &dh, &err), &err);
  DS_CHECK_OK (ds_layer_norm (gpu, &dh, &dg, &dbe, 1e-5f, &dy, &err), &err);

  DS_CHECK_OK (ds_linear (cpu, &x, &w, &b, &h, &err), &err);
  DS_CHECK_OK (ds_silu (cpu, &h, &h, &err), &err);
  DS_CHECK_OK (ds_layer_norm (cpu, &h, &g, &beta, 1e-5f, &y, &err), &err);
  compare ("chain", "linear, silu, layer norm in a device arena", "out", &dy, &y, TOL_GEMM, 0, 0);

  DsTensor *dev[] = { &dw, &db, &dg, &dbe };
  for (int i = 0; i < 4; i++)
    gpu->tensor_free (gpu, dev[i]);
  DsTensor host[] = { x, w, b, g, beta, h, y };
  free_all (host, 7);
  ds_backend_arena_free (gpu, &arena);
  DS_CHECK (arena.base == NULL && arena.size == 0, "arena freed");
  ds_backend_free (gpu);
  gpu = f32;
}

/* Bad device indices fail cleanly, with or without a GPU. */
static void
test_bad_devices (int count)
{
  const int bad[] = { -1, count, count + 7 };
  for (int i = 0; i < 3; i++)
    {
      DsError err = { 0 };
      DsBackend *be = ds_backend_cuda_new (bad[i], DS_DTYPE_F16, &err);
      DS_CHECK (be == NULL, "device %d gives no backend", bad[i]);
      DS_CHECK_STATUS (err.code, DS_ERR_DEVICE, &err);
      DS_CHECK_CONTAINS (err.message, "no CUDA device");
      ds_backend_free (be);
    }
}

int
main (void)
{
  int count = ds_cuda_device_count ();
  test_bad_devices (count);
  if (count <= 0)
    {
      DsError err = { 0 };
      DsBackend *be = ds_backend_cuda_new (0, DS_DTYPE_F16, &err);
      DS_CHECK (be == NULL, "no backend without a device");
      DS_CHECK_STATUS (err.code, DS_ERR_DEVICE, &err);
      DS_CHECK_CONTAINS (err.message, "no CUDA device");
      printf ("no CUDA device answers (%s): skipping\n", err.message);
      ds_backend_free (be);
      return ds_test_finish () ? 1 : DS_TEST_SKIP;
    }

  /* Kernel failures then name their op instead of surfacing at a later copy. */
  setenv ("DS_CUDA_SYNC", "1", 0);
  DsError err = { 0 };
  cpu = ds_backend_cpu_new (&err);
  gpu = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  DS_CHECK (gpu != NULL, "CUDA backend: %s", err.message);
  if (!cpu || !gpu)
    return ds_test_finish ();
  DsCudaDevice dev;
  emulated = ds_cuda_device_info (0, &dev) == 0 && strstr (dev.name, "emulator") != NULL;

  test_backend_basics ();
  printf ("convolutions: %s\n", ds_cuda_backend_conv_path (gpu));
  /* the same backend with im2col + GEMM convolutions, where cuDNN is the default */
  DsBackend *im2col = NULL;
  conv_by_cudnn = strncmp (ds_cuda_backend_conv_path (gpu), "cuDNN", 5) == 0;
  if (conv_by_cudnn)
    {
      setenv ("DS_CUDA_CONV", "im2col", 1);
      im2col = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
      unsetenv ("DS_CUDA_CONV");
      DS_CHECK (im2col != NULL, "im2col backend: %s", err.message);
    }
  /* one whose biased linears are GEMM + bias kernel */
  setenv ("DS_CUDA_LT", "0", 1);
  DsBackend *no_lt = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  unsetenv ("DS_CUDA_LT");
  DS_CHECK (no_lt != NULL, "backend without cuBLASLt: %s", err.message);
  linear_by_lt = true;
  /* and one whose fused attention reads its fragments without ldmatrix */
  setenv ("DS_CUDA_LDMATRIX", "0", 1);
  DsBackend *no_ldmatrix = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  unsetenv ("DS_CUDA_LDMATRIX");
  DS_CHECK (no_ldmatrix != NULL, "backend without ldmatrix: %s", err.message);
  const DsDType dtypes[] = { DS_DTYPE_F32, DS_DTYPE_F16, DS_DTYPE_BF16 };
  for (int i = 0; i < 3; i++)
    {
      case_dt = dtypes[i];
      memset (op_tested, 0, sizeof op_tested);
      test_conv2d ();
      if (case_dt == DS_DTYPE_F16)
        test_conv_plans ();
      if (emulated && im2col && case_dt == DS_DTYPE_F32)
        test_cudnn_fallbacks ();
      if (im2col)
        {
          DsBackend *main_gpu = gpu;
          gpu = im2col;
          printf ("(again with %s)\n", ds_cuda_backend_conv_path (gpu));
          conv_by_cudnn = false;
          test_conv2d ();
          conv_by_cudnn = true;
          gpu = main_gpu;
        }
      test_norms ();
      test_gemms ();
      if (no_lt && case_dt != DS_DTYPE_F32)
        {
          DsBackend *main_gpu = gpu;
          gpu = no_lt;
          linear_by_lt = false;
          printf ("(again with DS_CUDA_LT=0)\n");
          test_gemms ();
          linear_by_lt = true;
          gpu = main_gpu;
        }
      test_softmax_attention ();
      if (no_ldmatrix && case_dt != DS_DTYPE_F32) /* the fused kernel's other path */
        {
          DsBackend *main_gpu = gpu;
          gpu = no_ldmatrix;
          printf ("(again with DS_CUDA_LDMATRIX=0)\n");
          emu_variant_cap = EMU_VARIANT_CAP;
          test_softmax_attention ();
          emu_variant_cap = 0;
          gpu = main_gpu;
        }
      test_elementwise ();
      test_data_movement ();
      test_mean_heads ();
      test_embeddings ();
      test_decoder_ops ();
      test_device_arena ();
      for (int op = 0; op < DS_OP_COUNT; op++)
        DS_CHECK (op_tested[op], "op %s has no %s case", ds_op_name ((DsOp) op),
                  ds_dtype_name (case_dt));
    }

  ds_backend_free (im2col);
  ds_backend_free (no_ldmatrix);
  ds_backend_free (no_lt);
  ds_backend_free (gpu);
  ds_backend_free (cpu);
  return ds_test_finish ();
}
