/* ds-safetensors-index.c: see ds-safetensors-index.h. */
#include "ds-safetensors-index.h"
#include "ds-util.h"
#include "ds-util.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  const char *name; /* transfer none: the entry's name, owned by its shard */
  const DsSafetensorsEntry *entry;
  int shard;
} Slot;

struct DsSafetensorsIndex {
  char *path;
  DsSafetensors **shards;
  int n_shards;
  Slot *slots; /* open addressing, n_slots a power of two; name NULL = empty */
  size_t n_slots;
  int64_t count;
};

static uint64_t
hash_name (const char *name)
{
  return ds_fnv1a (DS_FNV1A_OFFSET, name, strlen (name));
}

static Slot *
slot_for (const DsSafetensorsIndex *idx, const char *name)
{
  size_t mask = idx->n_slots - 1;
  for (size_t i = (size_t) hash_name (name) & mask;; i = (i + 1) & mask)
    if (!idx->slots[i].name || strcmp (idx->slots[i].name, name) == 0)
      return &idx->slots[i];
}

static DsStatus
reserve_slots (DsSafetensorsIndex *idx, size_t n_names, DsError *err)
{
  size_t n = 16;
  while (n < 2 * n_names + 1)
    n *= 2;
  idx->slots = calloc (n, sizeof *idx->slots);
  if (!idx->slots)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", idx->path);
  idx->n_slots = n;
  return DS_OK;
}

void
ds_safetensors_index_close (DsSafetensorsIndex *idx)
{
  if (!idx)
    return;
  for (int i = 0; i < idx->n_shards; i++)
    ds_safetensors_close (idx->shards[i]);
  free (idx->shards);
  free (idx->slots);
  free (idx->path);
  free (idx);
}

static DsSafetensorsIndex *
index_new (const char *path)
{
  DsSafetensorsIndex *idx = calloc (1, sizeof *idx);
  if (idx && !(idx->path = strdup (path)))
    {
      free (idx);
      idx = NULL;
    }
  return idx;
}

