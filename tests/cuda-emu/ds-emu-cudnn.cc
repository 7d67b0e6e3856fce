/* ds-emu-cudnn.cc: the CUDA emulator's cuDNN subset (include/cudnn.h,
 * tests/cuda-emu/README.md).
 *
 * Descriptors are checked as cuDNN checks them (set before use, one data type
 * across x, w and y, a supported compute configuration, y's shape equal to
 * the convolution's output shape, NCHW only in this subset). The forward
 * convolution checks that x, w, y and the workspace are device memory of the
 * sizes the descriptors and the algorithm need and that y overlaps neither
 * input, then is enqueued on the handle's stream: it first fills the
 * workspace with 0xff bytes (a workspace that aliases live data shows), then
 * computes through OpenBLAS on float copies (im2col in blocks of output
 * rows), f32 accumulation, alpha and beta applied in float, y read only when
 * beta is non-zero, the result rounded to y's type. Float data is rounded to
 * TF32 first unless the descriptor asks for CUDNN_FMA_MATH (on Ampere and
 * later cuDNN may use TF32 tensor cores for float otherwise).
 *
 * The heuristics list, in this order: FFT with a 16 GiB workspace (a caller
 * must refuse workspaces that large), WINOGRAD_NONFUSED marked
 * non-deterministic (a decoy: running it fails with NOT_SUPPORTED and a line
 * on stderr, so a caller that ignores determinism fails its tests), then
 * IMPLICIT_PRECOMP_GEMM with a small workspace and IMPLICIT_GEMM with none.
 *
 * Environment: DS_CUDA_EMU_CUDNN=0 makes cudnnCreate fail (as with no usable
 * cuDNN); DS_CUDA_EMU_CUDNN=refuse makes every heuristic entry
 * CUDNN_STATUS_NOT_SUPPORTED (a shape cuDNN cannot run).
 */
#include "cudnn.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "ds-emu-fp.h"
#include "ds-emu-internal.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

/* A 4-D tensor or filter descriptor: n is a filter's output channels (k). */
struct Desc4 {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
};

struct cudnnTensorStruct : Desc4 {};
struct cudnnFilterStruct : Desc4 {};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

enum Availability { ON, OFF, REFUSE };

Availability
availability ()
{
  const char *v = getenv ("DS_CUDA_EMU_CUDNN");
  if (v && strcmp (v, "0") == 0)
    return OFF;
  if (v && strcmp (v, "refuse") == 0)
    return REFUSE;
  return ON;
}

/* One convolution's geometry, from checked descriptors. */
struct Geo {
  int n, ci, h, w, co, kh, kw, ho, wo;
  int ph, pw, sh, sw, dh, dw;
  bool flip; /* CUDNN_CONVOLUTION: the filter is applied rotated by 180 degrees */
  cudnnDataType_t type;
  bool tf32; /* float data, tensor-op math allowed */
  size_t esize;
};

size_t
elems (int a, int b, int c, int d)
{
  return (size_t) a * (size_t) b * (size_t) c * (size_t) d;
}

