#!/usr/bin/env python3
"""Reference fixtures for the Stable Diffusion parts of the engine (VAE encoder,
CLIP text encoder + tokenizer, noise schedule, UNet and its named probes).

What it produces
----------------
--config tiny (default; outputs are committed under tests/data/):
  sd-input.png                       128x128 RGB test image (shapes + gradients)
  sd2-tiny/                          SD 2.x-style diffusers folder, random weights
  sd2-tiny-expected.safetensors      reference tensors computed from sd2-tiny/
  sd1-tiny/                          SD 1.x-style folder (conv proj_in/out, int head
                                     count, quick_gelu, pad <|endoftext|>, text encoder
                                     only as model.fp16.safetensors, VAE with legacy
                                     query/key/value/proj_attn key names)
  sd1-tiny-expected.safetensors
  The tensor names are listed in tests/data/sd-fixtures.md.

--config real (not committed; for a GPU machine, also works on CPU):
  sd21-base-random/                  the REAL SD 2.1-base configs (UNet 865,910,724
                                     params, VAE, 23-layer text encoder), seeded random
                                     weights, full diffusers layout (about 5 GB, fp32)
  sd-input-512.png                   512x512 version of the test image
  sd21-base-random-expected.safetensors
                                     inputs, vae.latent, text.cond/uncond, unet.x_t,
                                     unet.out and the six probes of Meng et al.'s
                                     Table 3 (docs/models.md 2.3), at 512x512 / 64x64 latent

Exact commands (from the repository root):
  python3 tests/reference/gen_sd_fixtures.py --config tiny --out-dir tests/data
  python3 tests/reference/gen_sd_fixtures.py --config real --out-dir /some/dir [--device cuda]
  python3 tests/reference/gen_sd_fixtures.py --config real --build-only   (counts only)

Everything runs in fp32 with TF32 disabled, deterministic algorithms and fixed
seeds.  All weights are written first and loaded back from the written files
before anything is computed, so the expected tensors correspond exactly to the
files (for sd1-tiny: to the fp16-rounded text encoder weights).

Requires torch 2.x, diffusers, transformers, safetensors, numpy, pillow, and
tests/data/sd21-feature-inventory.txt + resources/clip-tokenizer (paths are
found relative to this file, override with --inventory / --tokenizer-src).
CI does not run this script; the C tests read its committed outputs.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before torch touches CUDA

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_probes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PROMPT = "a photo of a red cube, on a table!"
UNCOND = ""
T_MAIN = 50
T_END = 999
NOISE_SEED = 1234
REAL_UNET_PARAMS = 865910724
REAL_VAE_ENC_PARAMS = 34163664
REAL_TEXT_PARAMS = 340387840

# PNDMScheduler config of SD 2.1-base (docs/models.md 4.1), shared by all folders.
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.10.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

UNET_BLOCKS = dict(
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    mid_block_type="UNetMidBlock2DCrossAttn",
    layers_per_block=2,
    in_channels=4,
    out_channels=4,
    flip_sin_to_cos=True,
    freq_shift=0,
    act_fn="silu",
    norm_eps=1e-5,
    downsample_padding=1,
    mid_block_scale_factor=1,
    upcast_attention=False,
)

VAE_BLOCKS = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    layers_per_block=2,
    act_fn="silu",
    scaling_factor=0.18215,
)

MODELS = {
    # SD 2.x conventions: linear proj_in/out, per-level head COUNTS, exact GELU,
    # pad "!" (id 0), fp32 text encoder, current attention key names in the VAE.
    "sd2-tiny": dict(
        unet=dict(UNET_BLOCKS, sample_size=16, block_out_channels=[8, 16, 16, 16],
                  attention_head_dim=[1, 2, 4, 4], cross_attention_dim=8,
                  use_linear_projection=True, norm_num_groups=4),
        vae=dict(VAE_BLOCKS, block_out_channels=[8, 8, 16, 16], norm_num_groups=4,
                 sample_size=128),
        text=dict(hidden_size=8, intermediate_size=128, num_attention_heads=4,
                  num_hidden_layers=3, hidden_act="gelu"),
        pad="!", text_fp16=False, vae_legacy=False, seed=2021,
        drop=()),
    # SD 1.x conventions: 1x1-conv proj_in/out, attention_head_dim an int (= heads
    # at every level), quick_gelu, pad <|endoftext|>, fp16-only text encoder,
    # legacy VAE attention key names.
    "sd1-tiny": dict(
        unet=dict(UNET_BLOCKS, sample_size=16, block_out_channels=[8, 8, 16, 16],
                  attention_head_dim=1, cross_attention_dim=8,
                  use_linear_projection=False, norm_num_groups=4),
        vae=dict(VAE_BLOCKS, block_out_channels=[8, 8, 16, 16], norm_num_groups=4,
                 sample_size=128),
        text=dict(hidden_size=8, intermediate_size=64, num_attention_heads=2,
                  num_hidden_layers=2, hidden_act="quick_gelu"),
        pad="<|endoftext|>", text_fp16=True, vae_legacy=True, seed=1515,
        drop=("self-map@16",)),
}

# Real SD 2.1-base (docs/models.md 1.1, 3.1, 5.1).
REAL = dict(
    unet=dict(UNET_BLOCKS, sample_size=64, block_out_channels=[320, 640, 1280, 1280],
              attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
              use_linear_projection=True, norm_num_groups=32),
    vae=dict(VAE_BLOCKS, block_out_channels=[128, 256, 512, 512], norm_num_groups=32,
             sample_size=768),
    text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
              num_hidden_layers=23, hidden_act="gelu"),
    pad="!", text_fp16=False, vae_legacy=False, seed=2100, drop=())

# Legacy (diffusers <= 0.13) names of the VAE mid-block attention projections.
VAE_LEGACY_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value",
                    "to_out.0": "proj_attn"}


def log(*a):
  print(*a, flush=True)


def setup_torch():
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cudnn.benchmark = False
  torch.use_deterministic_algorithms(True)


# -- random weights --------------------------------------------------------------

@torch.no_grad()
def randomize(model, seed):
  """Give every parameter a random, non-trivial value that keeps activations O(1).

  Linear/Conv weights N(0, 1/fan_in), their biases 0.1 N(0,1); norm weights
  1 + 0.1 N(0,1), norm biases 0.1 N(0,1); embeddings N(0,1).
  """
  g = torch.Generator().manual_seed(seed)
  done = set()
  for name, mod in model.named_modules():
    own = dict(mod.named_parameters(recurse=False))
    if not own:
      continue
    if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
      w = own["weight"]
      fan_in = w[0].numel()
      w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(fan_in))
      if "bias" in own:
        own["bias"].copy_(0.1 * torch.randn(own["bias"].shape, generator=g))
    elif isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
      own["weight"].copy_(1.0 + 0.1 * torch.randn(own["weight"].shape, generator=g))
      own["bias"].copy_(0.1 * torch.randn(own["bias"].shape, generator=g))
    elif isinstance(mod, torch.nn.Embedding):
      own["weight"].copy_(torch.randn(own["weight"].shape, generator=g))
    else:
      raise RuntimeError("randomize: no rule for %s (%s)" % (name, type(mod).__name__))
    for pname in own:
      done.add((name + "." + pname) if name else pname)
  missing = [n for n, _ in model.named_parameters() if n not in done]
  assert not missing, "parameters not randomized: %s" % missing[:5]


# -- inputs ------------------------------------------------------------------------

def make_test_image(size):
  """Deterministic RGB image with structure: gradients, a disc, a square, a
  triangle and stripes (pure numpy, resolution independent in layout)."""
  s = size
  y, x = np.mgrid[0:s, 0:s].astype(np.float64) / (s - 1)
  r = 40 + 180 * x
  g = 30 + 160 * y
  b = 90 + 100 * (1 - x) * y
  img = np.stack([r, g, b], axis=-1)
  disc = (x - 0.30) ** 2 + (y - 0.32) ** 2 < 0.18 ** 2
  img[disc] = [230, 40, 35]
  sq = (np.abs(x - 0.70) < 0.16) & (np.abs(y - 0.66) < 0.16)
  img[sq] = np.stack([20 + 60 * y[sq], 60 + 150 * x[sq], 220 + 0 * x[sq]], axis=-1)
  tri = (y > 0.55) & (y < 0.92) & (np.abs(x - 0.27) < (y - 0.55) * 0.55)
  img[tri] = [250, 225, 40]
  stripes = (x > 0.55) & (y < 0.35) & (np.floor(x * s / max(s // 32, 1)) % 2 == 0)
  img[stripes] = [15, 15, 20]
  # a smooth high-frequency texture in the lower right corner
  tex = (x > 0.60) & (y > 0.86)
  wave = 0.5 + 0.5 * np.sin(2 * np.pi * (7 * x + 3 * y)) * np.cos(2 * np.pi * 5 * y)
  img[tex] = np.stack([255 * wave[tex], 128 + 0 * wave[tex], 255 * (1 - wave[tex])], axis=-1)
  return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def image_to_pixels(path):
  """Exactly the engine's conversion: uint8 RGB -> float32 /255*2-1, NCHW."""
  arr = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255 * 2 - 1
  return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


