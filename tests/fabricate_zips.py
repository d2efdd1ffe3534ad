"""Tiny fabricated ADE20K and Cityscapes zips in the real layouts and file naming.

Images carry their index in the red channel (`fabricate.id_red`), so a test can
tell which image sits next to which label. Each writer returns the exact
source label arrays it wrote ({(split, stem): label_HW}, before any mapping).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image

from tests import fabricate

ADE_COUNTS = {"train": 5, "validation": 3}
# Cities of the real splits (a test split, unlabelled, is written too).
CITY_IDS = {"train": ["aachen_000000_000019", "aachen_000001_000019",
                      "monchengladbach_000000_026602"],
            "validation": ["frankfurt_000000_000294", "lindau_000000_000019"]}


def _png(array: np.ndarray, mode: str) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array, mode=mode).save(out, format="PNG")
  return out.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format="JPEG", quality=95)
  return out.getvalue()


def _image(k: int, size_HW) -> np.ndarray:
  image = np.empty((*size_HW, 3), np.uint8)
  image[...] = (fabricate.id_red(k), 128, 255 - fabricate.id_red(k))
  return image


def _blocks(seed: int, size_HW, values: np.ndarray) -> np.ndarray:
  """Blocky labels drawing from `values`, each of them present at least once."""
  rng = np.random.default_rng(seed)
  label = values[rng.integers(0, len(values), size=size_HW)]
  label = np.kron(label[::4, ::4], np.ones((4, 4), np.int64))[: size_HW[0], : size_HW[1]]
  flat = label.reshape(-1)
  flat[: len(values)] = values  # Every value appears.
  return label.astype(np.uint8)


def ade_zip(path: str, counts=None, *, drop: str = "") -> dict:
  """Writes ADEChallengeData2016.zip with `counts` pairs per split (sizes vary, labels use
  every ADE id 0-150 across the split); `drop` omits one member by name."""
  counts = counts or ADE_COUNTS
  labels, k = {}, 0
  top = "ADEChallengeData2016/"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(f"{top}objectInfo150.txt", "Idx\tRatio\tTrain\tVal\tName\n")
    z.writestr(f"{top}sceneCategories.txt", "")
    for split, (folder, prefix) in {"train": ("training", "train"),
                                    "validation": ("validation", "val")}.items():
      for i in range(counts[split]):
        stem = f"ADE_{prefix}_{i + 1:08d}"
        size_HW = (24 + 8 * (k % 3), 40 - 4 * (k % 4))
        values = np.arange(151)[k % 4::4] if k < 4 else np.array([0, 1, 150, 75])
        labels[(split, stem)] = _blocks(k, size_HW, values)
        for name, data in ((f"{top}images/{folder}/{stem}.jpg", _jpeg(_image(k, size_HW))),
                           (f"{top}annotations/{folder}/{stem}.png",
                            _png(labels[(split, stem)], "L"))):
          if name != drop:
            z.writestr(name, data)
        k += 1
  return labels


def cityscapes_zips(image_path: str, label_path: str, *, drop: str = "") -> dict:
  """Writes leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (with the color,
  instanceIds and polygons files beside each labelIds map, and an unlabelled test split)."""
  labels, k = {}, 0
  with zipfile.ZipFile(image_path, "w") as zi, zipfile.ZipFile(label_path, "w") as zl:
    for z in (zi, zl):
      z.writestr("README", "Cityscapes")
      z.writestr("license.txt", "")
    for split, folder in (("train", "train"), ("validation", "val"), ("test", "test")):
      for stem in CITY_IDS.get(split, ["berlin_000000_000019"]):
        city = stem.split("_")[0]
        size_HW = (16 + 8 * (k % 2), 32)
        ids_HW = _blocks(k, size_HW, np.arange(34))
        labels[(split, stem)] = ids_HW
        files = {zi: {f"leftImg8bit/{folder}/{city}/{stem}_leftImg8bit.png":
                      _png(_image(k, size_HW), "RGB")},
                 zl: {f"gtFine/{folder}/{city}/{stem}_gtFine_labelIds.png": _png(ids_HW, "L"),
                      f"gtFine/{folder}/{city}/{stem}_gtFine_instanceIds.png":
                          _png(ids_HW.astype(np.uint8), "L"),
                      f"gtFine/{folder}/{city}/{stem}_gtFine_color.png":
                          _png(np.zeros((*size_HW, 3), np.uint8), "RGB"),
                      f"gtFine/{folder}/{city}/{stem}_gtFine_polygons.json": b"{}"}}
        for z, members in files.items():
          for name, data in members.items():
            if name != drop:
              z.writestr(name, data)
        k += 1
  return labels
