#!/usr/bin/env python3
"""Write the trained shapes model in the diffusers layout (what the C engine loads).

  python3 scripts/shapes/export.py [--from best|latest] [--out resources/models/shapes]

reads scripts/shapes/checkpoints/vae.pt and best.pt (or unet-latest.pt) and writes

  OUT/model_index.json                         StableDiffusionPipeline
  OUT/unet/config.json + diffusion_pytorch_model.fp16.safetensors
  OUT/vae/config.json  + diffusion_pytorch_model.fp16.safetensors
  OUT/text_encoder/config.json + model.fp16.safetensors   ("text_model." keys, as SD 2.1-base)
  OUT/tokenizer/ vocab.json merges.txt tokenizer_config.json special_tokens_map.json (pad "!")
  OUT/scheduler/scheduler_config.json          SD 2.1-base's PNDMScheduler config
  OUT/training.json                            what was trained and measured

Weights are stored as fp16 (the engine and diffusers' variant="fp16" both read
them; the engine converts to fp32). It then reloads the folder with diffusers /
transformers (fp32) and checks it reproduces the checkpoint's weights rounded to
fp16 exactly, and writes OUT/README.md from the training record.
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as T  # noqa: E402


def write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def load_trained(which):
  vae, vck = T.load_vae()
  ck = torch.load(os.path.join(T.CKPT_DIR, "best.pt" if which == "best" else "unet-latest.pt"),
                  weights_only=False)
  unet, te = T.build_unet_te(0, ck["world_ids"])
  # the EMA weights are what training evaluates (best.pt holds only them)
  unet.load_state_dict(ck.get("ema_unet", ck["unet"]))
  T.te_load_sparse(te, ck.get("ema_te", ck["te"]), ck["world_ids"])
  return vae.eval(), unet.eval(), te.eval(), vck, ck


def round_fp16(model):
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(p.half().float())
  return model


def export(out, vae, unet, te, info):
  import diffusers
  if os.path.exists(out):
    shutil.rmtree(out)
  os.makedirs(out)
  for name, m in (("unet", unet), ("vae", vae)):
    d = os.path.join(out, name)
    m.save_pretrained(d, safe_serialization=True)
    if name == "unet":   # the engine's default heat-map layers for this model (train.HEAT_DIVISOR)
      cp = os.path.join(d, "config.json")
      with open(cp) as f:
        cfg = json.load(f)
      cfg["_diffscope_heat_divisor"] = T.HEAT_DIVISOR
      write_json(cp, cfg)
    w = os.path.join(d, "diffusion_pytorch_model.safetensors")
    sd = load_file(w)
    os.remove(w)
    save_file({k: v.half().contiguous() for k, v in sd.items()},
              os.path.join(d, "diffusion_pytorch_model.fp16.safetensors"), metadata={"format": "pt"})
  d = os.path.join(out, "text_encoder")
  te.save_pretrained(d)
  for f in os.listdir(d):
    if f.endswith(".safetensors"):
      os.remove(os.path.join(d, f))
  sd = {k if k.startswith("text_model.") else "text_model." + k: v.detach().half().contiguous()
        for k, v in te.state_dict().items()}
  save_file(sd, os.path.join(d, "model.fp16.safetensors"), metadata={"format": "pt"})
  write_json(os.path.join(out, "scheduler", "scheduler_config.json"), T.SCHEDULER_CONFIG)
  T.write_tokenizer(os.path.join(out, "tokenizer"))
  write_json(os.path.join(out, "model_index.json"), {
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
  write_json(os.path.join(out, "training.json"), info)
  for root, _, files in os.walk(out):   # safetensors writes 0600; the model is installed for all
    for f in files:
      os.chmod(os.path.join(root, f), 0o644)


def write_readme(out, info):
  ev = info["eval"] or {}
  curve = "\n".join("| %d | %s | %s | %s | %s |" % (
      c["step"], "%.4f" % c["loss"] if c.get("loss") is not None else "-",
      *("%.3f" % c[k] if c.get(k) is not None else "-" for k in ("p16", "p8", "p32")))
      for c in info["pointing_curve"]) or "| - | - | - | - | - |"
  p = info["params"]
  text = f"""# shapes: a toy Stable Diffusion trained on synthetic scenes

