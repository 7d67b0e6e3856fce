/* ds-llama-tokenizer.h: the LLaMA-2 / Vicuna tokenizer of LLaVA-1.5, read from a
 * Hugging Face `tokenizer.json` (docs/models.md §7.7), and the LLaVA-1.5 prompt
 * (§7.6).
 *
 *   DsLlamaTokenizer *tok;
 *   DsError err = { 0 };
 *   if (ds_llama_tokenizer_open ("llava-1.5-7b-hf", &tok, &err) != DS_OK)
 *     die (err.message);
 *   char *prompt;
 *   ds_llava_prompt (NULL, "What is this?", true, &prompt, &err);
 *   int32_t *ids; int64_t n;
 *   ds_llama_tokenizer_encode (tok, prompt, true, &ids, &n, &err); // [1, 3148, 1001, 29901, ...]
 *   ...
 *   DsLlamaDecodeStream *s;
 *   ds_llama_decode_stream_new (tok, true, &s, &err);
 *   for each generated id: ds_llama_decode_stream_push (s, id, &piece, &err); print piece; free
 *   ds_llama_decode_stream_finish (s, &piece, &err); ds_llama_decode_stream_free (s);
 *
 * Encoding equals the `tokenizers` library's Tokenizer.encode (text,
 * add_special_tokens) for what LLaMA-style files use:
 *   - added tokens (<s>, </s>, <unk>, <image>, <pad>, ...) are cut out of the
 *     raw text first, leftmost and then longest, with their lstrip/rstrip;
 *     those marked "normalized" are matched in the normalised text instead;
 *   - normalizer: null, Prepend, Replace (string patterns) or a Sequence of them;
 *   - pre_tokenizer: null or Metaspace (prepend_scheme always/first/never,
 *     split or not; the older add_prefix_space form too);
 *   - model: BPE with byte_fallback (<0xNN> pieces; a character some of
 *     whose bytes have none is <unk>, as in the library), unk_token and
 *     fuse_unk, ignore_merges, merges as "a b" strings or ["a", "b"] pairs;
 *     no dropout, no continuing_subword_prefix / end_of_word_suffix;
 *   - post_processor: null or TemplateProcessing (BOS/EOS around the text);
 *     tokenizer_config.json's add_bos_token / add_eos_token, when present,
 *     override it, as transformers does.
 * Anything else in the file is refused with DS_ERR_UNSUPPORTED naming the field,
 * and so are steps that multiply the text (LLaMA's only shorten it or add a
 * character): a decoder whose Replace steps could make a text more than 8
 * times longer, when the file is opened; a normalizer that makes a prompt
 * more than 8 times longer (plus 4 KiB), when it encodes that prompt. So are
 * decoder steps after a Fuse that a stream could not decode a window at a
 * time: a Replace whose pattern is two or more characters, a ByteFallback;
 * and a Strip there that takes more than 16 characters at either end (the
 * stream would decode them again with each id; LLaMA's takes one).
 *
 * The `legacy` flag (tokenizer_config.json) decides, when transformers converts
 * the slow SentencePiece model, whether every piece of text after a special
 * token gets a "▁" in front (legacy: normalizer Prepend("▁") + Replace) or only
 * the start of the text does (non-legacy: Metaspace, prepend_scheme "first").
 * The fast tokenizer and this one follow what tokenizer.json says; the flag is
 * reported, not applied. (transformers 5 ignores the file's normalizer and
 * rebuilds the pipeline from the flag: Metaspace "first" for legacy=false, the
 * same ids; Metaspace "always" for legacy=true, which differs from the
 * Prepend normalizer where a piece of text starts with a space: " hi" is
 * "▁▁hi" here and in `tokenizers`, "▁hi" there.)
 *
 * Metaspace's "first" scheme puts its "▁" in front of the piece that comes
 * from the text's first character, as the library tracks it through the
 * normalizer: not when a Replace deleted that character. Two "normalized"
 * added tokens that normalise to the same text match as the first in the
 * file; the library picks one by hash order, which changes from run to run.
 *
 * Decoding runs the file's decoder: a Sequence of Replace, ByteFallback, Fuse,
 * Strip and Metaspace steps, or Metaspace alone; for LLaMA that is "▁" to
 * space, runs of <0xNN> pieces joined into UTF-8 (a run that is not valid
 * UTF-8 gives one U+FFFD per byte, as tokenizers does), and the first space
 * dropped. Each step works on every piece (Strip too) until a Fuse makes
 * the pieces one. As in `tokenizers` 0.23 (up to 0.22 it was the content),
 * a "normalized" added token decodes as its normalised content (Prepend("▁")
 * makes "x" "▁x"), and skip_special leaves out the ids whose text is the
 * content of a special added token (so not such a token whose normalised
 * content differs). The one difference: a <0x00> piece gives U+FFFD
 * instead of a NUL, which the C strings returned here cannot hold.
 *
 * Not done: other models (WordPiece, Unigram), regex patterns, NFKC and other
 * Unicode normalizers, single_word added tokens, truncation, padding, pairs.
 * The tokenizer is immutable after opening and safe to use from several
 * threads; a decode stream is not.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DsLlamaTokenizer DsLlamaTokenizer;
typedef struct DsLlamaDecodeStream DsLlamaDecodeStream;

/* docs/models.md §7.6 */
#define DS_LLAVA_SYSTEM_VICUNA_V1                                                                  \
  "A chat between a curious user and an artificial intelligence assistant. The assistant "         \
  "gives helpful, detailed, and polite answers to the user's questions."
