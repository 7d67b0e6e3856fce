#!/usr/bin/env python3
"""Train the toy shapes Stable Diffusion on the CPU (GitHub issue #12).

A small model of Stable Diffusion 2.x's architecture (diffusers classes, the
layout the C engine loads), trained on the synthetic shapes world
(scripts/shapes/world.py) so that its cross-attention maps mean something:
every colour and shape word has one place in the picture. Localization has to
emerge from denoising alone, as in SD: there is no loss on attention maps.

  Stage A (--stage vae):     AutoencoderKL, 3 levels (128 px -> 32x32x4 latent),
                             L1 + MSE + edge loss + small KL on freshly generated
                             scenes (64 px crops, then full 128 px); then
                             scaling_factor = 1 / std(latent means).
  Stage B0 (--stage latents): posterior mean x scaling of a fixed training set
                             (seed 1), cached under --cache (a .npy).
  Stage B (--stage unet):    UNet2DConditionModel + CLIPTextModel jointly on
                             epsilon-prediction MSE, random t, SD 2.1-base's
                             scaled_linear schedule, caption dropout, a random
                             caption template per scene per step; AdamW with
                             warmup. Every --eval-every steps: POINTING on held-out
                             two-object scenes (seed 7000).

  python3 scripts/shapes/train.py --stage all --unet-minutes 70     # A, B0, B
  python3 scripts/shapes/train.py --stage unet --resume --unet-minutes 30

Checkpoints (scripts/shapes/checkpoints/): vae.pt (the trained VAE and its
scaling factor), unet-latest.pt (UNet + text encoder + AdamW state + step; only
the latest is kept, written every --ckpt-minutes), best.pt (weights with the best
pointing so far), pointing.json (the curve), train.log. The token embedding
table is stored sparsely: only the rows of the world's tokens are ever non-zero
(they are the only ones trained; the others are zero from the start).

Everything is seeded: the model init by --seed, the training batch of step k by
(--seed, k), so a resumed run draws the same batches as an uninterrupted one.
Export with scripts/shapes/export.py.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import world  # noqa: E402

TOKENIZER_SRC = os.path.join(REPO, "resources", "clip-tokenizer")
CKPT_DIR = os.environ.get("SHAPES_CKPT_DIR", os.path.join(HERE, "checkpoints"))

LATENT_SEED = 1        # the fixed training set of Stage B
VAE_SEED = 2           # fresh scenes for Stage A
EVAL_SEED = 7000       # held-out two-object scenes for pointing
EVAL_T = (100, 200, 300, 400, 500)

# SD 2.1-base's scheduler (docs/models.md 4.1), as tests/reference/gen_sd_fixtures.py.
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

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=8,
    act_fn="silu", sample_size=128, scaling_factor=0.18215)

UNET_CONFIG = dict(
    sample_size=32, in_channels=4, out_channels=4,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    mid_block_type="UNetMidBlock2DCrossAttn",
    block_out_channels=[32, 64, 64, 64], layers_per_block=1,
    attention_head_dim=[2, 4, 4, 4],   # SD 2.x spelling: head COUNTS per level (16 wide)
    cross_attention_dim=64, use_linear_projection=True, norm_num_groups=16,
    flip_sin_to_cos=True, freq_shift=0, act_fn="silu", norm_eps=1e-5,
    downsample_padding=1, mid_block_scale_factor=1, upcast_attention=False)

TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=256, num_attention_heads=4,
    num_hidden_layers=3, max_position_embeddings=77, hidden_act="gelu",
    layer_norm_eps=1e-5, attention_dropout=0.0, dropout=0.0, projection_dim=64,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)   # legacy ids, as SD 2.1-base


def log(msg, path=None):
  line = time.strftime("%H:%M:%S ") + msg
  print(line, flush=True)
  if path:
    with open(path, "a") as f:
      f.write(line + "\n")


# ---- tokenizer ----------------------------------------------------------------

def write_tokenizer(dst, pad="!", tok_src=TOKENIZER_SRC):
  """The tokenizer/ folder as SD 2.1-base (and gen_sd_fixtures.py) has it."""
  import shutil
  os.makedirs(dst, exist_ok=True)
  for f in ("vocab.json", "merges.txt"):
    shutil.copyfile(os.path.join(tok_src, f), os.path.join(dst, f))

  def special(content, normalized=True):
    return {"content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}
  added = {"0": dict(special("!", normalized=False), special=True),
           "49406": dict(special("<|startoftext|>"), special=True),
           "49407": dict(special("<|endoftext|>"), special=True)}
  cfg = {
      "add_prefix_space": False, "added_tokens_decoder": added,
      "additional_special_tokens": [], "bos_token": "<|startoftext|>",
      "clean_up_tokenization_spaces": True, "do_lower_case": True,
      "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
      "pad_token": pad, "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
  }
  smap = {"bos_token": special("<|startoftext|>"), "eos_token": special("<|endoftext|>"),
          "pad_token": pad, "unk_token": special("<|endoftext|>")}
  for name, obj in (("tokenizer_config.json", cfg), ("special_tokens_map.json", smap)):
    with open(os.path.join(dst, name), "w") as f:
      json.dump(obj, f, indent=2)
      f.write("\n")


class Tokens:
  """CLIPTokenizer (pad "!", 77) with a cache; captions -> LongTensor [B, 77]."""

  def __init__(self, cache_dir):
    from transformers import CLIPTokenizer
    d = os.path.join(cache_dir, "tokenizer")
    write_tokenizer(d)
    self.tok = CLIPTokenizer.from_pretrained(d)
    assert self.tok.pad_token_id == 0, self.tok.pad_token_id
    self.cache = {}

  def ids(self, text):
    if text not in self.cache:
      self.cache[text] = self.tok(text, padding="max_length", max_length=77,
                                  truncation=True).input_ids
    return self.cache[text]

  def batch(self, texts):
    return torch.tensor([self.ids(t) for t in texts], dtype=torch.long)

  def word_positions(self, text):
    """Position of each word's (single) token in ids(text)."""
    pos, p = [], 1
    for w in text.split():
      n = len(self.tok(w).input_ids) - 2
      pos.append(p if n == 1 else None)
      p += n
    return pos


