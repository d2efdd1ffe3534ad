"""VGG-16 (with or without BN) as a fully convolutional backbone, torchvision's key layout.

Convs are named `features_{i}` after torchvision's `features.{i}` (BN adds an
index per conv), fc6/fc7 are `classifier_0`/`classifier_3` as 7x7 and 1x1 convs
(FCN's "convolutionalization"; convert.py reshapes the Linear weights).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import batch_norm, compute_dtype, conv2d, kernel_init

# torchvision's configuration "D": conv widths of the five stages, each followed by a max-pool.
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
FC6_KERNEL = 7  # fc6 sees a 7x7 pool5 window in the ImageNet classifier.

# output stride -> stride-1 pools among pool4, pool5 (DeepLab-v1 style dilation).
KEEP_RESOLUTION = {32: (False, False), 16: (False, True), 8: (True, True)}


@dataclasses.dataclass(frozen=True)
class VGGArgs:
  """`model.backbone` of the FCN-VGG models."""

  output_stride: Annotated[int, Arg(choices=tuple(sorted(KEEP_RESOLUTION)), help=(
      "of pool5 (the paper's 32); below 32 pool5 (and pool4, at 8) keep the resolution "
      "and later convs dilate (DeepLab-v1)"))] = 8
  batch_norm: Annotated[bool, Arg(help=(
      "VGG-16-BN (torchvision's vgg16_bn) instead of VGG-16"))] = False
  fc_channels: Annotated[int, Arg(min=1, help=(
      "width of fc6/fc7: 4096 as ImageNet VGG-16 (and its weights); smaller (DeepLab-"
      "LargeFOV's 1024) trains from scratch with far less memory"))] = 4096
  fc_dropout: Annotated[float, Arg(min=0, below=1, help=(
      "dropout after fc6 and fc7 (VGG's own 0.5)"))] = 0.5


class VGG16(nn.Module):
  """Returns `{pool1, ..., pool5, fc7}` features."""

  batch_norm: bool = False
  output_stride: int = 32
  fc_dropout: float = 0.5
  fc_features: int = 4096  # Width of fc6/fc7 (the ImageNet classifier's 4096).
  kernel_init: Callable = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool) -> dict[str, jax.Array]:
    if self.output_stride not in KEEP_RESOLUTION:
      raise ValueError(f"VGG16 output_stride={self.output_stride}; expected one of "
                       f"{sorted(KEEP_RESOLUTION)}")
    keep = (False, False, False) + KEEP_RESOLUTION[self.output_stride]
    x = x_BHWC.astype(self.dtype)
    features, index, dilation = {}, 0, 1
    for stage, widths in enumerate(STAGES):
      for width in widths:
        x = conv2d(width, 3, dilation=dilation, use_bias=True, init=self.kernel_init,
                   dtype=self.dtype, name=f"features_{index}")(x)
        if self.batch_norm:
          x = batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype,
                         name=f"features_{index + 1}")(x)
        x = nn.relu(x)
        index += 3 if self.batch_norm else 2
      if keep[stage]:
        # DeepLab-v1: a 3x3 stride-1 pool keeps the max without downsampling,
        # and every later conv dilates to keep its field of view.
        x = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        dilation *= 2
      else:
        # "SAME" max-pool is ceil mode (Caffe's), so odd sizes keep their last
        # row; FCN's skip fusion then only ever crops the upsampled map.
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      index += 1
      features[f"pool{stage + 1}"] = x

    x = conv2d(self.fc_features, FC6_KERNEL, dilation=dilation, use_bias=True, init=self.kernel_init,
               dtype=self.dtype, name="classifier_0")(x)
    x = nn.Dropout(self.fc_dropout, deterministic=not train)(nn.relu(x))
    x = conv2d(self.fc_features, 1, use_bias=True, init=self.kernel_init, dtype=self.dtype,
               name="classifier_3")(x)
    features["fc7"] = nn.Dropout(self.fc_dropout, deterministic=not train)(nn.relu(x))
    return features


def vgg_backbone(args: VGGArgs, *, init: str, bn_momentum: float, dtype: str) -> VGG16:
  """The VGG-16 backbone of the FCNs from their `model.backbone` (`args`) and the
  `model.init`, `model.bn_momentum` and `model.dtype` of every layer."""
  return VGG16(batch_norm=args.batch_norm, output_stride=args.output_stride,
               fc_dropout=args.fc_dropout, fc_features=args.fc_channels,
               kernel_init=kernel_init(init), bn_momentum=bn_momentum,
               dtype=compute_dtype(dtype))
