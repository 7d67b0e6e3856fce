/* ds-cuda-device.cu: CUDA device discovery (see ds-cuda.h). */
#include "ds-cuda.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" int
ds_cuda_device_count (void)
{
  int n = 0;
  if (cudaGetDeviceCount (&n) != cudaSuccess)
    {
      cudaGetLastError (); /* clear the sticky error */
      return 0;
    }
  return n;
}

extern "C" int
ds_cuda_device_info (int index, DsCudaDevice *out)
{
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties (&prop, index) != cudaSuccess)
    {
      cudaGetLastError ();
      return -1;
    }
  memset (out, 0, sizeof *out);
  out->index = index;
  snprintf (out->name, sizeof out->name, "%s", prop.name);
  out->cc_major = prop.major;
  out->cc_minor = prop.minor;
  out->total_memory = prop.totalGlobalMem;
  return 0;
}

extern "C" int
ds_cuda_memory_in_use (size_t *used, size_t *total)
{
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo (&free_b, &total_b) != cudaSuccess)
    {
      cudaGetLastError ();
      return -1;
    }
  *used = total_b - free_b;
  *total = total_b;
  return 0;
}
