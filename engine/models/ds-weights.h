/* ds-weights.h: loading a model's parameters onto a backend.
 *
 * A DsWeights owns every parameter tensor of one model (freed together). Names
 * are formatted printf-style and prefixed with the loader's prefix; the stored
 * shape must equal the expected one, so a file from another config fails with a
 * message naming the file, tensor, stored and expected shapes. Tensors are read
 * as f32 (converted from f16/bf16 files), then converted once to the backend's
 * act_dtype (f16 on CUDA by default) and placed on its device.
 *
 * Matrices of linear layers loaded with ds_weights_load_matrix are the one
 * exception, on a backend with mixed_linear (the CPU's, ds-ops.h): stored in
 * f16 or bf16 they stay in that dtype, pointing straight into the file's
 * mapping (no copy: the DsSafetensors must then stay open until
 * ds_weights_free; n_mapped says whether any does) or, where the mapping
 * cannot serve (data not 2-byte aligned), in a compact copy. A LLaMA-7B
 * checkpoint in f16 then needs its 13.5 GB, not 27 GB of f32 copies.
 *
 * The small parameter structs below (linear, conv, norm) are what the model
 * graphs hold; shapes are written at each load call.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-ops.h"
#include "ds-safetensors.h"
#include "ds-safetensors-index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  DsBackend *be;
  const DsSafetensors *st; /* NULL: parameters are generated (ds_weights_init_random) */
  /* A sharded checkpoint (set after ds_weights_init with st NULL): each load
   * reads the shard holding its tensor (st is pointed at it); the index must
   * stay open as long as st would have to. */
  const DsSafetensorsIndex *index;
  uint64_t seed;
  char prefix[128];       /* prepended to every name, e.g. "encoder." */
  DsTensor *tensors;      /* everything loaded, for ds_weights_free */
  int n_tensors, cap_tensors;
  size_t n_params;
  size_t n_bytes;      /* bytes of every tensor held, mapped ones included */
  int n_mapped;        /* tensors pointing into st's mapping */
  DsDType random_dtype; /* random source: the dtype ds_weights_load_matrix's matrices
                           are "stored" in (f32 by default). f16/bf16 ones are drawn
                           by a faster generator (for benchmarks at 7B): a sum of four
                           uniforms with the same mean and variance, not the
                           normal draws of ds_weights_init_random */
} DsWeights;

void ds_weights_init (DsWeights *w, DsBackend *be, const DsSafetensors *st,
                      const char *prefix);
/* A source of seeded random parameters instead of a file, for the built-in demo
 * model: the same loaders define the model either way. Each tensor is drawn
 * from a generator seeded by (seed, name): weights N(0, 1/fan_in) with fan_in
 * the product of all dims but the first, 1-D "*.weight" (norm scales)
 * 1 + 0.1·N(0,1), biases 0.02·N(0,1), embeddings N(0, 1). */
void ds_weights_init_random (DsWeights *w, DsBackend *be, uint64_t seed, const char *prefix);
void ds_weights_free (DsWeights *w);

/* Loads the tensor named prefix + printf(fmt, ...) with the expected shape. */
DsStatus ds_weights_load (DsWeights *w, DsTensor *out, int ndim, const int64_t *shape,
                          DsError *err, const char *fmt, ...)
  __attribute__ ((format (printf, 6, 7)));
/* A linear layer's weight [rows, cols]: as ds_weights_load, except that on a
 * backend with mixed_linear an f16/bf16 matrix (in the file, or random_dtype
 * for a random source) keeps that dtype (mapped from the file where it can
 * be; see the top of this file). Anywhere else the op set's one-dtype rule
 * holds and the matrix is converted to act_dtype. Stored values must be
 * finite, as ds_safetensors_load_float requires. */
DsStatus ds_weights_load_matrix (DsWeights *w, DsTensor *out, int64_t rows, int64_t cols,
                                 DsError *err, const char *fmt, ...)
  __attribute__ ((format (printf, 6, 7)));
/* True when prefix + name exists in the file (always, for a random source). */
bool ds_weights_has (const DsWeights *w, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

typedef struct {
  DsTensor w; /* [out, in] */
  DsTensor b; /* [out], data NULL when the layer has no bias */
} DsLinearW;

typedef struct {
  DsTensor w; /* [out, in, k, k] */
  DsTensor b; /* [out] */
} DsConvW;

typedef struct {
  DsTensor g; /* [C] scale */
  DsTensor b; /* [C] shift */
} DsNormW;

/* `name` is the module path without the ".weight"/".bias" suffix. */
DsStatus ds_weights_linear (DsWeights *w, DsLinearW *out, int64_t n_out, int64_t n_in,
                            bool bias, DsError *err, const char *name);
DsStatus ds_weights_conv (DsWeights *w, DsConvW *out, int64_t n_out, int64_t n_in,
                          int k, DsError *err, const char *name);
DsStatus ds_weights_norm (DsWeights *w, DsNormW *out, int64_t c, DsError *err,
                          const char *name);

/* Bias pointer for the op wrappers: NULL when the layer has none. */
static inline const DsTensor *
ds_bias (const DsTensor *b)
{
  return b->data ? b : NULL;
}

#ifdef __cplusplus
}
#endif
