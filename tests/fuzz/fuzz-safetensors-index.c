/* fuzz-safetensors-index.c: model.safetensors.index.json as
 * ds_safetensors_index_open reads it: the "weight_map" object, shard names
 * (relative, inside the folder, .safetensors), every mapped tensor in the
 * shard named, no tensor in two shards. The input is the index; the folder
 * holds, made once: two shards as llava-hf names them, sub/model.safetensors,
 * dup.safetensors (a name also in the first shard), empty.safetensors (no
 * tensors), bad.safetensors (not a safetensors file), dir.safetensors (a
 * folder) and pytorch_model.bin (pickle). When the index opens, every tensor
 * is found and loaded through it. */
#include "fuzz-common.h"

#include "ds-safetensors-index.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char dir[600];

static void
write_shard (const char *name, const char *const *tensors, int n)
{
  DsTensor t[4];
  DsSafetensorsItem items[4];
  DsError err = { 0 };
  for (int i = 0; i < n; i++)
    {
      if (ds_tensor_alloc (&t[i], DS_DTYPE_F32, 1, (int64_t[]){ i + 1 }, &err) != DS_OK)
        abort ();
      memset (t[i].data, 0, ds_tensor_nbytes (&t[i]));
      items[i] = (DsSafetensorsItem){ tensors[i], &t[i] };
    }
  char path[800];
  snprintf (path, sizeof path, "%s/%s", dir, name);
  if (ds_safetensors_write (path, items, n, NULL, &err) != DS_OK)
    {
      fprintf (stderr, "fuzz-safetensors-index: %s\n", err.message);
      abort ();
    }
  for (int i = 0; i < n; i++)
    ds_tensor_free (&t[i]);
}

static void
setup (void)
{
  fuzz_path (dir, sizeof dir, "llava");
  char path[800];
  snprintf (path, sizeof path, "%s/sub", dir);
  if (mkdir (dir, 0700) != 0 || mkdir (path, 0700) != 0)
    fuzz_die ("cannot make", path);
  snprintf (path, sizeof path, "%s/dir.safetensors", dir);
  if (mkdir (path, 0700) != 0)
    fuzz_die ("cannot make", path);
  write_shard ("model-00001-of-00002.safetensors",
               (const char *const[]){ "embed.weight", "norm.weight" }, 2);
  write_shard ("model-00002-of-00002.safetensors",
               (const char *const[]){ "lm_head.weight", "layers.0.weight", "x" }, 3);
  write_shard ("sub/model.safetensors", (const char *const[]){ "sub.weight" }, 1);
  write_shard ("dup.safetensors", (const char *const[]){ "embed.weight", "dup.weight" }, 2);
  write_shard ("empty.safetensors", NULL, 0);
  snprintf (path, sizeof path, "%s/bad.safetensors", dir);
  fuzz_write (path, "\x02\0\0\0\0\0\0\0[]", 10);
  snprintf (path, sizeof path, "%s/pytorch_model.bin", dir);
  fuzz_write (path, "PK", 2);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (!dir[0])
    setup ();
  char path[800];
  snprintf (path, sizeof path, "%s/" DS_SAFETENSORS_INDEX_NAME, dir);
  fuzz_write (path, data, size);
  DsSafetensorsIndex *idx;
  DsError err = { 0 };
  if (ds_safetensors_index_open (dir, &idx, &err) != DS_OK)
    return 0;
  int64_t found = 0;
  for (int s = 0; s < ds_safetensors_index_n_shards (idx); s++)
    {
      const DsSafetensors *shard = ds_safetensors_index_shard (idx, s);
      for (int i = 0; i < ds_safetensors_count (shard); i++)
        {
          const DsSafetensorsEntry *e = ds_safetensors_entry (shard, i);
          const DsSafetensors *where;
          if (ds_safetensors_index_find (idx, e->name, &where) != e || where != shard)
            continue; /* a tensor the map does not name */
          found++;
          DsTensor t;
          if (ds_safetensors_index_load_float (idx, e->name, e->ndim, e->shape, &t, &err)
              != DS_OK)
            abort ();
          ds_tensor_free (&t);
        }
    }
  if (found != ds_safetensors_index_count (idx))
    abort (); /* every mapped name is in its shard, once */
  ds_safetensors_index_close (idx);
  return 0;
}
