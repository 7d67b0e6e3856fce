#!/usr/bin/env python3
"""Reference timings for tests/bench/bench-models: diffusers / transformers on the
same machine, fp32, the real SD 2.1-base configs with random weights, 512x512
image, batch 2 [uncond, cond], 77-token prompts. Prints lines in bench-models'
format so the two can be read side by side.

    python3 tests/bench/bench_diffusers_cpu.py [--runs 3] [--warmup 1] [--only unet|vae|text]

Needs torch, diffusers, transformers (pip). Uses torch's default thread count.
"""
import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
            use_linear_projection=True)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
           block_out_channels=(128, 256, 512, 512),
           down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, sample_size=768)
TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
            num_hidden_layers=23, max_position_embeddings=77, hidden_act="gelu",
            projection_dim=512)


def measure(name, fn, warmup, runs):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    print(f"{name:<34} median {statistics.median(t):10.1f} ms   min {min(t):10.1f} ms   runs {runs}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"# diffusers/transformers, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          "fp32 CPU, eager (SDPA attention)")
    with torch.inference_mode():
        if a.only in (None, "text"):
            te = CLIPTextModel(CLIPTextConfig(**TEXT)).eval()
            ids = torch.randint(0, 49407, (2, 77))
            measure("text encoder, batch 2", lambda: te(ids), a.warmup, a.runs)
            del te
        if a.only in (None, "vae"):
            vae = AutoencoderKL(**VAE).eval()
            px = torch.rand(1, 3, 512, 512) * 2 - 1
            measure("VAE encoder, 512x512", lambda: vae.encode(px).latent_dist.mean, a.warmup, a.runs)
            del vae
        if a.only in (None, "unet"):
            unet = UNet2DConditionModel(**UNET).eval()
            x = torch.randn(2, 4, 64, 64)
            ctx = torch.randn(2, 77, 1024)
            t = torch.tensor([50, 50])
            measure("UNet full, batch 2", lambda: unet(x, t, ctx), a.warmup, a.runs)


if __name__ == "__main__":
    main()
