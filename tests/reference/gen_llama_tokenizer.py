#!/usr/bin/env python3
"""gen_llama_tokenizer.py: small LLaMA-style tokenizers and reference ids for
tests/test-llama-tokenizer.c.

Trains a byte-fallback BPE with the `tokenizers` library in LLaMA-2's setup
(docs/models.md §7.7): <unk>/<s>/</s> at ids 0/1/2, the byte pieces
<0x00>..<0xFF> at 3..258, about 2000 pieces, "▁" for spaces, no merges across
a space-to-word boundary except runs of "▁", then the added tokens <image>
(= vocab size) and <pad> (= vocab size + 1) as llava-hf adds them. The corpus
is built into this script (English prose and code, punctuation, digits, runs
of spaces, tabs and newlines, accents, a little CJK, emoji and RTL text). The
trainer breaks ties differently from run to run, so a rerun writes a slightly
different vocabulary; cases.json always goes with the files written beside
it, and the C test checks properties that hold for any run.

Writes, under tests/data/llama-tokenizer/:
  legacy/{tokenizer.json,tokenizer_config.json}
      what transformers' LlamaConverter writes for legacy=True (the older
      llava-hf files): normalizer Sequence[Prepend("▁"), Replace(" ", "▁")],
      no pre-tokenizer, merges as "a b" strings; every segment of text after a
      special token gets a "▁" in front.
  nonlegacy/{tokenizer.json,tokenizer_config.json}
      legacy=False: no normalizer, pre-tokenizer Metaspace(prepend_scheme
      "first", split false), merges as ["a", "b"] pairs; only the start of the
      text gets the "▁".
  tiny/{tokenizer.json,tokenizer_config.json}
      a hand-written 40-piece BPE without byte fallback (unknown characters
      become <unk>, fused), ignore_merges true, Metaspace("always", split true)
      for both pre-tokenizer and decoder, an lstrip/rstrip added token and a
      normalized one; it exercises the paths the LLaMA files do not.
  cases.json
      {"variants": {name: {"vocab_size", "add_bos", "add_eos"}},
       "cases": [{"variant", "text", "ids", "decoded", "decoded_skip",
                  "hf_ids"}]}
      ids: Tokenizer.encode(text).ids (add_special_tokens=True); decoded /
      decoded_skip: Tokenizer.decode(ids, skip_special_tokens=False / True);
      hf_ids: transformers' AutoTokenizer on the folder (null when it does
      not load). transformers 4.x (LlamaTokenizerFast) runs tokenizer.json as
      it is, and the script then requires hf_ids == ids; transformers 5
      rebuilds the pipeline from the config's legacy flag (Metaspace "first"
      for legacy=false: the same ids; Metaspace "always" for legacy=true,
      which differs from the Prepend normalizer where a piece of text starts
      with a space), so with it the script only counts the differences. The C
      tokenizer follows the `tokenizers` library (ids).
The prompts of cases.json are held out: none is a line of the training corpus.

Run from the repository root (about 10 s; the committed data was made with
tokenizers 0.23.3 and, for hf_ids, transformers 4.57.6):
    pip install --target /tmp/tf4 --no-deps transformers==4.57.6 tokenizers==0.22.1 \\
        huggingface_hub==0.36.0
    PYTHONPATH=/tmp/tf4 python3 tests/reference/gen_llama_tokenizer.py
"""

import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "llama-tokenizer")
VOCAB_SIZE = 2000
BYTES = ["<0x%02X>" % b for b in range(256)]
SPECIALS = ["<unk>", "<s>", "</s>"]

