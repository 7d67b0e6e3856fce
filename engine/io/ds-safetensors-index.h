/* ds-safetensors-index.h: a checkpoint that may be split into shards, as
 * Hugging Face saves large models: `model.safetensors.index.json` maps every
 * tensor name to the shard file that holds it ("weight_map"), and the shards
 * are ordinary .safetensors files beside it. A folder with a single
 * `model.safetensors` opens the same way, as one shard.
 *
 * Opening checks, before any tensor is handed out: the index is a JSON object
 * whose "weight_map" maps names (no name twice) to shard file names; a shard
 * name is a relative path that stays inside the folder (no absolute path, no
 * ".." component, no backslash) and ends in ".safetensors"; every shard opens
 * (ds_safetensors_open's checks); every mapped tensor is in the shard the map
 * names; and no tensor name is stored in two shards. Each failure is a DsError
 * naming the index (or shard) and the tensor or file at fault. Pickle
 * checkpoints (pytorch_model*.bin) are never read: a folder holding only those
 * is DS_ERR_UNSUPPORTED saying so. The check is lexical: a shard that is a
 * symbolic link (as in the Hugging Face cache, whose snapshot files point
 * into its blobs folder) is followed.
 *
 * Usage:
 *   DsSafetensorsIndex *idx;
 *   if (ds_safetensors_index_open ("llava-1.5-7b-hf", &idx, err) != DS_OK) ...
 *   const DsSafetensors *shard;
 *   const DsSafetensorsEntry *e = ds_safetensors_index_find (idx, "lm_head.weight", &shard);
 *   DsTensor w;
 *   ds_safetensors_index_load_float (idx, "lm_head.weight", 2, shape, &w, err);
 *   ds_safetensors_index_close (idx);
 *
 * DsWeights (ds-weights.h) loads through an index when its `index` field is
 * set. Not done: the "metadata" object (total_size) is not checked against the
 * shards; shards are mapped, not read, so opening costs no copy.
 */
#pragma once

#include "ds-safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_SAFETENSORS_INDEX_NAME "model.safetensors.index.json"
#define DS_SAFETENSORS_SINGLE_NAME "model.safetensors"

typedef struct DsSafetensorsIndex DsSafetensorsIndex;

/* Opens dir/model.safetensors.index.json when it exists, else
 * dir/model.safetensors; neither is DS_ERR_NOT_FOUND naming the folder (or
 * DS_ERR_UNSUPPORTED where only pickle files are there).
 * transfer full: close *out with ds_safetensors_index_close. */
DsStatus ds_safetensors_index_open (const char *dir, DsSafetensorsIndex **out, DsError *err);
/* The same from an explicit path: an index .json (shards resolved against its
 * folder) or a single .safetensors file. */
DsStatus ds_safetensors_index_open_file (const char *path, DsSafetensorsIndex **out,
                                         DsError *err);
void ds_safetensors_index_close (DsSafetensorsIndex *idx);

/* The index file, or the single file (transfer none, valid while idx lives). */
const char *ds_safetensors_index_path (const DsSafetensorsIndex *idx);
int ds_safetensors_index_n_shards (const DsSafetensorsIndex *idx);
/* Shards in the order the index first names them; i in [0, n_shards). */
const DsSafetensors *ds_safetensors_index_shard (const DsSafetensorsIndex *idx, int i);
/* Tensors reachable by name. */
int64_t ds_safetensors_index_count (const DsSafetensorsIndex *idx);

/* The entry of `name` (transfer none, valid while idx lives) and, when shard
 * is not NULL, the shard holding it; NULL when no shard has it. */
const DsSafetensorsEntry *ds_safetensors_index_find (const DsSafetensorsIndex *idx,
                                                     const char *name,
                                                     const DsSafetensors **shard);

/* ds_safetensors_load_float on the shard holding `name`. A name in no shard
 * is DS_ERR_NOT_FOUND naming the index and the tensor. */
DsStatus ds_safetensors_index_load_float (const DsSafetensorsIndex *idx, const char *name,
                                          int ndim, const int64_t *expected_shape,
                                          DsTensor *out, DsError *err);

#ifdef __cplusplus
}
#endif
