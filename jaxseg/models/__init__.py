"""Segmentation models. Each registered factory is `(model_cfg, num_classes) -> nn.Module`.

Every model is a linen module called as `model.apply(variables, x_BHWC, train=...)`
returning `(logits_BHWC float32, aux: dict)`; `aux` may hold `aux_logits`.
Every model also takes `valid_BHW=None`, a bool mask of the real (non-padding)
pixels at input resolution: global pooling (ASPP's image branch) averages only
those; models without global pooling ignore it.
"""

from __future__ import annotations

import ml_collections

from jaxseg.checks import Checker

# Every module that registers a model, imported here once so MODELS is complete.
from jaxseg.models import deeplab, fcn, fcn_vgg, mmseg_heads, seed_cnn, unet  # noqa: F401
from jaxseg.models.layers import DTYPES
from jaxseg.models.registry import MODELS
from jaxseg.models.zoo_config import CHOICES, zoo_defaults
from jaxseg.sections import Section


# The `model` section (jaxseg/sections.py).
SECTION = Section("model", shared={
    "name": "unet",
    "dtype": "float32",  # Compute dtype; params and logits stay float32.
    "width": 16,
    "depth": 3,
    "dropout": 0.0,
    **zoo_defaults(),
}, choices=())


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
  return MODELS.get(model_cfg.name)(model_cfg, num_classes)


def validate_config(model_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `model` section."""
  c = Checker(model_cfg, "model")
  c.choice("name", model_names(), "model")
  c.choice("dtype", DTYPES)
  c.choice("init", CHOICES["init"])
  if model_cfg.output_stride not in CHOICES["output_stride"]:
    c.fail("output_stride", f"one of {list(CHOICES['output_stride'])}")
  c.count("width")
  c.count("depth", min=0)
  c.count("fc_channels")
  c.count("head_channels", min=2)  # The mmseg aux head has half of them.
  for key in ("dropout", "aspp_dropout", "fc_dropout"):
    c.number(key, min=0, below=1)
  c.number("bn_momentum", min=0, max=1)
  c.number("classifier_init_std", min=0)


def model_names() -> list[str]:
  return MODELS.names()
