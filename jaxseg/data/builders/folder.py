"""tfds builder for `folder`: your own images and labels in a directory.

Layout under `data.folder_root`:
  images/<split>/<name>.(jpg|jpeg|png)   labels/<split>/<name>.png
  classes.txt   one class name per line (line i = class id i)
  colors.txt    optional: 'R G B' per class line; labels saved as RGB colour
                images are mapped to ids with it (data.folder_ignore_rgb -> 255)
Palette and grey PNG labels are read as class ids. `train` is required; `val`
and `validation` become the `validation` split; other subdirectories keep
their names.

The prepared copy is a builder config named `<root basename>_<fingerprint>`,
where the fingerprint covers every file's name and size, classes.txt,
colors.txt and the ignore colour: two roots with the same content share one
copy, and an edited dataset is prepared afresh instead of read stale.
Every file is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data.builders import imagefiles
from jaxseg.data.builders.registry import DATASETS
from jaxseg.data.errors import DatasetError, DatasetMissingError

_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_SPLIT_NAMES = {"val": "validation"}
_MAX_LISTED = 20  # Problems listed in one error; the rest are counted.


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  root: str = ""
  ignore_rgb: tuple[int, ...] = (255, 255, 255)


def folder_config(root: str, ignore_rgb=(255, 255, 255)) -> FolderConfig:
  """The builder config of the dataset at `root` (its name pins the content)."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise DatasetMissingError(f"data.folder_root={root} is not a directory")
  digest = hashlib.sha256(repr(tuple(ignore_rgb)).encode())
  for top in ("classes.txt", "colors.txt"):
    if os.path.isfile(os.path.join(root, top)):
      with open(os.path.join(root, top), "rb") as f:
        digest.update(top.encode() + f.read())
  for top in ("images", "labels"):
    for dirpath, _, files in sorted(os.walk(os.path.join(root, top))):
      for f in sorted(files):
        full = os.path.join(dirpath, f)
        digest.update(f"{os.path.relpath(full, root)}:{os.path.getsize(full)}\n".encode())
  slug = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(root).lower()).strip("_") or "root"
  return FolderConfig(name=f"{slug}_{digest.hexdigest()[:12]}", root=root,
                      ignore_rgb=tuple(int(c) for c in ignore_rgb),
                      description=f"Images and labels from {root}.")


def _read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def _class_table(root: str):
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


