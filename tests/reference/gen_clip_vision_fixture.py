#!/usr/bin/env python3
"""Reference fixtures for LLaVA-1.5's CLIP vision tower and image processor
(docs/models.md 7.1-7.3, 7.8; engine/models/ds-clip-vision.c,
engine/io/ds-clip-image.c; read by tests/test-clip-vision.c).

What it produces
----------------
--config tiny (default; committed under tests/data/clip-vision/, < 1 MB):
  tiny-llava/config.json          a llava-hf LlavaConfig whose vision_config is
                                  a tiny CLIPVisionConfig written the way
                                  llava-hf writes it (hidden_act and eps absent:
                                  the defaults): hidden 32, 4 heads, 3 layers,
                                  MLP 64, image 56, patch 14 -> 4x4 = 16 patches
  tiny-llava/model.safetensors    f32, llava-hf names
                                  (vision_tower.vision_model.*), every layer and
                                  post_layernorm, plus a projector tensor
  tiny-clip/config.json           a standalone CLIPVisionConfig: hidden 40,
                                  5 heads, 4 layers, MLP 72, image 64, patch 12
                                  -> 5x5 = 25 patches (4 pixels per side never
                                  seen), exact GELU, eps 1e-6
  tiny-clip/model.safetensors     f16, CLIP names (vision_model.*), WITHOUT
                                  layer 3 and post_layernorm: feature layer -2
                                  never needs them
  preprocessor_config.json        llava-hf's processor settings (336)
  preprocessor_config_old.json    the same in the older integer form that
                                  openai/clip-vit-large-patch14-336 ships
  images/*.png                    small source images of odd sizes
  processed/<case>.png            8-bit 336x336 result of resize + crop (+ pad)
  expected.safetensors
    tiny-llava.pixels  [2,3,56,56]  inputs (N(0,1))
    tiny-llava.features [2,16,32]   CLIPVisionModel(pixels).hidden_states[-2][:, 1:]
    tiny-llava.full    [2,17,32]    the same with the class token (strategy "full")
    tiny-clip.pixels   [2,3,64,64]
    tiny-clip.features [2,25,40]
    processor.lut      [3,256]      pixel_values of each byte per channel

  The processor's pixel_values are stored losslessly in two parts: the bytes
  after resize and crop (processed/*.png) and the per-channel map from a byte
  to its f32 value (processor.lut). The script checks that
  pixel_values == lut[c][byte] exactly for every case, so a C result equal to
  lut[png] is equal to transformers' pixel_values. (The full f32 tensors would
  be 1.35 MB each.)

--config real (not committed): CLIP ViT-L/14-336 shapes (width 1024, 16 heads,
  MLP 4096, image 336, patch 14 -> 576 patches) at reduced depth: 3 layers, of
  which feature layer -2 runs 2. Seeded random f32 weights (vision_model.*,
  about 160 MB), the processed tests/data/sd-input.png as pixels, and
  hidden_states[-2][:, 1:] [1,576,1024]. tests/test-clip-vision.c checks it
  when DIFFSCOPE_CLIP_VISION_REAL names the folder.

Exact commands (from the repository root):
  python3 tests/reference/gen_clip_vision_fixture.py --config tiny --out-dir tests/data/clip-vision
  python3 tests/reference/gen_clip_vision_fixture.py --config real --out-dir /tmp/clip-vision-real

Everything runs in fp32 on the CPU with TF32 off, eager attention and fixed
seeds; weights are written first and read back before anything is computed.
The processor is transformers' PIL-backed CLIPImageProcessor (the "slow" one
LLaVA was trained with), plus the original LLaVA's expand2square for the
padded cases. Requires torch, transformers, safetensors, numpy, pillow.
"""

import argparse
import json
import math
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import transformers
from transformers import CLIPVisionConfig, CLIPVisionModel

try:  # transformers 5 names the PIL-backed processor explicitly
  from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # 4.x: CLIPImageProcessor is the PIL one
  from transformers import CLIPImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# llava-hf/llava-1.5-7b-hf's preprocessor_config.json
