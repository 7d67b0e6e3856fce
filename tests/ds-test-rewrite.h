/* ds-test-rewrite.h: an edited copy of a safetensors file, for the tests that
 * check what loading a changed weights file does (a tensor missing, one of
 * the wrong shape, the other naming convention). */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-safetensors.h"

/* What every rewrite can do to a tensor; a test adds its own renaming. */
typedef struct {
  const char *drop;   /* leave this tensor out */
  const char *shrink; /* halve this tensor's first dimension */
} DsTestEdit;

/* Called once per tensor of the source, in file order, after `drop` and
 * `shrink`: may change t's ndim and shape (the data stays the source's) and
 * its name (a 256-byte buffer holding the source's name). */
typedef void (*DsTestRename) (void *user, DsTensor *t, char *name);

/* Writes a copy of src to dst with `e` applied, `rename` (may be NULL) called
 * on each kept tensor, and the n_extra items of `extra` appended; false, with
 * the reason on stderr, on failure. */
static inline bool
ds_test_rewrite (const char *src, const char *dst, const DsTestEdit *e, DsTestRename rename,
                 void *user, const DsSafetensorsItem *extra, int n_extra)
{
  DsError err = { 0 };
  DsSafetensors *st;
  if (ds_safetensors_open (src, &st, &err) != DS_OK)
    {
      fprintf (stderr, "%s\n", err.message);
      return false;
    }
  const int n = ds_safetensors_count (st), cap = n + n_extra;
  DsSafetensorsItem *items = calloc ((size_t) cap + 1, sizeof *items);
  DsTensor *tensors = calloc ((size_t) cap + 1, sizeof *tensors);
  char (*names)[256] = calloc ((size_t) cap + 1, sizeof *names);
  int m = 0;
  for (int i = 0; i < n; i++)
    {
      const DsSafetensorsEntry *en = ds_safetensors_entry (st, i);
      if (e->drop && strcmp (en->name, e->drop) == 0)
        continue;
      DsTensor *t = &tensors[m];
      *t = ds_tensor_make (en->dtype, en->ndim, en->shape);
      t->data = (void *) en->data;
      if (e->shrink && strcmp (en->name, e->shrink) == 0)
        t->shape[0] /= 2;
      snprintf (names[m], sizeof names[m], "%s", en->name);
      if (rename)
        rename (user, t, names[m]);
      items[m].name = names[m];
      items[m].tensor = t;
      m++;
    }
  for (int i = 0; i < n_extra; i++)
    items[m++] = extra[i];
  DsStatus s = ds_safetensors_write (dst, items, m, NULL, &err);
  if (s != DS_OK)
    fprintf (stderr, "%s\n", err.message);
  ds_safetensors_close (st);
  free (items);
  free (tensors);
  free (names);
  return s == DS_OK;
}
