/* test-safetensors.c: the .safetensors reader's validation and the writer.
 *
 * Hostile files are built byte by byte in a scratch directory, one per check the
 * reader promises; each must fail with the right status and a message naming the
 * tensor/field at fault. Then: decoding of every dtype (f16/bf16 bit patterns
 * with known IEEE values), unaligned data, a write -> read round trip with
 * metadata, writer errors, and a file written by Python's safetensors library
 * (tests/reference/gen_safetensors_fixture.py).
 */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds-safetensors.h"
#include "ds-test.h"

static char scratch[256];

static char *
scratch_path (const char *name)
{
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  snprintf (p, 512, "%s/%s", scratch, name);
  return p;
}

/* Writes an 8-byte little-endian `len_field`, then `body` (n bytes). */
static char *
write_raw (const char *name, uint64_t len_field, const void *body, size_t n)
{
  char *path = scratch_path (name);
  FILE *f = fopen (path, "wb");
  if (!f)
    {
      fprintf (stderr, "cannot write %s: %s\n", path, strerror (errno));
      exit (1);
    }
  uint8_t le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (uint8_t)(len_field >> (8 * i));
  fwrite (le, 1, 8, f);
  if (n)
    fwrite (body, 1, n, f);
  fclose (f);
  return path;
}

/* A file with header `json` followed by `data_len` bytes of `data` (or zeros). */
static char *
write_st (const char *name, const char *json, const void *data, size_t data_len)
{
  size_t hl = strlen (json);
  uint8_t *body = calloc (1, hl + data_len + 1);
  memcpy (body, json, hl);
  if (data)
    memcpy (body + hl, data, data_len);
  char *p = write_raw (name, hl, body, hl + data_len);
  free (body);
  return p;
}

/* Opens `path` expecting failure with `code` and a message containing each of
 * the NULL-terminated needles. */
static void
expect_fail (const char *path, DsStatus code, const char *needle1, const char *needle2)
{
  DsSafetensors *st = (DsSafetensors *)0x1;
  DsError err = { 0 };
  DsStatus s = ds_safetensors_open (path, &st, &err);
  DS_CHECK_STATUS (s, code, &err);
  DS_CHECK (st == NULL, "out pointer must be NULL on failure (%s)", path);
  DS_CHECK_CONTAINS (err.message, path);
  if (needle1)
    DS_CHECK_CONTAINS (err.message, needle1);
  if (needle2)
    DS_CHECK_CONTAINS (err.message, needle2);
  if (s == DS_OK)
    ds_safetensors_close (st);
}

