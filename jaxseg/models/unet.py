"""U-Net (Ronneberger et al. 2015) with 'same' padding, BN and configurable depth/width."""

from __future__ import annotations

from typing import Annotated

import flax.linen as nn
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import AUTO, ConvBNReLU, Dtype, compute_dtype
from jaxseg.models.registry import MODELS


class DoubleConv(nn.Module):
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = ConvBNReLU(self.features, dtype=self.dtype)(x, train=train)
    return ConvBNReLU(self.features, dtype=self.dtype)(x, train=train)


class UNet(nn.Module):
  num_classes: int
  width: int = 64
  depth: int = 4  # Number of 2x downsamplings; the input side must divide 2**depth.
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool, valid_BHW=None):
    del valid_BHW  # No global pooling.
    H, W = x_BHWC.shape[1:3]
    if H % 2**self.depth or W % 2**self.depth:
      raise ValueError(f"unet of depth {self.depth} needs H and W divisible by "
                       f"{2**self.depth}; got {H}x{W}")
    x = x_BHWC.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = DoubleConv(self.width * 2**level, dtype=self.dtype)(x, train=train)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = DoubleConv(self.width * 2**self.depth, dtype=self.dtype)(x, train=train)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    for level in reversed(range(self.depth)):
      x = nn.ConvTranspose(self.width * 2**level, (2, 2), strides=(2, 2), dtype=self.dtype)(x)
      x = jnp.concatenate([skips[level], x], axis=-1)
      x = DoubleConv(self.width * 2**level, dtype=self.dtype)(x, train=train)
    logits_BHWC = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
    return logits_BHWC.astype(jnp.float32), {}


@MODELS.register("unet")
def build_unet(num_classes: int, *, dtype: Dtype = AUTO,
               width: Annotated[int, Arg(min=1, help=(
                   "channels of the first level, doubling per level"))] = 16,
               depth: Annotated[int, Arg(min=0, help=(
                   "2x downsamplings; the input side must divide 2**depth"))] = 3,
               dropout: Annotated[float, Arg(min=0, below=1, help=(
                   "dropout after the bottleneck"))] = 0.0) -> UNet:
  """U-Net of `depth` levels from `width` channels."""
  return UNet(num_classes=num_classes, width=width, depth=depth, dropout=dropout,
              dtype=compute_dtype(dtype))
