/* fuzz-clip-tokenizer.c: the CLIP tokenizer's files (ds_tokenizer_open) and
 * tokenization with them. The input, split at NUL bytes, is
 *   VOCAB_JSON \0 MERGES_TXT [\0 PROMPT [\0 PAD_TOKEN]]
 * (pad token "<|endoftext|>" when absent). When the files open, the prompt
 * and a few fixed ones are tokenized and checked (fuzz-tokens-check.h). */
#include "fuzz-common.h"
#include "fuzz-tokens-check.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const fixed[] = { "a photo of a cat", "don't STOP!! <|endoftext|>ünï 日本" };
  char vocab[600], merges[600];
  fuzz_path (vocab, sizeof vocab, "vocab.json");
  fuzz_path (merges, sizeof merges, "merges.txt");
  char *parts[4];
  size_t lens[4];
  int n = fuzz_split (data, size, 4, parts, lens);
  fuzz_write (vocab, parts[0], lens[0]);
  fuzz_write (merges, parts[1], lens[1]);
  DsTokenizer *tok;
  DsError err = { 0 };
  if (ds_tokenizer_open (vocab, merges, n >= 4 ? parts[3] : "<|endoftext|>", &tok, &err)
      == DS_OK)
    {
      DsTokens t;
      for (size_t i = 0; i <= sizeof fixed / sizeof fixed[0]; i++)
        if (ds_tokenizer_encode (tok, i ? fixed[i - 1] : parts[2], &t, &err) == DS_OK)
          fuzz_check_tokens (tok, &t);
      ds_tokenizer_free (tok);
    }
  fuzz_free_parts (parts, 4);
  return 0;
}
