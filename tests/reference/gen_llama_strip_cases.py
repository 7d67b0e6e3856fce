#!/usr/bin/env python3
"""Expected ids for test-llama-tokenizer's test_strip_runs: added tokens
that strip white space (lstrip / rstrip) over runs of white space, where
their matches fall inside each other's stripped runs. Made by the
`tokenizers` library (pip install tokenizers); prints the C table that the
test holds. Not run by CI.

    python3 tests/reference/gen_llama_strip_cases.py
"""
import json

from tokenizers import Tokenizer

VOCAB = {"<unk>": 0, "a": 1, " ": 2, "\n": 3, "b": 4}


def tokenizer_json(lstrip, rstrip, space_added):
    added = [{"id": 3, "content": "\n", "single_word": False, "lstrip": lstrip,
              "rstrip": rstrip, "normalized": False, "special": True}]
    if space_added:
        added.append({"id": 2, "content": " ", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": False})
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": VOCAB, "merges": []},
    }


VARIANTS = [(True, False, False), (False, True, False), (True, True, False),
            (False, True, True), (True, True, True)]
TEXTS = ["a\n \n\n a", " \n\na \n b\n", "\n\n\n", "a  \n  a", "a\u3000\n\u00a0\n a",
         "\n \n \n b", "b \u2028\n\u3000 \n"]


def c_string(s):
    out = ""
    for ch in s.encode("utf-8"):
        out += chr(ch) if 0x20 <= ch < 0x7F and ch not in (0x22, 0x5C) else "\\x%02x\" \"" % ch
    return '"' + out + '"'


def main():
    print("/* made by tests/reference/gen_llama_strip_cases.py */")
    for lstrip, rstrip, space in VARIANTS:
        tok = Tokenizer.from_str(json.dumps(tokenizer_json(lstrip, rstrip, space)))
        for text in TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            print("  { %d, %d, %d, %s, { %s }, %d }," % (
                lstrip, rstrip, space, c_string(text), ", ".join(map(str, ids)), len(ids)))


if __name__ == "__main__":
    main()
