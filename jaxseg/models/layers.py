"""Building blocks shared by the segmentation models, and the `model` arguments
several factories declare alike (`Dtype`, `Init`, `BNMomentum`)."""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxseg.declare import Arg
from jaxseg.models import resample

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# `model.dtype=auto` (every model's default): bfloat16 compute on TPU and GPU, whose
# matrix units run it at several times float32's rate, float32 on CPU, which has none.
AUTO = "auto"
AUTO_DTYPES = {"cpu": "float32", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16",
               "tpu": "bfloat16"}
# The conv kernel initializers `model.init` names.
KERNEL_INITS = {
    # torchvision's ResNet/VGG init: He normal over fan-out, not truncated.
    "kaiming_normal": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    "xavier_uniform": nn.initializers.xavier_uniform(),
}

# Every factory's `model.dtype`; the zoo models' `model.init` and `model.bn_momentum`,
# which apply to each of their layers, backbone and heads alike.
Dtype = Annotated[str, Arg(choices=(AUTO, *DTYPES), help=(
    "compute dtype (params stay float32); auto: bfloat16 on GPU and TPU, float32 on CPU"))]
Init = Annotated[str, Arg(choices=tuple(KERNEL_INITS), help=(
    "the convs' kernel initializer (kaiming_normal: torchvision's He fan-out normal)"))]
BNMomentum = Annotated[float, Arg(min=0, max=1, help=(
    "flax's convention: running = momentum * running + (1 - momentum) * batch "
    "(torch's 0.1 is 0.9)"))]


def normalize(image_BHWC, mean, std) -> jax.Array:
  """uint8 images -> float32 standardised (`augment.mean`, `augment.std`), the models'
  input in training, evaluation and prediction alike; done on device so the host ships
  bytes."""
  return (image_BHWC.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
      std, jnp.float32)


def resolve_dtype(name: str, backend: str | None = None) -> str:
  """The compute dtype `model.dtype` names on `backend` (default: jax's): 'auto' resolved."""
  if name != AUTO:
    return name
  return AUTO_DTYPES.get(backend or jax.default_backend(), "float32")


def compute_dtype(name: str):
  """The dtype named by `model.dtype` ('auto' resolved); params stay float32 regardless,
  and logits, softmax, losses and metrics are float32 (the models cast their logits)."""
  name = resolve_dtype(name)
  if name not in DTYPES:
    raise ValueError(f"model.dtype={name!r}; expected one of {sorted([AUTO, *DTYPES])}")
  return DTYPES[name]


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
    return nn.relu(batch_norm(train=train, momentum=0.9, dtype=self.dtype)(x))


def kernel_init(name: str):
  """The conv kernel initializer named by `model.init` (one of KERNEL_INITS)."""
  if name not in KERNEL_INITS:
    raise ValueError(f"kernel init {name!r}; expected one of {sorted(KERNEL_INITS)}")
  return KERNEL_INITS[name]


def conv2d(features: int, kernel: int, *, stride: int = 1, dilation: int = 1,
           use_bias: bool = False, init=nn.initializers.lecun_normal(),
           dtype=jnp.float32, name: str | None = None) -> nn.Conv:
  """A conv padded like torch's `padding=dilation*(k-1)//2`.

  Flax's "SAME" pads (0, 1) for a stride-2 3x3 conv on even inputs where torch
  pads (1, 1); the pixels then differ, and torchvision weights would not match.
  """
  pad = dilation * (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                 kernel_dilation=dilation, use_bias=use_bias, kernel_init=init,
                 dtype=dtype, name=name)


def batch_norm(*, train: bool, momentum: float, zero_scale: bool = False,
               dtype=jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with torch's epsilon; `momentum` is flax's (0.9 = torch's 0.1).

  Batch statistics in float32 (flax's force_float32_reductions) whatever `dtype`,
  and the variance around the mean, E[(x - E[x])^2], as torch computes it: flax's
  default E[x^2] - E[x]^2 cancels catastrophically for channels whose mean is large
  against their spread (ASPP's image-pool BN sees one value per image), which
  tests/test_bn_variance.py measures in the step-0 gradient against float64.
  """
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      scale_init=scale_init, dtype=dtype, use_fast_variance=False,
                      force_float32_reductions=True, name=name)


def valid_at_stride(valid_BHW: jax.Array, stride: int, size_hw: tuple[int, int]) -> jax.Array:
  """The real-pixel mask on a feature grid of `stride`: feature (i, j) is pixel (s*i, s*j).

  A stride-s ResNet feature is centred on input pixel s*i and the grid has
  ceil(H/s) rows, so for an image in the top-left corner of a padded canvas the
  valid features are exactly those the unpadded image would have produced.
  """
  valid_Bhw = valid_BHW[:, ::stride, ::stride]
  if valid_Bhw.shape[1:3] != tuple(size_hw):
    raise ValueError(f"valid_BHW of shape {valid_BHW.shape} at stride {stride} gives a "
                     f"{valid_Bhw.shape[1:3]} grid; the features are {tuple(size_hw)}")
  return valid_Bhw


def global_mean(x_BHWC: jax.Array, valid_BHW: jax.Array | None, stride: int) -> jax.Array:
  """Mean over H and W (keepdims), over the real pixels only when a mask is given."""
  if valid_BHW is None:
    return jnp.mean(x_BHWC, axis=(1, 2), keepdims=True)
  weight_BHW1 = valid_at_stride(valid_BHW, stride, x_BHWC.shape[1:3])[..., None]
  total = jnp.sum(jnp.where(weight_BHW1, x_BHWC.astype(jnp.float32), 0.0), axis=(1, 2),
                  keepdims=True)
  # An all-padding example (none in practice) pools to zeros instead of NaN.
  count = jnp.maximum(jnp.sum(weight_BHW1, axis=(1, 2), keepdims=True), 1)
  return (total / count).astype(x_BHWC.dtype)


def mask_to(x_BHWC: jax.Array, valid_BHW: jax.Array | None, stride: int) -> jax.Array:
  """`x` with every feature outside the real pixels (at `stride`) set to 0; `x` when no mask.

  Applied before each conv wider than 1x1 (and each max-pool), it makes a
  network on a top-left-padded canvas compute, on the valid ceil(H/s) x ceil(W/s)
  grid, exactly what it computes on the unpadded image: past the edge every such
  conv then reads zeros, as torch's zero padding of the unpadded image gives.
  """
  if valid_BHW is None:
    return x_BHWC
  keep_BHW1 = valid_at_stride(valid_BHW, stride, x_BHWC.shape[1:3])[..., None]
  return jnp.where(keep_BHW1, x_BHWC, jnp.zeros((), x_BHWC.dtype))


def resize_to_stride(x_BHWC: jax.Array, valid_BHW: jax.Array | None, stride: int,
                     size_hw: tuple[int, int], out_stride: int) -> jax.Array:
  """Bilinear resize of a stride-`stride` map to the `size_hw` grid of `out_stride`.

  With a mask, each example's valid ceil(H/stride) grid goes to its own
  ceil(H/out_stride) grid, as the unpadded image's resize does (the scale of
  that resize depends on the image size, so a whole-canvas resize differs).
  """
  if valid_BHW is None:
    return resize_bilinear(x_BHWC, size_hw)
  size_B2 = jnp.stack([valid_BHW[:, :, 0].sum(1), valid_BHW[:, 0, :].sum(1)], axis=-1)
  ceil_div = lambda s: -(-size_B2 // s)
  return resample.resize_within(x_BHWC, ceil_div(stride), ceil_div(out_stride), size_hw)
