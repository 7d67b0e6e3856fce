/* test-bpe-merges.c: the BPE merge table both tokenizers use.
 *
 * What the tokenizers' reference cases cannot single out: every pair put is
 * found with its own rank and result among many that collide (a probe that
 * stops early or wraps wrongly loses some), absent pairs and the swapped
 * pair are not found, a pair given again keeps its last rank and result (as
 * a Python dict and the tokenizers library's map do), and an empty or
 * unmade table answers "no merge".
 */
#include "ds-test.h"

#include "ds-bpe-merges.h"

/* pairs (i, 3i + 1) with rank i and result 7i + 2: enough to collide in any
 * table that holds them */
#define N_PAIRS 60000

static void
test_many (void)
{
  DsBpeMerges m;
  DS_CHECK (ds_bpe_merges_init (&m, N_PAIRS), "init");
  for (uint32_t i = 0; i < N_PAIRS; i++)
    ds_bpe_merges_put (&m, i, 3 * i + 1, i, 7 * i + 2);
  int lost = 0, wrong = 0, ghosts = 0;
  for (uint32_t i = 0; i < N_PAIRS; i++)
    {
      const DsBpeMerge *e = ds_bpe_merges_get (&m, i, 3 * i + 1);
      if (!e)
        lost++;
      else if (e->rank != i || e->result != 7 * i + 2)
        wrong++;
      /* absent: the swapped pair (i != 3i + 1 always) and a near miss */
      if (ds_bpe_merges_get (&m, 3 * i + 1, i) || ds_bpe_merges_get (&m, i, 3 * i + 2))
        ghosts++;
    }
  DS_CHECK (lost == 0, "%d of %d pairs not found", lost, N_PAIRS);
  DS_CHECK (wrong == 0, "%d pairs with the wrong rank or result", wrong);
  DS_CHECK (ghosts == 0, "%d absent pairs found", ghosts);
  /* the keys use all 64 bits: (1, 0) and (0, 1) << 32 stay apart */
  DS_CHECK (!ds_bpe_merges_get (&m, 0, 0), "(0, 0) was never put");
  ds_bpe_merges_free (&m);
  DS_CHECK (m.slots == NULL, "free leaves an unmade table");
  DS_CHECK (!ds_bpe_merges_get (&m, 0, 1), "a freed table has no merges");
}

static void
test_repeated (void)
{
  DsBpeMerges m;
  DS_CHECK (ds_bpe_merges_init (&m, 4), "init");
  ds_bpe_merges_put (&m, 5, 6, 0, 10);
  ds_bpe_merges_put (&m, 6, 5, 1, 11);
  ds_bpe_merges_put (&m, 5, 6, 2, 12);
  const DsBpeMerge *e = ds_bpe_merges_get (&m, 5, 6);
  DS_CHECK (e && e->rank == 2 && e->result == 12, "a repeated pair keeps its last rank: %u %u",
            e ? e->rank : 0, e ? e->result : 0);
  e = ds_bpe_merges_get (&m, 6, 5);
  DS_CHECK (e && e->rank == 1 && e->result == 11, "the swapped pair is its own merge");
  /* the largest symbol numbers a tokenizer can give */
  ds_bpe_merges_put (&m, UINT32_MAX, UINT32_MAX - 1, DS_BPE_NO_RANK - 1, UINT32_MAX);
  e = ds_bpe_merges_get (&m, UINT32_MAX, UINT32_MAX - 1);
  DS_CHECK (e && e->rank == DS_BPE_NO_RANK - 1 && e->result == UINT32_MAX, "extreme values");
  ds_bpe_merges_free (&m);

  DS_CHECK (ds_bpe_merges_init (&m, 0), "init for no merges");
  DS_CHECK (!ds_bpe_merges_get (&m, 0, 0), "an empty table has no merges");
  ds_bpe_merges_free (&m);
  DsBpeMerges unmade = { 0 };
  DS_CHECK (!ds_bpe_merges_get (&unmade, 1, 2), "an unmade table has no merges");
  ds_bpe_merges_free (&unmade);
}

int
main (void)
{
  test_many ();
  test_repeated ();
  return ds_test_finish ();
}
