"""Shared defaults. Every key the code reads exists here (or in the experiment)."""

from __future__ import annotations

import ml_collections

from jaxseg import losses
from jaxseg.models.zoo_config import zoo_defaults

# Variant options shared by experiments: `--exp NAME:loss=dice` trains with that loss.
LOSS_VARIANT = {"loss": set(losses.LOSSES.names())}


def apply_loss_variant(cfg: ml_collections.ConfigDict, options: dict[str, str]) -> None:
  """Applies the `loss=NAME` variant option (parsed with LOSS_VARIANT) to `cfg`."""
  if "loss" in options:
    cfg.loss.terms = options["loss"]


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
  # Weighted sum of registered losses, 'name:weight,...' (a bare name = weight 1),
  # validated at config load: e.g. --set loss.terms=cross_entropy:1,dice:0.5
  c.loss.terms = "cross_entropy"
  c.loss.aux_weight = 0.4  # Weight of the auxiliary head's loss (same terms), if any.
  c.loss.class_weights = ()  # Per-class CE weights (torch's weighted mean); () = uniform.
  # cross_entropy's denominator: True = the non-ignored pixels (their class weights'
  # sum; torch, mmseg avg_non_ignore=True); False = every pixel of the batch, ignored
  # ones included (mmseg 1.x's default avg_non_ignore=False; see docs/losses_metrics.md).
  c.loss.ce_avg_non_ignore = True
  c.loss.label_smoothing = 0.0  # CE family (cross_entropy, ohem, topk).
  c.loss.binary = False  # binary_cross_entropy: one foreground logit instead of one-vs-all.
  c.loss.focal_gamma = 2.0
  c.loss.focal_alpha = 1.0  # Scales the softmax focal loss (alpha_t = alpha for every class).
  c.loss.dice_smooth = 1.0  # Added to numerator and denominator of Dice and Tversky.
  c.loss.dice_mode = "per_class"  # per_class (mean of class Dice) | global (one pooled Dice).
  c.loss.tversky_alpha = 0.3  # Weight of false positives.
  c.loss.tversky_beta = 0.7  # Weight of false negatives.
  c.loss.lovasz_per_image = False  # Lovász per image then mean, or over the whole batch.
  c.loss.ohem_thresh = 0.7  # Keep pixels whose true-class probability is below this ...
  c.loss.ohem_min_kept = 100000  # ... but at least this many per image (mmseg semantics).
  c.loss.topk_ratio = 0.25  # topk: mean CE of this fraction of the hardest valid pixels.

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
  c.eval.mode = "whole"  # whole | slide | aug (multi-scale + flip); docs/losses_metrics.md.
  # native: each image at its own size on the dataset's canvas. resize: mmseg's test
  # pipeline: the image resized keep-ratio within resize_scale (cv2 bilinear, on the
  # host), logits resized back to the label's original size before the argmax.
  c.eval.protocol = "native"
  c.eval.resize_scale = (2048, 512)  # resize: (long, short) bound; mmseg's VOC/ADE value.
  # resize: each batch's canvas has sides rounded up to this (a multiple of the model's
  # output stride): one compile per distinct canvas; padding is masked, never counted.
  c.eval.resize_bucket = 256
  c.eval.crop_size = (512, 512)  # slide: window (H, W).
  c.eval.stride = (341, 341)  # slide: window step (H, W).
  c.eval.scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # aug: input resize factors.
  c.eval.flip = True  # aug: also average each scale's horizontally flipped view.
  c.eval.size_divisor = 32  # Rescaled / predicted inputs are padded to multiples of this.
  c.eval.checkpoint = ""  # --mode eval/predict: '' = latest, a step, 'best', or a path.
  c.eval.report_images = 8  # First N val images shown in the report's prediction grid.

  c.predict = ml_collections.ConfigDict()
  c.predict.overlay_alpha = 0.5  # Weight of the class colours in overlays (predict, reports).
  c.predict.batch_size = 8  # Global; divisible by the device count.
  # Images are padded to sides rounded up to this (a multiple of the model's stride),
  # so a folder of varied sizes compiles once per bucket; outputs keep the original size.
  c.predict.bucket = 64
  # Memory bound of one device call: canvas pixels per device (batches shrink to fit);
  # an image whose canvas alone exceeds it is predicted in overlapping tiles.
  c.predict.max_pixels_per_device = 2048 * 2048
  c.predict.tile_size = (1024, 1024)  # (H, W) of those tiles ...
  c.predict.tile_stride = (768, 768)  # ... and their step; overlaps average probabilities.
  return c
