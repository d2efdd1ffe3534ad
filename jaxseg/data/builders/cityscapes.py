"""tfds builder for `cityscapes`: the 19-class Cityscapes benchmark (gtFine), 2048x1024.

train 2,975 / validation 500 images, read straight from the two zips in
manual_dir (or their extracted directories):
  leftImg8bit_trainvaltest.zip  leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine_trainvaltest.zip       gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
Labels are stored as train ids: each labelId becomes its class's trainId (0-18),
every other id 255, by the table of cityscapesScripts' `helpers/labels.py` (which
tests/test_cityscapes.py checks against the installed package). The test split
has no labels (gtFine's test maps are placeholders), so it is not prepared: it
cannot be evaluated here, only on the benchmark's server.
Counts and pairing are checked from the archives' listings before anything is
written. Images are 8-bit RGB PNGs, stored as they are (no lossy re-encoding).
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data.builders import features, imagefiles, sources
from jaxseg.data.builders.registry import DATASETS
from jaxseg.data.errors import DatasetError, DatasetMissingError

_DOWNLOADS = "https://www.cityscapes-dataset.com/downloads/ (free login)"
# The site publishes rounded sizes only (and md5 sums behind the login).
IMAGES = sources.Archive(filename="leftImg8bit_trainvaltest.zip", url=_DOWNLOADS, size="11 GB",
                         sha256=None, extracted="leftImg8bit", downloadable=False)
LABELS = sources.Archive(filename="gtFine_trainvaltest.zip", url=_DOWNLOADS, size="241 MB",
                         sha256=None, extracted="gtFine", downloadable=False)
# The published split sizes; a test fabricating small archives patches this.
EXPECTED_COUNTS = {"train": 2_975, "validation": 500}
_DIRS = {"train": "train", "validation": "val"}
CANVAS_HW = (1024, 2048)  # Every Cityscapes image is 2048 wide and 1024 high.

# cityscapesScripts' label table, reduced to what training uses: (labelId, trainId,
# name, colour) of the 19 evaluated classes, in trainId order. Every other labelId
# 0-33 (void, and the classes the benchmark ignores) becomes 255.
TRAIN_CLASSES = (
    (7, 0, "road", (128, 64, 128)), (8, 1, "sidewalk", (244, 35, 232)),
    (11, 2, "building", (70, 70, 70)), (12, 3, "wall", (102, 102, 156)),
    (13, 4, "fence", (190, 153, 153)), (17, 5, "pole", (153, 153, 153)),
    (19, 6, "traffic light", (250, 170, 30)), (20, 7, "traffic sign", (220, 220, 0)),
    (21, 8, "vegetation", (107, 142, 35)), (22, 9, "terrain", (152, 251, 152)),
    (23, 10, "sky", (70, 130, 180)), (24, 11, "person", (220, 20, 60)),
    (25, 12, "rider", (255, 0, 0)), (26, 13, "car", (0, 0, 142)),
    (27, 14, "truck", (0, 0, 70)), (28, 15, "bus", (0, 60, 100)),
    (31, 16, "train", (0, 80, 100)), (32, 17, "motorcycle", (0, 0, 230)),
    (33, 18, "bicycle", (119, 11, 32)),
)
MAX_LABEL_ID = 33  # labelIds are 0-33 ('license plate', -1, is never drawn).
CLASS_NAMES = tuple(name for _, _, name, _ in TRAIN_CLASSES)


def train_id_table() -> np.ndarray:
  """(256,) uint8: labelId -> trainId (255 for every id that is not one of the 19 classes)."""
  table = np.full(256, imagefiles.IGNORE_INDEX, np.uint8)
  for label_id, train_id, _, _ in TRAIN_CLASSES:
    table[label_id] = train_id
  return table


@DATASETS.register("cityscapes")
class Cityscapes(tfds.core.GeneratorBasedBuilder):
  """Cityscapes gtFine, 19 train-id classes (255 = ignored)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Put {IMAGES.filename} and {LABELS.filename} in manual_dir; see docs/data.md.")

  def _info(self) -> tfds.core.DatasetInfo:
    return features.segmentation_info(
        self, description=__doc__, image_format="png", class_names=CLASS_NAMES,
        palette=[rgb for _, _, _, rgb in TRAIN_CLASSES], eval_canvas=CANVAS_HW,
        homepage="https://www.cityscapes-dataset.com/")

  def _split_generators(self, dl_manager):
    _require_all(dl_manager)
    images, labels = (sources.Members(sources.locate(a, dl_manager, False, "cityscapes"),
                                      a.extracted) for a in (IMAGES, LABELS))
    ids = {split: _paired_ids(images, labels, split) for split in _DIRS}
    return {split: self._generate_examples(images, labels, split, split_ids)
            for split, split_ids in ids.items()}

  def _generate_examples(self, images, labels, split, ids):
    try:
      yield from _examples(images, labels, split, ids)
    finally:
      images.close()
      labels.close()