cudnnStatus_t
check (const cudnnTensorStruct *x, const cudnnFilterStruct *w, const cudnnConvolutionStruct *cv,
       const cudnnTensorStruct *y, Geo *g)
{
  if (!x || !w || !cv || !y)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (!x->set || !w->set || !cv->set || !y->set)
    return CUDNN_STATUS_BAD_PARAM;
  if (x->format != CUDNN_TENSOR_NCHW || y->format != CUDNN_TENSOR_NCHW
      || w->format != CUDNN_TENSOR_NCHW)
    return CUDNN_STATUS_NOT_SUPPORTED; /* this subset */
  if (x->type != w->type || x->type != y->type)
    return CUDNN_STATUS_BAD_PARAM;
  const bool ok_config = (x->type == CUDNN_DATA_FLOAT && cv->compute == CUDNN_DATA_FLOAT)
                         || (x->type == CUDNN_DATA_HALF
                             && (cv->compute == CUDNN_DATA_FLOAT || cv->compute == CUDNN_DATA_HALF))
                         || (x->type == CUDNN_DATA_BFLOAT16 && cv->compute == CUDNN_DATA_FLOAT);
  if (!ok_config)
    return CUDNN_STATUS_NOT_SUPPORTED;
  if (x->c != w->c) /* one group */
    return CUDNN_STATUS_BAD_PARAM;
  const int ekh = cv->dil_h * (w->h - 1) + 1, ekw = cv->dil_w * (w->w - 1) + 1;
  const int ho = (x->h + 2 * cv->pad_h - ekh) / cv->u + 1;
  const int wo = (x->w + 2 * cv->pad_w - ekw) / cv->v + 1;
  if (x->h + 2 * cv->pad_h < ekh || x->w + 2 * cv->pad_w < ekw)
    return CUDNN_STATUS_BAD_PARAM;
  if (y->n != x->n || y->c != w->n || y->h != ho || y->w != wo)
    return CUDNN_STATUS_BAD_PARAM;
  *g = { x->n, x->c, x->h, x->w, w->n, w->h, w->w, ho, wo,
         cv->pad_h, cv->pad_w, cv->u, cv->v, cv->dil_h, cv->dil_w,
         cv->mode == CUDNN_CONVOLUTION, x->type,
         x->type == CUDNN_DATA_FLOAT && cv->math != CUDNN_FMA_MATH,
         x->type == CUDNN_DATA_FLOAT ? sizeof (float) : 2 };
  return CUDNN_STATUS_SUCCESS;
}

/* The heuristics' list for a checked convolution (see the file comment). */
std::vector<cudnnConvolutionFwdAlgoPerf_t>
heuristics (const Geo &g, cudnnMathType_t math)
{
  const cudnnStatus_t st = availability () == REFUSE ? CUDNN_STATUS_NOT_SUPPORTED
                                                     : CUDNN_STATUS_SUCCESS;
  const cudnnMathType_t m = math == CUDNN_DEFAULT_MATH && g.type != CUDNN_DATA_FLOAT
                                ? CUDNN_TENSOR_OP_MATH
                                : math;
  std::vector<cudnnConvolutionFwdAlgoPerf_t> v;
  auto add = [&] (cudnnConvolutionFwdAlgo_t a, size_t memory, cudnnDeterminism_t d) {
    cudnnConvolutionFwdAlgoPerf_t p = {};
    p.algo = a, p.status = st, p.time = -1.0f, p.memory = memory, p.determinism = d;
    p.mathType = m;
    v.push_back (p);
  };
  add (CUDNN_CONVOLUTION_FWD_ALGO_FFT, (size_t) 16 << 30, CUDNN_DETERMINISTIC);
  add (CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, 0, CUDNN_NON_DETERMINISTIC);
  add (CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, (size_t) g.ci * g.kh * g.kw * 8 + 256,
       CUDNN_DETERMINISTIC);
  add (CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0, CUDNN_DETERMINISTIC);
  return v;
}

/* The checked geometry of a convolution and the heuristics' entry for
 * `algo`, which must be one they offer as supported. */
cudnnStatus_t
planned (const cudnnTensorStruct *x, const cudnnFilterStruct *w,
         const cudnnConvolutionStruct *cv, const cudnnTensorStruct *y,
         cudnnConvolutionFwdAlgo_t algo, Geo *g, cudnnConvolutionFwdAlgoPerf_t *entry)
{
  cudnnStatus_t s = check (x, w, cv, y, g);
  if (s != CUDNN_STATUS_SUCCESS)
    return s;
  for (const auto &p : heuristics (*g, cv->math))
    if (p.algo == algo && p.status == CUDNN_STATUS_SUCCESS)
      {
        *entry = p;
        return CUDNN_STATUS_SUCCESS;
      }
  return CUDNN_STATUS_NOT_SUPPORTED;
}

