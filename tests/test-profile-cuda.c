/* test-profile-cuda.c: DIFFSCOPE_PROFILE on the CUDA backend (ds-ops.h).
 *
 * With the profile on, ops on the CUDA backend are timed between device
 * markers, read back in batches when the backend's slots run out. After 2500
 * adds and 3 softmaxes (more ops than slots, so the batches refill) the
 * profile must count exactly those calls with a positive time, the results
 * must be right (timing must not change what runs), and forwards must not be
 * recorded (ds_graph_available is false: a recording would hide the ops).
 * Exits 77 where no CUDA device answers.
 */
#include "ds-test-cuda.h"

#include "ds-graph.h"

int
main (void)
{
  setenv ("DIFFSCOPE_PROFILE", "1", 1); /* before the first op reads it */
  ds_test_cuda_begin ();
  DsError err = { 0 };
  DsBackend *be = ds_backend_cuda_new (0, DS_DTYPE_F32, &err);
  DS_CHECK (be != NULL, "CUDA backend: %s", err.message);
  if (!be)
    return ds_test_finish ();
  DS_CHECK (ds_op_profiling () && be->timer_begin, "the profile is on, with device timers");
  DS_CHECK (!ds_graph_available (be), "no recorded forwards while profiling");

  enum { N = 1000, ADDS = 2500, SOFTMAXES = 3 };
  DsTensor x, y;
  DS_CHECK_OK (be->tensor_alloc (be, &x, DS_DTYPE_F32, 1, (int64_t[]){ N }, &err), &err);
  DS_CHECK_OK (be->tensor_alloc (be, &y, DS_DTYPE_F32, 1, (int64_t[]){ N }, &err), &err);
  float host[N];
  for (int i = 0; i < N; i++)
    host[i] = 0;
  DS_CHECK_OK (ds_backend_upload_f32 (be, &y, host, &err), &err);
  for (int i = 0; i < N; i++)
    host[i] = 1.0f / 1024; /* every partial sum below is exact in f32 */
  DS_CHECK_OK (ds_backend_upload_f32 (be, &x, host, &err), &err);
  for (int i = 0; i < ADDS; i++)
    DS_CHECK_OK (ds_add (be, &y, &x, &y, &err), &err);
  DS_CHECK_OK (ds_backend_download_f32 (be, &y, host, &err), &err);
  DS_CHECK (host[0] == ADDS / 1024.0f && host[N - 1] == ADDS / 1024.0f,
            "%d adds of 1/1024 give %g, expected %g", ADDS, host[0], ADDS / 1024.0);
  DsTensor rows = ds_tensor_reshape (&y, 2, (int64_t[]){ 10, N / 10 });
  for (int i = 0; i < SOFTMAXES; i++)
    DS_CHECK_OK (ds_softmax (be, &rows, &rows, &err), &err);

  double ms;
  long calls;
  ds_op_profile_read (be, DS_OP_ADD, &ms, &calls);
  printf ("add: %ld calls, %.3f ms on the device\n", calls, ms);
  DS_CHECK (calls == ADDS && ms > 0, "add: %ld calls (expected %d), %g ms", calls, ADDS, ms);
  ds_op_profile_read (be, DS_OP_SOFTMAX, &ms, &calls);
  printf ("softmax: %ld calls, %.3f ms on the device\n", calls, ms);
  DS_CHECK (calls == SOFTMAXES && ms > 0, "softmax: %ld calls (expected %d), %g ms", calls,
            SOFTMAXES, ms);
  ds_op_profile_reset (be);
  ds_op_profile_read (be, DS_OP_ADD, &ms, &calls);
  DS_CHECK (calls == 0 && ms == 0, "after a reset: %ld adds, %g ms", calls, ms);
  be->tensor_free (be, &x);
  be->tensor_free (be, &y);
  ds_backend_free (be); /* prints the profile */
  return ds_test_finish ();
}
