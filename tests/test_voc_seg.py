"""voc_seg on fabricated VOC 2012 / SBD archives in the real layout."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from tests import fabricate


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
  """A manual_dir holding good archives, and the label arrays they hold."""
  manual = tmp_path_factory.mktemp("manual")
  voc_labels = fabricate.voc_tar(str(manual / "VOCtrainval_11-May-2012.tar"))
  sbd_labels = fabricate.sbd_tgz(str(manual / "benchmark.tgz"))
  return str(manual), voc_labels, sbd_labels


def _cfg(data_dir, manual_dir, config, *more):
  return build_config("demo", ["data.name=voc_seg", f"data.config={config}",
                               f"data.dir={data_dir}", f"data.manual_dir={manual_dir}", *more]).data


@pytest.fixture(scope="module")
def prepared(archives, tmp_path_factory):
  """Both configs prepared once, through `datasets.prepare` as a run would."""
  manual, _, _ = archives
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return data_dir, {c: datasets.prepare(_cfg(data_dir, manual, c)) for c in ("2012", "2012_aug")}


def _examples(builder, split):
  source = builder.as_data_source(split)
  return {ex["id"].decode(): ex for ex in (source[i] for i in range(len(source)))}


def test_split_sizes_and_metadata(prepared):
  _, builders = prepared
  sizes = {c: {s: b.info.splits[s].num_examples for s in ("train", "validation")}
           for c, b in builders.items()}
  assert sizes == {"2012": {"train": 10, "validation": 6},
                   "2012_aug": {"train": len(fabricate.TRAINAUG), "validation": 6}}
  meta = datasets.meta_of(builders["2012_aug"])
  assert meta.num_classes == 21 and meta.class_names[15] == "person"
  assert meta.ignore_index == 255 and meta.eval_canvas_HW == (512, 512)
  np.testing.assert_array_equal(meta.palette_K3[:3], [[0, 0, 0], [128, 0, 0], [0, 128, 0]])


def test_trainaug_is_union_minus_val(prepared):
  _, builders = prepared
  train_ids = set(_examples(builders["2012_aug"], "train"))
  val_ids = set(_examples(builders["2012_aug"], "validation"))
  assert train_ids == set(fabricate.TRAINAUG)
  assert val_ids == set(fabricate.VOC_VAL)
  # SBD ids that VOC uses for validation never leak into training.
  assert set(fabricate.SBD_VAL) & set(fabricate.VOC_VAL) and not train_ids & val_ids
  assert set(_examples(builders["2012"], "train")) == set(fabricate.VOC_TRAIN)


@pytest.mark.parametrize("config", ["2012", "2012_aug"])
def test_labels_and_images_match_their_ids(prepared, archives, config):
  _, voc_labels, sbd_labels = archives
  builder = prepared[1][config]
  for split in ("train", "validation"):
    for example_id, ex in _examples(builder, split).items():
      # 2012_aug labels an SBD id with SBD's label, every other id with VOC's PNG.
      from_sbd = config == "2012_aug" and split == "train" and example_id in sbd_labels
      expected = (sbd_labels if from_sbd else voc_labels)[example_id]
      assert ex["label"].shape == (*expected.shape, 1) and ex["label"].dtype == np.uint8
      np.testing.assert_array_equal(ex["label"][..., 0], expected, err_msg=example_id)
      assert ex["image"].shape == (*expected.shape, 3)
      assert fabricate.image_index(ex["image"]) == fabricate.ALL_IDS.index(example_id)
      values = set(np.unique(ex["label"]).tolist())
      assert values <= set(range(21)) | {255}
      assert (255 in values) == (not from_sbd)  # VOC's borders; SBD has none.


def test_reading_does_not_import_tensorflow(prepared, archives):
  data_dir, _ = prepared
  # The path a run takes: prepare() finds the copy prepared, then reads a record.
  code = ("import sys; from jaxseg.config.resolve import build_config; "
          "from jaxseg.data import datasets; "
          "cfg = build_config('demo', ['data.name=voc_seg', 'data.config=2012_aug', "
          f"'data.dir={data_dir}', 'data.manual_dir={archives[0]}']); "
          "datasets.prepare(cfg.data).as_data_source('train')[0]; "
          "assert 'tensorflow' not in sys.modules, 'TF was imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_archive_fails_fast_naming_file_and_place(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  start = time.monotonic()
  with pytest.raises(datasets.DatasetMissingError) as e:
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual), "2012"))
  assert time.monotonic() - start < 10
  message = str(e.value)
  assert f"{manual}/VOCtrainval_11-May-2012.tar" in message
  assert f"data.manual_dir={manual}" in message and "python run.py" in message
  assert "or set data.voc_seg.download=True to fetch it" in message
  assert isinstance(e.value, FileNotFoundError)  # run.py prints it as one line.


def test_missing_sbd_named_even_when_voc_is_there(archives, tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  shutil.copy(os.path.join(archives[0], "VOCtrainval_11-May-2012.tar"), manual)
  with pytest.raises(datasets.DatasetMissingError, match=f"{manual}/benchmark.tgz"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual), "2012_aug"))


def test_failed_download_gives_the_same_advice(tmp_path, monkeypatch):
  """data.voc_seg.download=True offline: one connection probe fails it in seconds (tfds alone
  retries for minutes), and a download that fails later gives the same advice."""
  import socket

  import tensorflow_datasets as tfds

  def no_network(address, timeout=None):
    raise OSError(f"Name or service not known: {address[0]}")
  monkeypatch.setattr(socket, "create_connection", no_network)
  def must_not_download(self, url):
    raise AssertionError("tried to download although the host is unreachable")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", must_not_download)
  cfg = _cfg(str(tmp_path / "tfds"), str(tmp_path / "m"), "2012", "data.voc_seg.download=True")
  with pytest.raises(datasets.DatasetMissingError, match="downloading it failed") as e:
    datasets.prepare(cfg)
  assert "host.robots.ox.ac.uk:80" in str(e.value)
  assert "VOCtrainval_11-May-2012.tar" in str(e.value) and "python run.py" in str(e.value)

  class Connection:
    def close(self):
      pass
  monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: Connection())
  def broken(self, url):
    raise ConnectionError(f"connection reset fetching {url}")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", broken)
  with pytest.raises(datasets.DatasetMissingError, match="downloading it failed.*reset"):
    datasets.prepare(cfg)


def _prepare_fails(tmp_path, archives, match, **bad):
  """Prepares 2012 from a broken VOC tar; checks the error and that nothing is left."""
  manual = tmp_path / "manual"
  manual.mkdir()
  tar = str(manual / "VOCtrainval_11-May-2012.tar")
  if bad:
    fabricate.voc_tar(tar, **bad)
  else:  # Truncated in the middle of a member, like an interrupted download.
    shutil.copy(os.path.join(archives[0], "VOCtrainval_11-May-2012.tar"), tar)
    os.truncate(tar, os.path.getsize(tar) * 6 // 10)
  data_dir = str(tmp_path / "tfds")
  cfg = _cfg(data_dir, str(manual), "2012")
  with pytest.raises(datasets.DatasetError, match=match):
    datasets.prepare(cfg)
  assert not datasets._builder(cfg).is_prepared()
  left = [f for _, _, fs in os.walk(data_dir) for f in fs if "array_record" in f]
  assert not left and not any("incomplete" in d for d, _, _ in os.walk(data_dir))
  # A retry with a good archive starts from scratch and succeeds.
  shutil.copy(os.path.join(archives[0], "VOCtrainval_11-May-2012.tar"), tar)
  assert datasets.prepare(cfg).info.splits["train"].num_examples == 10


def test_truncated_tar_names_the_archive(tmp_path, archives):
  _prepare_fails(tmp_path, archives, r"VOCtrainval_11-May-2012\.tar.*truncated or corrupt")


def test_corrupt_jpeg_names_the_member(tmp_path, archives):
  bad_id = fabricate.VOC_VAL[2]
  _prepare_fails(tmp_path, archives, rf"tar:VOCdevkit/VOC2012/JPEGImages/{bad_id}\.jpg: not a "
                 "readable image", corrupt_jpeg=bad_id)


def test_label_size_mismatch_names_the_label(tmp_path, archives):
  bad_id = fabricate.VOC_TRAIN[4]
  _prepare_fails(tmp_path, archives, rf"SegmentationClass/{bad_id}\.png: label is \d+x\d+ but "
                 f"its image .*{bad_id}.jpg", wrong_size_label=bad_id)


def test_extracted_directories_work_like_the_archives(archives, tmp_path):
  import tarfile

  manual = tmp_path / "manual"
  manual.mkdir()
  for name in ("VOCtrainval_11-May-2012.tar", "benchmark.tgz"):
    with tarfile.open(os.path.join(archives[0], name)) as tar:
      tar.extractall(manual, filter="data")
  assert sorted(os.listdir(manual)) == ["VOCdevkit", "benchmark_RELEASE"]
  builder = datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual), "2012_aug"))
  assert set(_examples(builder, "train")) == set(fabricate.TRAINAUG)


def test_registered():
  assert {"shapes", "voc_seg", "folder"} <= set(datasets.dataset_names())


def test_missing_member_refused_before_writing(tmp_path, archives):
  import tarfile

  manual = tmp_path / "manual"
  manual.mkdir()
  drop = f"VOCdevkit/VOC2012/SegmentationClass/{fabricate.VOC_VAL[-1]}.png"
  with tarfile.open(os.path.join(archives[0], "VOCtrainval_11-May-2012.tar")) as src, \
       tarfile.open(manual / "VOCtrainval_11-May-2012.tar", "w") as dst:
    for member in src.getmembers():
      if member.name != drop:
        dst.addfile(member, src.extractfile(member))
  with pytest.raises(datasets.DatasetError, match=f"1 listed files missing.*{drop}"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual), "2012"))
