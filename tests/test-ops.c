/* test-ops.c: every op of the CPU backend, three ways.
 *
 *  1. Small cases worked out by hand (the arithmetic is in the comments).
 *  2. PyTorch fixtures from tests/reference/gen_ops.py (tests/data/ops/), read
 *     with the engine's safetensors reader and compared by NMSE and max-abs;
 *     the op parameters of each case are repeated here from the generator.
 *  3. Cases big enough to take the chunked paths (conv2d's im2col row blocks,
 *     attention's query-row blocks), checked against direct double-precision
 *     loops written out in this file.
 * Plus the mixed linear (16-bit weights, f32 activations) against the f32
 * linear within a derived rounding bound, and the error paths: an
 * out-of-range embedding id, and an op a backend does not support.
 */
#include "ds-test.h"

#include <stdint.h>
#include <stdlib.h>

#include "ds-ops.h"
#include "ds-safetensors.h"

static DsBackend *be;

#define NDIMS(...) ((int) (sizeof ((int64_t[]){ __VA_ARGS__ }) / sizeof (int64_t)))
/* A new f32 tensor of the given shape, copied from `data` (or zeroed if NULL). */
#define TENSOR(data, ...) tensor_new (data, NDIMS (__VA_ARGS__), (int64_t[]){ __VA_ARGS__ })

static DsTensor
tensor_new (const float *data, int ndim, const int64_t *shape)
{
  DsTensor t;
  DsError err = { 0 };
  if (ds_tensor_alloc (&t, DS_DTYPE_F32, ndim, shape, &err) != DS_OK)
    {
      fprintf (stderr, "allocation failed: %s\n", err.message);
      exit (1);
    }
  if (data)
    memcpy (t.data, data, ds_tensor_nbytes (&t));
  return t;
}

static DsTensor
tensor_like (const DsTensor *t)
{
  return tensor_new (NULL, t->ndim, t->shape);
}

/* Deterministic values in [-1, 1). */
static void
fill_random (DsTensor *t, uint32_t seed)
{
  float *p = ds_tensor_f32 (t);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < ds_tensor_numel (t); i++)
    {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      p[i] = (float) ((double) (s >> 40) / (double) (1ull << 23)) - 1.0f;
    }
}

/* NMSE and max-abs (relative to the largest expected magnitude) of got vs want. */
static void
expect_close (const char *name, const float *got, const float *want, int64_t n,
              double nmse_tol, double abs_tol)
{
  double max_err = 0, max_want = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - want[i]);
      max_err = e > max_err || isnan (e) ? e : max_err;
      max_want = fmax (max_want, fabs (want[i]));
    }
  double nmse = ds_test_nmse (got, want, n);
  DS_CHECK (nmse <= nmse_tol && max_err <= abs_tol * fmax (1.0, max_want),
            "case %s: nmse %.3g (tol %.3g), max abs error %.3g (tol %.3g x %.3g)", name, nmse,
            nmse_tol, max_err, abs_tol, fmax (1.0, max_want));
}

static void
expect_values (const char *name, const DsTensor *got, const float *want)
{
  expect_close (name, ds_tensor_f32 (got), want, ds_tensor_numel (got), 1e-12, 1e-6);
}

/* ------------------------------------------------------------------ */
/* 1. hand-computed cases                                              */

static void
test_names_and_sizes (void)
{
  DS_CHECK (strcmp (ds_op_name (DS_OP_GROUP_NORM), "group_norm") == 0, "group_norm name");
  DS_CHECK (strcmp (ds_op_name (DS_OP_UPSAMPLE_NEAREST2X), "upsample_nearest2x") == 0,
            "upsample name");
  for (int i = 0; i < DS_OP_COUNT; i++)
    for (int j = 0; j < i; j++)
      DS_CHECK (strcmp (ds_op_name ((DsOp) i), ds_op_name ((DsOp) j)) != 0,
                "ops %d and %d share the name %s", i, j, ds_op_name ((DsOp) i));
  DS_CHECK (strcmp (ds_op_name (DS_OP_COUNT), "unknown") == 0, "out of range name");
  /* (in + lo + hi - k) / stride + 1 */
  DS_CHECK (ds_conv2d_out_size (64, 3, 1, 1, 1) == 64, "same conv");
  DS_CHECK (ds_conv2d_out_size (64, 3, 2, 1, 1) == 32, "UNet downsampler");
  DS_CHECK (ds_conv2d_out_size (512, 3, 2, 0, 1) == 256, "VAE downsampler");
  DS_CHECK (ds_conv2d_out_size (3, 5, 1, 0, 0) == 0, "kernel larger than input");
  DS_CHECK (strcmp (be->name, "CPU") == 0 && be->device == DS_DEVICE_CPU, "backend identity");
}

