"""Segmentation models. Each registered factory is `(model_cfg, num_classes) -> nn.Module`.

Every model is a linen module called as `model.apply(variables, x_BHWC, train=...)`
returning `(logits_BHWC float32, aux: dict)`; `aux` may hold `aux_logits`.
Every model also takes `valid_BHW=None`, a bool mask of the real (non-padding)
pixels at input resolution: global pooling (ASPP's image branch) averages only
those; models without global pooling ignore it.
"""

from __future__ import annotations

import importlib

import ml_collections

from jaxseg.registry import Registry

MODELS: Registry = Registry("model")

# Modules that register models on import; listed so `MODELS.names()` is complete.
_MODEL_MODULES = ("seed_cnn", "unet", "fcn", "deeplab", "fcn_vgg")


def _import_all() -> None:
  for module in _MODEL_MODULES:
    importlib.import_module(f"jaxseg.models.{module}")


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
  _import_all()
  return MODELS.get(model_cfg.name)(model_cfg, num_classes)


def model_names() -> list[str]:
  _import_all()
  return MODELS.names()
