#!/usr/bin/env python3
"""gen_safetensors_fixture.py: a tiny .safetensors file written by the reference
safetensors library (torch backend), for checking that the engine's reader
accepts what Python produces and decodes every dtype exactly.

Produces tests/data/safetensors/tiny.safetensors (a few hundred bytes) holding:
  weight  F32  [2, 3]  1.5, -2.25, 0.1, 1024, -0.0078125, 3.4028234663852886e38
  half    F16  [4]     1.0, -2.5, 65504.0, 2**-24 (smallest subnormal)
  brain   BF16 [2, 2]  1.0, -3.0, 2**100, 0.0078125
  ids     I64  [3]     0, -7, 49407
  count   I32  [1]     123456
  scalar  F32  []      42.0
  empty   F32  [0, 3]  (no data)
  metadata: {"format": "pt", "note": "diffscope test fixture"}

Run from the repository root:
  python3 tests/reference/gen_safetensors_fixture.py
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                   "safetensors", "tiny.safetensors")

tensors = {
    "weight": torch.tensor([[1.5, -2.25, 0.1], [1024.0, -0.0078125, 3.4028234663852886e38]],
                           dtype=torch.float32),
    "half": torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -24], dtype=torch.float16),
    "brain": torch.tensor([[1.0, -3.0], [2.0 ** 100, 0.0078125]], dtype=torch.bfloat16),
    "ids": torch.tensor([0, -7, 49407], dtype=torch.int64),
    "count": torch.tensor([123456], dtype=torch.int32),
    "scalar": torch.tensor(42.0, dtype=torch.float32),
    "empty": torch.zeros((0, 3), dtype=torch.float32),
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata={"format": "pt", "note": "diffscope test fixture"})
os.chmod(OUT, 0o644)
