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
Padding pixels are never scored: their labels are the ignore index. The model
gets `valid_BHW` (the real pixels) so pooled branches never average padding,
and padding is exactly 0 after normalisation (the mean colour, mmseg's value).

`eval.protocol='resize'` is mmseg's test pipeline: each image resized
keep-ratio within `eval.resize_scale` on the host (cv2, as mmcv), inferred on a
per-batch canvas, its logits resized back to the label's original size before
the argmax (`predict_labels`). In `whole` mode it repeats mmseg's arithmetic:
the head's logits (before the model's own upsampling) cover ceil(h / s) x
ceil(w / s) features of an h x w image at stride s, exactly as unpadded; they
are resized to h x w, then to the original size, both bilinear with
align_corners=False, as one fused per-example resize (`jaxseg.models.resample`).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.config.run_sections import round_up
from jaxseg.models import resample
from jaxseg.models.layers import normalize, resize_bilinear


def valid_mask(size_B2, HW: tuple[int, int]) -> jax.Array:
  """(B, H, W) bool: True on each example's top-left size_B2 region, its real pixels."""
  rows = jnp.arange(HW[0])[None, :, None] < size_B2[:, 0, None, None]
  cols = jnp.arange(HW[1])[None, None, :] < size_B2[:, 1, None, None]
  return rows & cols


def model_input(image_BHW3, size_B2, mean, std):
  """uint8 canvas -> (normalised images with padding exactly 0, valid_BHW)."""
  valid_BHW = valid_mask(size_B2, image_BHW3.shape[1:3])
  x = normalize(image_BHW3, mean, std)
  return jnp.where(valid_BHW[..., None], x, 0.0), valid_BHW


def flip_valid(x_BHWC, size_B2) -> jax.Array:
  """Mirrors each image within its own width, so padding stays on the right."""
  W = x_BHWC.shape[2]
  col_W = jnp.arange(W)
  width_B1 = size_B2[:, 1:2]
  index_BW = jnp.where(col_W < width_B1, width_B1 - 1 - col_W, col_W)
  return jnp.take_along_axis(x_BHWC, index_BW[:, None, :, None], axis=2)


def _num_windows(size, crop, stride):
  """mmseg's grid: max(size - crop + stride - 1, 0) // stride + 1 windows along one axis."""
  return jnp.maximum(size - crop + stride - 1, 0) // stride + 1


_STRIDE_PROBE = 512  # Side of the input whose head shape gives the head's stride.


def head_stride(head_fn, channels: int) -> tuple[int, int]:
  """(input pixels per head-logit pixel, classes) of `head_fn`, from its output shape at a
  probe size (abstract evaluation: nothing runs). A window need not be a multiple of it."""
  probe = jax.eval_shape(head_fn, jax.ShapeDtypeStruct((1, _STRIDE_PROBE, _STRIDE_PROBE, channels),
                                                       jnp.float32),
                         jax.ShapeDtypeStruct((1, _STRIDE_PROBE, _STRIDE_PROBE), jnp.bool_))
  rows, cols, classes = probe.shape[1:]
  if rows != cols or _STRIDE_PROBE % rows:
    raise ValueError(f"a {_STRIDE_PROBE}x{_STRIDE_PROBE} input gives {rows}x{cols} logits: "
                     "not one whole output stride")
  return _STRIDE_PROBE // rows, classes


