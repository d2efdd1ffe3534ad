"""Tiny fabricated source archives in the real layouts (VOC 2012 tar, SBD tgz, folders).

Each image encodes its id: a flat colour whose red channel is `id_red(k)` for
the id's index k, so a test can tell which image sits next to which label even
after JPEG compression. Every generator returns the exact label arrays it wrote.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from jaxseg.data.builders.imagefiles import voc_palette

# Overlaps as in the real data: SBD shares ids with VOC seg train *and* VOC seg val.
VOC_TRAIN = [f"2007_{i:06d}" for i in range(10)]
VOC_VAL = [f"2008_{i:06d}" for i in range(6)]
SBD_TRAIN = VOC_TRAIN[:3] + [f"2009_{i:06d}" for i in range(5)]
SBD_VAL = VOC_VAL[:2] + [f"2010_{i:06d}" for i in range(2)] + [VOC_TRAIN[3]]
ALL_IDS = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
TRAINAUG = sorted((set(VOC_TRAIN) | set(SBD_TRAIN) | set(SBD_VAL)) - set(VOC_VAL))


def id_red(k: int) -> int:
  return 4 + 8 * k  # Steps of 8 survive JPEG's error of a few levels.


def image_index(image_HW3: np.ndarray) -> int:
  """The index k an image was fabricated with (inverse of `id_red`)."""
  return int(round((float(image_HW3[..., 0].mean()) - 4) / 8))


def _size_HW(k: int, salt: int = 0) -> tuple[int, int]:
  rng = np.random.default_rng(1000 * salt + k)
  return int(rng.integers(40, 71)), int(rng.integers(40, 71))


def _image(k: int, size_HW) -> np.ndarray:
  image = np.empty((*size_HW, 3), np.uint8)
  image[...] = (id_red(k), 128, 255 - id_red(k))
  return image


def _label(seed: int, size_HW, num_classes: int, border: bool) -> np.ndarray:
  """Blocky class ids; a 2-pixel 255 frame when `border` (like VOC's outlines)."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, num_classes, size=(size_HW[0] // 8 + 1, size_HW[1] // 8 + 1))
  label = np.kron(blocks, np.ones((8, 8), np.int64))[: size_HW[0], : size_HW[1]].astype(np.uint8)
  if border:
    label[:2], label[-2:], label[:, :2], label[:, -2:] = 255, 255, 255, 255
  return label


def _jpeg(image: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(image).save(out, format="JPEG", quality=95)
  return out.getvalue()


def _palette_png(label: np.ndarray) -> bytes:
  image = Image.fromarray(label, mode="P")
  image.putpalette([c for rgb in voc_palette(256) for c in rgb])
  out = io.BytesIO()
  image.save(out, format="PNG")
  return out.getvalue()


def _gtcls_mat(label: np.ndarray) -> bytes:
  """An SBD cls .mat: struct GTcls {Boundaries (sparse cells), Segmentation, CategoriesPresent}."""
  boundaries = np.empty((20, 1), object)
  for c in range(20):
    boundaries[c, 0] = scipy.sparse.csc_matrix(label.shape, dtype=np.float64)
  present = np.unique(label[label > 0]).astype(np.uint8).reshape(-1, 1)
  out = io.BytesIO()
  scipy.io.savemat(out, {"GTcls": {"Boundaries": boundaries, "Segmentation": label,
                                   "CategoriesPresent": present}}, do_compression=True)
  return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def voc_tar(path: str, *, corrupt_jpeg: str = "", wrong_size_label: str = "") -> dict:
  """Writes VOCtrainval_11-May-2012.tar; returns {id: label_HW} of SegmentationClass."""
  labels = {}
  root = "VOCdevkit/VOC2012/"
  with tarfile.open(path, "w") as tar:
    for k, example_id in enumerate(ALL_IDS):
      size_HW = _size_HW(k)
      jpeg = _jpeg(_image(k, size_HW))
      if example_id == corrupt_jpeg:
        jpeg = jpeg[: len(jpeg) // 2]  # A cut-off JPEG: the header parses, the pixels don't.
      _add(tar, f"{root}JPEGImages/{example_id}.jpg", jpeg)
      _add(tar, f"{root}Annotations/{example_id}.xml", b"<annotation/>")
      if example_id in VOC_TRAIN or example_id in VOC_VAL:
        label_size = (size_HW[0] + 1, size_HW[1]) if example_id == wrong_size_label else size_HW
        labels[example_id] = _label(k, label_size, 21, border=True)
        _add(tar, f"{root}SegmentationClass/{example_id}.png", _palette_png(labels[example_id]))
    lists = (("train", VOC_TRAIN), ("val", VOC_VAL), ("trainval", VOC_TRAIN + VOC_VAL))
    for split, ids in lists:
      text = "".join(f"{i}\n" for i in ids).encode()
      _add(tar, f"{root}ImageSets/Segmentation/{split}.txt", text)
  return labels


def sbd_tgz(path: str) -> dict:
  """Writes benchmark.tgz; returns {id: label_HW} of cls/<id>.mat (differs from VOC's)."""
  labels = {}
  root = "benchmark_RELEASE/dataset/"
  with tarfile.open(path, "w:gz") as tar:
    _add(tar, "benchmark_RELEASE/README", b"SBD")
    for example_id in sorted(set(SBD_TRAIN + SBD_VAL)):
      k = ALL_IDS.index(example_id)
      labels[example_id] = _label(500 + k, _size_HW(k), 21, border=False)
      _add(tar, f"{root}img/{example_id}.jpg", _jpeg(_image(k, _size_HW(k))))
      _add(tar, f"{root}cls/{example_id}.mat", _gtcls_mat(labels[example_id]))
    # The lists come after the files, as a streaming reader must cope with.
    _add(tar, f"{root}train.txt", "".join(f"{i}\n" for i in SBD_TRAIN).encode())
    _add(tar, f"{root}val.txt", "".join(f"{i}\n" for i in SBD_VAL).encode())
  return labels


FOLDER_CLASSES = ["background", "road", "car"]
FOLDER_COLORS = [(0, 0, 0), (128, 64, 128), (0, 0, 142)]


def folder_dataset(root: str, *, rgb: bool, splits=(("train", 5), ("val", 3)),
                   image_ext: str = ".jpg", with_colors: bool = True) -> dict:
  """Writes images/<split>/, labels/<split>/, classes.txt (and colors.txt).

  Labels are RGB colour images (`rgb=True`, white = ignore) or palette PNGs of
  class ids. Returns {(split, name): label_HW} with 255 where ignored.
  """
  labels, k = {}, 0
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("".join(f"{c}\n" for c in FOLDER_CLASSES))
  if with_colors:
    with open(os.path.join(root, "colors.txt"), "w") as f:
      f.write("".join(f"{r} {g} {b}\n" for r, g, b in FOLDER_COLORS))
  for split, count in splits:
    os.makedirs(os.path.join(root, "images", split), exist_ok=True)
    os.makedirs(os.path.join(root, "labels", split), exist_ok=True)
    for i in range(count):
      name, size_HW = f"img{i:03d}", _size_HW(k, salt=7)
      image_path = os.path.join(root, "images", split, name + image_ext)
      Image.fromarray(_image(k, size_HW)).save(image_path)
      label = _label(900 + k, size_HW, len(FOLDER_CLASSES), border=True)
      label_path = os.path.join(root, "labels", split, name + ".png")
      if rgb:
        table = np.array(FOLDER_COLORS + [(255, 255, 255)] * 253, np.uint8)
        Image.fromarray(table[label]).save(label_path)
      else:
        with open(label_path, "wb") as f:
          f.write(_palette_png(label))
      labels[(split, name)] = label
      k += 1
  return labels
