/* ds-unicode.h: the Unicode knowledge the CLIP tokenizer needs, and no more.
 *
 * UTF-8 decoding/encoding, and the character properties and transforms that
 * transformers' CLIPTokenizer (without ftfy) applies through Python: the
 * BasicTokenizer clean-up classes (dropped controls, whitespace, CJK
 * ideographs), NFC normalisation, str.lower (with U+0130 -> "i\u0307" and the
 * Final_Sigma rule), and how the `regex` module's pre-tokenisation classes
 * [\p{L}], [\p{N}] and [^\s\p{L}\p{N}] (case-insensitive) see each character.
 * Tables come from tests/reference/gen_unicode_tables.py (Python's
 * unicodedata, Unicode version in DS_UC_TABLES_UNICODE_VERSION). Full NFC is
 * implemented (canonical decomposition, reordering, composition incl. Hangul).
 *
 * Not a general Unicode library: no case folding, no NFKC, no grapheme rules.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How CLIP's pre-tokenisation pattern treats a (lower-cased) character. */
typedef enum {
  DS_UC_PRE_SKIP = 0,   /* whitespace, or in none of the classes: never part of a piece */
  DS_UC_PRE_LETTER = 1, /* [\p{L}]: runs of these form one piece */
  DS_UC_PRE_NUMBER = 2, /* [\p{N}]: each is its own piece */
  DS_UC_PRE_OTHER = 3,  /* [^\s\p{L}\p{N}]: runs of these form one piece */
} DsUcPreClass;

/* A growable array of code points. Zero-initialise; free with ds_uc_buf_free. */
typedef struct {
  uint32_t *cp; /* (cap) */
  size_t len;
  size_t cap;
} DsUcBuf;

/* All return false only when memory runs out. */
bool ds_uc_buf_reserve (DsUcBuf *buf, size_t cap);
bool ds_uc_buf_push (DsUcBuf *buf, uint32_t cp);
void ds_uc_buf_free (DsUcBuf *buf);

/* Strict UTF-8 (RFC 3629: no overlongs, surrogates or values above U+10FFFF).
 * Returns the byte offset of the first byte of the first invalid sequence, or
 * -1 when all n bytes are valid. */
long ds_utf8_find_invalid (const char *s, size_t n);
/* Decodes one code point from valid UTF-8 at s; returns its byte length. */
int ds_utf8_decode (const char *s, uint32_t *cp);
/* Writes cp (<= U+10FFFF, not a surrogate) as 1-4 bytes; returns the count. */
int ds_utf8_encode (uint32_t cp, char out[4]);

/* BasicTokenizer._clean_text drops it (NUL, U+FFFD, categories C* but \t\n\r). */
bool ds_uc_is_removed (uint32_t cp);
/* Whitespace for the clean-up and str.split (\t\n\r, Zs, U+2028, U+2029). */
bool ds_uc_is_space (uint32_t cp);
/* BasicTokenizer._is_chinese_char (the CJK ideograph blocks it pads with spaces). */
bool ds_uc_is_cjk (uint32_t cp);
DsUcPreClass ds_uc_pre_class (uint32_t cp);
/* True when c equals the lower-case ASCII letter `ascii` under the pattern's
 * IGNORECASE, for text that is already lower-cased ('s' also accepts U+017F). */
bool ds_uc_ascii_ci_eq (uint32_t cp, char ascii);
uint8_t ds_uc_combining_class (uint32_t cp);

/* Appends Python's str.lower of in[0..n) to out (context: the n code points). */
bool ds_uc_lower (const uint32_t *in, size_t n, DsUcBuf *out);
/* Appends unicodedata.normalize ("NFC", in[0..n)) to out. */
bool ds_uc_nfc (const uint32_t *in, size_t n, DsUcBuf *out);

#ifdef __cplusplus
}
#endif
