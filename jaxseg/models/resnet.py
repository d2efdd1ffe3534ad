"""ResNet backbones in torchvision layout (v1b) and with mmsegmentation's deep stem (v1c).

Submodule names mirror torchvision's state-dict keys (`layer1_0/conv1` is
`layer1.0.conv1`) so that `convert.py` can map weights mechanically.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import batch_norm, compute_dtype, conv2d, kernel_init, mask_to

# depth -> (block, blocks per stage), as torchvision's resnet18 ... resnet152.
SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

# output stride -> torchvision's `replace_stride_with_dilation` for layer2..layer4.
DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}

# Stride of each exposed feature at output stride 32; dilation caps it at the output stride.
FEATURE_STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


@dataclasses.dataclass(frozen=True)
class ResNetArgs:
  """`model.backbone` of every ResNet zoo model (torchvision's and mmseg's heads alike)."""

  # The depths with named ImageNet weights (models/weights.py) and torchvision models.
  depth: Annotated[int, Arg(choices=(50, 101), help=(
      "ResNet-50 or -101; the model's name gives its default (fcn_resnet101: 101)"))] = 50
  output_stride: Annotated[int, Arg(choices=tuple(sorted(DILATE)), help=(
      "backbone stride; below 32 dilation replaces the strides of layer4 (16) and layer3 "
      "too (8), as torchvision's replace_stride_with_dilation"))] = 8
  deep_stem: Annotated[bool, Arg(help=(
      "mmsegmentation's ResNet-v1c stem (three 3x3 convs) instead of one 7x7"))] = False
  zero_init_residual: Annotated[bool, Arg(help=(
      "zero the last BN scale of each residual block (Goyal et al. 2017)"))] = False


def feature_stride(name: str, output_stride: int) -> int:
  """The stride of backbone feature `name` of a ResNet at `output_stride`."""
  return min(FEATURE_STRIDES[name], output_stride)


class _Block(nn.Module):
  planes: int
  stride: int
  dilation: int
  downsample: bool
  kernel_init: Callable
  bn_momentum: float
  zero_init_residual: bool
  dtype: Any

  def _conv(self, features, kernel, name, stride=1, dilation=1):
    return conv2d(features, kernel, stride=stride, dilation=dilation, init=self.kernel_init,
                  dtype=self.dtype, name=name)

  def _bn(self, train, name, zero_scale=False):
    return batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype, name=name,
                      zero_scale=zero_scale and self.zero_init_residual)

  def _shortcut(self, x, train):
    if not self.downsample:
      return x
    out = self.planes * self.expansion
    x = self._conv(out, 1, "downsample_0", stride=self.stride)(x)
    return self._bn(train, "downsample_1")(x)


class BasicBlock(_Block):
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x, *, train: bool, valid_BHW=None, in_stride: int = 1):
    # torchvision refuses dilation here; like mmsegmentation, dilate only conv1.
    y = self._conv(self.planes, 3, "conv1", self.stride, self.dilation)(
        mask_to(x, valid_BHW, in_stride))
    y = nn.relu(self._bn(train, "bn1")(y))
    y = self._conv(self.planes, 3, "conv2")(mask_to(y, valid_BHW, in_stride * self.stride))
    y = self._bn(train, "bn2", zero_scale=True)(y)
    return nn.relu(y + self._shortcut(x, train))


class Bottleneck(_Block):
  """v1b bottleneck: the stride sits in the 3x3 conv, as torchvision's."""
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x, *, train: bool, valid_BHW=None, in_stride: int = 1):
    y = self._conv(self.planes, 1, "conv1")(x)
    y = nn.relu(self._bn(train, "bn1")(y))
    y = self._conv(self.planes, 3, "conv2", self.stride, self.dilation)(
        mask_to(y, valid_BHW, in_stride))
    y = nn.relu(self._bn(train, "bn2")(y))
    y = self._conv(self.planes * 4, 1, "conv3")(y)
    y = self._bn(train, "bn3", zero_scale=True)(y)
    return nn.relu(y + self._shortcut(x, train))


