/* ds-safetensors.c: the .safetensors reader (mmap + strict header checks) and
 * an atomic writer.
 *
 * Reading maps the whole file read-only, parses the JSON header with jansson and
 * validates every entry before handing anything out, so a tensor pointer from an
 * open DsSafetensors is always inside the mapping and holds exactly
 * numel x dtype-size bytes. Nothing here interprets tensor names; the model
 * loaders do that. Writing builds the header from DsTensors, pads it with spaces
 * to a multiple of 8 bytes (as the reference implementation does, so the data
 * section starts aligned) and renames a temporary file into place.
 *
 * Tensor bytes are little-endian on disk; the engine only targets little-endian
 * hosts, so data is used and written as is.
 */
#include "ds-safetensors.h"
#include "ds-atomic.h"
#include "ds-json.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ds-safetensors.c assumes a little-endian host"
#endif

struct DsSafetensors
{
  char *path;
  uint8_t *map; /* the whole file, read-only */
  size_t map_size;
  const uint8_t *data; /* start of the data section (byte 8 + header length) */
  size_t data_size;
  int count;
  DsSafetensorsEntry *entries; /* (count) sorted by data offset */
  int *by_name;                /* (count) entry indices sorted by name */
  int n_meta;
  char **meta; /* (2 * n_meta) key, value, key, value, ... */
  int slot;    /* in the SIGBUS guard's table (map_slots), or -1 */
};

/* The safetensors dtype strings the engine can load. */
static const char *const st_dtype_names[] = {
  [DS_DTYPE_F32] = "F32", [DS_DTYPE_F16] = "F16", [DS_DTYPE_BF16] = "BF16",
  [DS_DTYPE_I32] = "I32", [DS_DTYPE_I64] = "I64",
};
_Static_assert(sizeof st_dtype_names / sizeof st_dtype_names[0] == DS_DTYPE_COUNT,
               "one safetensors name per DsDType");

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

typedef struct
{
  DsSafetensorsEntry e;
  uint64_t begin, end; /* relative to the data section */
} Parsed;

static int
parsed_cmp (const void *a, const void *b)
{
  const Parsed *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return strcmp (x->e.name, y->e.name);
}

typedef struct
{
  const char *name;
  int index;
} NameIndex;

static int
name_cmp (const void *a, const void *b)
{
  return strcmp (((const NameIndex *)a)->name, ((const NameIndex *)b)->name);
}

