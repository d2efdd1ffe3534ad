"""Each mmseg recipe's data side equals mmseg 1.2.2's shipped config: train pipeline, data
preprocessor, classes, label reduction, iterations, batch and test protocol.

Loss, optimizer and schedule of the same recipes: tests/test_parity_loss.py (MMSEG_CONFIGS).
"""

import re

import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from tests.mmseg_oracle import config_path, require
from tests.test_parity_loss import MMSEG_CONFIGS, SEGFORMER

# VOC's pipeline and preprocessor are checked draw by draw in tests/test_parity_augment.py.
NEW = ["ade20k_deeplabv3plus", "cityscapes_deeplabv3plus"] + SEGFORMER
DATASET_CLASSES = {"voc_seg": 21, "ade20k": 150, "cityscapes": 19}
# Datasets whose builder stores labels as LoadAnnotations(reduce_zero_label=True) gives them.
REDUCED_ZERO_LABEL = {"ade20k"}


def _config(name):
  require("mmseg")
  from mmengine.config import Config

  return Config.fromfile(config_path(MMSEG_CONFIGS[name]))


@pytest.mark.parity
@pytest.mark.parametrize("name", NEW)
def test_train_pipeline_and_preprocessor_are_mmsegs(name):
  mm, ours = _config(name), build_config(name)
  from mmseg.datasets.transforms import PhotoMetricDistortion

  a = ours.augment
  assert mm.train_dataloader.dataset.pipeline == mm.train_pipeline  # The one trained with.
  steps = {t["type"]: t for t in mm.train_pipeline}
  assert list(steps) == ["LoadImageFromFile", "LoadAnnotations", "RandomResize", "RandomCrop",
                         "RandomFlip", "PhotoMetricDistortion", "PackSegInputs"]
  assert a.preset == "voc"  # mmseg's standard pipeline, the same ops for every dataset.
  resize, crop = steps["RandomResize"], steps["RandomCrop"]
  assert tuple(resize["scale"]) == tuple(a.rescale.base_size) and resize["keep_ratio"]
  assert tuple(resize["ratio_range"]) == tuple(a.rescale.scale_range)
  assert tuple(crop["crop_size"]) == tuple(a.crop_size) == tuple(mm.crop_size)
  assert crop["cat_max_ratio"] == a.crop.cat_max_ratio
  assert steps["RandomFlip"]["prob"] == a.flip_prob
  photo = PhotoMetricDistortion(**{k: v for k, v in steps["PhotoMetricDistortion"].items()
                                   if k != "type"})
  ours_photo = a.photometric
  assert (photo.brightness_delta, photo.hue_delta) == (ours_photo.brightness_delta,
                                                       ours_photo.hue_delta)
  assert (photo.contrast_lower, photo.contrast_upper) == tuple(ours_photo.contrast_range)
  assert (photo.saturation_lower, photo.saturation_upper) == tuple(ours_photo.saturation_range)
  pre = mm.model.data_preprocessor
  assert tuple(pre["size"]) == tuple(a.crop_size) and pre["seg_pad_val"] == 255
  # 0 after normalising = the mean colour.
  assert pre["pad_val"] == 0 and a.crop.image_pad == "mean"
  assert tuple(pre["mean"]) == tuple(a.mean) and tuple(pre["std"]) == tuple(a.std)
  assert pre["bgr_to_rgb"]  # mmseg loads BGR; jaxseg's images are RGB throughout.


@pytest.mark.parity
@pytest.mark.parametrize("name", sorted(MMSEG_CONFIGS))
def test_dataset_classes_and_label_reduction_are_mmsegs(name):
  mm, ours = _config(name), build_config(name)
  if mm.model.get("auxiliary_head"):
    assert mm.model.decode_head.num_classes == mm.model.auxiliary_head.num_classes
  assert mm.model.decode_head.num_classes == DATASET_CLASSES[ours.data.name]
  builder_cls = datasets.DATASETS.get(ours.data.name)
  assert builder_cls.__name__.lower().replace("seg", "") in mm.dataset_type.lower()
  for pipeline in (mm.train_pipeline, mm.test_pipeline):
    load = next(t for t in pipeline if t["type"] == "LoadAnnotations")
    assert bool(load.get("reduce_zero_label", False)) == (ours.data.name in REDUCED_ZERO_LABEL)


