#!/usr/bin/env python3
"""gen_image_fixtures.py: the fixtures for tests/test-image.c, made with Pillow.

What it writes into tests/data/images/ (all small; the total stays well under
1 MB):

  Decoding (every image 37x23, from the same synthetic picture):
    <name>.png / <name>.jpg  the file the C decoder reads
    <name>.rgb               the RGB bytes it must produce (width*height*3,
                             row-major), i.e. np.array(Image.open(f).convert("RGB"))
                             as Pillow decodes it.  One exception: grey16.png
                             has no .rgb: Pillow clips 16-bit grey to 255
                             (I;16 -> L saturates), and the engine refuses it
                             with a message saying so.
    PNG paths: rgb, rgba, rgb_trns (tRNS colour key), palette_trns (P + tRNS),
    palette4 (4-bit palette), grey, grey_alpha, grey2 (2-bit grey + tRNS), grey16,
    rgb16 (16-bit RGB), rgba16, interlaced (Adam7 RGB), interlaced_palette.
    Pillow cannot write 16-bit RGB, low-depth grey or interlaced PNGs, so those
    come from the small PNG writer below; Pillow still decodes them for the
    expected bytes.
    JPEG paths: jpeg420 (baseline 4:2:0), jpeg444, jpeg422, progressive, greyjpeg,
    cmyk (Pillow writes Adobe-inverted CMYK).
    Error fixtures: not-image.txt, tiny.gif.

  Resizing (Image.resize((w, h), Image.BICUBIC), no reducing_gap; note that
  Pillow 13 does the vertical pass first when the height shrinks by more than
  twice what the width shrinks, older Pillow always went horizontally first):
    resize/cases.txt         one line per case: src_w src_h dst_w dst_h file
    resize/<sw>x<sh>_<dw>x<dh>.png   Pillow's output, stored losslessly.
    The source images are not stored: both this script and the C test build
    them from pattern(w, h), an integer formula (gradients, hard-edged
    checkerboard that makes bicubic overshoot and clip, and a noisy corner).

  Model input (x/255*2-1 as float32 NCHW, numpy's arithmetic):
    input/<fit>_<sw>x<sh>_<size>.f32   little-endian float32 [1, 3, size, size]
    fit = stretch (resize to size x size) or crop (short side to size, the
    other side rounded half up, then the centre crop at floor((W - size) / 2)).

Run from the repository root (Pillow 13.0.0 and numpy 2.4 were used):
    python3 tests/reference/gen_image_fixtures.py
"""

import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

W, H = 37, 23
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "images")


def pattern(w, h):
    """The synthetic picture; test-image.c's make_pattern computes the same."""
    out = np.zeros((h, w, 3), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                if c == 0:
                    v = x * 255 // max(w - 1, 1)
                elif c == 1:
                    v = y * 255 // max(h - 1, 1)
                else:
                    v = (x + y) * 255 // (w + h)
                if (x // 7 + y // 5) % 2 == 1 and x < w // 2:
                    v = 255 - v
                if x >= w - w // 4 and y >= h - h // 4:
                    v = ((x * 73856093) ^ (y * 19349663) ^ (c * 83492791)) & 0xFFFFFFFF
                    v = (v >> 11) & 255
                out[y, x, c] = v
    return out


# ---- a minimal PNG writer for what Pillow cannot write ----------------------

def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def pack_rows(samples, bit_depth):
    """samples: (h, w*channels) integer array -> list of byte rows."""
    rows = []
    for r in samples:
        if bit_depth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in r))
        elif bit_depth == 8:
            rows.append(bytes(int(v) for v in r))
        else:
            per = 8 // bit_depth
            out = bytearray()
            for i in range(0, len(r), per):
                byte = 0
                for j in range(per):
                    v = int(r[i + j]) if i + j < len(r) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                out.append(byte)
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, pixels, color_type, bit_depth, palette=None, trns=None,
              interlace=False):
    """pixels: (h, w, channels) array of sample values."""
    h, w, ch = pixels.shape
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx, :]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for row in pack_rows(sub.reshape(sub.shape[0], -1), bit_depth):
                raw += b"\x00" + row
    else:
        for row in pack_rows(pixels.reshape(h, -1), bit_depth):
            raw += b"\x00" + row
    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type,
                                       0, 0, 1 if interlace else 0))
    if palette is not None:
        data += chunk(b"PLTE", bytes(palette))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw, 9))
    data += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# ---- fixtures ----------------------------------------------------------------