ENGLISH = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "What is shown in this image? Describe it in detail.",
    "The picture shows a red car parked next to a blue house on a quiet street.",
    "Two dogs are playing in the snow while a child watches from the window.",
    "There is a bowl of fruit on a wooden table: apples, pears and three bananas.",
    "How many people are standing near the bus? I count seven of them.",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "Please answer with a single word or phrase.",
    "Answer the question using a single word or phrase.",
    "A photograph of an astronaut riding a horse on the moon.",
    "The weather today is sunny with a high of 25 degrees and a light breeze.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped out first.",
    "Prices rose 3.5% in May, to $1,299.99 for the base model (up from $1,199).",
    "Call me at 555-0134 or write to info@example.com before 12:30pm.",
    "Don't worry, it's fine: we'll see what they're doing and I'd say you've won.",
    "The mitochondria is the powerhouse of the cell.",
    "Water boils at 100 degrees Celsius at sea level.",
    "A man wearing a hat and sunglasses is reading a newspaper on a bench.",
    "Is the traffic light green or red? It is red, so the cars have stopped.",
    "The kitchen has white cabinets, a steel fridge, and a window above the sink.",
    "Look at the left side of the photo: a cat sleeps on the sofa.",
    "Yes. No. Maybe... Who knows?! (Nobody.) [Really] {Truly} <Surely>",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14159 -42 +7 1e-5",
    "Lists:\n- first item\n- second item\n- third item\n",
    "Tabs\tbetween\twords\tand\ttrailing\ttabs\t\t",
    "Many    spaces   between     words  and  at   the end   ",
    "Line one\nLine two\n\nLine four after an empty line\r\nWindows line\n",
]

