"""The `folder` builder on fabricated image/label directories."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from tests import fabricate


def _cfg(data_dir, root, *more):
  return build_config("demo", ["data.name=folder", f"data.folder.root={root}",
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
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root), "data.folder.ignore_rgb=()"))


def test_missing_root_and_train_split(tmp_path):
  with pytest.raises(datasets.DatasetMissingError, match="data.folder.root"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), ""))
  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=(("val", 1),))
  with pytest.raises(datasets.DatasetMissingError, match="images/train: missing"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root)))


def _prepared_label(builder, split, name):
  return _read_all(builder, split)[name]["label"][..., 0]


def test_same_size_edit_is_seen(tmp_path):
  """The fingerprint hashes bytes: an edit that keeps size and mtime still prepares afresh."""
  root = tmp_path / "data"
  root.mkdir()
  labels = fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 2),))
  path = root / "labels/train/img001.png"
  # Stored (level 0) PNGs: the byte size depends on H x W only, not on the ids.
  Image.fromarray(labels[("train", "img001")], mode="L").save(path, compress_level=0)
  cfg = _cfg(str(tmp_path / "tfds"), str(root))
  first = datasets.prepare(cfg)
  np.testing.assert_array_equal(_prepared_label(first, "train", "img001"), labels[("train", "img001")])
  edited = labels[("train", "img001")].copy()
  edited[edited == 1] = 2
  before = os.stat(path)
  Image.fromarray(edited, mode="L").save(path, compress_level=0)
  os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # As `cp -p` or `touch -r` do.
  assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
  second = datasets.prepare(cfg)
  assert second.builder_config.name != first.builder_config.name
  np.testing.assert_array_equal(_prepared_label(second, "train", "img001"), edited)
  # Files the builder does not read leave the fingerprint alone.
  (root / "images/train/.DS_Store").write_bytes(b"junk")
  (root / "labels/train/notes.txt").write_text("todo")
  assert datasets._builder(cfg).builder_config.name == second.builder_config.name


def test_fingerprint_cache_hashes_only_changed_files(tmp_path, monkeypatch):
  from jaxseg.data.builders import fingerprint, folder

  root = tmp_path / "data"
  root.mkdir()
  fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 3),))
  hashed = []
  real_digest = fingerprint.hashlib.file_digest
  monkeypatch.setattr(fingerprint.hashlib, "file_digest",
                      lambda f, name: hashed.append(f.name) or real_digest(f, name))
  cache = str(tmp_path / "cache")
  fresh = folder.folder_config(str(root), cache_dir=cache)
  assert len(hashed) == 6  # 3 images + 3 labels; just written, so too recent to cache.
  monkeypatch.setattr(fingerprint, "_RACY_SECONDS", 0.0)
  hashed.clear()
  assert folder.folder_config(str(root), cache_dir=cache).name == fresh.name
  assert len(hashed) == 6  # Now cached...
  hashed.clear()
  assert folder.folder_config(str(root), cache_dir=cache).name == fresh.name
  assert hashed == []  # ...and not read again.
  (root / "classes.txt").write_text("a\nb\nc\n")  # Not cached: always read whole.
  with open(root / "images/train/img002.jpg", "r+b") as f:
    f.seek(-3, os.SEEK_END)
    f.write(b"\x00\x00\x00")  # Same size, new bytes.
  changed = folder.folder_config(str(root), cache_dir=cache)
  assert hashed == [str(root / "images/train/img002.jpg")] and changed.name != fresh.name
  assert folder.folder_config(str(root)).name == changed.name  # The same without a cache.


def _save_png16(path, values_HW):
  Image.fromarray(np.asarray(values_HW, np.uint16)).save(path)  # Pillow: mode 'I;16'.
  assert Image.open(path).mode == "I;16"


def test_16_bit_images_scaled_and_labels_checked(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  labels = fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 2),), image_ext=".png")
  h, w = labels[("train", "img000")].shape
  grey16_HW = np.random.default_rng(0).integers(0, 65536, (h, w))
  _save_png16(root / "images/train/img000.png", grey16_HW)
  _save_png16(root / "labels/train/img001.png", labels[("train", "img001")])  # Ids < 256: fine.
  builder = datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root)))
  examples = _read_all(builder, "train")
  # The high byte, as Pillow keeps of 16-bit RGB PNGs; not clipped to white.
  expected_HW3 = np.repeat((grey16_HW >> 8).astype(np.uint8)[..., None], 3, axis=-1)
  np.testing.assert_array_equal(examples["img000"]["image"], expected_HW3)
  np.testing.assert_array_equal(examples["img001"]["label"][..., 0], labels[("train", "img001")])
  # A 16-bit label value above 255 can be no class id: refused, naming file and value.
  too_big = labels[("train", "img001")].astype(np.int64)
  too_big[3, 3] = 300
  _save_png16(root / "labels/train/img001.png", too_big)
  data_dir = str(tmp_path / "tfds2")
  with pytest.raises(datasets.DatasetError, match=r"labels/train/img001.png: values \[300\]"):
    datasets.prepare(_cfg(data_dir, str(root)))
  _assert_nothing_written(data_dir, _cfg(data_dir, str(root)))


def _exif(orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  return exif


def test_exif_orientation_applied_to_images_refused_on_labels(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  labels = fabricate.folder_dataset(str(root), rgb=False, splits=(("train", 2),))
  label_HW = labels[("train", "img000")]
  h, w = label_HW.shape
  # As shown (and labelled): a red top half over a blue bottom half, H x W.
  shown_HW3 = np.zeros((h, w, 3), np.uint8)
  shown_HW3[: h // 2] = (250, 0, 0)
  shown_HW3[h // 2:] = (0, 0, 250)
  # A camera stores it turned (W x H) with orientation 6 ("turn 90 degrees clockwise").
  stored_WH3 = np.ascontiguousarray(np.rot90(shown_HW3, k=1))
  Image.fromarray(stored_WH3).save(root / "images/train/img000.jpg", quality=95, exif=_exif(6))
  assert Image.open(root / "images/train/img000.jpg").getexif()[0x0112] == 6
  builder = datasets.prepare(_cfg(str(tmp_path / "tfds"), str(root)))
  example = _read_all(builder, "train")["img000"]
  assert h != w and example["image"].shape == (h, w, 3)
  away_from_edge = np.abs(np.arange(h) - h // 2) > 4  # Chroma subsampling blurs the edge.
  np.testing.assert_allclose(example["image"][away_from_edge], shown_HW3[away_from_edge], atol=12)
  np.testing.assert_array_equal(example["label"][..., 0], label_HW)
  # A label with an orientation tag: which way its ids lie cannot be told.
  Image.fromarray(labels[("train", "img001")], mode="L").save(
      root / "labels/train/img001.png", exif=_exif(6))
  with pytest.raises(datasets.DatasetError,
                     match="labels/train/img001.png: a label with EXIF orientation 6"):
    datasets.prepare(_cfg(str(tmp_path / "tfds2"), str(root)))


def test_fingerprint_benchmark_runs(capsys):
  from benchmarks import folder_fingerprint

  result = folder_fingerprint.main(["--files", "20", "--size", "16x16", "--repeats", "1"])
  assert result["files"] == 20 and result["megabytes"] > 0
  assert min(v for k, v in result.items() if k.endswith("_ms")) > 0
  assert "sha256_cached" in capsys.readouterr().out
