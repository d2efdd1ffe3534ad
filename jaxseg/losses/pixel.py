"""Pixel losses: cross-entropy (weighted, label-smoothed, average over non-ignored
pixels or all), binary cross-entropy, focal, OHEM and top-k.

Every loss takes (logits_BHWC f32, labels_BHW int, valid_BHW bool) and its own
arguments (`loss.<name>.<argument>`), declared keyword-only with their ranges
(jaxseg/declare.py), and returns a scalar. Ignored pixels (valid False) never contribute, and an all-ignore batch
gives loss 0 with finite (zero) gradients: divisions use a double `where` so no
0/0 appears even in the backward pass.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.losses.base import LOSSES, ClassWeights, LabelSmoothing, one_hot_valid, safe_divide


def _class_weights(class_weights: tuple, num_classes: int) -> jax.Array:
  if not class_weights:
    return jnp.ones((num_classes,), jnp.float32)
  if len(class_weights) != num_classes:
    raise ValueError(f"loss class_weights has {len(class_weights)} entries; "
                     f"the model predicts {num_classes} classes")
  return jnp.asarray(class_weights, jnp.float32)


def pixel_cross_entropy(logits_BHWC, labels_BHW, valid_BHW, class_weights: tuple = (),
                        label_smoothing: float = 0.0):
  """Per-pixel (loss_BHW, weight_BHW) of softmax CE, torch semantics.

  loss_i = w[y_i] * ((1 - eps) * -log p_{y_i}) + eps / C * sum_c w_c * -log p_c,
  weight_i = w[y_i] (0 at ignored pixels); the mean is sum(loss) / sum(weight).
  """
  C = logits_BHWC.shape[-1]
  w_C = _class_weights(class_weights, C)
  logp_BHWC = jax.nn.log_softmax(logits_BHWC, axis=-1)
  target_BHWC = one_hot_valid(labels_BHW, valid_BHW, C)
  weight_BHW = jnp.sum(target_BHWC * w_C, axis=-1)
  nll_BHW = -jnp.sum(target_BHWC * w_C * logp_BHWC, axis=-1)
  eps = label_smoothing
  smooth_BHW = -jnp.sum(w_C * logp_BHWC, axis=-1) * valid_BHW / C
  return (1.0 - eps) * nll_BHW + eps * smooth_BHW, weight_BHW


@LOSSES.register("cross_entropy")
def cross_entropy(logits_BHWC, labels_BHW, valid_BHW, *, class_weights: ClassWeights = (),
                  label_smoothing: LabelSmoothing = 0.0,
                  avg_non_ignore: Annotated[bool, Arg(help=(
                      "divide by the non-ignored pixels (torch), else by all (mmseg 1.x)"))
                  ] = True) -> jax.Array:
  """Softmax CE summed over the batch, divided by its non-ignored or by all pixels.

  `avg_non_ignore`: the (class-weighted) count of non-ignored pixels, torch's
  weighted mean; else every pixel, as mmseg 1.x's default avg_non_ignore=False:
  sum_i w[y_i] over the batch, an ignored pixel counting 1 (mmseg indexes its class
  weights with label 255 there and raises; without class weights this is B*H*W).
  """
  loss_BHW, weight_BHW = pixel_cross_entropy(logits_BHWC, labels_BHW, valid_BHW,
                                             class_weights, label_smoothing)
  if not avg_non_ignore:
    weight_BHW = jnp.where(valid_BHW, weight_BHW, 1.0)
  return safe_divide(jnp.sum(loss_BHW), jnp.sum(weight_BHW))


@LOSSES.register("binary_cross_entropy")
def binary_cross_entropy(logits_BHWC, labels_BHW, valid_BHW, *,
                         binary: Annotated[bool, Arg(help=(
                             "one foreground logit instead of one-vs-all"))] = False
                         ) -> jax.Array:
  """Sigmoid CE: one-vs-all over classes, or (`binary`) one foreground logit.

  In binary mode the foreground logit is channel 0 of a 1-channel output, or
  logit_1 - logit_0 of a 2-channel one (then sigmoid(diff) = softmax's p_1).
  Mean over valid pixels (and classes in one-vs-all).
  """
  C = logits_BHWC.shape[-1]
  if binary:
    if C > 2:
      raise ValueError(f"loss.binary_cross_entropy.binary needs 1 or 2 output channels, got {C}")
    x_BHW1 = logits_BHWC if C == 1 else logits_BHWC[..., 1:] - logits_BHWC[..., :1]
    y_BHW1 = (labels_BHW == 1)[..., None].astype(jnp.float32) * valid_BHW[..., None]
  else:
    x_BHW1, y_BHW1 = logits_BHWC, one_hot_valid(labels_BHW, valid_BHW, C)
  # -(y log s(x) + (1-y) log(1-s(x))) with log(1-s(x)) = log_sigmoid(-x): no overflow.
  per_BHWK = -(y_BHW1 * jax.nn.log_sigmoid(x_BHW1) + (1 - y_BHW1) * jax.nn.log_sigmoid(-x_BHW1))
  per_BHWK = per_BHWK * valid_BHW[..., None]
  return safe_divide(jnp.sum(per_BHWK), jnp.sum(valid_BHW) * x_BHW1.shape[-1])


@LOSSES.register("focal")
def focal(logits_BHWC, labels_BHW, valid_BHW, *,
          gamma: Annotated[float, Arg(min=0, help="focusing exponent")] = 2.0,
          alpha: Annotated[float, Arg(above=0, help="scale (alpha_t = alpha for every class)")
                           ] = 1.0) -> jax.Array:
  """Softmax focal loss -alpha (1 - p_t)^gamma log p_t (Lin et al.), mean over valid pixels."""
  C = logits_BHWC.shape[-1]
  logp_t = jnp.sum(jax.nn.log_softmax(logits_BHWC, -1) * one_hot_valid(labels_BHW, valid_BHW, C), -1)
  # 1 - p_t as -expm1(log p_t): exact for confident pixels where 1 - exp() cancels.
  modulator = jnp.maximum(-jnp.expm1(logp_t), 0.0) ** gamma
  per_BHW = -alpha * modulator * logp_t * valid_BHW
  return safe_divide(jnp.sum(per_BHW), jnp.sum(valid_BHW))


@LOSSES.register("ohem")
def ohem_cross_entropy(logits_BHWC, labels_BHW, valid_BHW, *,
                       class_weights: ClassWeights = (), label_smoothing: LabelSmoothing = 0.0,
                       thresh: Annotated[float, Arg(above=0, max=1, help=(
                           "pixels whose true-class probability is below it are hard"))] = 0.7,
                       min_kept: Annotated[int, Arg(min=0, help=(
                           "at least this many pixels per image are kept"))] = 100000
                       ) -> jax.Array:
  """CE over hard pixels, mmseg's OHEMPixelSampler: p_true < max(thresh, p_(min_kept*B)).

  The threshold is the (min_kept * B)-th smallest true-class probability among
  valid pixels (sorted with invalid ones pushed to +inf, so shapes stay static),
  raised to `thresh`; CE is then averaged over the kept pixels.
  """
  B, C = labels_BHW.shape[0], logits_BHWC.shape[-1]
  prob_BHW = jnp.sum(jax.nn.softmax(logits_BHWC, -1) * one_hot_valid(labels_BHW, valid_BHW, C), -1)
  prob_BHW = jax.lax.stop_gradient(prob_BHW)  # Selection is not differentiated (as mmseg).
  sorted_N = jnp.sort(jnp.where(valid_BHW, prob_BHW, jnp.inf).ravel())
  num_valid = jnp.sum(valid_BHW)
  index = jnp.clip(jnp.minimum(min_kept * B, num_valid - 1), 0, sorted_N.size - 1)
  min_threshold = jnp.where(num_valid > 0, sorted_N[index], 0.0)
  kept_BHW = valid_BHW & (prob_BHW < jnp.maximum(min_threshold, thresh))
  loss_BHW, weight_BHW = pixel_cross_entropy(logits_BHWC, labels_BHW, kept_BHW,
                                             class_weights, label_smoothing)
  return safe_divide(jnp.sum(loss_BHW), jnp.sum(weight_BHW))


@LOSSES.register("topk")
def topk_cross_entropy(logits_BHWC, labels_BHW, valid_BHW, *,
                       class_weights: ClassWeights = (), label_smoothing: LabelSmoothing = 0.0,
                       ratio: Annotated[float, Arg(above=0, max=1, help=(
                           "fraction of the valid pixels kept, the hardest"))] = 0.25
                       ) -> jax.Array:
  """Mean CE of the hardest ceil(ratio * num_valid) valid pixels (bootstrapped CE)."""
  loss_BHW, _ = pixel_cross_entropy(logits_BHWC, labels_BHW, valid_BHW, class_weights,
                                    label_smoothing)
  # CE >= 0, so invalid pixels at -1 sort after every valid one and k <= num_valid.
  descending_N = -jnp.sort(-jnp.where(valid_BHW, loss_BHW, -1.0).ravel())
  k = jnp.ceil(ratio * jnp.sum(valid_BHW))
  selected_N = jnp.arange(descending_N.size) < k
  return safe_divide(jnp.sum(jnp.where(selected_N, descending_N, 0.0)), k)