def world_token_ids(tokens, n=3000):
  """Every token id the world's captions use, plus "!", BOS, EOS."""
  rng = np.random.default_rng(12345)
  ids = {0, 49406, 49407}
  for _ in range(n):
    for c in world.captions(world.make_scene(rng)["objects"]):
      ids.update(tokens.ids(c))
  return sorted(ids)


# ---- models -------------------------------------------------------------------

def build_vae(seed):
  from diffusers import AutoencoderKL
  torch.manual_seed(seed)
  return AutoencoderKL(**VAE_CONFIG)


def build_unet_te(seed, world_ids):
  from diffusers import UNet2DConditionModel
  from transformers import CLIPTextConfig, CLIPTextModel
  torch.manual_seed(seed)
  unet = UNet2DConditionModel(**UNET_CONFIG)
  te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
  emb = te.get_input_embeddings().weight
  with torch.no_grad():
    keep = torch.zeros(emb.shape[0], dtype=torch.bool)
    keep[torch.tensor(world_ids)] = True
    emb[~keep] = 0
  return unet, te


def emb_key(sd):
  (k,) = [k for k in sd if k.endswith("embeddings.token_embedding.weight")]
  return k


def te_state_sparse(te, world_ids):
  sd = {k: v.detach().clone() for k, v in te.state_dict().items()}
  k = emb_key(sd)
  sd[k] = sd[k][torch.tensor(world_ids)]
  return sd


def te_load_sparse(te, sd, world_ids):
  sd = dict(sd)
  k = emb_key(sd)
  full = torch.zeros_like(te.state_dict()[k])
  full[torch.tensor(world_ids)] = sd[k]
  sd[k] = full
  te.load_state_dict(sd)


def sched_alphas():
  from diffusers import DDPMScheduler
  s = DDPMScheduler.from_config(SCHEDULER_CONFIG)
  return s.alphas_cumprod.float()


def to_pixels(img_u8):
  """uint8 [B,H,W,3] -> float [B,3,H,W] in [-1, 1]."""
  x = torch.from_numpy(np.ascontiguousarray(img_u8)).float().permute(0, 3, 1, 2)
  return x / 127.5 - 1.0


# ---- Stage A: VAE ---------------------------------------------------------------

