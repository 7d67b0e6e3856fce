#!/usr/bin/env python3
"""gen_analysis.py: reference fixtures for tests/test-analysis.c.

Writes tests/data/analysis/:
  analysis.safetensors  f32 inputs ("<case>.x", ...) and expected f32 arrays
  analysis.json         case parameters and expected scalars in full f64
                        (Python's repr round-trips exactly through strtod)

What produces each expectation:
  guidance   numpy float32 arithmetic xu + f32(s)*(xc - xu), the same three
             roundings; delta magnitude in float64.
  PCA        scikit-learn PCA(svd_solver='full') fit_transform on the float64
             positions×channels matrix, then per-component min–max ("sk"), and
             an independent numpy eigh implementation of the engine's
             documented sign rule ("rule"); explained-variance ratios from
             sklearn. Cases: C<N, C>N (Gram path), C=N, rank 2, C=2, a wide
             rank-2 map, a 64×256 probe-like map, joint pairs (one with C>N).
  CKA        numpy float64 in both the feature-space and the Gram form (and the
             HSIC form with the centring matrix H); the generator asserts they
             agree to 1e-12 and stores one.
  cosine     numpy float64, checked against torch.nn.functional.cosine_similarity.
  resize     torch.nn.functional.interpolate (bilinear / bicubic,
             align_corners=False, antialias=False) on float32 CPU tensors.
  heat maps  numpy: mean over concatenated (layer, head) maps, word = mean of
             its piece columns, ensemble mean.
  DAAM       torch, following daam/heatmap.py: per-(layer, head) sums over the
             timesteps in float32, F.interpolate(bicubic) to S×S, clamp_(min=0),
             stack, mean; normalised by maps[1:n_tokens-1].sum(0) + 1e-6.
  LSE        torch.logsumexp in float64 over the float32 logits, then mean.

Run from the repository root (CPU torch is enough; seeded, deterministic):
    python3 tests/reference/gen_analysis.py
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from sklearn.decomposition import PCA

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "data", "analysis")

rng = np.random.default_rng(20250401)
torch.manual_seed(7)
tensors = {}
meta = {}


def f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def put(name, a):
    tensors[name] = f32(a)


def randn(*shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def orthogonal(n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


# ---- guidance ------------------------------------------------------------------
xu, xc = randn(4, 12), randn(4, 12, scale=2.0)
s_values = [0.0, 1.0, 2.5, -0.75, 7.5]
put("guid.xu", xu)
put("guid.xc", xc)
for i, s in enumerate(s_values):
    put(f"guid.out{i}", xu + np.float32(s) * (xc - xu))  # float32 throughout
delta = xc - xu
put("guid.mag", np.sqrt((delta.astype(np.float64) ** 2).sum(axis=0)))
meta["guidance"] = {"s": s_values}


# ---- PCA -------------------------------------------------------------------------
REL_TOL = 1e-10  # the engine's "zero eigenvalue" threshold (ds-pca.c)


def minmax(p):
    out = np.full_like(p, 0.5)
    for r in range(p.shape[1]):
        lo, hi = p[:, r].min(), p[:, r].max()
        if hi > lo:
            out[:, r] = (p[:, r] - lo) / (hi - lo)
    return out


def rule_fit(maps):
    """The engine's documented PCA, in numpy: top-3 of eigh, sign rule."""
    x = np.concatenate([m.astype(np.float64) for m in maps], axis=1)  # [C, N]
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    w, v = np.linalg.eigh(xc @ xc.T)
    order = np.argsort(w)[::-1][:3]
    comps = []
    for j in order:
        if w[j] > 0 and w[j] > REL_TOL * w[order[0]]:
            c = v[:, j].copy()
            big = int(np.argmax(np.abs(c)))  # first of the largest
            comps.append(c if c[big] > 0 else -c)
    outs = []
    for m in maps:
        p = np.zeros((m.shape[1], 3))
        for r, c in enumerate(comps):
            p[:, r] = (m.astype(np.float64) - mean).T @ c
        rgb = minmax(p)
        rgb[:, len(comps):] = 0.5
        outs.append(rgb)
    return outs, len(comps)


