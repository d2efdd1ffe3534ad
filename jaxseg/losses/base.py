"""What every loss shares: the LOSSES registry, the signature, masked primitives.

Every loss takes (logits_BHWC f32, labels_BHW int, valid_BHW bool) and its own
arguments, declared keyword-only in its signature with their ranges and meaning
(jaxseg/declare.py; the config's `loss.<name>.<argument>`), and returns a scalar. A leaf module, so the pixel losses (`jaxseg.losses`) and the
region losses (`jaxseg.losses.region`) both register here without importing
each other; read LOSSES through `jaxseg.losses`, which imports both.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.registry import Registry

LOSSES: Registry = Registry("loss")

# The arguments several losses take, declared once.
ClassWeights = Annotated[tuple, Arg(min=0, help=(
    "per-class weights (torch's weighted mean); () = uniform"))]
LabelSmoothing = Annotated[float, Arg(min=0, below=1, help="torch's label_smoothing")]


def safe_divide(num, den):
  """num / den where den > 0, else 0; the inner `where` keeps the gradient finite."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def one_hot_valid(labels_BHW, valid_BHW, num_classes: int) -> jax.Array:
  """One-hot targets with all-zero rows at ignored pixels (label 255 is out of range)."""
  safe = jnp.where(valid_BHW, labels_BHW, 0)
  return jax.nn.one_hot(safe, num_classes) * valid_BHW[..., None]