PREPROCESSOR = {
  "crop_size": {"height": 336, "width": 336},
  "do_center_crop": True,
  "do_convert_rgb": True,
  "do_normalize": True,
  "do_rescale": True,
  "do_resize": True,
  "image_mean": CLIP_MEAN,
  "image_processor_type": "CLIPImageProcessor",
  "image_std": CLIP_STD,
  "processor_class": "LlavaProcessor",
  "resample": 3,
  "rescale_factor": 0.00392156862745098,
  "size": {"shortest_edge": 336},
}
# openai/clip-vit-large-patch14-336's (the older integer form)
PREPROCESSOR_OLD = {
  "crop_size": 336,
  "do_center_crop": True,
  "do_normalize": True,
  "do_resize": True,
  "feature_extractor_type": "CLIPFeatureExtractor",
  "image_mean": CLIP_MEAN,
  "image_std": CLIP_STD,
  "resample": 3,
  "size": 336,
}

TINY = {
  "tiny-llava": dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                num_hidden_layers=3, image_size=56, patch_size=14),
    explicit=dict(),  # like llava-hf: hidden_act, layer_norm_eps left to defaults
    prefix="vision_tower.vision_model.", dtype=torch.float32, drop_last=False, seed=11),
  "tiny-clip": dict(
    vision=dict(hidden_size=40, intermediate_size=72, num_attention_heads=5,
                num_hidden_layers=4, image_size=64, patch_size=12),
    explicit=dict(hidden_act="gelu", layer_norm_eps=1e-6),
    prefix="vision_model.", dtype=torch.float16, drop_last=True, seed=12),
}

# (case name, source image, pad to square)
PROCESSOR_CASES = [
  ("portrait", "portrait_45x71.png", False),
  ("portrait_pad", "portrait_45x71.png", True),
  ("landscape", "landscape_97x41.png", False),
  ("landscape_pad", "landscape_97x41.png", True),
  ("tiny", "tiny_5x3.png", False),
  ("large_pad", "large_500x381.png", True),
]


def log(*a):
  print(*a, flush=True)


def setup_torch():
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  torch.use_deterministic_algorithms(True)
  torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@torch.no_grad()
def randomize(model, seed):
  """Every parameter random and non-trivial, activations O(1): Linear/Conv
  weights N(0, 1/fan_in), biases 0.1 N(0,1); LayerNorm weights 1 + 0.1 N(0,1),
  biases 0.1 N(0,1); position and class embeddings N(0,1)."""
  g = torch.Generator().manual_seed(seed)
  for name, p in model.named_parameters():
    mod = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    if name.endswith("class_embedding") or isinstance(mod, torch.nn.Embedding):
      p.copy_(torch.randn(p.shape, generator=g))
    elif isinstance(mod, torch.nn.LayerNorm):
      base = 1.0 if name.endswith("weight") else 0.0
      p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
      if name.endswith("weight"):
        p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
      else:
        p.copy_(0.1 * torch.randn(p.shape, generator=g))
    else:
      raise RuntimeError("randomize: no rule for %s (%s)" % (name, type(mod).__name__))


def build(vision, explicit, seed):
  cfg = CLIPVisionConfig(**vision, **explicit)
  cfg._attn_implementation = "eager"
  model = CLIPVisionModel(cfg).eval()
  randomize(model, seed)
  return model


def tower(model):
  """The module holding embeddings/encoder: CLIPVisionModel.vision_model in
  transformers 4.x, the model itself in 5.x (whose files then have no
  "vision_model." prefix)."""
  return getattr(model, "vision_model", model)


def save_weights(model, path, prefix, dtype, drop_last, extra=None):
  """Writes the tower's parameters under `prefix`; returns what was
  written (as read back)."""
  sd = tower(model).state_dict()
  last = "encoder.layers.%d." % (model.config.num_hidden_layers - 1)
  out = {}
  for k, v in sd.items():
    if k.endswith("position_ids"):
      continue
    if drop_last and (k.startswith(last) or k.startswith("post_layernorm.")):
      continue
    out[prefix + k] = v.detach().to(dtype).contiguous()
  if extra:
    out.update(extra)
  save_file(out, path, metadata={"format": "pt"})
  return load_file(path)