class ResNet(nn.Module):
  """Returns `{stem, layer1, ..., layer4}` features; no pooling or fc head."""

  depth: int = 50
  output_stride: int = 32
  deep_stem: bool = False
  kernel_init: Callable = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  bn_momentum: float = 0.9
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool, valid_BHW=None) -> dict[str, jax.Array]:
    """`valid_BHW` (real pixels of a top-left-padded canvas) makes the valid features
    those of the unpadded image: see `layers.mask_to`. 1x1 stride-1 convs, BN,
    ReLU and residual sums act per position, so only wider ops need the mask; the
    1x1 stride-2 shortcut reads row 2i, inside the image for every valid output.
    """
    if self.depth not in SPECS:
      raise ValueError(f"ResNet depth={self.depth}; expected one of {sorted(SPECS)}")
    if self.output_stride not in DILATE:
      raise ValueError(f"ResNet output_stride={self.output_stride}; expected one of "
                       f"{sorted(DILATE)}")
    block_kind, blocks = SPECS[self.depth]
    block_cls = BasicBlock if block_kind == "basic" else Bottleneck
    common = dict(kernel_init=self.kernel_init, bn_momentum=self.bn_momentum, dtype=self.dtype)
    bn = lambda name: batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype,
                                 name=name)
    conv = lambda f, k, s, name: conv2d(f, k, stride=s, init=self.kernel_init,
                                        dtype=self.dtype, name=name)

    x = x_BHWC.astype(self.dtype)
    if self.deep_stem:  # mmsegmentation's `stem` Sequential: conv, bn, relu x3.
      for i, (features, stride) in enumerate(((32, 2), (32, 1), (64, 1))):
        x = conv(features, 3, stride, f"stem_{3 * i}")(mask_to(x, valid_BHW, 1 if i == 0 else 2))
        x = nn.relu(bn(f"stem_{3 * i + 1}")(x))
    else:
      x = nn.relu(bn("bn1")(conv(64, 7, 2, "conv1")(mask_to(x, valid_BHW, 1))))
    features = {"stem": x}
    # torch pads the max-pool with -inf; its inputs are post-ReLU (>= 0) and every
    # window holds a valid one, so zeroed padding changes no valid maximum.
    x = nn.max_pool(mask_to(x, valid_BHW, 2), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    x_stride = 4

    # torchvision's _make_layer: a dilated stage keeps stride 1, multiplies the
    # running dilation, and its first block still uses the previous dilation.
    in_channels, dilation = 64, 1
    for stage, (planes, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks)):
      stride = 1 if stage == 0 else 2
      previous_dilation = dilation
      if stage > 0 and DILATE[self.output_stride][stage - 1]:
        dilation, stride = dilation * stride, 1
      out_channels = planes * block_cls.expansion
      for i in range(num_blocks):
        x = block_cls(
            planes=planes, stride=stride if i == 0 else 1,
            dilation=previous_dilation if i == 0 else dilation,
            downsample=i == 0 and (stride != 1 or in_channels != out_channels),
            zero_init_residual=self.zero_init_residual, name=f"layer{stage + 1}_{i}",
            **common)(x, train=train, valid_BHW=valid_BHW, in_stride=x_stride)
        x_stride *= stride if i == 0 else 1
      in_channels = out_channels
      features[f"layer{stage + 1}"] = x
    return features


def feature_channels(depth: int) -> dict[str, int]:
  """Channels of each exposed feature of a ResNet of `depth`."""
  expansion = 1 if SPECS[depth][0] == "basic" else 4
  return {"stem": 64, **{f"layer{i + 1}": p * expansion
                         for i, p in enumerate((64, 128, 256, 512))}}


def resnet_backbone(args: ResNetArgs, *, init: str, bn_momentum: float, dtype: str) -> ResNet:
  """The ResNet backbone of the zoo models from their `model.backbone` (`args`)
  and the `model.init`, `model.bn_momentum` and `model.dtype` every layer shares
  (`layers.Init`, `BNMomentum`, `Dtype`)."""
  return ResNet(depth=args.depth, output_stride=args.output_stride, deep_stem=args.deep_stem,
                kernel_init=kernel_init(init), bn_momentum=bn_momentum,
                zero_init_residual=args.zero_init_residual, dtype=compute_dtype(dtype))