static void
test_hostile_files (void)
{
  /* shorter than the length field */
  {
    char *p = scratch_path ("short.st");
    FILE *f = fopen (p, "wb");
    fwrite ("\x02\0\0\0\0", 1, 5, f);
    fclose (f);
    expect_fail (p, DS_ERR_FORMAT, "5 bytes", "8-byte");
    f = fopen (p, "wb");
    fclose (f);
    expect_fail (p, DS_ERR_FORMAT, "0 bytes", "8-byte");
  }

  /* header length 0, 1, huge, past the end */
  expect_fail (write_raw ("len0.st", 0, "{}", 2), DS_ERR_FORMAT, "header length 0", NULL);
  expect_fail (write_raw ("len1.st", 1, "{}", 2), DS_ERR_FORMAT, "header length 1", NULL);
  expect_fail (write_raw ("lenhuge.st", (uint64_t)DS_SAFETENSORS_MAX_HEADER + 1, "{}", 2),
               DS_ERR_FORMAT, "100000001", "limit");
  expect_fail (write_raw ("lenmax.st", UINT64_MAX, "{}", 2), DS_ERR_FORMAT, "18446744073709551615",
               "limit");
  expect_fail (write_raw ("lenpast.st", 100, "{}        ", 10), DS_ERR_FORMAT, "header length 100",
               "past the end");

  /* header not JSON, not an object */
  expect_fail (write_st ("badjson.st", "{\"a\": {\"dtype\": ", NULL, 0), DS_ERR_FORMAT,
               "not valid JSON", NULL);
  expect_fail (write_st ("array.st", "[1, 2]", NULL, 0), DS_ERR_FORMAT, "expected a JSON object",
               NULL);
  expect_fail (write_raw ("nulbyte.st", 8, "{\"a\":\"\0\"}", 8), DS_ERR_FORMAT, "not valid JSON",
               NULL);

  /* entry not an object */
  expect_fail (write_st ("entry.st", "{\"w\": 5}", NULL, 0), DS_ERR_FORMAT, "'w'",
               "expected an object");

  /* dtype: missing, wrong type, unsupported */
  expect_fail (
      write_st ("nodtype.st", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", NULL, 4),
      DS_ERR_FORMAT, "'w'", "missing \"dtype\"");
  expect_fail (write_st ("dtypeint.st",
                         "{\"w\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", NULL,
                         4),
               DS_ERR_FORMAT, "'w'", "\"dtype\" is an integer");
  static const char *const unsupported[] = { "F64", "I8", "U8", "BOOL", "F8_E4M3", "f32" };
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
    {
      char json[160];
      snprintf (json, sizeof json,
                "{\"w\": {\"dtype\": \"%s\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
                unsupported[i]);
      char quoted[32];
      snprintf (quoted, sizeof quoted, "'%s'", unsupported[i]);
      expect_fail (write_st ("dtype.st", json, NULL, 8), DS_ERR_UNSUPPORTED, quoted, "'w'");
    }

  /* shape: missing, not an array, negative, non-integer, too many dims */
  expect_fail (
      write_st ("noshape.st", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", NULL, 4),
      DS_ERR_FORMAT, "'w'", "missing \"shape\"");
  expect_fail (write_st ("shapestr.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": \"2x2\", "
                         "\"data_offsets\": [0, 16]}}",
                         NULL, 16),
               DS_ERR_FORMAT, "'w'", "\"shape\" is a string");
  expect_fail (write_st ("shapeneg.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -2], "
                         "\"data_offsets\": [0, 16]}}",
                         NULL, 16),
               DS_ERR_FORMAT, "'w'", "\"shape\"[1] is negative");
  expect_fail (write_st ("shapereal.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], "
                         "\"data_offsets\": [0, 10]}}",
                         NULL, 10),
               DS_ERR_FORMAT, "'w'", "\"shape\"[0] is a real number");
  expect_fail (write_st ("shape5.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1], "
                         "\"data_offsets\": [0, 4]}}",
                         NULL, 4),
               DS_ERR_UNSUPPORTED, "'w'", "5 dimensions");

  /* numel x size overflow: 2^32 * 2^32 wraps to 0 == 0 bytes held */
  expect_fail (write_st ("ovf.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, "
                         "4294967296], \"data_offsets\": [0, 0]}}",
                         NULL, 0),
               DS_ERR_FORMAT, "'w'", "overflows");
  expect_fail (write_st ("ovf2.st",
                         "{\"w\": {\"dtype\": \"I64\", \"shape\": [2305843009213693952], "
                         "\"data_offsets\": [0, 0]}}",
                         NULL, 0),
               DS_ERR_FORMAT, "'w'", "overflows");

  /* data_offsets: missing, wrong arity, wrong type, reversed, negative, past end */
  expect_fail (write_st ("nooff.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", NULL, 4),
               DS_ERR_FORMAT, "'w'", "missing \"data_offsets\"");
  expect_fail (write_st ("off3.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [0, 4, 8]}}",
                         NULL, 8),
               DS_ERR_FORMAT, "'w'", "two integers");
  expect_fail (write_st ("offstr.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [\"0\", \"4\"]}}",
                         NULL, 4),
               DS_ERR_FORMAT, "'w'", "two integers");
  expect_fail (write_st ("offrev.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [8, 4]}}",
                         NULL, 8),
               DS_ERR_FORMAT, "'w'", "[8, 4]");
  expect_fail (write_st ("offneg.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [-4, 0]}}",
                         NULL, 8),
               DS_ERR_FORMAT, "'w'", "[-4, 0]");
  expect_fail (write_st ("offpast.st",
                         "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], "
                         "\"data_offsets\": [0, 16]}}",
                         NULL, 12),
               DS_ERR_FORMAT, "'w'", "beyond the data section of 12 bytes");

  /* byte count does not match the shape */
  expect_fail (write_st ("count.st",
                         "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [320, 4, "
                         "3, 3], \"data_offsets\": [0, 100]}}",
                         NULL, 100),
               DS_ERR_FORMAT, "'conv_in.weight'",
               "hold 100 bytes but shape [320, 4, 3, 3] of F32 needs 46080");
  expect_fail (write_st ("count16.st",
                         "{\"b\": {\"dtype\": \"BF16\", \"shape\": [3], "
                         "\"data_offsets\": [0, 4]}}",
                         NULL, 4),
               DS_ERR_FORMAT, "'b'", "of BF16 needs 6");

  /* overlapping tensors (listed out of order to exercise the sort) */
  expect_fail (write_st ("overlap.st",
                         "{\"late\": {\"dtype\": \"F32\", \"shape\": [4], "
                         "\"data_offsets\": [8, 24]}, \"early\": {\"dtype\": \"F32\", "
                         "\"shape\": [4], \"data_offsets\": [0, 16]}}",
                         NULL, 24),
               DS_ERR_FORMAT, "'late'", "overlap tensor 'early'");
  expect_fail (write_st ("same.st",
                         "{\"a\": {\"dtype\": \"I32\", \"shape\": [2], "
                         "\"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", "
                         "\"shape\": [2], \"data_offsets\": [0, 8]}}",
                         NULL, 8),
               DS_ERR_FORMAT, "overlap", "'a'");

  /* __metadata__ */
  expect_fail (write_st ("meta1.st", "{\"__metadata__\": [\"pt\"]}", NULL, 0), DS_ERR_FORMAT,
               "__metadata__", "expected an object of strings");
  expect_fail (
      write_st ("meta2.st", "{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", NULL, 0),
      DS_ERR_FORMAT, "'step'", "expected a string");

  /* not openable */
  expect_fail (scratch_path ("does-not-exist.safetensors"), DS_ERR_IO, "cannot open", NULL);
  expect_fail (scratch, DS_ERR_IO, "is a directory, not a safetensors file", NULL);
}

static void
test_lenient_but_valid (void)
{
  DsError err = { 0 };
  DsSafetensors *st;

  /* "{}" with the smallest legal header length: no tensors */
  char *p = write_raw ("min.st", 2, "{}", 2);
  DS_CHECK_OK (ds_safetensors_open (p, &st, &err), &err);
  if (st)
    {
      DS_CHECK (ds_safetensors_count (st) == 0, "count %d", ds_safetensors_count (st));
      DS_CHECK (ds_safetensors_find (st, "x") == NULL, "find in empty file");
      DS_CHECK (ds_safetensors_metadata (st, "format") == NULL, "no metadata");
      DS_CHECK (strcmp (ds_safetensors_path (st), p) == 0, "path %s", ds_safetensors_path (st));
      ds_safetensors_close (st);
    }

  /* Unaligned data section (header of odd length), trailing bytes not covered by
   * any tensor, an empty tensor inside another's range, adjacent ranges. */
  const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                     "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]}}";
  DS_CHECK (strlen (json) % 2 == 1, "header length should be odd, is %zu", strlen (json));
  uint8_t data[13] = { 0 };
  float a[2] = { 0.75f, -12.5f };
  memcpy (data, a, 8);
  data[8] = 0x00, data[9] = 0x3c; /* f16 1.0 */
  data[10] = data[11] = data[12] = 0xAB;
  p = write_st ("unaligned.st", json, data, sizeof data);
  DS_CHECK_OK (ds_safetensors_open (p, &st, &err), &err);
  if (st)
    {
      DS_CHECK (ds_safetensors_count (st) == 3, "count %d", ds_safetensors_count (st));
      DS_CHECK (((uintptr_t)ds_safetensors_find (st, "a")->data & 3) != 0,
                "data of 'a' should be unaligned for this test");
      DsTensor t;
      DS_CHECK_OK (ds_safetensors_load_f32 (st, "a", 1, (int64_t[]){ 2 }, &t, &err), &err);
      if (t.data)
        DS_CHECK (ds_tensor_f32 (&t)[0] == 0.75f && ds_tensor_f32 (&t)[1] == -12.5f, "a = %g %g",
                  ds_tensor_f32 (&t)[0], ds_tensor_f32 (&t)[1]);
      ds_tensor_free (&t);
      DS_CHECK_OK (ds_safetensors_load_f32 (st, "b", 0, NULL, &t, &err), &err);
      if (t.data)
        DS_CHECK (ds_tensor_f32 (&t)[0] == 1.0f, "b = %g", ds_tensor_f32 (&t)[0]);
      ds_tensor_free (&t);
      const DsSafetensorsEntry *z = ds_safetensors_find (st, "z");
      DS_CHECK (z && z->nbytes == 0 && z->ndim == 1 && z->shape[0] == 0, "empty z");
      ds_safetensors_close (st);
    }
}

/* Known IEEE bit patterns -> values (not derived from the engine's converters). */
static void
test_dtype_decoding (void)
{
  static const uint16_t f16_bits[]
      = { 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x3555, 0x0400, 0x7C00, 0xFC00, 0x3BFF };
  const float f16_vals[] = { 1.0f,        -2.0f,    65504.0f, 0x1p-24f,  -0.0f,
                             0x1.554p-2f, 0x1p-14f, INFINITY, -INFINITY, 0x1.ffcp-1f };
  enum
  {
    NF16 = sizeof f16_bits / sizeof f16_bits[0]
  };
  static const uint16_t bf16_bits[] = { 0x3F80, 0xC040, 0x7180, 0x3C00, 0x0001 };
  const float bf16_vals[] = { 1.0f, -3.0f, 0x1p100f, 0x1p-7f, 0x1p-133f };
  static const int32_t i32_vals[] = { 0, -1, 2147483647, -16777216 };
  static const int64_t i64_vals[] = { 49407, -7, 1LL << 40 };

  uint8_t data[64 + 64] = { 0 };
  size_t o = 0;
  memcpy (data + o, f16_bits, sizeof f16_bits), o += sizeof f16_bits;    /* 20 */
  memcpy (data + o, bf16_bits, sizeof bf16_bits), o += sizeof bf16_bits; /* 10 */
  memcpy (data + o, i32_vals, sizeof i32_vals), o += sizeof i32_vals;    /* 16 */
  memcpy (data + o, i64_vals, sizeof i64_vals), o += sizeof i64_vals;    /* 24 */
  const char *json = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,5],\"data_offsets\":[0,20]},"
                     "\"b\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[20,30]},"
                     "\"i\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[30,46]},"
                     "\"l\":{\"dtype\":\"I64\",\"shape\":[3,1],\"data_offsets\":[46,70]}}";
  char *p = write_st ("dtypes.st", json, data, o);
  DsError err = { 0 };
  DsSafetensors *st;
  DS_CHECK_OK (ds_safetensors_open (p, &st, &err), &err);
  if (!st)
    return;
  DsTensor t;
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "h", 2, (int64_t[]){ 2, 5 }, &t, &err), &err);
  DS_CHECK (t.dtype == DS_DTYPE_F32 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 5 && t.owned,
            "f16 result header");
  for (int i = 0; t.data && i < NF16; i++)
    DS_CHECK (memcmp (&ds_tensor_f32 (&t)[i], &f16_vals[i], 4) == 0,
              "f16 0x%04x -> %a, expected %a", f16_bits[i], ds_tensor_f32 (&t)[i], f16_vals[i]);
  ds_tensor_free (&t);

  DS_CHECK_OK (ds_safetensors_load_f32 (st, "b", 0, NULL, &t, &err), &err);
  for (int i = 0; t.data && i < 5; i++)
    DS_CHECK (ds_tensor_f32 (&t)[i] == bf16_vals[i], "bf16 0x%04x -> %a, expected %a", bf16_bits[i],
              ds_tensor_f32 (&t)[i], bf16_vals[i]);
  ds_tensor_free (&t);

  DS_CHECK_OK (ds_safetensors_load_f32 (st, "i", 1, (int64_t[]){ 4 }, &t, &err), &err);
  for (int i = 0; t.data && i < 4; i++)
    DS_CHECK (ds_tensor_f32 (&t)[i] == (float)i32_vals[i], "i32[%d] -> %g", i,
              ds_tensor_f32 (&t)[i]);
  ds_tensor_free (&t);

  DS_CHECK_OK (ds_safetensors_load_f32 (st, "l", 2, (int64_t[]){ 3, 1 }, &t, &err), &err);
  for (int i = 0; t.data && i < 3; i++)
    DS_CHECK (ds_tensor_f32 (&t)[i] == (float)i64_vals[i], "i64[%d] -> %g", i,
              ds_tensor_f32 (&t)[i]);
  ds_tensor_free (&t);

  /* missing tensor; shape mismatches (dims and rank) */
  DsStatus s = ds_safetensors_load_f32 (st, "up.weight", 0, NULL, &t, &err);
  DS_CHECK_STATUS (s, DS_ERR_NOT_FOUND, &err);
  DS_CHECK_CONTAINS (err.message, "'up.weight'");
  DS_CHECK_CONTAINS (err.message, p);
  DS_CHECK (t.data == NULL, "no data on failure");
  s = ds_safetensors_load_f32 (st, "h", 2, (int64_t[]){ 5, 2 }, &t, &err);
  DS_CHECK_STATUS (s, DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "'h'");
  DS_CHECK_CONTAINS (err.message, "[2, 5]");
  DS_CHECK_CONTAINS (err.message, "[5, 2]");
  DS_CHECK_CONTAINS (err.message, p);
  s = ds_safetensors_load_f32 (st, "l", 1, (int64_t[]){ 3 }, &t, &err);
  DS_CHECK_STATUS (s, DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "[3, 1]");
  DS_CHECK_CONTAINS (err.message, "expected [3]");
  ds_safetensors_close (st);
}

