"""Class probabilities of padded image batches: whole image, sliding window, multi-scale + flip.

Shared by evaluation and prediction. Inputs are canvases (B, H, W, 3) of
normalised images padded bottom/right, with each image's true size in
`size_B2`; every shape, window grid and scale is static, so one compile per
canvas. Views are combined as mmseg does: logits averaged over overlapping
windows (count map), then softmax probabilities averaged over scales and flips
(probabilities, not logits, so one over-confident view cannot dominate).

Padding: flips mirror each image within its own width and slide windows stay
inside each image, so neither mixes padding into the image. Multi-scale
(`aug`) resizes the whole canvas; the image stays anchored top-left at every
scale, so padding reaches the image only through the one-pixel bilinear seam at
its bottom/right edge and the receptive field, exactly as in `whole` mode.
Padding pixels are never scored: their labels are the ignore index.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.checks import Checker
from jaxseg.models.layers import resize_bilinear

MODES = ("whole", "slide", "aug")  # aug = multi-scale (+ flip) test-time augmentation.


def validate_config(eval_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `eval` section."""
  c = Checker(eval_cfg, "eval")
  c.choice("mode", MODES)
  c.count("batch_size")
  for key in ("crop_size", "stride"):
    c.ints(key, (2,), "two positive ints (H, W)", min=1)
  c.numbers("scales", range(1, 1 << 16), "one or more resize factors > 0", above=0)
  c.count("size_divisor")
  c.count("report_images", min=0)


def round_up(n: int, divisor: int) -> int:
  return math.ceil(n / divisor) * divisor


def flip_valid(x_BHWC, size_B2) -> jax.Array:
  """Mirrors each image within its own width, so padding stays on the right."""
  W = x_BHWC.shape[2]
  col_W = jnp.arange(W)
  width_B1 = size_B2[:, 1:2]
  index_BW = jnp.where(col_W < width_B1, width_B1 - 1 - col_W, col_W)
  return jnp.take_along_axis(x_BHWC, index_BW[:, None, :, None], axis=2)


def _num_windows(size, crop, stride):
  """mmseg's grid: ceil((size - crop) / stride) + 1 windows along one axis."""
  return jnp.maximum((size - crop + stride - 1) // stride, 0) + 1


def slide_logits(apply_fn, x_BHWC, size_B2, crop_HW, stride_HW) -> jax.Array:
  """Sliding-window logits, overlaps averaged by a count map (mmseg `slide_inference`).

  The static grid covers the canvas; each image uses only the windows its own
  size needs, shifted inside it (last window flush with its bottom/right edge).
  A window larger than the canvas shrinks to it, which is whole-image inference.
  """
  B, H, W, _ = x_BHWC.shape
  ch, cw = min(crop_HW[0], H), min(crop_HW[1], W)
  sh, sw = stride_HW
  grid = [(i * sh, j * sw, i, j) for i in range(max(math.ceil((H - ch) / sh), 0) + 1)
          for j in range(max(math.ceil((W - cw) / sw), 0) + 1)]
  K = jax.eval_shape(apply_fn, jax.ShapeDtypeStruct((B, ch, cw, x_BHWC.shape[-1]),
                                                    x_BHWC.dtype)).shape[-1]
  rows_B = _num_windows(size_B2[:, 0], ch, sh)
  cols_B = _num_windows(size_B2[:, 1], cw, sw)

  def add_window(carry, cell_4):
    sums_BHWK, counts_BHW1 = carry
    top_B = jnp.clip(size_B2[:, 0] - ch, 0, cell_4[0])  # min(i*sh, max(h - ch, 0))
    left_B = jnp.clip(size_B2[:, 1] - cw, 0, cell_4[1])
    active_B = ((cell_4[2] < rows_B) & (cell_4[3] < cols_B)).astype(jnp.float32)
    crop = jax.vmap(lambda img, t, l: jax.lax.dynamic_slice(img, (t, l, 0), (ch, cw, img.shape[-1])))
    logits = apply_fn(crop(x_BHWC, top_B, left_B)).astype(jnp.float32)

    def accumulate(total, value, t, l, on):
      old = jax.lax.dynamic_slice(total, (t, l, 0), value.shape)
      return jax.lax.dynamic_update_slice(total, old + on * value, (t, l, 0))

    add = jax.vmap(accumulate)
    sums_BHWK = add(sums_BHWK, logits, top_B, left_B, active_B)
    counts_BHW1 = add(counts_BHW1, jnp.ones((B, ch, cw, 1)), top_B, left_B, active_B)
    return (sums_BHWK, counts_BHW1), None

  init = (jnp.zeros((B, H, W, K), jnp.float32), jnp.zeros((B, H, W, 1), jnp.float32))
  # scan, not a Python loop: the model is traced and compiled once for all windows.
  (sums, counts), _ = jax.lax.scan(add_window, init, jnp.asarray(grid, jnp.int32))
  return sums / jnp.maximum(counts, 1.0)  # Count 0 only in padding beyond every image.


def predict_probs(apply_fn, x_BHWC, size_B2, eval_cfg: ml_collections.ConfigDict) -> jax.Array:
  """Softmax probabilities (B, H, W, K) on the canvas under `eval.mode`.

  `aug` averages every scale of `eval.scales`, each also flipped when `eval.flip`.

  `apply_fn(x_BHWC) -> logits_BHWK` at the input resolution. In `aug` mode
  each scale is a whole-image pass on the canvas resized by the scale (rounded
  up to `eval.size_divisor`), its logits resized back to the canvas.
  """
  B, H, W, _ = x_BHWC.shape
  scales = tuple(eval_cfg.scales) if eval_cfg.mode == "aug" else (1.0,)
  flips = (False, True) if eval_cfg.mode == "aug" and eval_cfg.flip else (False,)
  total = 0.0
  for scale, flip in itertools.product(scales, flips):
    x = flip_valid(x_BHWC, size_B2) if flip else x_BHWC
    if eval_cfg.mode == "slide":
      logits = slide_logits(apply_fn, x, size_B2, tuple(eval_cfg.crop_size),
                            tuple(eval_cfg.stride))
    elif eval_cfg.mode == "aug" and scale != 1.0:
      scaled_HW = tuple(round_up(round(n * scale), eval_cfg.size_divisor) for n in (H, W))
      logits = resize_bilinear(apply_fn(resize_bilinear(x, scaled_HW)).astype(jnp.float32), (H, W))
    else:
      logits = apply_fn(x).astype(jnp.float32)
    if flip:
      logits = flip_valid(logits, size_B2)
    total = total + jax.nn.softmax(logits, axis=-1)
  return total / (len(scales) * len(flips))