# -- model folders ----------------------------------------------------------------

def write_tokenizer(dst, pad, tok_src):
  os.makedirs(dst, exist_ok=True)
  for f in ("vocab.json", "merges.txt"):
    shutil.copyfile(os.path.join(tok_src, f), os.path.join(dst, f))

  def special(content, normalized=True):
    return {"content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}
  added = {"49406": dict(special("<|startoftext|>"), special=True),
           "49407": dict(special("<|endoftext|>"), special=True)}
  if pad == "!":
    # As in stabilityai/stable-diffusion-2-1-base: "!" is an added special token.
    added = dict({"0": dict(special("!", normalized=False), special=True)}, **added)
  cfg = {
      "add_prefix_space": False,
      "added_tokens_decoder": added,
      "additional_special_tokens": [],
      "bos_token": "<|startoftext|>",
      "clean_up_tokenization_spaces": True,
      "do_lower_case": True,
      "eos_token": "<|endoftext|>",
      "errors": "replace",
      "model_max_length": 77,
      "pad_token": pad,
      "tokenizer_class": "CLIPTokenizer",
      "unk_token": "<|endoftext|>",
  }
  smap = {
      "bos_token": special("<|startoftext|>"),
      "eos_token": special("<|endoftext|>"),
      "pad_token": pad if pad == "!" else special(pad),
      "unk_token": special("<|endoftext|>"),
  }
  with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
  with open(os.path.join(dst, "special_tokens_map.json"), "w") as f:
    json.dump(smap, f, indent=2)
    f.write("\n")


def write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def text_config(spec):
  t = spec["text"]
  return CLIPTextConfig(
      vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
      attention_dropout=0.0, dropout=0.0, projection_dim=t["hidden_size"],
      bos_token_id=0, eos_token_id=2, pad_token_id=1,   # legacy values, as in SD 2.1-base
      **t)


def build_models(spec, seed):
  torch.manual_seed(seed)
  unet = UNet2DConditionModel(**spec["unet"]).eval()
  vae = AutoencoderKL(**spec["vae"]).eval()
  te = CLIPTextModel(text_config(spec)).eval()
  randomize(unet, seed + 1)
  randomize(vae, seed + 2)
  randomize(te, seed + 3)
  return unet, vae, te


def legacy_vae_key(k):
  for stage in ("encoder", "decoder"):
    base = stage + ".mid_block.attentions.0."
    if k.startswith(base):
      rest = k[len(base):]
      for new, old in VAE_LEGACY_NAMES.items():
        if rest.startswith(new + "."):
          return base + old + rest[len(new):]
  return k


def save_folder(folder, spec, unet, vae, te, tok_src):
  if os.path.exists(folder):
    shutil.rmtree(folder)
  os.makedirs(folder)
  unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
  vae_dir = os.path.join(folder, "vae")
  vae.save_pretrained(vae_dir, safe_serialization=True)
  if spec["vae_legacy"]:
    path = os.path.join(vae_dir, "diffusion_pytorch_model.safetensors")
    sd = load_file(path)
    renamed = {legacy_vae_key(k): v.contiguous() for k, v in sd.items()}
    n_changed = sum(1 for k in sd if legacy_vae_key(k) != k)
    assert n_changed == 16, "expected 16 renamed VAE keys, got %d" % n_changed
    save_file(renamed, path, metadata={"format": "pt"})
  te_dir = os.path.join(folder, "text_encoder")
  if spec["text_fp16"]:
    te16 = CLIPTextModel(te.config).eval()
    te16.load_state_dict(te.state_dict())
    te16 = te16.to(torch.float16)
    te16.save_pretrained(te_dir, variant="fp16")
    assert not os.path.exists(os.path.join(te_dir, "model.safetensors"))
  else:
    te.save_pretrained(te_dir)
  assert sorted(f for f in os.listdir(te_dir) if f.endswith(".safetensors")) == \
      (["model.fp16.safetensors"] if spec["text_fp16"] else ["model.safetensors"])
  write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
  write_tokenizer(os.path.join(folder, "tokenizer"), spec["pad"], tok_src)
  write_json(os.path.join(folder, "model_index.json"), {
      "_class_name": "StableDiffusionPipeline",
      "_diffusers_version": diffusers.__version__,
      "feature_extractor": [None, None],
      "requires_safety_checker": False,
      "safety_checker": [None, None],
      "scheduler": ["diffusers", "PNDMScheduler"],
      "text_encoder": ["transformers", "CLIPTextModel"],
      "tokenizer": ["transformers", "CLIPTokenizer"],
      "unet": ["diffusers", "UNet2DConditionModel"],
      "vae": ["diffusers", "AutoencoderKL"],
  })


def load_folder(folder, spec, device):
  unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"),
                                              torch_dtype=torch.float32)
  vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), torch_dtype=torch.float32)
  kw = {"variant": "fp16"} if spec["text_fp16"] else {}
  te = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"),
                                     dtype=torch.float32, attn_implementation="eager", **kw)
  tok = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
  sched = DDPMScheduler.from_pretrained(os.path.join(folder, "scheduler"))
  for m in (unet, vae, te):
    m.to(device).eval()
    for p in m.parameters():
      assert p.dtype == torch.float32
  return unet, vae, te, tok, sched


