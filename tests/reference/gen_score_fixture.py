#!/usr/bin/env python3
"""Reference for the UNet's cross-attention logsumexp statistic (Discffusion,
docs/models.md §6.5): for the committed sd2-tiny model and its fixture inputs
(x_t at t = 50, text [uncond, cond]), every attn2 layer's mean over heads and
query positions of logsumexp over the 77 keys of q·kᵀ·scale, per batch item.

    python3 tests/reference/gen_score_fixture.py     (writes tests/data/sd2-tiny-scores.safetensors)

fp32 on CPU, TF32 off. The per-layer values are computed from the layer's own
to_q / to_k outputs captured by hooks, in forward order.
"""
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    unet = UNet2DConditionModel.from_pretrained(os.path.join(DATA, "sd2-tiny", "unet")).eval()
    ex = load_file(os.path.join(DATA, "sd2-tiny-expected.safetensors"))
    x = torch.cat([ex["unet.x_t"], ex["unet.x_t"]])
    ctx = torch.cat([ex["text.uncond"], ex["text.cond"]])
    rows = []

    def hook(attn):
        def pre(module, args, kwargs):
            h = kwargs.get("hidden_states", args[0] if args else None)
            e = kwargs.get("encoder_hidden_states")
            q = attn.to_q(h)
            k = attn.to_k(e)
            B, N, C = q.shape
            heads = attn.heads
            D = C // heads
            qh = q.view(B, N, heads, D).transpose(1, 2)
            kh = k.view(B, -1, heads, D).transpose(1, 2)
            s = qh @ kh.transpose(-1, -2) * attn.scale
            rows.append(torch.logsumexp(s.double(), dim=-1).mean(dim=(1, 2)))
        return pre

    for name, m in unet.named_modules():
        if name.endswith("attn2"):
            m.register_forward_pre_hook(hook(m), with_kwargs=True)
    with torch.no_grad():
        unet(x, torch.tensor([50, 50]), ctx)
    lse = torch.stack(rows).float()  # [layers, B]
    out = os.path.join(DATA, "sd2-tiny-scores.safetensors")
    save_file({"cross_lse": lse}, out, metadata={"generator": "tests/reference/gen_score_fixture.py"})
    print(out, tuple(lse.shape))
    print(lse)


if __name__ == "__main__":
    main()
