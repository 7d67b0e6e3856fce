/* ds-util.h: small helpers the engine's layers share: a monotonic clock for
 * per-stage timings, the FNV-1a hash behind cache keys and seeded weight
 * names, and two path helpers for model folders. */
#pragma once

#include <stdbool.h>
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

/* Hash-table helpers shared by the tokenizers' interned symbols:
 * ds_fnv1a from the offset with a final xor-shift, a 64-bit finaliser
 * (MurmurHash3's fmix64) for integer keys, and the power of two (>= 64)
 * a table of n entries takes. */
uint64_t ds_hash_bytes (const char *s, size_t n);
uint64_t ds_hash_mix64 (uint64_t key);
size_t ds_pow2_at_least (size_t n);

/* "dir/name", malloc'ed (transfer full); NULL when out of memory. */
char *ds_path_join (const char *dir, const char *name);
/* Something exists at path (any kind of file). */
bool ds_path_exists (const char *path);

#ifdef __cplusplus
}
#endif