static bool
only_file_in_scratch_subdir (const char *dir, const char *name)
{
  DIR *d = opendir (dir);
  if (!d)
    return false;
  int n = 0;
  bool ok = true;
  struct dirent *de;
  while ((de = readdir (d)))
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      n++;
      if (strcmp (de->d_name, name) != 0)
        {
          fprintf (stderr, "unexpected file left behind: %s/%s\n", dir, de->d_name);
          ok = false;
        }
    }
  closedir (d);
  return ok && n == 1;
}

static void
test_round_trip (void)
{
  DsError err = { 0 };
  DsTensor f32, f16, bf16, i32, i64, scalar, empty;
  DS_CHECK_OK (ds_tensor_alloc (&f32, DS_DTYPE_F32, 3, (int64_t[]){ 2, 3, 1 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&f16, DS_DTYPE_F16, 1, (int64_t[]){ 5 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&bf16, DS_DTYPE_BF16, 2, (int64_t[]){ 1, 3 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&i32, DS_DTYPE_I32, 2, (int64_t[]){ 2, 2 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&i64, DS_DTYPE_I64, 4, (int64_t[]){ 1, 1, 1, 3 }, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&scalar, DS_DTYPE_F32, 0, NULL, &err), &err);
  DS_CHECK_OK (ds_tensor_alloc (&empty, DS_DTYPE_F32, 2, (int64_t[]){ 0, 7 }, &err), &err);
  for (int i = 0; i < 6; i++)
    ds_tensor_f32 (&f32)[i] = (float)i * 0.37f - 1.0f;
  uint16_t h[5] = { 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555 };
  memcpy (f16.data, h, sizeof h);
  uint16_t b[3] = { 0x3F80, 0xC040, 0x7180 };
  memcpy (bf16.data, b, sizeof b);
  int32_t iv[4] = { 1, -2, 3, 2147483647 };
  memcpy (i32.data, iv, sizeof iv);
  int64_t lv[3] = { -1, 1LL << 53, 49407 };
  memcpy (i64.data, lv, sizeof lv);
  ds_tensor_f32 (&scalar)[0] = 42.0f;

  const DsSafetensorsItem items[] = {
    { "z.last.f32", &f32 }, { "half", &f16 },      { "brain", &bf16 },  { "ints", &i32 },
    { "longs", &i64 },      { "scalar", &scalar }, { "empty", &empty },
  };
  enum
  {
    N = sizeof items / sizeof items[0]
  };
  const char *const meta[] = { "format", "pt", "prompt", "a photo of a cat", NULL };

  char dir[512];
  snprintf (dir, sizeof dir, "%s/rt", scratch);
  mkdir (dir, 0700);
  char path[600];
  snprintf (path, sizeof path, "%s/out.safetensors", dir);

  DS_CHECK_OK (ds_safetensors_write (path, items, N, meta, &err), &err);
  DS_CHECK (only_file_in_scratch_subdir (dir, "out.safetensors"),
            "the temporary file must be renamed away");

  /* header length field: a multiple of 8, padded with spaces */
  FILE *f = fopen (path, "rb");
  uint8_t raw[1024];
  size_t got = f ? fread (raw, 1, sizeof raw, f) : 0;
  if (f)
    fclose (f);
  uint64_t hl = 0;
  for (int i = 7; i >= 0 && got >= 8; i--)
    hl = (hl << 8) | raw[i];
  DS_CHECK (hl % 8 == 0 && hl > 2 && hl + 8 <= got, "header length %llu", (unsigned long long)hl);
  if (hl % 8 == 0 && hl + 8 <= got)
    DS_CHECK (raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}',
              "header must end with padding spaces or '}'");

  DsSafetensors *st;
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!st)
    return;
  DS_CHECK (ds_safetensors_count (st) == N, "count %d", ds_safetensors_count (st));
  /* entries come back in item order (offsets are contiguous in that order) */
  for (int i = 0; i < N && i < ds_safetensors_count (st); i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (st, i);
      const DsTensor *t = items[i].tensor;
      DS_CHECK (strcmp (e->name, items[i].name) == 0, "entry %d is '%s', expected '%s'", i, e->name,
                items[i].name);
      DS_CHECK (e->dtype == t->dtype, "'%s' dtype %s", e->name, ds_dtype_name (e->dtype));
      DS_CHECK (e->ndim == t->ndim, "'%s' ndim %d vs %d", e->name, e->ndim, t->ndim);
      for (int d = 0; d < DS_MAX_DIMS; d++)
        DS_CHECK (e->shape[d] == t->shape[d], "'%s' shape[%d] = %lld", e->name, d,
                  (long long)e->shape[d]);
      DS_CHECK (e->nbytes == ds_tensor_nbytes (t), "'%s' nbytes %zu", e->name, e->nbytes);
      DS_CHECK (e->nbytes == 0 || memcmp (e->data, t->data, e->nbytes) == 0, "'%s' bytes differ",
                e->name);
      DS_CHECK (ds_safetensors_find (st, items[i].name) == e, "find '%s'", items[i].name);
    }
  const char *fmt = ds_safetensors_metadata (st, "format");
  const char *prompt = ds_safetensors_metadata (st, "prompt");
  DS_CHECK (fmt && strcmp (fmt, "pt") == 0, "format = %s", fmt ? fmt : "(null)");
  DS_CHECK (prompt && strcmp (prompt, "a photo of a cat") == 0, "prompt = %s",
            prompt ? prompt : "(null)");
  DS_CHECK (ds_safetensors_metadata (st, "missing") == NULL, "absent metadata key");

  /* f16 -> f32 through the reader */
  DsTensor t;
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "half", 1, (int64_t[]){ 5 }, &t, &err), &err);
  const float hv[5] = { 1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1.554p-2f };
  for (int i = 0; t.data && i < 5; i++)
    DS_CHECK (ds_tensor_f32 (&t)[i] == hv[i], "half[%d] = %a, expected %a", i,
              ds_tensor_f32 (&t)[i], hv[i]);
  ds_tensor_free (&t);
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "scalar", 0, (int64_t[]){ 0 }, &t, &err), &err);
  DS_CHECK (t.data && t.ndim == 0 && ds_tensor_f32 (&t)[0] == 42.0f, "scalar");
  ds_tensor_free (&t);
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "empty", 2, (int64_t[]){ 0, 7 }, &t, &err), &err);
  DS_CHECK (ds_tensor_numel (&t) == 0, "empty numel");
  ds_tensor_free (&t);
  ds_safetensors_close (st);

  /* Overwriting replaces the file; no metadata -> no "__metadata__". */
  DS_CHECK_OK (ds_safetensors_write (path, items + 1, 1, NULL, &err), &err);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (st)
    {
      DS_CHECK (ds_safetensors_count (st) == 1, "count after overwrite %d",
                ds_safetensors_count (st));
      DS_CHECK (ds_safetensors_find (st, "half") != NULL, "half after overwrite");
      DS_CHECK (ds_safetensors_metadata (st, "format") == NULL, "metadata gone");
      ds_safetensors_close (st);
    }
  DS_CHECK (only_file_in_scratch_subdir (dir, "out.safetensors"), "no temp files");

  /* zero items is a valid (empty) file */
  DS_CHECK_OK (ds_safetensors_write (path, NULL, 0, NULL, &err), &err);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (st)
    {
      DS_CHECK (ds_safetensors_count (st) == 0, "empty file count");
      ds_safetensors_close (st);
    }

  /* writer errors */
  char bad[600];
  snprintf (bad, sizeof bad, "%s/no-such-dir/out.safetensors", dir);
  DsStatus s = ds_safetensors_write (bad, items, N, NULL, &err);
  DS_CHECK_STATUS (s, DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, bad);
  DS_CHECK_CONTAINS (err.message, strerror (ENOENT));

  const DsSafetensorsItem dup[] = { { "w", &f32 }, { "w", &f16 } };
  s = ds_safetensors_write (path, dup, 2, NULL, &err);
  DS_CHECK_STATUS (s, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "'w'");
  const DsSafetensorsItem reserved[] = { { "__metadata__", &f32 } };
  s = ds_safetensors_write (path, reserved, 1, NULL, &err);
  DS_CHECK_STATUS (s, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "__metadata__");
  const char *const odd_meta[] = { "format", NULL };
  s = ds_safetensors_write (path, items, 1, odd_meta, &err);
  DS_CHECK_STATUS (s, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "'format'");
  /* a failed write leaves the previous file intact and no temp files */
  DS_CHECK (only_file_in_scratch_subdir (dir, "out.safetensors"), "after failures");
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (st)
    ds_safetensors_close (st);

  unlink (path);
  rmdir (dir);
  ds_tensor_free (&f32);
  ds_tensor_free (&f16);
  ds_tensor_free (&bf16);
  ds_tensor_free (&i32);
  ds_tensor_free (&i64);
  ds_tensor_free (&scalar);
  ds_tensor_free (&empty);
}

