/* fuzz-llama-tokenizer.c: the LLaMA tokenizer's tokenizer.json (and
 * tokenizer_config.json) as ds_llama_tokenizer_open_files reads them, then
 * encoding, decoding and streaming decoding with it. The input, split at NUL
 * bytes, is
 *   TOKENIZER_JSON [\0 TOKENIZER_CONFIG_JSON [\0 TEXT]]
 * (no config file when that part is absent). When the files open, TEXT is
 * encoded with and without special tokens; the ids with them (special ones
 * skipped), and ids made from TEXT's bytes, are decoded both at once and
 * streamed, and the two texts must be equal (ds-llama-tokenizer.h promises
 * it). */
#include "fuzz-common.h"

#include "ds-llama-tokenizer.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Decoding ids at once and as a stream gives the same text. */
static void
check_decode (const DsLlamaTokenizer *tok, const int32_t *ids, int64_t n, bool skip)
{
  DsError err = { 0 };
  char *whole = NULL;
  if (ds_llama_tokenizer_decode (tok, ids, n, skip, &whole, &err) != DS_OK)
    return;
  DsLlamaDecodeStream *s;
  if (ds_llama_decode_stream_new (tok, skip, &s, &err) != DS_OK)
    abort ();
  size_t len = strlen (whole), at = 0;
  for (int64_t i = 0; i <= n; i++)
    {
      char *piece = NULL;
      DsStatus st = i < n ? ds_llama_decode_stream_push (s, ids[i], &piece, &err)
                          : ds_llama_decode_stream_finish (s, &piece, &err);
      if (st != DS_OK)
        abort (); /* decode took these ids */
      size_t k = strlen (piece);
      if (at + k > len || memcmp (whole + at, piece, k) != 0)
        abort (); /* the stream strays from the whole decode */
      at += k;
      free (piece);
    }
  if (at != len)
    abort ();
  ds_llama_decode_stream_free (s);
  free (whole);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char json[600], config[600];
  fuzz_path (json, sizeof json, "tokenizer.json");
  fuzz_path (config, sizeof config, "tokenizer_config.json");
  char *parts[3];
  size_t lens[3];
  int n_parts = fuzz_split (data, size, 3, parts, lens);
  fuzz_write (json, parts[0], lens[0]);
  if (n_parts >= 2)
    fuzz_write (config, parts[1], lens[1]);
  DsLlamaTokenizer *tok;
  DsError err = { 0 };
  if (ds_llama_tokenizer_open_files (json, n_parts >= 2 ? config : NULL, &tok, &err) == DS_OK)
    {
      const char *text = parts[2];
      for (int special = 0; special < 2; special++)
        {
          int32_t *ids;
          int64_t n;
          if (ds_llama_tokenizer_encode (tok, text, special, &ids, &n, &err) == DS_OK)
            {
              if (special)
                check_decode (tok, ids, n, true);
              free (ids);
            }
        }
      int32_t nv = ds_llama_tokenizer_n_vocab (tok);
      int32_t raw[64];
      int64_t n = 0;
      for (size_t i = 0; nv > 0 && i < lens[2] && n < 64; i++)
        raw[n++] = (int32_t) ((unsigned char) text[i] % (unsigned) nv);
      check_decode (tok, raw, n, text[0] & 1);
      for (int32_t id = 0; id < nv && id < 512; id++)
        {
          const char *piece = ds_llama_tokenizer_id_to_piece (tok, id);
          if (piece && ds_llama_tokenizer_token_id (tok, piece) < 0)
            abort (); /* a piece the tokenizer cannot look up */
        }
      ds_llama_tokenizer_free (tok);
    }
  fuzz_free_parts (parts, 3);
  return 0;
}
