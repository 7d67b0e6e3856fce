/* ds-atomic.c: see ds-atomic.h. */
#include "ds-atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

DsStatus
ds_atomic_open (DsAtomicFile *af, const char *path, DsError *err)
{
  memset (af, 0, sizeof *af);
  if ((size_t) snprintf (af->path, sizeof af->path, "%s", path) >= sizeof af->path
      || (size_t) snprintf (af->tmp, sizeof af->tmp, "%s.tmp-XXXXXX", path) >= sizeof af->tmp)
    return ds_error_set (err, DS_ERR_INVALID, "%s: path too long", path);
  int fd = mkostemp (af->tmp, O_CLOEXEC);
  if (fd < 0)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot create %s: %s", path, af->tmp,
                         strerror (errno));
  /* mkstemp makes the file private; outputs are ordinary files. */
  (void) fchmod (fd, 0644);
  af->f = fdopen (fd, "wb");
  if (!af->f)
    {
      DsStatus st = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", path, strerror (errno));
      close (fd);
      unlink (af->tmp);
      return st;
    }
  return DS_OK;
}

DsStatus
ds_atomic_commit (DsAtomicFile *af, DsStatus status, DsError *err)
{
  if (!af->f)
    return status ? status : ds_error_set (err, DS_ERR_INVALID, "%s: not open", af->path);
  if (status == DS_OK && (fflush (af->f) != 0 || fsync (fileno (af->f)) != 0))
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                           strerror (errno ? errno : EIO));
  errno = 0;
  if (fclose (af->f) != 0 && status == DS_OK)
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                           strerror (errno ? errno : EIO));
  af->f = NULL;
  if (status == DS_OK && rename (af->tmp, af->path) != 0)
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot put the file in place: %s", af->path,
                           strerror (errno));
  if (status != DS_OK)
    unlink (af->tmp);
  return status;
}
