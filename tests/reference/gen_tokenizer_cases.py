#!/usr/bin/env python3
"""gen_tokenizer_cases.py: reference token ids for tests/test-tokenizer.c.

Writes tests/data/tokenizer-cases.json, one case per line:
  {"prompt": str, "pad": "!" | "<|endoftext|>", "ids": [77 ids], "n_tokens": int,
   "n_pieces": int, "truncated": bool, "words": [[text, first, count], ...],
   "fast_same": bool}
from transformers' slow (pure Python) CLIPTokenizer loaded from
resources/clip-tokenizer/{vocab.json,merges.txt}, called as diffusers' SD
pipelines call it: tokenizer(prompt, padding="max_length", max_length=77,
truncation=True).

 - pad "!" is SD 2.x: the tokenizer is loaded from a temporary folder holding
   SD 2.1-base's tokenizer_config.json/special_tokens_map.json (pad_token "!"),
   and the script checks that CLIPTokenizer(vocab, merges, pad_token="!") gives
   the same ids. "!" is then an added special token: a literal "!" in the text is
   split out before cleaning and becomes id 0 (checked below).
 - pad "<|endoftext|>" is SD 1.x (the class default).
 - ftfy is made unimportable, so CLIPTokenizer falls back to its BasicTokenizer
   clean-up, which is what the C tokenizer implements.
 - n_pieces is len(tokenizer.tokenize(prompt)) (before truncation); n_tokens is
   min(n_pieces, 75) + 2; truncated is n_pieces > 75.
 - words: the prompt as BasicTokenizer cleans it (added tokens kept in place),
   split on whitespace; each word's text (truncated to 127 UTF-8 bytes), the
   position in ids of its first piece and its piece count, the pieces found by
   running the tokenizer's own pattern and BPE over the cleaned word (the script
   checks that the words' pieces put together are the prompt's). Words with no piece, or wholly cut by
   truncation, are left out; a word cut in two keeps its surviving pieces.
 - fast_same: whether CLIPTokenizerFast (the `tokenizers` library) gives the
   same ids. It is informational; the slow tokenizer is the reference. The
   differences are printed at the end.

The slow CLIPTokenizer is gone from transformers 5, so this needs 4.x. Run from
the repository root (deterministic; about 15 s):
    pip install --target /tmp/tf4 --no-deps transformers==4.57.6 tokenizers==0.22.1 \\
        huggingface_hub==0.36.0
    PYTHONPATH=/tmp/tf4 python3 tests/reference/gen_tokenizer_cases.py
"""

import json
import os
import random
import sys
import tempfile
import unicodedata

import regex

sys.modules["ftfy"] = None  # `import ftfy` now raises ImportError

import transformers  # noqa: E402
from transformers import CLIPTokenizer, CLIPTokenizerFast  # noqa: E402

if int(transformers.__version__.split(".")[0]) >= 5:
    sys.exit("needs transformers 4.x (the slow CLIPTokenizer); see the docstring")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
TOKENIZER = os.path.join(HERE, "..", "..", "resources", "clip-tokenizer")
VOCAB = os.path.join(TOKENIZER, "vocab.json")
MERGES = os.path.join(TOKENIZER, "merges.txt")
OUT = os.path.join(DATA, "tokenizer-cases.json")

SOT, EOT = "<|startoftext|>", "<|endoftext|>"

