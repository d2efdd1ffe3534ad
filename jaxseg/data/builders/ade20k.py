"""tfds builder for `ade20k`: SceneParse150, the 150-class ADE20K benchmark (ADEChallengeData2016).

train 20,210 / validation 2,000 image-annotation pairs, read straight from
ADEChallengeData2016.zip in manual_dir (or its extracted directory):
  ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
  ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_%08d.png
Annotations hold 0 = "other" and 1..150 = the classes; they are stored as mmseg's
LoadAnnotations(reduce_zero_label=True) reads them: 0 -> 255 (ignored), k -> k-1.
(tfds' `scene_parse150` is not this benchmark: it reads the 2017 instance data.)

Before anything is written, the archive's own listing is checked: every image
has its annotation and each split has the published count, so a truncated or
different archive fails at once, naming it. The eval canvas (metadata
`eval_canvas`) is the largest image of either split, from the image headers.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data.builders import features, imagefiles, sources
from jaxseg.data.builders.ade20k_classes import CLASS_NAMES, PALETTE
from jaxseg.data.builders.registry import DATASETS
from jaxseg.data.errors import DatasetError

ADE = sources.Archive(
    filename="ADEChallengeData2016.zip",
    url="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
    size=967_382_037,  # As listed by users of the archive; the site publishes no size.
    sha256=None,  # No published checksum could be confirmed; none is invented here.
    extracted="ADEChallengeData2016")
# The published split sizes; a test fabricating a small archive patches this.
EXPECTED_COUNTS = {"train": 20_210, "validation": 2_000}
_DIRS = {"train": ("training", "train"), "validation": ("validation", "val")}
_TOP = "ADEChallengeData2016/"
_CANVAS_MULTIPLE = 32  # Canvas sides rounded up to this (a multiple of every model stride).


def reduce_zero_label(label_HW: np.ndarray) -> np.ndarray:
  """ADE ids (0 = other, 1..150) -> training labels: 0 -> 255, k -> k - 1 (mmseg's rule)."""
  return np.where(label_HW == 0, imagefiles.IGNORE_INDEX,
                  label_HW.astype(np.int32) - 1).astype(np.uint8)


@DATASETS.register("ade20k")
class Ade20k(tfds.core.GeneratorBasedBuilder):
  """ADE20K SceneParse150 (150 classes; 255 = unlabelled "other")."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {ADE.filename} in manual_dir; see docs/data.md."

  def __init__(self, *, allow_download: bool = False, **kwargs):
    self._allow_download = allow_download
    super().__init__(**kwargs)

  @classmethod
  def builder_kwargs(cls, data_dir: str, *, download: sources.Download = False) -> dict:
    """`data.ade20k.download`: see sources.Download."""
    del data_dir  # The source comes from manual_dir, which prepare() passes.
    return {"allow_download": bool(download)}

  def _info(self) -> tfds.core.DatasetInfo:
    return features.segmentation_info(
        self, description=__doc__, image_format="jpeg", class_names=CLASS_NAMES,
        palette=PALETTE, eval_canvas=(0, 0),  # Set from the images' sizes in _split_generators.
        homepage="http://sceneparsing.csail.mit.edu/")

  def _split_generators(self, dl_manager):
    path = sources.locate(ADE, dl_manager, self._allow_download, "ade20k")
    members = sources.Members(path, ADE.extracted)
    ids = {split: _paired_ids(members, split) for split in _DIRS}
    self.info.metadata["eval_canvas"] = _canvas(members, ids)
    return {split: self._generate_examples(members, split, split_ids)
            for split, split_ids in ids.items()}

  def _generate_examples(self, members, split, ids):
    try:
      yield from _examples(members, split, ids)
    finally:
      members.close()


def _image_name(split: str, stem: str) -> str:
  return f"{_TOP}images/{_DIRS[split][0]}/{stem}.jpg"


def _label_name(split: str, stem: str) -> str:
  return f"{_TOP}annotations/{_DIRS[split][0]}/{stem}.png"


def _paired_ids(members: sources.Members, split: str) -> list[str]:
  """The split's ids from the archive's listing, refused unless each image has its
  annotation and the split has its published size."""
  folder, prefix = _DIRS[split]
  pattern = re.compile(rf"{_TOP}(images|annotations)/{folder}/(ADE_{prefix}_\d{{8}})\.(jpg|png)")
  found = {"images": set(), "annotations": set()}
  for name in members.names():
    match = pattern.fullmatch(name)
    if match and (match[1], match[3]) in (("images", "jpg"), ("annotations", "png")):
      found[match[1]].add(match[2])
  unpaired = sorted(found["images"] ^ found["annotations"])
  if unpaired:
    examples = ", ".join(_image_name(split, s) if s in found["images"] else _label_name(split, s)
                         for s in unpaired[:3])
    raise DatasetError(f"{members.path}: {len(unpaired)} {folder} files lack their image or "
                       f"annotation (is the archive truncated?), e.g. {examples}")
  count, expected = len(found["images"]), EXPECTED_COUNTS[split]
  if count != expected:
    raise DatasetError(f"{members.path}: {count:,} {folder} image/annotation pairs, expected "
                       f"{expected:,}; is it the complete {ADE.filename}?")
  return sorted(found["images"])


def _canvas(members: sources.Members, ids: dict) -> list[int]:
  """[H, W] covering every image of every split, sides rounded up to _CANVAS_MULTIPLE."""
  most = np.zeros(2, np.int64)
  for split, split_ids in ids.items():
    for stem in split_ids:
      name = _image_name(split, stem)
      with members.open(name) as stream:
        most = np.maximum(most, imagefiles.header_size(stream, members.where(name)))
  return [int(-(-n // _CANVAS_MULTIPLE) * _CANVAS_MULTIPLE) for n in most]


def _examples(members: sources.Members, split: str, ids: list[str]):
  for stem in ids:
    image_name, label_name = _image_name(split, stem), _label_name(split, stem)
    image, size_HW = imagefiles.checked_image(members.read(image_name), members.where(image_name))
    where = members.where(label_name)
    ade_HW = imagefiles.palette_indices(imagefiles.label_image(members.read(label_name), where),
                                        where)
    if ade_HW.shape != size_HW:
      raise DatasetError(f"{where}: annotation is {ade_HW.shape[0]}x{ade_HW.shape[1]} but its "
                         f"image {members.where(image_name)} is {size_HW[0]}x{size_HW[1]} (HxW)")
    bad = sorted(int(v) for v in np.unique(ade_HW) if v > len(CLASS_NAMES))
    if bad:
      raise DatasetError(f"{where}: annotation values {bad[:10]} are not ADE ids 0-150")
    yield stem, {"image": image, "label": imagefiles.label_png(reduce_zero_label(ade_HW)),
                 "id": stem}