def train_vae(args):
  path = os.path.join(CKPT_DIR, "vae.pt")
  logp = os.path.join(CKPT_DIR, "train.log")
  vae = build_vae(args.seed)
  step0, minutes0 = 0, 0.0
  if args.vae_resume:
    ck = torch.load(path, weights_only=False)
    vae.load_state_dict(ck["state"])
    step0, minutes0 = ck["steps"], ck["minutes"]
    log("stage A: continuing vae.pt from step %d" % step0, logp)
  n_params = sum(p.numel() for p in vae.parameters())
  log("stage A: VAE %d params, %.1f min, batch %d" % (n_params, args.vae_minutes, args.vae_batch), logp)
  opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
  t0 = time.time()
  step = step0
  budget = args.vae_minutes * 60
  hist = []
  while True:
    el = time.time() - t0
    if el > budget:
      break
    full = el > (1 - args.vae_full_frac) * budget         # the last 20%: full 128 px scenes (mid attention at 32x32)
    rng = np.random.default_rng([VAE_SEED, step])
    B = args.vae_batch // 4 if full else args.vae_batch
    imgs = np.stack([world.make_scene(rng)["image"] for _ in range(B)])
    x = to_pixels(imgs)
    if not full:
      ox, oy = rng.integers(0, 65, size=2)
      x = x[:, :, oy:oy + 64, ox:ox + 64]
      if rng.random() < 0.5:
        x = x.flip(3)
    lr = args.vae_lr * min(1.0, (step + 1) / 100)
    for g in opt.param_groups:
      g["lr"] = lr
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    l1 = (rec - x).abs().mean()
    mse = (rec - x).pow(2).mean()
    edge = ((rec.diff(dim=2) - x.diff(dim=2)).abs().mean() +
            (rec.diff(dim=3) - x.diff(dim=3)).abs().mean())
    kl = post.kl().mean() / (x.shape[2] * x.shape[3])
    loss = l1 + mse + 0.5 * edge + args.vae_kl * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    hist.append((l1.item(), mse.item(), kl.item()))
    step += 1
    if step % 50 == 0:
      h = np.mean(hist[-50:], 0)
      log("vae step %d  l1 %.4f  mse %.5f  kl/px %.3f  %.2f s/step  %s" % (
          step, h[0], h[1], h[2], (time.time() - t0) / (step - step0), "full" if full else "crop"), logp)
  # scaling factor = 1 / std of the latent means (SD's 0.18215 choice)
  vae.eval()
  rng = np.random.default_rng([VAE_SEED, 10 ** 9])
  with torch.no_grad():
    imgs = np.stack([world.make_scene(rng)["image"] for _ in range(256)])
    mus = torch.cat([vae.encode(to_pixels(imgs[i:i + 64])).latent_dist.mean
                     for i in range(0, 256, 64)])
    rec = torch.cat([vae.decode(mus[i:i + 64]).sample for i in range(0, 256, 64)])
    psnr = 10 * math.log10(4.0 / (rec - to_pixels(imgs)).pow(2).mean().item())
  sf = float(1.0 / mus.std())
  vae.register_to_config(scaling_factor=sf)
  log("stage A done: %d steps, %.1f min; latent std %.4f -> scaling_factor %.5f; "
      "full-image PSNR %.2f dB" % (step, minutes0 + (time.time() - t0) / 60, mus.std().item(), sf, psnr), logp)
  torch.save(dict(state=vae.state_dict(), scaling_factor=sf, steps=step, psnr=psnr,
                  minutes=minutes0 + (time.time() - t0) / 60, config=VAE_CONFIG), path)
  return vae


def load_vae():
  ck = torch.load(os.path.join(CKPT_DIR, "vae.pt"), weights_only=False)
  vae = build_vae(0)
  vae.load_state_dict(ck["state"])
  vae.register_to_config(scaling_factor=ck["scaling_factor"])
  return vae.eval(), ck


# ---- Stage B0: latents -------------------------------------------------------------

def latents_path(args):
  return os.path.join(args.cache, "latents-seed%d-n%d.npy" % (LATENT_SEED, args.n_train))


def make_latents(args, vae):
  logp = os.path.join(CKPT_DIR, "train.log")
  os.makedirs(args.cache, exist_ok=True)
  rng = np.random.default_rng(LATENT_SEED)
  sf = vae.config.scaling_factor
  lat = np.zeros((args.n_train, 4, 32, 32), np.float16)
  objs = []
  t0 = time.time()
  bs = 64
  with torch.no_grad():
    for i in range(0, args.n_train, bs):
      sc = [world.make_scene(rng) for _ in range(min(bs, args.n_train - i))]
      objs += [s["objects"] for s in sc]
      x = to_pixels(np.stack([s["image"] for s in sc]))
      lat[i:i + len(sc)] = (vae.encode(x).latent_dist.mean * sf).numpy().astype(np.float16)
      if (i // bs) % 50 == 0:
        log("latents %d/%d  %.0f s" % (i, args.n_train, time.time() - t0), logp)
  np.save(latents_path(args), lat)
  with open(latents_path(args) + ".json", "w") as f:
    json.dump(objs, f)
  log("latents done: %s  std %.3f  %.0f s" % (latents_path(args), lat.astype(np.float32).std(),
                                              time.time() - t0), logp)


# ---- pointing -------------------------------------------------------------------

class CaptureCross:
  """diffusers attention processor computing the softmax explicitly and keeping
  the head-mean cross-attention probabilities [B, N_pixels, 77]."""

  def __init__(self, store):
    self.store = store

  def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
               temb=None, **kw):
    B, N, _ = hidden_states.shape
    q = attn.head_to_batch_dim(attn.to_q(hidden_states))
    k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
    v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
    probs = attn.get_attention_scores(q, k, None)
    self.store.append(probs.view(B, attn.heads, N, -1).mean(1))
    h = attn.batch_to_head_dim(torch.bmm(probs, v))
    return attn.to_out[1](attn.to_out[0](h))


def cross_layers(unet, level):
  """attn2 modules at 1/2**level of the latent side: down level L, up level 3-L.
  level 2 (a quarter of the side) is the engine's default heatmap aggregation."""
  return [m for n, m in unet.named_modules()
          if n.endswith("attn2") and (n.startswith("down_blocks.%d." % level) or
                                      n.startswith("up_blocks.%d." % (3 - level)))]


# The model's default word heat maps: the cross-attention layers at latent
# side / HEAT_DIVISOR, written into unet/config.json as "_diffscope_heat_divisor"
# (the engine's default is 4, SD 2.1-base's 16x16 layers at 512). Measured with
# the pretrained text encoder (docs/shapes.md): the 16x16 layers (divisor 2)
# point at the named object ~85% of the time from step 250 on, the 8x8 ones
# (divisor 4) 0.1-0.3 and unsteadily.
HEAT_DIVISOR = 2
HEAT_LEVEL = int(math.log2(HEAT_DIVISOR))