def check_reloaded(spec, mem, loaded):
  """The reloaded models hold exactly the in-memory weights (fp16-rounded text
  encoder for text_fp16), including the renamed legacy VAE keys."""
  for name, a, b in zip(("unet", "vae", "text_encoder"), mem, loaded):
    sa, sb = a.state_dict(), {k: v.cpu() for k, v in b.state_dict().items()}
    assert set(sa) == set(sb), "%s: key sets differ: %s" % (
        name, sorted(set(sa) ^ set(sb))[:6])
    for k in sa:
      ref = sa[k]
      if name == "text_encoder" and spec["text_fp16"] and ref.is_floating_point():
        ref = ref.half().float()
      assert torch.equal(ref, sb[k]), "%s: %s differs after reload" % (name, k)
    log("  reload check: %s, %d tensors identical" % (name, len(sa)))


# -- forward passes ------------------------------------------------------------------

@torch.no_grad()
def encode_text(tok, te, prompt, device):
  ids = tok(prompt, padding="max_length", max_length=77, truncation=True,
            return_tensors="pt").input_ids
  assert ids.shape == (1, 77)
  hs = te(input_ids=ids.to(device))[0].float().cpu()
  return ids[0].to(torch.int64), hs


def std_report(name, t):
  log("  %-48s std %.4f  mean %+.4f  absmax %.3f" % (
      name, t.float().std().item(), t.float().mean().item(), t.float().abs().max().item()))


