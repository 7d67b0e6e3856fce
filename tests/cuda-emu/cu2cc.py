#!/usr/bin/env python3
"""cu2cc.py IN.cu OUT.cc: turns a CUDA C++ file into plain C++ for the
Diffscope CUDA emulator (tests/cuda-emu/README.md).

Only two constructs of CUDA C++ are not C++:

  NAME<<<GRID, BLOCK[, SMEM[, STREAM]]>>>(ARGS)
      becomes ::ds_emu::launch (NAME, "NAME", GRID, BLOCK[, SMEM[, STREAM]])(ARGS);
      NAME may be qualified or a template-id (kern<float, 4>), and the
      configuration may hold parenthesised commas.
  extern __shared__ [__align__(N)] TYPE NAME[];
      becomes TYPE *NAME = (TYPE *) ::ds_emu::dyn_smem ();

Comments, string and character literals are left alone. Every newline is
kept and a #line directive names IN.cu, so compiler messages point at the
.cu file and its line numbers.
"""
import os
import re
import sys


def mask(src):
    """src with comments and literals blanked (newlines kept): same length,
    so positions found in it index src."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            # A raw string would need more; the kernels have none.
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def fail(path, src, pos, msg):
    line = src.count("\n", 0, pos) + 1
    sys.stderr.write(f"{path}:{line}: cu2cc: {msg}\n")
    sys.exit(1)


OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {v: k for k, v in OPEN.items()}


def callee_start(m, end):
    """Start of the kernel name ending before m[end] (whitespace skipped):
    an identifier, qualified, possibly a template-id."""
    i = end
    while i > 0 and m[i - 1].isspace():
        i -= 1
    if i > 0 and m[i - 1] == ">":
        depth = 0
        while i > 0:
            i -= 1
            if m[i] == ">":
                depth += 1
            elif m[i] == "<":
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and m[i - 1].isspace():
            i -= 1
    while True:
        while i > 0 and (m[i - 1].isalnum() or m[i - 1] == "_"):
            i -= 1
        if i >= 2 and m[i - 2:i] == "::":
            i -= 2
            continue
        return i


def config_end(m, start, path, src):
    """Index of the '>>>' closing a configuration that starts at start, and
    the top-level comma positions inside it."""
    depth, commas, i = 0, [], start
    while i < len(m):
        c = m[i]
        if c in OPEN:
            depth += 1
        elif c in CLOSE:
            depth -= 1
        elif depth == 0 and c == ",":
            commas.append(i)
        elif depth == 0 and m.startswith(">>>", i):
            return i, commas
        i += 1
    fail(path, src, start, "unterminated <<< launch configuration")


SMEM_RE = re.compile(r"\bextern\s+__shared__\s+([^;{}()]*?(?:\([^;{}]*?\)[^;{}()]*?)*)"
                     r"\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")
ALIGN_RE = re.compile(r"__align__\s*\(\s*[^()]*\)")


def rewrite(src, path):
    m = mask(src)
    out, pos = [], 0
    # Dynamic shared memory declarations first (they never contain <<<).
    edits = []
    for mt in SMEM_RE.finditer(m):
        ty = " ".join(ALIGN_RE.sub(" ", src[mt.start(1):mt.end(1)]).split())
        name = mt.group(2)
        if not ty:
            fail(path, src, mt.start(), "extern __shared__ without a type")
        text = f"{ty} *{name} = ({ty} *) ::ds_emu::dyn_smem ();"
        text += "\n" * src.count("\n", mt.start(), mt.end())
        edits.append((mt.start(), mt.end(), text))
    i = 0
    while True:
        j = m.find("<<<", i)
        if j < 0:
            break
        s = callee_start(m, j)
        name_text = src[s:j]
        if not name_text.strip():
            fail(path, src, j, "<<< without a kernel name before it")
        end, commas = config_end(m, j + 3, path, src)
        if len(commas) < 1 or len(commas) > 3:
            fail(path, src, j, "a launch configuration takes 2 to 4 arguments")
        k = end + 3
        while k < len(m) and m[k].isspace():
            k += 1
        if k >= len(m) or m[k] != "(":
            fail(path, src, end, "launch configuration not followed by arguments")
        label = " ".join(name_text.split()).replace("\\", "\\\\").replace('"', '\\"')
        text = (f"::ds_emu::launch ({name_text}, \"{label}\", {src[j + 3:end]})"
                + src[end + 3:k])
        edits.append((s, k, text))
        i = k
    edits.sort()
    for a, b, text in edits:
        if a < pos:
            fail(path, src, a, "overlapping rewrites")
        out.append(src[pos:a])
        out.append(text)
        pos = b
    out.append(src[pos:])
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: cu2cc.py IN.cu OUT.cc\n")
        return 2
    inp, outp = sys.argv[1], sys.argv[2]
    with open(inp, encoding="utf-8") as f:
        src = f.read()
    body = rewrite(src, inp)
    path = os.path.abspath(inp).replace("\\", "\\\\").replace('"', '\\"')
    with open(outp, "w", encoding="utf-8") as f:
        f.write(f"// Generated by tests/cuda-emu/cu2cc.py from {inp}: do not edit.\n")
        f.write(f'#line 1 "{path}"\n')
        f.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
