"""tfds builder for `folder`: your own images and labels in a directory.

Layout under `data.folder.root`:
  images/<split>/<name>.(jpg|jpeg|png)   labels/<split>/<name>.png
  classes.txt   one class name per line (line i = class id i)
  colors.txt    optional: 'R G B' per class line; labels saved as RGB colour
                images are mapped to ids with it (data.folder.ignore_rgb -> 255)
Palette and grey PNG labels are read as class ids (folder_labels.py). `train`
is required; `val` and `validation` become the `validation` split (without
one, runs evaluate on train: datasets.check_splits); other subdirectories keep
their names. Images are taken as displayed (EXIF orientation applied, 16 bits
scaled to 8: imagefiles.py).

The prepared copy is a builder config named `<root basename>_<fingerprint>`,
where the fingerprint hashes the bytes of every image and label file (with
its path), classes.txt, colors.txt and the ignore colour: two roots with the
same content share one copy, and an edited dataset (even an edit that keeps
a file's size) is prepared afresh instead of read stale.
Every file is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Annotated

import tensorflow_datasets as tfds

from jaxseg.data.builders import features, fingerprint, folder_labels, imagefiles
from jaxseg.data.builders.registry import DATASETS
from jaxseg.data.errors import DatasetError, DatasetMissingError
from jaxseg.declare import Arg

_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_SPLIT_NAMES = {"val": "validation"}
_MAX_LISTED = 20  # Problems listed in one error; the rest are counted.


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  root: str = ""
  ignore_rgb: tuple[int, ...] = (255, 255, 255)


def folder_config(root: str, ignore_rgb=(255, 255, 255), cache_dir: str | None = None
                  ) -> FolderConfig:
  """The builder config of the dataset at `root` (its name pins the content).

  `cache_dir` keeps the files' digests between runs (fingerprint.py); None = no cache.
  """
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise DatasetMissingError(f"data.folder.root={root} is not a directory")
  digest = hashlib.sha256(repr(tuple(ignore_rgb)).encode())
  for top in ("classes.txt", "colors.txt"):
    if os.path.isfile(os.path.join(root, top)):
      with open(os.path.join(root, top), "rb") as f:
        digest.update(top.encode() + f.read())
  files = []
  for top, exts in (("images", _IMAGE_EXTS), ("labels", (".png",))):
    for dirpath, _, names in sorted(os.walk(os.path.join(root, top))):
      digest.update(f"dir {os.path.relpath(dirpath, root)}\n".encode())  # Empty splits too.
      # Only the files the builder reads: a .DS_Store written by a file browser
      # must not make the dataset look new.
      files += [os.path.relpath(os.path.join(dirpath, n), root) for n in sorted(names)
                if os.path.splitext(n)[1].lower() in exts]
  cache_path = None
  if cache_dir:
    cache_path = os.path.join(cache_dir, hashlib.sha256(root.encode()).hexdigest()[:16] + ".json")
  for rel, file_digest in fingerprint.file_digests(root, files, cache_path).items():
    digest.update(f"{rel} {file_digest}\n".encode())
  slug = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(root).lower()).strip("_") or "root"
  return FolderConfig(name=f"{slug}_{digest.hexdigest()[:12]}", root=root,
                      ignore_rgb=tuple(int(c) for c in ignore_rgb),
                      description=f"Images and labels from {root}.")


def _ignore_rgb_problem(value: tuple) -> str | None:
  if len(value) in (0, 3) and all(type(c) is int and 0 <= c <= 255 for c in value):
    return None
  return "() or an (R, G, B) colour with values 0-255"


@DATASETS.register("folder")
class Folder(tfds.core.GeneratorBasedBuilder):
  """Images and segmentation labels from a directory tree (see module doc)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = []  # Made per root by `folder_config`.

  @classmethod
  def builder_kwargs(
      cls, data_dir: str, *,
      root: Annotated[str, Arg(help=(
          "the dataset's directory: images/<split>/, labels/<split>/, classes.txt "
          "(docs/data.md)"))] = "",
      ignore_rgb: Annotated[tuple, Arg(check=_ignore_rgb_problem, help=(
          "the colour RGB labels mark ignored pixels with (-> 255); () = none"))
      ] = (255, 255, 255)) -> dict:
    """The builder config of the dataset at `root`; the files' digests are cached under
    `data_dir` (data.dir)."""
    if not root:
      raise DatasetMissingError("data.name=folder needs data.folder.root=<directory with "
                                "images/, labels/, classes.txt>; see docs/data.md")
    # The digest cache lives with the prepared copies, never inside the user's folder.
    cache_dir = os.path.join(data_dir, "folder", "_fingerprints")
    return {"config": folder_config(root, ignore_rgb, cache_dir)}

  def _info(self) -> tfds.core.DatasetInfo:
    names, colors = folder_labels.class_table(self.builder_config.root)
    palette = colors.tolist() if colors is not None else imagefiles.voc_palette(len(names))
    # JPEGs stay JPEG and PNGs PNG (image_format None): no second lossy pass.
    return features.segmentation_info(
        self, description=__doc__, image_format=None, class_names=names, palette=palette,
        eval_canvas=(0, 0))  # Set from the validation images while preparing.

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    root = self.builder_config.root
    names, colors = folder_labels.class_table(root)
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
      label_HW, _ = folder_labels.label_ids(label_path, num_classes, colors, self.builder_config.ignore_rgb)
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
        label_HW, problem = folder_labels.label_ids(label_path, num_classes, colors, ignore_rgb, rel_label)
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
