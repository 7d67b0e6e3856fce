/* ds-graph.h: forwards recorded once and replayed, on backends with graphs.
 *
 * On a GPU, launching a model's hundreds of small ops one by one costs more
 * than running them. A backend with graph_begin (CUDA) can record the
 * launches of a forward and replay them as one. A recording bakes in
 * everything the forward touched: tensor addresses and shapes, the arena and
 * its position, options. The model packs those into a key (a plain struct,
 * zeroed before it is filled, since keys are compared byte for byte), and a
 * DsGraphCache keeps a few recordings by key:
 *   - the first run with a key is eager: it also grows the backend's scratch
 *     buffers to what the forward needs (they must not move once recorded);
 *   - the second run records the forward, then launches the recording;
 *   - later runs only launch it.
 * The least recently used recording makes room for a new key.
 *
 *   typedef struct { const void *in, *out; size_t mark; int64_t B; } Key;
 *   Key k;
 *   memset (&k, 0, sizeof k);
 *   k.in = x->data; ...
 *   st = ds_graph_run (&m->graphs, be, a, &k, sizeof k, body, &ctx, err);
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_GRAPH_SLOTS 4
#define DS_GRAPH_KEY_BYTES 160

/* The forward to run, record or replay: it must issue the same ops on the
 * same tensors every time it is called with the same key, and must not read
 * from or write to host memory on the way (a recording only replays the
 * device's work). It may be called twice in one ds_graph_run (a recording
 * that failed, then eagerly), so each call must start from the same state. */
typedef DsStatus (*DsGraphBody) (void *user, DsError *err);

typedef struct {
  unsigned char key[DS_GRAPH_KEY_BYTES];
  void *graph;     /* NULL until recorded (the key's first run was eager) */
  bool eager_only; /* recording failed on the device: this key runs eagerly */
  uint64_t used;   /* the cache's clock at the last use; 0: an empty slot */
} DsGraphSlot;

/* Zero-initialised is empty. Owned by the model that runs through it. */
typedef struct {
  DsGraphSlot slots[DS_GRAPH_SLOTS];
  uint64_t clock;
} DsGraphCache;

/* Whether forwards on `be` are recorded and replayed: it has graphs, ops are
 * not being timed one by one (DIFFSCOPE_PROFILE), and DS_CUDA_GRAPHS is not
 * "0" in the environment. */
bool ds_graph_available (const DsBackend *be);

/* Runs body (user) through the cache under `key` (key_size bytes, at most
 * DS_GRAPH_KEY_BYTES), eagerly, by recording it, or by replaying it (see the
 * top). Where ds_graph_available (be) is false (no graphs, DS_CUDA_GRAPHS=0,
 * profiling) it simply calls body. A recording that fails
 * on the device (DS_ERR_DEVICE: a call the driver would not record, say)
 * leaves none behind; the run goes on eagerly, as does every later run with
 * that key (be->n_graph_failures counts these); `a`, the arena the body
 * allocates from (NULL: none), is first returned to where it was. Other
 * errors of the body are returned as they are (a cancelled forward, bad
 * input). */
DsStatus ds_graph_run (DsGraphCache *c, DsBackend *be, DsArena *a, const void *key,
                       size_t key_size, DsGraphBody body, void *user, DsError *err);

/* Frees every recording (the backend must be the one they were made on). */
void ds_graph_cache_clear (DsGraphCache *c, DsBackend *be);

#ifdef __cplusplus
}
#endif
