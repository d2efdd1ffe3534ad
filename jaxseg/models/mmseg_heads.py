"""mmsegmentation 1.2.2's decode heads (FCNHead, ASPPHead, DepthwiseSeparableASPPHead).

Built as mmseg builds them for its R50-D8 VOC configs (configs/_base_/models/
fcn_r50-d8.py, deeplabv3_r50-d8.py, deeplabv3plus_r50-d8.py): every conv is a
ConvModule (conv without bias, BN, ReLU), the classifier `conv_seg` follows a
Dropout2d, and every resize is bilinear with align_corners=False. Submodule
names are mmseg's state-dict keys with `_` for `.` before an index
(`aspp_modules_1/depthwise_conv/bn` is `aspp_modules.1.depthwise_conv.bn`), so
`convert_mmseg.py` maps checkpoints mechanically.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.deeplab import ASPP_RATES
from jaxseg.models.fcn import (AuxHeadArgs, ClassifierInitStd, Segmentor, classifier_init,
                               resnet_and_layers)
from jaxseg.models.layers import (AUTO, BNMomentum, Dtype, Init, batch_norm, global_mean,
                                  mask_to, resize_to_stride)
from jaxseg.models.registry import MODELS
from jaxseg.models.resnet import ResNetArgs, feature_stride


@dataclasses.dataclass(frozen=True)
class MMSegHeadArgs:
  """`model.head` of the mmseg segmentors: their decode head (FCNHead, ASPPHead or
  DepthwiseSeparableASPPHead)."""

  channels: Annotated[int, Arg(min=2, help=(
      "width of the decode head (mmseg's `channels`, 512 in its configs); the auxiliary "
      "head has half. Tests narrow it to keep 8 replicas small"))] = 512
  dropout: Annotated[float, Arg(min=0, below=1, help=(
      "Dropout2d before conv_seg (mmseg's dropout_ratio)"))] = 0.1
  classifier_init_std: ClassifierInitStd = 0.01


class ConvModule(nn.Module):
  """mmcv's ConvModule with a norm: conv (bias off, as `bias='auto'` with BN), BN, ReLU."""

  features: int
  kernel: int
  kernel_init: Callable
  bn_momentum: float
  dtype: Any
  dilation: int = 1
  depthwise: bool = False  # groups = in_channels, as DepthwiseSeparableConvModule's first.

  @nn.compact
  def __call__(self, x, *, train: bool):
    pad = self.dilation * (self.kernel - 1) // 2  # mmseg's padding=dilation (3x3) or 0 (1x1).
    x = nn.Conv(self.features, (self.kernel, self.kernel), padding=((pad, pad), (pad, pad)),
                kernel_dilation=self.dilation, use_bias=False,
                feature_group_count=x.shape[-1] if self.depthwise else 1,
                kernel_init=self.kernel_init, dtype=self.dtype, name="conv")(x)
    x = batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


class SeparableConvModule(nn.Module):
  """mmcv's DepthwiseSeparableConvModule: depthwise k x k ConvModule, pointwise 1x1 ConvModule."""

  features: int
  kernel: int
  kernel_init: Callable
  bn_momentum: float
  dtype: Any
  dilation: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    common = dict(kernel_init=self.kernel_init, bn_momentum=self.bn_momentum, dtype=self.dtype)
    x = ConvModule(x.shape[-1], self.kernel, dilation=self.dilation, depthwise=True,
                   name="depthwise_conv", **common)(x, train=train)
    return ConvModule(self.features, 1, name="pointwise_conv", **common)(x, train=train)


class _DecodeHead(nn.Module):
  """BaseDecodeHead's shared part: `cls_seg` = Dropout2d, then the 1x1 `conv_seg` with bias."""

  num_classes: int
  kernel_init: Callable
  bn_momentum: float
  dtype: Any
  classifier_init: Callable | None = None  # conv_seg's; None = kernel_init.
  channels: int = 512
  dropout: float = 0.1

  def conv_module(self, x, features, kernel, train, name, dilation=1):
    return ConvModule(features, kernel, dilation=dilation, kernel_init=self.kernel_init,
                      bn_momentum=self.bn_momentum, dtype=self.dtype, name=name)(x, train=train)

  def separable_module(self, x, features, kernel, train, name, dilation=1):
    return SeparableConvModule(features, kernel, dilation=dilation, kernel_init=self.kernel_init,
                               bn_momentum=self.bn_momentum, dtype=self.dtype,
                               name=name)(x, train=train)

  def cls_seg(self, x, train):
    # Dropout2d: one draw per (example, channel), shared by every position (NHWC).
    x = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train,
                   name="dropout")(x)
    return nn.Conv(self.num_classes, (1, 1), use_bias=True, dtype=self.dtype,
                   kernel_init=self.classifier_init or self.kernel_init, name="conv_seg")(x)


class MMSegFCNHead(_DecodeHead):
  """FCNHead: `num_convs` 3x3 ConvModules, optionally concatenated with the input and fused."""

  feature: str = "layer4"  # in_index 3; the auxiliary head reads layer3 (in_index 2).
  num_convs: int = 2
  concat_input: bool = True
  stride: int = 8  # Of `feature`, to place `valid_BHW` on its grid.

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool,
               valid_BHW=None) -> jax.Array:
    mask = lambda x: mask_to(x, valid_BHW, self.stride)  # Before every 3x3: see mask_to.
    x = mask(features[self.feature])
    y = x
    for i in range(self.num_convs):
      y = self.conv_module(mask(y) if i else y, self.channels, 3, train, f"convs_{i}")
    if self.concat_input:
      y = self.conv_module(jnp.concatenate([x, mask(y)], axis=-1), self.channels, 3, train,
                           "conv_cat")
    return self.cls_seg(y, train)


