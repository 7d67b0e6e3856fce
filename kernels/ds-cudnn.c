/* ds-cudnn.c: see ds-cudnn.h. */
#include "ds-cudnn.h"

#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PLANS 64
#define WORKSPACE_CAP ((size_t) 256 << 20)

typedef struct {
  DsCudnnConv key;
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace;
  bool failed;       /* cuDNN cannot run this shape: im2col, without asking again */
  char why[200];
} Plan;

struct DsCudnn {
  cudnnHandle_t handle;
  Plan plans[N_PLANS];
  int n_plans, next_evict;
};

static void
say (char *why, size_t len, const char *what, cudnnStatus_t s)
{
  if (why && len)
    snprintf (why, len, "cuDNN %s: %s", what, cudnnGetErrorString (s));
}

DsCudnn *
ds_cudnn_new (cudaStream_t stream, char *why, size_t why_len)
{
  DsCudnn *c = calloc (1, sizeof *c);
  if (!c)
    {
      snprintf (why, why_len, "out of host memory");
      return NULL;
    }
  cudnnStatus_t s = cudnnCreate (&c->handle);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnSetStream (c->handle, stream);
  if (s != CUDNN_STATUS_SUCCESS)
    {
      say (why, why_len, "create", s);
      if (c->handle)
        cudnnDestroy (c->handle);
      free (c);
      return NULL;
    }
  return c;
}

static void
plan_clear (Plan *p)
{
  if (p->x)
    cudnnDestroyTensorDescriptor (p->x);
  if (p->y)
    cudnnDestroyTensorDescriptor (p->y);
  if (p->w)
    cudnnDestroyFilterDescriptor (p->w);
  if (p->conv)
    cudnnDestroyConvolutionDescriptor (p->conv);
  memset (p, 0, sizeof *p);
}

int
ds_cudnn_version (void)
{
  return (int) cudnnGetVersion ();
}

void
ds_cudnn_free (DsCudnn *c)
{
  if (!c)
    return;
  for (int i = 0; i < c->n_plans; i++)
    plan_clear (&c->plans[i]);
  cudnnDestroy (c->handle);
  free (c);
}

static bool
same_key (const DsCudnnConv *a, const DsCudnnConv *b)
{
  const DsCudaConvGeom *g = &a->g, *h = &b->g;
  return a->dtype == b->dtype && a->nb == b->nb && a->co == b->co && g->ci == h->ci
         && g->h == h->h && g->w == h->w && g->kh == h->kh && g->kw == h->kw && g->ho == h->ho
         && g->wo == h->wo && g->stride == h->stride && g->pad_top == h->pad_top
         && g->pad_left == h->pad_left;
}

