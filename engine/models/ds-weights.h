/* ds-weights.h: loading a model's parameters onto a backend.
 *
 * A DsWeights owns every parameter tensor of one model (freed together). Names
 * are formatted printf-style and prefixed with the loader's prefix; the stored
 * shape must equal the expected one, so a file from another config fails with a
 * message naming the file, tensor, stored and expected shapes. Tensors are read
 * as f32 (converted from f16/bf16 files), then converted once to the backend's
 * act_dtype (f16 on CUDA by default) and placed on its device.
 *
 * The small parameter structs below (linear, conv, norm) are what the model
 * graphs hold; shapes are written at each load call.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-ops.h"
#include "ds-safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  DsBackend *be;
  const DsSafetensors *st; /* NULL: parameters are generated (ds_weights_init_random) */
  uint64_t seed;
  char prefix[128];       /* prepended to every name, e.g. "encoder." */
  DsTensor *tensors;      /* everything loaded, for ds_weights_free */
  int n_tensors, cap_tensors;
  size_t n_params;
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