/* tests/data/safetensors/tiny.safetensors, written by Python's safetensors;
 * the values are those listed in gen_safetensors_fixture.py. */
static void
test_python_fixture (void)
{
  const char *path = DS_TEST_DATA_DIR "/safetensors/tiny.safetensors";
  DsError err = { 0 };
  DsSafetensors *st;
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!st)
    return;
  DS_CHECK (ds_safetensors_count (st) == 7, "count %d", ds_safetensors_count (st));
  const char *fmt = ds_safetensors_metadata (st, "format");
  const char *note = ds_safetensors_metadata (st, "note");
  DS_CHECK (fmt && strcmp (fmt, "pt") == 0, "format");
  DS_CHECK (note && strcmp (note, "diffscope test fixture") == 0, "note");

  /* entries are ordered by data offset */
  for (int i = 1; i < ds_safetensors_count (st); i++)
    DS_CHECK ((const uint8_t *)ds_safetensors_entry (st, i)->data
                  >= (const uint8_t *)ds_safetensors_entry (st, i - 1)->data
                         + ds_safetensors_entry (st, i - 1)->nbytes,
              "entry %d out of offset order", i);

  static const struct
  {
    const char *name;
    DsDType dtype;
    int ndim;
    int64_t shape[4];
    int n;
    float values[6];
  } want[] = {
    { "weight",
      DS_DTYPE_F32,
      2,
      { 2, 3 },
      6,
      { 1.5f, -2.25f, 0.1f, 1024.0f, -0.0078125f, FLT_MAX } },
    { "half", DS_DTYPE_F16, 1, { 4 }, 4, { 1.0f, -2.5f, 65504.0f, 0x1p-24f } },
    { "brain", DS_DTYPE_BF16, 2, { 2, 2 }, 4, { 1.0f, -3.0f, 0x1p100f, 0.0078125f } },
    { "ids", DS_DTYPE_I64, 1, { 3 }, 3, { 0.0f, -7.0f, 49407.0f } },
    { "count", DS_DTYPE_I32, 1, { 1 }, 1, { 123456.0f } },
    { "scalar", DS_DTYPE_F32, 0, { 0 }, 1, { 42.0f } },
    { "empty", DS_DTYPE_F32, 2, { 0, 3 }, 0, { 0 } },
  };
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_find (st, want[k].name);
      DS_CHECK (e != NULL, "'%s' missing", want[k].name);
      if (!e)
        continue;
      DS_CHECK (e->dtype == want[k].dtype, "'%s' dtype %s", e->name, ds_dtype_name (e->dtype));
      DsTensor t;
      DS_CHECK_OK (
          ds_safetensors_load_f32 (st, want[k].name, want[k].ndim, want[k].shape, &t, &err), &err);
      DS_CHECK (ds_tensor_numel (&t) == want[k].n, "'%s' numel %lld", e->name,
                (long long)ds_tensor_numel (&t));
      for (int i = 0; t.data && i < want[k].n; i++)
        DS_CHECK (ds_tensor_f32 (&t)[i] == want[k].values[i], "'%s'[%d] = %.9g, want %.9g", e->name,
                  i, ds_tensor_f32 (&t)[i], want[k].values[i]);
      ds_tensor_free (&t);
    }
  /* raw i64 bytes straight from the mapping */
  const DsSafetensorsEntry *ids = ds_safetensors_find (st, "ids");
  if (ids)
    {
      int64_t v[3];
      memcpy (v, ids->data, sizeof v);
      DS_CHECK (v[0] == 0 && v[1] == -7 && v[2] == 49407, "raw ids %lld %lld %lld", (long long)v[0],
                (long long)v[1], (long long)v[2]);
    }
  ds_safetensors_close (st);
}


