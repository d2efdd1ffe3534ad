"""mmsegmentation 1.2.2's recipe pieces shared by the voc_*, ade20k_* and cityscapes_* experiments.

Its configs differ between datasets only in the data, crop, rescale base,
iterations, batch and test Resize; everything else is common: the train pipeline
(RandomResize 0.5-2.0 of the base size, RandomCrop with cat_max_ratio 0.75,
RandomFlip 0.5, PhotoMetricDistortion, padding to the crop), the CE summed over
every pixel, and the test protocol: each image resized keep-ratio within the test
scale, logits resized back to the original size (eval.protocol=resize). The R50-D8
recipes add SGD lr 0.01 momentum 0.9 weight decay 5e-4 with poly decay (power 0.9)
to 1e-4 and an FCN aux head (loss 0.4) with whole inference (`resnet_recipe`); the
SegFormer ones their own (_segformer.py).

Variants shared by every such experiment:
  `smoke`: the same model and step, on the embedded `shapes` data at 32x32, for a
           few steps, so the whole path runs on a CPU in seconds (no dataset needed);
  `tv`: torchvision's heads and 7x7 stem (ResNet experiments);
  `loss=NAME`: train with another registered loss.
"""

from __future__ import annotations

import ml_collections

from experiments.base import LOSS_VARIANT, apply_loss_variant, get_base_config
from jaxseg.config.loading import parse_variant

VARIANT_FLAGS = {"smoke"}
RESNET_VARIANT_FLAGS = VARIANT_FLAGS | {"tv"}  # Those of resnet_experiment's experiments.


def train_augment(crop_size: tuple, base_size: tuple) -> dict:
  """`augment` values of mmseg's train pipeline (configs/_base_/datasets/*.py): the `voc`
  preset (mmseg's standard pipeline, the same for every dataset), RandomResize(scale=
  base_size, ratio_range=(0.5, 2.0)), RandomCrop(crop_size, cat_max_ratio=0.75),
  RandomFlip 0.5, PhotoMetricDistortion's defaults, and the data preprocessor's padding
  (mean colour: 0 once normalised)."""
  return dict(preset="voc", crop_size=tuple(crop_size),
              rescale=dict(scale_range=(0.5, 2.0), base_size=tuple(base_size)),
              crop=dict(cat_max_ratio=0.75, image_pad="mean"), flip_prob=0.5,
              photometric=dict(brightness_delta=32.0, contrast_range=(0.5, 1.5),
                               saturation_range=(0.5, 1.5), hue_delta=18))


def recipe(*, data_name: str, crop_size: tuple, base_size: tuple, steps: int, batch_size: int,
           eval_every: int, test_scale: tuple, eval_batch_size: int
           ) -> ml_collections.ConfigDict:
  """A config with mmseg's shared data, loss and test settings and the dataset's own (see
  the module doc); the model and optimizer are the experiment's (`resnet_experiment`,
  _segformer.py)."""
  c = get_base_config()
  c.data.name = data_name
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.worker_count = 8  # Image decoding + rescale at these crops needs parallel workers.
  c.augment.update(train_augment(crop_size, base_size))
  # mmseg 1.x CrossEntropyLoss(avg_non_ignore=False): the summed CE over every pixel.
  c.loss.cross_entropy = dict(avg_non_ignore=False)
  c.train.steps = steps
  c.train.batch_size = batch_size  # The config name's GPUs x per-GPU batch.
  c.train.log_every = 50
  c.train.eval_every = eval_every  # mmseg's val_interval.
  c.train.checkpoint_every = eval_every
  c.eval.batch_size = eval_batch_size
  c.eval.mode = "whole"  # mmseg's test_cfg=dict(mode='whole').
  c.eval.protocol = "resize"  # The test_pipeline's Resize(scale, keep_ratio=True).
  c.eval.resize_scale = tuple(test_scale)
  return c


def resnet_recipe(c: ml_collections.ConfigDict) -> None:
  """mmseg's R50-D8 model and optimizer settings on `c`: output stride 8, aux FCN head
  (loss weight 0.4), dropout 0.1 in both heads, SGD lr 0.01 momentum 0.9 wd 5e-4, poly
  0.9 to 1e-4."""
  c.model.backbone = dict(output_stride=8)
  # Both heads' dropout_ratio (a head without one, torchvision's DeepLabHead, drops it).
  c.model.head = dict(dropout=0.1)
  c.model.aux_head = dict(enabled=True, dropout=0.1)
  c.loss.aux_weight = 0.4  # mmseg's auxiliary FCNHead loss_weight (decode head: 1.0).
  c.optim.name = "sgd"
  c.optim.lr = 0.01
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "poly"
  c.optim.poly = dict(power=0.9, end_lr=1e-4)
  c.optim.warmup_steps = 0


def apply_smoke(c: ml_collections.ConfigDict) -> None:
  """Shrinks a recipe to seconds on a CPU: same model, shapes data, tiny crops."""
  c.data.name = "shapes"
  c.data.config = ""
  c.data.eval_split = "validation[:32]"
  c.data.worker_count = 0
  c.augment.preset = "scale_crop_flip"  # The same ops (no photometric) at a tiny size.
  c.augment.crop_size = (32, 32)
  c.augment.rescale.base_size = ()  # Rescale relative to the 64x64 original.
  c.augment.crop.cat_max_ratio = 1.0
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


def resnet_experiment(c: ml_collections.ConfigDict, model_name: str, variant: str
                      ) -> ml_collections.ConfigDict:
  """`c` with a ResNet-50-v1c segmentor; variants `smoke`, `tv`, `loss=NAME`.

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
  resnet_recipe(c)
  tv = "tv" in flags
  c.model.name = model_name if tv else f"mmseg_{model_name}"
  # mmseg's ResNet-v1c; it zero-inits each block's last BN when it starts from scratch.
  c.model.backbone.update(deep_stem=not tv, zero_init_residual=not tv)
  c.model.backbone_weights = "torchvision://resnet50" if tv else "open-mmlab://resnet50_v1c"
  apply_loss_variant(c, options)
  if "smoke" in flags:
    apply_smoke(c)
  return c
