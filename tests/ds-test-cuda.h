/* ds-test-cuda.h: what the CUDA model tests share: skipping where no device
 * answers, and the dtypes they run in with their NMSE bars against the fp32
 * references (f32 strict: 1e-6, the CPU does 1e-8; f16: 1e-4, the aim;
 * bf16 keeps 8 significant bits: 3e-2, far below the ~1 of a layout bug). */
#pragma once

#include <stdio.h>
#include <stdlib.h>

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
