#!/usr/bin/env python3
"""gen_ops.py: PyTorch reference fixtures for tests/test-ops.c.

Writes tests/data/ops/ops.safetensors: for every case, its f32 inputs
("<case>.x", "<case>.w", ...) and the expected f32 output(s) ("<case>.y", and
"<case>.probs" for attention), computed by PyTorch (in float64 from the same
f32 inputs where that is more exact) or, for the timestep embedding, by
diffusers' own get_timestep_embedding in float32. Embedding ids are i32.

The op parameters (stride, padding, groups, eps, heads, ...) are written out
in each case below and repeated in the case table of tests/test-ops.c; the
two must agree (a mismatch makes the C test fail, it cannot hide one).

Run from the repository root (CPU torch is enough; the output is deterministic):
    python3 tests/reference/gen_ops.py
"""

import math
import os

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "ops",
                   "ops.safetensors")

torch.manual_seed(1234)
tensors = {}


def rnd(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale + offset).float()


def put(case, **named):
    for key, value in named.items():
        t = value.clone().contiguous()  # shared inputs are stored once per case
        if t.dtype == torch.float64:
            t = t.float()
        tensors[f"{case}.{key}"] = t


def d(t):
    return t.double()


# ---- conv2d: (case, x shape, w shape, bias?, stride, (top, left, bottom, right))
conv_cases = [
    ("conv_s1p1", (2, 3, 7, 6), (4, 3, 3, 3), True, 1, (1, 1, 1, 1)),
    ("conv_s2p1", (2, 3, 9, 8), (5, 3, 3, 3), True, 2, (1, 1, 1, 1)),
    ("conv_asym", (1, 4, 8, 7), (3, 4, 3, 3), True, 2, (0, 0, 1, 1)),
    ("conv_1x1", (2, 6, 5, 4), (3, 6, 1, 1), True, 1, (0, 0, 0, 0)),
    ("conv_3x2_nobias", (1, 2, 6, 5), (2, 2, 3, 2), False, 1, (0, 1, 2, 0)),
]
for name, xs, ws, has_b, stride, (pt, pl, pb, pr) in conv_cases:
    x, w = rnd(*xs), rnd(*ws, scale=0.3)
    b = rnd(ws[0]) if has_b else None
    # F.pad takes (left, right, top, bottom) for the last two dims.
    y = F.conv2d(F.pad(d(x), (pl, pr, pt, pb)), d(w), d(b) if has_b else None, stride=stride)
    put(name, x=x, w=w, y=y)
    if has_b:
        put(name, b=b)

# ---- group_norm: (case, x shape, groups, eps, silu, offset)
for name, xs, groups, eps, silu, offset in [
    ("gn_silu_eps1e-6", (2, 8, 5, 3), 4, 1e-6, True, 0.0),
    ("gn_eps1e-5", (2, 8, 4, 4), 2, 1e-5, False, 3.0),
    ("gn_3d_silu", (2, 6, 10), 3, 1e-5, True, -1.0),
]:
    x = rnd(*xs, scale=2.0, offset=offset)
    g, b = rnd(xs[1], scale=0.5, offset=1.0), rnd(xs[1], scale=0.5)
    y = F.group_norm(d(x), groups, d(g), d(b), eps)
    if silu:
        y = F.silu(y)
    put(name, x=x, gamma=g, beta=b, y=y)

# ---- layer_norm over the last dim, eps 1e-5
x = rnd(2, 5, 16, scale=1.5, offset=0.5)
g, b = rnd(16, scale=0.5, offset=1.0), rnd(16, scale=0.5)
put("ln", x=x, gamma=g, beta=b, y=F.layer_norm(d(x), (16,), d(g), d(b), 1e-5))

# ---- linear
x, w, b = rnd(2, 5, 7), rnd(6, 7), rnd(6)
put("linear_bias", x=x, w=w, b=b, y=F.linear(d(x), d(w), d(b)))
x, w = rnd(3, 7), rnd(4, 7)
put("linear_nobias", x=x, w=w, y=F.linear(d(x), d(w)))

# ---- matmul a[2,3,4] . b[2,4,5] with each transpose (stored transposed), alpha
for name, ta, tb, alpha in [("mm_nn", False, False, 1.0), ("mm_tn", True, False, 0.5),
                            ("mm_nt", False, True, 1.0), ("mm_tt", True, True, -2.0)]:
    a, b = rnd(2, 3, 4), rnd(2, 4, 5)
    a_st = a.transpose(1, 2).contiguous() if ta else a
    b_st = b.transpose(1, 2).contiguous() if tb else b
    put(name, a=a_st, b=b_st, y=torch.bmm(d(a), d(b)) * alpha)
a, b = rnd(3, 6), rnd(6, 2)
put("mm_2d", a=a, b=b, y=d(a) @ d(b))

# ---- softmax over the last dim; large logits exercise the max subtraction
x = rnd(3, 4, 9, scale=20.0)
put("softmax", x=x, y=torch.softmax(d(x), dim=-1))


