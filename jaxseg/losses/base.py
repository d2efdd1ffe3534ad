"""What every loss shares: the LOSSES registry, the signature, masked primitives.

Every loss takes (logits_BHWC f32, labels_BHW int, valid_BHW bool, cfg) and
returns a scalar. A leaf module, so the pixel losses (`jaxseg.losses`) and the
region losses (`jaxseg.losses.region`) both register here without importing
each other; read LOSSES through `jaxseg.losses`, which imports both.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg.registry import Registry

LossFn = Callable[[jax.Array, jax.Array, jax.Array, ml_collections.ConfigDict], jax.Array]
LOSSES: Registry = Registry("loss")


def safe_divide(num, den):
  """num / den where den > 0, else 0; the inner `where` keeps the gradient finite."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def one_hot_valid(labels_BHW, valid_BHW, num_classes: int) -> jax.Array:
  """One-hot targets with all-zero rows at ignored pixels (label 255 is out of range)."""
  safe = jnp.where(valid_BHW, labels_BHW, 0)
  return jax.nn.one_hot(safe, num_classes) * valid_BHW[..., None]