@pytest.mark.parity
@pytest.mark.parametrize("name", sorted(MMSEG_CONFIGS))
def test_schedule_batch_and_test_protocol_are_mmsegs(name):
  mm, ours = _config(name), build_config(name)
  gpus, per_gpu = map(int, re.search(r"_(\d+)xb(\d+)-", MMSEG_CONFIGS[name]).groups())
  assert per_gpu == mm.train_dataloader.batch_size and gpus * per_gpu == ours.train.batch_size
  assert mm.train_cfg.max_iters == ours.train.steps
  assert mm.train_cfg.val_interval == ours.train.eval_every
  test_cfg = mm.model.test_cfg
  assert test_cfg.mode == ours.eval.mode in ("whole", "slide")
  if test_cfg.mode == "slide":  # mmseg's (h, w) window and stride, as jaxseg's.
    assert tuple(test_cfg.crop_size) == tuple(ours.eval.crop_size)
    assert tuple(test_cfg.stride) == tuple(ours.eval.stride)
  resize = next(t for t in mm.test_pipeline if t["type"] == "Resize")
  assert resize["keep_ratio"] and ours.eval.protocol == "resize"
  assert tuple(resize["scale"]) == tuple(ours.eval.resize_scale)
  assert mm.val_evaluator.iou_metrics == ["mIoU"]


@pytest.mark.parity
@pytest.mark.parametrize("name", SEGFORMER)
def test_segformer_model_is_mmsegs(name):
  """MiT size, SegformerHead width, dropout and drop path of each config; the model itself
  (layers, LayerNorm eps, parameter counts) is checked in tests/test_parity_segformer.py."""
  from jaxseg.models.mit import MIT_SIZES, NUM_HEADS, PATCH_SIZES, SR_RATIOS

  mm, ours = _config(name), build_config(name)
  backbone, head = mm.model.backbone, mm.model.decode_head
  size = ours.model.name.removeprefix("segformer_")
  embed_dims, depths = MIT_SIZES[size]
  assert backbone.type == "MixVisionTransformer" and head.type == "SegformerHead"
  assert size == re.search(r"mit-(b\d)_", MMSEG_CONFIGS[name]).group(1)
  assert tuple(backbone.embed_dims * h for h in backbone.num_heads) == embed_dims
  assert tuple(backbone.num_layers) == depths and tuple(backbone.num_heads) == NUM_HEADS
  assert tuple(backbone.sr_ratios) == SR_RATIOS and tuple(backbone.patch_sizes) == PATCH_SIZES
  assert (backbone.drop_rate, backbone.attn_drop_rate) == (0.0, 0.0) and backbone.qkv_bias
  assert backbone.drop_path_rate == ours.model.backbone.drop_path_rate
  assert tuple(head.in_channels) == embed_dims and head.in_index == [0, 1, 2, 3]
  assert ours.model.head.style == "mmseg" and head.channels == ours.model.head.channels
  assert head.dropout_ratio == ours.model.head.dropout and not head.align_corners
  assert mm.model.get("auxiliary_head") is None


@pytest.mark.parametrize("name", ["ade20k_deeplabv3plus", "cityscapes_deeplabv3plus",
                                  "ade20k_segformer_b0", "cityscapes_segformer_b5"])
def test_smoke_variant_runs_on_embedded_data(name):
  full, smoke = build_config(name), build_config(f"{name}:smoke")
  assert smoke.model.name == full.model.name
  assert smoke.data.name == "shapes" and smoke.train.steps <= 4
  assert smoke.model.backbone_weights == "none" and smoke.eval.mode == full.eval.mode
