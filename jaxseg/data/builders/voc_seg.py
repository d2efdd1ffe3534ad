"""tfds builder for `voc_seg`: PASCAL VOC 2012 segmentation, optionally with SBD ("aug").

Configs:
  2012      train 1464 / validation 1449, the VOC `ImageSets/Segmentation` lists.
  2012_aug  train = (VOC seg train ∪ SBD train ∪ SBD val) − VOC seg val (10582 ids,
            "trainaug"); validation = VOC's 1449. Labels of SBD ids come from SBD
            `cls/<id>.mat` (GTcls.Segmentation), of the other ids from VOC's
            palette PNGs (an id in both takes SBD's label, so trainaug is
            labelled one way; VOC-only ids keep VOC's 255 borders); images
            always from VOC `JPEGImages` (SBD `img/` only for an id VOC lacks).

Sources are read from the archives in manual_dir (see docs/data.md), never
extracted; every image and label is decoded and checked while preparing.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from jaxseg.data.builders import features, imagefiles, sources
from jaxseg.data.builders.registry import DATASETS
from jaxseg.data.errors import DatasetError

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC = sources.Archive(
    filename="VOCtrainval_11-May-2012.tar",
    url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    size=1_999_639_040,
    sha256="e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb",
    extracted="VOCdevkit")
SBD = sources.Archive(
    filename="benchmark.tgz",
    url=("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
         "semantic_contours/benchmark.tgz"),
    size=1_419_539_633,
    sha256=None,  # Only md5/sha1 are published (see docs/data.md); none is invented here.
    extracted="benchmark_RELEASE")
_VOC_DIR = "VOCdevkit/VOC2012/"
_SBD_DIR = "benchmark_RELEASE/dataset/"


@dataclasses.dataclass(eq=False)
class VocSegConfig(tfds.core.BuilderConfig):
  with_sbd: bool = False


@DATASETS.register("voc_seg")
class VocSeg(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 semantic segmentation (21 classes, 255 = ignore border)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      VocSegConfig(name="2012", description="VOC 2012 seg: train 1464, validation 1449."),
      VocSegConfig(name="2012_aug", with_sbd=True,
                   description="VOC 2012 + SBD trainaug (10582), validation 1449."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Put {VOC.filename} (and {SBD.filename} for 2012_aug) in manual_dir; see docs/data.md.")

  def __init__(self, *, allow_download: bool = False, **kwargs):
    self._allow_download = allow_download
    super().__init__(**kwargs)

  @classmethod
  def builder_kwargs(cls, data_dir: str, *, download: sources.Download = False) -> dict:
    """`data.voc_seg.download`: see sources.Download."""
    del data_dir  # Sources come from manual_dir, which prepare() passes.
    return {"allow_download": bool(download)}

  def _info(self) -> tfds.core.DatasetInfo:
    return features.segmentation_info(
        self, description=__doc__, image_format="jpeg", class_names=CLASS_NAMES,
        palette=imagefiles.voc_palette(len(CLASS_NAMES)),
        # Every VOC image fits in 500x500; 512 is the usual padded canvas.
        eval_canvas=(512, 512), homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/")

  def _split_generators(self, dl_manager):
    needed_by = f"voc_seg/{self.builder_config.name}"
    # Locate everything first: a missing SBD fails before VOC is even opened.
    voc_path = sources.locate(VOC, dl_manager, self._allow_download, needed_by)
    sbd_path = (sources.locate(SBD, dl_manager, self._allow_download, needed_by)
                if self.builder_config.with_sbd else None)
    voc = sources.Members(voc_path, VOC.extracted)
    train_ids, val_ids = (_id_list(voc, f"{_VOC_DIR}ImageSets/Segmentation/{s}.txt")
                          for s in ("train", "val"))
    sbd_labels, sbd_images = {}, {}
    if sbd_path:
      sbd_ids, sbd_labels, sbd_images = _read_sbd(sbd_path, set(val_ids), voc)
      train_ids = sorted((set(train_ids) | sbd_ids) - set(val_ids))
    _check_members(voc, train_ids, sbd_labels, sbd_images)
    _check_members(voc, val_ids, {}, {})
    return {
        "train": self._generate_examples(voc, train_ids, sbd_labels, sbd_images),
        "validation": self._generate_examples(voc, val_ids, {}, {}),
    }

  def _generate_examples(self, voc, ids, sbd_labels, sbd_images):
    try:
      yield from self._examples(voc, ids, sbd_labels, sbd_images)
    finally:
      voc.close()

  def _examples(self, voc, ids, sbd_labels, sbd_images):
    for example_id in ids:
      image_name = f"{_VOC_DIR}JPEGImages/{example_id}.jpg"
      if example_id in sbd_images:
        image_where, image_bytes = sbd_images[example_id]
      else:
        image_where, image_bytes = voc.where(image_name), voc.read(image_name)
      image, size_HW = imagefiles.checked_image(image_bytes, image_where)
      if example_id in sbd_labels:
        label_where, label_bytes = sbd_labels[example_id]
      else:
        label_name = f"{_VOC_DIR}SegmentationClass/{example_id}.png"
        label_where, label_bytes = voc.where(label_name), voc.read(label_name)
      label_HW = imagefiles.palette_indices(
          imagefiles.label_image(label_bytes, label_where), label_where)
      _check_label(label_HW, size_HW, label_where, image_where)
      yield example_id, {"image": image, "label": imagefiles.label_png(label_HW),
                         "id": example_id}


def _id_list(members: sources.Members, name: str) -> list[str]:
  text = members.read(name).decode("utf-8", errors="replace")
  return [line.split()[0] for line in text.splitlines() if line.strip()]


def _check_members(voc: sources.Members, ids, sbd_labels, sbd_images) -> None:
  """Every listed id has its image and label, checked by name before anything is written."""
  missing = []
  for example_id in ids:
    if example_id not in sbd_images:
      missing.append(f"{_VOC_DIR}JPEGImages/{example_id}.jpg")
    if example_id not in sbd_labels:
      missing.append(f"{_VOC_DIR}SegmentationClass/{example_id}.png")
  missing = [name for name in missing if not voc.exists(name)]
  if missing:
    raise DatasetError(f"{voc.path}: {len(missing)} listed files missing (is the archive "
                       f"truncated?), e.g. {', '.join(missing[:5])}")


def _check_label(label_HW, size_HW, label_where: str, image_where: str) -> None:
  if label_HW.shape != size_HW:
    raise DatasetError(f"{label_where}: label is {label_HW.shape[0]}x{label_HW.shape[1]} "
                       f"but its image {image_where} is {size_HW[0]}x{size_HW[1]} (HxW)")
  bad = imagefiles.bad_values(label_HW, len(CLASS_NAMES))
  if bad:
    raise DatasetError(f"{label_where}: label values {bad[:10]} are not classes 0-20 or 255")


def _read_sbd(path: str, skip_ids: set[str], voc: sources.Members):
  """One pass over SBD: its ids, decoded labels (not of `skip_ids`), images VOC lacks."""
  ids, labels, images = set(), {}, {}
  for name, where, read in sources.stream(path):
    if not name.startswith(_SBD_DIR):
      continue
    rel = name[len(_SBD_DIR):]
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if rel in ("train.txt", "val.txt"):
      ids.update(line.split()[0] for line in read().decode().splitlines() if line.strip())
    elif rel.startswith("cls/") and rel.endswith(".mat") and stem not in skip_ids:
      # Kept PNG-compressed: 10k raw HxW arrays would take GBs.
      labels[stem] = (where, imagefiles.label_png(_sbd_segmentation(read(), where)))
    elif (rel.startswith("img/") and rel.endswith(".jpg")
          and not voc.exists(f"{_VOC_DIR}JPEGImages/{stem}.jpg")):
      images[stem] = (where, read())
  if not ids:
    raise DatasetError(f"{path}: no {_SBD_DIR}train.txt/val.txt found; is it SBD's "
                       "benchmark.tgz?")
  missing = sorted(i for i in ids - skip_ids if i not in labels)
  if missing:
    raise DatasetError(f"{path}: no {_SBD_DIR}cls/<id>.mat for {len(missing)} listed ids, "
                       f"e.g. {missing[:5]} (is the archive truncated?)")
  return ids, labels, images


def _sbd_segmentation(data: bytes, where: str) -> np.ndarray:
  """GTcls.Segmentation of an SBD cls .mat (class ids 0-20, no ignore border)."""
  try:
    gt = scipy.io.loadmat(io.BytesIO(data))["GTcls"][0, 0]
    label_HW = np.asarray(gt["Segmentation"])
  except Exception as e:  # pylint: disable=broad-except  # scipy raises many kinds.
    raise DatasetError(f"{where}: not an SBD GTcls .mat ({type(e).__name__}: {e})") from e
  if label_HW.ndim != 2 or label_HW.dtype.kind not in "ui" or not (
      0 <= label_HW.min(initial=0) and label_HW.max(initial=0) <= 255):
    raise DatasetError(f"{where}: GTcls.Segmentation is {label_HW.dtype} {label_HW.shape}, "
                       "expected a 2-D array of class ids")
  return label_HW.astype(np.uint8)