/* Issue #14: duplicate names, an entry count far beyond any model, integer or
 * non-finite values where real numbers are expected. */
static void
test_hardening (void)
{
  /* jansson keeps the last of two equal keys: the first tensor would vanish */
  expect_fail (write_st ("dup.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         NULL, 8),
               DS_ERR_FORMAT, "\"w\"", "twice");

  /* 100001 empty tensors: refused before the JSON is parsed */
  size_t cap = (DS_SAFETENSORS_MAX_TENSORS + 1) * 64 + 16, len = 0;
  char *json = malloc (cap);
  json[len++] = '{';
  for (int i = 0; i <= DS_SAFETENSORS_MAX_TENSORS; i++)
    len += (size_t) snprintf (json + len, cap - len,
                              "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              i ? "," : "", i);
  json[len++] = '}';
  json[len] = '\0';
  expect_fail (write_st ("many.safetensors", json, NULL, 0), DS_ERR_UNSUPPORTED, "100001 tensors",
               "limit is 100000");
  free (json);

  /* load_float: I32 named with its dtype; NaN and Inf named with the element */
  const int32_t ints[2] = { 1, 2 };
  const float bad[3] = { 1.0f, NAN, 2.0f }, inf[2] = { 0.0f, -INFINITY };
  uint8_t data[28];
  memcpy (data, ints, 8);
  memcpy (data + 8, bad, 12);
  memcpy (data + 20, inf, 8);
  char *path = write_st ("kinds.safetensors",
                         "{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"n\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
                         "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]}}",
                         data, sizeof data);
  DsSafetensors *st = NULL;
  DsError err = { 0 };
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!st)
    return;
  DsTensor t = { 0 };
  DS_CHECK_STATUS (ds_safetensors_load_float (st, "i", 1, (int64_t[]){ 2 }, &t, &err),
                   DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "tensor 'i' is stored as I32");
  DS_CHECK (t.data == NULL, "nothing loaded");
  ds_error_clear (&err);
  DS_CHECK_STATUS (ds_safetensors_load_float (st, "n", 0, NULL, &t, &err), DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "tensor 'n' holds NaN at element 1");
  DS_CHECK (t.data == NULL, "nothing loaded");
  ds_error_clear (&err);
  DS_CHECK_STATUS (ds_safetensors_load_float (st, "f", 0, NULL, &t, &err), DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "tensor 'f' holds -Inf at element 1");
  ds_error_clear (&err);
  DS_CHECK_STATUS (ds_safetensors_load_float (st, "missing", 0, NULL, &t, &err),
                   DS_ERR_NOT_FOUND, &err);
  ds_error_clear (&err);
  /* the raw loader still converts integers (for reference data) */
  DS_CHECK_OK (ds_safetensors_load_f32 (st, "i", 0, NULL, &t, &err), &err);
  ds_tensor_free (&t);
  ds_safetensors_close (st);
}

/* A tiny file written through ds_safetensors_write (ds-atomic) to `path`. */
static DsStatus
write_small (const char *path, DsError *err)
{
  float v[2] = { 1.0f, 2.0f };
  DsTensor t = { .dtype = DS_DTYPE_F32, .device = DS_DEVICE_CPU, .ndim = 1,
                 .shape = { 2, 1, 1, 1 }, .data = v };
  DsSafetensorsItem item = { "x", &t };
  return ds_safetensors_write (path, &item, 1, NULL, err);
}

/* Issue #14: the atomic writer never replaces what is not a regular file. */
static void
test_atomic_targets (void)
{
  DsError err = { 0 };
  struct stat sb;

  /* a directory: refused, named */
  char *dir = scratch_path ("a-dir");
  mkdir (dir, 0755);
  DS_CHECK_STATUS (write_small (dir, &err), DS_ERR_IO, &err);
  DS_CHECK_CONTAINS (err.message, "a-dir: is a directory");
  DS_CHECK (stat (dir, &sb) == 0 && S_ISDIR (sb.st_mode), "the directory is still there");
  rmdir (dir);
  ds_error_clear (&err);

  /* a symbolic link to a regular file: the file is replaced, the link stays */
  char *target = scratch_path ("target.safetensors"), *link = scratch_path ("link.safetensors");
  FILE *f = fopen (target, "w");
  fputs ("old", f);
  fclose (f);
  DS_CHECK (symlink ("target.safetensors", link) == 0, "symlink: %s", strerror (errno));
  DS_CHECK_OK (write_small (link, &err), &err);
  DS_CHECK (lstat (link, &sb) == 0 && S_ISLNK (sb.st_mode), "the link is still a link");
  DS_CHECK (stat (target, &sb) == 0 && S_ISREG (sb.st_mode) && sb.st_size > 3,
            "the target has the new contents");
  unlink (link);
  unlink (target);
  /* a dangling one: its target is created */
  DS_CHECK (symlink ("made.safetensors", link) == 0, "symlink: %s", strerror (errno));
  DS_CHECK_OK (write_small (link, &err), &err);
  DS_CHECK (lstat (link, &sb) == 0 && S_ISLNK (sb.st_mode), "the dangling link stays a link");
  DS_CHECK (stat (scratch_path ("made.safetensors"), &sb) == 0 && S_ISREG (sb.st_mode),
            "the link's target was created");
  unlink (link);
  unlink (scratch_path ("made.safetensors"));

  /* a FIFO: written through to its reader, still a FIFO afterwards */
  char *fifo = scratch_path ("out.fifo");
  DS_CHECK (mkfifo (fifo, 0600) == 0, "mkfifo: %s", strerror (errno));
  pid_t pid = fork ();
  if (pid == 0)
    {
      /* the reader: exits 0 when it read a whole safetensors file; gives up
       * when no writer comes */
      alarm (30);
      FILE *r = fopen (fifo, "rb");
      uint8_t buf[4096];
      size_t n = r ? fread (buf, 1, sizeof buf, r) : 0;
      _exit (n > 8 && buf[8] == '{' && n == 8 + (size_t) buf[0] + 8 ? 0 : 1);
    }
  DS_CHECK_OK (write_small (fifo, &err), &err);
  int status = 0;
  waitpid (pid, &status, 0);
  DS_CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0, "the FIFO's reader got the file");
  DS_CHECK (lstat (fifo, &sb) == 0 && S_ISFIFO (sb.st_mode), "the FIFO is still a FIFO");
  unlink (fifo);
  ds_error_clear (&err);

  /* a character device like /dev/full (1, 7), made here where root may: the
   * write fails with ENOSPC and the node stays a device */
  char *full = scratch_path ("full");
  if (mknod (full, S_IFCHR | 0666, makedev (1, 7)) == 0)
    {
      DS_CHECK_STATUS (write_small (full, &err), DS_ERR_IO, &err);
      DS_CHECK_CONTAINS (err.message, strerror (ENOSPC));
      DS_CHECK (lstat (full, &sb) == 0 && S_ISCHR (sb.st_mode), "still a character device");
      unlink (full);
      ds_error_clear (&err);
    }
  else
    printf ("cannot mknod a character device here (%s): that case not run\n", strerror (errno));

  /* nothing left behind: no temporary files */
  DIR *d = opendir (scratch);
  struct dirent *de;
  while (d && (de = readdir (d)))
    DS_CHECK (!strstr (de->d_name, ".tmp-"), "temporary file left: %s", de->d_name);
  if (d)
    closedir (d);
}

