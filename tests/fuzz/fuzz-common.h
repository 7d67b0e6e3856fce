/* fuzz-common.h: what the libFuzzer targets in tests/fuzz share.
 *
 * The engine's parsers mostly take paths, so each target writes its input to
 * files in a scratch folder of its own process ($TMPDIR or /tmp,
 * ds-fuzz-XXXXXX, removed at exit). Targets that need several files take them
 * from one input split at NUL bytes (fuzz_split): none of those files may hold
 * a NUL anyway (JSON, merges.txt and prompts are refused or cut there).
 * Anything the harness itself cannot do (no scratch folder, a failed write)
 * aborts: a harness that silently tests nothing is worse than one that stops.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The engine never needs more parts than this from one input. */
#define FUZZ_MAX_PARTS 4

static char fuzz_dir_path[512];

static inline int
fuzz_rm_entry (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void) sb;
  (void) flag;
  (void) ftw;
  return remove (path);
}

static inline void
fuzz_remove_dir (void)
{
  if (fuzz_dir_path[0])
    nftw (fuzz_dir_path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void
fuzz_die (const char *what, const char *path)
{
  fprintf (stderr, "fuzz harness: %s %s: %s\n", what, path, strerror (errno));
  abort ();
}

/* The scratch folder, made on first use. */
static inline const char *
fuzz_dir (void)
{
  if (!fuzz_dir_path[0])
    {
      const char *tmp = getenv ("TMPDIR");
      snprintf (fuzz_dir_path, sizeof fuzz_dir_path, "%s/ds-fuzz-XXXXXX",
                tmp && *tmp ? tmp : "/tmp");
      if (!mkdtemp (fuzz_dir_path))
        fuzz_die ("cannot make the scratch folder", fuzz_dir_path);
      atexit (fuzz_remove_dir);
    }
  return fuzz_dir_path;
}

/* dir/name into buf (PATH_MAX-sized); returns buf. */
static inline char *
fuzz_path (char *buf, size_t size, const char *name)
{
  snprintf (buf, size, "%s/%s", fuzz_dir (), name);
  return buf;
}

static inline void
fuzz_write (const char *path, const void *data, size_t size)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    fuzz_die ("cannot write", path);
  const char *p = data;
  while (size > 0)
    {
      ssize_t n = write (fd, p, size);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        fuzz_die ("cannot write", path);
      p += n;
      size -= (size_t) n;
    }
  close (fd);
}

/* Splits data at its first max - 1 NUL bytes into NUL-terminated copies
 * parts[0..n) (each free()d by fuzz_free_parts), lens[] their lengths; parts
 * not present are "". The last part keeps any further NULs (lens says where
 * it ends). Returns how many parts the input had. */
static inline int
fuzz_split (const uint8_t *data, size_t size, int max, char **parts, size_t *lens)
{
  int n = 0;
  size_t start = 0;
  for (int k = 0; k < max; k++)
    {
      size_t end = size;
      if (start <= size && k + 1 < max)
        {
          const uint8_t *nul = memchr (data + start, 0, size - start);
          if (nul)
            end = (size_t) (nul - data);
        }
      size_t len = start <= size ? end - start : 0;
      parts[k] = malloc (len + 1);
      if (!parts[k])
        abort ();
      if (len)
        memcpy (parts[k], data + start, len);
      parts[k][len] = '\0';
      lens[k] = len;
      if (start <= size)
        n = k + 1;
      start = end + 1;
    }
  return n;
}

static inline void
fuzz_free_parts (char **parts, int max)
{
  for (int k = 0; k < max; k++)
    free (parts[k]);
}
