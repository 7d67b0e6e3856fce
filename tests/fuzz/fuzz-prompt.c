/* fuzz-prompt.c: tokenizing any bytes as a prompt (ds_tokenizer_encode) with
 * the real CLIP tokenizer (resources/clip-tokenizer), once with SD 2.x's pad
 * token "!" and once with SD 1.x's "<|endoftext|>"; every result is checked
 * (fuzz-tokens-check.h). The input is the prompt; bytes after a NUL are
 * ignored, as a C string ends there. */
#include "fuzz-common.h"
#include "fuzz-tokens-check.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static DsTokenizer *toks[2];

static void
open_tokenizers (void)
{
  static const char *const pads[2] = { "!", "<|endoftext|>" };
  for (int i = 0; i < 2; i++)
    {
      DsError err = { 0 };
      if (ds_tokenizer_open (DS_RESOURCES_DIR "/clip-tokenizer/vocab.json",
                             DS_RESOURCES_DIR "/clip-tokenizer/merges.txt", pads[i], &toks[i],
                             &err)
          != DS_OK)
        {
          fprintf (stderr, "fuzz-prompt: %s\n", err.message);
          abort ();
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (!toks[0])
    open_tokenizers ();
  char *text = malloc (size + 1);
  if (!text)
    abort ();
  memcpy (text, data, size);
  text[size] = '\0';
  for (int i = 0; i < 2; i++)
    {
      DsTokens t;
      DsError err = { 0 };
      if (ds_tokenizer_encode (toks[i], text, &t, &err) == DS_OK)
        fuzz_check_tokens (toks[i], &t);
    }
  free (text);
  return 0;
}
