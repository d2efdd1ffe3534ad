"""What step-level tests share: a learnable fixed batch and a jitted, sharded train step."""

from __future__ import annotations

import numpy as np

from jaxseg import losses, optim, steps
from jaxseg.models import build_model
from jaxseg.sharding import make_mesh
from jaxseg.state import create_train_state

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
  """(mesh, state, jitted train step, optimizer) for `cfg`, as `assemble` builds them."""
  mesh = make_mesh(devices)
  model = build_model(cfg.model, num_classes)
  tx, schedule = optim.build_optimizer(cfg.optim, cfg.train.steps)
  state = create_train_state(model, tx, (size, size, 3), cfg.seed, mesh,
                             ema=cfg.train.ema_decay > 0)
  loss_fn = losses.make_loss(cfg.loss, ignore_index=255)
  step = steps.jit_train_step(steps.make_train_step(model, loss_fn, tx, schedule, cfg), state, mesh)
  return mesh, state, step, tx