class MMSegASPPHead(_DecodeHead):
  """ASPPHead (DeepLabv3): image pooling + one branch per dilation (1 = a 1x1 conv), 3x3 bottleneck.

  With `separable` the dilated branches are depthwise-separable and a decoder
  fuses `c1_channels` of layer1 through two separable 3x3 convs: mmseg's
  DepthwiseSeparableASPPHead (DeepLabv3+).
  """

  dilations: tuple[int, ...] = (1, 12, 24, 36)
  output_stride: int = 8  # Of layer4, to place `valid_BHW` on its grid.
  separable: bool = False
  c1_channels: int = 48

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool,
               valid_BHW=None) -> jax.Array:
    mask = lambda x, stride=self.output_stride: mask_to(x, valid_BHW, stride)
    x = mask(features["layer4"])  # The dilated branches then read zeros past the edge.
    # image_pool = (AdaptiveAvgPool2d(1), ConvModule): its ConvModule is index 1.
    pooled = global_mean(x, valid_BHW, self.output_stride)  # Padding never counts.
    pooled = self.conv_module(pooled, self.channels, 1, train, "image_pool_1")
    # Bilinear resize of a 1x1 map is a broadcast; mmseg puts it first in the concat.
    branches = [jnp.broadcast_to(pooled, (*x.shape[:3], self.channels))]
    for i, dilation in enumerate(self.dilations):
      if dilation == 1:
        branches.append(self.conv_module(x, self.channels, 1, train, f"aspp_modules_{i}"))
      elif self.separable:
        branches.append(self.separable_module(x, self.channels, 3, train, f"aspp_modules_{i}",
                                       dilation=dilation))
      else:
        branches.append(self.conv_module(x, self.channels, 3, train, f"aspp_modules_{i}",
                                         dilation=dilation))
    y = self.conv_module(mask(jnp.concatenate(branches, axis=-1)), self.channels, 3, train,
                         "bottleneck")
    if self.separable:  # layer1 is at stride 4.
      c1 = self.conv_module(features["layer1"], self.c1_channels, 1, train, "c1_bottleneck")
      y = resize_to_stride(y, valid_BHW, self.output_stride, c1.shape[1:3], 4).astype(c1.dtype)
      y = mask(jnp.concatenate([y, c1], axis=-1), 4)
      y = self.separable_module(y, self.channels, 3, train, "sep_bottleneck_0")
      y = self.separable_module(mask(y, 4), self.channels, 3, train, "sep_bottleneck_1")
    return self.cls_seg(y, train)


def mmseg_aux_head(num_classes: int, args: AuxHeadArgs, channels: int, output_stride: int,
                   layers: dict) -> MMSegFCNHead | None:
  """The configs' auxiliary_head: FCNHead on layer3, one 3x3 conv of `channels`, no concat;
  None when `model.aux_head.enabled` is off."""
  if not args.enabled:
    return None
  return MMSegFCNHead(num_classes, feature="layer3", channels=channels, num_convs=1,
                      concat_input=False, dropout=args.dropout,
                      classifier_init=classifier_init(args.classifier_init_std),
                      stride=feature_stride("layer3", output_stride), **layers)


def _mmseg_segmentor(depth: int, head_kind: str):
  def build(num_classes: int, *, dtype: Dtype = AUTO, init: Init = "kaiming_normal",
            bn_momentum: BNMomentum = 0.9, backbone: ResNetArgs = ResNetArgs(depth=depth),
            head: MMSegHeadArgs = MMSegHeadArgs(), aux_head: AuxHeadArgs = AuxHeadArgs()
            ) -> Segmentor:
    """mmseg's FCN, DeepLabv3 or DeepLabv3+ R50-D8: its decode head and (aux_head) its
    auxiliary FCNHead on layer3, half as wide."""
    resnet, layers = resnet_and_layers(backbone, init=init, bn_momentum=bn_momentum,
                                       dtype=dtype)
    stride = backbone.output_stride
    common = dict(channels=head.channels, dropout=head.dropout,
                  classifier_init=classifier_init(head.classifier_init_std), **layers)
    if head_kind == "fcn":
      decode_head = MMSegFCNHead(num_classes, stride=stride, **common)
    else:  # mmseg's D8 dilations (1, 12, 24, 36); (1, 6, 12, 18) at D16, as its default.
      decode_head = MMSegASPPHead(num_classes, dilations=(1, *ASPP_RATES[stride]),
                                  output_stride=stride, separable=head_kind == "deeplabv3plus",
                                  **common)
    return Segmentor(backbone=resnet, classifier=decode_head,
                     aux_classifier=mmseg_aux_head(num_classes, aux_head, head.channels // 2,
                                                   stride, layers))
  return build


# Named for R50, the depth of the recipes and of the parity suite (a test checks each
# model); `model.backbone.depth=101` builds mmseg's R101-D8 (its fcn_r101-d8 configs).
for _head in ("fcn", "deeplabv3", "deeplabv3plus"):
  MODELS.register(f"mmseg_{_head}_resnet50")(_mmseg_segmentor(50, _head))
