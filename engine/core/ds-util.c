/* ds-util.c: see ds-util.h. */
#include "ds-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

double
ds_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

uint64_t
ds_fnv1a (uint64_t h, const void *data, size_t n)
{
  const uint8_t *b = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

char *
ds_path_join (const char *dir, const char *name)
{
  size_t n = strlen (dir) + strlen (name) + 2;
  char *p = malloc (n);
  if (p)
    snprintf (p, n, "%s/%s", dir, name);
  return p;
}

bool
ds_path_exists (const char *path)
{
  struct stat sb;
  return stat (path, &sb) == 0;
}

uint64_t
ds_hash_bytes (const char *s, size_t n)
{
  uint64_t h = ds_fnv1a (DS_FNV1A_OFFSET, s, n);
  return h ^ (h >> 29);
}

uint64_t
ds_hash_mix64 (uint64_t key)
{
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  key *= 0xc4ceb9fe1a85ec53ull;
  return key ^ (key >> 33);
}

size_t
ds_pow2_at_least (size_t n)
{
  size_t p = 64;
  while (p < n)
    p *= 2;
  return p;
}
