"""Augmentation presets: which joint ops (transforms.py) run in which order, from `augment`.

Each preset is registered in AUGMENTATIONS and chosen by `augment.preset`; it
takes the context every preset gets and, keyword-only, its own `augment` keys
(jaxseg/declare.py). The arguments of one op are a group, declared once
below and taken by every preset that runs the op: `augment.rescale.*`,
`augment.crop.*` (the crop_size window: how it is drawn and padded),
`augment.photometric.*`; `augment.flip_prob` is one number. `build_augment` turns a
section into the `Compose` that grain's workers run.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated

import ml_collections
import numpy as np

from jaxseg.config.checks import Checker
from jaxseg.config.sections import Choice, Section
from jaxseg.data import transforms
from jaxseg.data.transforms import Example, Op, hflip, pad, random_crop, random_rescale
from jaxseg.declare import Arg
from jaxseg.registry import Registry

AUGMENTATIONS: Registry = Registry("augmentation preset")

IMAGE_PADS = ("zero", "mean")  # `augment.crop.image_pad` values.


def _ordered_pair(expected: str):
  """An `Arg.check` of a (low, high) range: two values, low <= high (Arg's own bounds
  check each value first)."""
  return lambda value: None if len(value) == 2 and value[0] <= value[1] else expected


def _base_size_problem(value: tuple) -> str | None:
  if len(value) in (0, 2) and all(type(v) is int and v >= 1 for v in value):
    return None
  return "() or two positive ints (long, short)"


# The ops' arguments, each group declared once with the library's generic defaults;
# a recipe's values (mmseg's: experiments/_mmseg.py) live in its experiment.
@dataclasses.dataclass(frozen=True)
class Rescale:
  """mmseg's RandomResize: a ratio drawn uniformly from `scale_range`, applied to
  `base_size`=(long, short) (fit inside base_size*ratio, aspect kept), or to the
  image's own size when `base_size`=()."""

  scale_range: Annotated[tuple, Arg(above=0, check=_ordered_pair(
      "(low, high) ratios with 0 < low <= high"), help="the rescale ratio's range")
  ] = (0.5, 2.0)
  base_size: Annotated[tuple, Arg(check=_base_size_problem, help=(
      "(long, short) the ratio scales, mmseg-style; () = the image's own size"))
  ] = (2048, 512)


@dataclasses.dataclass(frozen=True)
class Crop:
  """The `augment.crop_size` window: drawn at random (mmseg's RandomCrop), then padded
  up to crop_size where the image is smaller, last (mmseg pads the normalised batch)."""

  cat_max_ratio: Annotated[float, Arg(above=0, max=1, help=(
      "re-draw a crop (up to CAT_MAX_RETRIES times) while one class covers >= this "
      "fraction of its non-ignore pixels or it holds one class; 1.0 = off"))] = 1.0
  image_pad: Annotated[str, Arg(choices=IMAGE_PADS, help=(
      "labels pad with the ignore index, images with 'zero' or 'mean' (the mean colour, "
      "0 once normalised on device, as mmseg's pad-after-normalise)"))] = "zero"


@dataclasses.dataclass(frozen=True)
class Photometric:
  """mmseg's PhotoMetricDistortion, each part with p=0.5: brightness shifted within
  +-`brightness_delta`, contrast and saturation scaled within `contrast_range`,
  `saturation_range`, hue rotated within +-`hue_delta`."""

  brightness_delta: Annotated[float, Arg(min=0, max=255, help=(
      "brightness shift bound, in 0-255 units"))] = 32.0
  contrast_range: Annotated[tuple, Arg(min=0, check=_ordered_pair(
      "(low, high) factors with 0 <= low <= high"), help="contrast gain range")] = (0.5, 1.5)
  saturation_range: Annotated[tuple, Arg(min=0, check=_ordered_pair(
      "(low, high) factors with 0 <= low <= high"), help="saturation gain range")] = (0.5, 1.5)
  hue_delta: Annotated[int, Arg(min=0, max=180, help=(
      "hue shift bound, in OpenCV units (180 = a full turn)"))] = 18


@dataclasses.dataclass(frozen=True)
class OptionalPhotometric(Photometric):
  """`Photometric` for a preset where it is off unless `enabled` (scale_crop_flip)."""

  enabled: Annotated[bool, Arg(help="apply the photometric distortion")] = False


FlipProb = Annotated[float, Arg(min=0, max=1, help="probability of a horizontal flip")]


def _pad_value(image_pad: str, mean: tuple) -> tuple[int, int, int]:
  """'mean': the mean colour rounded to uint8, which normalises to within 0.01 of mmseg's
  pad value 0 (mmseg pads after normalising; here images stay uint8 until the device)."""
  if image_pad not in IMAGE_PADS:  # Checked at load; this guards a section built by hand.
    raise ValueError(f"augment.crop.image_pad={image_pad!r}; expected one of {IMAGE_PADS}")
  return (0, 0, 0) if image_pad == "zero" else tuple(int(round(m)) for m in mean)


