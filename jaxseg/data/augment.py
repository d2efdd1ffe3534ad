"""Augmentation presets: which joint ops (transforms.py) run in which order, from `augment`.

Each preset is registered in AUGMENTATIONS and chosen by `augment.preset`; it
takes the context every preset gets and, keyword-only, its own `augment` keys
(jaxseg/config/sections.py). `build_augment` turns a section into the `Compose` that
grain's workers run.
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np

from jaxseg.config.checks import Checker
from jaxseg.config.sections import Choice, Section
from jaxseg.data.transforms import Example, Op, hflip, pad, photometric, random_crop, random_rescale
from jaxseg.registry import Registry

AUGMENTATIONS: Registry = Registry("augmentation preset")


# Presets: which ops in which order. Each is a registered function of the context
# every preset gets (the ignore index; `augment.crop_size` and `augment.mean`, keys
# read outside the presets too) and, keyword-only, the `augment` keys it takes
# (jaxseg/config/sections.py), with the library's generic defaults; a recipe's values
# (mmseg's VOC numbers: experiments/_voc.py) live in its experiment.
IMAGE_PADS = ("zero", "mean")  # `augment.image_pad` values.


def _pad_value(image_pad: str, mean: tuple) -> tuple[int, int, int]:
  """'mean': the mean colour rounded to uint8, which normalises to within 0.01 of mmseg's
  pad value 0 (mmseg pads after normalising; here images stay uint8 until the device)."""
  if image_pad not in IMAGE_PADS:
    raise ValueError(f"augment.image_pad={image_pad!r}; expected one of {IMAGE_PADS}")
  return (0, 0, 0) if image_pad == "zero" else tuple(int(round(m)) for m in mean)


def _crop(crop_size, ignore_index: int, cat_max_ratio: float) -> Op:
  return functools.partial(random_crop, size_HW=tuple(crop_size), ignore_index=ignore_index,
                           cat_max_ratio=cat_max_ratio)


def _pad(crop_size, ignore_index: int, image_pad: str, mean) -> Op:
  return functools.partial(pad, size_HW=tuple(crop_size), ignore_index=ignore_index,
                           image_value=_pad_value(image_pad, mean))


def _rescale(scale_range, base_size) -> Op:
  return functools.partial(random_rescale, ratio_range=tuple(scale_range),
                           base_size=tuple(base_size))


def _photometric(brightness_delta, contrast_range, saturation_range, hue_delta) -> Op:
  return functools.partial(photometric, brightness_delta=brightness_delta,
                           contrast_range=tuple(contrast_range),
                           saturation_range=tuple(saturation_range), hue_delta=hue_delta)


@AUGMENTATIONS.register("none")
def preset_none(ignore_index: int, crop_size: tuple, mean: tuple, *, cat_max_ratio: float = 1.0,
                image_pad: str = "zero") -> list[Op]:
  """Crop to at most `crop_size`, then pad to it.

  `cat_max_ratio`: re-draw a crop (up to CAT_MAX_RETRIES times, mmseg's RandomCrop)
  while one class covers >= this fraction of its non-ignore pixels or it holds a
  single class; 1.0 = off (mmseg's VOC recipe: 0.75).
  `image_pad`: labels pad with the ignore index, images with 'zero' or 'mean' (the
  mean colour, which normalises to 0 on device, as mmseg's pad-after-normalise does).
  """
  return [_crop(crop_size, ignore_index, cat_max_ratio),
          _pad(crop_size, ignore_index, image_pad, mean)]


@AUGMENTATIONS.register("flip")
def preset_flip(ignore_index: int, crop_size: tuple, mean: tuple, *, flip_prob: float = 0.5,
                cat_max_ratio: float = 1.0, image_pad: str = "zero") -> list[Op]:
  """Crop, horizontal flip with probability `flip_prob`, pad (`cat_max_ratio` and
  `image_pad` as in `preset_none`)."""
  return [_crop(crop_size, ignore_index, cat_max_ratio), functools.partial(hflip, prob=flip_prob),
          _pad(crop_size, ignore_index, image_pad, mean)]


@AUGMENTATIONS.register("scale_crop_flip")
def preset_scale_crop_flip(
    ignore_index: int, crop_size: tuple, mean: tuple, *, scale_range: tuple = (0.5, 2.0),
    base_size: tuple = (2048, 512), cat_max_ratio: float = 1.0, image_pad: str = "zero",
    flip_prob: float = 0.5, photometric: bool = False, brightness_delta: float = 32.0,
    contrast_range: tuple = (0.5, 1.5), saturation_range: tuple = (0.5, 1.5),
    hue_delta: int = 18) -> list[Op]:
  """Rescale, crop, flip, photometric distortion when `photometric`, pad.

  Rescale: a ratio drawn uniformly from `scale_range`, applied to `base_size`=(long,
  short) mmseg-style (fit inside base_size*ratio, aspect kept), or to the image's own
  size when `base_size`=(). Crop and pad: `cat_max_ratio`, `image_pad` as in
  `preset_none`; flip with probability `flip_prob`.
  Photometric distortion, mmseg's PhotoMetricDistortion (each part with p=0.5):
  brightness shifted within +-`brightness_delta`, contrast and saturation scaled
  within `contrast_range`, `saturation_range`, hue rotated within +-`hue_delta`
  (OpenCV units, 180 = a turn).
  """
  ops = [_rescale(scale_range, base_size), _crop(crop_size, ignore_index, cat_max_ratio),
         functools.partial(hflip, prob=flip_prob)]
  if photometric:
    ops.append(_photometric(brightness_delta, contrast_range, saturation_range, hue_delta))
  return ops + [_pad(crop_size, ignore_index, image_pad, mean)]


@AUGMENTATIONS.register("voc")
def preset_voc(
    ignore_index: int, crop_size: tuple, mean: tuple, *, scale_range: tuple = (0.5, 2.0),
    base_size: tuple = (2048, 512), cat_max_ratio: float = 1.0, image_pad: str = "zero",
    flip_prob: float = 0.5, brightness_delta: float = 32.0, contrast_range: tuple = (0.5, 1.5),
    saturation_range: tuple = (0.5, 1.5), hue_delta: int = 18) -> list[Op]:
  """mmseg's VOC train pipeline: RandomResize, RandomCrop, RandomFlip, PhotoMetricDistortion,
  then the data preprocessor's padding to the crop size (image: mean colour, label: ignore).

  Keys as `preset_scale_crop_flip`'s, photometric distortion always on;
  experiments/_voc.py sets mmseg's values.
  """
  return [_rescale(scale_range, base_size), _crop(crop_size, ignore_index, cat_max_ratio),
          functools.partial(hflip, prob=flip_prob),
          _photometric(brightness_delta, contrast_range, saturation_range, hue_delta),
          _pad(crop_size, ignore_index, image_pad, mean)]


class Compose:
  """Applies ops in order with one generator; picklable for grain's worker processes."""

  def __init__(self, ops: list[Op]):
    self.ops = ops

  def __call__(self, example: Example, rng: np.random.Generator) -> Example:
    for op in self.ops:
      example = op(example, rng)
    return example

  def __repr__(self) -> str:
    return f"Compose({self.ops!r})"


# The `augment` section (jaxseg/config/sections.py): the keys read outside the presets, and
# the chosen preset's own.
SECTION = Section("augment", shared={
    "preset": "flip",  # A registered augmentation preset (python run.py --list).
    "crop_size": (64, 64),  # (H, W) of training crops; the model's params are shaped by it.
    # Normalisation happens on device, on uint8 images, inside the jitted step; eval
    # pads images with the mean colour.
    "mean": (123.675, 116.28, 103.53),  # ImageNet, in 0-255 units.
    "std": (58.395, 57.12, 57.375),
}, choices=(Choice("preset", AUGMENTATIONS),))


def validate_config(augment_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (before any data is read) on a bad `augment` section."""
  c = Checker(augment_cfg, "augment")
  c.choice("preset", AUGMENTATIONS.names(), "augmentation preset")
  c.ints("crop_size", (2,), "two positive ints (H, W), e.g. (512, 512)", min=1)
  # The presets' own keys, where the chosen preset takes them.
  c.number("flip_prob", min=0, max=1, optional=True)
  c.choice("image_pad", IMAGE_PADS, optional=True)
  c.number("cat_max_ratio", above=0, max=1, optional=True)
  c.numbers("scale_range", (2,), "(low, high) ratios with 0 < low <= high", ordered=True,
            above=0, optional=True)
  c.ints("base_size", (0, 2), "() or two positive ints (long, short)", min=1, optional=True)
  c.number("brightness_delta", min=0, max=255, optional=True)
  for key in ("contrast_range", "saturation_range"):
    c.numbers(key, (2,), "(low, high) factors with 0 <= low <= high", ordered=True, min=0,
              optional=True)
  c.count("hue_delta", min=0, max=180, optional=True)  # OpenCV units: 180 is a full turn.
  c.numbers("mean", (3,), "three values (R, G, B) in 0-255", min=0, max=255)
  c.numbers("std", (3,), "three values (R, G, B) > 0, in 0-255 units", above=0)


def build_augment(cfg: ml_collections.ConfigDict, ignore_index: int) -> Compose:
  """The train augmentation of the `augment` section `cfg` (its preset with its keys)."""
  return Compose(AUGMENTATIONS.build(cfg.preset, cfg, ignore_index=ignore_index,
                                     crop_size=tuple(cfg.crop_size), mean=tuple(cfg.mean)))