static void
remove_scratch (void)
{
  DIR *d = opendir (scratch);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir (d)))
    if (strcmp (de->d_name, ".") && strcmp (de->d_name, ".."))
      unlink (scratch_path (de->d_name));
  closedir (d);
  rmdir (scratch);
}

/* Faults: a file truncated while it is mapped (another program rewriting the
 * model in place). Reading the lost part raises SIGBUS; it must become an
 * error naming the file and tensor, and the next load must work. */
static void
test_truncated_while_mapped (void)
{
  DsError err = { 0 };
  enum { N = 1 << 20 }; /* 4 MiB: most of it far past the first page */
  DsTensor big;
  DS_CHECK_OK (ds_tensor_alloc (&big, DS_DTYPE_F32, 1, (int64_t[]){ N }, &err), &err);
  if (!big.data)
    return;
  for (int i = 0; i < N; i++)
    ds_tensor_f32 (&big)[i] = (float) i;
  const char *path = scratch_path ("shrinks.safetensors");
  DsSafetensorsItem item = { "w", &big };
  DS_CHECK_OK (ds_safetensors_write (path, &item, 1, NULL, &err), &err);
  DsSafetensors *st = NULL;
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!st)
    {
      ds_tensor_free (&big);
      return;
    }
  DS_CHECK (truncate (path, 4096) == 0, "truncate: %s", strerror (errno));
  DsTensor t = { 0 };
  DsError e2 = { 0 };
  DsStatus s = ds_safetensors_load_f32 (st, "w", 1, (int64_t[]){ N }, &t, &e2);
  DS_CHECK (s == DS_ERR_IO && strstr (e2.message, "shorter") && strstr (e2.message, "'w'")
                && strstr (e2.message, "shrinks.safetensors") && t.data == NULL,
            "truncated while mapped: status %d, %s", s, e2.message);
  ds_safetensors_close (st);
  /* the guard is released: the file written again loads */
  DS_CHECK_OK (ds_safetensors_write (path, &item, 1, NULL, &err), &err);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (st)
    {
      DS_CHECK_OK (ds_safetensors_load_f32 (st, "w", 1, (int64_t[]){ N }, &t, &err), &err);
      DS_CHECK (t.data && ds_tensor_f32 (&t)[N - 1] == (float) (N - 1), "reload");
      ds_tensor_free (&t);
      ds_safetensors_close (st);
    }
  ds_tensor_free (&big);
}

int
main (void)
{
  const char *tmp = getenv ("TMPDIR");
  snprintf (scratch, sizeof scratch, "%s/ds-test-st-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp (scratch))
    {
      perror ("mkdtemp");
      return 1;
    }
  test_hostile_files ();
  test_lenient_but_valid ();
  test_dtype_decoding ();
  test_round_trip ();
  test_python_fixture ();
  test_hardening ();
  test_atomic_targets ();
  test_truncated_while_mapped ();
  remove_scratch ();
  return ds_test_finish ();
}
