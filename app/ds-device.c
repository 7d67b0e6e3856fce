/* ds-device.c: see ds-device.h. */
#include "ds-device.h"

#include <stdio.h>
#include <string.h>

#ifdef DS_HAVE_CUDA
#include "ds-cuda.h"
#endif

DsBackend *
ds_device_open (const char *device, const char *precision, char *note, size_t note_size,
                DsError *err)
{
  char scratch[8];
  if (!note)
    {
      note = scratch;
      note_size = sizeof scratch;
    }
  note[0] = 0;
  const char *dev = device && *device ? device : "auto";
  if (strcmp (dev, "auto") && strcmp (dev, "cpu") && strcmp (dev, "cuda"))
    {
      ds_error_set (err, DS_ERR_INVALID, "unknown device '%s' (expected auto, cpu or cuda)", dev);
      return NULL;
    }
  if (precision && strcmp (precision, "f16") && strcmp (precision, "bf16")
      && strcmp (precision, "f32"))
    {
      ds_error_set (err, DS_ERR_INVALID, "unknown precision '%s' (expected f16, bf16 or f32)",
                    precision);
      return NULL;
    }
  if (!strcmp (dev, "cpu"))
    {
      if (precision && strcmp (precision, "f32"))
        {
          ds_error_set (err, DS_ERR_UNSUPPORTED,
                        "the CPU backend computes in f32 only (asked for --precision %s)",
                        precision);
          return NULL;
        }
      return ds_backend_cpu_new (err);
    }
#ifdef DS_HAVE_CUDA
  const DsDType dt = !precision || !strcmp (precision, "f16") ? DS_DTYPE_F16
                     : !strcmp (precision, "bf16")            ? DS_DTYPE_BF16
                                                              : DS_DTYPE_F32;
  if (!strcmp (dev, "cuda"))
    return ds_backend_cuda_new (0, dt, err);
  if (ds_cuda_device_count () > 0)
    {
      DsBackend *be = ds_backend_cuda_new (0, dt, err);
      if (be)
        return be;
      snprintf (note, note_size, "%s; running on the CPU (f32)", err->message);
      ds_error_clear (err);
    }
  else
    snprintf (note, note_size, "no CUDA device answers; running on the CPU (f32)");
#else
  (void) note_size;
  if (!strcmp (dev, "cuda"))
    {
      ds_error_set (err, DS_ERR_UNSUPPORTED, "this Diffscope was built without CUDA (device cuda)");
      return NULL;
    }
#endif
  return ds_backend_cpu_new (err); /* auto without a GPU: f32, whatever the precision said */
}
