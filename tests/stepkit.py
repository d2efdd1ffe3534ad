"""What step-level tests share: a learnable fixed batch and a jitted, sharded train step."""

from __future__ import annotations

import numpy as np

from jaxseg.runtime.build import build, synthetic_meta
from jaxseg.runtime.sharding import make_mesh

NUM_CLASSES = 6


def fixed_batch(n=16, size=32, seed=0):
  """8x8 blocks of one class (resolvable by models that pool) and images that carry
  the label plus noise, so the batch is learnable; a band of ignore pixels on top."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, NUM_CLASSES, (n, size // 8, size // 8)).astype(np.uint8)
  label = blocks.repeat(8, axis=1).repeat(8, axis=2)
  label[:, :4] = 255
  image = (label[..., None] % 255 * 40 + rng.integers(0, 30, (n, size, size, 3))).astype(np.uint8)
  return {"image": image, "label": label}


def build_step(cfg, size=32, devices=None, num_classes=NUM_CLASSES):
  """(mesh, state, jitted train step, optimizer) for `cfg`, from jaxseg's builder."""
  mesh = make_mesh(devices)
  run = build(cfg, synthetic_meta(num_classes, (size, size)), mesh)
  return mesh, run.state, run.train_step, run.tx
