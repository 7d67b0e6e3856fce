#!/usr/bin/env python3
"""gen_tokenizer_ftfy_cases.py: reference ids for the CLIP tokenizer's ftfy mode.

Writes tests/data/tokenizer-ftfy-cases.json: [{"prompt", "pad", "ids",
"n_tokens"}, ...] from transformers' slow CLIPTokenizer with ftfy installed
(it then cleans text with ftfy.fix_text + whitespace_clean instead of
BasicTokenizer), loaded from resources/clip-tokenizer and called as diffusers'
SD pipelines call it (padding to 77, truncation). The corpus is text as people
type or paste it: curly quotes and apostrophes, full- and half-width forms,
Latin ligatures, HTML entities (named, all-caps, numeric, invalid, and text
with "<" where ftfy leaves entities alone), runs of CJK, kana and Hangul, line
breaks of every kind, terminal colour escapes, control characters, C1
controls (not NUL: prompts are C strings), accents in both normal forms, emoji, and over-long prompts; plus
seeded random mixes of these pieces.

Not in the corpus: mojibake ("cafÃ©"), which ftfy repairs and the engine
does not (engine/io/ds-text-fix.h). The script checks that, for every prompt here,
ftfy's result is the same with its mojibake step turned off.

The slow CLIPTokenizer is gone from transformers 5, so this needs 4.x. Run from
the repository root (deterministic; a few seconds):
    pip install --target /tmp/tf4 transformers==4.46.3 "tokenizers<0.21"
    pip install ftfy==6.3.1
    PYTHONPATH=/tmp/tf4 python3 tests/reference/gen_tokenizer_ftfy_cases.py
"""

import json
import os
import random

import ftfy
import transformers
from transformers import CLIPTokenizer

assert int(transformers.__version__.split(".")[0]) < 5, "needs transformers 4.x"
assert ftfy.__version__ == "6.3.1", ftfy.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
TOK = os.path.join(HERE, "..", "..", "resources", "clip-tokenizer")
OUT = os.path.join(HERE, "..", "data", "tokenizer-ftfy-cases.json")

FIXED = [
    "a photo of a cat",
    "“a red circle” and ‘a blue square’",
    "the cat’s toy, isn’t it?",
    "ʼtwas a ‛strange‟ night",
    "ＬＯＵＤ　ＮＯＩＳＥＳ in ｆｕｌｌｗｉｄｔｈ",
    "ｶﾀｶﾅ ﾃﾞ ﾊﾝｶｸ and ﾟ",
    "ﬁne ﬂowers ﬀ ﬃ ﬄ ﬅ ﬆ Ĳssel ĳs Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ ŉ",
    "fish &amp; chips &lt;3 &gt; &quot;quoted&quot; &apos;",
    "caf&eacute; P&EACUTE;REZ &Eacute; &nTILDE; &NTILDE;",
    "it&#8217;s &#x2019;quoted&#X2019; &#65;&#x42; &#0; &#128; &#150; &#x80;",
    "&#13; &#1; &#x7f; &#xfffe; &#55296; &#1114112; &#99999999999999999999;",
    "&#59; &#x3b; &semi; &#12ab; &#x1g; &#; &#x; &;",
    "&notanentity; &AMP; &amp &ampamp; &CounterClockwiseContourIntegral;",
    "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; &abcdefghijklmnopqrstuvwx;",
    "&amp;amp; &amp;lt; double escaped",
    "<b>bold</b> &amp; &eacute; are left alone here",
    "first line &amp;\nsecond line <tag> &amp;\nthird &amp;",
    "line one\r\nline two\rline three\u2028four\u2029five\x85six",
    "\x1b[36;44mblue text\x1b[0m and \x1b[1mbold\x1b[m",
    "\x1b[ not an escape \x1b[12",
    "bell\x07 tab\tvt\x0bff\x0cfs\x1cus\x1fdel\x7f",
    "zero\u200bwidth\u200cjoin\u200dmarks \ufeffbom \u206a \ufff9\ufffa\ufffb\ufffc",
    "c1 \x80 \x81 \x8d \x91quoted\x92 \x93dq\x94 \x96 \x97 \x9f",
    "猫の絵",
    "一只猫坐在垫子上",
    "東京タワーの夜景、美しい",
    "한국어 문장입니다",
    "mixed 日本語 and english text",
    "ｈｅｌｌｏ　世界！",
    "café naïve résumé (composed)",
    "cafe\u0301 nai\u0308ve (decomposed)",
    "ΑΣ ΣΑΣ Σ ὈΔΥΣΣΕΎΣ",
    "İstanbul ǅ ß ẞ",
    "emoji 🐱🐶 👩‍👩‍👧 🇫🇷 ✔ ☃",
    "a\u3000b\u00a0c\u2003d\u2009e",
    "   leading and trailing   ",
    "",
    "!!! wow!! a red circle!",
    "<|startoftext|> a <|endoftext|> b",
    "“" + "very " * 40 + "long”",
    "ｆｕｌｌ " * 50,
    "&amp; " * 90,
]

PIECES = [
    "a", "red", "circle", "cat", "dog", "photo", "of", "the", " ", "  ", "\n", "\t",
    "“", "”", "‘", "’", "ʼ", "\"", "'", "ﬁ", "ﬂ", "ﬀ", "Ａ", "ｂ", "１", "！", "　", "ｶ", "ﾞ",
    "&amp;", "&lt;", "&eacute;", "&EACUTE;", "&#8217;", "&#x2019;", "&#150;", "&#0;",
    "&bogus;", "&", ";", "#", "<", ">", "猫", "絵", "の", "タ", "한", "é", "e\u0301",
    "\x1b[31m", "\x1b[0m", "\x07", "\x85", "\x92", "\u2028", "\r\n", "\r", "\ufeff",
    "\u200b", "🐱", "Σ", "İ", "ß", "!", "?", ",", ".", "'s", "'ll", "don't", "2024",
]


def main():
    tok = CLIPTokenizer(os.path.join(TOK, "vocab.json"), os.path.join(TOK, "merges.txt"),
                        pad_token="!")
    assert tok.fix_text is ftfy.fix_text
    rng = random.Random(20261202)
    prompts = list(FIXED)
    for _ in range(200):
        prompts.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14))))
    cases, changed = [], 0
    for p in prompts:
        # the engine's fix_text is ftfy's without the mojibake step: check that
        # leaving that step out changes nothing here (C1 controls, which it
        # would also read as Windows-1252, come out the same)
        assert ftfy.fix_text(p) == ftfy.fix_text(p, fix_encoding=False), \
            "mojibake repair matters for %r" % p
        ids = tok(p, padding="max_length", max_length=77, truncation=True).input_ids
        n = len(tok(p, truncation=True, max_length=77).input_ids)
        cases.append(dict(prompt=p, pad="!", ids=ids, n_tokens=n))
        changed += ftfy.fix_text(p) != p
    with open(OUT, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=True) for c in cases) + "\n]\n")
    print("wrote %s: %d prompts, %d of them changed by fix_text" % (OUT, len(cases), changed))


if __name__ == "__main__":
    main()
