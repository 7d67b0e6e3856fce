#!/usr/bin/env python3
"""The shapes world: seeded synthetic scenes whose every word has one place.

A scene is a 128x128 RGB picture of 1 to 3 solid objects (colours red, green,
blue, yellow; shapes circle, square, triangle; sides 16-32 px) at random,
non-overlapping positions on a plain or gently graded grey background. Within a
scene no two objects share a colour or a shape, so every colour word and every
shape word names exactly one object. Each scene comes with one mask per object,
its objects (colour, shape, bbox, centre), captions in the world's words
("a red circle and a blue square", "a red circle left of a blue square",
"a green triangle", ...) and questions with answers ("what colour is the
circle?" -> "red").

Only numpy and PIL. As a library:

  from world import make_scene, captions, questions
  rng = np.random.default_rng(seed)
  s = make_scene(rng)               # dict: image (HxWx3 uint8), masks (K,H,W bool), objects
  captions(s["objects"])            # every caption true of the scene
  random_caption(s["objects"], rng) # one, drawn over templates

As a tool:

  python3 scripts/shapes/world.py --seed S --n N --out DIR [--objects 2]

writes DIR/NNNN.png, DIR/NNNN-labels.png (8-bit: 0 background, k = object k,
1-based, in the order of scenes.json) and DIR/scenes.json. Held-out sets come
from seeds never used for training (training uses seeds < 1000; see train.py).
"""

import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
COLOURS = {
    # name: (base RGB, jitter)
    "red": (np.array([215, 40, 35]), 25),
    "green": (np.array([40, 170, 55]), 25),
    "blue": (np.array([40, 70, 215]), 25),
    "yellow": (np.array([235, 210, 40]), 20),
}
SHAPES = ("circle", "square", "triangle")
MIN_SIDE, MAX_SIDE = 16, 32
MARGIN = 4        # px between any two objects' bboxes
EDGE = 2          # px between an object and the border
REL_GAP = 6       # centres must differ by this much for left/right/above/below

NUMBERS = {1: "one", 2: "two", 3: "three"}


def _background(rng):
  """A grey (never red/green/blue/yellow) plain or gently graded field."""
  g = rng.uniform(70, 200)
  tint = rng.uniform(-6, 6, size=3)
  base = np.full((SIZE, SIZE, 3), g) + tint
  if rng.random() < 0.6:
    ang = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(8, 30)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5
    ramp = (np.cos(ang) * xx + np.sin(ang) * yy) * amp
    base = base + ramp[..., None]
  return np.clip(base, 0, 255)


def _colour(name, rng):
  base, jit = COLOURS[name]
  return np.clip(base + rng.integers(-jit, jit + 1, size=3), 0, 255).astype(np.uint8)


def _place(rng, sides, tries=200):
  """Non-overlapping bboxes (x0, y0, x1, y1), exclusive ends, or None."""
  boxes = []
  for s in sides:
    for _ in range(tries):
      x0 = int(rng.integers(EDGE, SIZE - EDGE - s + 1))
      y0 = int(rng.integers(EDGE, SIZE - EDGE - s + 1))
      b = (x0, y0, x0 + s, y0 + s)
      if all(b[0] >= o[2] + MARGIN or o[0] >= b[2] + MARGIN or
             b[1] >= o[3] + MARGIN or o[1] >= b[3] + MARGIN for o in boxes):
        boxes.append(b)
        break
    else:
      return None
  return boxes


def _draw_mask(shape, box):
  m = Image.new("L", (SIZE, SIZE), 0)
  d = ImageDraw.Draw(m)
  x0, y0, x1, y1 = box
  if shape == "circle":
    d.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
  elif shape == "square":
    d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
  else:  # triangle, apex up
    d.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=255)
  return np.asarray(m) > 127


def make_scene(rng, n_objects=None):
  """One scene: dict(image uint8 HxWx3, masks bool KxHxW, objects list)."""
  while True:
    k = int(n_objects or rng.integers(1, 4))
    cols = list(rng.choice(list(COLOURS), size=k, replace=False))
    shps = list(rng.choice(SHAPES, size=k, replace=False))
    sides = [int(rng.integers(MIN_SIDE, MAX_SIDE + 1)) for _ in range(k)]
    boxes = _place(rng, sides)
    if boxes is not None:
      break
  img = _background(rng)
  masks, objects = [], []
  for c, s, b in zip(cols, shps, boxes):
    m = _draw_mask(s, b)
    img[m] = _colour(c, rng)
    masks.append(m)
    objects.append(dict(colour=str(c), shape=str(s), bbox=list(b),
                        centre=[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2],
                        area=int(m.sum())))
  return dict(image=np.round(img).astype(np.uint8), masks=np.stack(masks), objects=objects)


# ---- words -----------------------------------------------------------------

def _np(o, article=True):
  return ("a " if article else "") + o["colour"] + " " + o["shape"]


def relations(a, b):
  """Relations true of a with respect to b ("left of", "above", ...)."""
  r = []
  dx = a["centre"][0] - b["centre"][0]
  dy = a["centre"][1] - b["centre"][1]
  if dx <= -REL_GAP:
    r.append("left of")
  if dx >= REL_GAP:
    r.append("right of")
  if dy <= -REL_GAP:
    r.append("above")
  if dy >= REL_GAP:
    r.append("below")
  return r


