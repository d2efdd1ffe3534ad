"""Checked decoding of source images and labels for the builders (errors name the file).

Everything is decoded once at preparation time, so a corrupt or mismatched file
fails `prepare()` with its name instead of a worker at step 40k.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jaxseg.data.errors import DatasetError

IGNORE_INDEX = 255


def voc_palette(num_colors: int = 256) -> list[list[int]]:
  """The standard PASCAL VOC colour map: bits of the index spread over R, G, B."""
  palette = []
  for index in range(num_colors):
    rgb, c = [0, 0, 0], index
    for shift in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((c >> channel) & 1) << shift
      c >>= 3
    palette.append(rgb)
  return palette


def _open(data: bytes, where: str) -> Image.Image:
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # Decodes every pixel: truncated files fail here, not at train time.
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DatasetError(f"{where}: not a readable image ({e})") from e
  return image


def checked_image(data: bytes, where: str, keep=("JPEG",),
                  reencode: str = "JPEG") -> tuple[bytes, tuple[int, int]]:
  """Encoded image -> (bytes to store, (H, W)).

  An RGB image in a `keep` format is stored as is (no second lossy pass);
  anything else (grey, CMYK, palette, RGBA, other formats) is converted to RGB
  and re-encoded as `reencode`, because readers decode without knowing the mode.
  """
  image = _open(data, where)
  size_HW = (image.height, image.width)
  if image.format in keep and image.mode == "RGB":
    return data, size_HW
  out = io.BytesIO()
  image.convert("RGB").save(out, format=reencode, **({"quality": 95} if reencode == "JPEG" else {}))
  return out.getvalue(), size_HW


def label_image(data: bytes, where: str) -> Image.Image:
  """A decoded label file (palette, grey or RGB), for the caller to turn into ids."""
  return _open(data, where)


def palette_indices(image: Image.Image, where: str) -> np.ndarray:
  """Palette ('P') or grey ('L') label -> HxW uint8 of stored indices (colours ignored)."""
  if image.mode not in ("P", "L"):
    raise DatasetError(f"{where}: label mode {image.mode!r}, expected a palette or grey PNG")
  return np.array(image, np.uint8)  # No convert(): the indices are the class ids.


def label_png(label_HW: np.ndarray) -> bytes:
  """Class ids -> a grey PNG, which every decoder (PIL, OpenCV, TF) reads back as ids."""
  out = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(label_HW, np.uint8), mode="L").save(out, format="PNG")
  return out.getvalue()


def bad_values(label_HW: np.ndarray, num_classes: int) -> list[int]:
  """Label values that are neither a class id nor the ignore index."""
  values = np.unique(label_HW)
  return [int(v) for v in values if v >= num_classes and v != IGNORE_INDEX]
