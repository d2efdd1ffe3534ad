"""The shared Cityscapes recipe of the `cityscapes_*` R50 experiments.

mmsegmentation's configs/_base_/datasets/cityscapes.py + schedules/schedule_80k.py:
2,975 gtFine training images (19 train-id classes), 512x1024 crops of images
rescaled by 0.5-2.0 around 2048x1024, flip, photometric distortion; batch 8
(4 GPUs x 2), 80k iterations, validated every 8k. Evaluated on the 500
validation images with the test pipeline: Resize(2048, 1024, keep_ratio) (the
images are 2048x1024 already), whole inference at 1024x2048 (the R50-D8 configs'
test_cfg mode='whole'), logits resized back (eval.protocol=resize). The rest is
mmseg's common recipe (_mmseg.py), variants included.
"""

from __future__ import annotations

import ml_collections

from experiments import _mmseg


def cityscapes_config() -> ml_collections.ConfigDict:
  # Put leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in data.manual_dir
  # (default <data.dir>/downloads/manual); see docs/data.md.
  return _mmseg.recipe(data_name="cityscapes", crop_size=(512, 1024), base_size=(2048, 1024),
                       steps=80_000, batch_size=8, eval_every=8_000, test_scale=(2048, 1024),
                       eval_batch_size=8)  # Whole 1024x2048 images: one per device on 8.


def resnet_experiment(model_name: str, variant: str) -> ml_collections.ConfigDict:
  """A ResNet-50-v1c segmentor with the Cityscapes recipe (_mmseg.resnet_experiment)."""
  return _mmseg.resnet_experiment(cityscapes_config(), model_name, variant)
