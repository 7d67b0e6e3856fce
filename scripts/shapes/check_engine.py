#!/usr/bin/env python3
"""Check the C engine against diffusers (fp32) on the exported shapes model.

  python3 scripts/shapes/check_engine.py --cli /tmp/build-shapes/app/diffscope-cli \
      [--model resources/models/shapes] [--image tests/data/shapes/0000.png] [--t 300]

Runs `diffscope-cli features --noise` on one scene and compares, as normalized
MSE (sum (a-b)^2 / sum b^2):
  UNet-In   = sqrt(abar_t) * VAE latent (posterior mean x scaling) + sqrt(1-abar_t) * noise
  UNet-Out  for the uncond ("") and cond halves
  maps.U-L1-R1 / maps.D-L2-R0  the cond half's head-mean cross-attention maps
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export as E  # noqa: E402
import train as T  # noqa: E402


def nmse(a, b):
  a, b = a.double(), b.double()
  return float(((a - b) ** 2).sum() / (b ** 2).sum())


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--cli", required=True)
  ap.add_argument("--model", default=os.path.join(T.REPO, "resources", "models", "shapes"))
  ap.add_argument("--image", default=os.path.join(T.REPO, "tests", "data", "shapes", "0000.png"))
  ap.add_argument("--prompt", default=None, help="default: the scene's canonical caption")
  ap.add_argument("--t", type=int, default=300)
  args = ap.parse_args()
  torch.set_num_threads(2)
  prompt = args.prompt
  if prompt is None:
    sj = os.path.join(os.path.dirname(args.image), "scenes.json")
    name = os.path.basename(args.image)
    with open(sj) as f:
      prompt = [s["caption"] for s in json.load(f)["scenes"] if s["image"] == name][0]
  unet, vae, te, tok = E.load_folder(args.model)
  tmp = tempfile.mkdtemp()
  g = torch.Generator().manual_seed(1234)
  noise = torch.randn(1, 4, 32, 32, generator=g)
  save_file({"noise": noise}, os.path.join(tmp, "noise.safetensors"))
  out = os.path.join(tmp, "f.safetensors")
  cmd = [args.cli, "features", "--model", args.model, "--device", "cpu", "--size", "128",
         "--image", args.image, "--prompt", prompt, "--t", str(args.t),
         "--noise", os.path.join(tmp, "noise.safetensors"),
         "--probe", "UNet-In", "--probe", "UNet-Out", "--maps", "--out", out]
  subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  got = load_file(out)

  with torch.no_grad():
    x = torch.from_numpy(np.array(Image.open(args.image).convert("RGB"))).float()
    x = (x / 127.5 - 1.0).permute(2, 0, 1)[None]
    lat = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    a = T.sched_alphas()[args.t]
    x_t = a.sqrt() * lat + (1 - a).sqrt() * noise
    ids = torch.tensor([tok(p, padding="max_length", max_length=77, truncation=True).input_ids
                        for p in ("", prompt)])
    ctx = te(ids)[0]
    maps = {}
    for n, m in unet.named_modules():
      if n.endswith("attn2"):
        m.set_processor(T.CaptureCross(maps.setdefault(n, [])))
    eps = unet(torch.cat([x_t, x_t]), torch.full((2,), args.t), ctx).sample
    maps = {n: v[0] for n, v in maps.items()}
  rows = [("VAE latent (via UNet-In)", nmse(got["uncond.UNet-In"], x_t[0])),
          ("UNet-Out uncond", nmse(got["uncond.UNet-Out"], eps[0])),
          ("UNet-Out cond", nmse(got["cond.UNet-Out"], eps[1]))]
  for eng, py in (("maps.D-L2-R0", "down_blocks.2.attentions.0.transformer_blocks.0.attn2"),
                  ("maps.U-L1-R1", "up_blocks.1.attentions.1.transformer_blocks.0.attn2")):
    if eng in got:
      rows.append(("%s (cond, head mean)" % eng, nmse(got[eng].reshape(maps[py][1].shape), maps[py][1])))
  print("prompt %r, t %d, image %s" % (prompt, args.t, args.image))
  for k, v in rows:
    print("  %-32s NMSE %.3e" % (k, v))
  worst = max(v for _, v in rows)
  print("worst NMSE %.3e" % worst)
  sys.exit(0 if worst < 1e-8 else 1)


if __name__ == "__main__":
  main()
