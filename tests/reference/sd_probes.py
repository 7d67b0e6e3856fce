"""Probe machinery for the Stable Diffusion reference fixtures (used by gen_sd_fixtures.py).

Names every activation of a diffusers UNet2DConditionModel with the Meng et al.
(2024) feature grammar ("Stage-Level-Repeat-Block-FeatureType", docs/models.md
section 2) and captures them during one forward pass with forward hooks plus a
recording attention processor that computes the classic (non-SDPA) attention
math, so the softmax probabilities are available:

    probs = softmax(q_h k_h^T * scale)  over keys, per head

Stored layout (docs/models.md section 2.2, in fp32, batch dim kept):
  * 3-D token tensors [B, N, C] -> [B, C, H, W] (row-major, H = W = sqrt(N));
  * self-map / cross-map: [B, heads, Nq, Nk] softmax probabilities;
  * everything else as the module returned it ([B, C, H, W]).

Not a test and not run by CI; imported by gen_sd_fixtures.py.
"""

import math
import re

import torch

# Feature types of one BasicTransformerBlock, in the order of the GDF full config
# (and tests/data/sd21-feature-inventory.txt).
BLOCK_FEATURES = ("self-q", "self-k", "self-v", "self-map", "cross-q",
                  "cross-map", "ffn-inner", "out")

# The six probes of Meng et al.'s Table 3 (docs/models.md section 2.3).
TABLE3_IDS = (
    "down-level2-repeat0-vit-block0-cross-q",
    "up-level1-repeat1-vit-block0-cross-q",
    "up-level1-repeat1-vit-block0-out",
    "up-level1-repeat2-vit-block0-cross-q",
    "up-level2-repeat1-vit-block0-cross-q",
    "up-level2-repeat2-res-out",
)


def _attentions(block):
  attns = getattr(block, "attentions", None)
  return list(attns) if attns is not None else []


def sites(unet):
  """Yield (prefix, kind, module) in forward order.

  kind is one of 'unet-in', 'conv-in', 'res', 'vit', 'downsampler',
  'upsampler', 'unet-out'.
  """
  yield "unet", "unet-in", unet
  yield "unet", "conv-in", unet.conv_in
  for level, block in enumerate(unet.down_blocks):
    attns = _attentions(block)
    for r, res in enumerate(block.resnets):
      yield "down-level%d-repeat%d" % (level, r), "res", res
      if attns:
        yield "down-level%d-repeat%d" % (level, r), "vit", attns[r]
    if block.downsamplers is not None:
      yield "down-level%d" % level, "downsampler", block.downsamplers[0]
  mid = unet.mid_block
  mid_attns = _attentions(mid)
  for r, res in enumerate(mid.resnets):
    yield "mid-repeat%d" % r, "res", res
    if r < len(mid_attns):
      yield "mid", "vit", mid_attns[r]
  assert len(mid_attns) <= 1, "the GDF grammar names a single mid-vit"
  for level, block in enumerate(unet.up_blocks):
    attns = _attentions(block)
    for r, res in enumerate(block.resnets):
      yield "up-level%d-repeat%d" % (level, r), "res", res
      if attns:
        yield "up-level%d-repeat%d" % (level, r), "vit", attns[r]
    if block.upsamplers is not None:
      yield "up-level%d" % level, "upsampler", block.upsamplers[0]
  yield "unet", "unet-out", unet.conv_out


def feature_ids(unet):
  """All feature ids of the grammar for this UNet, in forward order."""
  ids = []
  for prefix, kind, mod in sites(unet):
    if kind == "unet-in":
      ids.append("unet-in")
    elif kind == "conv-in":
      ids.append("unet-after-conv-in")
    elif kind == "unet-out":
      ids.append("unet-out")
    elif kind == "res":
      ids += [prefix + "-res-increment", prefix + "-res-out"]
    elif kind == "vit":
      for i, _ in enumerate(mod.transformer_blocks):
        ids += ["%s-vit-block%d-%s" % (prefix, i, f) for f in BLOCK_FEATURES]
      ids.append(prefix + "-vit-out")
    else:
      ids.append("%s-%s-out" % (prefix, kind))
  return ids


def to_stored(t):
  """GDF storage rule: [B,N,C] -> [B,C,H,W] row-major; other ranks unchanged."""
  t = t.detach()
  if t.dim() == 3:
    b, n, c = t.shape
    h = math.isqrt(n)
    assert h * h == n, "token count %d is not a square" % n
    return t.transpose(1, 2).reshape(b, c, h, h).contiguous()
  return t.contiguous()


