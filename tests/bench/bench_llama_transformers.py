#!/usr/bin/env python3
"""transformers' LlamaForCausalLM on the CPU at the shape bench-llama runs (the
7B shape unless --layers says fewer): a prefill of --prompt tokens, then
--decode greedy steps with the KV cache, and peak RSS. Weights seeded
N(0, 1/fan_in) in bf16 (torch's CPU matmuls in f16 are slow; bf16 uses the
AVX-512 BF16 paths where the CPU has them), so the same bytes per weight as
the engine's f16. Called by bench-llama; usable alone:

    python3 tests/bench/bench_llama_transformers.py --layers 32 --prompt 640 --decode 16
"""
import argparse
import resource
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=640)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                      num_hidden_layers=a.layers, num_attention_heads=32,
                      num_key_value_heads=32, max_position_embeddings=4096,
                      rms_norm_eps=1e-5, torch_dtype=dtype)
    t0 = time.time()
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(dtype)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            elif "embed_tokens" in name:
                p.normal_(0.0, 1.0, generator=g)
            else:
                p.normal_(0.0, p.shape[1] ** -0.5, generator=g)
    # buffers (rotary inv_freq) were left empty on the meta device
    model.model.rotary_emb = LlamaRotaryEmbedding(config=cfg)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  transformers {transformers.__version__}, torch {torch.__version__}: {n_params} "
          f"parameters in {a.dtype}, built in {time.time() - t0:.0f} s, "
          f"{torch.get_num_threads()} threads")
    ids = torch.randint(0, cfg.vocab_size, (1, a.prompt), generator=g)
    with torch.inference_mode():
        t0 = time.time()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        prefill = time.time() - t0
        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        steps = []
        for _ in range(a.decode):
            t0 = time.time()
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            steps.append(time.time() - t0)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
    mean = sum(steps) / len(steps)
    steps.sort()
    print(f"  transformers prefill of {a.prompt} tokens: {prefill:.1f} s "
          f"({a.prompt / prefill:.1f} tokens/s)")
    print(f"  transformers decode, {a.decode} tokens: {mean:.3f} s/token mean, "
          f"{steps[len(steps) // 2]:.3f} median, best {steps[0]:.3f} -> {1 / mean:.2f} tokens/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576
    print(f"  transformers peak RSS: {rss:.2f} GiB")


if __name__ == "__main__":
    main()