def save_expected(name, rgb):
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3), (name, rgb.shape)
    with open(os.path.join(ROOT, name + ".rgb"), "wb") as f:
        f.write(rgb.tobytes())


def pillow_rgb(path):
    with Image.open(path) as im, warnings.catch_warnings():
        # Pillow suggests RGBA for P + tRNS; convert("RGB") is what we mirror.
        warnings.simplefilter("ignore")
        return np.array(im.convert("RGB"))


def decode_fixtures():
    src = pattern(W, H)
    rng = np.random.RandomState(1234)
    alpha = rng.randint(0, 256, size=(H, W, 1)).astype(np.uint8)

    def pil_png(name, im, **kw):
        path = os.path.join(ROOT, name + ".png")
        im.save(path, "PNG", **kw)
        save_expected(name, pillow_rgb(path))
        return path

    p = pil_png("rgb", Image.fromarray(src))
    assert (pillow_rgb(p) == src).all()
    pil_png("rgba", Image.fromarray(np.concatenate([src, alpha], axis=2), "RGBA"))
    pil_png("rgb_trns", Image.fromarray(src), transparency=tuple(int(v) for v in src[0, 0]))
    pal = Image.fromarray(src).quantize(colors=50)
    pil_png("palette_trns", pal, transparency=bytes(range(0, 250, 5)))
    grey = np.array(Image.fromarray(src).convert("L"))
    pil_png("grey", Image.fromarray(grey, "L"))
    pil_png("grey_alpha", Image.fromarray(np.stack([grey, alpha[:, :, 0]], axis=2), "LA"))

    # 2-bit grey: libpng and Pillow both scale v -> v * 85.
    g2 = (grey >> 6).reshape(H, W, 1)
    path = os.path.join(ROOT, "grey2.png")
    write_png(path, g2, 0, 2, trns=b"\x00\x01")  # grey level 1 transparent
    save_expected("grey2", pillow_rgb(path))
    assert (pillow_rgb(path)[:, :, 0] == g2[:, :, 0] * 85).all()

    # 4-bit palette, interlaced too.
    pal16 = rng.randint(0, 256, size=(16, 3)).astype(np.uint8)
    idx = ((src[:, :, 0].astype(int) + src[:, :, 1]) // 32 % 16).reshape(H, W, 1)
    path = os.path.join(ROOT, "palette4.png")
    write_png(path, idx, 3, 4, palette=pal16.tobytes(), trns=bytes([0, 128, 255]))
    save_expected("palette4", pillow_rgb(path))
    assert (pillow_rgb(path) == pal16[idx[:, :, 0]]).all()
    path = os.path.join(ROOT, "interlaced_palette.png")
    write_png(path, idx, 3, 4, palette=pal16.tobytes(), interlace=True)
    save_expected("interlaced_palette", pillow_rgb(path))

    # 16-bit: distinct low bytes so that rounding instead of truncating shows.
    wide = src.astype(np.uint32) * 257 + rng.randint(0, 257, size=src.shape)
    wide = np.minimum(wide, 65535)
    path = os.path.join(ROOT, "rgb16.png")
    write_png(path, wide, 2, 16)
    save_expected("rgb16", pillow_rgb(path))
    assert (pillow_rgb(path) == (wide >> 8)).all()
    path = os.path.join(ROOT, "rgba16.png")
    a16 = alpha.astype(np.uint32) * 257
    write_png(path, np.concatenate([wide, a16], axis=2), 6, 16)
    save_expected("rgba16", pillow_rgb(path))
    g16 = (grey.astype(np.uint32) * 257 + rng.randint(0, 257, size=grey.shape))
    g16 = np.minimum(g16, 65535).reshape(H, W, 1)
    path = os.path.join(ROOT, "grey16.png")
    write_png(path, g16, 0, 16)
    # no expected pixels: the engine refuses 16-bit grey (Pillow clips it to 255)

    path = os.path.join(ROOT, "interlaced.png")
    write_png(path, src, 2, 8, interlace=True)
    save_expected("interlaced", pillow_rgb(path))
    assert (pillow_rgb(path) == src).all()

    # JPEGs.
    def pil_jpeg(name, im, **kw):
        path = os.path.join(ROOT, name + ".jpg")
        im.save(path, "JPEG", **kw)
        save_expected(name, pillow_rgb(path))

    im = Image.fromarray(src)
    pil_jpeg("jpeg420", im, quality=85, subsampling=2)
    pil_jpeg("jpeg422", im, quality=85, subsampling=1)
    pil_jpeg("jpeg444", im, quality=85, subsampling=0)
    pil_jpeg("progressive", im, quality=85, progressive=True)
    pil_jpeg("greyjpeg", Image.fromarray(grey, "L"), quality=85)
    # A real black channel (Pillow's RGB -> CMYK leaves K at 0).
    k = ((np.arange(W)[None, :] * 7 + np.arange(H)[:, None] * 5) % 256).astype(np.uint8)
    cmyk = np.concatenate([255 - src, k[:, :, None]], axis=2)
    pil_jpeg("cmyk", Image.frombytes("CMYK", (W, H), cmyk.tobytes()), quality=85)
    with Image.open(os.path.join(ROOT, "cmyk.jpg")) as c:
        assert c.mode == "CMYK" and c.info.get("adobe") is not None

    with open(os.path.join(ROOT, "not-image.txt"), "w") as f:
        f.write("This is a text file, not an image.\n")
    Image.fromarray(src).convert("P").save(os.path.join(ROOT, "tiny.gif"), "GIF")


RESIZE_CASES = [
    # (src_w, src_h, dst_w, dst_h)
    (37, 23, 37, 23),    # unchanged: a copy
    (37, 23, 1, 1),
    (37, 23, 5, 3),
    (37, 23, 74, 46),    # exact 2x
    (37, 23, 100, 23),   # horizontal only
    (37, 23, 37, 61),    # vertical only
    (37, 23, 13, 29),    # down one way, up the other
    (37, 23, 64, 64),
    (64, 64, 37, 23),
    (256, 256, 255, 257),
    (97, 131, 200, 300),
    (640, 480, 64, 64),  # large downscale factor
    (300, 200, 512, 512),  # non-integer upscale
    (512, 384, 256, 256),  # exact 2x down one way, 1.5x the other
    (1000, 7, 3, 40),
    # Pillow 13 runs the vertical pass first when the height shrinks by more
    # than twice what the width shrinks: these sit on both sides of that rule.
    (37, 61, 30, 20),
    (60, 120, 100, 50),
    (97, 131, 64, 64),   # 67 > 2 * 33: vertical first
    (97, 131, 64, 65),   # 66 = 2 * 33: horizontal first
    (185, 391, 64, 64),
]


def more_decode_fixtures():
    """Issue #14's decoding cases beyond decode_fixtures(), with their own
    random state so that the older fixtures stay byte for byte:
    grey_alpha16 (16-bit grey + alpha, which Pillow opens as RGBA taking the
    high byte), interlaced16 (Adam7 16-bit RGB), grey1 (1-bit grey) and
    cmyk_progressive (a progressive Adobe CMYK JPEG)."""
    src = pattern(W, H)
    rng = np.random.RandomState(4321)
    grey = np.array(Image.fromarray(src).convert("L"))
    g16 = np.minimum(grey.astype(np.uint32) * 257 + rng.randint(0, 257, size=grey.shape), 65535)
    a16 = rng.randint(0, 65536, size=grey.shape).astype(np.uint32)
    path = os.path.join(ROOT, "grey_alpha16.png")
    write_png(path, np.stack([g16, a16], axis=2), 4, 16)
    save_expected("grey_alpha16", pillow_rgb(path))
    assert (pillow_rgb(path)[:, :, 0] == (g16 >> 8)).all()

    wide = np.minimum(src.astype(np.uint32) * 257 + rng.randint(0, 257, size=src.shape), 65535)
    path = os.path.join(ROOT, "interlaced16.png")
    write_png(path, wide, 2, 16, interlace=True)
    save_expected("interlaced16", pillow_rgb(path))
    assert (pillow_rgb(path) == (wide >> 8)).all()

    g1 = (grey >> 7).reshape(H, W, 1)
    path = os.path.join(ROOT, "grey1.png")
    write_png(path, g1, 0, 1)
    save_expected("grey1", pillow_rgb(path))
    assert (pillow_rgb(path)[:, :, 0] == g1[:, :, 0] * 255).all()

    k = ((np.arange(W)[None, :] * 3 + np.arange(H)[:, None] * 11) % 256).astype(np.uint8)
    cmyk = np.concatenate([255 - src, k[:, :, None]], axis=2)
    path = os.path.join(ROOT, "cmyk_progressive.jpg")
    Image.frombytes("CMYK", (W, H), cmyk.tobytes()).save(path, "JPEG", quality=85,
                                                          progressive=True)
    save_expected("cmyk_progressive", pillow_rgb(path))
    with Image.open(path) as c:
        assert c.mode == "CMYK" and c.info.get("progressive")


def resize_fixtures():
    d = os.path.join(ROOT, "resize")
    os.makedirs(d, exist_ok=True)
    lines = []
    for sw, sh, dw, dh in RESIZE_CASES:
        src = Image.fromarray(pattern(sw, sh))
        out = src.resize((dw, dh), Image.BICUBIC)
        name = f"{sw}x{sh}_{dw}x{dh}.png"
        out.save(os.path.join(d, name), "PNG", optimize=True)
        lines.append(f"{sw} {sh} {dw} {dh} {name}")
    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("# src_w src_h dst_w dst_h expected (Pillow Image.resize BICUBIC)\n")
        f.write("\n".join(lines) + "\n")


INPUT_CASES = [
    # (fit, src_w, src_h, size)
    ("stretch", 100, 75, 64),
    ("stretch", 64, 64, 64),  # already the right size: no resampling
    ("stretch", 60, 150, 64),  # Pillow 13 resamples this one vertically first
    ("crop", 100, 75, 64),
    ("crop", 75, 130, 64),
    ("crop", 64, 97, 64),     # short side already 64: vertical pass only
]


def model_input_fixtures():
    d = os.path.join(ROOT, "input")
    os.makedirs(d, exist_ok=True)
    for fit, sw, sh, size in INPUT_CASES:
        img = Image.fromarray(pattern(sw, sh))
        if fit == "stretch":
            img = img.resize((size, size), Image.BICUBIC)
        else:
            short = min(sw, sh)
            nw = (2 * sw * size + short) // (2 * short)  # round half up
            nh = (2 * sh * size + short) // (2 * short)
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
        x = np.array(img).astype(np.float32) / 255.0 * 2 - 1
        assert x.dtype == np.float32
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        with open(os.path.join(d, f"{fit}_{sw}x{sh}_{size}.f32"), "wb") as f:
            f.write(x.astype("<f4").tobytes())


def main():
    os.makedirs(ROOT, exist_ok=True)
    decode_fixtures()
    more_decode_fixtures()
    resize_fixtures()
    model_input_fixtures()


if __name__ == "__main__":
    main()
