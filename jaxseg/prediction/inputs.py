"""What `--mode predict` reads: the files of --input, their sizes from the headers
(read once, before any model is built), and their pixels as training decodes them."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxseg.data.builders import imagefiles
from jaxseg.data.errors import DatasetError


class InputError(OSError):
  """--input holds no image that can be read (run.py: one line, status 1)."""


def list_inputs(path: str) -> list[str]:
  """The file itself, or every file directly in the folder (sorted)."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"--input {path} is neither a file nor a folder")
  return sorted(os.path.join(path, n) for n in os.listdir(path)
                if os.path.isfile(os.path.join(path, n)))


def _header_size(path: str) -> tuple[tuple[int, int] | None, str | None]:
  """((H, W) as displayed, None), or (None, why) when PIL cannot read the header."""
  try:
    with Image.open(path) as img:
      # As displayed: load_image applies the EXIF rotation, as training data does.
      return imagefiles.displayed_size(img), None
  except UnidentifiedImageError:
    return None, "not an image format PIL knows, or its header is corrupt"
  except OSError as e:
    return None, e.strerror or str(e) or type(e).__name__


def readable_sizes(input_path: str, paths: list[str]) -> dict[str, tuple[int, int]]:
  """{path: (H, W)} of the `paths` (list_inputs of `input_path`) whose image header
  reads, a warning for each other one; InputError when there is none."""
  if not paths:
    raise InputError(f"--input {input_path} is an empty folder; expected image files "
                     "(.jpg, .png or any format PIL reads)")
  sizes, problems = {}, {}
  for path in paths:
    size, why = _header_size(path)
    if size is None:
      problems[path] = why
    else:
      sizes[path] = size
  if not sizes:
    first, why = next(iter(problems.items()))
    what = (f"--input {input_path}" if paths == [input_path] else
            f"--input {input_path}: none of its {len(paths)} files is a readable image ("
            f"e.g. {first}")
    raise InputError(f"{what}: {why}" + ("" if paths == [input_path] else ")"))
  for path, why in problems.items():
    print(f"warning: skipping {path}: not a readable image ({why})", flush=True)
  return sizes


def load_image(path: str) -> np.ndarray | None:
  """RGB uint8 (H, W, 3) decoded as training decodes (EXIF orientation applied, 16-bit
  scaled), or None (with a warning) when decoding fails (e.g. truncated)."""
  try:
    with open(path, "rb") as f:
      return imagefiles.rgb_pixels(f.read(), path)
  except (UnidentifiedImageError, OSError, DatasetError) as e:
    print(f"warning: skipping {path}: cannot be decoded ({e})", flush=True)
    return None
