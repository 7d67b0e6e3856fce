/* fuzz-tokens-check.h: what every CLIP tokenization must satisfy, for
 * fuzz-clip-tokenizer.c and fuzz-prompt.c; a violation aborts (a finding). */
#pragma once

#include <stdlib.h>

#include "ds-tokenizer.h"

static inline void
fuzz_check_tokens (const DsTokenizer *tok, const DsTokens *t)
{
  if (t->n_tokens < 2 || t->n_tokens > DS_CLIP_CONTEXT || t->n_words < 0
      || t->n_words > DS_TOKEN_MAX_WORDS || t->n_pieces_total < t->n_tokens - 2
      || t->truncated != (t->n_pieces_total > DS_CLIP_CONTEXT - 2))
    abort ();
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    if (!ds_tokenizer_id_to_token (tok, t->ids[i]))
      abort ();
  int end = 1;
  for (int w = 0; w < t->n_words; w++)
    {
      const DsTokenWord *word = &t->words[w];
      if (word->first < end || word->count < 1 || word->first + word->count > t->n_tokens - 1
          || !memchr (word->text, '\0', sizeof word->text))
        abort ();
      end = word->first + word->count;
    }
}
