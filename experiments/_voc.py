"""The shared PASCAL VOC 2012 recipe of the `voc_*` experiments.

mmsegmentation's 20k-iteration VOC schedule (configs/_base_/schedules/schedule_20k.py,
datasets/pascal_voc12_aug.py): trainaug (10582 images), 512x512 crops of images
rescaled by 0.5-2.0 around 2048x512, flip, photometric distortion; batch 16,
SGD lr 0.01 momentum 0.9 weight decay 5e-4, poly decay (power 0.9) to 1e-4.
Evaluated on the 1449 val images with mmseg's test pipeline (eval.protocol=resize):
each image resized keep-ratio to short side 512 (long side <= 2048), whole-image
inference, logits resized back to the original size.

Every voc experiment shares two variants:
  `smoke`: the same model and step, on the embedded `shapes` data at 32x32, for a
           few steps, so the whole path runs on a CPU in seconds (no VOC needed);
  `loss=NAME`: train with another registered loss.
"""

from __future__ import annotations

import ml_collections

from experiments.base import LOSS_VARIANT, apply_loss_variant, get_base_config
from jaxseg.config import parse_variant

VARIANT_FLAGS = {"smoke"}
RESNET_VARIANT_FLAGS = VARIANT_FLAGS | {"tv"}  # The ResNet experiments' (resnet_experiment).


def mmseg_voc_augment() -> dict:
  """`augment` values of mmseg's VOC recipe (configs/_base_/datasets/pascal_voc12.py):
  the `voc` preset, RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0)), RandomCrop
  512x512 with cat_max_ratio 0.75, RandomFlip 0.5, PhotoMetricDistortion's defaults,
  and the data preprocessor's padding (mean colour: 0 once normalised)."""
  return dict(preset="voc", crop_size=(512, 512), base_size=(2048, 512), scale_range=(0.5, 2.0),
              cat_max_ratio=0.75, flip_prob=0.5, image_pad="mean", brightness_delta=32.0,
              contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta=18)


def voc_config() -> ml_collections.ConfigDict:
  c = get_base_config()
  c.data.name = "voc_seg"
  c.data.config = "2012_aug"
  # Put VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz in data.manual_dir
  # (default <data.dir>/downloads/manual); see docs/data.md.
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.worker_count = 8  # JPEG decoding + rescale at 512 crops needs parallel workers.
  # The `voc` preset with mmseg's values: rescale 0.5-2.0 of 2048x512, 512 crop with
  # cat_max_ratio 0.75, flip, photometric distortion, mean padding.
  c.augment.update(mmseg_voc_augment())
  c.model.output_stride = 8
  c.model.aux_head = True
  c.model.dropout = 0.1
  c.loss.aux_weight = 0.4  # mmseg's auxiliary FCNHead loss_weight (decode head: 1.0).
  # mmseg 1.x CrossEntropyLoss(avg_non_ignore=False): the summed CE over every pixel.
  c.loss.ce_avg_non_ignore = False
  c.optim.name = "sgd"
  c.optim.lr = 0.01
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "poly"
  c.optim.poly_power = 0.9
  c.optim.end_lr = 1e-4
  c.optim.warmup_steps = 0
  c.train.steps = 20_000
  c.train.batch_size = 16
  c.train.log_every = 50
  c.train.eval_every = 2_000
  c.train.checkpoint_every = 2_000
  c.eval.batch_size = 16
  c.eval.protocol = "resize"  # mmseg's pascal_voc12.py test_pipeline.
  c.eval.resize_scale = (2048, 512)
  return c


def apply_smoke(c: ml_collections.ConfigDict) -> None:
  """Shrinks a voc config to seconds on a CPU: same model, shapes data, tiny crops."""
  c.data.name = "shapes"
  c.data.config = ""
  c.data.eval_split = "validation[:32]"
  c.data.worker_count = 0
  c.augment.preset = "scale_crop_flip"  # The voc ops (no photometric) at a tiny size.
  c.augment.crop_size = (32, 32)
  c.augment.base_size = ()  # Rescale relative to the 64x64 original.
  c.augment.cat_max_ratio = 1.0
  c.model.backbone_weights = "none"  # Offline: no ImageNet weights for a smoke run.
  c.model.weights = ""
  c.train.steps = 2
  c.train.batch_size = 8
  c.train.log_every = 1
  c.train.eval_every = 0
  c.train.checkpoint_every = 2
  c.eval.batch_size = 16
  c.eval.resize_scale = (128, 48)  # The resize protocol still runs: 64x64 -> 48x48 ...
  c.eval.resize_bucket = 32  # ... on a 64x64 canvas.


def resnet_experiment(model_name: str, variant: str) -> ml_collections.ConfigDict:
  """A ResNet-50-v1c segmentor with the VOC recipe; variants `smoke`, `tv`, `loss=NAME`.

  `model_name` is the torchvision-style name (`fcn_resnet50`); the recipe trains
  `mmseg_<model_name>`, mmsegmentation's heads (jaxseg/models/mmseg_heads.py).
  The backbone starts from mmsegmentation's ImageNet weights, open-mmlab://resnet50_v1c
  (its `stem.0/3/6` keys map onto the deep stem), downloaded once into
  `model.weights_dir`; without them the run refuses to start, unless
  `--set model.backbone_weights=none` (from scratch, on purpose). `tv` keeps
  torchvision's heads and 7x7 stem instead and starts from torchvision://resnet50.
  """
  flags, options = parse_variant(variant, known_flags=RESNET_VARIANT_FLAGS,
                                 known_keys=LOSS_VARIANT)
  c = voc_config()
  c.model.name = model_name if "tv" in flags else f"mmseg_{model_name}"
  c.model.deep_stem = "tv" not in flags
  # mmseg's ResNet zero-inits each block's last BN when it starts from scratch.
  c.model.zero_init_residual = "tv" not in flags
  c.model.backbone_weights = ("open-mmlab://resnet50_v1c" if c.model.deep_stem
                              else "torchvision://resnet50")
  apply_loss_variant(c, options)
  if "smoke" in flags:
    apply_smoke(c)
  return c
