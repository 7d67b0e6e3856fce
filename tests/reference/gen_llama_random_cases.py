#!/usr/bin/env python3
"""gen_llama_random_cases.py: random tokenizer.json pipelines and texts, with
the `tokenizers` library's ids and decodes, for test-llama-tokenizer's
test_random_pipelines.

The hand-made fixtures (gen_llama_tokenizer.py) fix three pipelines; this
script draws many: every combination the C tokenizer claims to run
(ds-llama-tokenizer.h) is reachable, in random order and with random options:
  - model: BPE over a small alphabet with random merges, byte_fallback with
    only some of the <0xNN> pieces present, fuse_unk, ignore_merges;
  - added tokens: random contents (whitespace, "▁", pieces of the vocabulary,
    markup) with random special / normalized / lstrip / rstrip flags, their
    ids as the library gives them (a content in the vocabulary keeps its id,
    the others follow the vocabulary); never two "normalized" ones that
    normalise to the same text, nor one that normalises to nothing (see
    ambiguous());
  - normalizer: none, Prepend, Replace, or a Sequence of them;
  - pre-tokenizer: none or Metaspace (replacement "▁" or "_", prepend_scheme
    always / first / never, split or not, or the older add_prefix_space form);
  - decoder: none, Metaspace, or a Sequence of Replace, ByteFallback, Fuse,
    Strip and Metaspace steps (after a Fuse no ByteFallback and only
    one-character Replace patterns, which is what the C tokenizer takes);
  - post-processor: none or TemplateProcessing with BOS and/or EOS.
Texts are drawn from letters, accents, CJK, an emoji, runs of white space of
several kinds, "▁" and the added tokens' contents.

Writes tests/data/llama-tokenizer/random-cases.json:
  {"tokenizers": [tokenizer.json objects],
   "cases": [{"tokenizer": index, "text", "ids", "ids_plain",
              "decoded", "decoded_skip", "raw", "raw_decoded"}]}
ids / ids_plain: encode (text, add_special_tokens=True / False);
decoded / decoded_skip: decode (ids, skip_special_tokens=False / True);
raw: random ids of the whole range (never <0x00>, whose NUL the C strings
cannot hold), raw_decoded: decode (raw, skip_special_tokens=False).

Seeded (random.Random(SEED)); the output depends only on the seed and the
library's version (the committed file: tokenizers 0.23.3). Not run by CI:
    pip install tokenizers
    python3 tests/reference/gen_llama_random_cases.py [--fused] [N_TOKENIZERS [SEED [OUT]]]
(other seeds and sizes, copied over the committed file for a run of
test-llama-tokenizer, explore further; commit only the default. --fused
draws decoders around a Fuse (make_fused_decoder); 400 of them with seed 11
found the stream's Metaspace-before-Fuse bug, test_stream_metaspace_first.)
"""

import json
import os
import random
import sys

from tokenizers import Tokenizer

SEED = 20261203
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "llama-tokenizer", "random-cases.json")
META = "\u2581"
CHARS = ["a", "b", "c", "d", " ", "\n", "\t", META, "\u00e9", "e\u0301", "\u65e5", "\u672c",
         "\U0001F642", "\u3000", "\u00a0", "<", ">", "/", "x", "_"]
ADDED = ["<x>", "<s>", "</s>", "\n", " ", "  ", META, "ab", "a", "b" + META, "\u65e5", "<pad>",
         "\t\n", "x>"]


def byte_piece(b):
    return "<0x%02X>" % b


def make_model(rng):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    byte_fallback = rng.random() < 0.6
    if byte_fallback:
        # Some bytes only: a character whose bytes are not all there is <unk>.
        wanted = set(rng.sample(range(1, 256), 40))
        for ch in ["\u00e9", "\u65e5", "\U0001F642", "\u0301", "\u3000"]:
            if rng.random() < 0.7:
                wanted.update(ch.encode("utf-8"))
        for b in sorted(wanted):
            vocab[byte_piece(b)] = len(vocab)
    for ch in CHARS:
        if len(ch) == 1 and ch not in vocab and rng.random() < 0.85:
            vocab[ch] = len(vocab)
    merges = []
    pieces = [p for p in vocab if not p.startswith("<")]
    for _ in range(rng.randint(0, 40)):
        a, b = rng.choice(pieces), rng.choice(pieces)
        if (a, b) in merges or len(a + b) > 6:
            continue
        merges.append((a, b))
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            pieces.append(a + b)
    # The "a b" string form cannot hold a piece with a space in it.
    pair_form = rng.random() < 0.5 or any(" " in a + b for a, b in merges)
    return {
        "type": "BPE", "dropout": None, "unk_token": "<unk>",
        "continuing_subword_prefix": None, "end_of_word_suffix": None,
        "fuse_unk": rng.random() < 0.5, "byte_fallback": byte_fallback,
        "ignore_merges": rng.random() < 0.3, "vocab": vocab,
        "merges": [[a, b] if pair_form else a + " " + b for a, b in merges],
    }