CODE = [
    "def forward(self, x):\n    h = self.norm(x)\n    return x + self.mlp(h)\n",
    "for (int i = 0; i < n; i++)\n  {\n    sum += a[i] * b[i];\n  }\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "x = [1, 2, 3]; y = {\"a\": 1, \"b\": 2}; print(x[0] + y[\"a\"])",
    "SELECT name, count(*) FROM users WHERE age > 21 GROUP BY name;",
    "<html><body><p class=\"note\">Hello &amp; welcome</p></body></html>",
    "git commit -m \"fix: handle empty input\" && git push origin main",
]

OTHER = [
    "Café, naïve, résumé, façade, jalapeño, Ærøskøbing, Straße, Łódź, Čeština.",
    "Ça va très bien, merci ! Où est la bibliothèque ? À côté de l'église.",
    "Der Bär läuft über die Brücke und frühstückt Äpfel mit Öl.",
    "¿Dónde está el baño? ¡Muy bien! El niño comió piña y ñoquis.",
    "Привет, как дела? Это кошка на диване.",
    "Γειά σου κόσμε, αυτή είναι μια γάτα.",
    "这是一只猫。它在沙发上睡觉。我们今天去公园。",
    "日本語のテキスト：猫がソファで寝ています。",
    "한국어 문장입니다. 고양이가 소파에서 자고 있어요.",
    "مرحبا بالعالم، هذه قطة على الأريكة.",
    "שלום עולם, זה חתול על הספה.",
    "Emoji: 😀 😂 🐱 🐶 🚗 🏠 ❤️ 👍 🎉 — and a flag 🇫🇷.",
    "Math: x² + y² = z², α + β = γ, ∑ᵢ aᵢ, √2 ≈ 1.414, ∞ ≠ 0, ½ ¼ ¾.",
    "Quotes: “double” ‘single’ «guillemets» „low“ — em dash – en dash … ellipsis",
    "USER: <image>\nWhat is this? ASSISTANT: It is a cat.</s>",
]

HELD_OUT = [
    "",
    " ",
    "  ",
    "\n",
    "\t",
    "a",
    "A",
    "Hello",
    "hello world",
    " hello world",
    "hello world ",
    "  leading two spaces",
    "trailing two spaces  ",
    "What color is the car?",
    "How many animals are in the picture?",
    "Describe the scene in one sentence.",
    "Is there a person riding a bicycle?",
    "What is the man holding in his left hand?",
    "Which room of the house is this?",
    "Can you read the text on the sign?",
    "What time of day does it look like?",
    "Why might the road be wet?",
    "Count the windows on the building.",
    "Tell me a short story about this photo.",
    "USER: <image>\nWhat is this? ASSISTANT:",
    "USER: <image>\nDescribe the image in detail. ASSISTANT:",
    "A chat between a curious human and an artificial intelligence assistant. USER: <image>\n"
    "What is unusual about this image? ASSISTANT:",
    "<image>",
    "<image><image>",
    "<image>\n",
    "<image> hello",
    "hello<image>world",
    "hello <image> world",
    "<s>",
    "<s>hello",
    "<s> hello",
    "hello</s>",
    "hello </s> world",
    "</s></s>",
    "<unk>",
    "<pad><pad>",
    "<pad>text<pad>",
    "<imag",
    "<image",
    "image>",
    "<<image>>",
    "< image>",
    "<IMAGE>",
    "<0x41>",
    "ASSISTANT: The cat is sleeping.</s>USER: Why?",
    "1234567890",
    "3.14159265358979",
    "-17.5°C at 06:45",
    "$1,000,000.00",
    "2024-01-31T23:59:59Z",
    "x^2 + 3x - 7 = 0",
    "a+b=c",
    "!!!",
    "???",
    "...",
    "?!?!",
    "hello...world",
    "(parentheses) [brackets] {braces} <angles>",
    "\"double quotes\" and 'single quotes'",
    "it's we'll they're I'd you've don't",
    "snake_case_name and camelCaseName and PascalCase",
    "https://example.org/path?query=1&other=two#frag",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "line1\nline2",
    "line1\n\nline3",
    "\n\nstarts with newlines",
    "ends with newline\n",
    "windows\r\nline endings\r\n",
    "tab\tseparated\tvalues",
    "\tleading tab",
    "mixed \t \n whitespace",
    "a  b   c    d     e",
    "       seven spaces",
    "def f(x):\n    return x * 2\n",
    "    indented four",
    "if (a && b || !c) { return; }",
    "café",
    "naïve résumé",
    "Ångström",
    "Zürich über Müller",
    "coöperate",
    "e\u0301 (e + combining acute)",
    "Ω ohm, µ micro, ℃",
    "ß and ẞ",
    "ﬁ ligature",
    "Привет мир",
    "Это собака?",
    "Καλημέρα",
    "你好世界",
    "这是什么？",
    "猫",
    "图片里有几个人？",
    "日本語",
    "こんにちは",
    "カタカナ",
    "안녕하세요",
    "مرحبا",
    "ما هذا؟",
    "שלום",
    "English then עברית then English",
    "😀",
    "🐱🐶",
    "I love 🍕 and 🍣!",
    "👍🏽",
    "👨‍👩‍👧‍👦 family",
    "🇯🇵🇺🇸",
    "❤️",
    "★☆♥♦♣♠",
    "→ ← ↑ ↓ ⇒",
    "∀x ∈ ℝ: x² ≥ 0",
    "𝔸𝔹ℂ double-struck",
    "𐍈 gothic",
    "\U0001F600\U0001F603",
    "\u00a0no-break space",
    "zero\u200bwidth",
    "soft\u00adhyphen",
    "\u2028line separator",
    "\x01soh \x1fus",
    "\x7fdel",
    "bell\x07",
    "▁",
    "▁▁",
    "a▁b",
    "▁hello",
    "Ġspace",
    "<0xFF>",
    "</",
    "<",
    ">",
    "<>",
    "<<>>",
    "A" * 60,
    "ab" * 40,
    "the " * 30,
    "😀" * 10,
    "é" * 20,
    "USER: <image>\n" + "What is in the picture? " * 5 + "ASSISTANT:",
]

CLAUSES = [
    "a small dog", "the red bus", "three people", "an old bridge", "the kitchen table",
    "a bowl of soup", "the night sky", "two birds", "a broken chair", "the city park",
    "une petite maison", "ein großer Hund", "un niño feliz", "большой город", "一只小狗",
    "犬と猫", "공원", "القطة", "הכלב", "🐟🐠", "42 apples", "3.5 km", "$12.50",
]
VERBS = ["is next to", "stands behind", "looks at", "is under", "runs past", "sits on",
         "est à côté de", "liegt auf", "está cerca de", "рядом с", "在", "の上に"]
QUESTIONS = ["What", "Where", "Why", "How many", "Which", "Who", "When", "Is it true that",
             "Qu'est-ce que", "Was ist", "¿Qué es", "Что это", "什么是"]


def corpus():
    rng = random.Random(1234)
    lines = ENGLISH * 20 + CODE * 10 + OTHER * 10
    for _ in range(4000):
        a, b = rng.choice(CLAUSES), rng.choice(CLAUSES)
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n", ", ", "; "])
        lines.append(f"{a.capitalize()} {rng.choice(VERBS)} {b}.{sep}"
                     f"{rng.choice(QUESTIONS)} {rng.choice(CLAUSES)}?")
    rng.shuffle(lines)
    return lines


def held_out_prompts():
    rng = random.Random(99)
    out = list(HELD_OUT)
    specials = ["<image>", "<s>", "</s>", "<pad>", "<unk>"]
    seps = ["", " ", "  ", "\n", "\t", " \n", "\n\n"]
    while len(out) < 240:
        parts = []
        for _ in range(rng.randint(1, 5)):
            r = rng.random()
            if r < 0.2:
                parts.append(rng.choice(specials))
            elif r < 0.35:
                parts.append("".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x17F),
                                                     rng.randint(0x4E00, 0x4FFF), rng.randint(0x1F300, 0x1F64F),
                                                     rng.randint(0x590, 0x6FF)]))
                                     for _ in range(rng.randint(1, 6))))
            else:
                parts.append(f"{rng.choice(QUESTIONS)} {rng.choice(CLAUSES)} "
                             f"{rng.choice(VERBS)} {rng.choice(CLAUSES)}?")
            parts.append(rng.choice(seps))
        out.append("".join(parts))
    train = set(corpus())
    assert not any(p in train for p in out), "a held-out prompt is in the corpus"
    return out


