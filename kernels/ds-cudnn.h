/* ds-cudnn.h: convolutions through cuDNN, for the CUDA backend (internal).
 *
 * The alternative to im2col + GEMM for DS_OP_CONV2D: cuDNN's own convolution
 * kernels (implicit GEMM and friends) read the image directly, so the column
 * matrix — as many bytes as the GEMM's operand, at 64x64 — never exists.
 * Symmetric padding only (cuDNN's descriptor has one pad per axis); the
 * backend keeps im2col for the rest (the VAE's (0,1,0,1) downsampler).
 * f32 convolutions use FMA math (no TF32, matching the CPU to rounding);
 * f16/bf16 ones tensor cores with f32 accumulation.
 *
 * Plans (descriptors and the algorithm cuDNN's heuristics pick, with its
 * workspace size) are cached per shape, so a forward pays the heuristics once.
 * Built only where cuDNN is found (meson: DS_HAVE_CUDNN).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "ds-cuda-kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsCudnn DsCudnn;

/* A cuDNN handle on `stream`; NULL with a reason in why[] when cuDNN does not
 * load or has no device. */
DsCudnn *ds_cudnn_new (cudaStream_t stream, char *why, size_t why_len);
void ds_cudnn_free (DsCudnn *c);
/* The loaded library's version, e.g. 91900 for 9.19.0. */
int ds_cudnn_version (void);

typedef struct {
  DsDType dtype;
  int64_t nb, co;
  DsCudaConvGeom g;
} DsCudnnConv;

/* Plans `conv` (cached) and gives the workspace it needs. false with a reason
 * when cuDNN cannot run it (the caller falls back to im2col). */
bool ds_cudnn_conv_plan (DsCudnn *c, const DsCudnnConv *conv, size_t *workspace, char *why,
                         size_t why_len);
/* y[nb, co, ho, wo] = conv(x[nb, ci, h, w], w[co, ci, kh, kw]) with a planned
 * shape; workspace holds at least what the plan said. 0 on success, else a
 * cuDNN status with its text in why[]. */
int ds_cudnn_conv_run (DsCudnn *c, const DsCudnnConv *conv, const void *x, const void *w, void *y,
                       void *workspace, size_t workspace_bytes, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