static void
test_conv2d_hand (void)
{
  DsError err = { 0 };
  /* x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]], b = 0.5, stride 1, no pad:
   * y00 = 1+4+12+20 = 37, y01 = 2+6+15+24 = 47, y10 = 4+10+21+32 = 67,
   * y11 = 5+12+24+36 = 77, each + 0.5. */
  float xv[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
  DsTensor x = TENSOR (xv, 1, 1, 3, 3);
  DsTensor w = TENSOR (((float[]){ 1, 2, 3, 4 }), 1, 1, 2, 2);
  DsTensor b = TENSOR (((float[]){ 0.5f }), 1);
  DsTensor y = TENSOR (NULL, 1, 1, 2, 2);
  DS_CHECK_OK (ds_conv2d (be, &x, &w, &b, 1, 0, 0, 0, 0, &y, &err), &err);
  expect_values ("conv2d 2x2 kernel", &y, (float[]){ 37.5f, 47.5f, 67.5f, 77.5f });

  /* 3x3 ones, stride 2, pad 1 on the same x: the windows centred on (0,0),
   * (0,2), (2,0), (2,2) sum 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28. */
  float ones[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  DsTensor w3 = TENSOR (ones, 1, 1, 3, 3);
  DS_CHECK_OK (ds_conv2d (be, &x, &w3, NULL, 2, 1, 1, 1, 1, &y, &err), &err);
  expect_values ("conv2d stride 2 pad 1", &y, (float[]){ 12, 16, 24, 28 });

  /* x4 = 1..16 (4x4), pad only bottom/right by 1, stride 2, 3x3 ones:
   * (0,0): 1+2+3+5+6+7+9+10+11 = 54; (0,2): 3+4+7+8+11+12 = 45;
   * (2,0): 9+10+11+13+14+15 = 72; (2,2): 11+12+15+16 = 54. */
  float x4v[16];
  for (int i = 0; i < 16; i++)
    x4v[i] = (float) (i + 1);
  DsTensor x4 = TENSOR (x4v, 1, 1, 4, 4);
  DS_CHECK_OK (ds_conv2d (be, &x4, &w3, NULL, 2, 0, 0, 1, 1, &y, &err), &err);
  expect_values ("conv2d asymmetric pad", &y, (float[]){ 54, 45, 72, 54 });

  /* 1x1: channels [1,2] and [3,4], weights 10 and 100: [310, 420] per batch;
   * the second image is the first times -1. */
  DsTensor x1 = TENSOR (((float[]){ 1, 2, 3, 4, -1, -2, -3, -4 }), 2, 2, 1, 2);
  DsTensor w1 = TENSOR (((float[]){ 10, 100 }), 1, 2, 1, 1);
  DsTensor y1 = TENSOR (NULL, 2, 1, 1, 2);
  DS_CHECK_OK (ds_conv2d (be, &x1, &w1, NULL, 1, 0, 0, 0, 0, &y1, &err), &err);
  expect_values ("conv2d 1x1", &y1, (float[]){ 310, 420, -310, -420 });

  ds_tensor_free (&x), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
  ds_tensor_free (&w3), ds_tensor_free (&x4), ds_tensor_free (&x1), ds_tensor_free (&w1);
  ds_tensor_free (&y1);
}

static void
test_norms_hand (void)
{
  DsError err = { 0 };
  /* One group over [1,2,3,4]: mean 2.5, biased variance (2.25+.25+.25+2.25)/4 = 1.25,
   * 1/sqrt(1.25) = 0.894427191; normalised [-1.3416408, -0.4472136, 0.4472136,
   * 1.3416408]; channel 1 (values 3, 4) gets gamma 2, beta 1. The 10000 offset
   * would wreck a single-pass float variance. */
  DsTensor x = TENSOR (((float[]){ 10001, 10002, 10003, 10004 }), 1, 2, 2);
  DsTensor gamma = TENSOR (((float[]){ 1, 2 }), 2);
  DsTensor beta = TENSOR (((float[]){ 0, 1 }), 2);
  DsTensor y = tensor_like (&x);
  DS_CHECK_OK (ds_group_norm (be, &x, &gamma, &beta, 1, 0.0f, false, &y, &err), &err);
  expect_values ("group_norm 1 group", &y,
                 (float[]){ -1.34164079f, -0.44721360f, 1.89442719f, 3.68328157f });

  /* Two groups of one channel: [1,2] -> [-1, 1]; [3,4] -> [-1, 1] * 2 + 1 = [-1, 3];
   * with SiLU: x sigmoid(x) = [-0.26894142, 0.73105858, -0.26894142, 2.85772238]. */
  DS_CHECK_OK (ds_group_norm (be, &x, &gamma, &beta, 2, 0.0f, false, &y, &err), &err);
  expect_values ("group_norm 2 groups", &y, (float[]){ -1, 1, -1, 3 });
  DS_CHECK_OK (ds_group_norm (be, &x, &gamma, &beta, 2, 0.0f, true, &y, &err), &err);
  expect_values ("group_norm silu", &y,
                 (float[]){ -0.26894142f, 0.73105858f, -0.26894142f, 2.85772238f });

  /* layer_norm of rows [1,2,3,4] and [8,8,8,8] (zero variance: eps keeps it finite,
   * (x - mean) = 0 so the row is beta). gamma [1,1,2,2], beta [0,0,0,1]. */
  DsTensor lx = TENSOR (((float[]){ 1, 2, 3, 4, 8, 8, 8, 8 }), 2, 4);
  DsTensor lg = TENSOR (((float[]){ 1, 1, 2, 2 }), 4);
  DsTensor lb = TENSOR (((float[]){ 0, 0, 0, 1 }), 4);
  DsTensor ly = tensor_like (&lx);
  DS_CHECK_OK (ds_layer_norm (be, &lx, &lg, &lb, 1e-5f, &ly, &err), &err);
  /* with eps 1e-5: rstd = 1/sqrt(1.25 + 1e-5) = 0.894423613 */
  expect_values ("layer_norm", &ly,
                 (float[]){ -1.34163542f, -0.44721181f, 0.89442361f, 3.68327085f, 0, 0, 0, 1 });

  ds_tensor_free (&x), ds_tensor_free (&gamma), ds_tensor_free (&beta), ds_tensor_free (&y);
  ds_tensor_free (&lx), ds_tensor_free (&lg), ds_tensor_free (&lb), ds_tensor_free (&ly);
}

static void
test_gemm_hand (void)
{
  DsError err = { 0 };
  /* linear: x = [1, 2], w = [[1,0],[0,1],[1,1]], b = [0,10,100] -> [1, 12, 103]. */
  DsTensor x = TENSOR (((float[]){ 1, 2 }), 1, 2);
  DsTensor w = TENSOR (((float[]){ 1, 0, 0, 1, 1, 1 }), 3, 2);
  DsTensor b = TENSOR (((float[]){ 0, 10, 100 }), 3);
  DsTensor y = TENSOR (NULL, 1, 3);
  DS_CHECK_OK (ds_linear (be, &x, &w, &b, &y, &err), &err);
  expect_values ("linear", &y, (float[]){ 1, 12, 103 });
  DS_CHECK_OK (ds_linear (be, &x, &w, NULL, &y, &err), &err);
  expect_values ("linear no bias", &y, (float[]){ 1, 2, 3 });
  /* with a residual r = [1000, 2000, 3000]: separate y, then y itself as r */
  DsTensor r = TENSOR (((float[]){ 1000, 2000, 3000 }), 1, 3);
  DS_CHECK_OK (ds_linear_add (be, &x, &w, &b, &r, &y, &err), &err);
  expect_values ("linear + residual", &y, (float[]){ 1001, 2012, 3103 });
  expect_values ("residual untouched", &r, (float[]){ 1000, 2000, 3000 });
  DS_CHECK_OK (ds_linear_add (be, &x, &w, &b, &y, &y, &err), &err);
  expect_values ("linear + residual in place", &y, (float[]){ 1002, 2024, 3206 });
  DS_CHECK_OK (ds_linear_add (be, &x, &w, NULL, &r, &y, &err), &err);
  expect_values ("linear + residual, no bias", &y, (float[]){ 1001, 2002, 3003 });
  ds_tensor_free (&r);

  /* mean over heads: x [2, 2, 3] -> [2, 1, 3] */
  DsTensor hx = TENSOR (((float[]){ 1, 2, 3, 5, 6, 7, -1, 0, 1, 1, 0, 3 }), 2, 2, 3);
  DsTensor hy = TENSOR (NULL, 2, 1, 3);
  DS_CHECK_OK (ds_mean_heads (be, &hx, &hy, &err), &err);
  expect_values ("mean over heads", &hy, (float[]){ 3, 4, 5, 0, 0, 2 });
  ds_tensor_free (&hx);
  ds_tensor_free (&hy);

  /* A = [[1,2],[3,4]], B = [[5,6],[7,8]]:
   * AB = [[19,22],[43,50]]; A^T B = [[26,30],[38,44]]; A B^T = [[17,23],[39,53]];
   * A^T B^T = (BA)^T = [[23,31],[34,46]]. */
  DsTensor a = TENSOR (((float[]){ 1, 2, 3, 4 }), 2, 2);
  DsTensor bm = TENSOR (((float[]){ 5, 6, 7, 8 }), 2, 2);
  DsTensor ym = TENSOR (NULL, 2, 2);
  DS_CHECK_OK (ds_matmul (be, &a, &bm, false, false, 1.0f, &ym, &err), &err);
  expect_values ("matmul", &ym, (float[]){ 19, 22, 43, 50 });
  DS_CHECK_OK (ds_matmul (be, &a, &bm, true, false, 1.0f, &ym, &err), &err);
  expect_values ("matmul A^T", &ym, (float[]){ 26, 30, 38, 44 });
  DS_CHECK_OK (ds_matmul (be, &a, &bm, false, true, 2.0f, &ym, &err), &err);
  expect_values ("matmul B^T alpha 2", &ym, (float[]){ 34, 46, 78, 106 });
  DS_CHECK_OK (ds_matmul (be, &a, &bm, true, true, 1.0f, &ym, &err), &err);
  expect_values ("matmul A^T B^T", &ym, (float[]){ 23, 31, 34, 46 });

  /* Batched: batch 1 is batch 0 negated in A, so its product is negated too. */
  DsTensor a3 = TENSOR (((float[]){ 1, 2, 3, 4, -1, -2, -3, -4 }), 2, 2, 2);
  DsTensor b3 = TENSOR (((float[]){ 5, 6, 7, 8, 5, 6, 7, 8 }), 2, 2, 2);
  DsTensor y3 = TENSOR (NULL, 2, 2, 2);
  DS_CHECK_OK (ds_matmul (be, &a3, &b3, false, false, 1.0f, &y3, &err), &err);
  expect_values ("matmul batched", &y3, (float[]){ 19, 22, 43, 50, -19, -22, -43, -50 });

  ds_tensor_free (&x), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
  ds_tensor_free (&a), ds_tensor_free (&bm), ds_tensor_free (&ym);
  ds_tensor_free (&a3), ds_tensor_free (&b3), ds_tensor_free (&y3);
}

static void
test_softmax_attention_hand (void)
{
  DsError err = { 0 };
  /* exp of [0, ln 2, ln 3] is [1, 2, 3]: softmax [1/6, 1/3, 1/2]. Four equal huge
   * logits give 1/4 each (without subtracting the max, exp overflows). In place. */
  DsTensor x = TENSOR (((float[]){ 0, 0.69314718f, 1.09861229f, 1000, 1000, 1000 }), 2, 3);
  DS_CHECK_OK (ds_softmax (be, &x, &x, &err), &err);
  expect_values ("softmax in place", &x,
                 (float[]){ 1.0f / 6, 1.0f / 3, 0.5f, 1.0f / 3, 1.0f / 3, 1.0f / 3 });

  /* Two heads of width 1, one query, two keys, scale 1.
   * head 0: q = 1, k = [0, ln 3] -> p = [1/4, 3/4]; v = [10, 20] -> 2.5 + 15 = 17.5.
   * head 1: q = 0 -> p = [1/2, 1/2]; v = [1, 3] -> 2. */
  DsTensor q = TENSOR (((float[]){ 1, 0 }), 1, 1, 2);
  DsTensor k = TENSOR (((float[]){ 0, 5, 1.09861229f, -5 }), 1, 2, 2);
  DsTensor v = TENSOR (((float[]){ 10, 1, 20, 3 }), 1, 2, 2);
  DsTensor o = TENSOR (NULL, 1, 1, 2);
  DsTensor p = TENSOR (NULL, 1, 2, 1, 2);
  DS_CHECK_OK (ds_attention (be, &q, &k, &v, 2, 1.0f, false, &o, &p, &err), &err);
  expect_values ("attention 2 heads", &o, (float[]){ 17.5f, 2.0f });
  expect_values ("attention 2 heads probs", &p, (float[]){ 0.25f, 0.75f, 0.5f, 0.5f });
  DS_CHECK_OK (ds_attention (be, &q, &k, &v, 2, 1.0f, false, &o, NULL, &err), &err);
  expect_values ("attention without probs", &o, (float[]){ 17.5f, 2.0f });

  /* Causal, one head: query 0 sees key 0 only (o = 10, p = [1, 0]); query 1 sees
   * both, scores [0, ln 3] -> [1/4, 3/4], o = 17.5. */
  DsTensor qc = TENSOR (((float[]){ 1, 1 }), 1, 2, 1);
  DsTensor kc = TENSOR (((float[]){ 0, 1.09861229f }), 1, 2, 1);
  DsTensor vc = TENSOR (((float[]){ 10, 20 }), 1, 2, 1);
  DsTensor oc = TENSOR (NULL, 1, 2, 1);
  DsTensor pc = TENSOR (NULL, 1, 1, 2, 2);
  DS_CHECK_OK (ds_attention (be, &qc, &kc, &vc, 1, 1.0f, true, &oc, &pc, &err), &err);
  expect_values ("attention causal", &oc, (float[]){ 10, 17.5f });
  expect_values ("attention causal probs", &pc, (float[]){ 1, 0, 0.25f, 0.75f });

  ds_tensor_free (&x), ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v);
  ds_tensor_free (&o), ds_tensor_free (&p), ds_tensor_free (&qc), ds_tensor_free (&kc);
  ds_tensor_free (&vc), ds_tensor_free (&oc), ds_tensor_free (&pc);
}

static void
test_elementwise_hand (void)
{
  DsError err = { 0 };
  /* gelu(x) = x Phi(x): Phi(1) = 0.841344746, Phi(2) = 0.977249868. */
  DsTensor x = TENSOR (((float[]){ 0, 1, -1, 2 }), 4);
  DsTensor y = tensor_like (&x);
  DS_CHECK_OK (ds_gelu (be, &x, &y, &err), &err);
  expect_values ("gelu", &y, (float[]){ 0, 0.84134475f, -0.15865525f, 1.95449974f });
  /* quick_gelu(x) = x sigmoid(1.702 x): sigmoid(1.702) = 0.845795766,
   * sigmoid(-1.702) = 0.154204234, sigmoid(3.404) = 0.967829312. */
  DS_CHECK_OK (ds_quick_gelu (be, &x, &y, &err), &err);
  expect_values ("quick_gelu", &y, (float[]){ 0, 0.84579577f, -0.15420423f, 1.93565862f });
  /* silu(x) = x sigmoid(x): sigmoid(1) = 0.731058579, sigmoid(2) = 0.880797078. */
  DS_CHECK_OK (ds_silu (be, &x, &y, &err), &err);
  expect_values ("silu", &y, (float[]){ 0, 0.73105858f, -0.26894142f, 1.76159416f });
  /* in place, and scale */
  DS_CHECK_OK (ds_scale (be, &x, -0.5f, &x, &err), &err);
  expect_values ("scale in place", &x, (float[]){ 0, -0.5f, 0.5f, -1 });

  /* geglu: [2, 3 | 1, -1] -> [2 gelu(1), 3 gelu(-1)] = [1.68268949, -0.47596576]. */
  DsTensor gx = TENSOR (((float[]){ 2, 3, 1, -1 }), 1, 4);
  DsTensor gy = TENSOR (NULL, 1, 2);
  DS_CHECK_OK (ds_geglu (be, &gx, &gy, &err), &err);
  expect_values ("geglu", &gy, (float[]){ 1.68268949f, -0.47596576f });
  /* with a bias [1, -1 | 0, 2]: [3 gelu(1), 2 gelu(1)] = [2.52403424, 1.68268949] */
  DsTensor gb = TENSOR (((float[]){ 1, -1, 0, 2 }), 4);
  DS_CHECK_OK (ds_geglu_bias (be, &gx, &gb, &gy, &err), &err);
  expect_values ("geglu with bias", &gy, (float[]){ 2.52403424f, 1.68268949f });
  ds_tensor_free (&gb);

  /* add: a = [[1,2,3],[4,5,6]].
   *   b [2] (leading dims: b[i] added to row i) -> [[11,12,13],[24,25,26]]
   *   b [3] (last dim: b[j] added to column j)  -> [[101,202,303],[104,205,306]]
   *   b [2,3] same shape, into a itself.                                       */
  DsTensor a = TENSOR (((float[]){ 1, 2, 3, 4, 5, 6 }), 2, 3);
  DsTensor ay = tensor_like (&a);
  DsTensor b2 = TENSOR (((float[]){ 10, 20 }), 2);
  DsTensor b3 = TENSOR (((float[]){ 100, 200, 300 }), 3);
  DS_CHECK_OK (ds_add (be, &a, &b2, &ay, &err), &err);
  expect_values ("add leading", &ay, (float[]){ 11, 12, 13, 24, 25, 26 });
  DS_CHECK_OK (ds_add (be, &a, &b3, &ay, &err), &err);
  expect_values ("add last dim", &ay, (float[]){ 101, 202, 303, 104, 205, 306 });
  /* a[2,2] + b[2] fits both forms: the last-dim (numpy) reading wins. */
  DsTensor sq = TENSOR (((float[]){ 1, 2, 3, 4 }), 2, 2);
  DsTensor sqy = tensor_like (&sq);
  DS_CHECK_OK (ds_add (be, &sq, &b2, &sqy, &err), &err);
  expect_values ("add ambiguous", &sqy, (float[]){ 11, 22, 13, 24 });
  /* mul same shape: [1,2,3,4] * [1,2,3,4] = squares; then add in place. */
  DS_CHECK_OK (ds_mul (be, &sq, &sq, &sqy, &err), &err);
  expect_values ("mul", &sqy, (float[]){ 1, 4, 9, 16 });
  DS_CHECK_OK (ds_add (be, &sqy, &sq, &sqy, &err), &err);
  expect_values ("add in place", &sqy, (float[]){ 2, 6, 12, 20 });

  ds_tensor_free (&x), ds_tensor_free (&y), ds_tensor_free (&gx), ds_tensor_free (&gy);
  ds_tensor_free (&a), ds_tensor_free (&ay), ds_tensor_free (&b2), ds_tensor_free (&b3);
  ds_tensor_free (&sq), ds_tensor_free (&sqy);
}

static void
test_layout_hand (void)
{
  DsError err = { 0 };
  /* concat [[1,2],[3,4]] with [[5,6]] on dim 0, and with [[7],[8]] on dim 1. */
  DsTensor a = TENSOR (((float[]){ 1, 2, 3, 4 }), 2, 2);
  DsTensor b0 = TENSOR (((float[]){ 5, 6 }), 1, 2);
  DsTensor b1 = TENSOR (((float[]){ 7, 8 }), 2, 1);
  DsTensor y0 = TENSOR (NULL, 3, 2), y1 = TENSOR (NULL, 2, 3);
  DS_CHECK_OK (ds_concat (be, &a, &b0, 0, &y0, &err), &err);
  expect_values ("concat dim 0", &y0, (float[]){ 1, 2, 3, 4, 5, 6 });
  DS_CHECK_OK (ds_concat (be, &a, &b1, 1, &y1, &err), &err);
  expect_values ("concat dim 1", &y1, (float[]){ 1, 2, 7, 3, 4, 8 });

  /* upsample [[1,2],[3,4]] -> each value a 2x2 block. */
  DsTensor ux = TENSOR (((float[]){ 1, 2, 3, 4 }), 1, 1, 2, 2);
  DsTensor uy = TENSOR (NULL, 1, 1, 4, 4);
  DS_CHECK_OK (ds_upsample_nearest2x (be, &ux, &uy, &err), &err);
  expect_values ("upsample", &uy,
                 (float[]){ 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4 });

  /* permute [[0,1,2],[3,4,5]] with (1, 0): the transpose. */
  DsTensor px = TENSOR (((float[]){ 0, 1, 2, 3, 4, 5 }), 2, 3);
  DsTensor py = TENSOR (NULL, 3, 2);
  DS_CHECK_OK (ds_permute (be, &px, (int[]){ 1, 0 }, &py, &err), &err);
  expect_values ("permute 2-D", &py, (float[]){ 0, 3, 1, 4, 2, 5 });
  /* [1,2,3] -> perm (2,0,1) gives [3,1,2] with y[k][0][j] = x[0][j][k]. */
  DsTensor px3 = TENSOR (((float[]){ 0, 1, 2, 3, 4, 5 }), 1, 2, 3);
  DsTensor py3 = TENSOR (NULL, 3, 1, 2);
  DS_CHECK_OK (ds_permute (be, &px3, (int[]){ 2, 0, 1 }, &py3, &err), &err);
  expect_values ("permute 3-D", &py3, (float[]){ 0, 3, 1, 4, 2, 5 });

  /* embedding: rows 2 and 0 of [[0,1],[10,11],[20,21]]. */
  DsTensor table = TENSOR (((float[]){ 0, 1, 10, 11, 20, 21 }), 3, 2);
  DsTensor ids;
  DS_CHECK_OK (ds_tensor_alloc (&ids, DS_DTYPE_I32, 1, (int64_t[]){ 2 }, &err), &err);
  ((int32_t *) ids.data)[0] = 2, ((int32_t *) ids.data)[1] = 0;
  DsTensor ey = TENSOR (NULL, 2, 2);
  DS_CHECK_OK (ds_embedding (be, &ids, &table, &ey, &err), &err);
  expect_values ("embedding", &ey, (float[]){ 20, 21, 0, 1 });

  ds_tensor_free (&a), ds_tensor_free (&b0), ds_tensor_free (&b1), ds_tensor_free (&y0);
  ds_tensor_free (&y1), ds_tensor_free (&ux), ds_tensor_free (&uy), ds_tensor_free (&px);
  ds_tensor_free (&py), ds_tensor_free (&px3), ds_tensor_free (&py3);
  ds_tensor_free (&table), ds_tensor_free (&ids), ds_tensor_free (&ey);
}

static void
test_timestep_hand (void)
{
  DsError err = { 0 };
  /* dim 4, shift 0: half 2, freqs exp(-ln(1e4) k / 2) = [1, 0.01].
   * t = 0 -> sin 0, cos 1. t = 1 -> sin [0.84147098, 0.00999983], cos [0.54030231, 0.99995]. */
  DsTensor t = TENSOR (((float[]){ 0, 1 }), 2);
  DsTensor y = TENSOR (NULL, 2, 4);
  DS_CHECK_OK (ds_timestep_embedding (be, &t, false, 0.0f, 10000.0f, &y, &err), &err);
  expect_values ("timestep sin-cos", &y,
                 (float[]){ 0, 0, 1, 1, 0.84147098f, 0.00999983f, 0.54030231f, 0.99995000f });
  DS_CHECK_OK (ds_timestep_embedding (be, &t, true, 0.0f, 10000.0f, &y, &err), &err);
  expect_values ("timestep cos-sin", &y,
                 (float[]){ 1, 1, 0, 0, 0.54030231f, 0.99995000f, 0.84147098f, 0.00999983f });
  /* dim 5, shift 1: half 2, freqs exp(-ln(1e4) k / 1) = [1, 1e-4], last column zero.
   * t = 1 -> cos [0.54030231, 0.999999995], sin [0.84147098, 1e-4]. */
  DsTensor y5 = TENSOR (NULL, 2, 5);
  DS_CHECK_OK (ds_timestep_embedding (be, &t, true, 1.0f, 10000.0f, &y5, &err), &err);
  expect_values ("timestep odd dim shift 1", &y5,
                 (float[]){ 1, 1, 0, 0, 0, 0.54030231f, 1.0f, 0.84147098f, 1e-4f, 0 });
  ds_tensor_free (&t), ds_tensor_free (&y), ds_tensor_free (&y5);
}

/* ------------------------------------------------------------------ */
/* error paths                                                         */

static void
test_embedding_out_of_range (void)
{
  DsError err = { 0 };
  DsTensor table = TENSOR (NULL, 3, 2), ids, y = TENSOR (NULL, 2, 2);
  DS_CHECK_OK (ds_tensor_alloc (&ids, DS_DTYPE_I32, 1, (int64_t[]){ 2 }, &err), &err);
  int32_t *id = ids.data;
  id[0] = 1, id[1] = 3;
  DsStatus st = ds_embedding (be, &ids, &table, &y, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "id 3");
  DS_CHECK_CONTAINS (err.message, "3 rows");
  id[0] = -7, id[1] = 0;
  st = ds_embedding (be, &ids, &table, &y, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "id -7");
  ds_tensor_free (&table), ds_tensor_free (&ids), ds_tensor_free (&y);
}

/* A backend that only does gelu, to see ds_op_run refuse the rest. */
static int fake_runs;

static bool
fake_supports (DsBackend *b, DsOp op)
{
  return op == DS_OP_GELU;
}

static DsStatus
fake_run (DsBackend *b, const DsOpCall *call, DsError *err)
{
  fake_runs++;
  return DS_OK;
}

static void
test_unsupported (void)
{
  DsError err = { 0 };
  DsBackend fake = { .name = "Fake", .device = DS_DEVICE_CPU, .supports = fake_supports,
                     .run = fake_run };
  DsTensor q = TENSOR (NULL, 1, 2, 4), o = TENSOR (NULL, 1, 2, 4);
  DsStatus st = ds_attention (&fake, &q, &q, &q, 2, 0.5f, false, &o, NULL, &err);
  DS_CHECK_STATUS (st, DS_ERR_UNSUPPORTED, &err);
  DS_CHECK_CONTAINS (err.message, "attention");
  DS_CHECK_CONTAINS (err.message, "Fake");
  DS_CHECK (fake_runs == 0, "unsupported op reached run");
  DS_CHECK_OK (ds_gelu (&fake, &q, &o, &err), &err);
  DS_CHECK (fake_runs == 1, "supported op did not reach run");
  ds_tensor_free (&q), ds_tensor_free (&o);
}

/* ------------------------------------------------------------------ */
/* 2. PyTorch fixtures                                                 */

static DsSafetensors *fx;
static int fixture_cases;

/* "<case>.<key>" as a new f32 tensor; false (and a failed check) when absent. */
static bool
load (const char *cs, const char *key, DsTensor *t)
{
  char name[128];
  DsError err = { 0 };
  snprintf (name, sizeof name, "%s.%s", cs, key);
  DsStatus st = ds_safetensors_load_f32 (fx, name, 0, NULL, t, &err);
  DS_CHECK_OK (st, &err);
  return st == DS_OK;
}

/* Runs the check for a case whose output `got` should match "<case>.<key>". */
static void
compare (const char *cs, const char *key, const DsTensor *got, double nmse_tol,
         double abs_tol)
{
  DsTensor want;
  char label[160];
  snprintf (label, sizeof label, "%s (%s)", cs, key);
  if (!load (cs, key, &want))
    return;
  DS_CHECK (ds_tensor_same_shape (got, &want), "case %s: shape differs from the fixture",
            label);
  if (ds_tensor_same_shape (got, &want))
    expect_close (label, ds_tensor_f32 (got), ds_tensor_f32 (&want), ds_tensor_numel (got),
                  nmse_tol, abs_tol);
  ds_tensor_free (&want);
  fixture_cases++;
}

/* An output tensor shaped like the fixture's "<case>.<key>". */
static DsTensor
out_like (const char *cs, const char *key)
{
  DsTensor want, out = { 0 };
  if (load (cs, key, &want))
    {
      out = tensor_like (&want);
      ds_tensor_free (&want);
    }
  return out;
}

#define FP32_NMSE 1e-10

static void
fixture_conv2d (void)
{
  static const struct {
    const char *name;
    bool bias;
    int stride, top, left, bottom, right;
  } cases[] = {
    { "conv_s1p1", true, 1, 1, 1, 1, 1 },
    { "conv_s2p1", true, 2, 1, 1, 1, 1 },
    { "conv_asym", true, 2, 0, 0, 1, 1 },
    { "conv_1x1", true, 1, 0, 0, 0, 0 },
    { "conv_3x2_nobias", false, 1, 0, 1, 2, 0 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      DsError err = { 0 };
      const char *cs = cases[i].name;
      DsTensor x, w, b = { 0 }, y = out_like (cs, "y");
      if (!load (cs, "x", &x) || !load (cs, "w", &w) || (cases[i].bias && !load (cs, "b", &b)))
        continue;
      DS_CHECK_OK (ds_conv2d (be, &x, &w, cases[i].bias ? &b : NULL, cases[i].stride,
                              cases[i].top, cases[i].left, cases[i].bottom, cases[i].right, &y,
                              &err),
                   &err);
      compare (cs, "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
    }
}

static void
fixture_norms (void)
{
  static const struct {
    const char *name;
    int groups;
    float eps;
    bool silu;
  } cases[] = {
    { "gn_silu_eps1e-6", 4, 1e-6f, true },
    { "gn_eps1e-5", 2, 1e-5f, false },
    { "gn_3d_silu", 3, 1e-5f, true },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      DsError err = { 0 };
      const char *cs = cases[i].name;
      DsTensor x, g, b;
      if (!load (cs, "x", &x) || !load (cs, "gamma", &g) || !load (cs, "beta", &b))
        continue;
      DsTensor y = tensor_like (&x);
      DS_CHECK_OK (ds_group_norm (be, &x, &g, &b, cases[i].groups, cases[i].eps, cases[i].silu,
                                  &y, &err),
                   &err);
      compare (cs, "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&g), ds_tensor_free (&b), ds_tensor_free (&y);
    }

  DsError err = { 0 };
  DsTensor x, g, b;
  if (load ("ln", "x", &x) && load ("ln", "gamma", &g) && load ("ln", "beta", &b))
    {
      DsTensor y = tensor_like (&x);
      DS_CHECK_OK (ds_layer_norm (be, &x, &g, &b, 1e-5f, &y, &err), &err);
      compare ("ln", "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&g), ds_tensor_free (&b), ds_tensor_free (&y);
    }
}

static void
fixture_gemm (void)
{
  DsError err = { 0 };
  const char *lin[] = { "linear_bias", "linear_nobias" };
  for (int i = 0; i < 2; i++)
    {
      DsTensor x, w, b = { 0 }, y = out_like (lin[i], "y");
      if (!load (lin[i], "x", &x) || !load (lin[i], "w", &w) || (i == 0 && !load (lin[i], "b", &b)))
        continue;
      DS_CHECK_OK (ds_linear (be, &x, &w, i == 0 ? &b : NULL, &y, &err), &err);
      compare (lin[i], "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
    }

  static const struct {
    const char *name;
    bool ta, tb;
    float alpha;
  } mm[] = {
    { "mm_nn", false, false, 1.0f }, { "mm_tn", true, false, 0.5f },
    { "mm_nt", false, true, 1.0f },  { "mm_tt", true, true, -2.0f },
    { "mm_2d", false, false, 1.0f },
  };
  for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++)
    {
      DsTensor a, b, y = out_like (mm[i].name, "y");
      if (!load (mm[i].name, "a", &a) || !load (mm[i].name, "b", &b))
        continue;
      DS_CHECK_OK (ds_matmul (be, &a, &b, mm[i].ta, mm[i].tb, mm[i].alpha, &y, &err), &err);
      compare (mm[i].name, "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&a), ds_tensor_free (&b), ds_tensor_free (&y);
    }

  DsTensor x;
  if (load ("softmax", "x", &x))
    {
      DsTensor y = tensor_like (&x);
      DS_CHECK_OK (ds_softmax (be, &x, &y, &err), &err);
      compare ("softmax", "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&y);
    }
}

static void
fixture_attention (void)
{
  static const struct {
    const char *name;
    int heads, head_dim;
    bool causal;
  } cases[] = {
    { "attn_self", 2, 4, false },
    { "attn_cross", 3, 4, false },
    { "attn_causal", 2, 8, true },
    { "attn_causal_nq_lt_nk", 2, 4, true },
    { "attn_causal_nq_gt_nk", 1, 4, true },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      DsError err = { 0 };
      const char *cs = cases[i].name;
      DsTensor q, k, v;
      if (!load (cs, "q", &q) || !load (cs, "k", &k) || !load (cs, "v", &v))
        continue;
      DsTensor o = tensor_like (&q), p = out_like (cs, "probs");
      float scale = 1.0f / sqrtf ((float) cases[i].head_dim);
      DS_CHECK_OK (ds_attention (be, &q, &k, &v, cases[i].heads, scale, cases[i].causal, &o, &p,
                                 &err),
                   &err);
      compare (cs, "y", &o, FP32_NMSE, 1e-5);
      compare (cs, "probs", &p, FP32_NMSE, 1e-5);
      ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v), ds_tensor_free (&o);
      ds_tensor_free (&p);
    }
}

static void
fixture_elementwise (void)
{
  DsError err = { 0 };
  static const struct {
    const char *name;
    DsStatus (*fn) (DsBackend *, const DsTensor *, DsTensor *, DsError *);
  } unary[] = {
    { "gelu", ds_gelu }, { "quick_gelu", ds_quick_gelu }, { "silu", ds_silu },
    { "geglu", ds_geglu }, { "upsample", ds_upsample_nearest2x },
  };
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++)
    {
      DsTensor x, y = out_like (unary[i].name, "y");
      if (!load (unary[i].name, "x", &x))
        continue;
      DS_CHECK_OK (unary[i].fn (be, &x, &y, &err), &err);
      compare (unary[i].name, "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&y);
    }

  const char *adds[] = { "add_same", "add_lead2", "add_lead3", "add_last", "mul" };
  for (int i = 0; i < 5; i++)
    {
      DsTensor a, b;
      if (!load (adds[i], "a", &a) || !load (adds[i], "b", &b))
        continue;
      DsTensor y = tensor_like (&a);
      DS_CHECK_OK ((i < 4 ? ds_add : ds_mul) (be, &a, &b, &y, &err), &err);
      compare (adds[i], "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&a), ds_tensor_free (&b), ds_tensor_free (&y);
    }

  DsTensor a;
  if (load ("scale", "a", &a))
    {
      DsTensor y = tensor_like (&a);
      DS_CHECK_OK (ds_scale (be, &a, 0.18215f, &y, &err), &err);
      compare ("scale", "y", &y, FP32_NMSE, 1e-5);
      ds_tensor_free (&a), ds_tensor_free (&y);
    }

  const char *cats[] = { "concat_dim1", "concat_dim2" };
  for (int i = 0; i < 2; i++)
    {
      DsTensor ca, cb, y = out_like (cats[i], "y");
      if (!load (cats[i], "a", &ca) || !load (cats[i], "b", &cb))
        continue;
      DS_CHECK_OK (ds_concat (be, &ca, &cb, i + 1, &y, &err), &err);
      compare (cats[i], "y", &y, 0.0, 1e-5);
      ds_tensor_free (&ca), ds_tensor_free (&cb), ds_tensor_free (&y);
    }
}

static void
fixture_misc (void)
{
  DsError err = { 0 };
  static const struct {
    const char *name;
    bool flip;
    float shift;
  } temb[] = {
    { "temb_flip1_shift0", true, 0 }, { "temb_flip0_shift0", false, 0 },
    { "temb_flip1_shift1", true, 1 }, { "temb_flip0_shift1", false, 1 },
    { "temb_odd9_flip1_shift1", true, 1 },
  };
  for (size_t i = 0; i < sizeof temb / sizeof temb[0]; i++)
    {
      DsTensor t, y = out_like (temb[i].name, "y");
      if (!load (temb[i].name, "t", &t))
        continue;
      DS_CHECK_OK (ds_timestep_embedding (be, &t, temb[i].flip, temb[i].shift, 10000.0f, &y,
                                          &err),
                   &err);
      /* diffusers' own output differs by up to ~6e-5 where PyTorch's exp is
       * 1 ulp off (see gen_ops.py); the same steps with correctly rounded libm
       * functions must agree to float precision. */
      compare (temb[i].name, "y", &y, FP32_NMSE, 1e-4);
      compare (temb[i].name, "y_cr", &y, FP32_NMSE, 1e-6);
      ds_tensor_free (&t), ds_tensor_free (&y);
    }

  /* ids are stored as i32: take them straight from the file. */
  const DsSafetensorsEntry *e = ds_safetensors_find (fx, "embedding.ids");
  DS_CHECK (e && e->dtype == DS_DTYPE_I32, "fixture embedding.ids missing or not i32");
  DsTensor table, y = out_like ("embedding", "y");
  if (e && e->dtype == DS_DTYPE_I32 && load ("embedding", "table", &table))
    {
      DsTensor ids;
      DS_CHECK_OK (ds_tensor_alloc (&ids, DS_DTYPE_I32, e->ndim, e->shape, &err), &err);
      memcpy (ids.data, e->data, e->nbytes);
      DS_CHECK_OK (ds_embedding (be, &ids, &table, &y, &err), &err);
      compare ("embedding", "y", &y, 0.0, 1e-5);
      ds_tensor_free (&ids), ds_tensor_free (&table);
    }
  ds_tensor_free (&y);

  static const struct {
    const char *name;
    int perm[4];
  } perms[] = {
    { "permute_0231", { 0, 2, 3, 1 } },
    { "permute_3102", { 3, 1, 0, 2 } },
    { "permute_102", { 1, 0, 2 } },
  };
  for (size_t i = 0; i < sizeof perms / sizeof perms[0]; i++)
    {
      DsTensor x, py = out_like (perms[i].name, "y");
      if (!load (perms[i].name, "x", &x))
        continue;
      DS_CHECK_OK (ds_permute (be, &x, perms[i].perm, &py, &err), &err);
      compare (perms[i].name, "y", &py, 0.0, 1e-5);
      ds_tensor_free (&x), ds_tensor_free (&py);
    }
}

static void
test_fixtures (void)
{
  DsError err = { 0 };
  const char *path = DS_TEST_DATA_DIR "/ops/ops.safetensors";
  DsStatus st = ds_safetensors_open (path, &fx, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    return;
  fixture_conv2d ();
  fixture_norms ();
  fixture_gemm ();
  fixture_attention ();
  fixture_elementwise ();
  fixture_misc ();
  /* Every case in gen_ops.py was compared (attention and timestep cases twice). */
  DS_CHECK (fixture_cases == 54, "%d fixture comparisons ran, expected 54", fixture_cases);
  ds_safetensors_close (fx);
}

/* ------------------------------------------------------------------ */
/* 3. chunked paths against direct loops                               */

/* y[co][oy][ox] = b[co] + sum x[ci][oy*s - pt + ky][ox*s - pl + kx] w[co][ci][ky][kx] */
static void
conv2d_direct (const DsTensor *x, const DsTensor *w, const float *b, int s, int pt, int pl,
               float *y, int64_t ho, int64_t wo)
{
  const int64_t ci_n = x->shape[1], h = x->shape[2], wd = x->shape[3];
  const int64_t co_n = w->shape[0], kh = w->shape[2], kw = w->shape[3];
  const float *xp = ds_tensor_f32 (x), *wp = ds_tensor_f32 (w);
  for (int64_t co = 0; co < co_n; co++)
    for (int64_t oy = 0; oy < ho; oy++)
      for (int64_t ox = 0; ox < wo; ox++)
        {
          double acc = b[co];
          for (int64_t ci = 0; ci < ci_n; ci++)
            for (int64_t ky = 0; ky < kh; ky++)
              {
                int64_t iy = oy * s - pt + ky;
                if (iy < 0 || iy >= h)
                  continue;
                for (int64_t kx = 0; kx < kw; kx++)
                  {
                    int64_t ix = ox * s - pl + kx;
                    if (ix >= 0 && ix < wd)
                      acc += (double) xp[(ci * h + iy) * wd + ix]
                             * wp[((co * ci_n + ci) * kh + ky) * kw + kx];
                  }
              }
          y[(co * ho + oy) * wo + ox] = (float) acc;
        }
}

static void
test_conv2d_row_blocks (void)
{
  /* 64 channels, 7x7 kernel, stride 2, pads (top 1, left 2, bottom 3, right 0):
   * Ho = (321 + 4 - 7) / 2 + 1 = 160, Wo = (323 + 2 - 7) / 2 + 1 = 160. Its im2col
   * matrix (3136 x 25600 floats, 321 MB) exceeds the 256 MB budget, so the
   * backend must split the output rows and place each block's padding right. */
  DsError err = { 0 };
  DsTensor x = TENSOR (NULL, 1, 64, 321, 323), w = TENSOR (NULL, 2, 64, 7, 7);
  DsTensor b = TENSOR (((float[]){ 0.25f, -0.5f }), 2), y = TENSOR (NULL, 1, 2, 160, 160);
  fill_random (&x, 1);
  fill_random (&w, 2);
  DS_CHECK_OK (ds_conv2d (be, &x, &w, &b, 2, 1, 2, 3, 0, &y, &err), &err);
  float *want = malloc (ds_tensor_nbytes (&y));
  conv2d_direct (&x, &w, ds_tensor_f32 (&b), 2, 1, 2, want, 160, 160);
  expect_close ("conv2d row blocks", ds_tensor_f32 (&y), want, ds_tensor_numel (&y), FP32_NMSE,
                1e-5);
  free (want);
  ds_tensor_free (&x), ds_tensor_free (&w), ds_tensor_free (&b), ds_tensor_free (&y);
}

/* Direct attention in double, one output row at a time. */
static void
attention_direct (const DsTensor *q, const DsTensor *k, const DsTensor *v, int heads,
                  double scale, bool causal, float *o, float *probs)
{
  const int64_t nb = q->shape[0], nq = q->shape[1], nk = k->shape[1], ch = q->shape[2];
  const int64_t d = ch / heads;
  double *s = malloc ((size_t) nk * sizeof (double));
  for (int64_t b = 0; b < nb; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < nq; i++)
        {
          const float *qi = ds_tensor_f32 (q) + (b * nq + i) * ch + h * d;
          double mx = -INFINITY, sum = 0;
          for (int64_t j = 0; j < nk; j++)
            {
              const float *kj = ds_tensor_f32 (k) + (b * nk + j) * ch + h * d;
              double dot = 0;
              for (int64_t c = 0; c < d; c++)
                dot += (double) qi[c] * kj[c];
              s[j] = causal && j > i ? -INFINITY : dot * scale;
              mx = fmax (mx, s[j]);
            }
          for (int64_t j = 0; j < nk; j++)
            sum += s[j] = exp (s[j] - mx);
          for (int64_t c = 0; c < d; c++)
            {
              double acc = 0;
              for (int64_t j = 0; j < nk; j++)
                acc += s[j] / sum * ds_tensor_f32 (v)[(b * nk + j) * ch + h * d + c];
              o[(b * nq + i) * ch + h * d + c] = (float) acc;
            }
          for (int64_t j = 0; j < nk; j++)
            probs[((b * heads + h) * nq + i) * nk + j] = (float) (s[j] / sum);
        }
  free (s);
}

static void
test_attention_blocks (void)
{
  /* 10000 keys: the backend takes 2^20 / 10000 = 104 query rows at a time, so 250
   * queries make three blocks (104, 104, 42); causal masks must follow each
   * block's offset. */
  DsError err = { 0 };
  const int heads = 2;
  DsTensor q = TENSOR (NULL, 2, 250, 16), k = TENSOR (NULL, 2, 10000, 16);
  DsTensor v = TENSOR (NULL, 2, 10000, 16), o = TENSOR (NULL, 2, 250, 16);
  DsTensor p = TENSOR (NULL, 2, 2, 250, 10000);
  fill_random (&q, 3);
  fill_random (&k, 4);
  fill_random (&v, 5);
  float *want_o = malloc (ds_tensor_nbytes (&o)), *want_p = malloc (ds_tensor_nbytes (&p));
  for (int causal = 0; causal < 2; causal++)
    {
      attention_direct (&q, &k, &v, heads, 2.0, causal, want_o, want_p);
      DS_CHECK_OK (ds_attention (be, &q, &k, &v, heads, 2.0f, causal, &o, &p, &err), &err);
      expect_close (causal ? "attention blocks causal (o)" : "attention blocks (o)",
                    ds_tensor_f32 (&o), want_o, ds_tensor_numel (&o), FP32_NMSE, 1e-5);
      expect_close (causal ? "attention blocks causal (probs)" : "attention blocks (probs)",
                    ds_tensor_f32 (&p), want_p, ds_tensor_numel (&p), FP32_NMSE, 1e-5);
      memset (o.data, 0, ds_tensor_nbytes (&o));
      DS_CHECK_OK (ds_attention (be, &q, &k, &v, heads, 2.0f, causal, &o, NULL, &err), &err);
      expect_close (causal ? "attention blocks causal, no probs" : "attention blocks, no probs",
                    ds_tensor_f32 (&o), want_o, ds_tensor_numel (&o), FP32_NMSE, 1e-5);
    }
  free (want_o), free (want_p);
  ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v), ds_tensor_free (&o);
  ds_tensor_free (&p);
}

/* ------------------------------------------------------------------ */
/* The LLaMA decoder's ops (docs/models.md §7.4) against loops written   */
/* from the definitions, in double where the op's rounding is not part   */
/* of the definition.                                                    */

static void
ref_rms_norm (const DsTensor *x, const float *g, float eps, float *want)
{
  const int64_t ch = x->shape[x->ndim - 1], rows = ds_tensor_numel (x) / ch;
  for (int64_t r = 0; r < rows; r++)
    {
      const float *xr = ds_tensor_f32 (x) + r * ch;
      double ss = 0;
      for (int64_t i = 0; i < ch; i++)
        ss += (double) xr[i] * xr[i];
      double rstd = 1.0 / sqrt (ss / ch + eps);
      for (int64_t i = 0; i < ch; i++)
        want[r * ch + i] = (float) (g[i] * (xr[i] * rstd));
    }
}

/* transformers' angles in f32 (inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq),
 * then the rotation in double. */
static void
ref_rope (const DsTensor *x, const int32_t *pos, int heads, float theta, float *want)
{
  const int64_t nb = x->shape[0], n = x->shape[1], ch = x->shape[2], d = ch / heads;
  for (int64_t b = 0; b < nb; b++)
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < d / 2; i++)
          {
            float inv = 1.0f / powf (theta, (float) (2 * i) / (float) d);
            double ang = (float) pos[t] * inv;
            const float *xr = ds_tensor_f32 (x) + (b * n + t) * ch + h * d;
            float *y = want + (b * n + t) * ch + h * d;
            y[i] = (float) (xr[i] * cos (ang) - xr[i + d / 2] * sin (ang));
            y[i + d / 2] = (float) (xr[i + d / 2] * cos (ang) + xr[i] * sin (ang));
          }
}

static void
ref_attention_kv (const DsTensor *q, const DsTensor *k, const DsTensor *v, int heads,
                  int kv_heads, float scale, int64_t q_pos, float *want)
{
  const int64_t nb = q->shape[0], nq = q->shape[1], nk = k->shape[1];
  const int64_t cq = q->shape[2], ckv = k->shape[2], d = cq / heads;
  double *w = malloc ((size_t) nk * sizeof *w);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < nq; i++)
        {
          const int64_t hk = h / (heads / kv_heads), seen = q_pos + i + 1;
          const float *qi = ds_tensor_f32 (q) + (b * nq + i) * cq + h * d;
          double mx = -INFINITY, sum = 0;
          for (int64_t j = 0; j < seen; j++)
            {
              const float *kj = ds_tensor_f32 (k) + (b * nk + j) * ckv + hk * d;
              double dot = 0;
              for (int64_t e = 0; e < d; e++)
                dot += (double) qi[e] * kj[e];
              w[j] = dot * scale;
              mx = fmax (mx, w[j]);
            }
          for (int64_t j = 0; j < seen; j++)
            sum += (w[j] = exp (w[j] - mx));
          for (int64_t e = 0; e < d; e++)
            {
              double acc = 0;
              for (int64_t j = 0; j < seen; j++)
                acc += w[j] * ds_tensor_f32 (v)[(b * nk + j) * ckv + hk * d + e];
              want[(b * nq + i) * cq + h * d + e] = (float) (acc / sum);
            }
        }
  free (w);
}

static void
test_decoder_ops (void)
{
  DsError err = { 0 };
  DS_CHECK (strcmp (ds_op_name (DS_OP_RMS_NORM), "rms_norm") == 0
                && strcmp (ds_op_name (DS_OP_ROPE), "rope") == 0
                && strcmp (ds_op_name (DS_OP_ATTENTION_KV), "attention_kv") == 0,
            "decoder op names");

  /* RMSNorm by hand: x = [3, 4], mean(x^2) = 12.5, eps 0: y = g * x / sqrt(12.5) */
  DsTensor x = TENSOR (((float[]){ 3, 4 }), 1, 2), g = TENSOR (((float[]){ 1, 2 }), 2);
  DsTensor y = tensor_like (&x);
  DS_CHECK_OK (ds_rms_norm (be, &x, &g, 0.0f, &y, &err), &err);
  expect_values ("rms_norm hand", &y, (float[]){ 3 / sqrtf (12.5f), 8 / sqrtf (12.5f) });
  ds_tensor_free (&x), ds_tensor_free (&g), ds_tensor_free (&y);
  /* LLaMA widths, and in place */
  for (int in_place = 0; in_place < 2; in_place++)
    {
      x = TENSOR (NULL, 1, 9, in_place ? 64 : 4096);
      g = TENSOR (NULL, x.shape[2]);
      fill_random (&x, 31 + in_place), fill_random (&g, 32);
      float *want = malloc (ds_tensor_nbytes (&x));
      ref_rms_norm (&x, ds_tensor_f32 (&g), 1e-5f, want);
      y = in_place ? x : tensor_like (&x);
      DS_CHECK_OK (ds_rms_norm (be, &x, &g, 1e-5f, &y, &err), &err);
      expect_close (in_place ? "rms_norm in place" : "rms_norm [1, 9, 4096]", ds_tensor_f32 (&y),
                    want, ds_tensor_numel (&y), 1e-13, 1e-6);
      if (!in_place)
        ds_tensor_free (&y);
      ds_tensor_free (&x), ds_tensor_free (&g), free (want);
    }

  /* RoPE by hand: D = 4, theta 10000, inv_freq = [1, 0.01]; x = [1, 0, 0, 0] at
   * position 2 -> [cos 2, 0, sin 2, 0]; position 0 is the identity. */
  x = TENSOR (((float[]){ 1, 0, 0, 0, 1, 2, 3, 4 }), 1, 2, 4);
  DsTensor pos;
  ds_tensor_alloc (&pos, DS_DTYPE_I32, 1, (int64_t[]){ 2 }, &err);
  ((int32_t *) pos.data)[0] = 2, ((int32_t *) pos.data)[1] = 0;
  y = tensor_like (&x);
  DS_CHECK_OK (ds_rope (be, &x, &pos, 1, 10000.0f, &y, &err), &err);
  expect_values ("rope hand", &y, (float[]){ cosf (2), 0, sinf (2), 0, 1, 2, 3, 4 });
  ds_tensor_free (&x), ds_tensor_free (&y), ds_tensor_free (&pos);
  /* 2 sequences of 7 tokens, 3 heads of 16, far positions, theta from a config */
  const int32_t pv[7] = { 0, 1, 5, 100, 3000, 7, 4095 };
  for (int in_place = 0; in_place < 2; in_place++)
    {
      x = TENSOR (NULL, 2, 7, 48);
      fill_random (&x, 40 + in_place);
      ds_tensor_alloc (&pos, DS_DTYPE_I32, 1, (int64_t[]){ 7 }, &err);
      memcpy (pos.data, pv, sizeof pv);
      float theta = in_place ? 500000.0f : 10000.0f;
      float *want = malloc (ds_tensor_nbytes (&x));
      ref_rope (&x, pv, 3, theta, want);
      y = in_place ? x : tensor_like (&x);
      DS_CHECK_OK (ds_rope (be, &x, &pos, 3, theta, &y, &err), &err);
      expect_close (in_place ? "rope in place, theta 5e5" : "rope [2, 7, 3x16]",
                    ds_tensor_f32 (&y), want, ds_tensor_numel (&y), 1e-13, 1e-6);
      if (!in_place)
        ds_tensor_free (&y);
      ds_tensor_free (&x), ds_tensor_free (&pos), free (want);
    }

  /* attention_kv: equals the causal DS_OP_ATTENTION when nothing is cached */
  DsTensor q = TENSOR (NULL, 2, 6, 16), k = TENSOR (NULL, 2, 6, 16), v = TENSOR (NULL, 2, 6, 16);
  fill_random (&q, 50), fill_random (&k, 51), fill_random (&v, 52);
  DsTensor o1 = tensor_like (&q), o2 = tensor_like (&q);
  DS_CHECK_OK (ds_attention (be, &q, &k, &v, 2, 0.35f, true, &o1, NULL, &err), &err);
  DS_CHECK_OK (ds_attention_kv (be, &q, &k, &v, 2, 2, 0.35f, 0, &o2, &err), &err);
  expect_close ("attention_kv = causal attention", ds_tensor_f32 (&o2), ds_tensor_f32 (&o1),
                ds_tensor_numel (&q), 1e-13, 1e-6);
  ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v);
  ds_tensor_free (&o1), ds_tensor_free (&o2);

  static const struct {
    const char *name;
    int64_t nb, nq, nk, q_pos;
    int heads, kv_heads, d;
  } cases[] = {
    { "attention_kv decode step, GQA 4/2", 1, 1, 9, 8, 4, 2, 16 },
    { "attention_kv chunk after a prefix", 2, 3, 11, 5, 4, 4, 8 },
    { "attention_kv multi-query (1 kv head)", 1, 5, 5, 0, 4, 1, 8 },
    /* 8192 keys: query blocks of 128 rows, threaded (head, batch) pairs */
    { "attention_kv blocks [300 of 8192 keys]", 1, 300, 8192, 7000, 2, 1, 8 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      const int64_t cq = (int64_t) cases[i].heads * cases[i].d;
      const int64_t ckv = (int64_t) cases[i].kv_heads * cases[i].d;
      q = TENSOR (NULL, cases[i].nb, cases[i].nq, cq);
      k = TENSOR (NULL, cases[i].nb, cases[i].nk, ckv);
      v = TENSOR (NULL, cases[i].nb, cases[i].nk, ckv);
      fill_random (&q, 60 + (uint32_t) i), fill_random (&k, 70 + (uint32_t) i);
      fill_random (&v, 80 + (uint32_t) i);
      float scale = 1.0f / sqrtf ((float) cases[i].d);
      float *want = malloc (ds_tensor_nbytes (&q));
      ref_attention_kv (&q, &k, &v, cases[i].heads, cases[i].kv_heads, scale, cases[i].q_pos,
                        want);
      DsTensor o = tensor_like (&q);
      DS_CHECK_OK (ds_attention_kv (be, &q, &k, &v, cases[i].heads, cases[i].kv_heads, scale,
                                    cases[i].q_pos, &o, &err),
                   &err);
      expect_close (cases[i].name, ds_tensor_f32 (&o), want, ds_tensor_numel (&o), 1e-12, 1e-5);
      ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v), ds_tensor_free (&o);
      free (want);
    }

  /* attention_kv_at: one query, the whole cache, the position from a tensor:
   * the same bits as q_pos with the seen rows only; a position past the
   * cache is an error naming it */
  q = TENSOR (NULL, 1, 1, 64);
  k = TENSOR (NULL, 1, 40, 32), v = TENSOR (NULL, 1, 40, 32);
  fill_random (&q, 90), fill_random (&k, 91), fill_random (&v, 92);
  ds_tensor_alloc (&pos, DS_DTYPE_I32, 1, (int64_t[]){ 1 }, &err);
  *(int32_t *) pos.data = 23;
  o1 = tensor_like (&q), o2 = tensor_like (&q);
  DsTensor k_seen = ds_tensor_reshape (&k, 2, (int64_t[]){ 40, 32 });
  DsTensor v_seen = ds_tensor_reshape (&v, 2, (int64_t[]){ 40, 32 });
  k_seen = ds_tensor_slice0 (&k_seen, 0, 24), v_seen = ds_tensor_slice0 (&v_seen, 0, 24);
  k_seen = ds_tensor_reshape (&k_seen, 3, (int64_t[]){ 1, 24, 32 });
  v_seen = ds_tensor_reshape (&v_seen, 3, (int64_t[]){ 1, 24, 32 });
  DS_CHECK_OK (ds_attention_kv_at (be, &q, &k, &v, 4, 2, 0.25f, &pos, &o1, &err), &err);
  DS_CHECK_OK (ds_attention_kv (be, &q, &k_seen, &v_seen, 4, 2, 0.25f, 23, &o2, &err), &err);
  DS_CHECK (memcmp (o1.data, o2.data, ds_tensor_nbytes (&o1)) == 0,
            "attention_kv_at: the bits of attention_kv at q_pos 23");
  *(int32_t *) pos.data = 40;
  DS_CHECK (ds_attention_kv_at (be, &q, &k, &v, 4, 2, 0.25f, &pos, &o1, &err) == DS_ERR_INVALID
                && strstr (err.message, "position 40"),
            "attention_kv_at past the cache: %s", err.message);
  memset (&err, 0, sizeof err);
  ds_tensor_free (&q), ds_tensor_free (&k), ds_tensor_free (&v), ds_tensor_free (&pos);
  ds_tensor_free (&o1), ds_tensor_free (&o2);

  /* set_rows: rows 2 and 0 of a [4, 3] written, 1 and 3 kept; a row past the
   * end is refused before anything is written */
  x = TENSOR (((float[]){ 1, 2, 3, 4, 5, 6 }), 1, 2, 3);
  y = TENSOR (((float[]){ -1, -1, -1, -2, -2, -2, -3, -3, -3, -4, -4, -4 }), 4, 3);
  ds_tensor_alloc (&pos, DS_DTYPE_I32, 1, (int64_t[]){ 2 }, &err);
  ((int32_t *) pos.data)[0] = 2, ((int32_t *) pos.data)[1] = 0;
  DS_CHECK (strcmp (ds_op_name (DS_OP_SET_ROWS), "set_rows") == 0, "set_rows' name");
  DS_CHECK_OK (ds_set_rows (be, &x, &pos, &y, &err), &err);
  expect_values ("set_rows hand", &y, (float[]){ 4, 5, 6, -2, -2, -2, 1, 2, 3, -4, -4, -4 });
  ((int32_t *) pos.data)[0] = 1, ((int32_t *) pos.data)[1] = 4;
  DS_CHECK (ds_set_rows (be, &x, &pos, &y, &err) == DS_ERR_INVALID
                && strstr (err.message, "row 4"),
            "set_rows past the end: %s", err.message);
  expect_values ("set_rows refused writes nothing", &y,
                 (float[]){ 4, 5, 6, -2, -2, -2, 1, 2, 3, -4, -4, -4 });
  ds_tensor_free (&x), ds_tensor_free (&y), ds_tensor_free (&pos);
}

/* The CPU backend computes in f32: an f16 call is refused with a message
 * naming the op and the dtype, and writes nothing. */
static void
test_cpu_refuses_f16 (void)
{
  DsError err = { 0 };
  DsTensor x, y;
  DS_CHECK_OK (ds_tensor_alloc (&x, DS_DTYPE_F16, 1, (int64_t[]){ 4 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&y, DS_DTYPE_F16, 1, (int64_t[]){ 4 }, &err), &err);
  memset (y.data, 0x7f, ds_tensor_nbytes (&y));
  DS_CHECK_STATUS (ds_gelu (be, &x, &y, &err), DS_ERR_UNSUPPORTED, &err);
  DS_CHECK_CONTAINS (err.message, "gelu in f16");
  DS_CHECK (((uint8_t *) y.data)[0] == 0x7f, "a refused call wrote its output");
  ds_tensor_free (&x);
  ds_tensor_free (&y);
}

/* The mixed linear (ds-ops.h): f16/bf16 weights with f32 x, b, r and y, on
 * both of the CPU's paths (up to 8 rows: the streaming GEMV; more: weight
 * blocks widened for sgemm, two blocks here), against the f32 linear on the
 * same weights widened to f32 (exact). The two differ only in the order of
 * their f32 sums. Each result is a sum of the K products x_k w_k, b_j and r_ij
 * (K + 2 terms); any order of f32 summation (and any FMA use) is within
 * gamma_n * sum |terms| of the exact value, gamma_n = n u / (1 - n u),
 * u = 2^-24 (Higham, Accuracy and Stability, §3.1), so the two results are
 * within 2 gamma_{K+2} * (sum_k |x_k w_k| + |b_j| + |r_ij|) of each other:
 * the bound checked per element, with the sum in double. */
static void
check_mixed_linear (DsDType wdt, int64_t m, int64_t n, int64_t k, bool bias, int resid)
{
  DsError err = { 0 };
  DsTensor x = TENSOR (NULL, m, k), wf = TENSOR (NULL, n, k), b = TENSOR (NULL, n);
  DsTensor r = TENSOR (NULL, m, n), y = TENSOR (NULL, m, n), want = TENSOR (NULL, m, n);
  DsTensor w;
  fill_random (&x, 11 + (uint32_t) m);
  fill_random (&wf, 12 + (uint32_t) n);
  fill_random (&b, 13);
  fill_random (&r, 14);
  DS_CHECK_OK (ds_tensor_alloc (&w, wdt, 2, (int64_t[]){ n, k }, &err), &err);
  ds_convert_from_f32 (w.data, wdt, ds_tensor_f32 (&wf), n * k);
  DS_CHECK_OK (ds_convert_to_f32 (ds_tensor_f32 (&wf), w.data, wdt, n * k, &err), &err);
  const DsTensor *bp = bias ? &b : NULL;
  /* resid: 0 none, 1 r into y, 2 in place (y is r) */
  DsTensor *yp = resid == 2 ? &r : &y;
  if (resid == 2)
    memcpy (want.data, r.data, ds_tensor_nbytes (&r));
  DsTensor *rp = resid == 2 ? &want : resid ? &r : NULL;
  DS_CHECK_OK (ds_linear_add (be, &x, &wf, bp, rp, &want, &err), &err);
  float *r0 = malloc (ds_tensor_nbytes (&r));
  memcpy (r0, r.data, ds_tensor_nbytes (&r));
  DS_CHECK_OK (ds_linear_add (be, &x, &w, bp, resid ? &r : NULL, yp, &err), &err);
  const double u = 0x1p-24, nu = (double) (k + 2) * u, gamma = nu / (1 - nu);
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      {
        double mag = (bias ? fabs (ds_tensor_f32 (&b)[j]) : 0) + (resid ? fabs (r0[i * n + j]) : 0);
        for (int64_t q = 0; q < k; q++)
          mag += fabs ((double) ds_tensor_f32 (&x)[i * k + q] * ds_tensor_f32 (&wf)[j * k + q]);
        double d = fabs ((double) ds_tensor_f32 (yp)[i * n + j] - ds_tensor_f32 (&want)[i * n + j]);
        double bound = 2 * gamma * mag;
        worst = fmax (worst, bound > 0 ? d / bound : d);
        bad += !(d <= bound);
      }
  DS_CHECK (bad == 0,
            "mixed linear %s [%lld x %lld] . [%lld x %lld]^T%s%s: %lld elements past "
            "2 gamma_{K+2} sum|terms| (worst at %.2f of the bound)",
            ds_dtype_name (wdt), (long long) m, (long long) k, (long long) n, (long long) k,
            bias ? " + b" : "", resid == 2 ? " + y" : resid ? " + r" : "", (long long) bad, worst);
  free (r0);
  ds_tensor_free (&x), ds_tensor_free (&wf), ds_tensor_free (&b), ds_tensor_free (&r);
  ds_tensor_free (&y), ds_tensor_free (&want), ds_tensor_free (&w);
}

static void
test_mixed_linear_path (void)
{
  /* K = 200 leaves tails after the 64- and 16-wide steps; N = 4000, K = 1100 is
   * two widened blocks (16 MiB of f32 each) and several GEMV threads. */
  const DsDType dts[] = { DS_DTYPE_F16, DS_DTYPE_BF16 };
  for (int d = 0; d < 2; d++)
    {
      check_mixed_linear (dts[d], 1, 70, 200, false, 0);
      check_mixed_linear (dts[d], 1, 70, 200, true, 1);
      check_mixed_linear (dts[d], 3, 70, 7, true, 2);
      check_mixed_linear (dts[d], 8, 65, 200, false, 2);
      check_mixed_linear (dts[d], 9, 70, 200, true, 0);
      check_mixed_linear (dts[d], 40, 33, 129, true, 2);
      check_mixed_linear (dts[d], 1, 4000, 1100, true, 2);
      check_mixed_linear (dts[d], 12, 4000, 1100, false, 1);
    }
}

static void
test_mixed_linear (void)
{
  /* Every vector path this CPU runs (DS_CPU_KERNELS caps them), so that the
   * paths of CPUs without AVX-512 or AVX2 are tested on this one too. The
   * scalar path runs everywhere. */
  const char *paths[] = { "avx512", "avx2", "scalar" };
  for (int p = 0; p < 3; p++)
    {
      if (p == 0)
        unsetenv ("DS_CPU_KERNELS");
      else
        setenv ("DS_CPU_KERNELS", paths[p], 1);
      const char *now = ds_cpu_mixed_kernels ();
      if (strcmp (now, paths[p]) != 0)
        {
          DS_CHECK (p < 2, "DS_CPU_KERNELS=scalar gave the %s path", now);
          printf ("# mixed linear: this CPU has no %s path\n", paths[p]);
          continue;
        }
      printf ("# mixed linear: the %s path\n", now);
      test_mixed_linear_path ();
    }
  unsetenv ("DS_CPU_KERNELS");
  /* A backend without mixed_linear refuses the call and writes nothing. */
  DsError err = { 0 };
  DsBackend plain = *be;
  plain.mixed_linear = false;
  DsTensor x = TENSOR (NULL, 1, 4), y = TENSOR (NULL, 1, 2), w;
  DS_CHECK_OK (ds_tensor_alloc (&w, DS_DTYPE_F16, 2, (int64_t[]){ 2, 4 }, &err), &err);
  ds_tensor_f32 (&y)[0] = 7.0f;
  DS_CHECK_STATUS (ds_linear (&plain, &x, &w, NULL, &y, &err), DS_ERR_UNSUPPORTED, &err);
  DS_CHECK_CONTAINS (err.message, "f16 weights and f32 activations");
  DS_CHECK (ds_tensor_f32 (&y)[0] == 7.0f, "a refused mixed linear wrote its output");
  ds_tensor_free (&x), ds_tensor_free (&y), ds_tensor_free (&w);
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
  test_names_and_sizes ();
  test_conv2d_hand ();
  test_norms_hand ();
  test_gemm_hand ();
  test_cpu_refuses_f16 ();
  test_softmax_attention_hand ();
  test_elementwise_hand ();
  test_layout_hand ();
  test_timestep_hand ();
  test_embedding_out_of_range ();
  test_unsupported ();
  test_fixtures ();
  test_conv2d_row_blocks ();
  test_attention_blocks ();
  test_decoder_ops ();
  test_mixed_linear ();
  ds_backend_free (be);
  return ds_test_finish ();
}
