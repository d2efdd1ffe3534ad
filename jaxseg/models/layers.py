"""Building blocks shared by the segmentation models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
  """The dtype named by `model.dtype` (params stay float32 regardless)."""
  if name not in _DTYPES:
    raise ValueError(f"model.dtype={name!r}; expected one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def resize_bilinear(x_BHWC: jax.Array, size_HW: tuple[int, int]) -> jax.Array:
  """Bilinear resize with half-pixel centres (torch's align_corners=False)."""
  B, _, _, C = x_BHWC.shape
  # antialias only matters when shrinking; torch's interpolate does not antialias.
  return jax.image.resize(x_BHWC, (B, *size_HW, C), "bilinear", antialias=False)


class ConvBNReLU(nn.Module):
  """3x3 (or k x k) conv, BatchNorm, ReLU: the unit most heads are built from."""

  features: int
  kernel: int = 3
  dilation: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel), padding="SAME",
                kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype,
                kernel_init=nn.initializers.kaiming_normal())(x)
    # BN statistics and normalisation in float32 for stable running averages.
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype)(x)
    return nn.relu(x)