@DATASETS.register("folder")
class Folder(tfds.core.GeneratorBasedBuilder):
  """Images and segmentation labels from a directory tree (see module doc)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = []  # Made per root by `folder_config`.

  @classmethod
  def builder_kwargs(cls, data_cfg) -> dict:
    if not data_cfg.folder_root:
      raise DatasetMissingError("data.name=folder needs data.folder_root=<directory with "
                                "images/, labels/, classes.txt>; see docs/data.md")
    return {"config": folder_config(data_cfg.folder_root, data_cfg.folder_ignore_rgb)}

  def _info(self) -> tfds.core.DatasetInfo:
    names, colors = _class_table(self.builder_config.root)
    palette = colors.tolist() if colors is not None else imagefiles.voc_palette(len(names))
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # JPEGs stay JPEG and PNGs PNG: no second lossy pass over user images.
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "id": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(
            class_names=names, palette=palette, ignore_index=imagefiles.IGNORE_INDEX,
            eval_canvas=[0, 0],  # Set from the validation images while preparing.
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    root = self.builder_config.root
    names, colors = _class_table(root)
    pairs = _pairs(root)
    sizes_HW, problems = _check_all(root, pairs, len(names), colors,
                                    self.builder_config.ignore_rgb)
    if problems:
      listed = "\n  ".join(problems[:_MAX_LISTED])
      more = (f"\n  ... and {len(problems) - _MAX_LISTED} more"
              if len(problems) > _MAX_LISTED else "")
      raise DatasetError(f"{root}: {len(problems)} problem(s), nothing was written:\n  "
                         f"{listed}{more}")
    canvas_from = "validation" if "validation" in pairs else "train"
    height = max(h for (split, _), (h, _) in sizes_HW.items() if split == canvas_from)
    width = max(w for (split, _), (_, w) in sizes_HW.items() if split == canvas_from)
    # Rounded up to a multiple of 32, what the strided models divide by.
    self.info.metadata["eval_canvas"] = [-(-height // 32) * 32, -(-width // 32) * 32]
    # Checked: every name now has exactly one image.
    return {split: self._generate_examples([(n, ims[0], lab) for n, ims, lab in split_pairs],
                                           len(names), colors)
            for split, split_pairs in pairs.items()}

  def _generate_examples(self, split_pairs, num_classes, colors):
    for name, image_path, label_path in split_pairs:
      with open(image_path, "rb") as f:
        image, _ = imagefiles.checked_image(f.read(), image_path, keep=("JPEG", "PNG"),
                                            reencode="PNG")
      label_HW, _ = _label_ids(label_path, num_classes, colors, self.builder_config.ignore_rgb)
      yield name, {"image": image, "label": imagefiles.label_png(label_HW), "id": name}


def _pairs(root: str) -> dict[str, list[tuple[str, str, str]]]:
  """{split: [(name, [image paths], label path)]}; _check_all reports unpaired files."""
  images_dir = os.path.join(root, "images")
  if not os.path.isdir(images_dir):
    raise DatasetMissingError(f"{images_dir}: missing (images/<split>/<name>.jpg|png)")
  pairs = {}
  for split_dir in sorted(os.listdir(images_dir)):
    if os.path.isdir(os.path.join(images_dir, split_dir)):
      split = _SPLIT_NAMES.get(split_dir, split_dir)
      if split in pairs or not re.fullmatch(r"[a-z][a-z0-9_]*", split):
        raise DatasetError(f"{images_dir}/{split_dir}: not a usable split name "
                           "(lower-case letters, digits, _; one of val/validation)")
      pairs[split] = _split_pairs(root, split_dir)
  if "train" not in pairs:
    raise DatasetMissingError(f"{images_dir}/train: missing; a train split is required")
  return pairs


def _split_pairs(root: str, split_dir: str):
  image_dir = os.path.join(root, "images", split_dir)
  label_dir = os.path.join(root, "labels", split_dir)
  images = {}
  for f in sorted(os.listdir(image_dir)):
    stem, ext = os.path.splitext(f)
    if ext.lower() in _IMAGE_EXTS:
      images.setdefault(stem, []).append(os.path.join(image_dir, f))
  labels = {}
  if os.path.isdir(label_dir):
    labels = {os.path.splitext(f)[0]: os.path.join(label_dir, f)
              for f in sorted(os.listdir(label_dir)) if f.lower().endswith(".png")}
  out = [(s, images[s], labels.get(s, os.path.join(label_dir, s + ".png"))) for s in images]
  out += [(s, [], labels[s]) for s in labels if s not in images]  # Labels with no image.
  return sorted(out)


def _check_all(root, pairs, num_classes, colors, ignore_rgb):
  """Decodes every file once; returns ({(split, name): (H, W)}, problems)."""
  sizes_HW, problems = {}, []
  for split, split_pairs in pairs.items():
    if not split_pairs:
      problems.append(f"split {split!r}: no images")
    for name, image_paths, label_path in split_pairs:
      rel_label = os.path.relpath(label_path, root)
      if not image_paths:
        problems.append(f"{rel_label}: no image images/.../{name}.(jpg|jpeg|png)")
        continue
      if len(image_paths) > 1:
        problems.append(f"{', '.join(os.path.relpath(p, root) for p in image_paths)}: "
                        "one name, several images")
        continue
      rel_image = os.path.relpath(image_paths[0], root)
      if not os.path.isfile(label_path):
        problems.append(f"{rel_image}: no label {rel_label}")
        continue
      try:
        with open(image_paths[0], "rb") as f:
          _, size_HW = imagefiles.checked_image(f.read(), rel_image, keep=("JPEG", "PNG"))
        label_HW, problem = _label_ids(label_path, num_classes, colors, ignore_rgb, rel_label)
      except DatasetError as e:
        problems.append(str(e))
        continue
      if problem:
        problems.append(problem)
      elif label_HW.shape != size_HW:
        problems.append(f"{rel_label}: label is {label_HW.shape[0]}x{label_HW.shape[1]} but "
                        f"{rel_image} is {size_HW[0]}x{size_HW[1]} (HxW)")
      sizes_HW[(split, name)] = size_HW
  return sizes_HW, problems


def _label_ids(path, num_classes, colors, ignore_rgb, where=None):
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
  else:  # 1-bit or 16/32-bit grey: values are ids too, if they fit.
    label = np.array(image).astype(np.int64)
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
                  "colors.txt (nor data.folder_ignore_rgb)")
  ids = np.array([table[v] for v in values.tolist()], np.uint8)
  return ids[inverse.reshape(keys_HW.shape)], None
