"""Joint image/label ops on examples {'image': uint8 HxWx3, 'label': uint8 HxW}.

Every op transforms image and label together so they can never fall out of
step; labels are only ever moved or nearest-resized, never interpolated, and
padded with the ignore index. Ops are module-level functions bound with
`functools.partial`, so a `Compose` pickles into grain's worker processes.
Normalisation (mean/std) happens on device inside the jitted step, so images
stay uint8 here.

The `voc` preset is mmsegmentation's train pipeline op for op, checked against
mmseg's own transforms (tests/test_parity_augment.py): resizes with OpenCV's
INTER_LINEAR / INTER_NEAREST (what mmcv calls), crops that may come out smaller
than the crop size, flip and photometric distortion on the unpadded crop, and
padding last (mmseg's SegDataPreProcessor pads the normalised batch).
Random draws follow mmseg's calls one for one (a coin is `integers(2)`, a
ratio is `random() * (hi - lo) + lo`), so the same draws give the same output.
"""

from __future__ import annotations

import functools
from typing import Callable

import cv2
import ml_collections
import numpy as np

from jaxseg.checks import Checker
from jaxseg.registry import Registry
from jaxseg.sections import Choice, Section

Example = dict[str, np.ndarray]
Op = Callable[[Example, np.random.Generator], Example]
AUGMENTATIONS: Registry = Registry("augmentation preset")
# mmseg's RandomCrop tests a drawn window and re-draws up to this many times,
# keeping the last draw untested: at most 1 + CAT_MAX_RETRIES windows.
CAT_MAX_RETRIES = 10


def hflip(example: Example, rng: np.random.Generator, prob: float = 0.5) -> Example:
  # mmcv's RandomFlip: np.random.choice([flip, none], p=[prob, 1 - prob]) flips iff u < prob.
  if rng.random() < prob:
    # Contiguous copies: OpenCV (photometric) rejects negative strides.
    example = dict(example, image=np.ascontiguousarray(example["image"][:, ::-1]),
                   label=np.ascontiguousarray(example["label"][:, ::-1]))
  return example


def pad_to(example: Example, size_HW: tuple[int, int], ignore_index: int,
           image_value: tuple[int, int, int] = (0, 0, 0)) -> Example:
  """Pads bottom/right up to `size_HW`: image with `image_value`, label with the ignore index."""
  H, W = example["label"].shape
  pad_h, pad_w = max(size_HW[0] - H, 0), max(size_HW[1] - W, 0)
  if not (pad_h or pad_w):
    return example
  image_HW3 = np.empty((H + pad_h, W + pad_w, 3), np.uint8)
  image_HW3[...] = np.asarray(image_value, np.uint8)
  image_HW3[:H, :W] = example["image"]
  return dict(
      example, image=image_HW3,
      label=np.pad(example["label"], ((0, pad_h), (0, pad_w)), constant_values=ignore_index))


def _crop_is_varied(label_hw: np.ndarray, ignore_index: int, cat_max_ratio: float) -> bool:
  """mmseg's test: more than one class and none covering >= cat_max_ratio of the valid pixels."""
  counts = np.bincount(label_hw.ravel(), minlength=256)
  counts[ignore_index] = 0
  counts = counts[counts > 0]
  return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def random_crop(example: Example, rng: np.random.Generator, size_HW: tuple[int, int],
                ignore_index: int, cat_max_ratio: float = 1.0) -> Example:
  """A uniformly placed crop of at most `size_HW` (smaller where the image is; `pad_to` follows).

  With `cat_max_ratio` < 1 a window that fails `_crop_is_varied` is re-drawn,
  up to CAT_MAX_RETRIES times, the last draw kept untested (mmseg's RandomCrop).
  At 1.0 it draws exactly two integers.
  """
  H, W = example["label"].shape

  def draw():
    top = int(rng.integers(0, max(H - size_HW[0], 0) + 1))
    left = int(rng.integers(0, max(W - size_HW[1], 0) + 1))
    return np.s_[top:top + size_HW[0], left:left + size_HW[1]]

  window = draw()
  if cat_max_ratio < 1.0:
    for _ in range(CAT_MAX_RETRIES):
      if _crop_is_varied(example["label"][window], ignore_index, cat_max_ratio):
        break
      window = draw()
  return dict(example, image=example["image"][window], label=example["label"][window])


def pad(example: Example, rng: np.random.Generator, size_HW: tuple[int, int],
        ignore_index: int, image_value: tuple[int, int, int]) -> Example:
  """`pad_to` as a pipeline op (draws nothing); presets put it last, as mmseg pads last."""
  del rng
  return pad_to(example, size_HW, ignore_index, image_value)


