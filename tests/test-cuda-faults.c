/* test-cuda-faults.c: a session on the CUDA backend meets device faults and
 * keeps its word (issue #14, Faults): a clear error, nothing leaked, and the
 * next request computes the same numbers as before the fault.
 *
 *   1. A memory cap (ds_cuda_backend_set_memory_cap, as DIFFSCOPE_GPU_MEMORY
 *      sets it): a request that needs more device memory than the cap leaves
 *      fails with "out of device memory" naming the cap; the backend holds
 *      no more than it held before; the next request that fits equals the
 *      uncapped one bit for bit, and lifting the cap lets the larger one run.
 *   2. A kernel launch that fails mid-UNet (the emulator's ds_emu_fail_launch;
 *      not sticky, as a launch error is on a GPU): the error names the op,
 *      the backend is not lost, the same request then equals the reference.
 *   3. A fault inside a kernel (ds_emu_fault_kernel: an illegal address, which
 *      on a GPU loses the CUDA context for the process): the error says the
 *      GPU cannot be used again, be->lost is set, and later requests fail at
 *      once with the same words instead of crashing or hanging. Moving to the
 *      CPU is the caller's part (the explorer's: test-explore-cuda).
 *
 * The built-in model at 64 (a 8x8 latent) and 128, f32, eager (DS_CUDA_GRAPHS=0:
 * a launch that fails while a forward is being recorded is what the graph
 * fallback handles, ds-graph.h, tested in test-unet-cuda). Parts 2 and 3 need
 * the emulator's fault hooks and are skipped on a GPU. Exits 77 without a
 * device.
 */
#include "ds-test.h"
#include "ds-test-cuda.h"

#include <stdlib.h>
#include <string.h>

#include "ds-session.h"
#ifdef DS_CUDA_EMU
#include <cuda_runtime.h> /* the emulator's: ds_emu_fail_launch, ds_emu_fault_kernel */
#endif

static const char *const PROBES[] = { "U-L1-R1-B0-Cross-Q", "D-L1-R0-Res-Out" };

/* A 64x64 picture: a red square on grey. */
static DsImage
picture (void)
{
  DsImage im = { .width = 64, .height = 64 };
  im.rgb = malloc (64 * 64 * 3);
  for (int y = 0; y < 64; y++)
    for (int x = 0; x < 64; x++)
      {
        uint8_t *p = im.rgb + 3 * (y * 64 + x);
        const bool in = x >= 16 && x < 40 && y >= 20 && y < 44;
        p[0] = in ? 220 : 128;
        p[1] = in ? 30 : 128;
        p[2] = in ? 30 : 128;
      }
  return im;
}

static DsQuery
query (DsSession *s, const DsImage *im, int size, int t)
{
  DsQuery q = ds_query_default (s);
  q.image = im;
  q.size = size;
  q.prompt = "a red square";
  q.t = t;
  q.seed = 7;
  q.probes = PROBES;
  q.n_probes = 2;
  return q;
}

/* Both probes of a and b, both halves, bit for bit. */
static bool
same_result (const DsSessionResult *a, const DsSessionResult *b)
{
  if (a->n_probes != b->n_probes)
    return false;
  for (int k = 0; k < a->n_probes; k++)
    {
      const DsSessionProbe *x = &a->probes[k], *y = &b->probes[k];
      const size_t n = (size_t) (x->c * x->h * x->w) * sizeof (float);
      if (x->c != y->c || x->h != y->h || x->w != y->w || memcmp (x->cond, y->cond, n)
          || memcmp (x->uncond, y->uncond, n))
        return false;
    }
  return true;
}