# ---- attention: (case, B, Nq, Nk, heads, head dim, causal)
def attention(q, k, v, heads, scale, causal):
    bsz, nq, c = q.shape
    nk = k.shape[1]
    hd = c // heads
    qh = q.view(bsz, nq, heads, hd).transpose(1, 2)
    kh = k.view(bsz, nk, heads, hd).transpose(1, 2)
    vh = v.view(bsz, nk, heads, hd).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) * scale
    if causal:  # key j is hidden from query i when j > i
        mask = torch.ones(nq, nk, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = (p @ vh).transpose(1, 2).reshape(bsz, nq, c)
    return o, p


for name, bsz, nq, nk, heads, hd, causal in [
    ("attn_self", 2, 6, 6, 2, 4, False),
    ("attn_cross", 2, 7, 5, 3, 4, False),
    ("attn_causal", 1, 6, 6, 2, 8, True),
    ("attn_causal_nq_lt_nk", 1, 5, 7, 2, 4, True),
    ("attn_causal_nq_gt_nk", 2, 7, 4, 1, 4, True),
]:
    q, k, v = rnd(bsz, nq, heads * hd), rnd(bsz, nk, heads * hd), rnd(bsz, nk, heads * hd)
    scale = 1.0 / math.sqrt(hd)
    o, p = attention(d(q), d(k), d(v), heads, scale, causal)
    # Cross-check against PyTorch's fused attention (top-left causal alignment).
    o_ref = F.scaled_dot_product_attention(
        d(q).view(bsz, nq, heads, hd).transpose(1, 2), d(k).view(bsz, nk, heads, hd).transpose(1, 2),
        d(v).view(bsz, nk, heads, hd).transpose(1, 2), is_causal=causal, scale=scale)
    assert torch.allclose(o, o_ref.transpose(1, 2).reshape(bsz, nq, heads * hd), atol=1e-12)
    put(name, q=q, k=k, v=v, y=o, probs=p)

# ---- activations
x = torch.linspace(-8, 8, 150, dtype=torch.float32).view(3, 50)
put("gelu", x=x, y=F.gelu(d(x)))
put("quick_gelu", x=x, y=d(x) * torch.sigmoid(1.702 * d(x)))
put("silu", x=x, y=F.silu(d(x)))
x = rnd(2, 3, 10, scale=2.0)
a, gate = d(x).chunk(2, dim=-1)
put("geglu", x=x, y=a * F.gelu(gate))

# ---- add (every broadcast form), mul, scale
a, b = rnd(2, 3, 4, 5), rnd(2, 3, 4, 5)
put("add_same", a=a, b=b, y=d(a) + d(b))
a, b = rnd(2, 3, 4, 5), rnd(2, 3)
put("add_lead2", a=a, b=b, y=d(a) + d(b)[:, :, None, None])
a, b = rnd(2, 3, 4, 5), rnd(2, 3, 4)
put("add_lead3", a=a, b=b, y=d(a) + d(b)[:, :, :, None])
a, b = rnd(2, 5, 6), rnd(6)
put("add_last", a=a, b=b, y=d(a) + d(b))
a, b = rnd(3, 7), rnd(3, 7)
put("mul", a=a, b=b, y=d(a) * d(b))
a = rnd(4, 6)
put("scale", a=a, y=d(a) * 0.18215)

# ---- concat, upsample
a, b = rnd(2, 3, 4, 5), rnd(2, 2, 4, 5)
put("concat_dim1", a=a, b=b, y=torch.cat([a, b], dim=1))
a, b = rnd(2, 3, 4), rnd(2, 3, 2)
put("concat_dim2", a=a, b=b, y=torch.cat([a, b], dim=2))
x = rnd(2, 3, 4, 5)
put("upsample", x=x, y=F.interpolate(x, scale_factor=2, mode="nearest"))

# ---- timestep embedding
# "y" is diffusers' own fp32 result. PyTorch's vectorised CPU exp is not always
# correctly rounded (for dim 320, shift 0 it is 1 ulp off at k = 2, 15, 42), and
# at t = 999 one ulp in a frequency moves sin/cos by ~6e-5. "y_cr" repeats
# diffusers' fp32 steps with correctly rounded exp, sin and cos, which is what a
# libm implementation of the same steps should reproduce to ~1e-7.
def timestep_embedding_cr(t, dim, flip, shift, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - shift)
    freq = torch.exp(exponent.double()).float()
    arg = (t[:, None].float() * freq[None, :]).double()
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1).float()
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


t = torch.tensor([0.0, 49.0, 999.0, 500.5], dtype=torch.float32)
for name, dim, flip, shift in [("temb_flip1_shift0", 320, True, 0), ("temb_flip0_shift0", 320, False, 0),
                               ("temb_flip1_shift1", 320, True, 1), ("temb_flip0_shift1", 320, False, 1),
                               ("temb_odd9_flip1_shift1", 9, True, 1)]:
    y = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift,
                               scale=1, max_period=10000)
    y_cr = timestep_embedding_cr(t, dim, flip, shift)
    assert (y - y_cr).abs().max() < 1e-4
    put(name, t=t, y=y, y_cr=y_cr)

# ---- embedding (i32 ids) and permute
ids = torch.tensor([[0, 3, 10, 3, 7], [1, 1, 0, 9, 4]], dtype=torch.int32)
table = rnd(11, 6)
put("embedding", ids=ids, table=table, y=table[ids.long()])
x = rnd(2, 3, 4, 5)
put("permute_0231", x=x, y=x.permute(0, 2, 3, 1))
put("permute_3102", x=x, y=x.permute(3, 1, 0, 2))
x = rnd(3, 4, 5)
put("permute_102", x=x, y=x.permute(1, 0, 2))

os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata={"generator": "tests/reference/gen_ops.py",
                                  "torch": torch.__version__})
print(f"wrote {len(tensors)} tensors to {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
