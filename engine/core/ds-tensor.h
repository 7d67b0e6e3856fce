/* ds-tensor.h: dense tensors, dtypes and the activation arena.
 *
 * A DsTensor is a small value type: dtype, placement, up to four dimensions in
 * PyTorch's row-major order (shape[0] outermost, the last dimension contiguous)
 * and a data pointer. Tensors are always contiguous; a view shares another
 * tensor's data with a new shape or a slice along dimension 0. Whether a tensor
 * owns its data is recorded in `owned`; ds_tensor_free releases only owned data.
 *
 * Activations come from a DsArena: one block reserved up front, handed out by
 * bumping an offset, released all at once (ds_arena_reset) or back to a mark.
 *
 * Usage:
 *   DsTensor x;
 *   int64_t shape[] = { 2, 320, 64, 64 };
 *   if (ds_tensor_alloc (&x, DS_DTYPE_F32, 4, shape, err) != DS_OK) ...
 *   float *p = ds_tensor_f32 (&x);
 *   ds_tensor_free (&x);
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_MAX_DIMS 4

typedef enum {
  DS_DTYPE_F32,
  DS_DTYPE_F16,
  DS_DTYPE_BF16,
  DS_DTYPE_I32,
  DS_DTYPE_I64,
  DS_DTYPE_COUNT
} DsDType;

typedef enum {
  DS_DEVICE_CPU,
  DS_DEVICE_CUDA,
  DS_DEVICE_COUNT
} DsDevice;

typedef struct {
  DsDType dtype;
  DsDevice device;
  int ndim;
  int64_t shape[DS_MAX_DIMS]; /* unused trailing entries are 1 */
  void *data;                 /* host or device pointer, per `device` */
  bool owned;                 /* data was malloc'ed for this tensor */
} DsTensor;

size_t ds_dtype_size (DsDType dtype);
const char *ds_dtype_name (DsDType dtype);     /* "f32", "f16", ... */
const char *ds_device_name (DsDevice device);  /* "cpu", "cuda" */

int64_t ds_tensor_numel (const DsTensor *t);
size_t ds_tensor_nbytes (const DsTensor *t);
bool ds_tensor_same_shape (const DsTensor *a, const DsTensor *b);
/* Writes e.g. "[2, 320, 64, 64]" into buf; returns buf. */
char *ds_shape_str (int ndim, const int64_t *shape, char *buf, size_t size);

/* A tensor header with the given shape and no data (data = NULL, owned = false). */
DsTensor ds_tensor_make (DsDType dtype, int ndim, const int64_t *shape);
/* Allocates zeroed host memory for a new CPU tensor. */
DsStatus ds_tensor_alloc (DsTensor *t, DsDType dtype, int ndim,
                          const int64_t *shape, DsError *err);
/* Frees owned host data and clears the struct; harmless on a zeroed struct. */
void ds_tensor_free (DsTensor *t);
/* A tensor sharing t's data with another shape of the same element count. */
DsTensor ds_tensor_reshape (const DsTensor *t, int ndim, const int64_t *shape);
/* Rows [start, start + len) of dimension 0, sharing t's data. */
DsTensor ds_tensor_slice0 (const DsTensor *t, int64_t start, int64_t len);

static inline float *
ds_tensor_f32 (const DsTensor *t)
{
  return (float *) t->data;
}

/* IEEE half and bfloat16 conversions (round to nearest even). */
float ds_f16_to_f32 (uint16_t h);
uint16_t ds_f32_to_f16 (float f);
float ds_bf16_to_f32 (uint16_t h);
uint16_t ds_f32_to_bf16 (float f);

/* Converts `n` elements of src_dtype at src into f32 at dst (host memory). */
DsStatus ds_convert_to_f32 (float *dst, const void *src, DsDType src_dtype,
                            int64_t n, DsError *err);
/* Rounds `n` f32 values into f16 or bf16 (round to nearest even) or copies them
 * (f32) at dst (host memory). dst_dtype must be a float dtype. */
void ds_convert_from_f32 (void *dst, DsDType dst_dtype, const float *src, int64_t n);
/* True for f32, f16 and bf16. */
bool ds_dtype_is_float (DsDType dtype);

/* Bump allocator for activations. */
typedef struct {
  uint8_t *base;   /* host memory, or device memory when device != DS_DEVICE_CPU */
  DsDevice device; /* stamped on every tensor the arena hands out */
  DsDType dtype;   /* the float dtype of activations (ds_arena_act in ds-nn.h) */
  size_t size;
  size_t used;
  size_t peak;
} DsArena;

/* A host arena for f32 activations (the CPU backend's); for any backend use
 * ds_backend_arena_init (ds-ops.h). */
DsStatus ds_arena_init (DsArena *a, size_t size, DsError *err);
void ds_arena_free (DsArena *a);
/* A CPU tensor from the arena, 64-byte aligned, contents uninitialised.
 * Fails with DS_ERR_NOMEM naming the sizes when the arena is full. */
DsStatus ds_arena_tensor (DsArena *a, DsTensor *t, DsDType dtype, int ndim,
                          const int64_t *shape, DsError *err);
static inline size_t ds_arena_mark (const DsArena *a) { return a->used; }
static inline void ds_arena_reset_to (DsArena *a, size_t mark) { a->used = mark; }
static inline void ds_arena_reset (DsArena *a) { a->used = 0; }

#ifdef __cplusplus
}
#endif
