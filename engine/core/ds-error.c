/* ds-error.c: see ds-error.h. */
#include "ds-error.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
  [DS_OK] = "ok",
  [DS_ERR_IO] = "io",
  [DS_ERR_FORMAT] = "format",
  [DS_ERR_INVALID] = "invalid",
  [DS_ERR_UNSUPPORTED] = "unsupported",
  [DS_ERR_NOT_FOUND] = "not-found",
  [DS_ERR_NOMEM] = "out-of-memory",
  [DS_ERR_DEVICE] = "device",
  [DS_ERR_CANCELLED] = "cancelled",
};
_Static_assert (sizeof status_names / sizeof status_names[0] == DS_STATUS_COUNT,
                "one name per DsStatus");

DsStatus
ds_error_set (DsError *err, DsStatus code, const char *fmt, ...)
{
  if (err)
    {
      va_list ap;
      err->code = code;
      va_start (ap, fmt);
      vsnprintf (err->message, sizeof err->message, fmt, ap);
      va_end (ap);
    }
  return code;
}

DsStatus
ds_error_prefix (DsError *err, DsStatus code, const char *fmt, ...)
{
  if (!err)
    return code;
  char prefix[512];
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (prefix, sizeof prefix - 2, fmt, ap);
  va_end (ap);
  if (n < 0)
    return code;
  size_t plen = strlen (prefix);
  memcpy (prefix + plen, ": ", 3);
  plen += 2;
  /* Shift the old message right and put the prefix in front; the tail may be cut. */
  size_t cap = sizeof err->message - 1;
  size_t old = strnlen (err->message, cap);
  size_t keep = old + plen <= cap ? old : (cap > plen ? cap - plen : 0);
  if (plen > cap)
    plen = cap;
  memmove (err->message + plen, err->message, keep);
  memcpy (err->message, prefix, plen);
  err->message[plen + keep] = '\0';
  return code;
}

void
ds_error_clear (DsError *err)
{
  if (err)
    {
      err->code = DS_OK;
      err->message[0] = '\0';
    }
}

const char *
ds_status_name (DsStatus code)
{
  if ((int) code < 0 || code >= DS_STATUS_COUNT)
    return "unknown";
  return status_names[code];
}
