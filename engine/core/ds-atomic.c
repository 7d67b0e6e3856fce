/* ds-atomic.c: see ds-atomic.h. */
#include "ds-atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Links followed at most, as the kernel's own limit (ELOOP). */
#define MAX_LINKS 40

const char *
ds_file_kind (unsigned mode)
{
  if (S_ISREG (mode))
    return "a regular file";
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISFIFO (mode))
    return "a FIFO";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
  if (S_ISSOCK (mode))
    return "a socket";
  if (S_ISLNK (mode))
    return "a symbolic link";
  return "not a regular file";
}

/* af->target := path with every symbolic link followed (the last one may
 * dangle: then the target is the missing file it names); *sb its lstat, or
 * *exists false. */
static DsStatus
resolve_target (DsAtomicFile *af, struct stat *sb, bool *exists, DsError *err)
{
  char cur[PATH_MAX];
  snprintf (cur, sizeof cur, "%s", af->path);
  for (int hops = 0;; hops++)
    {
      if (lstat (cur, sb) != 0)
        {
          if (errno != ENOENT)
            return ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                                 strerror (errno));
          *exists = false;
          break;
        }
      *exists = true;
      if (!S_ISLNK (sb->st_mode))
        break;
      if (hops == MAX_LINKS)
        return ds_error_set (err, DS_ERR_IO, "%s: cannot write: more than %d symbolic links",
                             af->path, MAX_LINKS);
      char link[PATH_MAX];
      ssize_t n = readlink (cur, link, sizeof link - 1);
      if (n < 0)
        return ds_error_set (err, DS_ERR_IO, "%s: cannot read the symbolic link %s: %s",
                             af->path, cur, strerror (errno));
      link[n] = '\0';
      char next[PATH_MAX];
      const char *slash = strrchr (cur, '/');
      int len = link[0] == '/' || !slash
                  ? snprintf (next, sizeof next, "%s", link)
                  : snprintf (next, sizeof next, "%.*s/%s", (int) (slash - cur), cur, link);
      if (len < 0 || (size_t) len >= sizeof next)
        return ds_error_set (err, DS_ERR_INVALID, "%s: path too long", af->path);
      memcpy (cur, next, (size_t) len + 1);
    }
  snprintf (af->target, sizeof af->target, "%s", cur);
  return DS_OK;
}

/* The message for a target that is neither absent, a regular file, a FIFO nor
 * a character device. */
static DsStatus
refuse (const DsAtomicFile *af, unsigned mode, DsError *err)
{
  if (strcmp (af->path, af->target) != 0)
    return ds_error_set (err, DS_ERR_IO, "%s: is a link to %s, which is %s; refusing to write "
                         "over it (give a file name)", af->path, af->target, ds_file_kind (mode));
  return ds_error_set (err, DS_ERR_IO, "%s: is %s; refusing to write over it (give a file name)",
                       af->path, ds_file_kind (mode));
}

static DsStatus
open_through (DsAtomicFile *af, DsError *err)
{
  int fd = open (af->target, O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot open for writing: %s", af->path,
                         strerror (errno));
  struct stat sb;
  if (fstat (fd, &sb) != 0 || !(S_ISFIFO (sb.st_mode) || S_ISCHR (sb.st_mode)))
    {
      /* replaced between the lstat and the open */
      close (fd);
      return ds_error_set (err, DS_ERR_IO, "%s: changed while being opened", af->path);
    }
  af->through = true;
  af->tmp[0] = '\0';
  af->f = fdopen (fd, "wb");
  if (!af->f)
    {
      DsStatus st = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                                  strerror (errno));
      close (fd);
      return st;
    }
  return DS_OK;
}

DsStatus
ds_atomic_open (DsAtomicFile *af, const char *path, DsError *err)
{
  memset (af, 0, sizeof *af);
  if ((size_t) snprintf (af->path, sizeof af->path, "%s", path) >= sizeof af->path)
    return ds_error_set (err, DS_ERR_INVALID, "%s: path too long", path);
  struct stat sb;
  bool exists;
  DsStatus st = resolve_target (af, &sb, &exists, err);
  if (st)
    return st;
  if (exists && (S_ISFIFO (sb.st_mode) || S_ISCHR (sb.st_mode)))
    return open_through (af, err);
  if (exists && !S_ISREG (sb.st_mode))
    return refuse (af, sb.st_mode, err);
  if ((size_t) snprintf (af->tmp, sizeof af->tmp, "%s.tmp-XXXXXX", af->target) >= sizeof af->tmp)
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
      st = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", path, strerror (errno));
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
  errno = 0;
  /* fsync means nothing on a pipe or a device (EINVAL); the flush still
   * reports ENOSPC, EPIPE and the like */
  if (status == DS_OK
      && (fflush (af->f) != 0 || (!af->through && fsync (fileno (af->f)) != 0)))
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                           strerror (errno ? errno : EIO));
  errno = 0;
  if (fclose (af->f) != 0 && status == DS_OK)
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", af->path,
                           strerror (errno ? errno : EIO));
  af->f = NULL;
  if (af->through)
    return status;
  if (status == DS_OK)
    {
      /* the target may have been replaced by something else meanwhile */
      struct stat sb;
      if (lstat (af->target, &sb) == 0 && !S_ISREG (sb.st_mode))
        status = refuse (af, sb.st_mode, err);
    }
  if (status == DS_OK && rename (af->tmp, af->target) != 0)
    status = ds_error_set (err, DS_ERR_IO, "%s: cannot put the file in place: %s", af->path,
                           strerror (errno));
  if (status != DS_OK)
    unlink (af->tmp);
  return status;
}
