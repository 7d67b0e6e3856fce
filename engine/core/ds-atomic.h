/* ds-atomic.h: files that appear whole or not at all.
 *
 * Every output (safetensors, PNG, JSON) is written to "<path>.tmp-XXXXXX" in the
 * same directory, flushed to disk, then renamed over <path>; on any failure the
 * temporary file is removed and <path> is untouched. Files are created 0644.
 *
 * What <path> may be (checked when opening, and again just before the rename):
 *   - absent or a regular file: replaced atomically, as above;
 *   - a symbolic link (also a chain, also a dangling one): the link is followed
 *     and its final target is replaced atomically (the temporary file goes
 *     beside the target), so the link stays a link;
 *   - a FIFO or a character device (/dev/null, /dev/stdout on a pipe,
 *     /dev/full): written through, in place, since replacing it by a regular
 *     file would silently send the output nowhere anyone reads. There is no old
 *     file to keep, so a failure part-way leaves part of the output in the pipe
 *     or device; write errors (ENOSPC on /dev/full, EPIPE) are still reported.
 *   - anything else (a directory, a block device, a socket): refused with
 *     DS_ERR_IO naming the path and what it is; nothing is written.
 *
 *   DsAtomicFile af;
 *   if (ds_atomic_open (&af, path, err)) return ...;
 *   DsStatus st = write_things (af.f, ...);
 *   return ds_atomic_commit (&af, st, err);   // renames only when st == DS_OK
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include "ds-error.h"

typedef struct {
  char path[PATH_MAX];   /* as given, for messages */
  char target[PATH_MAX]; /* the file that is replaced: path with symbolic links followed */
  char tmp[PATH_MAX];    /* the temporary file; "" when writing through */
  bool through;          /* a FIFO or character device, written in place */
  FILE *f;               /* open for binary writing until commit */
} DsAtomicFile;

DsStatus ds_atomic_open (DsAtomicFile *af, const char *path, DsError *err);
/* Finishes the file: with status DS_OK flush, fsync, close and rename (errors
 * become DS_ERR_IO naming the path); otherwise close and remove the temporary
 * file. Returns the final status (status itself when it was not DS_OK). */
DsStatus ds_atomic_commit (DsAtomicFile *af, DsStatus status, DsError *err);

/* What the file type in a st_mode is, for messages: "a directory", "a FIFO",
 * "a character device", "a block device", "a socket", "a symbolic link",
 * "a regular file". */
const char *ds_file_kind (unsigned mode);