def default_cross_layers(unet):
  return cross_layers(unet, HEAT_LEVEL)


class PointingEval:
  def __init__(self, vae, tokens, n=100, seed=EVAL_SEED):
    rng = np.random.default_rng(seed)
    self.scenes = [world.make_scene(rng, 2) for _ in range(n)]
    sf = vae.config.scaling_factor
    with torch.no_grad():
      x = to_pixels(np.stack([s["image"] for s in self.scenes]))
      self.lat = torch.cat([vae.encode(x[i:i + 50]).latent_dist.mean for i in range(0, n, 50)]) * sf
    self.captions = [world.canonical_caption(s["objects"]) for s in self.scenes]
    self.ids = tokens.batch(self.captions)
    self.pos = [tokens.word_positions(c) for c in self.captions]
    g = torch.Generator().manual_seed(seed)
    self.noise = torch.randn(self.lat.shape, generator=g)
    self.chance = float(np.mean([m.mean() for s in self.scenes for m in s["masks"]]))

  @torch.no_grad()
  def __call__(self, unet, te, alphas):
    """Pointing with the default aggregation (default_cross_layers), and, for
    the log, with the layers of each other resolution alone."""
    stores = {lv: [] for lv in (0, 1, 2)}
    layers = {lv: cross_layers(unet, lv) for lv in stores}
    old = {lv: [m.processor for m in layers[lv]] for lv in stores}
    for lv in stores:
      for m in layers[lv]:
        m.set_processor(CaptureCross(stores[lv]))
    n = len(self.scenes)
    maps = {lv: 0 for lv in stores}
    try:
      ctx = te(self.ids)[0]
      for t in EVAL_T:
        a = alphas[t]
        x_t = a.sqrt() * self.lat + (1 - a).sqrt() * self.noise
        for i in range(0, n, 50):
          for st in stores.values():
            st.clear()
          b = len(x_t[i:i + 50])
          unet(x_t[i:i + 50], torch.full((b,), t), ctx[i:i + 50])
          for lv, st in stores.items():
            m = torch.stack(st).mean(0)              # [b, side*side, 77]
            maps[lv] = maps[lv] + F.pad(m, (0, 0, 0, 0, i, n - i - b)) / len(EVAL_T)
    finally:
      for lv in stores:
        for m, p in zip(layers[lv], old[lv]):
          m.set_processor(p)
    r = self.score(maps[HEAT_LEVEL])
    for lv in (lv for lv in (0, 1, 2) if lv != HEAT_LEVEL):
      r["pointing_%d" % int(math.isqrt(maps[lv].shape[1]))] = self.score(maps[lv])["pointing"]
    return r

  def score(self, maps):
    side = int(math.isqrt(maps.shape[1]))
    hits = {"colour": [], "shape": []}
    for si, s in enumerate(self.scenes):
      words = self.captions[si].split()
      for oi, o in enumerate(s["objects"]):
        for kind in ("colour", "shape"):
          wi = words.index(o[kind])
          p = self.pos[si][wi]
          hm = maps[si, :, p].view(1, 1, side, side)
          up = F.interpolate(hm, size=(world.SIZE, world.SIZE), mode="bilinear",
                             align_corners=False)[0, 0]
          yx = divmod(int(up.argmax()), world.SIZE)
          hits[kind].append(bool(s["masks"][oi][yx]))
    allh = hits["colour"] + hits["shape"]
    return dict(pointing=float(np.mean(allh)), colour=float(np.mean(hits["colour"])),
                shape=float(np.mean(hits["shape"])), chance=self.chance, n_words=len(allh))


# ---- Stage T: a text encoder pretrained on the world's words ----------------------

def token_targets(tokens, text):
  """Per-token targets of the text pretraining, from the caption's own words:
  the colour class (1..4) and the shape class (1..3) of the object a token
  names, 0 for a token that names no object (articles, "and", relations, start,
  end, pads), and -100 (ignored) for what a causal encoder cannot know yet at
  that token: the shape of "red" in "a red circle", the colour of "circle" in
  "a circle that is red". Also returns the caption's end position (EOS)."""
  colours, shapes = list(world.COLOURS), list(world.SHAPES)
  ids = tokens.ids(text)
  words = [w.replace("</w>", "") for w in tokens.tok.convert_ids_to_tokens(ids)]
  n = len(ids)
  col, shp = [0] * n, [0] * n
  for i, w in enumerate(words):
    if w in colours and i + 1 < n and words[i + 1] in shapes:          # "red circle"
      col[i], shp[i] = 1 + colours.index(w), -100
      col[i + 1], shp[i + 1] = 1 + colours.index(w), 1 + shapes.index(words[i + 1])
    elif (w in shapes and i + 3 < n and words[i + 1:i + 3] == ["that", "is"]
          and words[i + 3] in colours):                                  # "circle that is red"
      col[i], shp[i] = -100, 1 + shapes.index(w)
      col[i + 3], shp[i + 3] = 1 + colours.index(words[i + 3]), 1 + shapes.index(w)
  return col, shp, ids.index(49407)


