"""The `folder` dataset's class table (classes.txt, colors.txt) and label files as class ids."""

from __future__ import annotations

import os
import re

import numpy as np

from jaxseg.data.builders import imagefiles
from jaxseg.data.errors import DatasetError, DatasetMissingError


def _read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def class_table(root: str):
  """(class names, colours K x 3 or None) from classes.txt and colors.txt."""
  classes_path = os.path.join(root, "classes.txt")
  if not os.path.isfile(classes_path):
    raise DatasetMissingError(f"{classes_path}: missing (one class name per line)")
  names = _read_lines(classes_path)
  if not 0 < len(names) < 255:
    raise DatasetError(f"{classes_path}: {len(names)} classes; need 1-254 (255 = ignore)")
  colors_path = os.path.join(root, "colors.txt")
  if not os.path.isfile(colors_path):
    return names, None
  try:
    colors = np.array([[int(v) for v in re.split(r"[\s,]+", line)[:3]]
                       for line in _read_lines(colors_path)], np.int64)
  except ValueError as e:
    raise DatasetError(f"{colors_path}: lines must be 'R G B' ({e})") from e
  if colors.shape != (len(names), 3) or colors.min() < 0 or colors.max() > 255:
    raise DatasetError(f"{colors_path}: need {len(names)} lines of 'R G B' in 0-255, one "
                       f"per class of classes.txt; got {colors.shape[0]}")
  return names, colors


def label_ids(path, num_classes, colors, ignore_rgb, where=None):
  """A label file -> (HxW uint8 class ids, problem message or None)."""
  where = where or path
  with open(path, "rb") as f:
    image = imagefiles.label_image(f.read(), where)
  if image.mode in ("RGB", "RGBA"):
    if colors is None:
      return None, f"{where}: an RGB colour label, but there is no colors.txt to map colours"
    return _map_colors(np.array(image.convert("RGB")), colors, ignore_rgb, where)
  if image.mode in ("P", "L"):
    label = imagefiles.palette_indices(image, where)
  elif image.mode == "1" or image.mode.startswith("I"):  # 1-bit or 16/32-bit grey.
    label = np.array(image).astype(np.int64)  # Values are ids too, if they fit.
  else:
    return None, (f"{where}: label mode {image.mode!r}; expected a palette, grey (8 or 16 "
                  "bits) or RGB PNG")
  bad = imagefiles.bad_values(label, num_classes)
  if bad or label.min(initial=0) < 0:
    return None, (f"{where}: values {bad[:10]} not class ids 0-{num_classes - 1} "
                  "(classes.txt) or 255")
  return label.astype(np.uint8), None


def _map_colors(rgb_HW3, colors, ignore_rgb, where):
  def key(c):
    c = np.asarray(c, np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
  table = {int(k): i for i, k in enumerate(key(colors))}
  if len(ignore_rgb) == 3:
    table.setdefault(int(key(ignore_rgb)), imagefiles.IGNORE_INDEX)
  keys_HW = key(rgb_HW3)
  values, inverse = np.unique(keys_HW, return_inverse=True)
  unknown = [v for v in values.tolist() if v not in table]
  if unknown:
    shown = ", ".join(f"({v >> 16},{(v >> 8) & 255},{v & 255})" for v in unknown[:5])
    return None, (f"{where}: colours {shown}{' ...' if len(unknown) > 5 else ''} are not in "
                  "colors.txt (nor data.folder.ignore_rgb)")
  ids = np.array([table[v] for v in values.tolist()], np.uint8)
  return ids[inverse.reshape(keys_HW.shape)], None
