/* ds-bpe-merges.c: a BPE tokenizer's merge table (see ds-bpe-merges.h). */
#include "ds-bpe-merges.h"

#include <assert.h>
#include <stdlib.h>

#include "ds-util.h"

bool
ds_bpe_merges_init (DsBpeMerges *m, size_t n)
{
  /* at most half full, so that a probe for an absent pair ends soon */
  m->mask = ds_pow2_at_least (2 * n + 64) - 1;
  m->slots = malloc ((m->mask + 1) * sizeof *m->slots);
  if (!m->slots)
    return false;
  for (size_t i = 0; i <= m->mask; i++)
    m->slots[i].rank = DS_BPE_NO_RANK;
  return true;
}

static uint64_t
pair_key (uint32_t left, uint32_t right)
{
  return ((uint64_t) left << 32) | right;
}

void
ds_bpe_merges_put (DsBpeMerges *m, uint32_t left, uint32_t right, uint32_t rank, uint32_t result)
{
  assert (m->slots && rank != DS_BPE_NO_RANK);
  const uint64_t key = pair_key (left, right);
  size_t i = ds_hash_mix64 (key) & m->mask;
  while (m->slots[i].rank != DS_BPE_NO_RANK && m->slots[i].key != key)
    i = (i + 1) & m->mask;
  m->slots[i] = (DsBpeMerge){ .key = key, .rank = rank, .result = result };
}

const DsBpeMerge *
ds_bpe_merges_get (const DsBpeMerges *m, uint32_t left, uint32_t right)
{
  if (!m->slots)
    return NULL;
  const uint64_t key = pair_key (left, right);
  for (size_t i = ds_hash_mix64 (key) & m->mask; m->slots[i].rank != DS_BPE_NO_RANK;
       i = (i + 1) & m->mask)
    if (m->slots[i].key == key)
      return &m->slots[i];
  return NULL;
}

void
ds_bpe_merges_free (DsBpeMerges *m)
{
  free (m->slots);
  m->slots = NULL;
  m->mask = 0;
}
