#!/usr/bin/env python3
"""Reference timings for tests/bench/bench-models: diffusers / transformers on the
same machine, the real SD 2.1-base configs with random weights, 512x512 image,
batch 2 [uncond, cond], 77-token prompts, eager with SDPA attention. Prints lines
in bench-models' format so the two can be read side by side.

    python3 tests/bench/bench_diffusers.py [--device cpu|cuda] [--dtype fp32|fp16]
        [--runs 3] [--warmup 1] [--only text|vae|unet|unet-l1|unet-maps] [--compile]

The same five measurements as bench-models:
  text encoder, batch 2; VAE encoder (latent_dist.mean); UNet full;
  UNet to U-L1 probes: stopped by a forward hook on U-L1-R2-B0-Cross-Q's to_q
    (up_blocks[1].attentions[2].transformer_blocks[0].attn2.to_q), the deepest
    of the paper's U-L1 features;
  UNet full + all cross-attn maps: every attn2 runs a processor that forms the
    softmax probabilities explicitly and keeps them on the device (DAAM-style).
On CUDA each run ends with torch.cuda.synchronize(); the peak of
torch.cuda.max_memory_allocated is printed. Needs torch, diffusers, transformers.
CPU: torch's default thread count, fp32.
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


class Stop(Exception):
    pass


def measure(name, fn, warmup, runs, sync):
    for _ in range(warmup):
        fn()
        sync()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        t.append((time.perf_counter() - t0) * 1e3)
    print(f"{name:<40} median {statistics.median(t):9.2f} ms   min {min(t):9.2f} ms   runs {runs}",
          flush=True)


class KeepMaps:
    """attn2 processor: softmax(q k^T * scale) formed explicitly and kept."""

    def __init__(self, store):
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kw):
        q = attn.to_q(hidden_states)
        k = attn.to_k(encoder_hidden_states)
        v = attn.to_v(encoder_hidden_states)
        q, k, v = (attn.head_to_batch_dim(x) for x in (q, k, v))
        probs = attn.get_attention_scores(q, k, None)
        self.store.append(probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", default=None, choices=("fp32", "fp16"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet (full only)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    dt = {"fp32": torch.float32, "fp16": torch.float16}[a.dtype or
                                                        ("fp16" if a.device == "cuda" else "fp32")]
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    cuda = a.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"# diffusers/transformers, torch {torch.__version__}, {where}, {dt}, eager (SDPA "
          "attention)" + (", UNet torch.compile" if a.compile else ""))
    with torch.inference_mode():
        if a.only in (None, "text"):
            te = CLIPTextModel(CLIPTextConfig(**TEXT)).to(dev, dt).eval()
            ids = torch.randint(0, 49407, (2, 77), device=dev)
            measure("text encoder, batch 2", lambda: te(ids), a.warmup, a.runs, sync)
            del te
        if a.only in (None, "vae"):
            vae = AutoencoderKL(**VAE).to(dev, dt).eval()
            px = (torch.rand(1, 3, 512, 512) * 2 - 1).to(dev, dt)
            measure("VAE encoder, 512x512", lambda: vae.encode(px).latent_dist.mean, a.warmup,
                    a.runs, sync)
            del vae
        if a.only is None or a.only.startswith("unet"):
            unet = UNet2DConditionModel(**UNET).to(dev, dt).eval()
            x = torch.randn(2, 4, 64, 64).to(dev, dt)
            ctx = torch.randn(2, 77, 1024).to(dev, dt)
            t = torch.tensor([50, 50], device=dev)
            if a.only in (None, "unet"):
                run = torch.compile(unet) if a.compile else unet
                measure("UNet full, batch 2", lambda: run(x, t, ctx), a.warmup, a.runs, sync)
            if a.only in (None, "unet-l1"):
                to_q = unet.up_blocks[1].attentions[2].transformer_blocks[0].attn2.to_q

                def stop(mod, inp, out):
                    raise Stop()

                h = to_q.register_forward_hook(stop)

                def to_l1():
                    try:
                        unet(x, t, ctx)
                    except Stop:
                        pass

                measure("UNet to U-L1 probes, batch 2", to_l1, a.warmup, a.runs, sync)
                h.remove()
            if a.only in (None, "unet-maps"):
                store = []
                procs = {n: (KeepMaps(store) if n.endswith("attn2.processor") else p)
                         for n, p in unet.attn_processors.items()}
                unet.set_attn_processor(procs)

                def with_maps():
                    store.clear()
                    unet(x, t, ctx)

                measure("UNet full + all cross-attn maps, batch 2", with_maps, a.warmup, a.runs,
                        sync)
    if cuda:
        print(f"# peak device memory allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