def pretrain_te(args):
  """Stage T: the text encoder alone, on the world's captions, then frozen for
  stage B, as SD's text encoder was pretrained (by CLIP) and frozen.

  Objective (text only; no image and no attention map is involved): from each
  token's output, linear heads predict the colour and the shape of the object
  that token names (token_targets), and the outputs of the end token and the
  pads after it are pulled to those of the empty caption. So a word's output
  says which object it is about, and the tokens after the caption carry
  nothing of it. The joint training of stage B does the opposite: its causal
  encoder packs the whole scene into the pads, the UNet reads that summary
  with attention spread over every token, and no pixel needs to find its own
  word (docs/shapes.md)."""
  logp = os.path.join(CKPT_DIR, "train.log")
  tokens = Tokens(args.cache)
  world_ids = world_token_ids(tokens)
  _, te = build_unet_te(args.seed + 2000, world_ids)
  H = TEXT_CONFIG["hidden_size"]
  torch.manual_seed(args.seed + 2000)
  heads = torch.nn.ModuleDict(dict(colour=torch.nn.Linear(H, 1 + len(world.COLOURS)),
                                   shape=torch.nn.Linear(H, 1 + len(world.SHAPES))))
  emb = te.get_input_embeddings().weight
  params = list(te.parameters()) + list(heads.parameters())
  opt = torch.optim.AdamW(params, lr=args.te_lr, weight_decay=0.01)
  keep = torch.zeros(emb.shape[0], 1)
  keep[torch.tensor(world_ids)] = 1
  empty = tokens.batch([""])
  log("stage T: text encoder %d params, %d steps of %d captions, lr %g" % (
      sum(p.numel() for p in te.parameters()), args.te_steps, args.te_batch, args.te_lr), logp)
  t0 = time.time()
  rng = np.random.default_rng([args.seed, 11])
  pool = [world.make_scene(rng)["objects"] for _ in range(4000)]   # scenes of the world (seed 1's
  targets = {}                                                     # training set is not used)
  for step in range(args.te_steps):
    rng = np.random.default_rng([args.seed, 11, step])
    caps = ["" if rng.random() < 0.05 else
            train_caption(pool[int(rng.integers(len(pool)))], rng, 0.5)
            for _ in range(args.te_batch)]
    for c in caps:
      if c not in targets:
        targets[c] = token_targets(tokens, c)
    tg = [targets[c] for c in caps]
    ids = torch.cat([tokens.batch(caps), empty])
    h = te(ids)[0]
    hc, h0 = h[:-1], h[-1:]
    col = torch.tensor([t[0] for t in tg])
    shp = torch.tensor([t[1] for t in tg])
    # Each head's cross-entropy is the mean over the tokens that name an object
    # plus the mean over those that name none: most of 77 tokens are pads, and a
    # plain mean would be met by always answering "none".
    def balanced_ce(logits, target):
      ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100,
                           reduction="none").view(target.shape)
      named, none = target > 0, target == 0
      return ce[named].mean() + ce[none].mean()
    l_col = balanced_ce(heads["colour"](hc), col)
    l_shp = balanced_ce(heads["shape"](hc), shp)
    after = torch.zeros(len(caps), ids.shape[1], dtype=torch.bool)
    for i, t in enumerate(tg):
      after[i, t[2]:] = True
    d = (hc - h0).pow(2).mean(-1)                      # [B, 77]
    l_pad = d[after].mean()
    loss = l_col + l_shp + args.te_pad_weight * l_pad
    opt.zero_grad(set_to_none=True)
    loss.backward()
    emb.grad *= keep                                   # only the world's rows move
    opt.step()
    if step % 50 == 0 or step == args.te_steps - 1:
      with torch.no_grad():       # accuracy on the tokens that name an object
        m = col > 0
        acc_c = float((heads["colour"](hc).argmax(-1) == col)[m].float().mean())
        m = shp > 0
        acc_s = float((heads["shape"](hc).argmax(-1) == shp)[m].float().mean())
      log("te step %d  colour CE %.4f (acc %.4f)  shape CE %.4f (acc %.4f)  pad distance %.2e  "
          "%.0f s" % (step, l_col.item(), acc_c, l_shp.item(), acc_s, l_pad.item(),
                      time.time() - t0), logp)
  with torch.no_grad():
    emb.mul_(keep)
  save_atomic(dict(te=te_state_sparse(te, world_ids), world_ids=world_ids, steps=args.te_steps,
                   args=vars(args)), os.path.join(CKPT_DIR, "te-pretrained.pt"))
  log("stage T done in %.1f min -> te-pretrained.pt" % ((time.time() - t0) / 60), logp)


# ---- Stage B: UNet + text encoder -----------------------------------------------------