float
load (const Geo &g, const void *p, size_t i)
{
  switch (g.type)
    {
    case CUDNN_DATA_HALF: return ds_emu_half_bits_to_float (((const unsigned short *) p)[i]);
    case CUDNN_DATA_BFLOAT16: return ds_emu_bf16_bits_to_float (((const unsigned short *) p)[i]);
    default:
      {
        const float f = ((const float *) p)[i];
        return g.tf32 ? ds_emu_round_tf32 (f) : f;
      }
    }
}

void
store (const Geo &g, void *p, size_t i, float v)
{
  switch (g.type)
    {
    case CUDNN_DATA_HALF: ((unsigned short *) p)[i] = ds_emu_float_to_half_bits (v); break;
    case CUDNN_DATA_BFLOAT16: ((unsigned short *) p)[i] = ds_emu_float_to_bf16_bits (v); break;
    default: ((float *) p)[i] = v; break;
    }
}

/* y = alpha * conv(x, w) + beta * y on the host. */
void
forward (const Geo &g, float alpha, const void *x, const void *w, float beta, void *y,
         void *workspace, size_t ws_bytes)
{
  if (workspace)
    memset (workspace, 0xff, ws_bytes);
  const int K = g.ci * g.kh * g.kw, P = g.ho * g.wo;
  /* weights as [co, K] floats, rotated for CUDNN_CONVOLUTION */
  std::vector<float> wf ((size_t) g.co * K);
  for (int o = 0; o < g.co; o++)
    for (int c = 0; c < g.ci; c++)
      for (int r = 0; r < g.kh; r++)
        for (int s = 0; s < g.kw; s++)
          {
            const int rr = g.flip ? g.kh - 1 - r : r, ss = g.flip ? g.kw - 1 - s : s;
            wf[(size_t) o * K + ((size_t) c * g.kh + r) * g.kw + s]
                = load (g, w, (((size_t) o * g.ci + c) * g.kh + rr) * g.kw + ss);
          }
  const size_t budget = (size_t) 16 << 20; /* floats of columns per block */
  int block = (int) std::max<size_t> (1, budget / ((size_t) K * g.wo));
  block = std::min (block, g.ho);
  std::vector<float> col ((size_t) K * block * g.wo), acc ((size_t) g.co * block * g.wo);
  for (int n = 0; n < g.n; n++)
    for (int r0 = 0; r0 < g.ho; r0 += block)
      {
        const int rows = std::min (block, g.ho - r0), np = rows * g.wo;
        for (int c = 0; c < g.ci; c++)
          for (int r = 0; r < g.kh; r++)
            for (int s = 0; s < g.kw; s++)
              {
                float *dst = &col[(((size_t) c * g.kh + r) * g.kw + s) * np];
                for (int oy = 0; oy < rows; oy++)
                  for (int ox = 0; ox < g.wo; ox++)
                    {
                      const int iy = (r0 + oy) * g.sh - g.ph + r * g.dh;
                      const int ix = ox * g.sw - g.pw + s * g.dw;
                      dst[oy * g.wo + ox]
                          = iy < 0 || iy >= g.h || ix < 0 || ix >= g.w
                                ? 0.0f
                                : load (g, x, (((size_t) n * g.ci + c) * g.h + iy) * g.w + ix);
                    }
              }
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, g.co, np, K, alpha, wf.data (), K,
                     col.data (), np, 0.0f, acc.data (), np);
        for (int o = 0; o < g.co; o++)
          for (int p = 0; p < np; p++)
            {
              const size_t i = ((size_t) n * g.co + o) * P + (size_t) r0 * g.wo + p;
              float v = acc[(size_t) o * np + p];
              if (beta != 0.0f)
                v += beta * load (g, y, i);
              store (g, y, i, v);
            }
      }
}

bool
overlap (const void *a, size_t na, const void *b, size_t nb)
{
  const char *pa = (const char *) a, *pb = (const char *) b;
  return pa < pb + nb && pb < pa + na;
}

} // namespace

