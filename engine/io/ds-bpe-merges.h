/* ds-bpe-merges.h: a BPE tokenizer's merge table, shared by the CLIP
 * tokenizer (merges.txt) and the LLaMA tokenizer (tokenizer.json).
 *
 * Maps a pair of symbols (left, right), each a number the tokenizer gives
 * its pieces, to the merge's rank (its line in the merges list: lower merges
 * first) and the symbol of the merged piece. An open-addressing hash table
 * with linear probing, sized when it is made and at most half full.
 *
 *   DsBpeMerges m;
 *   if (!ds_bpe_merges_init (&m, n_merges)) ... out of memory
 *   ds_bpe_merges_put (&m, left, right, rank, merged);
 *   const DsBpeMerge *e = ds_bpe_merges_get (&m, left, right); // NULL: no merge
 *   ds_bpe_merges_free (&m);
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

/* The rank of an empty slot, and so the one rank a merge cannot have. */
#define DS_BPE_NO_RANK UINT32_MAX

  typedef struct
  {
    uint64_t key;  /* (left << 32) | right */
    uint32_t rank; /* DS_BPE_NO_RANK: empty */
    uint32_t result;
  } DsBpeMerge;

  typedef struct
  {
    DsBpeMerge *slots; /* (mask + 1); NULL: the table has no merges */
    size_t mask;
  } DsBpeMerges;

  /* An empty table with room for n merges; false when out of memory. */
  bool ds_bpe_merges_init (DsBpeMerges *m, size_t n);

  /* Adds a merge (rank < DS_BPE_NO_RANK); at most the n given to init. A pair
   * given again keeps its last rank and result, as a Python dict built from the
   * list (CLIP) and the tokenizers library's map (LLaMA) both do. */
  void ds_bpe_merges_put (DsBpeMerges *m, uint32_t left, uint32_t right, uint32_t rank,
                          uint32_t result);

  /* The merge of (left, right), or NULL when there is none. */
  const DsBpeMerge *ds_bpe_merges_get (const DsBpeMerges *m, uint32_t left, uint32_t right);

  void ds_bpe_merges_free (DsBpeMerges *m);

#ifdef __cplusplus
}
#endif