def _crop(crop_size, ignore_index: int, crop: Crop) -> Op:
  return functools.partial(random_crop, size_HW=tuple(crop_size), ignore_index=ignore_index,
                           cat_max_ratio=crop.cat_max_ratio)


def _pad(crop_size, ignore_index: int, crop: Crop, mean) -> Op:
  return functools.partial(pad, size_HW=tuple(crop_size), ignore_index=ignore_index,
                           image_value=_pad_value(crop.image_pad, mean))


def _rescale(rescale: Rescale) -> Op:
  return functools.partial(random_rescale, ratio_range=rescale.scale_range,
                           base_size=rescale.base_size)


def _photometric(p: Photometric) -> Op:
  return functools.partial(transforms.photometric, brightness_delta=p.brightness_delta,
                           contrast_range=p.contrast_range, saturation_range=p.saturation_range,
                           hue_delta=p.hue_delta)


# Presets: which ops in which order. Each is a registered function of the context
# every preset gets (the ignore index; `augment.crop_size` and `augment.mean`, keys
# read outside the presets too) and, keyword-only, the groups of the ops it runs.
@AUGMENTATIONS.register("none")
def preset_none(ignore_index: int, crop_size: tuple, mean: tuple, *, crop: Crop = Crop()
                ) -> list[Op]:
  """Crop to at most `crop_size`, then pad to it."""
  return [_crop(crop_size, ignore_index, crop), _pad(crop_size, ignore_index, crop, mean)]


@AUGMENTATIONS.register("flip")
def preset_flip(ignore_index: int, crop_size: tuple, mean: tuple, *, crop: Crop = Crop(),
                flip_prob: FlipProb = 0.5) -> list[Op]:
  """Crop, horizontal flip with probability `flip_prob`, pad."""
  return [_crop(crop_size, ignore_index, crop), functools.partial(hflip, prob=flip_prob),
          _pad(crop_size, ignore_index, crop, mean)]


@AUGMENTATIONS.register("scale_crop_flip")
def preset_scale_crop_flip(
    ignore_index: int, crop_size: tuple, mean: tuple, *, rescale: Rescale = Rescale(),
    crop: Crop = Crop(), flip_prob: FlipProb = 0.5,
    photometric: OptionalPhotometric = OptionalPhotometric()) -> list[Op]:
  """Rescale, crop, flip, photometric distortion when `photometric.enabled`, pad."""
  ops = [_rescale(rescale), _crop(crop_size, ignore_index, crop),
         functools.partial(hflip, prob=flip_prob)]
  if photometric.enabled:
    ops.append(_photometric(photometric))
  return ops + [_pad(crop_size, ignore_index, crop, mean)]


@AUGMENTATIONS.register("voc")
def preset_voc(
    ignore_index: int, crop_size: tuple, mean: tuple, *, rescale: Rescale = Rescale(),
    crop: Crop = Crop(), flip_prob: FlipProb = 0.5, photometric: Photometric = Photometric()
    ) -> list[Op]:
  """mmseg's VOC train pipeline: RandomResize, RandomCrop, RandomFlip, PhotoMetricDistortion,
  then the data preprocessor's padding to the crop size (image: mean colour, label: ignore).

  `scale_crop_flip` with the photometric distortion always on; experiments/_mmseg.py
  sets mmseg's values.
  """
  return [_rescale(rescale), _crop(crop_size, ignore_index, crop),
          functools.partial(hflip, prob=flip_prob), _photometric(photometric),
          _pad(crop_size, ignore_index, crop, mean)]


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
# the chosen preset's own groups.
SECTION = Section("augment", shared={
    "preset": "flip",  # A registered augmentation preset (python run.py --list).
    "crop_size": (64, 64),  # (H, W) of training crops; the model's params are shaped by it.
    # Normalisation happens on device, on uint8 images, inside the jitted step; eval
    # pads images with the mean colour.
    "mean": (123.675, 116.28, 103.53),  # ImageNet, in 0-255 units.
    "std": (58.395, 57.12, 57.375),
}, choices=(Choice("preset", AUGMENTATIONS),))


def validate_config(augment_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (before any data is read) on a bad `augment` section's shared
  keys; the presets' own are checked against their declarations (SECTION.check)."""
  c = Checker(augment_cfg, "augment")
  c.choice("preset", AUGMENTATIONS.names(), "augmentation preset")
  c.ints("crop_size", (2,), "two positive ints (H, W), e.g. (512, 512)", min=1)
  c.numbers("mean", (3,), "three values (R, G, B) in 0-255", min=0, max=255)
  c.numbers("std", (3,), "three values (R, G, B) > 0, in 0-255 units", above=0)


def build_augment(cfg: ml_collections.ConfigDict, ignore_index: int) -> Compose:
  """The train augmentation of the `augment` section `cfg` (its preset with its keys)."""
  return Compose(AUGMENTATIONS.build(cfg.preset, cfg, ignore_index=ignore_index,
                                     crop_size=tuple(cfg.crop_size), mean=tuple(cfg.mean)))