def _list(nps):
  if len(nps) == 1:
    return nps[0]
  if len(nps) == 2:
    return nps[0] + " and " + nps[1]
  return ", ".join(nps[:-1]) + " and " + nps[-1]


def captions(objects):
  """Every caption template instance true of the scene (all object orders)."""
  out = []
  k = len(objects)
  orders = [[0], ] if k == 1 else (
      [[0, 1], [1, 0]] if k == 2 else
      [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
  for order in orders:
    objs = [objects[i] for i in order]
    lst = _list([_np(o) for o in objs])
    out += [lst, "a picture of " + lst, "there is " + lst]
    if k > 1:
      out.append(NUMBERS[k] + " objects: " + lst)
      out.append(_list([_np(o, False) for o in objs]))
  if k == 1:
    o = objects[0]
    out += [o["colour"] + " " + o["shape"], "a " + o["shape"] + " that is " + o["colour"],
            "one " + o["colour"] + " " + o["shape"]]
  for i in range(k):
    for j in range(k):
      if i == j:
        continue
      a, b = objects[i], objects[j]
      for rel in relations(a, b):
        s = _np(a) + " " + rel + " " + _np(b)
        out.append(s)
        if k == 3:
          c = objects[3 - i - j]
          out.append(s + " and " + _np(c))
          out.append(_np(c) + " and " + s)
  return out


def random_caption(objects, rng):
  cs = captions(objects)
  return cs[int(rng.integers(len(cs)))]


def canonical_caption(objects):
  """The evaluation caption: 'a red circle and a blue square' in object order."""
  return _list([_np(o) for o in objects])


def questions(objects):
  """(question, answer) pairs for VQA-style work."""
  qa = [("how many objects are there?", NUMBERS[len(objects)])]
  for o in objects:
    qa.append(("what colour is the %s?" % o["shape"], o["colour"]))
    qa.append(("what shape is the %s object?" % o["colour"], o["shape"]))
    qa.append(("is there a %s %s?" % (o["colour"], o["shape"]), "yes"))
    x, y = o["centre"]
    h = "left" if x < SIZE / 3 else ("right" if x > 2 * SIZE / 3 else "middle")
    v = "top" if y < SIZE / 3 else ("bottom" if y > 2 * SIZE / 3 else "middle")
    where = "middle" if h == v == "middle" else (h if v == "middle" else
                                                (v if h == "middle" else v + " " + h))
    qa.append(("where is the %s %s?" % (o["colour"], o["shape"]), where))
  present = {(o["colour"], o["shape"]) for o in objects}
  cols = {o["colour"] for o in objects}
  for c in COLOURS:
    for s in SHAPES:
      if (c, s) not in present and (c in cols or s in {o["shape"] for o in objects}):
        qa.append(("is there a %s %s?" % (c, s), "no"))
        break
  for i, a in enumerate(objects):
    for j, b in enumerate(objects):
      if i != j:
        for rel in relations(a, b):
          qa.append(("is the %s %s %s the %s %s?" % (a["colour"], a["shape"], rel,
                                                      b["colour"], b["shape"]), "yes"))
  return qa


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--seed", type=int, required=True)
  ap.add_argument("--n", type=int, required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--objects", type=int, choices=(1, 2, 3),
                  help="objects per scene (default: 1 to 3 at random)")
  ap.add_argument("--masks", choices=("labels", "per-object"), default="labels",
                  help="one 8-bit label PNG per scene (default) or NNNN-mask-K.png")
  args = ap.parse_args()
  os.makedirs(args.out, exist_ok=True)
  rng = np.random.default_rng(args.seed)
  scenes = []
  for i in range(args.n):
    s = make_scene(rng, args.objects)
    name = "%04d" % i
    Image.fromarray(s["image"]).save(os.path.join(args.out, name + ".png"), optimize=True)
    if args.masks == "labels":
      lab = np.zeros((SIZE, SIZE), np.uint8)
      for k, m in enumerate(s["masks"]):
        lab[m] = k + 1
      Image.fromarray(lab).save(os.path.join(args.out, name + "-labels.png"), optimize=True)
    else:
      for k, m in enumerate(s["masks"]):
        Image.fromarray(m.astype(np.uint8) * 255).save(
            os.path.join(args.out, "%s-mask-%d.png" % (name, k)), optimize=True)
    scenes.append(dict(image=name + ".png",
                       labels=name + "-labels.png" if args.masks == "labels" else None,
                       masks=None if args.masks == "labels" else
                       ["%s-mask-%d.png" % (name, k) for k in range(len(s["masks"]))],
                       objects=s["objects"],
                       caption=canonical_caption(s["objects"]),
                       captions=captions(s["objects"]),
                       questions=[dict(q=q, a=a) for q, a in questions(s["objects"])]))
  with open(os.path.join(args.out, "scenes.json"), "w") as f:
    json.dump(dict(world="shapes", seed=args.seed, size=SIZE, objects_per_scene=args.objects,
                   colours=list(COLOURS), shapes=list(SHAPES), scenes=scenes), f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main()
