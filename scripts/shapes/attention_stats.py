#!/usr/bin/env python3
"""Where the cross-attention of a shapes checkpoint goes (docs/shapes.md).

  python3 scripts/shapes/attention_stats.py [CHECKPOINT] [--ema] [--n 30] [--t 300]

For N two-object scenes of the pointing set (seed 7000) at timestep t, per
cross-attention layer at 8x8 (default heat-map layers) and 16x16: the
attention mass on the start token, the caption's words, the end token and
the padding, on object cells and on background cells; and the mean attention
a word gets on its own object's cells against the other object's. A word map
that localizes its word has own >> other.
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("checkpoint", nargs="?", default=os.path.join(train.CKPT_DIR, "unet-latest.pt"))
  ap.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights")
  ap.add_argument("--n", type=int, default=30)
  ap.add_argument("--t", type=int, default=300)
  ap.add_argument("--cache", default="/tmp/shapes-cache")
  args = ap.parse_args()
  torch.set_num_threads(1)
  vae, _ = train.load_vae()
  tokens = train.Tokens(args.cache)
  ck = torch.load(args.checkpoint, weights_only=False)
  key = "ema_" if args.ema else ""
  unet, te = train.build_unet_te(0, ck["world_ids"])
  unet.load_state_dict(ck[key + "unet"])
  train.te_load_sparse(te, ck[key + "te"], ck["world_ids"])
  unet.eval()
  te.eval()
  print("step", ck["step"], "EMA" if args.ema else "raw", "weights")
  ev = train.PointingEval(vae, tokens, n=args.n)
  alphas = train.sched_alphas()
  for lv in (2, 1):
    store = []
    layers = train.cross_layers(unet, lv)
    old = [m.processor for m in layers]
    for m in layers:
      m.set_processor(train.CaptureCross(store))
    with torch.no_grad():
      ctx = te(ev.ids)[0]
      a = alphas[args.t]
      x_t = a.sqrt() * ev.lat + (1 - a).sqrt() * ev.noise
      unet(x_t, torch.full((args.n,), args.t), ctx)
    for m, p in zip(layers, old):
      m.set_processor(p)
    side = 32 >> lv
    cell = 128 // side
    for li, m in enumerate(store):                      # m [N, side*side, 77]
      obj_mass, bg_mass, own, other = [], [], [], []
      for si in range(args.n):
        s = ev.scenes[si]
        words = ev.captions[si].split()
        lab = np.zeros((128, 128), int)
        for k, mk in enumerate(s["masks"]):
          lab[mk] = k + 1
        g = lab[cell // 2::cell, cell // 2::cell].reshape(-1)   # the object at each cell centre
        mm = m[si].numpy()
        n_tok = len(words) + 2
        for c in range(side * side):
          row = mm[c]
          cats = [row[0], row[1:n_tok - 1].sum(), row[n_tok - 1], row[n_tok:].sum()]
          (obj_mass if g[c] > 0 else bg_mass).append(cats)
        for k, o in enumerate(s["objects"]):
          for kind in ("colour", "shape"):
            col = mm[:, ev.pos[si][words.index(o[kind])]]
            if (g == k + 1).any():
              own.append(col[g == k + 1].mean())
            if ((g > 0) & (g != k + 1)).any():
              other.append(col[(g > 0) & (g != k + 1)].mean())
      print("%dx%d layer %d: mass [start, words, end, pads] on object cells %s, background %s; "
            "a word's attention on its own object %.4f, on the other %.4f" % (
                side, side, li, np.round(np.mean(obj_mass, 0), 3), np.round(np.mean(bg_mass, 0), 3),
                np.mean(own), np.mean(other)))


if __name__ == "__main__":
  main()