def make_added(rng, vocab):
    added, next_id = [], len(vocab)
    for content in rng.sample(ADDED, rng.randint(0, 5)):
        if content in vocab:
            tid = vocab[content]
        else:
            tid = next_id
            next_id += 1
        special = rng.random() < 0.5
        added.append({"id": tid, "content": content, "single_word": False,
                      "lstrip": rng.random() < 0.3, "rstrip": rng.random() < 0.3,
                      "normalized": rng.random() < 0.3, "special": special})
    return added


def replace(pattern, content):
    return {"type": "Replace", "pattern": {"String": pattern}, "content": content}


def make_normalizer(rng):
    steps = []
    for _ in range(rng.choice([0, 0, 1, 2, 2, 3])):
        if rng.random() < 0.35:
            steps.append({"type": "Prepend", "prepend": rng.choice([META, META, "x", "\u00e9"])})
        else:
            steps.append(replace(*rng.choice([(" ", META), (" ", META), ("a", "bb"), ("\n", ""),
                                               ("ab", "c"), (META, " "), ("\t", META + META),
                                               ("a", "xy"), ("\t", ""), ("b", "c")])))
    if not steps:
        return None
    if len(steps) == 1 and rng.random() < 0.5:
        return steps[0]
    return {"type": "Sequence", "normalizers": steps}


def metaspace(rng):
    rep = META if rng.random() < 0.8 else "_"
    if rng.random() < 0.15:  # the form older versions wrote: "always", split
        return {"type": "Metaspace", "replacement": rep, "add_prefix_space": True}
    return {"type": "Metaspace", "replacement": rep,
            "prepend_scheme": rng.choice(["always", "first", "never"]),
            "split": rng.random() < 0.5}


def make_pre(rng):
    if rng.random() < 0.5:
        return None
    m = metaspace(rng)
    if rng.random() < 0.2:
        return {"type": "Sequence", "pretokenizers": [m]}
    return m


def make_decoder(rng):
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.3:
        return metaspace(rng)
    # After a Fuse the C tokenizer refuses ByteFallback and Replace patterns
    # of two or more characters (ds-llama-tokenizer.h): not drawn there.
    steps, fused = [], False
    for _ in range(rng.randint(1, 5)):
        k = rng.choice(["replace", "replace", "bytes", "fuse", "strip", "meta"])
        if k == "replace":
            pairs = [(META, " "), (META, " "), ("a", "A"), (" ", ""), ("b", "bb")]
            if not fused:
                pairs += [("ab", "X"), (META + META, "\t")]
            steps.append(replace(*rng.choice(pairs)))
        elif k == "bytes":
            if not fused:
                steps.append({"type": "ByteFallback"})
        elif k == "fuse":
            steps.append({"type": "Fuse"})
            fused = True
        elif k == "strip":
            steps.append({"type": "Strip", "content": rng.choice([" ", " ", "a", META]),
                          "start": rng.randint(0, 2), "stop": rng.randint(0, 2)})
        else:
            steps.append(metaspace(rng))
    return {"type": "Sequence", "decoders": steps}


def make_fused_decoder(rng):
    """--fused: a Sequence with a Fuse in it always, and more of what comes
    after one (Strips of either end, Replace steps that delete a character,
    Metaspace): where a stream's window and the whole text part ways."""
    steps = []
    for _ in range(rng.randint(0, 2)):
        k = rng.choice(["replace", "bytes", "strip", "meta"])
        if k == "replace":
            steps.append(replace(*rng.choice([(META, " "), ("a", "A"), (" ", ""), ("ab", "X")])))
        elif k == "bytes":
            steps.append({"type": "ByteFallback"})
        elif k == "strip":
            steps.append({"type": "Strip", "content": rng.choice([" ", "a", META]),
                          "start": rng.randint(0, 2), "stop": rng.randint(0, 2)})
        else:
            steps.append(metaspace(rng))
    steps.append({"type": "Fuse"})
    for _ in range(rng.randint(1, 4)):
        k = rng.choice(["strip", "strip", "delete", "delete", "replace", "meta"])
        if k == "strip":
            steps.append({"type": "Strip", "content": rng.choice([" ", "a", META, "b", "\n"]),
                          "start": rng.randint(0, 2), "stop": rng.randint(0, 2)})
        elif k == "delete":
            steps.append(replace(rng.choice([" ", "a", META, "\n", "b", "x"]), ""))
        elif k == "replace":
            steps.append(replace(*rng.choice([(META, " "), ("a", " "), ("b", "a"), (" ", "\n")])))
        else:
            steps.append(metaspace(rng))
    return {"type": "Sequence", "decoders": steps}


