/* ds-test-cuda.h: what the CUDA model tests share: skipping where no device
 * answers, and the dtypes they run in with their NMSE bars against the fp32
 * references (f32 strict: 1e-6, the CPU does 1e-8; f16: 1e-4, the aim;
 * bf16 keeps 8 significant bits: 3e-2, far below the ~1 of a layout bug). */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-cuda.h"
#include "ds-test.h"

typedef struct {
  DsDType dt;
  double tol;
} DsTestCudaMode;

static const DsTestCudaMode ds_test_cuda_modes[3] = {
  { DS_DTYPE_F32, 1e-6 },
  { DS_DTYPE_F16, 1e-4 },
  { DS_DTYPE_BF16, 3e-2 },
};

/* Exits with DS_TEST_SKIP (77) where no CUDA device answers; otherwise asks
 * the backends made from now on to synchronise after every op, so a failing
 * kernel names its op. */
static inline void
ds_test_cuda_begin (void)
{
  if (ds_cuda_device_count () <= 0)
    {
      printf ("no CUDA device answers: skipping\n");
      exit (DS_TEST_SKIP);
    }
  setenv ("DS_CUDA_SYNC", "1", 0);
}

/* Calls fn (be, tol) with a fresh CUDA backend computing in each dtype of
 * ds_test_cuda_modes in turn, freed after; stops at a backend that cannot be
 * made (a failed check). */
static inline void
ds_test_cuda_each_mode (void (*fn) (DsBackend *be, double tol))
{
  for (int i = 0; i < 3; i++)
    {
      DsError err = { 0 };
      DsBackend *be = ds_backend_cuda_new (0, ds_test_cuda_modes[i].dt, &err);
      DS_CHECK (be != NULL, "CUDA backend: %s", err.message);
      if (!be)
        return;
      printf ("%s, computing in %s\n", be->name, ds_dtype_name (be->act_dtype));
      fn (be, ds_test_cuda_modes[i].tol);
      ds_backend_free (be);
    }
}

/* Whether forwards are recorded and replayed (DS_CUDA_GRAPHS is not "0"). */
static inline bool
ds_test_cuda_graphs (void)
{
  const char *env = getenv ("DS_CUDA_GRAPHS");
  return !(env && strcmp (env, "0") == 0);
}

/* The backend's counters (ds-ops.h), read before and after a forward. */
typedef struct {
  uint64_t ops, launches, failures;
} DsTestCounters;

static inline DsTestCounters
ds_test_cuda_counters (const DsBackend *be)
{
  return (DsTestCounters){ be->n_ops, be->n_graph_launches, be->n_graph_failures };
}

/* Checks how run `rep` (0, 1, 2) of three forwards on the same tensors went,
 * from the counters before and after it; *eager_ops is set at run 0 to the
 * ops it issued (E). With graphs: E ops and no launch, then the same E ops
 * recorded and one launch, then no op and one launch. With recordings failing
 * (`failing`): E, then 2E (recorded, then run eagerly) and one failure, then
 * E. With DS_CUDA_GRAPHS=0: E ops each time and no launch. */
static inline void
ds_test_cuda_check_run (const char *what, int rep, bool failing, DsTestCounters before,
                        DsTestCounters after, uint64_t *eager_ops)
{
  const uint64_t ops = after.ops - before.ops, launches = after.launches - before.launches;
  const uint64_t failures = after.failures - before.failures;
  if (rep == 0)
    *eager_ops = ops;
  const uint64_t e = *eager_ops;
  const bool graphs = ds_test_cuda_graphs ();
  failing = failing && graphs;
  const uint64_t want_ops = !graphs || rep == 0 ? e
                            : failing           ? (rep == 1 ? 2 * e : e)
                                                : (rep == 1 ? e : 0);
  const uint64_t want_launches = !graphs || rep == 0 || failing ? 0 : 1;
  const uint64_t want_failures = failing && rep == 1;
  DS_CHECK (e > 0 && ops == want_ops && launches == want_launches && failures == want_failures,
            "%s run %d: %llu ops, %llu launches, %llu failures; expected %llu, %llu, %llu", what,
            rep, (unsigned long long) ops, (unsigned long long) launches,
            (unsigned long long) failures, (unsigned long long) want_ops,
            (unsigned long long) want_launches, (unsigned long long) want_failures);
}