int
main (void)
{
  ds_test_cuda_begin ();
  setenv ("DS_CUDA_GRAPHS", "0", 1);
  DsError err = { 0 };
  DsBackend *be = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  DS_CHECK (be != NULL, "CUDA backend: %s", err.message);
  if (!be)
    return ds_test_finish ();
  DsPipeline *p = NULL;
  DsSession *s = NULL;
  DS_CHECK_OK (ds_pipeline_open_builtin (DS_RESOURCES_DIR, be, &p, &err), &err);
  DS_CHECK_OK (ds_session_new (p, NULL, &s, &err), &err);
  if (!s)
    {
      ds_backend_free (be);
      return ds_test_finish ();
    }
  DsImage im = picture ();
  DsSessionResult *ref = NULL, *r = NULL;

  /* the reference, uncapped */
  DsQuery q = query (s, &im, 64, 300);
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &ref, &err), &err);
  const size_t held = ds_cuda_backend_memory_used (be);
  printf ("held after a 64x64 request: %.2f MiB\n", held / 1048576.0);
  DS_CHECK (held > 0, "the backend counts what it holds");

  /* 1. a cap at what is held: a 128x128 request needs more and fails */
  printf ("1. memory cap\n");
  ds_cuda_backend_set_memory_cap (be, held);
  DsQuery big = query (s, &im, 128, 300);
  DS_CHECK_STATUS (ds_session_run (s, &big, NULL, &r, &err), DS_ERR_DEVICE, &err);
  printf ("  %s\n", err.message);
  DS_CHECK_CONTAINS (err.message, "out of device memory");
  DS_CHECK_CONTAINS (err.message, "cap (DIFFSCOPE_GPU_MEMORY)");
  /* (it may hold less: the old activation arena goes before a bigger one is
   * asked for) */
  DS_CHECK (ds_cuda_backend_memory_used (be) <= held,
            "a failed request leaks no device memory: %zu held, %zu before",
            ds_cuda_backend_memory_used (be), held);
  DS_CHECK (!be->lost, "out of memory does not lose the device");
  ds_session_clear (s); /* so the next request runs the networks again */
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r, &err), &err);
  DS_CHECK (r && !r->from_cache && same_result (r, ref),
            "under the cap, the 64x64 request runs and equals the uncapped one");
  if (r)
    ds_session_result_unref (r);
  r = NULL;
  ds_cuda_backend_set_memory_cap (be, 0);
  DS_CHECK_OK (ds_session_run (s, &big, NULL, &r, &err), &err);
  if (r)
    ds_session_result_unref (r);
  r = NULL;

#ifdef DS_CUDA_EMU
  /* 2. a launch failure in the middle of the UNet */
  printf ("2. a failed kernel launch\n");
  ds_session_clear (s);
  ds_emu_fail_launch (40, cudaErrorLaunchOutOfResources);
  DS_CHECK_STATUS (ds_session_run (s, &q, NULL, &r, &err), DS_ERR_DEVICE, &err);
  printf ("  %s\n", err.message);
  DS_CHECK_CONTAINS (err.message, "too many resources requested for launch");
  DS_CHECK_CONTAINS (err.message, " -> ["); /* the op and its output shape */
  DS_CHECK (!be->lost, "a launch error does not lose the device");
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r, &err), &err);
  DS_CHECK (r && !r->from_cache && same_result (r, ref),
            "the same request after the failure equals the reference");
  if (r)
    ds_session_result_unref (r);
  r = NULL;

  /* 3. a fault inside a kernel: the context is lost */
  printf ("3. a fault inside a kernel\n");
  ds_session_clear (s);
  ds_emu_fault_kernel (25, cudaErrorIllegalAddress);
  DS_CHECK_STATUS (ds_session_run (s, &q, NULL, &r, &err), DS_ERR_DEVICE, &err);
  printf ("  %s\n", err.message);
  DS_CHECK_CONTAINS (err.message, "cannot be used again");
  DS_CHECK_CONTAINS (err.message, "cudaErrorIllegalAddress");
  DS_CHECK (be->lost, "be->lost is set");
  DsQuery other = query (s, &im, 64, 500);
  DS_CHECK_STATUS (ds_session_run (s, &other, NULL, &r, &err), DS_ERR_DEVICE, &err);
  printf ("  then: %s\n", err.message);
  DS_CHECK_CONTAINS (err.message, "failed earlier (cudaErrorIllegalAddress)");
#else
  printf ("2, 3: no fault injection on a GPU (the emulator's hooks): skipped\n");
#endif

  ds_session_result_unref (ref);
  ds_session_free (s);
  ds_backend_free (be);
  ds_image_free (&im);
  return ds_test_finish ();
}
