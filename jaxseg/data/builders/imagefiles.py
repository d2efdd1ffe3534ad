"""Checked decoding of source images and labels for the builders (errors name the file).

Everything is decoded once at preparation time, so a corrupt or mismatched file
fails `prepare()` with its name instead of a worker at step 40k.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxseg.data.errors import DatasetError

IGNORE_INDEX = 255
_EXIF_ORIENTATION = 0x0112  # 1 = upright; 2-8 = mirrored and/or rotated.


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
  """The decoded image of `data`, or a DatasetError naming `where` (its file)."""
  buffer = io.BytesIO(data)
  try:
    image = Image.open(buffer)
    image.load()  # Decodes every pixel: truncated files fail here, not at train time.
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    # PIL names the buffer it read ('<_io.BytesIO object at 0x...>'), not the file.
    reason = ("not an image format PIL knows, or its header is corrupt"
              if isinstance(e, UnidentifiedImageError) else str(e).replace(repr(buffer), where))
    raise DatasetError(f"{where}: not a readable image ({reason})") from e
  return image


def checked_image(data: bytes, where: str, keep=("JPEG",),
                  reencode: str = "JPEG") -> tuple[bytes, tuple[int, int]]:
  """Encoded image -> (bytes to store, (H, W) as displayed).

  An upright RGB image in a `keep` format is stored as is (no second lossy
  pass); anything else (EXIF-rotated, 16-bit, grey, CMYK, palette, RGBA, other
  formats) is decoded with `rgb_pixels` and re-encoded as `reencode`, because
  readers decode without knowing the mode or the EXIF orientation.
  """
  image = _open(data, where)
  if image.format in keep and image.mode == "RGB" and _orientation(image) == 1:
    return data, (image.height, image.width)
  image_HW3 = displayed_rgb(image, where)
  out = io.BytesIO()
  Image.fromarray(image_HW3).save(out, format=reencode,
                                  **({"quality": 95} if reencode == "JPEG" else {}))
  return out.getvalue(), image_HW3.shape[:2]


def rgb_pixels(data: bytes, where: str) -> np.ndarray:
  """Encoded image -> HxWx3 uint8 as displayed: EXIF orientation applied, 16 bits scaled."""
  return displayed_rgb(_open(data, where), where)


def displayed_size(image: Image.Image) -> tuple[int, int]:
  """(H, W) as displayed, from the header: EXIF orientations 5-8 swap the sides."""
  if _orientation(image) in (5, 6, 7, 8):
    return image.width, image.height
  return image.height, image.width


def header_size(stream, where: str) -> tuple[int, int]:
  """(H, W) as displayed, from an image's header alone (the pixels are not decoded)."""
  try:
    with Image.open(stream) as image:
      return displayed_size(image)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DatasetError(f"{where}: not a readable image ({e})") from e


def _orientation(image: Image.Image) -> int:
  return image.getexif().get(_EXIF_ORIENTATION, 1)


def displayed_rgb(image: Image.Image, where: str) -> np.ndarray:
  """A decoded image -> HxWx3 uint8 as displayed (also the Python API's PIL inputs)."""
  # Cameras store pixels as sensed and the rotation in EXIF; viewers and
  # annotation tools show (and label) the rotated image, so that is the image.
  if _orientation(image) != 1:
    image = ImageOps.exif_transpose(image)
  if image.mode == "F":
    raise DatasetError(f"{where}: a floating-point image (mode 'F'); expected 8- or 16-bit")
  if image.mode == "I" or image.mode.startswith("I;16"):
    # 16-bit grey: convert() would clip every value above 255 to white. The high
    # byte is what Pillow keeps of 16-bit RGB(A) PNGs and OpenCV's imread of any.
    values_HW = np.asarray(image).astype(np.int64)
    if values_HW.min(initial=0) < 0 or values_HW.max(initial=0) > 65535:
      raise DatasetError(f"{where}: {image.mode!r} image with values outside 0-65535; "
                         "expected an 8- or 16-bit image")
    return np.repeat((values_HW >> 8).astype(np.uint8)[..., None], 3, axis=-1)
  return np.asarray(image.convert("RGB"))


def label_image(data: bytes, where: str) -> Image.Image:
  """A decoded label file (palette, grey or RGB), for the caller to turn into ids.

  Labels are taken as stored pixels; one carrying an EXIF rotation is refused,
  since which way its ids were meant to lie cannot be told.
  """
  image = _open(data, where)
  if _orientation(image) != 1:
    raise DatasetError(f"{where}: a label with EXIF orientation {_orientation(image)}; labels "
                       "are read as stored pixels, so save it without the orientation tag")
  return image


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