def added(content, id_, special=True, normalized=False, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


LLAMA_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
]}


def post_processor(bos=True):
    single = ([{"SpecialToken": {"id": "<s>", "type_id": 0}}] if bos else []) + \
        [{"Sequence": {"id": "A", "type_id": 0}}]
    pair = single + ([{"SpecialToken": {"id": "<s>", "type_id": 1}}] if bos else []) + \
        [{"Sequence": {"id": "B", "type_id": 1}}]
    return {"type": "TemplateProcessing", "single": single, "pair": pair,
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}} if bos else {}}


def train_llama():
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    # SentencePiece does not merge across a space-to-word boundary; runs of
    # spaces do merge ("▁▁▁▁" for indentation).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("▁*[^▁]+|▁+"), behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS + BYTES,
                                  limit_alphabet=160, show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for i, s in enumerate(SPECIALS + BYTES):
        assert vocab[s] == i, (s, vocab.get(s))
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    return data


def llama_json(trained, legacy):
    data = json.loads(json.dumps(trained))
    n = len(data["model"]["vocab"])
    data["added_tokens"] = [added(s, i) for i, s in enumerate(SPECIALS)] + \
        [added("<image>", n), added("<pad>", n + 1)]
    data["post_processor"] = post_processor()
    data["decoder"] = LLAMA_DECODER
    if legacy:
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        data["pre_tokenizer"] = None
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                   for m in data["model"]["merges"]]
    else:
        data["normalizer"] = None
        data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                                 "prepend_scheme": "first", "split": False}
        data["model"]["merges"] = [m if isinstance(m, list) else m.split(" ")
                                   for m in data["model"]["merges"]]
    return data


def llama_config(legacy, n):
    tok_entry = lambda c: {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): tok_entry(s) for i, s in
                                 [(0, "<unk>"), (1, "<s>"), (2, "</s>"), (n, "<image>"),
                                  (n + 1, "<pad>")]},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": legacy,
        "model_max_length": 4096,
        "pad_token": "<pad>",
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
        "chat_template": "{% for message in messages %}{% if message['role'] == 'user' %}"
                         "USER: {{ message['content'] }} {% else %}ASSISTANT: "
                         "{{ message['content'] }}</s>{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}ASSISTANT:{% endif %}",
    }