/* Parses one header entry `name` -> {"dtype", "shape", "data_offsets"}. */
static DsStatus
parse_entry (const char *path, const char *name, json_t *v, uint64_t data_size, Parsed *p,
             DsError *err)
{
  if (!json_is_object (v))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': header entry is %s, expected an object "
                         "with dtype, shape and data_offsets",
                         path, name, ds_json_type_name (v));

  json_t *dt = json_object_get (v, "dtype");
  if (!dt)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
  if (!json_is_string (dt))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s, expected a string",
                         path, name, ds_json_type_name (dt));
  const char *dts = json_string_value (dt);
  int dtype = -1;
  for (int i = 0; i < DS_DTYPE_COUNT; i++)
    if (strcmp (dts, st_dtype_names[i]) == 0)
      dtype = i;
  if (dtype < 0)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: tensor '%s': dtype '%s' is not supported "
                         "(expected F32, F16, BF16, I32 or I64)",
                         path, name, dts);
  p->e.dtype = (DsDType)dtype;

  json_t *shape = json_object_get (v, "shape");
  if (!shape)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
  if (!json_is_array (shape))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': \"shape\" is %s, expected an array of "
                         "non-negative integers",
                         path, name, ds_json_type_name (shape));
  size_t nd = json_array_size (shape);
  if (nd > DS_MAX_DIMS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: tensor '%s': \"shape\" has %zu dimensions, at most %d "
                         "are supported",
                         path, name, nd, DS_MAX_DIMS);
  p->e.ndim = (int)nd;
  uint64_t numel = 1;
  bool overflow = false;
  for (int i = 0; i < DS_MAX_DIMS; i++)
    p->e.shape[i] = 1;
  for (size_t i = 0; i < nd; i++)
    {
      json_t *d = json_array_get (shape, i);
      if (!json_is_integer (d) || json_integer_value (d) < 0)
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: tensor '%s': \"shape\"[%zu] is %s, expected a "
                             "non-negative integer",
                             path, name, i, json_is_integer (d) ? "negative" : ds_json_type_name (d));
      p->e.shape[i] = (int64_t)json_integer_value (d);
      overflow |= __builtin_mul_overflow (numel, (uint64_t)p->e.shape[i], &numel);
    }
  uint64_t need;
  overflow |= __builtin_mul_overflow (numel, (uint64_t)ds_dtype_size (p->e.dtype), &need);
  char sbuf[128];
  ds_shape_str (p->e.ndim, p->e.shape, sbuf, sizeof sbuf);
  if (overflow || need > (uint64_t)SIZE_MAX)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': shape %s of %s is too large (byte count "
                         "overflows)",
                         path, name, sbuf, dts);

  json_t *off = json_object_get (v, "data_offsets");
  if (!off)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path,
                         name);
  if (!json_is_array (off) || json_array_size (off) != 2
      || !json_is_integer (json_array_get (off, 0)) || !json_is_integer (json_array_get (off, 1)))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': \"data_offsets\" must be an array of two "
                         "integers [begin, end]",
                         path, name);
  json_int_t b = json_integer_value (json_array_get (off, 0));
  json_int_t e = json_integer_value (json_array_get (off, 1));
  if (b < 0 || e < 0 || b > e)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] must satisfy "
                         "0 <= begin <= end",
                         path, name, (long long)b, (long long)e);
  if ((uint64_t)e > data_size)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] end beyond the "
                         "data section of %llu bytes",
                         path, name, (long long)b, (long long)e, (unsigned long long)data_size);
  if ((uint64_t)(e - b) != need)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes "
                         "but shape %s of %s needs %llu",
                         path, name, (long long)b, (long long)e, (long long)(e - b), sbuf, dts,
                         (unsigned long long)need);
  p->begin = (uint64_t)b;
  p->end = (uint64_t)e;
  p->e.nbytes = (size_t)need;
  return DS_OK;
}

static DsStatus
parse_metadata (DsSafetensors *st, json_t *v, DsError *err)
{
  if (!json_is_object (v))
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: \"__metadata__\" is %s, expected an object of strings", st->path,
                         ds_json_type_name (v));
  size_t n = json_object_size (v);
  st->meta = calloc (2 * n + 1, sizeof *st->meta);
  if (!st->meta)
    return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", st->path);
  const char *key;
  json_t *val;
  json_object_foreach (v, key, val)
  {
    if (!json_is_string (val))
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: \"__metadata__\" key '%s' is %s, expected a string", st->path, key,
                           ds_json_type_name (val));
    char *k = strdup (key), *s = strdup (json_string_value (val));
    st->meta[2 * st->n_meta] = k;
    st->meta[2 * st->n_meta + 1] = s;
    st->n_meta++;
    if (!k || !s)
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", st->path);
  }
  return DS_OK;
}

/* The members of the top-level JSON object in text (the tensors plus
 * "__metadata__"): its colons outside strings at nesting depth 1. A rough
 * count for malformed text, which jansson rejects afterwards. */
static uint64_t
count_members (const char *text, size_t n)
{
  uint64_t count = 0;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; i++)
    {
      char c = text[i];
      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = false;
        }
      else if (c == '"')
        in_string = true;
      else if (c == '{' || c == '[')
        depth++;
      else if (c == '}' || c == ']')
        depth--;
      else if (c == ':' && depth == 1)
        count++;
    }
  return count;
}

