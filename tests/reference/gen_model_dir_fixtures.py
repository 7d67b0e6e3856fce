#!/usr/bin/env python3
"""gen_model_dir_fixtures.py: the expected parse of every config fixture, from
diffusers / transformers themselves, plus placeholder files for the two model
folders.

Produces (under tests/data/model-dir/):
  expected.json   for each config fixture, the values the engine's parser must
                  give, resolved by the Python libraries: missing keys take the
                  constructor defaults of UNet2DConditionModel / AutoencoderKL /
                  PNDMScheduler (inspect.signature) or CLIPTextConfig, and UNet
                  heads are `num_attention_heads or attention_head_dim`, expanded
                  to one entry per level, as diffusers does.
  sd21-base/, sd15/: tokenizer/vocab.json + merges.txt (tiny stand-ins) and empty
                  but valid .safetensors weight files (written with the safetensors
                  library). The config.json files there are hand-copied Hub files and
                  are read, not written, by this script.

Run from the repository root:
  python3 tests/reference/gen_model_dir_fixtures.py
"""
import inspect
import json
import os

from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from safetensors.numpy import save_file
from transformers import CLIPTextConfig

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "model-dir")


def with_defaults(cls, cfg):
    params = inspect.signature(cls.__init__).parameters
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    init, _, _ = cls.extract_init_dict(dict(cfg))
    out.update(init)
    return out


def unet_expected(cfg):
    d = with_defaults(UNet2DConditionModel, cfg)
    n = len(d["block_out_channels"])
    heads = d["num_attention_heads"] or d["attention_head_dim"]
    if isinstance(heads, int):
        heads = [heads] * n
    lpb = d["layers_per_block"]
    return {
        "in_channels": d["in_channels"],
        "out_channels": d["out_channels"],
        "sample_size": d["sample_size"],  # None when absent: the engine uses 64
        "block_out_channels": list(d["block_out_channels"]),
        "down_block_types": list(d["down_block_types"]),
        "up_block_types": list(d["up_block_types"]),
        "layers_per_block": lpb if isinstance(lpb, int) else lpb[0],
        "heads": list(heads),
        "cross_attention_dim": d["cross_attention_dim"],
        "use_linear_projection": d["use_linear_projection"],
        "upcast_attention": d["upcast_attention"],
        "norm_num_groups": d["norm_num_groups"],
        "norm_eps": d["norm_eps"],
        "flip_sin_to_cos": d["flip_sin_to_cos"],
        "freq_shift": d["freq_shift"],
        "downsample_padding": d["downsample_padding"],
        "mid_block_scale_factor": d["mid_block_scale_factor"],
        "transformer_layers_per_block": d["transformer_layers_per_block"],
    }


def vae_expected(cfg):
    d = with_defaults(AutoencoderKL, cfg)
    return {
        "in_channels": d["in_channels"],
        "latent_channels": d["latent_channels"],
        "block_out_channels": list(d["block_out_channels"]),
        "layers_per_block": d["layers_per_block"],
        "norm_num_groups": d["norm_num_groups"],
        "scaling_factor": d["scaling_factor"],
        "use_quant_conv": d["use_quant_conv"],
        "mid_block_add_attention": d["mid_block_add_attention"],
    }


def text_expected(cfg):
    c = CLIPTextConfig.from_dict(dict(cfg))
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers,
        "max_position_embeddings": c.max_position_embeddings,
        "hidden_act": c.hidden_act,
        "layer_norm_eps": c.layer_norm_eps,
    }


def scheduler_expected(cfg):
    d = with_defaults(PNDMScheduler, cfg)
    return {
        "num_train_timesteps": d["num_train_timesteps"],
        "beta_start": d["beta_start"],
        "beta_end": d["beta_end"],
        "beta_schedule": d["beta_schedule"],
    }


KINDS = {"unet": unet_expected, "vae": vae_expected, "text": text_expected,
         "scheduler": scheduler_expected}

FILES = [
    ("unet", "sd21-base/unet/config.json"),
    ("vae", "sd21-base/vae/config.json"),
    ("text", "sd21-base/text_encoder/config.json"),
    ("scheduler", "sd21-base/scheduler/scheduler_config.json"),
    ("unet", "sd15/unet/config.json"),
    ("vae", "sd15/vae/config.json"),
    ("text", "sd15/text_encoder/config.json"),
    ("scheduler", "sd15/scheduler/scheduler_config.json"),
    ("unet", "configs/unet-sd21-base-resaved.json"),
    ("unet", "configs/unet-empty.json"),
    ("unet", "configs/unet-small.json"),
    ("unet", "configs/unet-num-heads.json"),
    ("vae", "configs/vae-empty.json"),
    ("vae", "configs/vae-small.json"),
    ("text", "configs/text-empty.json"),
    ("text", "configs/text-partial.json"),
    ("scheduler", "configs/scheduler-empty.json"),
    ("scheduler", "configs/scheduler-linear.json"),
]


def main():
    cases = []
    for kind, rel in FILES:
        with open(os.path.join(DATA, rel)) as f:
            cfg = json.load(f)
        cfg.pop("_comment", None)
        cases.append({"kind": kind, "file": rel, "expected": KINDS[kind](cfg)})
    with open(os.path.join(DATA, "expected.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")

    # Stand-ins: ds_model_dir_open checks these exist but does not read them.
    weights = {
        "sd21-base": ["unet/diffusion_pytorch_model.safetensors",
                      "vae/diffusion_pytorch_model.safetensors",
                      "text_encoder/model.safetensors"],
        # fp32 and fp16 UNet (fp32 must win), fp16-only VAE (must be used)
        "sd15": ["unet/diffusion_pytorch_model.safetensors",
                 "unet/diffusion_pytorch_model.fp16.safetensors",
                 "vae/diffusion_pytorch_model.fp16.safetensors",
                 "text_encoder/model.safetensors"],
    }
    for folder, files in weights.items():
        for rel in files:
            path = os.path.join(DATA, folder, rel)
            save_file({}, path, metadata={"format": "pt"})
            os.chmod(path, 0o644)
        with open(os.path.join(DATA, folder, "tokenizer", "vocab.json"), "w") as f:
            json.dump({"!": 0, "<|startoftext|>": 49406, "<|endoftext|>": 49407}, f)
            f.write("\n")
        with open(os.path.join(DATA, folder, "tokenizer", "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")


if __name__ == "__main__":
    main()
