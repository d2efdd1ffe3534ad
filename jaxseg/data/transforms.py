"""Joint image/label ops on examples {'image': uint8 HxWx3, 'label': uint8 HxW}.

Every op transforms image and label together so they can never fall out of
step; labels are only ever moved or nearest-resized, never interpolated.
Normalisation (mean/std) happens on device inside the jitted step.
"""

from __future__ import annotations

import functools
from typing import Callable

import ml_collections
import numpy as np

from jaxseg.registry import Registry

Example = dict[str, np.ndarray]
Op = Callable[[Example, np.random.Generator], Example]
AUGMENTATIONS: Registry = Registry("augmentation preset")


def hflip(example: Example, rng: np.random.Generator) -> Example:
  if rng.random() < 0.5:
    example = dict(example, image=example["image"][:, ::-1], label=example["label"][:, ::-1])
  return example


def pad_to(example: Example, size_HW: tuple[int, int], ignore_index: int) -> Example:
  """Pads bottom/right up to `size_HW`: image with 0, label with the ignore index."""
  H, W = example["label"].shape
  pad_h, pad_w = max(size_HW[0] - H, 0), max(size_HW[1] - W, 0)
  if not (pad_h or pad_w):
    return example
  return dict(
      example,
      image=np.pad(example["image"], ((0, pad_h), (0, pad_w), (0, 0))),
      label=np.pad(example["label"], ((0, pad_h), (0, pad_w)), constant_values=ignore_index))


def random_crop(example: Example, rng: np.random.Generator, size_HW: tuple[int, int],
                ignore_index: int) -> Example:
  example = pad_to(example, size_HW, ignore_index)
  H, W = example["label"].shape
  top = int(rng.integers(0, H - size_HW[0] + 1))
  left = int(rng.integers(0, W - size_HW[1] + 1))
  window = np.s_[top:top + size_HW[0], left:left + size_HW[1]]
  return dict(example, image=example["image"][window], label=example["label"][window])


@AUGMENTATIONS.register("none")
def preset_none(cfg: ml_collections.ConfigDict, ignore_index: int) -> list[Op]:
  return [functools.partial(random_crop, size_HW=tuple(cfg.crop_size), ignore_index=ignore_index)]


@AUGMENTATIONS.register("flip")
def preset_flip(cfg: ml_collections.ConfigDict, ignore_index: int) -> list[Op]:
  return [functools.partial(random_crop, size_HW=tuple(cfg.crop_size), ignore_index=ignore_index),
          hflip]


class Compose:
  """Applies ops in order with one generator; picklable for grain's worker processes."""

  def __init__(self, ops: list[Op]):
    self.ops = ops

  def __call__(self, example: Example, rng: np.random.Generator) -> Example:
    for op in self.ops:
      example = op(example, rng)
    return example


def build_augment(cfg: ml_collections.ConfigDict, ignore_index: int) -> Compose:
  return Compose(AUGMENTATIONS.get(cfg.preset)(cfg, ignore_index))
