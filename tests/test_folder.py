"""The `folder` builder on fabricated image/label directories."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from jaxseg.config import build_config
from jaxseg.data import datasets
from tests import fabricate


def _cfg(data_dir, root, *more):
  return build_config("demo", ["data.name=folder", f"data.folder_root={root}",
                               f"data.dir={data_dir}", *more]).data


def _read_all(builder, split):
  source = builder.as_data_source(split)
  return {ex["id"].decode(): ex for ex in (source[i] for i in range(len(source)))}


@pytest.mark.parametrize("rgb", [True, False], ids=["rgb_colour_labels", "palette_labels"])
def test_happy_path(tmp_path, rgb):
  root = tmp_path / "my_roads"
  root.mkdir()
  labels = fabricate.folder_dataset(str(root), rgb=rgb, image_ext=".jpg" if rgb else ".png")
  builder = datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root)))
  assert builder.builder_config.name.startswith("my_roads_")
  assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
      "train": 5, "validation": 3}
  meta = datasets.meta_of(builder)
  assert meta.class_names == tuple(fabricate.FOLDER_CLASSES) and meta.ignore_index == 255
  np.testing.assert_array_equal(meta.palette_K3, fabricate.FOLDER_COLORS)
  val_sizes = [lab.shape for (split, _), lab in labels.items() if split == "val"]
  canvas = max(h for h, _ in val_sizes), max(w for _, w in val_sizes)
  assert meta.eval_canvas_HW == tuple(-(-c // 32) * 32 for c in canvas)
  for split, tfds_split in (("train", "train"), ("val", "validation")):
    examples = _read_all(builder, tfds_split)
    for k, (name, ex) in enumerate(sorted(examples.items())):
      expected = labels[(split, name)]
      np.testing.assert_array_equal(ex["label"][..., 0], expected, err_msg=name)
      assert ex["image"].shape == (*expected.shape, 3)
      index = fabricate.image_index(ex["image"])
      assert index == k + (5 if split == "val" else 0)
      if not rgb:  # PNG images are stored losslessly.
        assert ex["image"][0, 0, 0] == fabricate.id_red(index)
  # The same content is found prepared again; no second preparation.
  again = datasets._builder(_cfg(str(tmp_path / "tfds"), str(root)))
  assert again.is_prepared() and again.builder_config.name == builder.builder_config.name
  assert datasets.meta_of(again).eval_canvas_HW == meta.eval_canvas_HW  # Read back from disk.


def _assert_nothing_written(data_dir, cfg):
  assert not datasets._builder(cfg).is_prepared()
  assert not [f for _, _, fs in os.walk(data_dir) for f in fs if "array_record" in f]


def test_bad_values_sizes_and_pairs_refused_in_one_error(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 4), ("validation", 2)))
  # Class id 7 of 3 classes; a label one row too tall; an image with no label.
  label = np.array(Image.open(root / "labels/train/img000.png"))
  label[5, 5] = 7
  Image.fromarray(label, mode="L").save(root / "labels/train/img000.png")
  Image.fromarray(np.zeros((label.shape[0] + 1, label.shape[1]), np.uint8)).save(
      root / "labels/validation/img001.png")
  os.remove(root / "labels/train/img002.png")
  data_dir = str(tmp_path / "tfds")
  cfg = _cfg(data_dir, str(root))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.prepare(cfg)
  message = str(e.value)
  assert "3 problem(s), nothing was written" in message
  assert "labels/train/img000.png: values [7] not class ids 0-2" in message
  assert re.search(r"labels/validation/img001.png: label is \d+x\d+ but "
                   r"images/validation/img001.jpg is \d+x\d+", message)
  assert "images/train/img002.jpg: no label labels/train/img002.png" in message
  _assert_nothing_written(data_dir, cfg)


def test_unknown_colours_listed_and_capped(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=True, splits=(("train", 23),))
  for i in range(23):  # Every label gets a colour that colors.txt does not know.
    path = root / f"labels/train/img{i:03d}.png"
    rgb = np.array(Image.open(path))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
  data_dir = str(tmp_path / "tfds")
  cfg = _cfg(data_dir, str(root))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.prepare(cfg)
  message = str(e.value)
  assert "23 problem(s)" in message and "... and 3 more" in message
  assert "labels/train/img000.png: colours (1,2,3) are not in colors.txt" in message
  _assert_nothing_written(data_dir, cfg)


def test_ignore_colour_is_configurable(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=True, splits=(("train", 2),))
  # Without an ignore colour, the white borders are unknown colours.
  with pytest.raises(datasets.DatasetError, match=r"colours \(255,255,255\)"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root), "data.folder_ignore_rgb=()"))


def test_missing_root_and_train_split(tmp_path):
  with pytest.raises(datasets.DatasetMissingError, match="data.folder_root"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), ""))
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=(("val", 1),))
  with pytest.raises(datasets.DatasetMissingError, match="images/train: missing"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root)))
