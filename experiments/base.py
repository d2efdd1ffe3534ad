"""Shared defaults. Every key the code reads exists here (or in the experiment)."""

from __future__ import annotations

import ml_collections

from jaxseg.models.zoo_config import zoo_defaults


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = ""  # Filled in by the loader with 'name[:variant]'.
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "shapes"  # A registered dataset (python run.py --list).
  c.data.config = ""  # Builder config, e.g. '2012_aug' for voc_seg.
  c.data.dir = "~/tensorflow_datasets"  # Where prepared ArrayRecord files live.
  c.data.manual_dir = ""  # Where manually downloaded archives are ('' = <dir>/downloads/manual).
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.worker_count = 0  # grain worker processes (0 = read in the main process).
  c.data.shuffle_seed = 0
  # voc_seg: fetch archives missing from manual_dir from their URLs (False: fail at
  # once, naming the file to put there; offline machines never wait on a download).
  c.data.download = False
  c.data.folder_root = ""  # folder: root of images/<split>/, labels/<split>/, classes.txt.
  # folder: RGB colour labels map this colour to the ignore index 255 (() = none).
  c.data.folder_ignore_rgb = (255, 255, 255)

  c.augment = ml_collections.ConfigDict()
  c.augment.preset = "flip"  # A registered augmentation preset.
  c.augment.crop_size = (64, 64)  # (H, W) of training crops.
  c.augment.flip_prob = 0.5  # Horizontal flip probability (presets with a flip).
  # Crops pad labels with the ignore index and images with 'zero' or 'mean' (the mean
  # colour, which normalises to 0 on device, as mmseg's pad-after-normalise does).
  c.augment.image_pad = "zero"
  # Re-draw a crop (up to 10 times, mmseg) while one class covers >= this fraction of
  # its non-ignore pixels or it holds a single class; 1.0 = off. mmseg's VOC: 0.75.
  c.augment.cat_max_ratio = 1.0
  # Rescale presets (scale_crop_flip, voc): a ratio drawn uniformly from scale_range,
  # applied to base_size=(long, short) mmseg-style (fit inside base_size*ratio, aspect
  # kept), or to the image's own size when base_size=().
  c.augment.scale_range = (0.5, 2.0)
  c.augment.base_size = (2048, 512)
  # Photometric distortion (voc always; scale_crop_flip when photometric=True), mmseg's
  # PhotoMetricDistortion: each part with p=0.5; hue_delta in OpenCV units (180 = a turn).
  c.augment.photometric = False
  c.augment.brightness_delta = 32.0
  c.augment.contrast_range = (0.5, 1.5)
  c.augment.saturation_range = (0.5, 1.5)
  c.augment.hue_delta = 18
  # Normalisation happens on device, on uint8 images, inside the jitted step.
  c.augment.mean = (123.675, 116.28, 103.53)  # ImageNet, in 0-255 units.
  c.augment.std = (58.395, 57.12, 57.375)

  c.model = ml_collections.ConfigDict()
  c.model.name = "unet"
  c.model.dtype = "float32"  # Compute dtype; params and logits stay float32.
  c.model.width = 16
  c.model.depth = 3
  c.model.dropout = 0.0
  c.model.update(zoo_defaults())  # Backbone/head keys of the ResNet/VGG zoo.

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "cross_entropy"
  c.loss.aux_weight = 0.4  # Weight of the auxiliary head's loss, when a model has one.

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"  # sgd | adam | adamw
  c.optim.lr = 0.01
  c.optim.momentum = 0.9  # sgd only
  c.optim.nesterov = False
  c.optim.b1 = 0.9  # adam/adamw
  c.optim.b2 = 0.999
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "poly"  # poly | cosine | constant, after linear warmup
  c.optim.poly_power = 0.9
  c.optim.end_lr = 0.0
  c.optim.warmup_steps = 0
  c.optim.clip_grad_norm = 0.0  # Clip gradients to this global norm (0 = off).
  c.optim.decay_norm_and_bias = True  # False: weight decay on kernels (ndim > 1) only.
  # Per-parameter-group lr multipliers: ((regex, multiplier), ...) matched with re.search
  # against '/'-joined param paths (e.g. 'head/Conv_0/kernel'); the first match wins.
  c.optim.lr_mult = ()

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 16  # Global batch over all devices and hosts.
  c.train.log_every = 50
  c.train.eval_every = 0  # 0 = only at the end.
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3  # The last N; the best-by-mIoU is kept apart (checkpoints_best/).
  c.train.grad_accum_steps = 1  # Micro-batches per step (batch_size is the sum of them).
  c.train.ema_decay = 0.0  # EMA of params, used for evaluation (0 = off).
  # A NaN/Inf loss or gradient: False stops the run (exit 4) naming the last good
  # checkpoint; True skips that update (params unchanged) and counts it.
  c.train.skip_nonfinite = False
  c.train.debug_nan_at_step = 0  # Testing only: make the loss NaN at this step (0 = never).
  c.train.tensorboard = True  # Also write TensorBoard event files to <workdir>/tensorboard.

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16  # Global; the last batch is padded and masked, never dropped.
  return c