class RecordingAttnProcessor:
  """Classic attention (explicit softmax) that hands its probabilities to a callback.

  Restricted to what the SD UNet uses (3-D input, no mask, no group/spatial
  norm); anything else raises instead of silently computing something else.
  """

  def __init__(self, on_probs=None):
    self.on_probs = on_probs

  def __call__(self, attn, hidden_states, encoder_hidden_states=None,
               attention_mask=None, temb=None, *args, **kwargs):
    if attention_mask is not None or attn.spatial_norm is not None \
        or attn.group_norm is not None or hidden_states.dim() != 3:
      raise NotImplementedError("RecordingAttnProcessor: unsupported attention use")
    residual = hidden_states
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
      context = hidden_states
    elif attn.norm_cross:
      context = attn.norm_encoder_hidden_states(encoder_hidden_states)
    else:
      context = encoder_hidden_states
    key = attn.to_k(context)
    value = attn.to_v(context)
    b, nq, inner = query.shape
    nk = key.shape[1]
    heads = attn.heads
    d = inner // heads
    q = query.view(b, nq, heads, d).transpose(1, 2)       # [B,h,Nq,d]
    k = key.view(b, nk, heads, d).transpose(1, 2)         # [B,h,Nk,d]
    v = value.view(b, nk, heads, d).transpose(1, 2)       # [B,h,Nk,d]
    scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scale
    probs = scores.softmax(dim=-1)                        # [B,h,Nq,Nk]
    if self.on_probs is not None:
      self.on_probs(probs)
    out = torch.matmul(probs, v)                          # [B,h,Nq,d]
    out = out.transpose(1, 2).reshape(b, nq, inner)
    out = attn.to_out[0](out)
    out = attn.to_out[1](out)
    if attn.residual_connection:
      out = out + residual
    return out / attn.rescale_output_factor


class ProbeRecorder:
  """Installs hooks + recording processors on a UNet and collects probes.

  keep: None (keep every probe tensor) or a set of ids whose tensors are kept;
  the shapes of all ids are recorded either way.  Also records the inputs of
  the modules that follow each probe site, for the consistency checks.
  """

  def __init__(self, unet, keep=None):
    self.unet = unet
    self.keep = keep
    self.tensors = {}
    self.shapes = {}
    self.inputs = {}       # site name -> first positional input (pre-hook)
    self.handles = []
    self.old_processors = unet.attn_processors
    self.ids = feature_ids(unet)
    self._install()

  # -- recording -------------------------------------------------------------

  def _put(self, fid, t):
    assert fid in self.ids, "unexpected probe id " + fid
    assert fid not in self.shapes, "probe %s captured twice" % fid
    s = to_stored(t)
    self.shapes[fid] = tuple(s.shape)
    if self.keep is None or fid in self.keep:
      self.tensors[fid] = s.float().cpu().clone()

  def _out_hook(self, fid, pick=None):
    def hook(mod, args, out):
      if pick is not None:
        out = pick(out)
      self._put(fid, out)
    return hook

  def _in_hook(self, name):
    def hook(mod, args, kwargs):
      x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
      self.inputs[name] = x.detach().clone()
    return hook

  def _install(self):
    add = self.handles.append
    for prefix, kind, mod in sites(self.unet):
      if kind == "unet-in":
        add(mod.register_forward_pre_hook(self._unet_in, with_kwargs=True))
      elif kind == "conv-in":
        add(mod.register_forward_hook(self._out_hook("unet-after-conv-in")))
      elif kind == "unet-out":
        add(mod.register_forward_hook(self._out_hook("unet-out")))
        add(self.unet.conv_norm_out.register_forward_pre_hook(
            self._in_hook("conv_norm_out"), with_kwargs=True))
      elif kind == "res":
        add(mod.conv2.register_forward_hook(self._out_hook(prefix + "-res-increment")))
        add(mod.register_forward_hook(self._out_hook(prefix + "-res-out")))
        add(mod.register_forward_pre_hook(self._in_hook(prefix + "-res"), with_kwargs=True))
      elif kind == "vit":
        add(mod.register_forward_hook(self._out_hook(
            prefix + "-vit-out", pick=lambda o: o[0] if isinstance(o, tuple) else o.sample)))
        add(mod.register_forward_pre_hook(self._in_hook(prefix + "-vit"), with_kwargs=True))
        for i, tb in enumerate(mod.transformer_blocks):
          bp = "%s-vit-block%d-" % (prefix, i)
          add(tb.attn1.to_q.register_forward_hook(self._out_hook(bp + "self-q")))
          add(tb.attn1.to_k.register_forward_hook(self._out_hook(bp + "self-k")))
          add(tb.attn1.to_v.register_forward_hook(self._out_hook(bp + "self-v")))
          add(tb.attn2.to_q.register_forward_hook(self._out_hook(bp + "cross-q")))
          add(tb.ff.net[0].register_forward_hook(self._out_hook(bp + "ffn-inner")))
          add(tb.register_forward_hook(self._out_hook(bp + "out")))
          tb.attn1.set_processor(RecordingAttnProcessor(
              lambda p, fid=bp + "self-map": self._put(fid, p)))
          tb.attn2.set_processor(RecordingAttnProcessor(
              lambda p, fid=bp + "cross-map": self._put(fid, p)))
      else:
        add(mod.register_forward_hook(self._out_hook("%s-%s-out" % (prefix, kind))))
        add(mod.register_forward_pre_hook(self._in_hook(prefix + "-" + kind), with_kwargs=True))

  def _unet_in(self, mod, args, kwargs):
    x = args[0] if args else kwargs["sample"]
    self._put("unet-in", x)

  def reset(self):
    self.tensors.clear()
    self.shapes.clear()
    self.inputs.clear()

  def remove(self):
    for h in self.handles:
      h.remove()
    self.handles = []
    self.unet.set_attn_processor(self.old_processors)

  def check_complete(self):
    missing = [i for i in self.ids if i not in self.shapes]
    assert not missing, "probes not captured: %s" % missing[:10]