# SD 2.1-base's tokenizer/tokenizer_config.json and special_tokens_map.json
SD21_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", "content": SOT, "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", "content": EOT, "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "errors": "replace",
    "model_max_length": 77,
    "name_or_path": "stabilityai/stable-diffusion-2",
    "pad_token": "!",
    "special_tokens_map_file": "./special_tokens_map.json",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", "content": EOT, "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
}
SD21_SPECIAL = {
    "bos_token": {"content": SOT, "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False},
    "eos_token": {"content": EOT, "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False},
    "pad_token": "!",
    "unk_token": {"content": EOT, "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False},
}

LONG_CAPTION = (
    "a highly detailed oil painting of an old lighthouse standing on a rocky cliff above a "
    "stormy sea at dusk, with dramatic clouds, crashing waves, seagulls circling the tower, "
    "warm light spilling from the lantern room, a narrow path winding down to a small "
    "wooden dock where two fishing boats are tied, their hulls painted red and blue, nets "
    "drying on the rails, a lone figure in a yellow raincoat walking toward the door, "
    "puddles reflecting the sky, moss on the stones, trending on artstation, 8k, sharp "
    "focus, volumetric lighting, by a famous painter of the romantic era, masterpiece")

PROMPTS = [
    # plain captions
    "a photo of a cat",
    "A photo of a cat",
    "a photograph of an astronaut riding a horse",
    "a red car parked next to a blue house",
    "two dogs playing in the snow",
    "an oil painting of a sunset over the mountains",
    "a bowl of fruit on a wooden table",
    "a man wearing a hat and sunglasses",
    "the quick brown fox jumps over the lazy dog",
    "a close-up of a hummingbird drinking nectar",
    "a cozy living room with a fireplace, plants and a sleeping cat",
    "portrait of a woman, studio lighting, 85mm, bokeh",
    "a futuristic city skyline at night, neon lights, cyberpunk",
    "a watercolor painting of a lighthouse",
    "an isometric pixel art castle",
    "a bicycle leaning against a brick wall",
    "children flying kites on a windy beach",
    "a steaming cup of coffee next to an open book",
    "macro shot of a dewdrop on a spider web",
    "a medieval knight in shining armor",
    "a black and white photo of a train station in 1920",
    "sunflowers",
    "cat",
    "a",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism is a long word",
    "photorealistic hyperdetailed unreal engine render",
    "a dog and a cat and a bird and a fish",
    # questions
    "what is in this picture?",
    "Is there a dog in the image?",
    "How many people are standing near the bus?",
    "Where was this photo taken?",
    "why is the sky blue?",
    # punctuation runs
    "?!",
    "...",
    "--",
    "hello...world",
    "wait -- what?",
    "a cat, a dog; a bird: a fish.",
    "(a cat) [a dog] {a bird} <a fish>",
    "\"quoted text\" and 'single quotes'",
    "a cat!?",
    "!?!?",
    "?!?!?",
    "***stars***",
    "~tilde~ ^caret^ `backtick`",
    "a/b\\c|d",
    "__init__",
    "#hashtag @mention",
    "100% sure & 50$ / €5 or £3, ¥8",
    "C++ and C# and F#",
    "...and then...",
    "a--b---c----d",
    ":-) ;-( :D <3",
    "«guillemets» „low quotes“ ‘curly’ “double”",
    "em—dash and en–dash",
    "bullet • point · middle",
    # numbers
    "1999",
    "3.14",
    "10,000",
    "1,000,000 people",
    "-42",
    "+1",
    "1e10",
    "0x1F",
    "2nd place, 3rd row, 21st century",
    "100km/h",
    "4K 8K 1080p",
    "2023-05-17",
    "12:30pm",
    "007",
    "3/4 cup",
    "x² + y² = z²",
    "½ and ¼ and ¾",
    "Ⅻ Roman numerals ⅷ",
    "٣ arabic-indic digits ٤٥",
    "१२३ devanagari digits",
    "①②③ circled",
    # contractions
    "don't",
    "it's",
    "we'll",
    "I'M",
    "I'm",
    "they're",
    "you've",
    "I'd",
    "she'S",
    "WE'LL",
    "THEY'RE",
    "'s",
    "''s",
    "'''",
    "rock 'n' roll",
    "O'Neil's cat",
    "cats' toys",
    "it’s a curly apostrophe",
    "can't won't shouldn't",
    "'re're",
    "x'sy",
    "'ll've'd",
    "'ſ and 'ſt",
    # mixed case
    "HeLLo WoRLD",
    "iPhone",
    "NASA JPEG HTML",
    "McDonald's",
    "ALL CAPS PROMPT",
    # whitespace
    "  leading spaces",
    "trailing spaces   ",
    "   both   ",
    "multiple    spaces   between",
    "tab\tseparated\twords",
    "new\nline",
    "windows\r\nline\r\nendings",
    "\t\n mixed \r\n\t whitespace \n",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "em\u2003space and thin\u2009space",
    "line\u2028separator and paragraph\u2029separator",
    "zero\u200bwidth\u200bspace",
    "soft\u00adhyphen",
    "byte\ufefforder mark",
    "\ufeffleading bom",
    "bell\x07char and escape\x1b[0m",
    "start\x01of\x02heading\x1f",
    "replacement\ufffdchar",
    "del\x7fchar",
    "\x85next line",
    "word\u200djoiner",
    "left\u200eto\u200fright marks",
    "",
    " ",
    "   ",
    "\t",
    "\n\n",
    " \t\r\n \u3000 ",
    "\x01\x02\x03",
    # unicode: Latin
    "café",
    "cafe\u0301",
    "naïve résumé",
    "über straße",
    "STRASSE STRAßE",
    "ẞ capital sharp s",
    "niño año mañana",
    "ÀÉÎÕÜ àéîõü",
    "Ångström \u212b sign \u2126 ohm",
    "a\u0323\u0302 a\u0302\u0323 \u1ead",
    "o\u0308\u0304 \u022b",
    "q\u0307\u0323",
    "J\u030c \u01f0 j\u030c",
    "e\u0301\u0301\u0301",
    "\u0301 leading combining",
    "x\u0345",
    "ÆØÅ æøå",
    "Łódź",
    "İstanbul",
    "ISTANBUL ıi İI",
    "Ǆ ǅ ǆ dž",
    "ﬁ ﬂ ligatures",
    "ſ long s",
    "Ⓐ Ⓑ circled",
    "ÇA VA?",
    # Greek, Cyrillic, others
    "ΟΔΟΣ ΣΑΣ",
    "Σ",
    "ΑΣ!Σ",
    "ΑΣ.",
    "Α'Σ'",
    "ΣΣ ΑΣΑ ΑΣ\u0301Α ΑΣ\u0301",
    "Ελληνικά γράμματα",
    "Привет, мир!",
    "ЁЖИК в тумане",
    "Україна і Ґ",
    "שלום עולם",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "ქართული",
    "Հայերեն",
    "አማርኛ",
    # CJK, kana, Hangul
    "猫",
    "一只猫坐在桌子上",
    "猫と犬",
    "東京タワーの写真",
    "ひらがな カタカナ",
    "ｶﾀｶﾅ halfwidth",
    "한국어 고양이",
    "\u1100\u1161\u11a8 jamo",
    "abc漢字def",
    "漢字!漢字",
    "\uf900 compatibility ideograph",
    "\U0002f800 \U00020000 extension",
    "ＡＢＣ１２３ full-width",
    "ｈｅｌｌｏ！ｗｏｒｌｄ？",
    # emoji and symbols
    "😀",
    "a cat 🐱 and a dog 🐶",
    "👍🏽 thumbs up",
    "👨‍👩‍👧 family",
    "🇺🇸🇯🇵 flags",
    "❤️ heart",
    "★☆✓✗",
    "→ ← ↑ ↓",
    "∑ ∫ √ ∞ ≠ ≤",
    "♠♣♥♦",
    "©®™",
    "°C and °F",
    "\U0001f600\U0001f600\U0001f600\U0001f600\U0001f600",
    # URLs, emails, paths
    "https://www.example.com/path?query=1&x=y#frag",
    "http://localhost:8080",
    "user.name+tag@example.co.uk",
    "C:\\Users\\me\\Pictures\\cat.png",
    "/usr/local/bin/python3",
    "www.github.com",
    "file_name_with_underscores.jpg",
    # "!" and added tokens
    "!",
    "!!",
    "!!!",
    "hello!",
    "hello!world",
    "wow!! amazing!!!",
    "! leading",
    "trailing !",
    "a ! b",
    "?!hello!?",
    "!?",
    "¡hola!",
    "<|startoftext|>",
    "<|endoftext|>",
    "a <|startoftext|> b",
    "a<|endoftext|>b",
    "<|startoftext|>a photo<|endoftext|>",
    "<|STARTOFTEXT|>",
    "<|EndOfText|> mixed case",
    "<|ſtartoftext|>",
    "<|start<|endoftext|>",
    "<|startoftext|",
    "<|endoftext|><|endoftext|>",
    "x<|startoftext|>!y",
    "? <|startoftext|>",
    "?<|startoftext|>",
    "<|startoftext|>'s",
    # long words and prompts
    "a" * 300,
    "ab" * 150,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 80 + " cat",
    "é" * 100,
    "猫" * 90,
    "!" * 80,
    "1234567890" * 10,
    "supercalifragilistic" * 8,
    LONG_CAPTION,
    LONG_CAPTION.upper(),
    " ".join(["cat"] * 120),
    "a " * 75,
    "a " * 76,
    "a " * 74 + "hello!world",
    "a " * 73 + "antidisestablishmentarianism",
    " ".join("word%d" % i for i in range(60)),
    "ü" * 130,
    "Ǆ" * 64,
    "long" * 40 + " tail",
]

SD1_PROMPTS = [
    "a photo of a cat",
    "Hello, world!",
    "hello!world",
    "!",
    "!!!",
    "?!",
    "¡hola!",
    "<|startoftext|>a photo<|endoftext|>",
    "ΑΣ!Σ",
    "",
    "don't stop!",
    "a " * 76,
    LONG_CAPTION,
    "wow!! amazing!!!",
]


def random_prompts(n, seed=2024):
    """Prompts from a mixed alphabet, to reach combinations nobody thought of."""
    rng = random.Random(seed)
    alphabet = (list("abcxyzABCXYZ0123456789 !?.,'-_/<|>") + [" ", " ", " ", "\t", "\n"]
                + list("éüßñİıΣσςΑΩЖжЁ猫漢かナ한가\u0301\u0308\u0323\u0345\u200b\u00a0😀👍🏽")
                + ["'s", "'ll", "'re", "<|startoftext|>", "<|endoftext|>", "ſ", "ǅ", "½", "Ⅻ"])
    out = []
    for _ in range(n):
        length = rng.randint(1, 40)
        out.append("".join(rng.choice(alphabet) for _ in range(length)))
    return out


def clip_utf8(text, limit=127):
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    b = b[:limit]
    while b:
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            b = b[:-1]
    return ""


def cleaned_words(tok, prompt):
    """The prompt as BasicTokenizer cleans it, added tokens kept, split on whitespace."""
    added = set(tok.added_tokens_encoder)
    cleaned = ""
    for seg in tok.tokens_trie.split(prompt):
        if seg in added:
            cleaned += seg
            continue
        spaced = tok.nlp._tokenize_chinese_chars(tok.nlp._clean_text(seg))
        spaced = unicodedata.normalize("NFC", spaced)
        cleaned += (" " if spaced[:1].isspace() else "") + " ".join(tok.nlp.tokenize(seg))
        cleaned += " " if spaced[-1:].isspace() else ""
    return cleaned.split()


def pieces_of_cleaned(tok, text):
    """CLIPTokenizer's pieces for text that is already cleaned: the added-token
    split, pattern and BPE, without cleaning again (NFC after lower-casing could
    change the text: "J\u030c" lowers to "j\u030c", which NFC would compose)."""
    out = []
    for seg in tok.tokens_trie.split(text):
        if seg in tok.added_tokens_encoder:
            out.append(seg)
            continue
        for piece in regex.findall(tok.pat, seg):
            piece = "".join(tok.byte_encoder[b] for b in piece.encode("utf-8"))
            out.extend(tok.bpe(piece).split(" "))
    return out


def words_of(tok, prompt, pieces):
    words = []
    at = 0
    all_pieces = []
    for w in cleaned_words(tok, prompt):
        wp = pieces_of_cleaned(tok, w)
        all_pieces += wp
        if wp and at < 75:
            words.append([clip_utf8(w), 1 + at, min(len(wp), 75 - at)])
        at += len(wp)
    assert all_pieces == pieces, (prompt, all_pieces, pieces)
    return words


def make_case(tok, fast, prompt, pad):
    enc = tok(prompt, padding="max_length", max_length=77, truncation=True)
    ids = enc["input_ids"]
    pieces = tok.tokenize(prompt)
    n_pieces = len(pieces)
    kept = min(n_pieces, 75)
    assert len(ids) == 77
    assert ids[0] == 49406 and ids[1 + kept] == 49407
    assert ids[1:1 + kept] == tok.convert_tokens_to_ids(pieces)[:kept]
    assert all(i == tok.pad_token_id for i in ids[2 + kept:])
    fast_ids = fast(prompt, padding="max_length", max_length=77, truncation=True)["input_ids"]
    return {
        "prompt": prompt,
        "pad": pad,
        "ids": ids,
        "n_tokens": kept + 2,
        "n_pieces": n_pieces,
        "truncated": n_pieces > 75,
        "words": words_of(tok, prompt, pieces),
        "fast_same": fast_ids == ids,
    }


def main():
    with tempfile.TemporaryDirectory() as d:
        for name in ("vocab.json", "merges.txt"):
            with open(os.path.join(TOKENIZER, name), "rb") as src, \
                    open(os.path.join(d, name), "wb") as dst:
                dst.write(src.read())
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(SD21_CONFIG, f)
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump(SD21_SPECIAL, f)
        sd2 = CLIPTokenizer.from_pretrained(d)
    assert sd2.fix_text is None, "ftfy must not be importable"
    sd2_plain = CLIPTokenizer(VOCAB, MERGES, pad_token="!")
    sd1 = CLIPTokenizer(VOCAB, MERGES)
    sd2_fast = CLIPTokenizerFast(vocab_file=VOCAB, merges_file=MERGES, pad_token="!")
    sd1_fast = CLIPTokenizerFast(vocab_file=VOCAB, merges_file=MERGES)
    assert sd2.pad_token_id == 0 and sd1.pad_token_id == 49407

    # The SD 2.x quirk: "!" is an added token, split out whole.
    assert sd2.tokenize("hello!world") == ["hello</w>", "!", "world</w>"]
    assert sd2("!!")["input_ids"] == [49406, 0, 0, 49407]
    assert sd1("!!")["input_ids"] == [49406, sd1.convert_tokens_to_ids("!!</w>"), 49407]
    # docs/models.md §5.4 test vector
    assert sd1("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]

    prompts = PROMPTS + random_prompts(60)
    assert not any("\x00" in p for p in prompts), "the C API takes NUL-terminated prompts"
    cases = []
    for p in prompts:
        cases.append(make_case(sd2, sd2_fast, p, "!"))
        same = sd2_plain(p, padding="max_length", max_length=77, truncation=True)["input_ids"]
        assert same == cases[-1]["ids"], ("SD 2.1 config vs pad_token='!'", p)
    for p in SD1_PROMPTS:
        cases.append(make_case(sd1, sd1_fast, p, "<|endoftext|>"))

    with open(OUT, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":"))
                           for c in cases))
        f.write("\n]\n")
    diff = [c for c in cases if not c["fast_same"]]
    print(f"wrote {OUT}: {len(cases)} cases ({sum(c['truncated'] for c in cases)} truncated); "
          f"CLIPTokenizerFast differs on {len(diff)}:", file=sys.stderr)
    for c in diff:
        print("  " + json.dumps(c["prompt"])[:70] + f" ({c['pad']})", file=sys.stderr)


if __name__ == "__main__":
    main()
