"""The embedded default: a small U-Net on the procedural `shapes` dataset.

Variants: `smoke` (a few steps, for tests), `seed` (the seed CNN instead of U-Net),
`loss=NAME` (train with another registered loss, e.g. `demo:smoke,loss=lovasz`).
"""

from __future__ import annotations

from experiments.base import LOSS_VARIANT, apply_loss_variant, get_base_config
from jaxseg.config.loading import parse_variant


# What `--exp demo:VARIANT` takes (comma-separated); `python run.py --list` shows them.
VARIANT_FLAGS = {"smoke", "seed"}
VARIANT_OPTIONS = LOSS_VARIANT


def get_config(variant: str = ""):
  flags, options = parse_variant(variant, known_flags=VARIANT_FLAGS, known_keys=VARIANT_OPTIONS)
  c = get_base_config()
  c.data.name = "shapes"
  c.augment.preset = "flip"
  c.augment.crop_size = (64, 64)
  if "seed" in flags:  # Each model's own keys (jaxseg/models/seed_cnn.py, unet.py).
    c.model.name = "seed_cnn"
    c.model.width = 32
  else:
    c.model.name = "unet"
    c.model.width = 16
    c.model.depth = 3
    c.model.dropout = 0.0
    # No dropout in the demo, whichever model `--set model.name=...` swaps in.
    c.model.head = dict(dropout=0.0)
    c.model.aux_head = dict(dropout=0.0)
  c.optim.name = "adamw"
  c.optim.lr = 3e-3
  c.optim.weight_decay = 1e-4
  c.optim.warmup_steps = 50
  # Calibrated on a 2-core CPU: about 3-4 minutes of training to val mIoU ~0.9.
  c.train.steps = 800
  c.train.batch_size = 16
  c.train.log_every = 50
  c.train.eval_every = 400
  c.train.checkpoint_every = 400
  c.eval.batch_size = 64
  # eval.mode=aug: flip only. The demo trains at one scale (the `flip` preset has no
  # rescale), so other test scales are inputs it never saw: measured on a trained demo
  # (whole 92.0 mIoU), flip 92.6, scales (0.75, 1, 1.25) + flip 90.4, VOC's 0.5..1.75 + flip 78.6.
  c.eval.scales = (1.0,)
  apply_loss_variant(c, options)
  if "smoke" in flags:
    c.train.steps = 12
    c.train.batch_size = 16
    c.train.log_every = 4
    c.train.eval_every = 0
    c.train.checkpoint_every = 6
    c.eval.batch_size = 40
  return c
