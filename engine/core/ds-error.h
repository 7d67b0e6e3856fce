/* ds-error.h: the engine's error convention.
 *
 * Every engine function that can fail because of user input (a file, a config,
 * a prompt, a device) returns a DsStatus and, when it fails, fills the DsError
 * passed as its last argument with a message naming the file, tensor or field at
 * fault and what was expected. `err` may be NULL when the caller does not care.
 * Programmer errors (a NULL where the API forbids it, mismatched shapes between
 * engine-built tensors) are assertions, not DsErrors. The engine never exits.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  DS_OK = 0,
  DS_ERR_IO,          /* a file could not be opened, read, mapped or written */
  DS_ERR_FORMAT,      /* a file's contents are malformed or inconsistent */
  DS_ERR_INVALID,     /* an argument or value is out of range */
  DS_ERR_UNSUPPORTED, /* well-formed but not something the engine handles */
  DS_ERR_NOT_FOUND,   /* a named tensor, file, probe or field is missing */
  DS_ERR_NOMEM,       /* host memory exhausted */
  DS_ERR_DEVICE,      /* a GPU error, including out of device memory */
  DS_ERR_CANCELLED,   /* the caller asked the work to stop */
  DS_STATUS_COUNT
} DsStatus;

typedef struct {
  DsStatus code;
  char message[1024];
} DsError;

/* Fills `err` (if not NULL) and returns `code`, so a failing function can say
 * `return ds_error_set (err, DS_ERR_FORMAT, "%s: ...", path);`. */
DsStatus ds_error_set (DsError *err, DsStatus code, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* Prepends "prefix: " to an error already set, to add context as it travels
 * up, and returns `code` (the failing status), also when err is NULL. */
DsStatus ds_error_prefix (DsError *err, DsStatus code, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

void ds_error_clear (DsError *err);

/* "io", "format", ... for messages and tests. */
const char *ds_status_name (DsStatus code);

#ifdef __cplusplus
}
#endif