def slide_logits(head_fn, x_BHWC, size_B2, crop_HW, stride_HW, windows_per_step: int = 1
                 ) -> jax.Array:
  """mmseg's `EncoderDecoder.slide_inference` on a padded canvas: (B, H, W, K) float32 logits.

  `head_fn(x_BhwC, valid_Bhw)` gives a window's logits at the head's resolution
  (`head_logits`; or at the input's, stride 1). Per image, from its own size: a
  grid of max(h - crop + stride - 1, 0) // stride + 1 windows per axis, window i
  at min(i * stride, h - crop) so the last is flush with the image's edge; an
  image smaller than the window is one window covering it (mmseg crops it smaller,
  here the window's rest is masked padding, which `valid_BHW` keeps out of every
  conv). Each window's logits are resized, as mmseg's decode head does, from the
  ceil(v / stride) head pixels of its v real pixels to v (bilinear,
  align_corners=False), summed in place, and divided by the count of windows
  covering each pixel.

  Memory: one `lax.scan` step runs `windows_per_step` windows of every image of
  the batch through the model, so peak memory is the two (B, H, W, K+1)
  accumulators plus one step's activations, whatever the grid size
  (tests/test_slide_inference.py measures it).
  """
  B, H, W, C = x_BHWC.shape
  ch, cw = min(crop_HW[0], H), min(crop_HW[1], W)
  sh, sw = stride_HW
  rows, cols = (max(-(-(n - c) // s), 0) + 1 for n, c, s in ((H, ch, sh), (W, cw, sw)))
  grid = [(i * sh, j * sw, i, j) for i in range(rows) for j in range(cols)]
  n = max(1, min(windows_per_step, len(grid)))
  grid += [(0, 0, rows, cols)] * (-len(grid) % n)  # Inactive filler: no image has row `rows`.
  stride, K = head_stride(head_fn, C)
  valid_BHW = valid_mask(size_B2, (H, W))
  rows_B = _num_windows(size_B2[:, 0], ch, sh)
  cols_B = _num_windows(size_B2[:, 1], cw, sw)
  # Each image's real part of any of its windows: the window, or all of a smaller image.
  inside_B2 = jnp.minimum(size_B2, jnp.asarray([ch, cw], size_B2.dtype))
  head_HW = (-(-ch // stride), -(-cw // stride))
  to_window = resample.matrices(-(-inside_B2 // stride), inside_B2, head_HW, (ch, cw))
  crop = jax.vmap(lambda img, t, l: jax.lax.dynamic_slice(img, (t, l, 0), (ch, cw, img.shape[-1])))

  def accumulate(total, value, t, l, on):
    old = jax.lax.dynamic_slice(total, (t, l, 0), value.shape)
    return jax.lax.dynamic_update_slice(total, old + on * value, (t, l, 0))

  add = jax.vmap(accumulate)

  def add_windows(carry, cells_N4):
    sums_BHWK, counts_BHW1 = carry
    # min(i*sh, max(h - ch, 0)), per image.
    tops = [jnp.clip(size_B2[:, 0] - ch, 0, cell[0]) for cell in cells_N4]
    lefts = [jnp.clip(size_B2[:, 1] - cw, 0, cell[1]) for cell in cells_N4]
    # Windows stacked image-major, (B, n) -> B*n: a batch-sharded canvas stays sharded.
    x_Bn = jnp.stack([crop(x_BHWC, t, l) for t, l in zip(tops, lefts)], 1)
    valid_Bn = jnp.stack([crop(valid_BHW[..., None], t, l)[..., 0] for t, l in zip(tops, lefts)],
                         1)
    head = head_fn(x_Bn.reshape(B * n, ch, cw, C), valid_Bn.reshape(B * n, ch, cw))
    head = head.astype(jnp.float32)
    if stride > 1:  # At stride 1 the resize is the identity: skip its matmuls.
      head = resample.apply(head, *(jnp.repeat(m, n, axis=0) for m in to_window))
    logits_Bn = head.reshape(B, n, ch, cw, -1)
    for k, cell in enumerate(cells_N4):
      active_B = ((cell[2] < rows_B) & (cell[3] < cols_B)).astype(jnp.float32)
      sums_BHWK = add(sums_BHWK, logits_Bn[:, k], tops[k], lefts[k], active_B)
      counts_BHW1 = add(counts_BHW1, valid_Bn[:, k, ..., None].astype(jnp.float32),
                        tops[k], lefts[k], active_B)
    return (sums_BHWK, counts_BHW1), None

  init = (jnp.zeros((B, H, W, K), jnp.float32), jnp.zeros((B, H, W, 1), jnp.float32))
  # scan, not a Python loop: the model is traced and compiled once for every window.
  steps = jnp.asarray(grid, jnp.int32).reshape(-1, n, 4)
  (sums, counts), _ = jax.lax.scan(add_windows, init, steps)
  return sums / jnp.maximum(counts, 1.0)  # Count 0 only in padding beyond every image.


def averaged_views(eval_cfg: ml_collections.ConfigDict) -> tuple[tuple[float, ...], bool]:
  """(scales, flip) that `eval.mode` averages: `aug`'s eval.scales and eval.flip;
  (1.0,) and no flip otherwise. Evaluation records name them."""
  if eval_cfg.mode == "aug":
    return tuple(float(s) for s in eval_cfg.scales), bool(eval_cfg.flip)
  return (1.0,), False


def _rescaled_logits(apply_fn, x_BHWC, valid_BHW, scale: float, divisor: int) -> jax.Array:
  """Logits of the canvas resized by exactly `scale`, back at the canvas size.

  The resized canvas is padded (0, masked) up to a multiple of `divisor` rather
  than stretched to it: on small canvases stretching would change the scale
  itself (64 px x 0.75 = 48, rounded up to 64 by 32 = scale 1.0).
  """
  B, H, W, _ = x_BHWC.shape
  h, w = max(round(H * scale), 1), max(round(W * scale), 1)
  pad = ((0, 0), (0, round_up(h, divisor) - h), (0, round_up(w, divisor) - w))
  x = jnp.pad(resize_bilinear(x_BHWC, (h, w)), (*pad, (0, 0)))
  valid = jnp.pad(jax.image.resize(valid_BHW.astype(jnp.float32), (B, h, w), "nearest") > 0.5,
                  pad)
  logits_BhwK = apply_fn(x, valid)[:, :h, :w].astype(jnp.float32)
  return resize_bilinear(logits_BhwK, (H, W))


def predict_probs(apply_fn, x_BHWC, size_B2, eval_cfg: ml_collections.ConfigDict,
                  head_fn=None) -> jax.Array:
  """Softmax probabilities (B, H, W, K) on the canvas under `eval.mode`.

  `aug` averages every scale of `eval.scales`, each also flipped when `eval.flip`.

  `apply_fn(x_BHWC, valid_BHW) -> logits_BHWK` at the input resolution. In `aug` mode
  each scale is a whole-image pass on the canvas resized by the scale (then padded
  to a multiple of `eval.size_divisor`), its logits resized back to the canvas. `slide`
  windows use `head_fn` (logits at the head's resolution, resized per window as
  mmseg does: `slide_logits`), or `apply_fn` when it is None.
  """
  B, H, W, _ = x_BHWC.shape
  scales, flip = averaged_views(eval_cfg)
  flips = (False, True) if flip else (False,)
  valid_BHW = valid_mask(size_B2, (H, W))
  total = 0.0
  for scale, flip in itertools.product(scales, flips):
    x = flip_valid(x_BHWC, size_B2) if flip else x_BHWC
    if eval_cfg.mode == "slide":
      logits = slide_logits(head_fn or apply_fn, x, size_B2, tuple(eval_cfg.crop_size),
                            tuple(eval_cfg.stride), eval_cfg.windows_per_step)
    elif eval_cfg.mode == "aug" and scale != 1.0:
      logits = _rescaled_logits(apply_fn, x, valid_BHW, scale, eval_cfg.size_divisor)
    else:
      logits = apply_fn(x, valid_BHW).astype(jnp.float32)
    if flip:
      logits = flip_valid(logits, size_B2)
    total = total + jax.nn.softmax(logits, axis=-1)
  return total / (len(scales) * len(flips))


def head_logits(model, variables, x_BHWC, valid_BHW) -> jax.Array:
  """Logits at the head's own resolution, before the model upsamples them to the input.

  Captured from the segmentor's `classifier` submodule; a model without one
  (unet, seed_cnn) predicts at the input resolution and its output is used.
  """
  def is_head(module, method_name):
    return method_name == "__call__" and module.path == ("classifier",)

  (logits, _), state = model.apply(variables, x_BHWC, train=False, valid_BHW=valid_BHW,
                                   capture_intermediates=is_head, mutable=["intermediates"])
  captured = state.get("intermediates", {}).get("classifier", {}).get("__call__")
  return (captured[0] if captured else logits).astype(jnp.float32)


def _resized_whole_logits(model, variables, x_BHWC, valid_BHW, resized_B2, size_B2, label_HW):
  """mmseg's whole inference + postprocess: head logits -> resized size -> original size."""
  logits_BhwK = head_logits(model, variables, x_BHWC, valid_BHW)
  canvas_HW, feature_HW = x_BHWC.shape[1:3], logits_BhwK.shape[1:3]
  stride = canvas_HW[0] // feature_HW[0]
  if tuple(n * stride for n in feature_HW) != tuple(canvas_HW):
    raise ValueError(f"a {canvas_HW} canvas gives {feature_HW} logits, not a whole stride; "
                     "eval.resize_bucket must be a multiple of the model's output stride")
  feature_B2 = -(-resized_B2 // stride)  # ceil: what the unpadded image's convs produce.
  to_resized = resample.matrices(feature_B2, resized_B2, feature_HW, canvas_HW)
  to_original = resample.matrices(resized_B2, size_B2, canvas_HW, label_HW)
  rows, cols = (resample.compose(b, a) for a, b in zip(to_resized, to_original))
  return resample.apply(logits_BhwK, rows, cols)


def _apply_fn(model, variables):
  return lambda x, valid: model.apply(variables, x, train=False, valid_BHW=valid)[0]


def _head_fn(model, variables):
  return lambda x, valid: head_logits(model, variables, x, valid)


def native_probs(model, variables, image_BHW3, size_B2, cfg: ml_collections.ConfigDict
                 ) -> jax.Array:
  """(B, H, W, K) probabilities of uint8 canvases, each image at its own size
  (eval.protocol='native'), under `eval.mode`; `--mode predict` stitches tiles of these."""
  x, _ = model_input(image_BHW3, size_B2, cfg.augment.mean, cfg.augment.std)
  return predict_probs(_apply_fn(model, variables), x, size_B2, cfg.eval,
                       head_fn=_head_fn(model, variables))


def native_labels(model, variables, image_BHW3, size_B2, cfg: ml_collections.ConfigDict
                  ) -> jax.Array:
  """(B, H, W) int32 argmax of `native_probs`: evaluation's and prediction's labels."""
  probs_BHWK = native_probs(model, variables, image_BHW3, size_B2, cfg)
  return jnp.argmax(probs_BHWK, -1).astype(jnp.int32)


def predict_labels(model, variables, batch, cfg: ml_collections.ConfigDict) -> jax.Array:
  """(B, H, W) int32 predictions on the label canvas, under `eval.protocol` and `eval.mode`.

  batch: 'image' (uint8 canvas), 'size_HW' (true sizes), and for the resize
  protocol 'resized_HW' (the image's size on its canvas) and 'label' (its canvas).
  """
  if cfg.eval.protocol == "native":
    return native_labels(model, variables, batch["image"], batch["size_HW"], cfg)
  apply_fn = _apply_fn(model, variables)
  mean, std = cfg.augment.mean, cfg.augment.std
  resized_B2, size_B2 = batch["resized_HW"], batch["size_HW"]
  label_HW = batch["label"].shape[1:3]
  x, valid_BHW = model_input(batch["image"], resized_B2, mean, std)
  if cfg.eval.mode == "whole":
    scores = _resized_whole_logits(model, variables, x, valid_BHW, resized_B2, size_B2, label_HW)
  elif cfg.eval.mode == "slide":  # mmseg: slide on the resized image, then resize its logits.
    scores = resample.resize_within(
        slide_logits(_head_fn(model, variables), x, resized_B2, tuple(cfg.eval.crop_size),
                     tuple(cfg.eval.stride), cfg.eval.windows_per_step),
        resized_B2, size_B2, label_HW)
  else:  # aug: jaxseg's scales x flips on the resized image, probabilities resized back.
    scores = resample.resize_within(predict_probs(apply_fn, x, resized_B2, cfg.eval),
                                    resized_B2, size_B2, label_HW)
  return jnp.argmax(scores, axis=-1).astype(jnp.int32)
