/* ds-text-fix.h: ftfy.fix_text's clean-up of typed text, for the CLIP tokenizer.
 *
 * SD 2's text encoder was trained on text cleaned by ftfy (OpenCLIP's
 * tokenizer), and transformers' CLIPTokenizer cleans text the same way when
 * ftfy is installed. This is ftfy 6.3's fix_text with its default settings
 * (docs/models.md §5.4), step by step and in its order:
 *   - the text is fixed a line at a time (each segment ends after a "\n");
 *     from the first segment holding a "<" on, HTML entities are left alone;
 *   - each segment is repeated through these steps until it stops changing:
 *     HTML entities ("&amp;", "&eacute;", all-caps ones like "&EACUTE;", and
 *     numeric "&#8217;" read as html.unescape does), C1 controls read as
 *     Windows-1252, Latin ligatures taken apart ("ﬁ" -> "fi"), full- and
 *     half-width forms to their usual ones ("Ａ" -> "A", U+3000 -> " "), curly
 *     quotes straightened, every line break to "\n", terminal colour escapes
 *     and stray control characters removed, then NFC.
 *
 * Not done: ftfy's mojibake repair (text decoded in the wrong encoding, such
 * as "cafÃ©" for "café"), which rests on a large statistical heuristic. Typed
 * text does not hold mojibake; text that does is tokenized as it stands.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-unicode.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends fix_text (in[0..n)) to out. False only when memory runs out. */
bool ds_text_fix (const uint32_t *in, size_t n, DsUcBuf *out);

/* Python's str.isspace (what CLIPTokenizer's whitespace_clean collapses). */
bool ds_text_is_py_space (uint32_t cp);

#ifdef __cplusplus
}
#endif
