"""Segmentation losses. Each takes (logits_BHWC f32, labels_BHW int, valid_BHW bool, cfg)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg.registry import Registry

LossFn = Callable[[jax.Array, jax.Array, jax.Array, ml_collections.ConfigDict], jax.Array]
LOSSES: Registry = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(logits_BHWC, labels_BHW, valid_BHW, cfg) -> jax.Array:
  """Softmax cross-entropy averaged over the non-ignored pixels of the whole batch."""
  del cfg
  # Ignored pixels carry label 255, out of range for the one-hot: zero them first.
  safe_labels = jnp.where(valid_BHW, labels_BHW, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits_BHWC, safe_labels)
  weights = valid_BHW.astype(jnp.float32)
  # max(., 1): an all-ignore batch gives 0 loss and 0 gradient, not NaN.
  return jnp.sum(per_pixel * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_loss(loss_cfg: ml_collections.ConfigDict, ignore_index: int):
  """(logits, aux, labels) -> (total loss, {term name: value}) from the loss config."""
  main = LOSSES.get(loss_cfg.name)

  def total_loss(logits_BHWC, aux: dict, labels_BHW):
    valid_BHW = labels_BHW != ignore_index
    terms = {loss_cfg.name: main(logits_BHWC.astype(jnp.float32), labels_BHW, valid_BHW, loss_cfg)}
    total = terms[loss_cfg.name]
    if "aux_logits" in aux:
      terms["aux"] = main(aux["aux_logits"].astype(jnp.float32), labels_BHW, valid_BHW, loss_cfg)
      total = total + loss_cfg.aux_weight * terms["aux"]
    return total, terms

  return total_loss