# -- expected shapes (the grammar's shape rule, independent of the hooks) ------

def expected_shape(fid, cfg, latent, batch=None):
  """Shape of probe fid for a UNet config dict and a square latent size.

  Returns the shape without the batch dim unless batch is given.  Used both to
  reproduce feature_inventory.txt for the real config and to check the tiny one.
  """
  boc = list(cfg["block_out_channels"])
  n_lv = len(boc)
  heads_cfg = cfg.get("num_attention_heads") or cfg["attention_head_dim"]
  if isinstance(heads_cfg, int):
    heads_cfg = [heads_cfg] * n_lv
  heads_cfg = list(heads_cfg)
  in_ch = cfg["in_channels"]

  def level_shape(stage, level):
    if stage == "down":
      return boc[level], latent >> level
    if stage == "up":
      return boc[n_lv - 1 - level], latent >> (n_lv - 1 - level)
    return boc[-1], latent >> (n_lv - 1)

  def level_heads(stage, level):
    if stage == "down":
      return heads_cfg[level]
    if stage == "up":
      return heads_cfg[n_lv - 1 - level]
    return heads_cfg[-1]

  if fid in ("unet-in", "unet-out"):
    s = (cfg["out_channels"] if fid == "unet-out" else in_ch, latent, latent)
  elif fid == "unet-after-conv-in":
    s = (boc[0], latent, latent)
  else:
    m = re.match(r"(down|mid|up)(?:-level(\d+))?(?:-repeat\d+)?-(.*)$", fid)
    assert m, fid
    stage, level, feat = m.group(1), int(m.group(2) or 0), m.group(3)
    c, hw = level_shape(stage, level)
    if feat == "downsampler-out":
      s = (c, hw // 2, hw // 2)
    elif feat == "upsampler-out":
      s = (c, hw * 2, hw * 2)
    elif feat.endswith("self-map"):
      s = (level_heads(stage, level), hw * hw, hw * hw)
    elif feat.endswith("cross-map"):
      s = (level_heads(stage, level), hw * hw, 77)
    elif feat.endswith("ffn-inner"):
      s = (4 * c, hw, hw)
    else:
      s = (c, hw, hw)
  return s if batch is None else (batch,) + tuple(s)


def read_inventory(path):
  """feature_inventory.txt -> {id: shape tuple} (batch dim omitted)."""
  inv = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      fid, rest = line.split("\t", 1)
      dims = rest.split("]")[0].lstrip("[")
      inv[fid] = tuple(int(x) for x in dims.split(","))
  return inv
