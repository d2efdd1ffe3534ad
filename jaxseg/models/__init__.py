"""Segmentation models. Each registered factory is `(model_cfg, num_classes) -> nn.Module`.

Every model is a linen module called as `model.apply(variables, x_BHWC, train=...)`
returning `(logits_BHWC float32, aux: dict)`; `aux` may hold `aux_logits`.
Every model also takes `valid_BHW=None`, a bool mask of the real (non-padding)
pixels at input resolution: global pooling (ASPP's image branch) averages only
those; models without global pooling ignore it.
"""

from __future__ import annotations

import ml_collections

# Every module that registers a model, imported here once so MODELS is complete.
from jaxseg.models import deeplab, fcn, fcn_vgg, seed_cnn, unet  # noqa: F401
from jaxseg.models.registry import MODELS


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
  return MODELS.get(model_cfg.name)(model_cfg, num_classes)


def model_names() -> list[str]:
  return MODELS.names()