def make_post(rng, vocab):
    if rng.random() < 0.35:
        return None
    single = []
    if rng.random() < 0.8:
        single.append({"SpecialToken": {"id": "<s>", "type_id": 0}})
    single.append({"Sequence": {"id": "A", "type_id": 0}})
    if rng.random() < 0.4:
        single.append({"SpecialToken": {"id": "</s>", "type_id": 0}})
    specials = {}
    for p in single:
        if "SpecialToken" in p:
            name = p["SpecialToken"]["id"]
            specials[name] = {"id": name, "ids": [vocab[name]], "tokens": [name]}
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    return {"type": "TemplateProcessing", "single": single, "pair": pair,
            "special_tokens": specials}


def make_tokenizer(rng):
    model = make_model(rng)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": make_added(rng, model["vocab"]),
        "normalizer": make_normalizer(rng), "pre_tokenizer": make_pre(rng),
        "post_processor": make_post(rng, model["vocab"]), "decoder": make_decoder(rng),
        "model": model,
    }


def make_text(rng, added):
    parts = CHARS + [a["content"] for a in added] + ["   ", "\n\n", " \n "]
    return "".join(rng.choice(parts) for _ in range(rng.randint(0, 24)))


def ambiguous(tok, added):
    """Whether two "normalized" added tokens normalise to the same text, or
    one to nothing. The library then matches one of the two chosen by hash
    order, which changes from process to process (tokenizers 0.23.3), so such
    files have no one answer to check against; and it can try to allocate
    gigabytes for the empty one (the C tokenizer never matches it)."""
    patterns = [tok.normalizer.normalize_str(a["content"]) if tok.normalizer else a["content"]
                for a in added if a["normalized"]]
    return len(set(patterns)) < len(patterns) or "" in patterns


def library(call):
    """call's result, or None where the library panics. It does for a Strip
    decoder given no ids (an index out of bounds in strip.rs) and for an added
    token stripping both sides whose stripped run covers another's
    ("AddedVocabulary bad split"); the C test skips those values."""
    try:
        return call()
    except BaseException as e:  # pyo3's PanicException is a BaseException
        if type(e).__name__ != "PanicException":
            raise
        return None


def main():
    global make_decoder
    args = sys.argv[1:]
    if "--fused" in args:
        args.remove("--fused")
        make_decoder = make_fused_decoder
    n_tok = int(args[0]) if len(args) > 0 else 120
    seed = int(args[1]) if len(args) > 1 else SEED
    out = args[2] if len(args) > 2 else OUT
    rng = random.Random(seed)
    toks, cases = [], []
    while len(toks) < n_tok:
        spec = make_tokenizer(rng)
        tok = Tokenizer.from_str(json.dumps(spec))
        if ambiguous(tok, spec["added_tokens"]):
            continue
        index = len(toks)
        toks.append(spec)
        n_ids = tok.get_vocab_size(with_added_tokens=True)
        zero = tok.token_to_id(byte_piece(0))
        for _ in range(12):
            text = make_text(rng, spec["added_tokens"])
            ids = library(lambda: tok.encode(text, add_special_tokens=True).ids)
            plain = library(lambda: tok.encode(text, add_special_tokens=False).ids)
            raw = [i for i in (rng.randrange(n_ids) for _ in range(rng.randint(0, 16)))
                   if i != zero]
            cases.append({"tokenizer": index, "text": text, "ids": ids, "ids_plain": plain,
                          "decoded": None if ids is None else library(lambda: tok.decode(ids, skip_special_tokens=False)),
                          "decoded_skip": None if ids is None else library(lambda: tok.decode(ids, skip_special_tokens=True)),
                          "raw": raw,
                          "raw_decoded": library(lambda: tok.decode(raw, skip_special_tokens=False))})
    panics = sum(v is None for c in cases for v in c.values())
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"tokenizers": toks, "cases": cases}, f, ensure_ascii=False,
                  separators=(",", ":"))
        f.write("\n")
    print("%s: %d tokenizers, %d cases, %d library panics (null)" % (out, len(toks), len(cases),
                                                                       panics))


if __name__ == "__main__":
    main()
