"""ade20k on a fabricated ADEChallengeData2016.zip in the real layout, through datasets.prepare
and the grain eval pipeline; labels, class names and palette against mmseg's own."""

import os
import zipfile

import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets, pipeline
from jaxseg.data.builders import ade20k
from tests import fabricate_zips
from tests.mmseg_oracle import require

ZIP = "ADEChallengeData2016.zip"


def _cfg(data_dir, manual_dir, *more):
  return build_config("demo", ["data.name=ade20k", f"data.dir={data_dir}",
                               f"data.manual_dir={manual_dir}", *more]).data


def _prepare_small(data_cfg):
  """prepare(), with the fabricated archive's split sizes standing in for the published ones."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(ade20k, "EXPECTED_COUNTS", dict(fabricate_zips.ADE_COUNTS))
    return datasets.prepare(data_cfg)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  manual = tmp_path_factory.mktemp("manual")
  labels = fabricate_zips.ade_zip(str(manual / ZIP))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return _prepare_small(_cfg(data_dir, str(manual))), labels, str(manual)


def test_splits_ids_and_labels_reduced(prepared):
  builder, labels, _ = prepared
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation")} == \
      fabricate_zips.ADE_COUNTS
  seen = set()
  for split, offset in (("train", 0), ("validation", fabricate_zips.ADE_COUNTS["train"])):
    source = builder.as_data_source(split)
    for ex in (source[i] for i in range(len(source))):
      stem = ex["id"].decode()
      ade_HW = labels[(split, stem)]
      expected = np.where(ade_HW == 0, 255, ade_HW.astype(int) - 1)
      np.testing.assert_array_equal(ex["label"][..., 0], expected, err_msg=stem)
      assert ex["image"].shape[:2] == ade_HW.shape
      k = offset + int(stem[-8:]) - 1  # Its own image, by the fabricated colour.
      assert round((float(ex["image"][..., 0].mean()) - 4) / 8) == k
      seen |= set(np.unique(ex["label"]).tolist())
  assert seen == set(range(150)) | {255}  # Every class and the ignored "other".


def test_metadata_and_canvas(prepared):
  builder, labels, _ = prepared
  meta = datasets.meta_of(builder)
  assert meta.num_classes == 150 and meta.ignore_index == 255
  assert meta.class_names[0] == "wall" and meta.palette_K3.shape == (150, 3)
  largest = np.max([label.shape for label in labels.values()], axis=0)
  assert meta.eval_canvas_HW == tuple(int(-(-n // 32) * 32) for n in largest)


def test_read_back_through_the_grain_eval_pipeline(prepared):
  builder, labels, _ = prepared
  cfg = build_config("demo", ["data.name=ade20k", "eval.batch_size=2", "data.worker_count=0"])
  meta = datasets.meta_of(builder)
  source = builder.as_data_source("validation")
  batches = list(pipeline.eval_batches(source, cfg, meta.eval_canvas_HW, 255))
  assert len(batches) == 2 and int(sum(b["example_mask"].sum() for b in batches)) == 3
  first = batches[0]
  h, w = first["size_HW"][0]
  ade_HW = labels[("validation", source[0]["id"].decode())]
  np.testing.assert_array_equal(first["label"][0, :h, :w], np.where(ade_HW == 0, 255, ade_HW - 1))
  assert (first["label"][0, h:] == 255).all() and first["image"].shape[1:3] == meta.eval_canvas_HW


@pytest.mark.parity
# The config's spelling, LoadAnnotations(reduce_zero_label=True), which mmseg 1.2.2 warns about.
@pytest.mark.filterwarnings("ignore:`reduce_zero_label` will be deprecated")
def test_reduce_zero_label_is_mmsegs_load_annotations(tmp_path):
  require("mmseg")
  from mmseg.datasets.transforms import LoadAnnotations

  label_HW = np.random.default_rng(0).integers(0, 151, (20, 31)).astype(np.uint8)
  label_HW.reshape(-1)[:151] = np.arange(151)
  path = tmp_path / "ADE_val_00000001.png"
  path.write_bytes(fabricate_zips._png(label_HW, "L"))
  results = LoadAnnotations(reduce_zero_label=True)(
      {"seg_map_path": str(path), "reduce_zero_label": True, "seg_fields": []})
  np.testing.assert_array_equal(ade20k.reduce_zero_label(label_HW), results["gt_seg_map"])
  assert set(np.unique(label_HW)) == set(range(151))  # Every id was exercised.


@pytest.mark.parity
def test_class_names_and_palette_are_mmsegs():
  require("mmseg")
  from mmseg.datasets import ADE20KDataset

  assert ade20k.CLASS_NAMES == ADE20KDataset.METAINFO["classes"]
  assert [list(c) for c in ade20k.PALETTE] == [list(c) for c in ADE20KDataset.METAINFO["palette"]]


def test_missing_zip_is_one_line_naming_file_size_and_place(tmp_path):
  manual = tmp_path / "manual"
  with pytest.raises(datasets.DatasetMissingError) as e:
    datasets.prepare(_cfg(str(tmp_path / "tfds"), str(manual)))
  message = str(e.value)
  assert "\n" not in message and f"{manual}/{ZIP}" in message
  assert "967,382,037 bytes" in message and f"data.manual_dir={manual}" in message
  assert "data.ade20k.download=True" in message and isinstance(e.value, FileNotFoundError)


def test_published_counts_are_required(tmp_path, prepared):
  """A complete-looking zip with fewer pairs than ADE's 20,210 / 2,000 is refused, naming it."""
  _, _, manual = prepared
  with pytest.raises(datasets.DatasetError, match=rf"{ZIP}: 5 training image/annotation pairs, "
                     "expected 20,210; is it the complete ADEChallengeData2016.zip"):
    datasets.prepare(_cfg(str(tmp_path / "tfds"), manual))


@pytest.mark.parametrize("damage", ["drop", "truncate"])
def test_damaged_zip_refused_before_writing(tmp_path, damage):
  manual = tmp_path / "manual"
  manual.mkdir()
  dropped = "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
  fabricate_zips.ade_zip(str(manual / ZIP), drop=dropped if damage == "drop" else "")
  if damage == "truncate":  # An interrupted download: the central directory is gone.
    os.truncate(manual / ZIP, os.path.getsize(manual / ZIP) * 7 // 10)
    match = rf"{ZIP}: truncated or corrupt archive"
  else:
    match = rf"{ZIP}: 1 validation files lack their image or annotation.*ADE_val_00000002.jpg"
  data_dir = tmp_path / "tfds"
  with pytest.raises(datasets.DatasetError, match=match):
    _prepare_small(_cfg(str(data_dir), str(manual)))
  assert not [f for _, _, fs in os.walk(data_dir) for f in fs if "array_record" in f]


def test_extracted_directory_works_like_the_zip(tmp_path, prepared):
  _, labels, manual = prepared
  extracted = tmp_path / "manual"
  with zipfile.ZipFile(os.path.join(manual, ZIP)) as z:
    z.extractall(extracted)
  builder = _prepare_small(_cfg(str(tmp_path / "tfds"), str(extracted)))
  ex = builder.as_data_source("train")[2]
  ade_HW = labels[("train", ex["id"].decode())]
  np.testing.assert_array_equal(ex["label"][..., 0], np.where(ade_HW == 0, 255, ade_HW - 1))

