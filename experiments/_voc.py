"""The shared PASCAL VOC 2012 recipe of the `voc_*` experiments.

mmsegmentation's 20k-iteration VOC schedule (configs/_base_/schedules/schedule_20k.py,
datasets/pascal_voc12_aug.py): trainaug (10582 images), 512x512 crops of images
rescaled by 0.5-2.0 around 2048x512, flip, photometric distortion; batch 16,
SGD lr 0.01 momentum 0.9 weight decay 5e-4, poly decay (power 0.9) to 1e-4.
Evaluated on the 1449 val images with mmseg's test pipeline (eval.protocol=resize):
each image resized keep-ratio to short side 512 (long side <= 2048), whole-image
inference, logits resized back to the original size. The pieces every mmseg
recipe shares, and the variants (`smoke`, `loss=NAME`), are in _mmseg.py.
"""

from __future__ import annotations

import ml_collections

from experiments import _mmseg

VARIANT_FLAGS = _mmseg.VARIANT_FLAGS
apply_smoke = _mmseg.apply_smoke


def mmseg_voc_augment() -> dict:
  """`augment` values of mmseg's VOC recipe (configs/_base_/datasets/pascal_voc12.py)."""
  return _mmseg.train_augment(crop_size=(512, 512), base_size=(2048, 512))


def voc_config() -> ml_collections.ConfigDict:
  c = _mmseg.recipe(data_name="voc_seg", crop_size=(512, 512), base_size=(2048, 512),
                    steps=20_000, batch_size=16, eval_every=2_000, test_scale=(2048, 512),
                    eval_batch_size=16)
  c.data.config = "2012_aug"
  # Put VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz in data.manual_dir
  # (default <data.dir>/downloads/manual); see docs/data.md.
  return c


def resnet_experiment(model_name: str, variant: str) -> ml_collections.ConfigDict:
  """A ResNet-50-v1c segmentor with the VOC recipe (_mmseg.resnet_experiment)."""
  return _mmseg.resnet_experiment(voc_config(), model_name, variant)
