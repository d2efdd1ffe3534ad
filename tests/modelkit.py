"""Model sections for tests that narrow every registered model with one set of sizes."""

from __future__ import annotations

from jaxseg import models


def taken(name: str, values: dict) -> dict:
  """Those of `values` (model keys) that model `name` takes: `width` narrows a U-Net,
  `fc_channels` a VGG FCN, `head_channels` an mmseg head."""
  params = models.MODELS.params(name)
  return {k: v for k, v in values.items() if k in params}


def model_config(name: str, **values):
  """`models.SECTION.config(name=name, ...)` with those of `values` that `name` takes."""
  return models.SECTION.config(name=name, **taken(name, values))


def model_overrides(name: str, **values) -> list[str]:
  """`--set` overrides choosing model `name` with those of `values` it takes."""
  return [f"model.name={name}"] + [f"model.{k}={v}" for k, v in taken(name, values).items()]