def tiny_json():
    pieces = ["<unk>", "<s>", "</s>", "▁", "a", "b", "c", "d", "e", "h", "l", "o", "w", "r",
              "!", "?", "é"]
    merges = [("▁", "h"), ("e", "l"), ("el", "l"), ("▁h", "ell"), ("▁hell", "o"), ("a", "b"),
              ("ab", "c"), ("▁", "w"), ("o", "r"), ("▁w", "or"), ("l", "d"), ("▁wor", "ld"),
              ("c", "d"), ("b", "cd"), ("▁", "a"), ("a", "a")]
    vocab = {p: i for i, p in enumerate(pieces)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    # in the vocab, but no merge path leads to it: only ignore_merges finds it
    vocab["▁abcd"] = len(vocab)
    vocab["▁dab"] = len(vocab)
    n = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added("<unk>", 0), added("<s>", 1), added("</s>", 2),
                         added("[MASK]", n, lstrip=True, rstrip=True),
                         added("hello world", n + 1, special=False, normalized=True),
                         added("<sep>", n + 2, special=True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                          "split": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [2],
                                                       "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


TINY_PROMPTS = [
    "", "hello", "hello world", "hello  world", " hello", "abcd", "abc d", "dab", "aaaa", "aaa",
    "zzz", "hezlo", "héllo", "xyz abc", "[MASK]", "a [MASK] b", "a[MASK]b", "a  [MASK]  b",
    "hello world!", "say hello world", "hellohello world", "<s>a</s>", "a<sep>b", "a <sep> b",
    "<sep>", "abcd!?", "??", "é", "ée", "wor ld", "world", "a\nb", "ab\tcd", "😀abc",
    "<unk>abc", "hello [MASK]", "[MASK]hello", "hello world hello world",
]


_HF = {}
try:
    import transformers
    TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
except ImportError:
    TRANSFORMERS_MAJOR = 0


def hf_ids(folder, text):
    try:
        if folder not in _HF:
            from transformers import AutoTokenizer
            _HF[folder] = AutoTokenizer.from_pretrained(folder)
        return _HF[folder](text)["input_ids"]
    except Exception as e:  # noqa: BLE001
        print(f"transformers: {folder}: {e}", file=sys.stderr)
        return None


def main():
    trained = train_llama()
    variants = {}
    cases = []
    prompts = held_out_prompts()
    n = len(trained["model"]["vocab"])
    for name in ["legacy", "nonlegacy", "tiny"]:
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        if name == "tiny":
            data = tiny_json()
            config = {"add_bos_token": False, "add_eos_token": True, "legacy": False,
                      "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>",
                      "eos_token": "</s>", "unk_token": "<unk>"}
            texts = TINY_PROMPTS
        else:
            data = llama_json(trained, name == "legacy")
            config = llama_config(name == "legacy", n)
            texts = prompts
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=2)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        variants[name] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True),
                          "add_bos": config["add_bos_token"], "add_eos": config["add_eos_token"]}
        hf_ok = 0
        for text in texts:
            ids = tok.encode(text).ids
            hf = hf_ids(folder, text) if name != "tiny" else None
            if hf is not None:
                if hf == ids:
                    hf_ok += 1
                elif TRANSFORMERS_MAJOR < 5:
                    sys.exit(f"{name}: transformers and tokenizers differ on {text!r}: {hf} {ids}")
            cases.append({"variant": name, "text": text, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_skip": tok.decode(ids, skip_special_tokens=True),
                          "hf_ids": hf})
        print(f"{name}: {len(texts)} cases, transformers agreed on {hf_ok}")
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        f.write('{"variants": ' + json.dumps(variants) + ',\n "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(f"{len(cases)} cases in {OUT}")


if __name__ == "__main__":
    main()
