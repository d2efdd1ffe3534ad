"""cityscapes on fabricated leftImg8bit/gtFine zips in the real layout, through datasets.prepare
and the grain train pipeline; the labelId -> trainId table against cityscapesScripts' own."""

import os

import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets, pipeline
from jaxseg.data.builders import cityscapes
from tests import fabricate_zips
from tests.mmseg_oracle import require

IMAGES, LABELS = "leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"
COUNTS = {split: len(ids) for split, ids in fabricate_zips.CITY_IDS.items()}


def _cfg(data_dir, manual_dir, *more):
  return build_config("demo", ["data.name=cityscapes", f"data.dir={data_dir}",
                               f"data.manual_dir={manual_dir}", *more]).data


def _prepare_small(data_cfg):
  """prepare(), with the fabricated archives' split sizes standing in for the published ones."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(cityscapes, "EXPECTED_COUNTS", dict(COUNTS))
    return datasets.prepare(data_cfg)


def _zips(manual, **damage):
  manual.mkdir(exist_ok=True)
  return fabricate_zips.cityscapes_zips(str(manual / IMAGES), str(manual / LABELS), **damage)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  manual = tmp_path_factory.mktemp("manual")
  labels = _zips(manual)
  builder = _prepare_small(_cfg(str(tmp_path_factory.mktemp("tfds")), str(manual)))
  return builder, labels, manual


def test_splits_are_train_and_val_with_train_ids(prepared):
  builder, labels, _ = prepared
  assert sorted(builder.info.splits) == ["train", "validation"]  # No unlabelled test split.
  table = cityscapes.train_id_table()
  for split in ("train", "validation"):
    source = builder.as_data_source(split)
    got = {source[i]["id"].decode(): source[i] for i in range(len(source))}
    assert sorted(got) == sorted(fabricate_zips.CITY_IDS[split])
    for stem, ex in got.items():
      np.testing.assert_array_equal(ex["label"][..., 0], table[labels[(split, stem)]])
      assert ex["image"].shape == (*labels[(split, stem)].shape, 3)
  meta = datasets.meta_of(builder)
  assert meta.num_classes == 19 and meta.class_names[:3] == ("road", "sidewalk", "building")
  assert meta.eval_canvas_HW == (1024, 2048) and meta.ignore_index == 255


def test_images_are_stored_losslessly(prepared):
  builder, _, manual = prepared
  import zipfile

  from PIL import Image

  ex = builder.as_data_source("validation")[0]
  stem = ex["id"].decode()
  name = f"leftImg8bit/val/{stem.split('_')[0]}/{stem}_leftImg8bit.png"
  with zipfile.ZipFile(manual / IMAGES) as z, z.open(name) as f:
    np.testing.assert_array_equal(ex["image"], np.asarray(Image.open(f).convert("RGB")))


def test_read_back_through_the_grain_train_pipeline(prepared):
  builder, _, _ = prepared
  cfg = build_config("demo", ["data.name=cityscapes", "train.batch_size=2",
                              "augment.crop_size=(16,32)", "data.worker_count=0"])
  loader = pipeline.train_loader(builder.as_data_source("train"), cfg, 255)
  batch = next(iter(loader))
  assert batch["image"].shape == (2, 16, 32, 3) and batch["label"].shape == (2, 16, 32)
  assert set(np.unique(batch["label"]).tolist()) <= set(range(19)) | {255}


@pytest.mark.parity
def test_train_ids_names_and_colours_are_cityscapes_scripts():
  labels = require("cityscapesscripts.helpers.labels")
  table = cityscapes.train_id_table()
  for label in labels.labels:
    if label.id < 0:
      continue  # 'license plate' (-1) is never drawn in labelIds maps.
    expected = label.trainId if 0 <= label.trainId < 19 else 255
    assert table[label.id] == expected, label.name
  assert len(labels.labels) - 1 == cityscapes.MAX_LABEL_ID + 1  # Ids 0-33, and -1.
  assert (table[cityscapes.MAX_LABEL_ID + 1:] == 255).all()
  train = sorted((l for l in labels.labels if 0 <= l.trainId < 19), key=lambda l: l.trainId)
  assert cityscapes.CLASS_NAMES == tuple(l.name for l in train)
  assert [rgb for _, _, _, rgb in cityscapes.TRAIN_CLASSES] == [l.color for l in train]


@pytest.mark.parity
def test_class_names_and_palette_are_mmsegs():
  require("mmseg")
  from mmseg.datasets import CityscapesDataset

  assert cityscapes.CLASS_NAMES == CityscapesDataset.METAINFO["classes"]
  assert [list(rgb) for _, _, _, rgb in cityscapes.TRAIN_CLASSES] == \
      CityscapesDataset.METAINFO["palette"]


def test_missing_zips_are_one_line_naming_both_sizes_and_place(tmp_path):
  manual = tmp_path / "manual"
  with pytest.raises(datasets.DatasetMissingError) as e:
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual)))
  message = str(e.value)
  assert "\n" not in message and isinstance(e.value, FileNotFoundError)
  assert f"{IMAGES} (about 11 GB) and {LABELS} (about 241 MB)" in message
  assert f"in {manual}" in message and "cityscapes-dataset.com" in message
  assert ".download=" not in message  # Behind a login: never offered.


def test_one_missing_zip_is_named_alone(tmp_path, prepared):
  _, _, manual = prepared
  only = tmp_path / "manual"
  only.mkdir()
  os.symlink(manual / IMAGES, only / IMAGES)
  with pytest.raises(datasets.DatasetMissingError, match=rf"needs {LABELS} \(about 241 MB\), "):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(only)))


def test_published_counts_are_required(tmp_path, prepared):
  _, _, manual = prepared
  with pytest.raises(datasets.DatasetError, match=r"3 train image/label pairs, expected 2,975"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual)))


def test_missing_label_refused_before_writing(tmp_path):
  stem = fabricate_zips.CITY_IDS["validation"][1]
  drop = f"gtFine/val/lindau/{stem}_gtFine_labelIds.png"
  _zips(tmp_path / "manual", drop=drop)
  data_dir = tmp_path / "tfds"
  with pytest.raises(datasets.DatasetError, match=rf"{LABELS}: 1 val files missing.*{drop}"):
    _prepare_small(_cfg(str(data_dir), str(tmp_path / "manual")))
  assert not [f for _, _, fs in os.walk(data_dir) for f in fs if "array_record" in f]
