/* test-cuda-device.c: a CUDA device answers and reports sane properties.
 * Exits 77 (skip) where no GPU answers, as on CI and this machine. */
#include "ds-test.h"

#include "ds-cuda.h"

int
main (void)
{
  int n = ds_cuda_device_count ();
  if (n <= 0)
    {
      printf ("no CUDA device answers: skipping\n");
      return DS_TEST_SKIP;
    }
  for (int i = 0; i < n; i++)
    {
      DsCudaDevice d;
      DS_CHECK (ds_cuda_device_info (i, &d) == 0, "device %d info", i);
      DS_CHECK (d.name[0] != '\0', "device %d has a name", i);
      DS_CHECK (d.cc_major >= 7, "compute capability %d.%d", d.cc_major, d.cc_minor);
      DS_CHECK (d.total_memory > (size_t) 1 << 30, "memory %zu", d.total_memory);
      printf ("device %d: %s, sm_%d%d, %.1f GiB\n", i, d.name, d.cc_major, d.cc_minor,
              d.total_memory / 1073741824.0);
    }
  DS_CHECK (ds_cuda_device_info (n, &(DsCudaDevice){ 0 }) == -1, "index past the end fails");
  return ds_test_finish ();
}
