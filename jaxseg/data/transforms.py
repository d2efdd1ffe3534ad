"""Joint image/label ops on examples {'image': uint8 HxWx3, 'label': uint8 HxW}.

Every op transforms image and label together so they can never fall out of
step; labels are only ever moved or nearest-resized, never interpolated, and
padded with the ignore index. Ops are module-level functions bound with
`functools.partial`, so a `Compose` pickles into grain's worker processes.
Normalisation (mean/std) happens on device inside the jitted step, so images
stay uint8 here.

The presets that chain them are in `augment.py`. The `voc` preset is
mmsegmentation's train pipeline op for op, checked against
mmseg's own transforms (tests/test_parity_augment.py): resizes with OpenCV's
INTER_LINEAR / INTER_NEAREST (what mmcv calls), crops that may come out smaller
than the crop size, flip and photometric distortion on the unpadded crop, and
padding last (mmseg's SegDataPreProcessor pads the normalised batch).
Random draws follow mmseg's calls one for one (a coin is `integers(2)`, a
ratio is `random() * (hi - lo) + lo`), so the same draws give the same output.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Example = dict[str, np.ndarray]
Op = Callable[[Example, np.random.Generator], Example]
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
