#!/usr/bin/env python3
"""Reference implementation and fixtures of Diffscope's CLIP + diffusion
feature fusion for LLaVA-1.5 (issue #13; docs/models.md §7.9;
engine/models/ds-fusion.c; read by tests/test-fusion.c and
tests/test-cli-ask.c).

No fusion weights or reference code exist publicly, so the two modules below
ARE the definition; the C engine must match them.

Inputs of both modes:
  V [N, Cv]  the CLIP tokens: the vision tower's selected layer, class token
             dropped, BEFORE the projector (576 x 1024 for LLaVA-1.5)
  F [G, C]   the diffusion tokens: one UNet probe X [C, h, w] of both CFG
             halves, guided X = X_u + s (X_c - X_u), average-pooled to a
             g x g grid (g divides h and w), row-major: G = g^2

  D = diffusion_proj(F)                                   [G, Cv]
  "concat":          fused = [V; D]                       [N + G, Cv]
  "cross_attention": pre-LN multi-head attention, CLIP tokens as queries,
                     diffusion tokens as keys and values, residual:
        Q = q_proj(norm_q(V)), K = k_proj(norm_kv(D)), W = v_proj(norm_kv(D))
        A = softmax(Q K^T / sqrt(Cv / H)) W               per head, H heads
        fused = V + out_proj(A)                           [N, Cv]
  then LLaVA's projector (Linear, exact GELU, Linear) row by row.

Writes under tests/data/fusion/:
  concat/config.json, concat/fusion.safetensors
                     mode "concat", probe U-L3-R1-B0-Cross-Q of
                     tests/data/sd2-tiny ([8, 16, 16] at its native 128),
                     t 50, s 7.5, grid 4 (16 tokens), diffusion_channels 8,
                     vision_hidden 32 (tests/data/llava-tiny's tower);
                     weights stored in F16 (the reference uses the rounded
                     values)
  cross-attention/config.json, cross-attention/fusion.safetensors
                     mode "cross_attention", the same probe, t, s, grid and
                     widths, heads 4; weights F32
  expected.safetensors
    probe.uncond, probe.cond  [8, 16, 16]  X_u, X_c (N(0,1) draws)
    tokens                    [16, 8]      F from them (s 7.5, grid 4)
    clip                      [9, 32]      V (N(0,1) draws)
    concat.fused              [25, 32]
    concat.projected          [25, 64]     through llava-tiny's projector
    cross_attention.fused     [9, 32]
    cross_attention.projected [9, 64]

Both checkpoints say "trained": true so that the tests can run them without
--allow-untrained-fusion; their descriptions say they are random test weights.
Weights are seeded: matrices N(0, 1/fan_in), biases 0.02 N(0, 1), LayerNorm
scales 1 + 0.1 N(0, 1) and shifts 0.1 N(0, 1).

Run from the repository root (a second; made with torch 2.15, safetensors 0.8;
re-running gives identical tensors, only the order of the header's metadata
may differ):
    OMP_NUM_THREADS=1 python3 tests/reference/gen_fusion_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as Fn
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "fusion")
LLAVA = os.path.join(DATA, "llava-tiny")

PROBE = "U-L3-R1-B0-Cross-Q"  # sd2-tiny at 128: [8, 16, 16]
C, H, W = 8, 16, 16
T, S, GRID = 50, 7.5, 4
N_CLIP, CV, HEADS = 9, 32, 4  # llava-tiny's vision tower: 3x3 patches of width 32
SEED = 5


class CrossAttention(torch.nn.Module):
  """Pre-LN multi-head cross-attention with a residual on the queries' side."""

  def __init__(self, width, heads):
    super().__init__()
    assert width % heads == 0
    self.heads = heads
    self.norm_q = torch.nn.LayerNorm(width, eps=1e-5)
    self.norm_kv = torch.nn.LayerNorm(width, eps=1e-5)
    self.q_proj = torch.nn.Linear(width, width)
    self.k_proj = torch.nn.Linear(width, width)
    self.v_proj = torch.nn.Linear(width, width)
    self.out_proj = torch.nn.Linear(width, width)

  def forward(self, v, d):  # v [N, Cv] queries, d [G, Cv] keys and values
    n, width = v.shape
    hd = width // self.heads
    kv = self.norm_kv(d)
    q = self.q_proj(self.norm_q(v)).reshape(n, self.heads, hd).transpose(0, 1)  # [H, N, hd]
    k = self.k_proj(kv).reshape(-1, self.heads, hd).transpose(0, 1)             # [H, G, hd]
    w = self.v_proj(kv).reshape(-1, self.heads, hd).transpose(0, 1)             # [H, G, hd]
    p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)            # [H, N, G]
    a = (p @ w).transpose(0, 1).reshape(n, width)                               # [N, Cv]
    return v + self.out_proj(a)


