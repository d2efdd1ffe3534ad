"""Model sections for tests that narrow every registered model with one set of sizes."""

from __future__ import annotations

from jaxseg import models
from jaxseg.config.overrides import flat_dict


def _within(params: dict, values: dict) -> dict:
  kept = {}
  for key, value in values.items():
    if key in params and isinstance(params[key], dict):
      value = _within(params[key], value)
      if value:
        kept[key] = value
    elif key in params:
      kept[key] = value
  return kept


def taken(name: str, values: dict) -> dict:
  """Those of `values` (model keys, groups as dicts) that model `name` takes, inside
  groups too: `width` narrows a U-Net, `backbone=dict(fc_channels=...)` a VGG FCN,
  `head=dict(channels=...)` an mmseg head (and a SegFormer's)."""
  return _within(models.MODELS.params(name), values)


def model_config(name: str, **values):
  """`models.SECTION.config(name=name, ...)` with those of `values` that `name` takes."""
  return models.SECTION.config(name=name, **taken(name, values))


def model_overrides(name: str, **values) -> list[str]:
  """`--set` overrides choosing model `name` with those of `values` it takes."""
  return [f"model.name={name}"] + [f"model.{k}={v}"
                                   for k, v in flat_dict(taken(name, values)).items()]