#define DS_LLAVA_SYSTEM_LLAVA_V1                                                                   \
  "A chat between a curious human and an artificial intelligence assistant. The assistant "        \
  "gives helpful, detailed, and polite answers to the human's questions."
/* The image placeholder of the original LLaVA code (not a vocabulary id). */
#define DS_LLAVA_IMAGE_PLACEHOLDER (-200)

/* Reads dir/tokenizer.json and, when present, dir/tokenizer_config.json. */
DsStatus ds_llama_tokenizer_open (const char *dir, DsLlamaTokenizer **out /* transfer full */,
                                  DsError *err);
/* The same from explicit paths; config_path may be NULL. */
DsStatus ds_llama_tokenizer_open_files (const char *tokenizer_json_path, const char *config_path,
                                        DsLlamaTokenizer **out /* transfer full */, DsError *err);
void ds_llama_tokenizer_free (DsLlamaTokenizer *tok);

/* Encodes UTF-8 text (invalid UTF-8 is DS_ERR_INVALID naming the byte offset).
 * add_special: add BOS/EOS as the post-processor and config say. *ids is
 * transfer full (free ()), never NULL on success, *n_ids may be 0. */
DsStatus ds_llama_tokenizer_encode (const DsLlamaTokenizer *tok, const char *text,
                                    bool add_special, int32_t **ids, int64_t *n_ids,
                                    DsError *err);
/* Decodes ids into UTF-8 text (*text transfer full, free ()). skip_special
 * leaves out added tokens marked special (but see "normalized" ones above).
 * An id out of range is DS_ERR_INVALID. */
DsStatus ds_llama_tokenizer_decode (const DsLlamaTokenizer *tok, const int32_t *ids,
                                    int64_t n_ids, bool skip_special, char **text, DsError *err);

/* Ids including the added tokens (max id + 1). */
int32_t ds_llama_tokenizer_n_vocab (const DsLlamaTokenizer *tok);
/* The id of a piece or added token ("<image>"), or -1. */
int32_t ds_llama_tokenizer_token_id (const DsLlamaTokenizer *tok, const char *piece);
/* The piece or added token of an id (transfer none, valid while tok lives), or NULL. */
const char *ds_llama_tokenizer_id_to_piece (const DsLlamaTokenizer *tok, int32_t id);
/* -1 when the files name none. */
int32_t ds_llama_tokenizer_bos_id (const DsLlamaTokenizer *tok);
int32_t ds_llama_tokenizer_eos_id (const DsLlamaTokenizer *tok);
int32_t ds_llama_tokenizer_unk_id (const DsLlamaTokenizer *tok);
/* Whether id is an added token marked special. */
bool ds_llama_tokenizer_is_special (const DsLlamaTokenizer *tok, int32_t id);
/* tokenizer_config.json's "legacy" (true when absent, transformers' default). */
bool ds_llama_tokenizer_legacy (const DsLlamaTokenizer *tok);
/* Whether tokenizer_config.json carries a chat_template. */
bool ds_llama_tokenizer_has_chat_template (const DsLlamaTokenizer *tok);

/* Streaming decode: push one id at a time and get the text it completes (*text
 * transfer full, "" when nothing is complete yet). Text is held back while the
 * last ids are <0xNN> pieces (a byte run is only decoded once it ends), so no
 * partial UTF-8 character is ever returned, and the pieces put together, with
 * finish's, equal ds_llama_tokenizer_decode of all ids. tok must outlive s. */
DsStatus ds_llama_decode_stream_new (const DsLlamaTokenizer *tok, bool skip_special,
                                     DsLlamaDecodeStream **out /* transfer full */, DsError *err);
DsStatus ds_llama_decode_stream_push (DsLlamaDecodeStream *s, int32_t id, char **text,
                                      DsError *err);
/* The held-back rest (*text transfer full); the stream can then be pushed again. */
DsStatus ds_llama_decode_stream_finish (DsLlamaDecodeStream *s, char **text, DsError *err);
void ds_llama_decode_stream_free (DsLlamaDecodeStream *s);

/* The LLaVA-1.5 single-turn prompt (docs/models.md §7.6):
 *   [system + " "] + "USER: <image>\n" + question + " ASSISTANT:"
 * hf_style: the HF model card's form, no system line unless `system` is given;
 * otherwise the original conversation template, whose system line defaults to
 * vicuna_v1's (DS_LLAVA_SYSTEM_VICUNA_V1; pass DS_LLAVA_SYSTEM_LLAVA_V1 for
 * llava_v1). *out is transfer full (free ()). */
DsStatus ds_llava_prompt (const char *system, const char *question, bool hf_style, char **out,
                          DsError *err);

#ifdef __cplusplus
}
#endif