class DiffusionFusion(torch.nn.Module):
  """The fusion module; its state_dict names are the checkpoint's tensor names."""

  def __init__(self, mode, channels, width, heads=None):
    super().__init__()
    assert mode in ("concat", "cross_attention")
    self.mode = mode
    self.diffusion_proj = torch.nn.Linear(channels, width)
    if mode == "cross_attention":
      self.cross_attn = CrossAttention(width, heads)

  def forward(self, v, f):  # v [N, Cv], f [G, C]
    d = self.diffusion_proj(f)
    if self.mode == "concat":
      return torch.cat([v, d], dim=0)
    return self.cross_attn(v, d)


def diffusion_tokens(xu, xc, s, grid):
  """X_u, X_c [C, h, w] -> F [grid^2, C]: guided, average-pooled, row-major."""
  x = xu + s * (xc - xu)
  c, h, w = x.shape
  assert h % grid == 0 and w % grid == 0
  pooled = Fn.avg_pool2d(x[None], kernel_size=(h // grid, w // grid))[0]  # [C, g, g]
  return pooled.reshape(c, grid * grid).t().contiguous()


def init_weights(module, g, round_to=None):
  with torch.no_grad():
    for name, p in sorted(module.named_parameters()):
      if "norm" in name and name.endswith(".weight"):
        p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
      elif "norm" in name:
        p.copy_(0.1 * torch.randn(p.shape, generator=g))
      elif name.endswith(".bias"):
        p.copy_(0.02 * torch.randn(p.shape, generator=g))
      else:
        p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
      if round_to is not None:
        p.copy_(p.to(round_to).float())  # what the file holds


def projector():
  """llava-tiny's mlp2x_gelu, from its first shard (f16 -> f32)."""
  t = load_file(os.path.join(LLAVA, "model-00001-of-00002.safetensors"))
  w1, b1 = (t["multi_modal_projector.linear_1." + k].float() for k in ("weight", "bias"))
  w2, b2 = (t["multi_modal_projector.linear_2." + k].float() for k in ("weight", "bias"))
  return lambda x: Fn.linear(Fn.gelu(Fn.linear(x, w1, b1)), w2, b2)


def write_checkpoint(folder, module, config, dtype):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
  sd = {k: v.detach().to(dtype).contiguous() for k, v in module.state_dict().items()}
  save_file(sd, os.path.join(folder, "fusion.safetensors"), metadata={"format": "pt"})


def main():
  torch.manual_seed(0)
  g = torch.Generator().manual_seed(SEED)
  xu = torch.randn(C, H, W, generator=g)
  xc = torch.randn(C, H, W, generator=g)
  v = torch.randn(N_CLIP, CV, generator=g)
  f = diffusion_tokens(xu, xc, S, GRID)
  proj = projector()
  out = {"probe.uncond": xu, "probe.cond": xc, "tokens": f, "clip": v}
  for mode, folder, dtype in (("concat", "concat", torch.float16),
                              ("cross_attention", "cross-attention", torch.float32)):
    m = DiffusionFusion(mode, C, CV, HEADS if mode == "cross_attention" else None).eval()
    init_weights(m, g, dtype if dtype != torch.float32 else None)
    config = {"format": "diffscope-fusion", "version": 1, "mode": mode, "probe": PROBE,
              "t": T, "s": S, "grid": GRID, "diffusion_channels": C, "vision_hidden": CV}
    if mode == "cross_attention":
      config["heads"] = HEADS
    config["trained"] = True
    config["description"] = ("random test weights (tests/reference/gen_fusion_fixtures.py, "
                             "seed %d), NOT a trained fusion: for the tests only" % SEED)
    write_checkpoint(os.path.join(OUT, folder), m, config, dtype)
    with torch.no_grad():
      fused = m(v, f)
      if mode == "cross_attention":  # the same as PyTorch's own attention
        ca, d = m.cross_attn, m.diffusion_proj(f)
        split = lambda x: x.reshape(-1, HEADS, CV // HEADS).transpose(0, 1)
        kv = ca.norm_kv(d)
        a = Fn.scaled_dot_product_attention(split(ca.q_proj(ca.norm_q(v))), split(ca.k_proj(kv)),
                                            split(ca.v_proj(kv)))
        alt = v + ca.out_proj(a.transpose(0, 1).reshape(N_CLIP, CV))
        assert torch.allclose(alt, fused, atol=1e-5), float((alt - fused).abs().max())
      out[mode + ".fused"] = fused
      out[mode + ".projected"] = proj(fused)
    print(mode, "fused", tuple(fused.shape), "projected", tuple(out[mode + ".projected"].shape))
  save_file({k: t.float().contiguous() for k, t in out.items()},
            os.path.join(OUT, "expected.safetensors"),
            metadata={"probe": PROBE, "s": repr(S), "grid": str(GRID)})


if __name__ == "__main__":
  main()
