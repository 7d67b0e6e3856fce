/* ds-device.h: the backend a user's device choice names, for the CLI and the
 * explorer alike.
 *
 *   device "cpu"  : the CPU backend (f32; another precision is an error)
 *   device "cuda" : the CUDA backend on the first GPU, or an error
 *   device "auto" (or NULL/""): CUDA when a GPU answers, else the CPU, with a
 *                   note saying why (a CUDA build that finds no GPU)
 * precision "f16" (default on CUDA), "bf16" or "f32".
 *
 * A CUDA backend belongs to the thread that opened it: open it on the thread
 * that will run the models (the explorer's worker).
 */
#pragma once

#include <stddef.h>

#include "ds-ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* transfer full (ds_backend_free); NULL with err set. note (may be NULL)
 * receives "" or why auto fell back to the CPU. */
DsBackend *ds_device_open (const char *device, const char *precision, char *note,
                           size_t note_size, DsError *err);

#ifdef __cplusplus
}
#endif
