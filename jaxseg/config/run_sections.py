"""The base config: the run sections (`train`, `eval`, `predict`, `browse`) with their defaults
and meaning, and their checks, run at config load before any data or compile.

`data`, `augment`, `model`, `loss` and `optim` are component sections: here they
hold only their choice keys (`model.name`, ...); the config loader fills in the
keys the chosen components take, with the defaults of their signatures
(jaxseg/config/sections.py), so each component's keys and defaults live with its code.
Nothing here imports the code that runs a section: config loading stays a layer
below the run.
"""

from __future__ import annotations

import math

import ml_collections

from jaxseg.config.checks import Checker

# The sections filled from their chosen components (config.resolve.component_sections).
COMPONENT_SECTIONS = ("data", "augment", "model", "loss", "optim")
EVAL_MODES = ("whole", "slide", "aug")  # aug = multi-scale (+ flip) test-time augmentation.
# native: the image at its own size on the dataset's canvas; resize: mmseg's test pipeline.
EVAL_PROTOCOLS = ("native", "resize")


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = ""  # Filled in by the loader with 'name[:variant]'.
  c.seed = 0

  # Component sections: their choices; the keys those take come from jaxseg/config/sections.py.
  c.data = ml_collections.ConfigDict({"name": "shapes"})  # python run.py --list
  c.augment = ml_collections.ConfigDict({"preset": "flip"})
  c.model = ml_collections.ConfigDict({"name": "unet"})
  c.loss = ml_collections.ConfigDict({"terms": "cross_entropy"})
  c.optim = ml_collections.ConfigDict({"name": "sgd", "schedule": "poly"})

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
  c.train.tensorboard = True  # Also write TensorBoard event files to <workdir>/tensorboard.
  # (start, end): a jax.profiler trace of steps start..end-1 into <workdir>/profile/
  # (TensorBoard or ui.perfetto.dev); () = none. E.g. --set train.profile_steps=(10,15).
  c.train.profile_steps = ()

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
  # slide: windows of each image run through the model together; memory grows with it.
  c.eval.windows_per_step = 1
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

  c.browse = ml_collections.ConfigDict()
  c.browse.count = 8  # --mode browse: training (augmented) and validation examples shown.
  return c


def round_up(n: int, divisor: int) -> int:
  return math.ceil(n / divisor) * divisor


def validate_train(train_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `train` section."""
  c = Checker(train_cfg, "train")
  for key in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
              "grad_accum_steps"):
    c.count(key)
  c.count("eval_every", min=0)  # 0 = only at the end.
  c.number("ema_decay", min=0, below=1)
  if train_cfg.batch_size % train_cfg.grad_accum_steps:
    c.fail("batch_size", f"a multiple of train.grad_accum_steps={train_cfg.grad_accum_steps}")
  _validate_profile_steps(train_cfg)


def _validate_profile_steps(train_cfg: ml_collections.ConfigDict) -> None:
  """() = off, or two ints 1 <= start < end <= train.steps (end excluded)."""
  steps = train_cfg.profile_steps
  if steps == () or steps is None:
    return
  Checker(train_cfg, "train").ints(
      "profile_steps", (2,), f"() or two ints (start, end), 1 <= start < end <= "
      f"train.steps={train_cfg.steps}, e.g. (10, 15) for steps 10..14", min=1,
      max=train_cfg.steps)
  if steps[0] >= steps[1]:
    Checker(train_cfg, "train").fail("profile_steps", "start < end, e.g. (10, 15)")


def validate_eval(eval_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `eval` section."""
  c = Checker(eval_cfg, "eval")
  c.choice("mode", EVAL_MODES)
  c.choice("protocol", EVAL_PROTOCOLS)
  c.count("batch_size")
  c.ints("resize_scale", (2,), "two positive ints (long, short), mmseg's Resize scale", min=1)
  c.count("resize_bucket")
  for key in ("crop_size", "stride"):
    c.ints(key, (2,), "two positive ints (H, W)", min=1)
  c.count("windows_per_step")
  c.numbers("scales", range(1, 1 << 16), "one or more resize factors > 0", above=0)
  c.count("size_divisor")
  c.count("report_images", min=0)


def validate_predict(predict_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `predict` section."""
  c = Checker(predict_cfg, "predict")
  c.count("batch_size")
  c.count("bucket")
  c.number("overlay_alpha", min=0, max=1)
  c.count("max_pixels_per_device")
  c.ints("tile_size", (2,), "two positive ints (H, W)", min=1)
  c.ints("tile_stride", (2,), "two positive ints (H, W)", min=1)
  if any(s > t for s, t in zip(predict_cfg.tile_stride, predict_cfg.tile_size)):
    c.fail("tile_stride", f"steps no larger than predict.tile_size="
                          f"{tuple(predict_cfg.tile_size)} (larger ones leave gaps)")
  tile_pixels = math.prod(round_up(n, predict_cfg.bucket) for n in predict_cfg.tile_size)
  if tile_pixels > predict_cfg.max_pixels_per_device:
    c.fail("tile_size", f"tiles within predict.max_pixels_per_device="
                        f"{predict_cfg.max_pixels_per_device} (rounded up to predict.bucket="
                        f"{predict_cfg.bucket} these have {tile_pixels} pixels)")


def validate_browse(browse_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load on a bad `browse` section."""
  Checker(browse_cfg, "browse").count("count")