def stats_ok(name, t, lo=0.05, hi=50.0):
  s = t.float().std().item()
  assert lo < s < hi and torch.isfinite(t).all(), \
      "%s: std %.4g outside (%g, %g): activations vanish or explode" % (name, s, lo, hi)


@torch.no_grad()
def consistency_checks(unet, rec, ctx):
  """Cross-checks between captured probes, independent of how they were hooked."""
  T, I = rec.tensors, rec.inputs
  n_exact = n_approx = 0

  def close(a, b, what, tol=2e-5):
    nonlocal n_approx
    err = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1e-6)
    assert err <= tol * max(scale, 1.0), "%s: max err %.3g (scale %.3g)" % (what, err, scale)
    n_approx += 1

  def same(a, b, what):
    nonlocal n_exact
    assert a.shape == b.shape and torch.equal(a, b), "%s: not identical" % what
    n_exact += 1

  n_lv = len(unet.down_blocks)
  same(T["unet-in"], I["unet-in-raw"], "unet-in == UNet sample")
  for prefix, kind, mod in sd_probes.sites(unet):
    if kind == "res":
      x = I[prefix + "-res"]
      sc = mod.conv_shortcut(x) if mod.conv_shortcut is not None else x
      close(T[prefix + "-res-out"], sc + T[prefix + "-res-increment"],
            prefix + ": res-out == shortcut(x) + res-increment")
    if kind == "vit":
      x = I[prefix + "-vit"]
      for i, tb in enumerate(mod.transformer_blocks):
        bp = "%s-vit-block%d-" % (prefix, i)
        # maps are probability rows
        for m in ("self-map", "cross-map"):
          if bp + m in T:
            close(T[bp + m].sum(-1), torch.ones_like(T[bp + m].sum(-1)), bp + m + " rows sum to 1")
        # maps recomputed from the stored q/k (checks the head split and layout)
        heads = tb.attn1.heads

        def tokens(t4):
          return t4.flatten(2).transpose(1, 2)                      # [B,C,H,W] -> [B,N,C]

        def split(t3):
          b, n, c = t3.shape
          return t3.view(b, n, heads, c // heads).transpose(1, 2)  # [B,h,N,d]
        if bp + "self-map" in T:
          q, k = split(tokens(T[bp + "self-q"])), split(tokens(T[bp + "self-k"]))
          p = (q @ k.transpose(-1, -2) * tb.attn1.scale).softmax(-1)
          close(T[bp + "self-map"], p, bp + "self-map from self-q/self-k")
        heads = tb.attn2.heads
        q = split(tokens(T[bp + "cross-q"]))
        k = split(tb.attn2.to_k(ctx))
        p = (q @ k.transpose(-1, -2) * tb.attn2.scale).softmax(-1)
        close(T[bp + "cross-map"], p, bp + "cross-map from cross-q/to_k(text)")
      # vit-out == proj_out(block-out) + residual (single transformer block)
      assert len(mod.transformer_blocks) == 1
      bo = T["%s-vit-block0-out" % prefix]
      if mod.use_linear_projection:
        b, c, h, w = bo.shape
        po = mod.proj_out(bo.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
      else:
        po = mod.proj_out(bo)
      close(T[prefix + "-vit-out"], po + x, prefix + ": vit-out == proj_out(block0-out) + input")
      # the probe that feeds this transformer is the res-out of the same repeat
      res_id = prefix.replace("mid", "mid-repeat0") + "-res-out"
      same(T[res_id], x, prefix + ": vit input == res-out")
  # vit-out / res-out feed the next module
  for stage, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
    for L, blk in enumerate(blocks):
      nr = len(blk.resnets)
      has_attn = getattr(blk, "attentions", None) is not None
      for r in range(nr):
        src = "%s-level%d-repeat%d-%s" % (stage, L, r, "vit-out" if has_attn else "res-out")
        if r + 1 < nr:
          nxt = I["%s-level%d-repeat%d-res" % (stage, L, r + 1)]
        elif stage == "down" and blk.downsamplers is not None:
          nxt = I["down-level%d-downsampler" % L]
        elif stage == "up" and blk.upsamplers is not None:
          nxt = I["up-level%d-upsampler" % L]
        elif stage == "down":
          nxt = I["mid-repeat0-res"]
        else:
          nxt = I["conv_norm_out"]
        c = T[src].shape[1]
        # up blocks concatenate [hidden, skip]: the hidden part comes first
        same(T[src], nxt[:, :c], "%s == input of the next module" % src)
  same(T["mid-vit-out"], I["mid-repeat1-res"], "mid-vit-out == mid resnets[1] input")
  # skip connections: up-level0-repeat0's second half is the last down output
  last_down = "down-level%d-repeat1-res-out" % (n_lv - 1)
  c0 = T["mid-repeat1-res-out"].shape[1]
  same(T[last_down], I["up-level0-repeat0-res"][:, c0:], "skip: last down output -> up-level0-repeat0")
  same(T["unet-after-conv-in"], I["up-level%d-repeat2-res" % (n_lv - 1)][:, -T["unet-after-conv-in"].shape[1]:],
       "skip: conv_in output -> last up resnet")
  log("  consistency: %d exact identities, %d numerical identities hold" % (n_exact, n_approx))


def run_unet(unet, x_t, t, ctx):
  return unet(x_t.repeat(ctx.shape[0], 1, 1, 1), t, encoder_hidden_states=ctx).sample


def dropped(fid, spec, shape):
  for d in spec["drop"]:
    kind, hw = d.split("@")
    if fid.endswith(kind) and shape[-2] == int(hw) ** 2:
      return True
  return False


@torch.no_grad()
def generate(name, spec, out_dir, tok_src, inventory, config, device, build_only=False):
  t0 = time.time()
  folder = os.path.join(out_dir, name)
  real = config == "real"
  log("== %s: building models (seed %d)" % (name, spec["seed"]))
  mem = build_models(spec, spec["seed"])
  counts = {
      "unet": sum(p.numel() for p in mem[0].parameters()),
      "vae_encoder+quant_conv": sum(p.numel() for n, p in mem[1].named_parameters()
                                    if n.startswith(("encoder.", "quant_conv."))),
      "text_encoder": sum(p.numel() for p in mem[2].parameters()),
  }
  log("  parameters: %s" % counts)
  if real:
    assert counts["unet"] == REAL_UNET_PARAMS, counts
    assert counts["vae_encoder+quant_conv"] == REAL_VAE_ENC_PARAMS, counts
    assert counts["text_encoder"] == REAL_TEXT_PARAMS, counts
    log("  parameter counts match docs/models.md (UNet %d, VAE enc %d, text %d)" % (
        REAL_UNET_PARAMS, REAL_VAE_ENC_PARAMS, REAL_TEXT_PARAMS))
  if build_only:
    ids = sd_probes.feature_ids(mem[0])
    assert ids == list(inventory), "feature ids differ from feature_inventory.txt"
    for fid in ids:
      assert sd_probes.expected_shape(fid, dict(mem[0].config), 64) == inventory[fid], fid
    log("  %d feature ids and shapes == feature_inventory.txt; --build-only: stopping" % len(ids))
    return
  save_folder(folder, spec, *mem, tok_src)
  log("  wrote %s (%.1fs)" % (folder, time.time() - t0))
  unet, vae, te, tok, sched = load_folder(folder, spec, device)
  check_reloaded(spec, mem, (unet, vae, te))
  mem_vae = mem[1]
  del mem

  # ids of the grammar, derived from the module tree, against the inventory
  ids = sd_probes.feature_ids(unet)
  assert len(ids) == len(set(ids))
  assert set(ids) == set(inventory), "feature ids differ from feature_inventory.txt: %s" % (
      sorted(set(ids) ^ set(inventory))[:8])
  assert ids == list(inventory), "feature id order differs from feature_inventory.txt"
  log("  %d feature ids derived from the UNet == feature_inventory.txt" % len(ids))
  ucfg = dict(unet.config)
  latent_hw = ucfg["sample_size"]
  image_px = latent_hw * 8

  # inputs
  img_path = os.path.join(out_dir, "sd-input.png" if not real else "sd-input-%d.png" % image_px)
  if not os.path.exists(img_path) or real:
    make_test_image(image_px).save(img_path, optimize=True)
  pixels = image_to_pixels(img_path)
  assert pixels.shape == (1, 3, image_px, image_px)
  noise = torch.randn((1, 4, latent_hw, latent_hw), generator=torch.Generator().manual_seed(NOISE_SEED))

  out = {"input.pixels": pixels, "input.noise": noise}
  dist = vae.encode(pixels.to(device)).latent_dist
  latent = (dist.mean * vae.config.scaling_factor).float().cpu()
  out["vae.latent"] = latent
  if spec["vae_legacy"]:
    ref = mem_vae.to(device).encode(pixels.to(device)).latent_dist.mean * vae.config.scaling_factor
    assert torch.equal(ref.cpu(), latent), "legacy-key VAE gives different latents"
    log("  legacy-key VAE: diffusers renames on load, latent identical to the in-memory VAE")
  del mem_vae
  tok_c, text_c = encode_text(tok, te, PROMPT, device)
  tok_u, text_u = encode_text(tok, te, UNCOND, device)
  out.update({"tokens.cond": tok_c, "tokens.uncond": tok_u,
              "text.cond": text_c, "text.uncond": text_u})
  log("  tokens.cond  %s" % tok_c[:16].tolist())
  log("  tokens.uncond %s" % tok_u[:4].tolist())
  ac = sched.alphas_cumprod.float()
  assert ac.shape == (1000,)
  out["schedule.alphas_cumprod"] = ac.clone()
  x_t = sched.add_noise(latent, noise, torch.tensor([T_MAIN])).float()
  ref_xt = ac[T_MAIN].sqrt() * latent + (1 - ac[T_MAIN]).sqrt() * noise
  assert (x_t - ref_xt).abs().max() < 1e-6
  out["unet.x_t"] = x_t
  out["unet.timestep"] = torch.tensor([float(T_MAIN)])
  ctx = torch.cat([text_u, text_c]).to(device)

  # default (SDPA) processors first, for the processor-equivalence check
  ref_out = run_unet(unet, x_t.to(device), T_MAIN, ctx).float().cpu()

  keep = None if not real else set(sd_probes.TABLE3_IDS)
  rec = sd_probes.ProbeRecorder(unet, keep=keep)
  raw_in = {}
  h = unet.register_forward_pre_hook(
      lambda m, a, k: raw_in.__setitem__("x", (a[0] if a else k["sample"]).detach().cpu().clone()),
      with_kwargs=True)
  unet_out = run_unet(unet, x_t.to(device), T_MAIN, ctx).float().cpu()
  h.remove()
  rec.check_complete()
  diff = (unet_out - ref_out).abs().max().item()
  log("  recording processor vs default processor: max |diff| %.3g (out std %.3f)" % (
      diff, unet_out.std().item()))
  assert diff < 1e-5 * max(1.0, ref_out.abs().max().item()), "processor mismatch"
  out["unet.out"] = unet_out
  assert torch.equal(rec.tensors.get("unet-out", unet_out).cpu(), unet_out) or real

  # shapes: the grammar's shape rule reproduces the inventory for the real
  # config, and predicts what the hooks captured for this config
  real_cfg = dict(REAL["unet"])
  for fid in ids:
    assert sd_probes.expected_shape(fid, real_cfg, 64) == inventory[fid], fid
    exp = sd_probes.expected_shape(fid, ucfg, latent_hw, batch=2)
    assert rec.shapes[fid] == exp, "%s: captured %s, expected %s" % (fid, rec.shapes[fid], exp)
    if real:
      assert rec.shapes[fid][1:] == inventory[fid], fid
  log("  all %d probe shapes follow the level rule%s" % (
      len(ids), " and equal feature_inventory.txt" if real else ""))

  if not real:
    rec.inputs["unet-in-raw"] = raw_in["x"]
    consistency_checks(unet, rec, ctx)
  else:
    assert torch.equal(rec.tensors.get("unet-in", raw_in["x"]), raw_in["x"])

  log("  activation scale:")
  for k in ("vae.latent", "text.cond", "unet.x_t", "unet.out"):
    std_report(k, out[k])
    stats_ok(k, out[k])
  for fid in ([f for f in ids if f.startswith(("down-level%d" % (len(unet.down_blocks) - 1), "mid"))
               and f.endswith("-out")] if not real else list(sd_probes.TABLE3_IDS)):
    std_report(fid, rec.tensors[fid])
    stats_ok(fid, rec.tensors[fid])

  # probes
  n_dropped = 0
  log("  %-52s %s" % ("probe id", "stored shape"))
  for fid in ids:
    if fid not in rec.tensors:
      continue
    t = rec.tensors[fid]
    if dropped(fid, spec, t.shape):
      n_dropped += 1
      log("  %-52s %s  (dropped: size budget)" % (fid, list(t.shape)))
      continue
    out["probe." + fid] = t
    log("  %-52s %s" % (fid, list(t.shape)))
  assert torch.equal(out.get("probe.unet-out", unet_out), unet_out)

  if name == "sd2-tiny":
    rec.reset()
    x_end = sched.add_noise(latent, noise, torch.tensor([T_END])).float()
    out["unet.x_t_t999"] = x_end
    out["unet.out_t999"] = run_unet(unet, x_end.to(device), T_END, ctx).float().cpu()
    std_report("unet.out_t999", out["unet.out_t999"])
    stats_ok("unet.out_t999", out["unet.out_t999"])
  rec.remove()

  meta = {
      "model": name,
      "config": config,
      "prompt": PROMPT,
      "uncond_prompt": UNCOND,
      "t": str(T_MAIN),
      "t_end": str(T_END) if "unet.out_t999" in out else "",
      "noise_seed": str(NOISE_SEED),
      "weights_seed": str(spec["seed"]),
      "unet_batch": "[uncond, cond]",
      "latent": "vae.encode(x).latent_dist.mean * scaling_factor",
      "probes": "fp32, batch kept, [B,N,C] -> [B,C,H,W]; maps [B,heads,Nq,Nk]",
      "probes_dropped": ",".join(spec["drop"]) if n_dropped else "",
      "diffusers": diffusers.__version__,
      "transformers": transformers.__version__,
      "torch": torch.__version__,
      "numpy": np.__version__,
      "device": str(device),
      "generator": "tests/reference/gen_sd_fixtures.py",
  }
  for k, v in out.items():
    assert v.dtype in (torch.float32, torch.int64), k
  out = {k: v.contiguous() for k, v in out.items()}
  exp_path = os.path.join(out_dir, name + "-expected.safetensors")
  save_file(out, exp_path, metadata=meta)
  log("  wrote %s: %d tensors, %d probes (%d dropped), %.2f MB (%.1fs)" % (
      exp_path, len(out), sum(1 for k in out if k.startswith("probe.")), n_dropped,
      os.path.getsize(exp_path) / 1e6, time.time() - t0))


def du(path):
  total = 0
  for root, _, files in os.walk(path):
    for f in files:
      total += os.path.getsize(os.path.join(root, f))
  return total


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data"))
  ap.add_argument("--config", choices=("tiny", "real"), default="tiny")
  ap.add_argument("--device", default="cpu", help="cpu or cuda (real config)")
  ap.add_argument("--only", default=None, help="generate only this model (tiny)")
  ap.add_argument("--build-only", action="store_true",
                  help="real config: build the models, check parameter counts and probe "
                       "ids/shapes, write nothing")
  ap.add_argument("--inventory", default=os.path.join(
      REPO, "tests", "data", "sd21-feature-inventory.txt"))
  ap.add_argument("--tokenizer-src", default=os.path.join(
      REPO, "resources", "clip-tokenizer"))
  args = ap.parse_args()
  setup_torch()
  device = torch.device(args.device)
  inventory = sd_probes.read_inventory(args.inventory)
  assert len(inventory) == 197, len(inventory)
  os.makedirs(args.out_dir, exist_ok=True)
  if args.config == "tiny":
    names = [args.only] if args.only else list(MODELS)
    for n in names:
      generate(n, MODELS[n], args.out_dir, args.tokenizer_src, inventory, "tiny", device)
    files = [os.path.join(args.out_dir, p) for p in
             ("sd-input.png", "sd2-tiny", "sd1-tiny",
              "sd2-tiny-expected.safetensors", "sd1-tiny-expected.safetensors")]
    total = 0
    for p in files:
      if os.path.exists(p):
        sz = du(p) if os.path.isdir(p) else os.path.getsize(p)
        total += sz
        log("%-40s %10d bytes" % (os.path.relpath(p, args.out_dir), sz))
    log("%-40s %10d bytes (%.2f MB)" % ("total", total, total / 1e6))
  else:
    generate("sd21-base-random", REAL, args.out_dir, args.tokenizer_src, inventory,
             "real", device, build_only=args.build_only)


if __name__ == "__main__":
  main()
