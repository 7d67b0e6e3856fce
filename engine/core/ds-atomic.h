/* ds-atomic.h: files that appear whole or not at all.
 *
 * Every output (safetensors, PNG, JSON) is written to "<path>.tmp-XXXXXX" in the
 * same directory, flushed to disk, then renamed over <path>; on any failure the
 * temporary file is removed and <path> is untouched. Files are created 0644.
 *
 *   DsAtomicFile af;
 *   if (ds_atomic_open (&af, path, err)) return ...;
 *   DsStatus st = write_things (af.f, ...);
 *   return ds_atomic_commit (&af, st, err);   // renames only when st == DS_OK
 */
#pragma once

#include <limits.h>
#include <stdio.h>

#include "ds-error.h"

typedef struct {
  char path[PATH_MAX];
  char tmp[PATH_MAX];
  FILE *f; /* open for binary writing until commit */
} DsAtomicFile;

DsStatus ds_atomic_open (DsAtomicFile *af, const char *path, DsError *err);
/* Finishes the file: with status DS_OK flush, fsync, close and rename (errors
 * become DS_ERR_IO naming the path); otherwise close and remove the temporary
 * file. Returns the final status (status itself when it was not DS_OK). */
DsStatus ds_atomic_commit (DsAtomicFile *af, DsStatus status, DsError *err);
