/* ds-tokenizer.h: the CLIP byte-level BPE tokenizer (vocab.json + merges.txt).
 *
 * Matches transformers' CLIPTokenizer with ftfy installed, which is how SD 2's
 * text encoder saw text in training (OpenCLIP), or, as an option, without
 * ftfy (docs/models.md §5.4): text cleaned (ftfy.fix_text: HTML entities,
 * curly quotes, full-width forms, ligatures...; or BasicTokenizer's clean-up,
 * which also sets CJK ideographs apart), whitespace collapsed, lower-cased,
 * split by CLIP's pre-tokenisation pattern, bytes mapped to CLIP's unicode
 * alphabet, BPE-merged by rank with "</w>" on each word's last symbol, framed as
 * [<|startoftext|>, up to 75 ids, <|endoftext|>] and padded to 77 with the pad id
 * (0 = "!" for SD 2.x, 49407 for SD 1.x). Over-long prompts are truncated and
 * flagged. A literal "!" in the text becomes the pad id when the pad token is "!",
 * as transformers does for SD 2.x (it is a registered special token there).
 *
 * Each word of the prompt (a run of pre-tokens not separated by whitespace)
 * is reported with the positions of the ids that form it, for the token strip.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_CLIP_CONTEXT 77
#define DS_CLIP_SOT 49406
#define DS_CLIP_EOT 49407
#define DS_TOKEN_MAX_WORDS DS_CLIP_CONTEXT

typedef struct DsTokenizer DsTokenizer;

typedef struct {
  char text[128];  /* the word as typed (UTF-8, lower-cased), truncated if longer */
  int first;       /* position in ids[] of its first piece (>= 1) */
  int count;       /* number of pieces */
} DsTokenWord;

typedef struct {
  int32_t ids[DS_CLIP_CONTEXT];
  int n_tokens;        /* SOT + prompt pieces + EOT, before padding (<= 77) */
  bool truncated;      /* the prompt had more than 75 pieces */
  int n_pieces_total;  /* pieces before truncation */
  int n_words;
  DsTokenWord words[DS_TOKEN_MAX_WORDS]; /* words kept after truncation */
} DsTokens;

/* How text is cleaned before BPE. */
typedef enum {
  DS_TEXT_CLEAN_FTFY = 0,  /* ftfy.fix_text + whitespace_clean (the default) */
  DS_TEXT_CLEAN_BASIC = 1, /* BasicTokenizer, as CLIPTokenizer when ftfy is not installed */
} DsTextClean;

/* pad_token: the pad token's text ("!" for SD 2.x; "<|endoftext|>" for SD 1.x). */
DsStatus ds_tokenizer_open (const char *vocab_json_path, const char *merges_path,
                            const char *pad_token, DsTokenizer **out, DsError *err);
void ds_tokenizer_free (DsTokenizer *tok);
/* Chooses the clean-up; call before the tokenizer is shared between threads. */
void ds_tokenizer_set_clean (DsTokenizer *tok, DsTextClean clean);

/* Tokenizes UTF-8 text (invalid UTF-8 is a DS_ERR_INVALID naming the byte offset). */
DsStatus ds_tokenizer_encode (const DsTokenizer *tok, const char *text, DsTokens *out,
                              DsError *err);
/* The vocab string of an id ("cat</w>"), or NULL when out of range. */
const char *ds_tokenizer_id_to_token (const DsTokenizer *tok, int32_t id);
int32_t ds_tokenizer_pad_id (const DsTokenizer *tok);

#ifdef __cplusplus
}
#endif
