#!/usr/bin/env python3
"""Reference data for tests/test-llama.c: tiny seeded LLaMA decoders run by
transformers' LlamaForCausalLM in fp32 (eager attention, TF32 off).

Writes tests/data/llama/<case>/{config.json, model.safetensors, expected.safetensors}:

  mha  hidden 64, 4 heads, 2 layers, MLP 128, vocab 300, untied head,
       rms_norm_eps 1e-6, rope_theta 10000; f32 weights under LlamaForCausalLM's
       names (model.*, lm_head.weight); a plain LlamaConfig.
  gqa  the same widths with 2 key/value heads, MLP 96, tied embeddings,
       rms_norm_eps 1e-5, rope_theta 500000; weights rounded to f16 and stored
       as f16 under llava-hf's names (language_model.model.*); a LLaVA-style
       config.json whose "text_config" holds the LlamaConfig.

expected.safetensors: prompt [12] i32 (BOS 1 first), logits [12, vocab] of
the prefill, greedy [32] i32 (argmax, recomputing the whole sequence every
step), embeds [4, 64] and embeds_logits [12, vocab]: the prefill with
prompt positions 3..6 given as input embeddings (rows of `embeds`), as LLaVA
puts image features there (docs/models.md §7.5).

Weights are drawn N(0, 1/fan_in) (linears), N(0, 1) (embeddings),
1 + 0.1 N(0, 1) (norms; embeddings N(0, 0.01) when tied), so logits have a
useful spread; the smallest gap between the two best logits over the greedy
steps is printed (a near-tie would make the greedy tokens fragile).

With --real DIR: the real LLaVA-1.5 widths (hidden 4096, 32 heads, MLP
11008, vocab 32000, rms_norm_eps 1e-5) at 2 layers, f32, written to DIR
(2.7 GB; not committed), with a 16-token prompt, its logits and 16 greedy
tokens; test-llama checks it when DIFFSCOPE_LLAMA_REAL=DIR.

Run by hand:  python3 tests/reference/gen_llama_fixture.py
              python3 tests/reference/gen_llama_fixture.py --real /tmp/llama-real
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "llama")


def init_weights(model, seed, emb_std=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(emb_std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def greedy(model, prompt, steps):
    ids = prompt.clone()
    gaps = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids[None]).logits[0, -1]
            top = torch.topk(logits, 2).values
            gaps.append(float(top[0] - top[1]))
            ids = torch.cat([ids, logits.argmax()[None]])
    return ids[len(prompt):], min(gaps)


def make_case(name, cfg, seed, f16, llava_names):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    # Tied: small embeddings, else the current token's own row wins every step.
    init_weights(model, seed, 0.1 if cfg.tie_word_embeddings else 1.0)
    if f16:  # values exactly representable in f16, computed in f32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    if llava_names:
        state = {k.replace("model.", "language_model.model.", 1)
                 if k.startswith("model.") else "language_model." + k: v
                 for k, v in state.items()}
    if f16:
        state = {k: v.half() for k, v in state.items()}
    save_file(state, os.path.join(d, "model.safetensors"))

    text = json.loads(cfg.to_json_string())
    if llava_names:
        conf = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
                "image_token_index": 32000, "text_config": text}
    else:
        conf = text
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")

    g = torch.Generator().manual_seed(seed + 1)
    prompt = torch.randint(3, cfg.vocab_size, (12,), generator=g)
    prompt[0] = 1
    with torch.no_grad():
        logits = model(prompt[None]).logits[0]
        embeds = torch.randn(4, cfg.hidden_size, generator=g)
        if f16:
            embeds = embeds.half().float()
        inp = model.model.embed_tokens(prompt[None]).clone()
        inp[0, 3:7] = embeds
        embeds_logits = model(inputs_embeds=inp).logits[0]
    tokens, gap = greedy(model, prompt, 32)
    save_file({
        "prompt": prompt.to(torch.int32).contiguous(),
        "logits": logits.contiguous(),
        "greedy": tokens.to(torch.int32).contiguous(),
        "embeds": embeds.contiguous(),
        "embeds_logits": embeds_logits.contiguous(),
    }, os.path.join(d, "expected.safetensors"))
    print(f"{name}: greedy {tokens.tolist()}  smallest top-2 gap {gap:.4g}")


def real(outdir):
    torch.set_num_threads(os.cpu_count())
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                      num_key_value_heads=32, num_hidden_layers=2, vocab_size=32000,
                      max_position_embeddings=4096, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=False,
                      attn_implementation="eager")
    # Not on the meta device: to_empty would leave the rotary inv_freq buffer
    # uninitialised (it is not a parameter).
    model = LlamaForCausalLM(cfg).eval()
    init_weights(model, 1234)
    os.makedirs(outdir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(outdir, "model.safetensors"))
    with open(os.path.join(outdir, "config.json"), "w") as f:
        f.write(cfg.to_json_string())
    g = torch.Generator().manual_seed(1235)
    prompt = torch.randint(3, cfg.vocab_size, (16,), generator=g)
    prompt[0] = 1
    with torch.no_grad():
        logits = model(prompt[None]).logits[0]
    tokens, gap = greedy(model, prompt, 16)
    save_file({"prompt": prompt.to(torch.int32).contiguous(), "logits": logits.contiguous(),
               "greedy": tokens.to(torch.int32).contiguous()},
              os.path.join(outdir, "expected.safetensors"))
    print(f"real widths, 2 layers: greedy {tokens.tolist()}  smallest top-2 gap {gap:.4g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", metavar="DIR")
    args = ap.parse_args()
    if args.real:
        real(args.real)
        return
    common = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=300,
                  max_position_embeddings=128, attn_implementation="eager",
                  bos_token_id=1, eos_token_id=2)
    make_case("mha", LlamaConfig(**common, intermediate_size=128, num_key_value_heads=4,
                                 rms_norm_eps=1e-6, rope_theta=10000.0,
                                 tie_word_embeddings=False), 7, False, False)
    make_case("gqa", LlamaConfig(**common, intermediate_size=96, num_key_value_heads=2,
                                 rms_norm_eps=1e-5, rope_theta=500000.0,
                                 tie_word_embeddings=True), 8, True, True)


if __name__ == "__main__":
    main()