def sk_fit(maps, n_comp):
    x = np.concatenate([m.astype(np.float64) for m in maps], axis=1).T  # [N, C]
    pca = PCA(n_components=n_comp, svd_solver="full")
    p = pca.fit_transform(x)
    p = np.pad(p, ((0, 0), (0, 3 - n_comp)))
    outs, start = [], 0
    for m in maps:
        n = m.shape[1]
        outs.append(minmax(p[start:start + n]))
        start += n
    ratio = list(pca.explained_variance_ratio_) + [0.0] * (3 - n_comp)
    return outs, ratio


def lowrank(c, n, rank, scales, offset=True):
    u = orthogonal(c)[:, :rank]
    z = rng.standard_normal((rank, n)) * np.asarray(scales)[:, None]
    x = u @ z
    if offset:
        x += rng.standard_normal((c, 1)) * 3.0
    return f32(x)


def smooth_map(c, h, w):
    """A probe-like map: a few smooth spatial patterns mixed into c channels."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    pats = [np.sin(3 * xx + 1), np.cos(4 * yy), xx * yy, np.sin(6 * (xx + yy))]
    base = np.stack([p.ravel() for p in pats])  # [4, N]
    mix = rng.standard_normal((c, 4)) * np.array([3.0, 2.0, 1.4, 0.8])
    return f32(mix @ base + 0.05 * rng.standard_normal((c, h * w)) + rng.standard_normal((c, 1)))


pca_cases = {
    "tall": [lowrank(5, 60, 5, [3.0, 2.0, 1.2, 0.5, 0.2])],
    "wide": [lowrank(48, 20, 12, np.linspace(4.0, 0.3, 12))],
    "square": [lowrank(16, 16, 16, np.linspace(5.0, 0.1, 16))],
    "rank2": [lowrank(10, 40, 2, [2.0, 1.0])],
    "c2": [lowrank(2, 25, 2, [1.5, 0.4])],
    "wide_rank2": [lowrank(30, 12, 2, [3.0, 1.0])],
    "probe": [smooth_map(64, 16, 16)],
    "joint": [lowrank(12, 30, 12, np.linspace(3.0, 0.2, 12)),
              lowrank(12, 18, 12, np.linspace(2.5, 0.3, 12))],
    "joint_wide": [lowrank(40, 10, 10, np.linspace(3.0, 0.5, 10)),
                   lowrank(40, 7, 7, np.linspace(2.0, 0.4, 7))],
}
meta["pca"] = {}
for name, maps in pca_cases.items():
    c = maps[0].shape[0]
    rule, nc = rule_fit(maps)
    sk, ratio = sk_fit(maps, min(3, c, sum(m.shape[1] for m in maps)))
    for i, m in enumerate(maps):
        put(f"pca.{name}.x{i}", m)
        put(f"pca.{name}.sk{i}", sk[i])
        put(f"pca.{name}.rule{i}", rule[i])
    meta["pca"][name] = {"c": c, "n": [m.shape[1] for m in maps], "n_components": nc,
                         "ratio": [float(r) for r in ratio]}


# ---- CKA ------------------------------------------------------------------------
def centre(a):
    a = a.astype(np.float64)
    return a - a.mean(axis=0, keepdims=True)


def cka_feature(x, y):
    xc, yc = centre(x), centre(y)
    return (np.linalg.norm(yc.T @ xc) ** 2
            / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def cka_gram(x, y):
    xc, yc = centre(x), centre(y)
    k, l = xc @ xc.T, yc @ yc.T
    return np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))


def cka_hsic(x, y):
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k = h @ (x.astype(np.float64) @ x.T.astype(np.float64)) @ h
    l = h @ (y.astype(np.float64) @ y.T.astype(np.float64)) @ h
    hsic = lambda a, b: np.trace(a @ b) / (n - 1) ** 2
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def cka(x, y):
    a, b, c = cka_feature(x, y), cka_gram(x, y), cka_hsic(x, y)
    assert abs(a - b) < 1e-12 and abs(a - c) < 1e-12, (a, b, c)
    return float(a)


meta["cka"] = {}
x = randn(30, 20)
y = f32(x @ rng.standard_normal((20, 45)) * 0.3 + rng.standard_normal((30, 45)))
put("cka.pair_gram.x", x)
put("cka.pair_gram.y", y)
meta["cka"]["pair_gram"] = cka(x, y)

x = randn(200, 8)
y = f32(np.tanh(x[:, :5]) + 0.7 * rng.standard_normal((200, 5)))
put("cka.pair_feat.x", x)
put("cka.pair_feat.y", y)
meta["cka"]["pair_feat"] = cka(x, y)

x = randn(40, 16)
put("cka.orth.x", x)
put("cka.orth.y", f32(x.astype(np.float64) @ orthogonal(16)))
meta["cka"]["orth"] = cka(x, tensors["cka.orth.y"])
perm = rng.permutation(16)
signs = np.where(rng.random(16) < 0.5, -1.0, 1.0).astype(np.float32)
put("cka.perm.y", x[:, perm] * signs)  # exact in float32

a, b = randn(6, 4, 5), randn(9, 4, 5)
b[:3] += 0.8 * a[:3]
put("cka.maps.a", a)
put("cka.maps.b", b)
meta["cka"]["maps"] = cka(a.reshape(6, 20).T, b.reshape(9, 20).T)
a, b = randn(12, 3, 3), randn(7, 3, 3)
b[:5] += a[:5]
put("cka.maps_gram.a", a)
put("cka.maps_gram.b", b)
meta["cka"]["maps_gram"] = cka(a.reshape(12, 9).T, b.reshape(7, 9).T)

sweep_s = [0.0, 0.5, 1.0, 2.0, 5.0, 7.5]
for name, (c, n) in {"sweep": (8, 30), "sweep_gram": (40, 10)}.items():
    xu = randn(c, n)
    xc = f32(0.6 * xu + randn(c, n, scale=0.8))
    put(f"cka.{name}.xu", xu)
    put(f"cka.{name}.xc", xc)
    vals = []
    for s in sweep_s:
        xs = xu + np.float32(s) * (xc - xu)
        vals.append(cka(xs.T, xu.T))
    meta["cka"][name] = vals
meta["cka"]["sweep_s"] = sweep_s


# ---- cosine ----------------------------------------------------------------------
a, b = randn(7, 3, 4), randn(7, 3, 4)
b += 0.5 * a
a[:, 0, 1] = 0.0  # a zero vector at position 1: cosine 0 there by convention
put("cos.a", a)
put("cos.b", b)
a2, b2 = a.reshape(7, 12).astype(np.float64), b.reshape(7, 12).astype(np.float64)
num = (a2 * b2).sum(0)
den = np.linalg.norm(a2, axis=0) * np.linalg.norm(b2, axis=0)
per = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
flat = float((a2 * b2).sum() / (np.linalg.norm(a2) * np.linalg.norm(b2)))
tper = F.cosine_similarity(torch.from_numpy(a2), torch.from_numpy(b2), dim=0)
assert np.allclose(tper.numpy(), per, atol=1e-12)
meta["cosine"] = {"mean_position": float(per.mean()), "flat": flat}


# ---- resize -----------------------------------------------------------------------
resize_cases = {
    "bil_up": ("bilinear", (2, 3, 5), (7, 11)),
    "bil_down": ("bilinear", (2, 9, 8), (4, 3)),
    "bil_same_h": ("bilinear", (1, 5, 6), (5, 9)),
    "bil_odd": ("bilinear", (1, 7, 3), (3, 10)),
    "bil_16_64": ("bilinear", (2, 16, 16), (64, 64)),
    "bic_up": ("bicubic", (2, 4, 4), (16, 16)),
    "bic_up2": ("bicubic", (2, 3, 5), (8, 7)),
    "bic_down": ("bicubic", (1, 10, 9), (4, 5)),
    "bic_same_h": ("bicubic", (1, 6, 6), (6, 13)),
    "bic_16_64": ("bicubic", (3, 16, 16), (64, 64)),
}
meta["resize"] = {}
for name, (mode, shape, size) in resize_cases.items():
    x = randn(*shape)
    y = F.interpolate(torch.from_numpy(x)[None], size=size, mode=mode, align_corners=False,
                      antialias=False)[0]
    put(f"rs.{name}.x", x)
    put(f"rs.{name}.y", y.numpy())
    meta["resize"][name] = {"mode": mode, "shape": list(shape), "size": list(size)}


# ---- heat maps -------------------------------------------------------------------
def probs(*shape):
    return f32(torch.softmax(torch.from_numpy(randn(*shape, scale=2.0)), dim=-1).numpy())


K = 7
heads = [4, 4, 2]
layers = [probs(h, 16, K) for h in heads]
for i, l in enumerate(layers):
    put(f"hm.l{i}", l)
put("hm.mean", np.concatenate([l.astype(np.float64) for l in layers], axis=0).mean(axis=0))
m = tensors["hm.mean"].astype(np.float64)
word_first, word_count, token = 2, 3, 5
put("hm.word", m[:, word_first:word_first + word_count].mean(axis=1))
ens = [probs(16, K) for _ in range(3)]
for i, e in enumerate(ens):
    put(f"hm.e{i}", e)
put("hm.emean", np.mean([e.astype(np.float64) for e in ens], axis=0))
meta["heatmap"] = {"k": K, "h": 4, "w": 4, "heads": heads, "word_first": word_first,
                   "word_count": word_count, "token": token}

# DAAM
K, S, n_tokens, steps = 6, 16, 5, 2
daam_layers = [(2, 4, 4), (1, 8, 8), (3, 2, 4)]  # (heads, h, w); the last is not square
maps = []
for t in range(steps):
    for li, (nh, h, w) in enumerate(daam_layers):
        a = probs(nh, h * w, K)
        put(f"daam.t{t}.l{li}", a)
all_up = []
for li, (nh, h, w) in enumerate(daam_layers):
    total = torch.zeros(nh, h * w, K)
    for t in range(steps):
        total += torch.from_numpy(tensors[f"daam.t{t}.l{li}"])
    for hd in range(nh):
        hm = total[hd].permute(1, 0).reshape(K, h, w)  # (tokens, h, w), DAAM's layout
        up = F.interpolate(hm.unsqueeze(1), size=(S, S), mode="bicubic")
        assert (up < 0).any(), "fixture should exercise the clamp"
        all_up.append(up.clamp_(min=0))
maps = torch.stack(all_up, dim=0).mean(0)[:, 0]  # (K, S, S)
norm = maps / (maps[1:n_tokens - 1].sum(0, keepdim=True) + 1e-6)
put("daam.out", maps.reshape(K, S * S).T.numpy())
put("daam.norm", norm.reshape(K, S * S).T.numpy())
meta["daam"] = {"k": K, "size": S, "n_tokens": n_tokens, "steps": steps,
                "layers": [list(l) for l in daam_layers]}


# ---- LSE ---------------------------------------------------------------------------
s = randn(6, 10, 77, scale=2.0)
put("lse.s", s)
big = f32(randn(3, 4, 77, scale=200.0) + 1000.0)  # exp would overflow without the shift
put("lse.big", big)
meta["lse"] = {
    "s": float(torch.logsumexp(torch.from_numpy(s).double(), dim=-1).mean()),
    "big": float(torch.logsumexp(torch.from_numpy(big).double(), dim=-1).mean()),
}

os.makedirs(OUT_DIR, exist_ok=True)
save_file(tensors, os.path.join(OUT_DIR, "analysis.safetensors"))
os.chmod(os.path.join(OUT_DIR, "analysis.safetensors"), 0o644)
with open(os.path.join(OUT_DIR, "analysis.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
print(f"wrote {len(tensors)} tensors and {len(meta)} scalar groups to {OUT_DIR}")