def train_caption(objects, rng, p_subset):
  """A caption true of the scene. With probability p_subset (scenes of 2 or 3
  objects) it names only some of them ("a red circle" of a red circle beside a
  blue square), as real captions do: then the caption's information belongs to
  some pixels and not others, which a caption listing everything never asks of
  the cross-attention. Count templates ("two objects: ...") are left out of
  such captions (they would be false)."""
  if len(objects) > 1 and rng.random() < p_subset:
    k = int(rng.integers(1, len(objects)))
    keep = sorted(int(i) for i in rng.choice(len(objects), size=k, replace=False))
    cs = [c for c in world.captions([objects[i] for i in keep])
          if c.split()[0] not in world.NUMBERS.values()]
    return cs[int(rng.integers(len(cs)))]
  return world.random_caption(objects, rng)


def save_atomic(obj, path):
  tmp = path + ".tmp"
  torch.save(obj, tmp)
  os.replace(tmp, path)


def opt_state_sparse(opt, emb_param, world_ids):
  sd = opt.state_dict()
  idx = [i for i, p in enumerate(p for g in opt.param_groups for p in g["params"]) if p is emb_param]
  sd = dict(sd, state=dict(sd["state"]))
  for i in idx:
    if i in sd["state"]:
      st = dict(sd["state"][i])
      for k in ("exp_avg", "exp_avg_sq"):
        st[k] = st[k][torch.tensor(world_ids)].clone()
      sd["state"][i] = st
  return sd, idx


def opt_load_sparse(opt, sd, idx, emb_param, world_ids):
  sd = dict(sd, state=dict(sd["state"]))
  for i in idx:
    if i in sd["state"]:
      st = dict(sd["state"][i])
      for k in ("exp_avg", "exp_avg_sq"):
        full = torch.zeros_like(emb_param)
        full[torch.tensor(world_ids)] = st[k]
        st[k] = full
      sd["state"][i] = st
  opt.load_state_dict(sd)