/* Everything after the mapping: header JSON, entries, order checks. */
static DsStatus
parse_header (DsSafetensors *st, DsError *err)
{
  const char *path = st->path;
  if (st->map_size < 8)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: file is %zu bytes, shorter than the 8-byte header "
                         "length",
                         path, st->map_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | st->map[i];
  if (n < 2)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: header length %llu is too small for a JSON object "
                         "(at least 2 bytes)",
                         path, (unsigned long long)n);
  if (n > DS_SAFETENSORS_MAX_HEADER)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: header length %llu exceeds the %u-byte limit (not a "
                         "safetensors file?)",
                         path, (unsigned long long)n, DS_SAFETENSORS_MAX_HEADER);
  if (n > st->map_size - 8)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: header length %llu runs past the end of the file "
                         "(%zu bytes)",
                         path, (unsigned long long)n, st->map_size);
  st->data = st->map + 8 + n;
  st->data_size = st->map_size - 8 - (size_t)n;

  /* Counted before jansson builds the tree: a header of a million empty
   * entries fits in the byte limit but costs seconds and a gigabyte. */
  uint64_t members = count_members ((const char *)st->map + 8, (size_t)n);
  if (members > DS_SAFETENSORS_MAX_TENSORS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "%s: header lists %llu tensors; the limit is %d (a Stable Diffusion "
                         "checkpoint has about 700 per file)",
                         path, (unsigned long long)members, DS_SAFETENSORS_MAX_TENSORS);

  json_error_t jerr;
  json_t *root = json_loadb ((const char *)st->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root && json_error_code (&jerr) == json_error_duplicate_key)
    {
      /* jansson's text is "duplicate object key near '\"name\"'" */
      const char *near = strstr (jerr.text, "near ");
      return ds_error_set (err, DS_ERR_FORMAT,
                           "%s: the header has the key %s twice (line %d, column %d); tensor "
                           "names must be unique",
                           path, near ? near + 5 : "?", jerr.line, jerr.column);
    }
  if (!root)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
  DsStatus status = DS_OK;
  Parsed *parsed = NULL;
  if (!json_is_object (root))
    {
      status = ds_error_set (err, DS_ERR_FORMAT, "%s: header is %s, expected a JSON object", path,
                             ds_json_type_name (root));
      goto out;
    }

  size_t cap = json_object_size (root);
  parsed = calloc (cap ? cap : 1, sizeof *parsed);
  if (!parsed)
    {
      status = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
  int count = 0;
  const char *key;
  json_t *val;
  json_object_foreach (root, key, val)
  {
    if (strcmp (key, "__metadata__") == 0)
      {
        if ((status = parse_metadata (st, val, err)) != DS_OK)
          goto out;
        continue;
      }
    Parsed *p = &parsed[count];
    if ((status = parse_entry (path, key, val, st->data_size, p, err)) != DS_OK)
      goto out;
    if (!(p->e.name = strdup (key)))
      {
        status = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
        goto out;
      }
    p->e.data = st->data + p->begin;
    count++;
  }

  qsort (parsed, (size_t)count, sizeof *parsed, parsed_cmp);
  /* Empty tensors occupy no bytes and cannot overlap anything. */
  int prev = -1;
  for (int i = 0; i < count; i++)
    {
      if (parsed[i].begin == parsed[i].end)
        continue;
      if (prev >= 0 && parsed[i].begin < parsed[prev].end)
        {
          status = ds_error_set (
              err, DS_ERR_FORMAT,
              "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' at "
              "[%llu, %llu]",
              path, parsed[i].e.name, (unsigned long long)parsed[i].begin,
              (unsigned long long)parsed[i].end, parsed[prev].e.name,
              (unsigned long long)parsed[prev].begin, (unsigned long long)parsed[prev].end);
          goto out;
        }
      prev = i;
    }

  st->entries = calloc ((size_t)count + 1, sizeof *st->entries);
  st->by_name = calloc ((size_t)count + 1, sizeof *st->by_name);
  if (!st->entries || !st->by_name)
    {
      status = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
  for (int i = 0; i < count; i++)
    {
      st->entries[i] = parsed[i].e;
      parsed[i].e.name = NULL; /* moved */
    }
  st->count = count;

  NameIndex *names = malloc (((size_t)count + 1) * sizeof *names);
  if (!names)
    {
      status = ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
      goto out;
    }
  for (int i = 0; i < count; i++)
    names[i] = (NameIndex){ st->entries[i].name, i };
  qsort (names, (size_t)count, sizeof *names, name_cmp);
  for (int i = 0; i < count; i++)
    st->by_name[i] = names[i].index;
  free (names);

out:
  if (parsed)
    {
      for (size_t i = 0; i < cap; i++)
        free ((char *)parsed[i].e.name);
      free (parsed);
    }
  json_decref (root);
  return status;
}

/* ---- files that shrink while mapped ----
 *
 * A file truncated or rewritten in place by another program while it is
 * mapped makes a read past its new end raise SIGBUS, which would kill the
 * process, in whichever thread reads: a copy here, or a worker thread of a
 * mixed linear reading a LLaMA's mapped 16-bit weights during a decode. So
 * every mapping is entered in a fixed table that the SIGBUS handler reads
 * without locks. A fault inside one maps zero pages over the rest of it, so
 * the reading code runs on (on zeros), and marks the mapping damaged; readers
 * check the mark once they are done (ds_safetensors_intact) and turn it into
 * an error, and a damaged file stays an error until it is opened again. A
 * SIGBUS anywhere else goes to the disposition there was before. (mmap is not
 * on POSIX's list of async-signal-safe calls; on Linux it is one system call
 * that touches no user-space state, which is what matters in a handler.)
 * With the table full (MAP_SLOTS files open at once) a mapping goes
 * unguarded. */
#define MAP_SLOTS 1024

typedef struct {
  _Atomic uintptr_t start; /* 0: a free slot */
  _Atomic size_t len;      /* 0 while being entered */
  atomic_int damaged;
} MapSlot;

static MapSlot map_slots[MAP_SLOTS];
static struct sigaction bus_previous;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;
static uintptr_t page_mask;

static void
on_sigbus (int sig, siginfo_t *info, void *ctx)
{
  const uintptr_t a = (uintptr_t) info->si_addr;
  for (int i = 0; i < MAP_SLOTS; i++)
    {
      const uintptr_t start = atomic_load (&map_slots[i].start);
      const size_t len = atomic_load (&map_slots[i].len);
      if (!start || !len || a < start || a - start >= len)
        continue;
      const uintptr_t page = a & page_mask;
      if (mmap ((void *) page, start + len - page, PROT_READ,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
          != MAP_FAILED)
        {
          atomic_store (&map_slots[i].damaged, 1);
          return; /* the read is retried, on zeros */
        }
      break;
    }
  if (bus_previous.sa_flags & SA_SIGINFO)
    bus_previous.sa_sigaction (sig, info, ctx);
  else if (bus_previous.sa_handler != SIG_DFL && bus_previous.sa_handler != SIG_IGN)
    bus_previous.sa_handler (sig);
  else
    {
      signal (SIGBUS, SIG_DFL);
      raise (SIGBUS);
    }
}

static void
install_bus_handler (void)
{
  page_mask = ~((uintptr_t) sysconf (_SC_PAGESIZE) - 1);
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGBUS, &sa, &bus_previous);
}

/* Enters [map, map + len) in the table; its slot, or -1 when it is full. */
static int
guard_mapping (const void *map, size_t len)
{
  pthread_once (&bus_once, install_bus_handler);
  for (int i = 0; i < MAP_SLOTS; i++)
    {
      uintptr_t free_slot = 0;
      if (atomic_compare_exchange_strong (&map_slots[i].start, &free_slot, (uintptr_t) map))
        {
          atomic_store (&map_slots[i].damaged, 0);
          atomic_store (&map_slots[i].len, len);
          return i;
        }
    }
  return -1;
}

static void
unguard_mapping (int slot)
{
  if (slot < 0)
    return;
  atomic_store (&map_slots[slot].len, 0);
  atomic_store (&map_slots[slot].damaged, 0);
  atomic_store (&map_slots[slot].start, 0);
}

bool
ds_safetensors_intact (const DsSafetensors *st)
{
  return st->slot < 0 || !atomic_load (&map_slots[st->slot].damaged);
}

DsStatus
ds_safetensors_check_intact (const DsSafetensors *st, DsError *err)
{
  if (ds_safetensors_intact (st))
    return DS_OK;
  return ds_error_set (err, DS_ERR_IO,
                       "%s: could not be read: the file is now shorter than when it was "
                       "opened (truncated or replaced while in use); open it again",
                       st->path);
}

DsStatus
ds_safetensors_open (const char *path, DsSafetensors **out, DsError *err)
{
  assert (path && out);
  *out = NULL;
  DsSafetensors *st = calloc (1, sizeof *st);
  if (!st || !(st->path = strdup (path)))
    {
      free (st);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  st->slot = -1;

  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      int e = errno;
      ds_safetensors_close (st);
      return ds_error_set (err, DS_ERR_IO, "%s: cannot open: %s", path, strerror (e));
    }
  struct stat sb;
  if (fstat (fd, &sb) != 0)
    {
      int e = errno;
      close (fd);
      ds_safetensors_close (st);
      return ds_error_set (err, DS_ERR_IO, "%s: cannot stat: %s", path, strerror (e));
    }
  if (!S_ISREG (sb.st_mode))
    {
      close (fd);
      ds_safetensors_close (st);
      return ds_error_set (err, DS_ERR_IO, "%s: is %s, not a safetensors file", path,
                           ds_file_kind (sb.st_mode));
    }
  st->map_size = (size_t)sb.st_size;
  if (st->map_size > 0)
    {
      void *m = mmap (NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (m == MAP_FAILED)
        {
          int e = errno;
          close (fd);
          st->map_size = 0;
          ds_safetensors_close (st);
          return ds_error_set (err, DS_ERR_IO, "%s: cannot mmap %lld bytes: %s", path,
                               (long long)sb.st_size, strerror (e));
        }
      st->map = m;
      st->slot = guard_mapping (m, st->map_size);
    }
  close (fd);

  DsStatus status = parse_header (st, err);
  if (status == DS_OK || !ds_safetensors_intact (st))
    status = ds_safetensors_check_intact (st, err);
  if (status != DS_OK)
    {
      ds_safetensors_close (st);
      return status;
    }
  *out = st;
  return DS_OK;
}

void
ds_safetensors_close (DsSafetensors *st)
{
  if (!st)
    return;
  if (st->map)
    {
      unguard_mapping (st->slot);
      munmap (st->map, st->map_size);
    }
  for (int i = 0; i < st->count; i++)
    free ((char *)st->entries[i].name);
  free (st->entries);
  free (st->by_name);
  for (int i = 0; i < 2 * st->n_meta; i++)
    free (st->meta[i]);
  free (st->meta);
  free (st->path);
  free (st);
}

const char *
ds_safetensors_path (const DsSafetensors *st)
{
  return st->path;
}

int
ds_safetensors_count (const DsSafetensors *st)
{
  return st->count;
}

const DsSafetensorsEntry *
ds_safetensors_entry (const DsSafetensors *st, int index)
{
  assert (index >= 0 && index < st->count);
  return &st->entries[index];
}

const DsSafetensorsEntry *
ds_safetensors_find (const DsSafetensors *st, const char *name)
{
  assert (name);
  int lo = 0, hi = st->count - 1;
  while (lo <= hi)
    {
      int mid = lo + (hi - lo) / 2;
      const DsSafetensorsEntry *e = &st->entries[st->by_name[mid]];
      int c = strcmp (name, e->name);
      if (c == 0)
        return e;
      if (c < 0)
        hi = mid - 1;
      else
        lo = mid + 1;
    }
  return NULL;
}

const char *
ds_safetensors_metadata (const DsSafetensors *st, const char *key)
{
  for (int i = 0; i < st->n_meta; i++)
    if (strcmp (st->meta[2 * i], key) == 0)
      return st->meta[2 * i + 1];
  return NULL;
}

DsStatus
ds_safetensors_load_f32 (const DsSafetensors *st, const char *name, int ndim,
                         const int64_t *expected_shape, DsTensor *out, DsError *err)
{
  assert (st && name && out);
  memset (out, 0, sizeof *out);
  const DsSafetensorsEntry *e = ds_safetensors_find (st, name);
  if (!e)
    return ds_error_set (err, DS_ERR_NOT_FOUND, "%s: tensor '%s' not found", st->path, name);
  if (expected_shape)
    {
      assert (ndim >= 0 && ndim <= DS_MAX_DIMS);
      bool same = e->ndim == ndim;
      for (int i = 0; same && i < ndim; i++)
        same = e->shape[i] == expected_shape[i];
      if (!same)
        {
          char got[128], want[128];
          return ds_error_set (err, DS_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
                               st->path, name, ds_shape_str (e->ndim, e->shape, got, sizeof got),
                               ds_shape_str (ndim, expected_shape, want, sizeof want));
        }
    }
  DsStatus s = ds_tensor_alloc (out, DS_DTYPE_F32, e->ndim, e->shape, err);
  if (s == DS_OK)
    s = ds_convert_to_f32 (ds_tensor_f32 (out), e->data, e->dtype, ds_tensor_numel (out), err);
  if (s == DS_OK && !ds_safetensors_intact (st))
    s = ds_error_set (err, DS_ERR_IO,
                      "could not be read: the file is now shorter than when it was opened "
                      "(truncated or replaced while in use)");
  if (s != DS_OK)
    {
      ds_tensor_free (out);
      if (err)
        ds_error_prefix (err, s, "%s: tensor '%s'", st->path, name);
    }
  return s;
}

DsStatus
ds_safetensors_load_float (const DsSafetensors *st, const char *name, int ndim,
                           const int64_t *expected_shape, DsTensor *out, DsError *err)
{
  assert (st && name && out);
  memset (out, 0, sizeof *out);
  const DsSafetensorsEntry *e = ds_safetensors_find (st, name);
  if (e && e->dtype != DS_DTYPE_F32 && e->dtype != DS_DTYPE_F16 && e->dtype != DS_DTYPE_BF16)
    return ds_error_set (err, DS_ERR_FORMAT,
                         "%s: tensor '%s' is stored as %s; expected real numbers (F32, F16 "
                         "or BF16)",
                         st->path, name, st_dtype_names[e->dtype]);
  DsStatus s = ds_safetensors_load_f32 (st, name, ndim, expected_shape, out, err);
  if (s != DS_OK)
    return s;
  const float *x = ds_tensor_f32 (out);
  const int64_t numel = ds_tensor_numel (out);
  for (int64_t i = 0; i < numel; i++)
    if (!isfinite (x[i]))
      {
        float v = x[i];
        ds_tensor_free (out);
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: tensor '%s' holds %s at element %lld; every value must be "
                             "finite",
                             st->path, name, isnan (v) ? "NaN" : v > 0 ? "+Inf" : "-Inf",
                             (long long)i);
      }
  return DS_OK;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

static DsStatus
write_all (FILE *f, const void *buf, size_t n, const char *path, DsError *err)
{
  if (n && fwrite (buf, 1, n, f) != n)
    return ds_error_set (err, DS_ERR_IO, "%s: write failed: %s", path, strerror (errno));
  return DS_OK;
}

/* The header JSON for `items`, or NULL with err set. transfer full (free()). */
static char *
build_header (const char *path, const DsSafetensorsItem *items, int n_items,
              const char *const *metadata, DsError *err)
{
  json_t *root = json_object ();
  char *text = NULL;
  if (!root)
    goto nomem;
  if (metadata && metadata[0])
    {
      json_t *meta = json_object ();
      if (!meta || json_object_set_new (root, "__metadata__", meta) != 0)
        goto nomem;
      for (int i = 0; metadata[i]; i += 2)
        {
          if (!metadata[i + 1])
            {
              ds_error_set (err, DS_ERR_INVALID, "%s: metadata key '%s' has no value", path,
                            metadata[i]);
              goto fail;
            }
          if (json_object_get (meta, metadata[i]))
            {
              ds_error_set (err, DS_ERR_INVALID, "%s: metadata key '%s' given twice", path,
                            metadata[i]);
              goto fail;
            }
          if (json_object_set_new (meta, metadata[i], json_string (metadata[i + 1])))
            {
              ds_error_set (err, DS_ERR_INVALID,
                            "%s: metadata key '%s' or its value is not valid UTF-8", path,
                            metadata[i]);
              goto fail;
            }
        }
    }

  uint64_t offset = 0;
  for (int i = 0; i < n_items; i++)
    {
      const char *name = items[i].name;
      const DsTensor *t = items[i].tensor;
      assert (name && t);
      if (strcmp (name, "__metadata__") == 0 || json_object_get (root, name))
        {
          ds_error_set (err, DS_ERR_INVALID, "%s: tensor name '%s' is reserved or given twice",
                        path, name);
          goto fail;
        }
      if (t->device != DS_DEVICE_CPU)
        {
          ds_error_set (err, DS_ERR_INVALID,
                        "%s: tensor '%s' is on %s; only CPU tensors can be written", path, name,
                        ds_device_name (t->device));
          goto fail;
        }
      assert (t->dtype < DS_DTYPE_COUNT && t->ndim >= 0 && t->ndim <= DS_MAX_DIMS);
      size_t nbytes = ds_tensor_nbytes (t);
      assert (t->data || nbytes == 0);
      json_t *shape = json_array ();
      json_t *entry
          = json_pack ("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_names[t->dtype], "shape", shape,
                       "data_offsets", (json_int_t)offset, (json_int_t)(offset + nbytes));
      if (!entry)
        goto nomem;
      if (json_object_set_new (root, name, entry) != 0)
        {
          ds_error_set (err, DS_ERR_INVALID, "%s: tensor name '%s' is not valid UTF-8", path, name);
          goto fail;
        }
      for (int d = 0; d < t->ndim; d++)
        if (json_array_append_new (shape, json_integer (t->shape[d])) != 0)
          goto nomem;
      offset += nbytes;
    }

  text = json_dumps (root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!text)
    goto nomem;
  json_decref (root);
  return text;

nomem:
  ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory building the header", path);
fail:
  json_decref (root);
  return NULL;
}

DsStatus
ds_safetensors_write (const char *path, const DsSafetensorsItem *items, int n_items,
                      const char *const *metadata, DsError *err)
{
  assert (path && (items || n_items == 0) && n_items >= 0);
  char *header = build_header (path, items, n_items, metadata, err);
  if (!header)
    return err ? err->code : DS_ERR_INVALID;

  /* Pad with spaces so that 8 + header length is a multiple of 8. */
  size_t hlen = strlen (header);
  size_t padded = (hlen + 7) & ~(size_t)7;
  char *hbuf = realloc (header, padded);
  if (!hbuf)
    {
      free (header);
      return ds_error_set (err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
  memset (hbuf + hlen, ' ', padded - hlen);
  uint8_t lenbytes[8];
  for (int i = 0; i < 8; i++)
    lenbytes[i] = (uint8_t)((uint64_t)padded >> (8 * i));

  DsAtomicFile af;
  DsStatus s = ds_atomic_open (&af, path, err);
  if (s != DS_OK)
    {
      free (hbuf);
      return s;
    }
  s = write_all (af.f, lenbytes, 8, path, err);
  if (s == DS_OK)
    s = write_all (af.f, hbuf, padded, path, err);
  for (int i = 0; s == DS_OK && i < n_items; i++)
    s = write_all (af.f, items[i].tensor->data, ds_tensor_nbytes (items[i].tensor), path, err);
  free (hbuf);
  return ds_atomic_commit (&af, s, err);
}
