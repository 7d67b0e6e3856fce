/* ds-util.h: two small helpers the engine's layers share: a monotonic clock
 * for per-stage timings and the FNV-1a hash behind cache keys and seeded
 * weight names. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Milliseconds on CLOCK_MONOTONIC (differences only). */
double ds_now_ms (void);

#define DS_FNV1A_OFFSET 0xcbf29ce484222325ull

/* 64-bit FNV-1a of n bytes, continuing from h (DS_FNV1A_OFFSET to start). */
uint64_t ds_fnv1a (uint64_t h, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
