"""The classic conv-ReLU-pool x2 network, made fully convolutional.

The LeNet-style classifier ends in flatten + dense; here the dense layer
becomes a 1x1 convolution and the coarse score map is bilinearly upsampled to
the input size, which is exactly the FCN recipe applied to the smallest CNN.
"""

from __future__ import annotations

from typing import Annotated

import flax.linen as nn
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import AUTO, Dtype, compute_dtype, resize_bilinear
from jaxseg.models.registry import MODELS


class SeedCNN(nn.Module):
  num_classes: int
  width: int = 32
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool, valid_BHW=None):
    del train, valid_BHW  # No dropout, BN or global pooling: deterministic, padding-blind.
    H, W = x_BHWC.shape[1:3]
    x = x_BHWC.astype(self.dtype)
    for features in (self.width, 2 * self.width):
      x = nn.Conv(features, (3, 3), padding="SAME", dtype=self.dtype)(x)
      x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(4 * self.width, (3, 3), padding="SAME", dtype=self.dtype)(x)
    x = nn.relu(x)
    coarse_logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
    logits_BHWC = resize_bilinear(coarse_logits.astype(jnp.float32), (H, W))
    return logits_BHWC, {}


@MODELS.register("seed_cnn")
def build_seed_cnn(num_classes: int, *, dtype: Dtype = AUTO,
                   width: Annotated[int, Arg(min=1, help=(
                       "channels of the first conv (2x, 4x in the next two)"))] = 16) -> SeedCNN:
  """The seed CNN (the module doc)."""
  return SeedCNN(num_classes=num_classes, width=width, dtype=compute_dtype(dtype))
