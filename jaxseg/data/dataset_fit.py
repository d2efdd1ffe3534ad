"""Config values that must fit the dataset and the model, checked as soon as the
dataset's meta is known (a prepared dataset, or a checkpoint's stored meta) and
before anything is compiled: `build.build` runs `check` first.

The config alone cannot say these: `loss.<term>.class_weights` needs the number of
classes, and which input sizes a model takes (a U-Net of depth d wants sides
divisible by 2**d) shows when it is traced at the sizes the run will feed it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.config.run_sections import round_up
from jaxseg.data.datasets import DatasetMeta
from jaxseg.errors import ConfigError
from jaxseg.models import build_model


def input_sizes(cfg: ml_collections.ConfigDict, meta: DatasetMeta) -> dict[tuple, str]:
  """{(H, W): the config keys that make the model see that size} for training and
  evaluation under `eval.mode` and `eval.protocol`."""
  sizes = {tuple(cfg.augment.crop_size): f"augment.crop_size={tuple(cfg.augment.crop_size)}"}
  ev = cfg.eval
  if ev.protocol == "resize":  # Each batch on a canvas of resize_bucket multiples.
    sizes.setdefault((ev.resize_bucket,) * 2, f"eval.resize_bucket={ev.resize_bucket}")
    return sizes
  H, W = meta.eval_canvas_HW
  if ev.mode == "slide":  # Windows larger than the canvas shrink to it.
    sizes.setdefault((min(ev.crop_size[0], H), min(ev.crop_size[1], W)),
                     f"eval.crop_size={tuple(ev.crop_size)} on the dataset's {H}x{W} canvas")
    return sizes
  sizes.setdefault((H, W), f"the dataset's eval canvas {H}x{W} (eval.mode={ev.mode})")
  if ev.mode == "aug":
    for scale in ev.scales:
      scaled = tuple(round_up(round(n * scale), ev.size_divisor) for n in (H, W))
      sizes.setdefault(scaled, f"eval.scales {scale} with eval.size_divisor={ev.size_divisor} "
                               f"on the dataset's {H}x{W} canvas")
  return sizes


def _model_error(model, HW: tuple[int, int]) -> Exception | None:
  """The error tracing `model` at a (1, H, W, 3) input raises; None if it traces."""
  key = jax.random.key(0)
  try:
    jax.eval_shape(lambda x: model.init({"params": key, "dropout": key}, x, train=False),
                   jax.ShapeDtypeStruct((1, *HW, 3), jnp.float32))
  except (ValueError, TypeError) as e:  # Shape rules of models and of lax.
    return e
  return None


def check(cfg: ml_collections.ConfigDict, meta: DatasetMeta) -> None:
  """Raises ConfigError (one line naming the key) on a value that does not fit `meta`
  or the model: class weights, and every input size training and evaluation feed."""
  for term, args in cfg.loss.items():  # Each chosen loss's own arguments (loss.<term>.*).
    weights = args.get("class_weights", ()) if isinstance(args, ml_collections.ConfigDict) else ()
    if weights and len(weights) != meta.num_classes:
      raise ConfigError(
          f"loss.{term}.class_weights has {len(weights)} weights; expected one per class "
          f"of dataset {cfg.data.name!r}: {meta.num_classes} "
          f"({', '.join(meta.class_names[:6])}{', ...' * (meta.num_classes > 6)})")
  model = build_model(cfg.model, meta.num_classes)
  for HW, what in input_sizes(cfg, meta).items():
    error = _model_error(model, HW)
    if error is not None:
      detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
      raise ConfigError(f"{what}: model {cfg.model.name!r} cannot take a {HW[0]}x{HW[1]} "
                        f"input ({detail or type(error).__name__})") from error