@torch.no_grad()
def load_back(model, saved, prefix):
  """Puts the written (possibly f16-rounded) values back into the model in f32."""
  sd = tower(model).state_dict()
  for k in sd:
    if prefix + k in saved:
      sd[k] = saved[prefix + k].to(torch.float32)
  tower(model).load_state_dict(sd)


@torch.no_grad()
def features(model, pixels, layer=-2):
  hs = model(pixel_values=pixels, output_hidden_states=True).hidden_states
  assert len(hs) == model.config.num_hidden_layers + 1
  return hs[layer]


def write_json(path, obj):
  with open(path, "w") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")


def make_image(w, h, seed):
  """A deterministic RGB picture with structure (gradients, a disc, stripes),
  smooth enough that its upscaled versions compress well as PNG."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  u, v = x / max(w - 1, 1), y / max(h - 1, 1)
  r = 255 * u
  gch = 255 * v
  b = 127 + 120 * np.sin(2 * math.pi * (u + 2 * v))
  disc = (u - 0.6) ** 2 + (v - 0.4) ** 2 < 0.06
  r[disc], gch[disc], b[disc] = 250, 40, 30
  stripes = ((x // max(1, w // 8)) % 2 == 0) & (v > 0.8)
  b[stripes] = 20
  img = np.stack([r, gch, b], -1)
  if w * h < 10000:  # texture for the upscaled cases; large ones stay smooth (small PNGs)
    img += rng.normal(0, 3, (h, w, 3))
  return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def expand2square(pil_img, background_color):
  """The original LLaVA's llava/mm_utils.py expand2square."""
  width, height = pil_img.size
  if width == height:
    return pil_img
  elif width > height:
    result = Image.new(pil_img.mode, (width, width), background_color)
    result.paste(pil_img, (0, (width - height) // 2))
    return result
  else:
    result = Image.new(pil_img.mode, (height, height), background_color)
    result.paste(pil_img, ((height - width) // 2, 0))
    return result


def processor_lut(proc):
  """pixel_values of every byte value per channel, from the processor itself."""
  ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # [1,256,3]
  pv = proc(images=Image.fromarray(ramp, "RGB"), do_resize=False, do_center_crop=False,
            return_tensors="np")["pixel_values"][0]  # [3,1,256]
  return torch.from_numpy(np.ascontiguousarray(pv[:, 0, :]).astype(np.float32))


def gen_processor(out_dir, tensors):
  img_dir = os.path.join(out_dir, "images")
  proc_dir = os.path.join(out_dir, "processed")
  os.makedirs(img_dir, exist_ok=True)
  os.makedirs(proc_dir, exist_ok=True)
  write_json(os.path.join(out_dir, "preprocessor_config.json"), PREPROCESSOR)
  write_json(os.path.join(out_dir, "preprocessor_config_old.json"), PREPROCESSOR_OLD)
  proc = CLIPImageProcessor(**{k: v for k, v in PREPROCESSOR.items()
                               if k not in ("image_processor_type", "processor_class")})
  old = CLIPImageProcessor(**{k: v for k, v in PREPROCESSOR_OLD.items()
                              if k != "feature_extractor_type"})
  lut = processor_lut(proc)
  tensors["processor.lut"] = lut
  fill = tuple(int(x * 255) for x in proc.image_mean)
  assert fill == (122, 116, 104), fill
  seeds = {}
  for case, src, pad in PROCESSOR_CASES:
    path = os.path.join(img_dir, src)
    if src not in seeds:
      w, h = (int(s) for s in src.rsplit("_", 1)[1][:-4].split("x"))
      seeds[src] = len(seeds)
      make_image(w, h, 100 + seeds[src]).save(path, optimize=True)
    img = Image.open(path).convert("RGB")
    if pad:
      img = expand2square(img, fill)
    pv = proc(images=img, return_tensors="np")["pixel_values"][0]
    pv_old = old(images=img, return_tensors="np")["pixel_values"][0]
    assert pv.dtype == np.float32 and pv.shape == (3, 336, 336), (pv.dtype, pv.shape)
    assert np.array_equal(pv, pv_old), case
    raw = proc(images=img, do_rescale=False, do_normalize=False,
               return_tensors="np")["pixel_values"][0]
    assert np.array_equal(raw, np.rint(raw)) and raw.min() >= 0 and raw.max() <= 255
    raw8 = raw.astype(np.uint8)  # [3,336,336]
    mapped = np.stack([lut.numpy()[c][raw8[c]] for c in range(3)])
    assert np.array_equal(mapped, pv), "%s: pixel_values != lut[bytes]" % case
    Image.fromarray(np.ascontiguousarray(raw8.transpose(1, 2, 0)), "RGB").save(
      os.path.join(proc_dir, case + ".png"), optimize=True)
    log("  processor %-14s %s pad=%d -> %s" % (case, src, pad, pv.shape))


def gen_tiny(out_dir):
  setup_torch()
  os.makedirs(out_dir, exist_ok=True)
  tensors = {}
  for name, spec in TINY.items():
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    model = build(spec["vision"], spec["explicit"], spec["seed"])
    if name == "tiny-llava":
      vc = dict(model_type="clip_vision_model", **spec["vision"], projection_dim=16,
                vocab_size=32000)
      write_json(os.path.join(folder, "config.json"), {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": 32000,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vision_config": vc,
        "text_config": {"model_type": "llama", "hidden_size": 64},
      })
      width = spec["vision"]["hidden_size"]
      extra = {"multi_modal_projector.linear_1.weight": torch.zeros(8, width)}
    else:
      write_json(os.path.join(folder, "config.json"),
                 dict(model_type="clip_vision_model", architectures=["CLIPVisionModel"],
                      **spec["vision"], **spec["explicit"], num_channels=3,
                      projection_dim=16))
      extra = None
    saved = save_weights(model, os.path.join(folder, "model.safetensors"), spec["prefix"],
                         spec["dtype"], spec["drop_last"], extra)
    load_back(model, saved, spec["prefix"])
    S = spec["vision"]["image_size"]
    pixels = torch.randn((2, 3, S, S), generator=torch.Generator().manual_seed(spec["seed"] + 100))
    hs = features(model, pixels)
    tensors[name + ".pixels"] = pixels.contiguous()
    tensors[name + ".features"] = hs[:, 1:].contiguous()
    if name == "tiny-llava":
      tensors[name + ".full"] = hs.contiguous()
    log("%s: %d params saved, features %s, std %.3f" % (
      name, sum(v.numel() for v in saved.values()), tuple(hs[:, 1:].shape), hs.std().item()))
  gen_processor(out_dir, tensors)
  save_file(tensors, os.path.join(out_dir, "expected.safetensors"),
            metadata={"transformers": transformers.__version__, "torch": torch.__version__})
  total = 0
  for root, _, files in os.walk(out_dir):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  log("wrote %s (%.0f KB in all)" % (out_dir, total / 1024))


def gen_real(out_dir):
  setup_torch()
  os.makedirs(out_dir, exist_ok=True)
  vision = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                num_hidden_layers=3, image_size=336, patch_size=14)
  model = build(vision, dict(hidden_act="quick_gelu", layer_norm_eps=1e-5), 21)
  write_json(os.path.join(out_dir, "config.json"),
             dict(model_type="clip_vision_model", **vision, hidden_act="quick_gelu",
                  layer_norm_eps=1e-5))
  saved = save_weights(model, os.path.join(out_dir, "model.safetensors"), "vision_model.",
                       torch.float32, False)
  load_back(model, saved, "vision_model.")
  proc = CLIPImageProcessor(**{k: v for k, v in PREPROCESSOR.items()
                               if k not in ("image_processor_type", "processor_class")})
  img = Image.open(os.path.join(REPO, "tests", "data", "sd-input.png")).convert("RGB")
  pixels = torch.from_numpy(proc(images=img, return_tensors="np")["pixel_values"])
  hs = features(model, pixels)
  save_file({"pixels": pixels.contiguous(), "features": hs[:, 1:].contiguous()},
            os.path.join(out_dir, "expected.safetensors"))
  log("real: %d params, features %s, std %.3f -> %s" % (
    sum(v.numel() for v in saved.values()), tuple(hs[:, 1:].shape), hs.std().item(), out_dir))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--config", choices=["tiny", "real"], default="tiny")
  ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data", "clip-vision"))
  a = ap.parse_args()
  (gen_tiny if a.config == "tiny" else gen_real)(a.out_dir)


if __name__ == "__main__":
  main()
