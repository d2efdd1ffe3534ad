"""Region losses on softmax probabilities: soft Dice, Tversky, Lovász-softmax.

They score the overlap of whole regions rather than pixels, so they are
computed from per-class sums over the valid pixels of the batch (Dice,
Tversky) or from sorted per-pixel errors (Lovász). Same signature as every
loss; registered in `jaxseg.losses.base.LOSSES`, which `jaxseg.losses` completes
by importing this module.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.losses.base import LOSSES, one_hot_valid, safe_divide

# The arguments Dice and Tversky share, declared once.
Smooth = Annotated[float, Arg(min=0, help="added to numerator and denominator")]
OverlapMode = Annotated[str, Arg(choices=("per_class", "global"), help=(
    "per_class: a ratio per class, averaged; global: one over all classes"))]


def _ratio_or_one(num, den):
  """num / den, and 1 (perfect overlap) for an empty region where den is 0."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 1.0)


def _overlaps(logits_BHWC, labels_BHW, valid_BHW, mode: str):
  """(intersection, sum of probs, sum of targets), per class or summed ('global')."""
  C = logits_BHWC.shape[-1]
  prob_BHWC = jax.nn.softmax(logits_BHWC, axis=-1) * valid_BHW[..., None]
  target_BHWC = one_hot_valid(labels_BHW, valid_BHW, C)
  axes = (0, 1, 2) if mode == "per_class" else (0, 1, 2, 3)
  return (jnp.sum(prob_BHWC * target_BHWC, axes), jnp.sum(prob_BHWC, axes),
          jnp.sum(target_BHWC, axes))


@LOSSES.register("dice")
def dice(logits_BHWC, labels_BHW, valid_BHW, *, smooth: Smooth = 1.0,
         mode: OverlapMode = "per_class") -> jax.Array:
  """1 - (2 I + s) / (P + Y + s); per class then averaged, or over all classes at once."""
  inter, prob, target = _overlaps(logits_BHWC, labels_BHW, valid_BHW, mode)
  s = smooth
  return 1.0 - jnp.mean(_ratio_or_one(2.0 * inter + s, prob + target + s))


@LOSSES.register("tversky")
def tversky(logits_BHWC, labels_BHW, valid_BHW, *, smooth: Smooth = 1.0,
            mode: OverlapMode = "per_class",
            alpha: Annotated[float, Arg(min=0, help="weight of false positives")] = 0.3,
            beta: Annotated[float, Arg(min=0, help="weight of false negatives")] = 0.7
            ) -> jax.Array:
  """1 - (TP + s) / (TP + alpha FP + beta FN + s); alpha = beta = 0.5 is Dice with s / 2."""
  tp, prob, target = _overlaps(logits_BHWC, labels_BHW, valid_BHW, mode)
  fp, fn = prob - tp, target - tp
  s = smooth
  return 1.0 - jnp.mean(_ratio_or_one(tp + s, tp + alpha * fp + beta * fn + s))


def _lovasz_flat(prob_NC, labels_N, valid_N) -> jax.Array:
  """Lovász-softmax over N pixels, averaged over the classes present (Berman et al.).

  The reference drops ignored pixels; for static shapes they get error -1 so
  they sort after every valid error (errors are in [0, 1]) and then count 0:
  the valid prefix of the Jaccard gradient is exactly the reference's.
  """
  C = prob_NC.shape[-1]
  target_NC = one_hot_valid(labels_N, valid_N, C)
  errors_NC = jnp.where(valid_N[:, None], jnp.abs(target_NC - prob_NC), -1.0)
  # As the reference, the sorting permutation is not differentiated.
  order_NC = jnp.argsort(-jax.lax.stop_gradient(errors_NC), axis=0)
  errors_sorted = jnp.maximum(jnp.take_along_axis(errors_NC, order_NC, axis=0), 0.0)
  gt_sorted = jnp.take_along_axis(target_NC, order_NC, axis=0)
  gts_C = jnp.sum(target_NC, axis=0)
  intersection = gts_C - jnp.cumsum(gt_sorted, axis=0)
  union = gts_C + jnp.cumsum(1.0 - gt_sorted, axis=0)  # >= 1 everywhere.
  jaccard = 1.0 - intersection / union
  grad_NC = jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)
  loss_C = jnp.sum(errors_sorted * grad_NC, axis=0)
  present_C = (gts_C > 0).astype(jnp.float32)
  return safe_divide(jnp.sum(loss_C * present_C), jnp.sum(present_C))


@LOSSES.register("lovasz")
def lovasz_softmax(logits_BHWC, labels_BHW, valid_BHW, *,
                   per_image: Annotated[bool, Arg(help=(
                       "per image, then the mean over images; else over the whole batch"))
                   ] = False) -> jax.Array:
  """Lovász-softmax, classes 'present'; per image (then mean over images) or whole batch."""
  B, C = logits_BHWC.shape[0], logits_BHWC.shape[-1]
  prob_BNC = jax.nn.softmax(logits_BHWC, axis=-1).reshape(B, -1, C)
  labels_BN, valid_BN = labels_BHW.reshape(B, -1), valid_BHW.reshape(B, -1)
  if per_image:
    # An all-ignore image counts as 0 in the mean, as in the reference.
    return jnp.mean(jax.vmap(_lovasz_flat)(prob_BNC, labels_BN, valid_BN))
  return _lovasz_flat(prob_BNC.reshape(-1, C), labels_BN.ravel(), valid_BN.ravel())