/* Descriptors and the heuristics' first algorithm for `k`. */
static cudnnStatus_t
plan_make (DsCudnn *c, const DsCudnnConv *k, Plan *p, const char **what)
{
  const DsCudaConvGeom *g = &k->g;
  const cudnnDataType_t t = k->dtype == DS_DTYPE_F16    ? CUDNN_DATA_HALF
                            : k->dtype == DS_DTYPE_BF16 ? CUDNN_DATA_BFLOAT16
                                                        : CUDNN_DATA_FLOAT;
  cudnnStatus_t s;
  memset (p, 0, sizeof *p);
  p->key = *k;
#define STEP(call, name)                                                                       \
  if ((s = (call)) != CUDNN_STATUS_SUCCESS)                                                    \
    {                                                                                          \
      *what = (name);                                                                          \
      return s;                                                                                \
    }
  STEP (cudnnCreateTensorDescriptor (&p->x), "tensor descriptor");
  STEP (cudnnCreateTensorDescriptor (&p->y), "tensor descriptor");
  STEP (cudnnCreateFilterDescriptor (&p->w), "filter descriptor");
  STEP (cudnnCreateConvolutionDescriptor (&p->conv), "convolution descriptor");
  STEP (cudnnSetTensor4dDescriptor (p->x, CUDNN_TENSOR_NCHW, t, (int) k->nb, (int) g->ci,
                                    (int) g->h, (int) g->w),
        "input shape");
  STEP (cudnnSetTensor4dDescriptor (p->y, CUDNN_TENSOR_NCHW, t, (int) k->nb, (int) k->co,
                                    (int) g->ho, (int) g->wo),
        "output shape");
  STEP (cudnnSetFilter4dDescriptor (p->w, t, CUDNN_TENSOR_NCHW, (int) k->co, (int) g->ci,
                                    (int) g->kh, (int) g->kw),
        "filter shape");
  /* f32 accumulation always; cross-correlation, as PyTorch's conv2d */
  STEP (cudnnSetConvolution2dDescriptor (p->conv, (int) g->pad_top, (int) g->pad_left,
                                         (int) g->stride, (int) g->stride, 1, 1,
                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
        "convolution");
  STEP (cudnnSetConvolutionMathType (p->conv, k->dtype == DS_DTYPE_F32 ? CUDNN_FMA_MATH
                                                                       : CUDNN_TENSOR_OP_MATH),
        "math type");
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int n = 0;
  STEP (cudnnGetConvolutionForwardAlgorithm_v7 (c->handle, p->x, p->w, p->conv, p->y, 8, &n,
                                                perf),
        "algorithm heuristics");
  /* the heuristics' order, first one that is supported with this math,
   * deterministic (the same inputs must give the same maps) and content with
   * a workspace of at most WORKSPACE_CAP (FFT algorithms can ask for GBs) */
  for (int i = 0; i < n; i++)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC
        && (k->dtype != DS_DTYPE_F32 || perf[i].mathType != CUDNN_TENSOR_OP_MATH)
        && perf[i].memory <= WORKSPACE_CAP)
      {
        p->algo = perf[i].algo;
        STEP (cudnnGetConvolutionForwardWorkspaceSize (c->handle, p->x, p->w, p->conv, p->y,
                                                       p->algo, &p->workspace),
              "workspace size");
        return CUDNN_STATUS_SUCCESS;
      }
  *what = "algorithm heuristics (no usable algorithm)";
  return CUDNN_STATUS_NOT_SUPPORTED;
#undef STEP
}

static Plan *
plan_for (DsCudnn *c, const DsCudnnConv *k, char *why, size_t why_len)
{
  for (int i = 0; i < c->n_plans; i++)
    if (same_key (&c->plans[i].key, k))
      {
        if (!c->plans[i].failed)
          return &c->plans[i];
        snprintf (why, why_len, "%s", c->plans[i].why);
        return NULL;
      }
  Plan *p;
  if (c->n_plans < N_PLANS)
    p = &c->plans[c->n_plans++];
  else
    {
      p = &c->plans[c->next_evict];
      c->next_evict = (c->next_evict + 1) % N_PLANS;
      plan_clear (p);
    }
  const char *what = "plan";
  cudnnStatus_t s = plan_make (c, k, p, &what);
  if (s != CUDNN_STATUS_SUCCESS)
    {
      say (why, why_len, what, s);
      plan_clear (p);
      p->key = *k; /* remembered as failed */
      p->failed = true;
      snprintf (p->why, sizeof p->why, "%s", why ? why : "");
      return NULL;
    }
  return p;
}

bool
ds_cudnn_conv_plan (DsCudnn *c, const DsCudnnConv *conv, size_t *workspace, char *why,
                    size_t why_len)
{
  const DsCudaConvGeom *g = &conv->g;
  if (conv->nb > 0x7fffffff || conv->co > 0x7fffffff || g->ci > 0x7fffffff
      || g->h > 0x7fffffff || g->w > 0x7fffffff)
    {
      snprintf (why, why_len, "dimensions beyond cuDNN's 32-bit ints");
      return false;
    }
  Plan *p = plan_for (c, conv, why, why_len);
  if (!p)
    return false;
  *workspace = p->workspace;
  return true;
}

int
ds_cudnn_conv_run (DsCudnn *c, const DsCudnnConv *conv, const void *x, const void *w, void *y,
                   void *workspace, size_t workspace_bytes, char *why, size_t why_len)
{
  Plan *p = plan_for (c, conv, why, why_len);
  if (!p)
    return (int) CUDNN_STATUS_NOT_SUPPORTED;
  const float one = 1.0f, zero = 0.0f;
  cudnnStatus_t s = cudnnConvolutionForward (c->handle, &one, p->x, x, p->w, w, p->conv, p->algo,
                                             workspace, workspace_bytes, &zero, p->y, y);
  if (s != CUDNN_STATUS_SUCCESS)
    say (why, why_len, "convolution", s);
  return (int) s;
}