def rescaled_size(H: int, W: int, ratio: float, base_size: tuple[int, ...]) -> tuple[int, int]:
  """The (h, w) an HxW image is resized to for one drawn `ratio`.

  `base_size` () scales the original size by `ratio`. `base_size` (long, short)
  is mmseg's RandomResize(scale=base_size, ratio_range, keep_ratio=True): the
  image is fitted, aspect kept, inside long*ratio x short*ratio, so a 500x375
  VOC image at ratio 1 with (2048, 512) becomes 683x512.
  """
  if not base_size:
    factor = ratio
  else:
    long_edge, short_edge = int(max(base_size) * ratio), int(min(base_size) * ratio)
    factor = min(long_edge / max(H, W), short_edge / min(H, W))
  return max(int(H * factor + 0.5), 1), max(int(W * factor + 0.5), 1)


def resize_image(image_HW3: np.ndarray, size_HW: tuple[int, int]) -> np.ndarray:
  """Bilinear with OpenCV's INTER_LINEAR, what mmcv's Resize calls (no antialiasing)."""
  return cv2.resize(image_HW3, (size_HW[1], size_HW[0]), interpolation=cv2.INTER_LINEAR)


def resize(example: Example, size_HW: tuple[int, int]) -> Example:
  """Image bilinear, label nearest (OpenCV, as mmcv's Resize does for img and gt_seg_map)."""
  label = cv2.resize(example["label"], (size_HW[1], size_HW[0]), interpolation=cv2.INTER_NEAREST)
  return dict(example, image=resize_image(example["image"], size_HW), label=label)


def random_rescale(example: Example, rng: np.random.Generator, ratio_range: tuple[float, float],
                   base_size: tuple[int, ...]) -> Example:
  low, high = ratio_range
  ratio = rng.random() * (high - low) + low  # mmcv RandomResize's expression.
  return resize(example, rescaled_size(*example["label"].shape, ratio, base_size))


# Photometric distortion, image only, following mmseg's PhotoMetricDistortion:
# uint8 -> float32 affine -> clip -> truncate to uint8 after every step.
def _affine(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
  return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def adjust_brightness(image_HW3: np.ndarray, delta: float) -> np.ndarray:
  return _affine(image_HW3, beta=delta)


def adjust_contrast(image_HW3: np.ndarray, alpha: float) -> np.ndarray:
  """mmseg's 'contrast' is a plain gain (x * alpha), not a stretch about the mean."""
  return _affine(image_HW3, alpha=alpha)


def adjust_saturation(image_HW3: np.ndarray, alpha: float) -> np.ndarray:
  hsv = cv2.cvtColor(image_HW3, cv2.COLOR_RGB2HSV)  # = mmcv.bgr2hsv of the BGR image.
  hsv[..., 1] = _affine(hsv[..., 1], alpha=alpha)
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def adjust_hue(image_HW3: np.ndarray, shift: int) -> np.ndarray:
  """Rotates hue by `shift` in OpenCV units (180 per turn), as mmseg does."""
  hsv = cv2.cvtColor(image_HW3, cv2.COLOR_RGB2HSV)
  hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 180
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def photometric(example: Example, rng: np.random.Generator, brightness_delta: float,
                contrast_range: tuple[float, float], saturation_range: tuple[float, float],
                hue_delta: int) -> Example:
  """mmseg's PhotoMetricDistortion: brightness, contrast, saturation, hue, each on a coin
  (`integers(2)`), contrast first or last on another; hue shifts in [-hue_delta, hue_delta)."""
  image = example["image"]
  if rng.integers(2):
    image = adjust_brightness(image, rng.uniform(-brightness_delta, brightness_delta))
  contrast_first = rng.integers(2) == 1
  if contrast_first and rng.integers(2):
    image = adjust_contrast(image, rng.uniform(*contrast_range))
  if rng.integers(2):
    image = adjust_saturation(image, rng.uniform(*saturation_range))
  if rng.integers(2):  # hue_delta 0 (where mmseg's randint(0, 0) raises) shifts by 0.
    image = adjust_hue(image, int(rng.integers(-hue_delta, hue_delta)) if hue_delta else 0)
  if not contrast_first and rng.integers(2):
    image = adjust_contrast(image, rng.uniform(*contrast_range))
  return dict(example, image=image)


# Presets: which ops in which order. Each is a registered function of the context
# every preset gets (the ignore index; `augment.crop_size` and `augment.mean`, keys
# read outside the presets too) and, keyword-only, the `augment` keys it takes
# (jaxseg/sections.py), with the library's generic defaults; a recipe's values
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


# The `augment` section (jaxseg/sections.py): the keys read outside the presets, and
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