def train_unet(args):
  logp = os.path.join(CKPT_DIR, "train.log")
  vae, vck = load_vae()
  tokens = Tokens(args.cache)
  world_ids = world_token_ids(tokens)
  lat = torch.from_numpy(np.load(latents_path(args)).astype(np.float32))
  with open(latents_path(args) + ".json") as f:
    objs = json.load(f)
  N = len(lat)
  unet, te = build_unet_te(args.seed, world_ids)
  emb = te.get_input_embeddings().weight
  others_te = [p for p in te.parameters() if p is not emb]
  opt = torch.optim.AdamW([
      dict(params=list(unet.parameters()), weight_decay=0.01),
      dict(params=others_te, weight_decay=0.01),
      dict(params=[emb], weight_decay=0.0)], lr=args.lr, betas=(0.9, 0.99))
  step, curve, best, minutes_before = 0, [], -1.0, 0.0
  latest = os.path.join(CKPT_DIR, "unet-latest.pt")
  if args.resume and os.path.exists(latest):
    ck = torch.load(latest, weights_only=False)
    unet.load_state_dict(ck["unet"])
    te_load_sparse(te, ck["te"], ck["world_ids"])
    opt_load_sparse(opt, ck["opt"], ck["opt_sparse_idx"], emb, ck["world_ids"])
    step, curve, best = ck["step"], ck["curve"], ck["best"]
    minutes_before = ck.get("minutes", 0.0)
    log("resumed from %s at step %d" % (latest, step), logp)
  # --te frozen: the text encoder is a fixed random featurizer, as SD's is a
  # fixed (pretrained) one. Trained jointly, a 3-layer causal encoder learns to
  # pack the whole scene, bindings included, into every token after the
  # caption (the pads), and the UNet reads that summary with near-uniform
  # attention: nothing then asks a pixel to find its own word. Frozen, the
  # tokens stay mostly themselves and the UNet has to look words up.
  switched = False
  if args.te == "pretrained":
    # Stage T's encoder, frozen (see pretrain_te). A resumed run has it in its checkpoint.
    if not (args.resume and os.path.exists(latest) and ck.get("te_mode") == "pretrained"):
      pt = torch.load(os.path.join(CKPT_DIR, "te-pretrained.pt"), weights_only=False)
      te_load_sparse(te, pt["te"], pt["world_ids"])
      switched = True
      log("text encoder: stage T's (te-pretrained.pt, %d steps), frozen from step %d" % (
          pt["steps"], step), logp)
    for p in te.parameters():
      p.requires_grad_(False)
  elif args.te == "frozen":
    resumed_frozen = args.resume and os.path.exists(latest) and ck.get("te_mode") == "frozen"
    if not resumed_frozen:
      switched = True
      fresh = build_unet_te(args.seed + 1000, world_ids)[1]
      te.load_state_dict(fresh.state_dict())
      log("text encoder: re-initialised at random (seed %d) and frozen from step %d" % (
          args.seed + 1000, step), logp)
    for p in te.parameters():
      p.requires_grad_(False)
  # An exponential moving average of the weights (as SD's released weights are):
  # SGD at this learning rate oscillates, and the attention maps with it; the
  # average is what is evaluated, kept as best.pt and exported.
  ema_unet = ema_te = None
  ema_n = 0
  if args.ema > 0:
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(te).eval()
    if args.resume and os.path.exists(latest) and "ema_unet" in ck and not switched:
      ema_unet.load_state_dict(ck["ema_unet"])
      te_load_sparse(ema_te, ck["ema_te"], ck["world_ids"])
      ema_n = ck.get("ema_n", 0)
      log("  with the EMA of %d steps" % ema_n, logp)
    else:
      log("  EMA (decay %g) starts at step %d" % (args.ema, step), logp)
    for m in (ema_unet, ema_te):
      for p in m.parameters():
        p.requires_grad_(False)
    ema_pairs = [(pe, p) for pe, p in zip(list(ema_unet.parameters()) + list(ema_te.parameters()),
                                          list(unet.parameters()) + list(te.parameters()))
                 if p.requires_grad]
  n_u = sum(p.numel() for p in unet.parameters())
  n_t = sum(p.numel() for p in te.parameters())
  log("stage B: min-SNR gamma %g, subset captions %g" % (args.snr_gamma, args.subset), logp)
  log("stage B: UNet %d params, text encoder %d params (%d trained embedding rows), "
      "%d training latents, batch %d, lr %g" % (n_u, n_t, len(world_ids), N, args.batch, args.lr), logp)
  alphas = sched_alphas()
  evaluator = PointingEval(vae, tokens, n=args.n_eval)
  log("pointing eval: %d two-object scenes (seed %d), chance %.3f" % (
      len(evaluator.scenes), EVAL_SEED, evaluator.chance), logp)

  def checkpoint(minutes):
    sd, idx = opt_state_sparse(opt, emb, world_ids)
    extra = {}
    if ema_unet is not None:
      extra = dict(ema_unet=ema_unet.state_dict(), ema_te=te_state_sparse(ema_te, world_ids),
                   ema_n=ema_n)
    save_atomic(dict(unet=unet.state_dict(), te=te_state_sparse(te, world_ids),
                     world_ids=world_ids, opt=sd, opt_sparse_idx=idx, step=step, curve=curve,
                     best=best, minutes=minutes, args=vars(args), te_mode=args.te, **extra),
                latest)

  def evaluate(minutes):
    nonlocal best
    eu, et = (ema_unet, ema_te) if ema_unet is not None else (unet, te)
    unet.eval(); te.eval()
    t0 = time.time()
    r = evaluator(eu, et, alphas)
    if ema_unet is not None:
      r["weights"] = "ema"
      r["raw_pointing"] = evaluator(unet, te, alphas)["pointing"]
    unet.train(); te.train()
    r.update(step=step, minutes=round(minutes, 2), loss=round(float(np.mean(losses[-200:])), 5)
             if losses else None)
    curve.append(r)
    others = "; ".join("%s alone %.3f" % (k[9:] + "x" + k[9:], v) for k, v in sorted(r.items())
                       if k.startswith("pointing_"))
    log("eval step %d: pointing %.3f at the default layers (colour %.3f, shape %.3f; chance "
        "%.3f; %s; raw weights %.3f) [%.0f s]" % (
        step, r["pointing"], r["colour"], r["shape"], r["chance"], others,
        r.get("raw_pointing", r["pointing"]), time.time() - t0), logp)
    with open(os.path.join(CKPT_DIR, "pointing.json"), "w") as f:
      json.dump(curve, f, indent=1)
    if r["pointing"] >= best:
      best = r["pointing"]
      save_atomic(dict(unet=eu.state_dict(), te=te_state_sparse(et, world_ids),
                       world_ids=world_ids, step=step, eval=r, minutes=minutes), os.path.join(CKPT_DIR, "best.pt"))
      log("  new best -> best.pt", logp)

  unet.train(); te.train()
  t_start = time.time()
  t_ckpt = time.time()
  losses = []
  budget = args.unet_minutes * 60
  if args.until:   # a wall-clock deadline "HH:MM" (local time, today)
    hh, mm = map(int, args.until.split(":"))
    lt = time.localtime()
    deadline = time.mktime(lt[:3] + (hh, mm, 0) + lt[6:])
    budget = min(budget, deadline - t_start)
  sqrt_a, sqrt_1a = alphas.sqrt(), (1 - alphas).sqrt()
  first = step
  while time.time() - t_start < budget and (args.steps is None or step < args.steps):
    rng = np.random.default_rng([args.seed, 7, step])
    g = torch.Generator().manual_seed(int(args.seed) * 1000003 + step)
    idx = rng.integers(0, N, size=args.batch)
    caps = ["" if rng.random() < args.drop else train_caption(objs[i], rng, args.subset)
            for i in idx]
    ids = tokens.batch(caps)
    x0 = lat[torch.from_numpy(idx)]
    t = torch.randint(0, 1000, (args.batch,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t = sqrt_a[t].view(-1, 1, 1, 1) * x0 + sqrt_1a[t].view(-1, 1, 1, 1) * eps
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    for pg in opt.param_groups:
      pg["lr"] = lr
    if args.te != "train":
      with torch.no_grad():
        ctx = te(ids)[0]
    else:
      ctx = te(ids)[0]
    pred = unet(x_t, t, ctx).sample
    if args.snr_gamma > 0:
      # min-SNR weighting (Hang et al. 2023) for epsilon prediction: weight
      # min(SNR, gamma) / SNR, which lowers only the nearly clean steps (here
      # t < ~120 for gamma 5), whose loss the image alone explains, and so puts
      # the gradient where the caption matters.
      snr = alphas[t] / (1 - alphas[t])
      w = torch.clamp(snr, max=args.snr_gamma) / snr
      loss = ((pred - eps).pow(2).mean(dim=(1, 2, 3)) * w).mean()
    else:
      loss = F.mse_loss(pred, eps)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(te.parameters()), 1.0)
    opt.step()
    if ema_unet is not None:
      ema_n += 1
      decay = min(args.ema, (1 + ema_n) / (10 + ema_n))
      with torch.no_grad():
        for pe, p in ema_pairs:
          pe.lerp_(p, 1 - decay)
    losses.append(loss.item())
    step += 1
    minutes = minutes_before + (time.time() - t_start) / 60
    if step % 10 == 0:
      sps = (time.time() - t_start) / (step - first)
      log("step %d  loss %.4f  lr %.2e  %.2f s/step  %.1f samples/s  %.1f min" % (
          step, np.mean(losses[-10:]), lr, sps, args.batch / sps, minutes), logp)
    if step % args.eval_every == 0:
      evaluate(minutes)
    if time.time() - t_ckpt > args.ckpt_minutes * 60:
      checkpoint(minutes)
      t_ckpt = time.time()
  minutes = minutes_before + (time.time() - t_start) / 60
  if not curve or curve[-1]["step"] != step:
    evaluate(minutes)
  checkpoint(minutes)
  log("stage B stopped at step %d (%.1f min in all); best pointing %.3f" % (step, minutes, best), logp)


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--stage", choices=("all", "vae", "latents", "te", "unet"), default="all")
  ap.add_argument("--resume", action="store_true", help="stage B: continue unet-latest.pt")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--threads", type=int, default=2)
  ap.add_argument("--cache", default="/tmp/shapes-cache")
  ap.add_argument("--vae-minutes", type=float, default=9)
  ap.add_argument("--vae-resume", action="store_true", help="stage A: continue vae.pt")
  ap.add_argument("--vae-full-frac", type=float, default=0.2,
                  help="stage A: the last fraction of the time on full 128 px scenes")
  ap.add_argument("--vae-batch", type=int, default=16)
  ap.add_argument("--vae-lr", type=float, default=1e-3)
  ap.add_argument("--vae-kl", type=float, default=1e-4)
  ap.add_argument("--n-train", type=int, default=20000)
  ap.add_argument("--unet-minutes", type=float, default=70)
  ap.add_argument("--until", default=None, help="stage B: also stop at this wall-clock time HH:MM")
  ap.add_argument("--steps", type=int, default=None, help="stage B: stop at this step")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--lr", type=float, default=5e-4)
  ap.add_argument("--warmup", type=int, default=200)
  ap.add_argument("--drop", type=float, default=0.15, help="caption dropout")
  ap.add_argument("--subset", type=float, default=0.5,
                  help="probability of a caption naming only some objects of a multi-object "
                       "scene (0: always all, as the first 2600 steps)")
  ap.add_argument("--te", choices=("pretrained", "train", "frozen"), default="pretrained",
                  help="the text encoder: stage T's, frozen (the shipped recipe); trained jointly "
                       "with the UNet (the first run's); or a frozen random one")
  ap.add_argument("--te-steps", type=int, default=1500, help="stage T: steps")
  ap.add_argument("--te-batch", type=int, default=128, help="stage T: captions a step")
  ap.add_argument("--te-lr", type=float, default=1e-3, help="stage T: learning rate")
  ap.add_argument("--te-pad-weight", type=float, default=10.0,
                  help="stage T: weight of the pull of the end and pad outputs to the empty caption's")
  ap.add_argument("--ema", type=float, default=0.998,
                  help="EMA decay of the evaluated/exported weights (0: none, as the first 2500 steps)")
  ap.add_argument("--snr-gamma", type=float, default=5.0,
                  help="min-SNR loss weighting gamma (0: plain MSE, as the first 970 steps)")
  ap.add_argument("--eval-every", type=int, default=250)
  ap.add_argument("--n-eval", type=int, default=100)
  ap.add_argument("--ckpt-minutes", type=float, default=4)
  args = ap.parse_args()
  torch.set_num_threads(args.threads)
  os.makedirs(CKPT_DIR, exist_ok=True)
  log("train.py %s" % " ".join(sys.argv[1:]), os.path.join(CKPT_DIR, "train.log"))
  if args.stage in ("all", "vae"):
    vae = train_vae(args)
  if args.stage in ("all", "latents"):
    if args.stage == "latents":
      vae, _ = load_vae()
    make_latents(args, vae.eval())
  if args.stage in ("all", "te"):
    pretrain_te(args)
  if args.stage in ("all", "unet"):
    train_unet(args)


if __name__ == "__main__":
  main()
