/* fuzz-safetensors.c: the .safetensors reader (ds-safetensors.h): the 8-byte
 * header length, the JSON header (dtypes, shapes, data_offsets, overlaps,
 * "__metadata__") and, for a file that opens, every tensor found by name and
 * converted to f32 (so an offset or byte count that escapes the data section
 * is an out-of-bounds read under ASan). The input is the whole file. */
#include "fuzz-common.h"

#include "ds-safetensors.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char path[600];
  fuzz_write (fuzz_path (path, sizeof path, "model.safetensors"), data, size);
  DsError err = { 0 };
  DsSafetensors *st;
  if (ds_safetensors_open (path, &st, &err) != DS_OK)
    return 0;
  (void) ds_safetensors_metadata (st, "format");
  for (int i = 0; i < ds_safetensors_count (st); i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (st, i);
      if (ds_safetensors_find (st, e->name) != e)
        abort (); /* names are unique: find must give this very entry */
      DsTensor t;
      if (ds_safetensors_load_f32 (st, e->name, e->ndim, e->shape, &t, &err) == DS_OK)
        {
          if ((size_t) ds_tensor_numel (&t) * ds_dtype_size (e->dtype) != e->nbytes)
            abort ();
          ds_tensor_free (&t);
        }
      if (ds_safetensors_load_float (st, e->name, 0, NULL, &t, &err) == DS_OK)
        ds_tensor_free (&t);
    }
  ds_safetensors_close (st);
  return 0;
}