**Toy shapes model, trained on synthetic scenes.** It has Stable Diffusion
2.x's architecture (diffusers `UNet2DConditionModel` with CrossAttnDownBlock2D x3 +
DownBlock2D / UpBlock2D + CrossAttnUpBlock2D x3, linear proj_in/out, per-level
head counts; `AutoencoderKL`; `CLIPTextModel` with exact GELU and the real CLIP
BPE tokenizer padding with "!"; SD 2.1-base's PNDM scheduler config), but it is
tiny and knows only the shapes world of `scripts/shapes/world.py`: 128x128
scenes of 1-3 solid objects (red, green, blue, yellow x circle, square,
triangle, no colour or shape repeated in a scene) on grey backgrounds, with
captions such as "a red circle left of a blue square". It exists so that the
explorer's cross-attention maps can mean something: each colour and shape word
has one place in the picture. Whatever localization it has comes from denoising
alone (epsilon prediction); there is no loss on attention maps. How far it got
is measured below and in tests/test-shapes.c.

Its native size is 128 (the default of the CLI and the explorer: the VAE
downsamples by 4, 128 px -> 32x32x4 latent; cross-attention at 32x32, 16x16,
8x8 and 4x4 in the mid block); the default word maps are the 16x16 layers,
half the latent side (`"_diffscope_heat_divisor": 2` in unet/config.json: the
layers where this model's words were measured to point at their objects; SD
2.1-base's default is a quarter of the latent side, its 16x16 layers at 512).

| part | what | parameters |
|---|---|---|
| unet | channels 32/64/64/64, layers_per_block 1, heads 2/4/4/4 (16 wide), context 64 | {p["unet"]:,} |
| vae | channels 16/32/64 (3 levels, factor 4), layers_per_block 1, 8 groups, latent 4, scaling_factor {info["scaling_factor"]:.5f} | {p["vae"]:,} |
| text_encoder | CLIP, 3 layers, width 64, 4 heads, MLP 256, gelu, 77 positions, vocab 49408 | {p["text_encoder"]:,} |

Weights are stored as fp16 (`*.fp16.safetensors`; diffusers: `variant="fp16"`).
Only the {p["trained_embedding_rows"]} token-embedding rows of the world's words
(and "!", start, end) were trained; every other row is zero, so words outside
the world all look alike to the model.

## How it was trained

On 2 CPU cores (torch, `torch.set_num_threads(2)`), shared with other jobs:

* Stage A, VAE: {info["vae_steps"]} steps ({info["vae_minutes"]} min) of L1 + MSE +
  edge + 1e-4 KL on freshly generated scenes (64 px crops, then full 128 px);
  full-image PSNR {info["vae_psnr_db"]} dB; scaling_factor = 1 / std of the
  latent means.
* Stage T, text encoder alone, on the world's captions (no images): linear
  heads on each token's output predict the colour and shape of the object the
  token names, and the outputs after the caption are pulled to the empty
  caption's; then frozen, as SD's CLIP encoder is.
* Stage B, UNet: epsilon-prediction MSE (min-SNR weighted) at uniform random
  t, batches of a fixed set of 20,000 scenes (seed 1) encoded once (posterior
  mean x scaling), a random caption template per scene per step (half of the
  multi-object ones naming only some objects), 15% empty captions, AdamW with
  warmup, an EMA of the weights. The recipe changed along the way: docs/shapes.md
  lists every change with the step it took effect, and
  scripts/shapes/checkpoints/train.log has every command that was run. This
  export is from step **{info["unet_step"]}** ({info["unet_minutes"]} min of
  UNet training), checkpoint `{info["checkpoint"]}`.

```sh
python3 scripts/shapes/train.py --stage vae; python3 scripts/shapes/train.py --stage latents
python3 scripts/shapes/train.py --stage te --te-steps 400
python3 scripts/shapes/train.py --stage unet --batch 16 --lr 1e-3 [--resume]
scripts/shapes/publish {info["checkpoint"]}    # export + goldens + pictures + test-shapes
```

## Numbers

POINTING on 100 two-object scenes of seed 7000 (never trained on, but used
to pick the exported step; the untouched held-out numbers are
tests/test-shapes.c's on seed 9000, in docs/shapes.md): for every colour and
shape word of "a <colour> <shape> and a <colour> <shape>", the argmax of its
cross-attention map (mean over heads and over the three 16x16 cross-attention
layers D-L1-R0, U-L2-R0, U-L2-R1; t in 100, 200, 300, 400, 500; cond half;
bilinear to 128x128) lies inside that object's mask. Chance (mean mask area):
{(info["chance"] or 0):.3f}.

This model: pointing **{ev.get("pointing", float("nan")):.3f}** (colour words
{ev.get("colour", float("nan")):.3f}, shape words {ev.get("shape", float("nan")):.3f}).

The curve below is this run's (pointing at the 16x16 default layers, and at
the 8x8 and 32x32 layers alone); the first run's, with a text encoder trained
jointly with the UNet, is in docs/shapes.md.

| step | loss (last 200) | 16x16 (default) | 8x8 | 32x32 |
|---|---|---|---|---|
{curve}

`tests/data/shapes/` holds 100 more held-out scenes (seed 9000) with masks.
`scripts/shapes/check_engine.py` compares the C engine with diffusers on this
folder (VAE latent, UNet output, cross-attention maps).
"""
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(text)


def load_folder(out):
  """The exported folder, loaded in fp32 by diffusers / transformers."""
  from diffusers import AutoencoderKL, UNet2DConditionModel
  from transformers import CLIPTextModel, CLIPTokenizer
  unet = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"), variant="fp16",
                                              torch_dtype=torch.float32).eval()
  vae = AutoencoderKL.from_pretrained(os.path.join(out, "vae"), variant="fp16",
                                      torch_dtype=torch.float32).eval()
  te = CLIPTextModel.from_pretrained(os.path.join(out, "text_encoder"), variant="fp16",
                                     torch_dtype=torch.float32).eval()
  tok = CLIPTokenizer.from_pretrained(os.path.join(out, "tokenizer"))
  return unet, vae, te, tok


def check(out, vae, unet, te):
  u2, v2, t2, tok = load_folder(out)
  assert tok.pad_token_id == 0
  for a, b, what in ((unet, u2, "unet"), (vae, v2, "vae"), (te, t2, "text_encoder")):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb), (what, set(sa) ^ set(sb))
    worst = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    assert worst == 0.0, (what, worst)
    assert all(sb[k].dtype == torch.float32 for k in sb), what
  print("reload check: unet, vae, text_encoder weights identical (fp16-rounded, loaded as fp32)")
  print("vae scaling_factor", v2.config.scaling_factor)


def curve_row(c):
  """One evaluation of pointing.json as {step, loss, p8, p16, p32}. Entries
  written while the default layers were the 8x8 ones have "pointing" at 8x8
  and "pointing_16"; later ones "pointing" at 16x16 and "pointing_8"."""
  if "pointing_8" in c:
    p8, p16 = c["pointing_8"], c["pointing"]
  else:
    p8, p16 = c["pointing"], c.get("pointing_16")
  return dict(step=c["step"], loss=c.get("loss"), p8=p8, p16=p16, p32=c.get("pointing_32"))


def fresh_eval(vae, unet, te):
  """Pointing of the exported (fp16-rounded) weights at the default layers, on
  the evaluation scenes of training (seed 7000)."""
  tokens = T.Tokens(T.os.environ.get("SHAPES_CACHE", "/tmp/shapes-cache"))
  with torch.no_grad():
    return T.PointingEval(vae, tokens)(unet, te, T.sched_alphas())


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--from", dest="which", choices=("best", "latest"), default="best")
  ap.add_argument("--out", default=os.path.join(T.REPO, "resources", "models", "shapes"))
  args = ap.parse_args()
  torch.set_num_threads(2)
  vae, unet, te, vck, ck = load_trained(args.which)
  for m in (vae, unet, te):
    round_fp16(m)
  curve = []
  p = os.path.join(T.CKPT_DIR, "pointing.json")
  if os.path.exists(p):
    with open(p) as f:
      curve = json.load(f)
  info = dict(
      what="toy shapes model: Stable Diffusion 2.x architecture, trained on synthetic "
           "shapes-world scenes (scripts/shapes)",
      checkpoint=args.which, unet_step=ck["step"], unet_minutes=round(ck.get("minutes", 0), 1),
      eval=fresh_eval(vae, unet, te),
      vae_steps=vck["steps"], vae_minutes=round(vck["minutes"], 1), vae_psnr_db=round(vck["psnr"], 2),
      scaling_factor=vck["scaling_factor"],
      params=dict(unet=sum(x.numel() for x in unet.parameters()),
                  vae=sum(x.numel() for x in vae.parameters()),
                  text_encoder=sum(x.numel() for x in te.parameters()),
                  trained_embedding_rows=len(ck["world_ids"])),
      pointing_curve=[curve_row(c) for c in curve],
      chance=curve[-1]["chance"] if curve else None)
  export(args.out, vae, unet, te, info)
  write_readme(args.out, info)
  check(args.out, vae, unet, te)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