static DsStatus
open_single (const char *path, DsSafetensorsIndex **out, DsError *err)
{
  DsSafetensorsIndex *idx = index_new (path);
  if (!idx || !(idx->shards = calloc (1, sizeof *idx->shards)))
    {
      ds_safetensors_index_close (idx);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  DsStatus st = ds_safetensors_open (path, &idx->shards[0], err);
  if (st != DS_OK)
    {
      ds_safetensors_index_close (idx);
      return st;
    }
  idx->n_shards = 1;
  const DsSafetensors *f = idx->shards[0];
  int n = ds_safetensors_count (f);
  if ((st = reserve_slots (idx, (size_t) n, err)) != DS_OK)
    {
      ds_safetensors_index_close (idx);
      return st;
    }
  for (int i = 0; i < n; i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (f, i);
      Slot *s = slot_for (idx, e->name);
      *s = (Slot){ e->name, e, 0 }; /* names are unique in a file (ds-safetensors.h) */
    }
  idx->count = n;
  *out = idx;
  return DS_OK;
}

/* A shard name must stay inside the index's folder. */
static const char *
bad_shard_name (const char *name)
{
  size_t n = strlen (name);
  const char *ext = ".safetensors";
  if (n == 0)
    return "an empty file name";
  if (name[0] == '/')
    return "an absolute path";
  if (strchr (name, '\\'))
    return "a backslash";
  for (const char *p = name; *p;)
    {
      const char *q = strchr (p, '/');
      size_t len = q ? (size_t) (q - p) : strlen (p);
      if ((len == 2 && p[0] == '.' && p[1] == '.') || len == 0)
        return "a path outside the folder";
      p += len + (q ? 1 : 0);
    }
  if (n < strlen (ext) || strcmp (name + n - strlen (ext), ext) != 0)
    return "not a .safetensors file (pickle checkpoints are never loaded)";
  return NULL;
}

static char *
dir_of (const char *path)
{
  const char *slash = strrchr (path, '/');
  if (!slash)
    return strdup (".");
  size_t n = (size_t) (slash - path);
  char *d = malloc (n + 2);
  if (d)
    {
      memcpy (d, path, n ? n : 1);
      d[n ? n : 1] = '\0';
    }
  return d;
}

static DsStatus
open_index (const char *path, DsSafetensorsIndex **out, DsError *err)
{
  json_error_t jerr;
  json_t *root = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    {
      if (!ds_path_exists (path))
        return ds_error_set (err, DS_ERR_IO, "%s: cannot open: %s", path, strerror (errno));
      return ds_error_set (err, DS_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    }
  DsStatus st = DS_OK;
  DsSafetensorsIndex *idx = NULL;
  char *dir = NULL;
  json_t *map = json_is_object (root) ? json_object_get (root, "weight_map") : NULL;
  if (!json_is_object (root))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON object", path);
  else if (!json_is_object (map))
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"weight_map\": %s, expected an object "
                       "of tensor name -> shard file", path,
                       map ? "not an object" : "missing");
  else if (json_object_size (map) == 0)
    st = ds_error_set (err, DS_ERR_FORMAT, "%s: \"weight_map\" is empty", path);
  if (st != DS_OK)
    goto out;

  size_t n_names = json_object_size (map);
  idx = index_new (path);
  dir = dir_of (path);
  if (!idx || !dir || !(idx->shards = calloc (n_names, sizeof *idx->shards)))
    {
      st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
  if ((st = reserve_slots (idx, n_names, err)) != DS_OK)
    goto out;

  /* Pass 1: the shard names, each checked and opened once, in order of
   * first mention. */
  const char **shard_names = calloc (n_names, sizeof *shard_names);
  if (!shard_names)
    {
      st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
  const char *key;
  json_t *val;
  json_object_foreach (map, key, val)
    {
      if (!json_is_string (val))
        {
          st = ds_error_set (err, DS_ERR_FORMAT, "%s: weight_map[\"%s\"]: expected a file "
                             "name string", path, key);
          break;
        }
      const char *f = json_string_value (val);
      int s = 0;
      while (s < idx->n_shards && strcmp (shard_names[s], f) != 0)
        s++;
      if (s < idx->n_shards)
        continue;
      const char *why = bad_shard_name (f);
      if (why)
        {
          st = ds_error_set (err, DS_ERR_FORMAT, "%s: weight_map[\"%s\"]: shard \"%s\" is %s",
                             path, key, f, why);
          break;
        }
      char *shard_path = ds_path_join (dir, f);
      if (!shard_path)
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
          break;
        }
      if (!ds_path_exists (shard_path))
        st = ds_error_set (err, DS_ERR_NOT_FOUND, "%s: shard \"%s\" (of tensor \"%s\") "
                           "is missing", path, f, key);
      else if ((st = ds_safetensors_open (shard_path, &idx->shards[s], err)) != DS_OK)
        ds_error_prefix (err, st, "%s", path);
      free (shard_path);
      if (st != DS_OK)
        break;
      shard_names[s] = f;
      idx->n_shards++;
    }

  /* Pass 2: every mapped name is where the map says. */
  if (st == DS_OK)
    json_object_foreach (map, key, val)
      {
        const char *f = json_string_value (val);
        int s = 0;
        while (strcmp (shard_names[s], f) != 0)
          s++;
        const DsSafetensorsEntry *e = ds_safetensors_find (idx->shards[s], key);
        if (!e)
          {
            st = ds_error_set (err, DS_ERR_NOT_FOUND, "%s: tensor \"%s\" is not in its shard "
                               "\"%s\"", path, key, f);
            break;
          }
        *slot_for (idx, e->name) = (Slot){ e->name, e, s };
        idx->count++;
      }

  /* Pass 3: no name stored in two shards (which one would be meant?). */
  for (int s = 0; st == DS_OK && s < idx->n_shards; s++)
    for (int i = 0; i < ds_safetensors_count (idx->shards[s]); i++)
      {
        const DsSafetensorsEntry *e = ds_safetensors_entry (idx->shards[s], i);
        const Slot *slot = slot_for (idx, e->name);
        if (slot->name && slot->shard != s)
          {
            st = ds_error_set (err, DS_ERR_FORMAT, "%s: tensor \"%s\" is stored in two "
                               "shards, \"%s\" and \"%s\"", path, e->name,
                               shard_names[slot->shard], shard_names[s]);
            break;
          }
      }
  free (shard_names);

out:
  json_decref (root);
  free (dir);
  if (st != DS_OK)
    {
      ds_safetensors_index_close (idx);
      return st;
    }
  *out = idx;
  return DS_OK;
}

static bool
ends_with (const char *s, const char *suffix)
{
  size_t n = strlen (s), m = strlen (suffix);
  return n >= m && strcmp (s + n - m, suffix) == 0;
}

DsStatus
ds_safetensors_index_open_file (const char *path, DsSafetensorsIndex **out, DsError *err)
{
  assert (path && out);
  *out = NULL;
  if (ends_with (path, ".json"))
    return open_index (path, out, err);
  return open_single (path, out, err);
}

DsStatus
ds_safetensors_index_open (const char *dir, DsSafetensorsIndex **out, DsError *err)
{
  assert (dir && out);
  *out = NULL;
  char *index = ds_path_join (dir, DS_SAFETENSORS_INDEX_NAME);
  char *single = ds_path_join (dir, DS_SAFETENSORS_SINGLE_NAME);
  char *pickle = ds_path_join (dir, "pytorch_model.bin");
  char *pickle_index = ds_path_join (dir, "pytorch_model.bin.index.json");
  DsStatus st;
  if (!index || !single || !pickle || !pickle_index)
    st = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", dir);
  else if (ds_path_exists (index))
    st = open_index (index, out, err);
  else if (ds_path_exists (single))
    st = open_single (single, out, err);
  else if (ds_path_exists (pickle) || ds_path_exists (pickle_index))
    st = ds_error_set (err, DS_ERR_UNSUPPORTED, "%s: only a pickle checkpoint "
                       "(pytorch_model*.bin) is there; Diffscope never loads pickle files: "
                       "convert it to safetensors", dir);
  else
    st = ds_error_set (err, DS_ERR_NOT_FOUND, "%s: neither %s nor %s is there", dir,
                       DS_SAFETENSORS_INDEX_NAME, DS_SAFETENSORS_SINGLE_NAME);
  free (index);
  free (single);
  free (pickle);
  free (pickle_index);
  return st;
}

const char *
ds_safetensors_index_path (const DsSafetensorsIndex *idx)
{
  return idx->path;
}

int
ds_safetensors_index_n_shards (const DsSafetensorsIndex *idx)
{
  return idx->n_shards;
}

const DsSafetensors *
ds_safetensors_index_shard (const DsSafetensorsIndex *idx, int i)
{
  assert (i >= 0 && i < idx->n_shards);
  return idx->shards[i];
}

int64_t
ds_safetensors_index_count (const DsSafetensorsIndex *idx)
{
  return idx->count;
}

const DsSafetensorsEntry *
ds_safetensors_index_find (const DsSafetensorsIndex *idx, const char *name,
                           const DsSafetensors **shard)
{
  const Slot *s = slot_for (idx, name);
  if (shard)
    *shard = s->name ? idx->shards[s->shard] : NULL;
  return s->name ? s->entry : NULL;
}

DsStatus
ds_safetensors_index_load_float (const DsSafetensorsIndex *idx, const char *name, int ndim,
                                 const int64_t *expected_shape, DsTensor *out, DsError *err)
{
  const DsSafetensors *shard;
  if (!ds_safetensors_index_find (idx, name, &shard))
    return ds_error_set (err, DS_ERR_NOT_FOUND, "%s: no tensor '%s'", idx->path, name);
  return ds_safetensors_load_float (shard, name, ndim, expected_shape, out, err);
}
