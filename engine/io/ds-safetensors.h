/* ds-safetensors.h: read-only access to .safetensors files.
 *
 * The file is mmapped; the JSON header is parsed with jansson and checked
 * strictly before any tensor is handed out: 8-byte little-endian header length
 * (at least 2, at most 100 MB, inside the file), a JSON object, every entry with a
 * known dtype, a shape of at most DS_MAX_DIMS non-negative dims, data_offsets
 * inside the data section, byte count = numel x dtype size, no two tensors
 * overlapping, no name given twice, at most DS_SAFETENSORS_MAX_TENSORS entries.
 * "__metadata__" must map strings to strings. Each failure is a
 * DsError naming the file and tensor. Pickle files are never read.
 *
 * Usage:
 *   DsSafetensors *st;
 *   if (ds_safetensors_open (path, &st, err) != DS_OK) ...
 *   DsTensor w;  // an f32 copy, shape checked
 *   int64_t shape[] = { 320, 4, 3, 3 };
 *   ds_safetensors_load_f32 (st, "conv_in.weight", 4, shape, &w, err);
 *   ds_safetensors_close (st);
 */
#pragma once

#include "ds-tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)
/* Tensors in one file at most, counted before the header is parsed. The
 * largest Stable Diffusion 2.x checkpoint holds about 700 per file and large
 * language models a few thousand; 100k leaves room and keeps a hostile header
 * (a million empty entries fit in 100 MB) from costing seconds and gigabytes. */
#define DS_SAFETENSORS_MAX_TENSORS 100000

typedef struct DsSafetensors DsSafetensors;

typedef struct {
  const char *name;  /* owned by the DsSafetensors */
  DsDType dtype;
  int ndim;
  int64_t shape[DS_MAX_DIMS];
  const void *data;  /* points into the mapping; little-endian, C order */
  size_t nbytes;
} DsSafetensorsEntry;

/* transfer full: *out must be closed with ds_safetensors_close. */
DsStatus ds_safetensors_open (const char *path, DsSafetensors **out, DsError *err);
void ds_safetensors_close (DsSafetensors *st);

const char *ds_safetensors_path (const DsSafetensors *st);

/* Whether the mapping still holds the file as it was opened. A file that
 * shrinks while mapped (truncated or rewritten in place by another program)
 * would kill the process with SIGBUS on the next read of the lost part; here
 * that read gives zeros instead and the file is marked damaged, for good.
 * Every load from the file checks the mark; code that reads the mapping
 * itself (entry->data: mapped 16-bit weights) checks it after reading, with
 * ds_safetensors_check_intact, which says which file and what happened. */
bool ds_safetensors_intact (const DsSafetensors *st);
DsStatus ds_safetensors_check_intact (const DsSafetensors *st, DsError *err);
int ds_safetensors_count (const DsSafetensors *st);
/* Entries in file order of their data offsets; index in [0, count). */
const DsSafetensorsEntry *ds_safetensors_entry (const DsSafetensors *st, int index);
/* NULL when absent. */
const DsSafetensorsEntry *ds_safetensors_find (const DsSafetensors *st, const char *name);
/* The value of a "__metadata__" key, or NULL. */
const char *ds_safetensors_metadata (const DsSafetensors *st, const char *key);

/* Copies tensor `name` into a new owned f32 CPU tensor, converting f16/bf16/i32/i64.
 * When expected_shape is not NULL the stored shape must equal it exactly
 * (ndim dims), else DS_ERR_FORMAT naming file, tensor, stored and expected shape.
 * A missing tensor is DS_ERR_NOT_FOUND naming the file and tensor. */
DsStatus ds_safetensors_load_f32 (const DsSafetensors *st, const char *name, int ndim,
                                  const int64_t *expected_shape, DsTensor *out,
                                  DsError *err);

/* As ds_safetensors_load_f32 for tensors that must hold real numbers (weights,
 * noise): an integer dtype (I32, I64) is DS_ERR_FORMAT naming the tensor and
 * its dtype, and so is a NaN or infinity, naming the tensor and the first such
 * element. */
DsStatus ds_safetensors_load_float (const DsSafetensors *st, const char *name, int ndim,
                                    const int64_t *expected_shape, DsTensor *out,
                                    DsError *err);

/* Writing, for the CLI's outputs and tests. Entries are written in the given
 * order; metadata is optional (NULL-terminated key, value pairs). The file is
 * written to "<path>.tmp-XXXXXX" and renamed into place (atomic). */
typedef struct {
  const char *name;
  const DsTensor *tensor; /* CPU, any dtype */
} DsSafetensorsItem;

DsStatus ds_safetensors_write (const char *path, const DsSafetensorsItem *items,
                               int n_items, const char *const *metadata,
                               DsError *err);

#ifdef __cplusplus
}
#endif
