"""How images of any sizes become device calls of a few static shapes (Segmenter.stream).

Each image is padded bottom/right to a canvas whose sides are rounded up to
`predict.bucket` (one compile per bucket, not per size); an image whose canvas
alone exceeds `predict.max_pixels_per_device` is cut into overlapping tiles of
`predict.tile_size` every `predict.tile_stride` (mmseg's sliding-window grid).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Hashable

from jaxseg.config.run_sections import round_up


@dataclasses.dataclass(frozen=True)
class Piece:
  """One image of a device call: a whole input, or one tile of a large one."""

  key: Hashable  # The input's name: a path for --mode predict, an index for the API.
  box: tuple[int, int, int, int]  # (top, left, height, width) in the input image.
  tiled: bool


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
  """mmseg's grid along one axis: the last tile flush with the image's edge."""
  return [min(i * stride, size - tile) for i in range(math.ceil(max(size - tile, 0) / stride) + 1)]


def plan(sizes: dict[Hashable, tuple[int, int]], predict_cfg) -> dict[tuple, list[Piece]]:
  """{(canvas_HW, tiled): pieces}: whole images whose canvas fits the per-device pixel
  budget, tiles of the others; each group becomes batches of one static shape. A tiled
  image's pieces are consecutive within its group."""
  groups: dict[tuple, list[Piece]] = collections.defaultdict(list)
  canvas = lambda h, w: tuple(round_up(n, predict_cfg.bucket) for n in (h, w))
  for key, (H, W) in sizes.items():
    if math.prod(canvas(H, W)) <= predict_cfg.max_pixels_per_device:
      groups[canvas(H, W), False].append(Piece(key, (0, 0, H, W), False))
      continue
    th, tw = min(predict_cfg.tile_size[0], H), min(predict_cfg.tile_size[1], W)
    for top in _tile_starts(H, th, predict_cfg.tile_stride[0]):
      for left in _tile_starts(W, tw, predict_cfg.tile_stride[1]):
        groups[canvas(th, tw), True].append(Piece(key, (top, left, th, tw), True))
  return groups


def batch_size(canvas_HW: tuple[int, int], predict_cfg, num_devices: int) -> int:
  """Images per device call on `canvas_HW`: as many per device as the pixel budget
  allows (at least one), at most predict.batch_size in all."""
  per_device = min(predict_cfg.batch_size // num_devices,
                   max(1, predict_cfg.max_pixels_per_device // math.prod(canvas_HW)))
  return per_device * num_devices
