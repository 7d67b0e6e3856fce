/* ds-graph.c: the cache of recorded forwards (see ds-graph.h). */
#include "ds-graph.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

bool
ds_graph_available (const DsBackend *be)
{
  const char *env = getenv ("DS_CUDA_GRAPHS");
  return be->graph_begin && !(env && strcmp (env, "0") == 0) && !ds_op_profiling ();
}

/* The slot for `key`: its own, or the empty or least recently used one,
 * emptied (*fresh). */
static DsGraphSlot *
find_slot (DsGraphCache *c, DsBackend *be, const unsigned char *key, bool *fresh)
{
  DsGraphSlot *victim = &c->slots[0];
  c->clock++;
  for (int i = 0; i < DS_GRAPH_SLOTS; i++)
    {
      DsGraphSlot *s = &c->slots[i];
      if (s->used && memcmp (s->key, key, DS_GRAPH_KEY_BYTES) == 0)
        {
          s->used = c->clock;
          *fresh = false;
          return s;
        }
      if (s->used < victim->used)
        victim = s;
    }
  if (victim->graph)
    be->graph_free (be, victim->graph);
  victim->graph = NULL;
  victim->eager_only = false;
  victim->used = c->clock;
  memcpy (victim->key, key, DS_GRAPH_KEY_BYTES);
  *fresh = true;
  return victim;
}

/* Records body into s->graph; on failure leaves none. */
static DsStatus
record (DsGraphSlot *s, DsBackend *be, DsGraphBody body, void *user, DsError *err)
{
  DsStatus st = be->graph_begin (be, err);
  if (st != DS_OK)
    return st;
  st = body (user, err);
  DsError end_err = { 0 };
  DsStatus end = be->graph_end (be, &s->graph, &end_err);
  if (st == DS_OK && end != DS_OK)
    {
      st = end;
      if (err)
        *err = end_err;
    }
  if (st != DS_OK && s->graph)
    {
      be->graph_free (be, s->graph);
      s->graph = NULL;
    }
  return st;
}

DsStatus
ds_graph_run (DsGraphCache *c, DsBackend *be, DsArena *a, const void *key, size_t key_size,
              DsGraphBody body, void *user, DsError *err)
{
  assert (key_size <= DS_GRAPH_KEY_BYTES);
  if (!ds_graph_available (be))
    return body (user, err);
  unsigned char k[DS_GRAPH_KEY_BYTES] = { 0 };
  memcpy (k, key, key_size);
  bool fresh;
  DsGraphSlot *s = find_slot (c, be, k, &fresh);
  if (fresh || s->eager_only)
    return body (user, err); /* fresh: eager; the next run records */
  if (!s->graph)
    {
      const size_t mark = a ? ds_arena_mark (a) : 0;
      DsStatus st = record (s, be, body, user, err);
      if (st == DS_ERR_DEVICE)
        {
          /* nothing ran while recording: this run and the later ones go eagerly */
          s->eager_only = true;
          be->n_graph_failures++;
          if (err)
            memset (err, 0, sizeof *err);
          if (a)
            ds_arena_reset_to (a, mark);
          return body (user, err);
        }
      if (st != DS_OK)
        return st;
    }
  be->n_graph_launches++;
  return be->graph_launch (be, s->graph, err);
}

void
ds_graph_cache_clear (DsGraphCache *c, DsBackend *be)
{
  for (int i = 0; i < DS_GRAPH_SLOTS; i++)
    if (c->slots[i].graph)
      be->graph_free (be, c->slots[i].graph);
  memset (c, 0, sizeof *c);
}