def _require_all(dl_manager) -> None:
  """One line naming every archive missing from manual_dir (neither can be downloaded here)."""
  manual_dir = os.fspath(dl_manager._manual_dir)  # pylint: disable=protected-access
  missing = [a for a in (IMAGES, LABELS)
             if not any(os.path.exists(os.path.join(manual_dir, n)) for n in (a.filename,
                                                                              a.extracted))]
  if missing:
    files = " and ".join(f"{a.filename} ({a.size_text})" for a in missing)
    raise DatasetMissingError(
        f"cityscapes needs {files}, from {_DOWNLOADS}: put {'them' if len(missing) > 1 else 'it'}"
        f" in {manual_dir} (data.manual_dir={manual_dir}; the extracted "
        f"{'/, '.join(a.extracted for a in missing)}/ directories work too). "
        "No data at hand? `python run.py` trains the embedded demo dataset (shapes).")


def _image_name(split: str, stem: str) -> str:
  return f"leftImg8bit/{_DIRS[split]}/{stem.split('_')[0]}/{stem}_leftImg8bit.png"


def _label_name(split: str, stem: str) -> str:
  return f"gtFine/{_DIRS[split]}/{stem.split('_')[0]}/{stem}_gtFine_labelIds.png"


def _stems(members: sources.Members, top: str, split: str, suffix: str) -> set[str]:
  # <city>_<seq>_<frame>: city names hold letters and '-' (e.g. 'bad-honnef'), no '_'.
  pattern = re.compile(rf"{top}/{_DIRS[split]}/([^/_]+)/(\1_\d+_\d+)_{suffix}\.png")
  return {m[2] for m in map(pattern.fullmatch, members.names()) if m}


def _paired_ids(images: sources.Members, labels: sources.Members, split: str) -> list[str]:
  """The split's ids, refused unless each image has its labelIds map and the split
  has its published size."""
  with_image = _stems(images, "leftImg8bit", split, "leftImg8bit")
  with_label = _stems(labels, "gtFine", split, "gtFine_labelIds")
  for have, lack, members in ((with_image, with_label, labels), (with_label, with_image, images)):
    absent = sorted(have - lack)
    if absent:
      names = [(_label_name if members is labels else _image_name)(split, s) for s in absent]
      raise DatasetError(f"{members.path}: {len(absent)} {_DIRS[split]} files missing (is the "
                         f"archive truncated?), e.g. {', '.join(names[:3])}")
  count, expected = len(with_image), EXPECTED_COUNTS[split]
  if count != expected:
    raise DatasetError(f"{images.path}, {labels.path}: {count:,} {_DIRS[split]} image/label "
                       f"pairs, expected {expected:,}; are they the complete "
                       f"{IMAGES.filename} and {LABELS.filename}?")
  return sorted(with_image)


def _examples(images: sources.Members, labels: sources.Members, split: str, ids: list[str]):
  table = train_id_table()
  for stem in ids:
    image_name, label_name = _image_name(split, stem), _label_name(split, stem)
    image_where, where = images.where(image_name), labels.where(label_name)
    image, size_HW = imagefiles.checked_image(images.read(image_name), image_where,
                                              keep=("PNG",), reencode="PNG")
    if size_HW[0] > CANVAS_HW[0] or size_HW[1] > CANVAS_HW[1]:
      raise DatasetError(f"{image_where}: {size_HW[0]}x{size_HW[1]} (HxW) exceeds Cityscapes' "
                         f"{CANVAS_HW[0]}x{CANVAS_HW[1]}")
    ids_HW = imagefiles.palette_indices(imagefiles.label_image(labels.read(label_name), where),
                                        where)
    if ids_HW.shape != size_HW:
      raise DatasetError(f"{where}: label is {ids_HW.shape[0]}x{ids_HW.shape[1]} but its image "
                         f"{image_where} is {size_HW[0]}x{size_HW[1]} (HxW)")
    bad = sorted(int(v) for v in np.unique(ids_HW) if v > MAX_LABEL_ID)
    if bad:
      raise DatasetError(f"{where}: values {bad[:10]} are not Cityscapes labelIds 0-{MAX_LABEL_ID}")
    yield stem, {"image": image, "label": imagefiles.label_png(table[ids_HW]), "id": stem}