extern "C" {

size_t
cudnnGetVersion (void)
{
  return CUDNN_VERSION;
}

const char *
cudnnGetErrorString (cudnnStatus_t status)
{
  switch (status)
    {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER:
      return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
  return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t
cudnnCreate (cudnnHandle_t *handle)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  *handle = nullptr;
  if (!ds_emu::any_device () || availability () == OFF)
    return CUDNN_STATUS_NOT_INITIALIZED;
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnDestroy (cudnnHandle_t handle)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM;
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnSetStream (cudnnHandle_t handle, cudaStream_t streamId)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM;
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}

#define CREATE_DESTROY(Type, Create, Destroy)                                                  \
  cudnnStatus_t Create (Type **d)                                                              \
  {                                                                                            \
    if (!d)                                                                                    \
      return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;                                              \
    *d = new Type;                                                                             \
    return CUDNN_STATUS_SUCCESS;                                                               \
  }                                                                                            \
  cudnnStatus_t Destroy (Type *d)                                                              \
  {                                                                                            \
    delete d;                                                                                  \
    return CUDNN_STATUS_SUCCESS;                                                               \
  }

CREATE_DESTROY (cudnnTensorStruct, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor)
CREATE_DESTROY (cudnnFilterStruct, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor)
CREATE_DESTROY (cudnnConvolutionStruct, cudnnCreateConvolutionDescriptor,
                cudnnDestroyConvolutionDescriptor)
#undef CREATE_DESTROY

static bool
known_type (cudnnDataType_t t)
{
  return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16
         || t == CUDNN_DATA_DOUBLE || t == CUDNN_DATA_INT8 || t == CUDNN_DATA_INT32;
}

static cudnnStatus_t
set4 (Desc4 *d, cudnnTensorFormat_t format, cudnnDataType_t type, int n, int c, int h, int w)
{
  if (!d)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || !known_type (type)
      || (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC))
    return CUDNN_STATUS_BAD_PARAM;
  d->format = format, d->type = type, d->n = n, d->c = c, d->h = h, d->w = w;
  d->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnSetTensor4dDescriptor (cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                            cudnnDataType_t dataType, int n, int c, int h, int w)
{
  return set4 (d, format, dataType, n, c, h, w);
}

cudnnStatus_t
cudnnSetFilter4dDescriptor (cudnnFilterDescriptor_t d, cudnnDataType_t dataType,
                            cudnnTensorFormat_t format, int k, int c, int h, int w)
{
  return set4 (d, format, dataType, k, c, h, w);
}

cudnnStatus_t
cudnnSetConvolution2dDescriptor (cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u,
                                 int v, int dilation_h, int dilation_w,
                                 cudnnConvolutionMode_t mode, cudnnDataType_t computeType)
{
  if (!d)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0
      || (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
      || !known_type (computeType))
    return CUDNN_STATUS_BAD_PARAM;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v;
  d->dil_h = dilation_h, d->dil_w = dilation_w, d->mode = mode, d->compute = computeType;
  d->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnSetConvolutionMathType (cudnnConvolutionDescriptor_t d, cudnnMathType_t mathType)
{
  if (!d)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (mathType < CUDNN_DEFAULT_MATH || mathType > CUDNN_FMA_MATH)
    return CUDNN_STATUS_BAD_PARAM;
  d->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnGetConvolutionForwardAlgorithm_v7 (cudnnHandle_t handle,
                                        const cudnnTensorDescriptor_t srcDesc,
                                        const cudnnFilterDescriptor_t filterDesc,
                                        const cudnnConvolutionDescriptor_t convDesc,
                                        const cudnnTensorDescriptor_t destDesc,
                                        const int requestedAlgoCount, int *returnedAlgoCount,
                                        cudnnConvolutionFwdAlgoPerf_t *perfResults)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM;
  if (!returnedAlgoCount || !perfResults)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (requestedAlgoCount <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  Geo g;
  cudnnStatus_t s = check (srcDesc, filterDesc, convDesc, destDesc, &g);
  if (s != CUDNN_STATUS_SUCCESS)
    return s;
  const auto v = heuristics (g, convDesc->math);
  const int n = std::min (requestedAlgoCount, (int) v.size ());
  std::copy (v.begin (), v.begin () + n, perfResults);
  *returnedAlgoCount = n;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t
cudnnGetConvolutionForwardWorkspaceSize (cudnnHandle_t handle,
                                         const cudnnTensorDescriptor_t xDesc,
                                         const cudnnFilterDescriptor_t wDesc,
                                         const cudnnConvolutionDescriptor_t convDesc,
                                         const cudnnTensorDescriptor_t yDesc,
                                         cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM;
  if (!sizeInBytes)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  Geo g;
  cudnnConvolutionFwdAlgoPerf_t p;
  cudnnStatus_t s = planned (xDesc, wDesc, convDesc, yDesc, algo, &g, &p);
  if (s == CUDNN_STATUS_SUCCESS)
    *sizeInBytes = p.memory;
  return s;
}

cudnnStatus_t
cudnnConvolutionForward (cudnnHandle_t handle, const void *alpha,
                         const cudnnTensorDescriptor_t xDesc, const void *x,
                         const cudnnFilterDescriptor_t wDesc, const void *w,
                         const cudnnConvolutionDescriptor_t convDesc,
                         cudnnConvolutionFwdAlgo_t algo, void *workSpace,
                         size_t workSpaceSizeInBytes, const void *beta,
                         const cudnnTensorDescriptor_t yDesc, void *y)
{
  if (!handle)
    return CUDNN_STATUS_BAD_PARAM;
  if (!alpha || !beta || !x || !w || !y)
    return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  Geo g;
  cudnnConvolutionFwdAlgoPerf_t p;
  cudnnStatus_t s = planned (xDesc, wDesc, convDesc, yDesc, algo, &g, &p);
  if (s != CUDNN_STATUS_SUCCESS)
    return s;
  if (p.determinism != CUDNN_DETERMINISTIC)
    {
      fprintf (stderr, "emulated cuDNN: algorithm %d is the heuristics' non-deterministic decoy; "
                       "a caller that needs reproducible results must not run it\n",
               (int) algo);
      return CUDNN_STATUS_NOT_SUPPORTED;
    }
  const size_t xb = elems (g.n, g.ci, g.h, g.w) * g.esize;
  const size_t wb = elems (g.co, g.ci, g.kh, g.kw) * g.esize;
  const size_t yb = elems (g.n, g.co, g.ho, g.wo) * g.esize;
  if (!ds_emu::device_range (x, xb) || !ds_emu::device_range (w, wb)
      || !ds_emu::device_range (y, yb))
    return CUDNN_STATUS_BAD_PARAM;
  if (overlap (y, yb, x, xb) || overlap (y, yb, w, wb))
    return CUDNN_STATUS_BAD_PARAM;
  const size_t need = p.memory;
  if (need > 0
      && (!workSpace || workSpaceSizeInBytes < need || !ds_emu::device_range (workSpace, need)
          || overlap (workSpace, need, x, xb) || overlap (workSpace, need, w, wb)
          || overlap (workSpace, need, y, yb)))
    return CUDNN_STATUS_BAD_PARAM;
  /* host scaling factors, read now as cuDNN reads them */
  const float a = *(const float *) alpha, b = *(const float *) beta;
  void *ws = need ? workSpace : nullptr;
  if (ds_emu::enqueue (handle->stream,
                       [=] () { forward (g, a, x, w, b, y, ws, need); })
      != cudaSuccess)
    {
      cudaGetLastError (); /* reported as cuDNN's own status */
      return CUDNN_STATUS_EXECUTION_FAILED;
    }
  return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */
