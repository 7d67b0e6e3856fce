#!/usr/bin/env python3
"""gen_unicode_tables.py: the Unicode tables behind engine/io/ds-unicode.c.

Writes engine/io/ds-unicode-tables.inc, the data the CLIP tokenizer's text
cleaning needs to behave like transformers' CLIPTokenizer without ftfy
(BasicTokenizer clean-up, NFC, str.lower, then the `regex` module's
pre-tokenisation pattern), taken from this Python's own `unicodedata` (the
Unicode version is written into the file) and from the `regex` module itself:

  ds_uc_prop_runs   one uint32 per run of code points with the same properties,
                    (first code point << 8) | flags, sorted; the flags are
                      bits 0-1  what the pre-tokenisation pattern (compiled with
                                IGNORECASE, as CLIPTokenizer does) makes of the
                                character: 0 skipped (whitespace, or in no class),
                                1 [\\p{L}], 2 [\\p{N}], 3 [^\\s\\p{L}\\p{N}]
                      bit 2     dropped by the clean-up (NUL, U+FFFD, category C*
                                other than \\t \\n \\r)
                      bit 3     whitespace for the clean-up and str.split
                                (\\t \\n \\r, Zs, and U+2028/U+2029, which survive the
                                clean-up but str.split() splits on)
                      bit 4     Cased and not Case_Ignorable (str.lower's Final_Sigma)
                      bit 5     Case_Ignorable (str.lower's Final_Sigma)
  ds_uc_lower_runs  {first, count, stride, delta}: str.lower of single code points
                    (the one multi-character result, U+0130 -> "i\\u0307", and
                    U+03A3's Final_Sigma rule are coded in ds-unicode.c; this
                    script checks they are the only special cases)
  ds_uc_ccc_runs    (first << 8) | canonical combining class, runs
  ds_uc_decomp      {code point, offset, length} into ds_uc_decomp_cps: the full
                    canonical decomposition (NFD) of each code point other than
                    Hangul syllables (done arithmetically)
  ds_uc_comp        {(first << 21) | second, composite}: the primary composites
                    (pairs that NFC recomposes), sorted by key

Cased/Case_Ignorable are not exposed by Python, so they are read back from
str.lower's Final_Sigma behaviour (see sigma_flags below).

Run from the repository root (needs only the `regex` package; ~1 minute):
    python3 tests/reference/gen_unicode_tables.py
"""

import os
import sys
import unicodedata

import regex

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "engine", "io", "ds-unicode-tables.inc")

MAX_CP = 0x110000
SURROGATES = range(0xD800, 0xE000)

PRE_SKIP, PRE_LETTER, PRE_NUMBER, PRE_OTHER = 0, 1, 2, 3
F_REMOVED, F_SPACE, F_CASED, F_IGNORABLE = 4, 8, 16, 32

RE_L = regex.compile(r"[\p{L}]", regex.IGNORECASE)
RE_N = regex.compile(r"[\p{N}]", regex.IGNORECASE)
RE_O = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)


def code_points():
    for cp in range(MAX_CP):
        if cp not in SURROGATES:
            yield cp


def removed(c):
    # BasicTokenizer._clean_text: cp 0, U+FFFD and _is_control
    if c in "\x00\ufffd":
        return True
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def space(c):
    # _is_whitespace, plus what str.split() still splits on afterwards
    return c in " \t\n\r" or unicodedata.category(c) == "Zs" or (not removed(c) and c.isspace())


def pre_class(c):
    hits = [bool(RE_L.fullmatch(c)), bool(RE_N.fullmatch(c)), bool(RE_O.fullmatch(c))]
    assert sum(hits) <= 1, (hex(ord(c)), hits)
    if hits[0]:
        return PRE_LETTER
    if hits[1]:
        return PRE_NUMBER
    if hits[2]:
        return PRE_OTHER
    return PRE_SKIP


def sigma_flags(c):
    """Cased / Case_Ignorable as str.lower's Final_Sigma rule sees them.

    t1: (c + SIGMA).lower() ends in final sigma  <=> not ignorable(c) and cased(c)
    t2: ("A" + c + SIGMA) ends in final sigma    <=> ignorable(c) or cased(c)
    t3: ("A" + SIGMA + c) has final sigma at 1   <=> ignorable(c) or not cased(c)
    so ignorable = t2 and t3; cased-and-not-ignorable = t1.
    """
    if c == "\u03a3":
        return F_CASED  # Sigma is cased, not ignorable (checked below in main)
    t1 = (c + "\u03a3").lower()[-1] == "\u03c2"
    t2 = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
    low = ("A\u03a3" + c).lower()
    t3 = low[1] == "\u03c2"
    ign = t2 and t3
    f = 0
    if ign:
        f |= F_IGNORABLE
    elif t1:
        f |= F_CASED
    return f


def runs(values):
    """[(first_cp, value)] for each change of value over all code points
    (surrogates take the value of U+D7FF so they never start a run)."""
    out = []
    prev = None
    for cp in range(MAX_CP):
        v = values.get(cp, prev) if cp in SURROGATES else values[cp]
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def lower_runs():
    pairs = []
    for cp in code_points():
        low = chr(cp).lower()
        if cp == 0x130:
            assert low == "i\u0307"
            continue
        assert len(low) == 1, hex(cp)
        if ord(low) != cp:
            pairs.append((cp, ord(low) - cp))
    # group into arithmetic runs: same delta, constant stride
    out = []
    i = 0
    while i < len(pairs):
        first, delta = pairs[i]
        count, stride = 1, 1
        if i + 1 < len(pairs) and pairs[i + 1][1] == delta and pairs[i + 1][0] - first <= 2:
            stride = pairs[i + 1][0] - first
            while (i + count < len(pairs) and pairs[i + count][1] == delta
                   and pairs[i + count][0] == first + count * stride):
                count += 1
        out.append((first, count, stride, delta))
        i += count
    return out, len(pairs)


def nfc_tables():
    ccc = {cp: unicodedata.combining(chr(cp)) for cp in code_points()}
    decomp = []
    comp = []
    for cp in code_points():
        if 0xAC00 <= cp <= 0xD7A3:
            continue  # Hangul syllables: arithmetic
        c = chr(cp)
        nfd = unicodedata.normalize("NFD", c)
        if nfd != c:
            decomp.append((cp, [ord(x) for x in nfd]))
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == c:
                comp.append((parts[0], parts[1], cp))
    comp.sort()
    return ccc, decomp, comp


def check_assumptions(comp):
    # Below U+0300 every code point is its own NFC and no pair composes: the C code
    # skips NFC for such text.
    for cp in range(0x300):
        assert unicodedata.normalize("NFC", chr(cp)) == chr(cp), hex(cp)
    assert min(second for _, second, _ in comp) >= 0x300
    # NFC never turns a kept character into whitespace, so splitting after NFC on the
    # flags above is right.
    for cp in code_points():
        c = chr(cp)
        if removed(c) or space(c):
            continue
        n = unicodedata.normalize("NFC", c)
        assert not any(x.isspace() or removed(x) for x in n), hex(cp)
        assert not any(x.isspace() for x in n.lower()), hex(cp)
    # Only U+03A3 is context-dependent in str.lower
    assert "\u03a3".lower() == "\u03c3" and "A\u03a3".lower() == "a\u03c2"
    # The pattern's literals ('s, 't, <|startoftext|>, ...) under IGNORECASE: after
    # lower-casing, the only extra character they accept is U+017F for "s"
    # (ds-unicode.c's ds_uc_ascii_ci_eq).
    for letter in "startofexndlmv":
        hits = [cp for cp in code_points() if regex.fullmatch(letter, chr(cp), regex.IGNORECASE)]
        extra = [cp for cp in hits if cp not in (ord(letter), ord(letter.upper()))]
        assert extra == ([0x17F] if letter == "s" else []), (letter, extra)


def emit(f, name, ctype, items, per_line, fmt):
    f.write(f"static const {ctype} {name}[{len(items)}] = {{\n")
    for i in range(0, len(items), per_line):
        f.write("  " + " ".join(fmt(x) + "," for x in items[i:i + per_line]) + "\n")
    f.write("};\n\n")


def main():
    print("classifying code points ...", file=sys.stderr)
    props = {}
    for cp in code_points():
        c = chr(cp)
        props[cp] = (pre_class(c) | (F_REMOVED if removed(c) else 0)
                     | (F_SPACE if space(c) else 0) | sigma_flags(c))
    assert (props[0x3A3] & (F_CASED | F_IGNORABLE)) == F_CASED
    assert sigma_flags("a") == F_CASED and sigma_flags("'") == F_IGNORABLE
    prop_runs = runs(props)

    low_runs, n_lower = lower_runs()
    ccc, decomp, comp = nfc_tables()
    ccc_runs = runs(ccc)
    check_assumptions(comp)

    flat = []
    decomp_rows = []
    for cp, seq in decomp:
        decomp_rows.append((cp, len(flat), len(seq)))
        flat.extend(seq)
    assert max(len(s) for _, s in decomp) <= 4

    with open(OUT, "w", encoding="ascii") as f:
        f.write("/* ds-unicode-tables.inc: generated by tests/reference/gen_unicode_tables.py\n"
                f" * from Python {sys.version.split()[0]} unicodedata (Unicode "
                f"{unicodedata.unidata_version}) and regex {regex.__version__}.\n"
                " * Do not edit; see the script for what each table holds. */\n\n")
        f.write(f'#define DS_UC_TABLES_UNICODE_VERSION "{unicodedata.unidata_version}"\n')
        f.write(f"#define DS_UC_DECOMP_MAX 4\n\n")
        emit(f, "ds_uc_prop_runs", "uint32_t", prop_runs, 8,
             lambda r: f"0x{(r[0] << 8) | r[1]:08x}")
        emit(f, "ds_uc_lower_runs", "DsUcLowerRun", low_runs, 3,
             lambda r: f"{{ 0x{r[0]:05x}, {r[1]}, {r[2]}, {r[3]} }}")
        emit(f, "ds_uc_ccc_runs", "uint32_t", ccc_runs, 8,
             lambda r: f"0x{(r[0] << 8) | r[1]:08x}")
        emit(f, "ds_uc_decomp", "DsUcDecomp", decomp_rows, 4,
             lambda r: f"{{ 0x{r[0]:05x}, {r[1]}, {r[2]} }}")
        emit(f, "ds_uc_decomp_cps", "uint32_t", flat, 10, lambda cp: f"0x{cp:05x}")
        emit(f, "ds_uc_comp", "DsUcComp", comp, 3,
             lambda r: f"{{ 0x{(r[0] << 21) | r[1]:011x}ull, 0x{r[2]:05x} }}")
    print(f"wrote {OUT}: {len(prop_runs)} property runs, {len(low_runs)} lower runs "
          f"({n_lower} mappings), {len(ccc_runs)} ccc runs, {len(decomp_rows)} decompositions "
          f"({len(flat)} cps), {len(comp)} compositions; {os.path.getsize(OUT)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
