"""The shared ADE20K (SceneParse150) recipe of the `ade20k_*` experiments.

mmsegmentation's configs/_base_/datasets/ade20k.py + schedules/schedule_80k.py:
20,210 training images, 512x512 crops of images rescaled by 0.5-2.0 around
2048x512, flip, photometric distortion; labels with reduce_zero_label (the
`ade20k` builder stores them so: "other" -> 255, class k+1 -> k, 150 classes);
batch 16 (4 GPUs x 4), 80k iterations, validated every 8k. Evaluated on the
2,000 validation images with the test pipeline: Resize(2048, 512, keep_ratio),
whole inference, logits resized back (eval.protocol=resize). The rest is
mmseg's common recipe (_mmseg.py), variants included. The SegFormer recipes
(_segformer.py) take the same data at 160k iterations, validated every 16k.
"""

from __future__ import annotations

import ml_collections

from experiments import _mmseg


def ade20k_config(*, crop: int = 512, steps: int = 80_000, eval_every: int = 8_000
                  ) -> ml_collections.ConfigDict:
  """mmseg's ADE20K data and test settings; `crop` x `crop` crops with (2048, crop) as the
  rescale base and test scale (its 512x512 and 640x640 dataset configs alike)."""
  # Put ADEChallengeData2016.zip in data.manual_dir (default <data.dir>/downloads/manual),
  # or set data.ade20k.download=True; see docs/data.md.
  return _mmseg.recipe(data_name="ade20k", crop_size=(crop, crop), base_size=(2048, crop),
                       steps=steps, batch_size=16, eval_every=eval_every,
                       test_scale=(2048, crop),
                       # 150-class logits at each image's original size (up to the
                       # dataset's canvas) weigh more than VOC's 21: half VOC's batch.
                       eval_batch_size=8)


def resnet_experiment(model_name: str, variant: str) -> ml_collections.ConfigDict:
  """A ResNet-50-v1c segmentor with the ADE20K recipe (_mmseg.resnet_experiment)."""
  return _mmseg.resnet_experiment(ade20k_config(), model_name, variant)
