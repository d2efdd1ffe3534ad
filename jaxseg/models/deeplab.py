"""DeepLabv3 (torchvision's structure) and DeepLabv3+ (Chen et al. 2018) on dilated ResNets.

ASPP submodules are named like torchvision's keys (`convs_1_0` is
`convs.1.0`) so checkpoints map mechanically in `convert.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.fcn import (AuxHeadArgs, ClassifierInitStd, HeadDropout, Segmentor,
                               classifier_init, fcn_aux_head, resnet_and_layers)
from jaxseg.models.layers import (AUTO, BNMomentum, Dtype, Init, batch_norm, conv2d,
                                  global_mean, mask_to, resize_to_stride)
from jaxseg.models.registry import MODELS
from jaxseg.models.resnet import ResNetArgs

# Atrous rates per output stride: the paper's 6/12/18 at OS16, doubled at OS8
# (torchvision's 12/24/36); halved again at OS32 so the field of view stays put.
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}

AsppDropout = Annotated[float, Arg(min=0, below=1, help=(
    "dropout after the ASPP projection (torchvision's DeepLabHead: 0.5)"))]


@dataclasses.dataclass(frozen=True)
class DeepLabV3HeadArgs:
  """`model.head` of torchvision's DeepLabv3 (its DeepLabHead)."""

  aspp_dropout: AsppDropout = 0.5
  classifier_init_std: ClassifierInitStd = 0.01


@dataclasses.dataclass(frozen=True)
class DeepLabV3PlusHeadArgs:
  """`model.head` of DeepLabv3+: ASPP, then the decoder fused with layer1."""

  aspp_dropout: AsppDropout = 0.5
  dropout: HeadDropout = 0.1
  classifier_init_std: ClassifierInitStd = 0.01


class _HeadBase(nn.Module):
  kernel_init: Callable
  bn_momentum: float
  dtype: Any
  classifier_init: Callable | None = None  # The 1x1 classifier's; None = kernel_init.

  def conv_bn_relu(self, x, features, kernel, train, conv_name, bn_name, dilation=1):
    x = conv2d(features, kernel, dilation=dilation, init=self.kernel_init, dtype=self.dtype,
               name=conv_name)(x)
    return nn.relu(batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype,
                              name=bn_name)(x))


class ASPP(_HeadBase):
  """1x1 branch, three atrous 3x3 branches, image pooling; concat, 1x1 projection."""

  rates: tuple[int, ...] = (12, 24, 36)
  features: int = 256
  dropout: float = 0.5
  stride: int = 8  # Of the input feature, to place `valid_BHW` on its grid.

  @nn.compact
  def __call__(self, x, *, train: bool, valid_BHW=None):
    x = mask_to(x, valid_BHW, self.stride)  # The atrous convs then read zeros past the edge.
    branches = [self.conv_bn_relu(x, self.features, 1, train, "convs_0_0", "convs_0_1")]
    for i, rate in enumerate(self.rates, start=1):
      branches.append(self.conv_bn_relu(x, self.features, 3, train, f"convs_{i}_0",
                                        f"convs_{i}_1", dilation=rate))
    i = len(self.rates) + 1
    # torchvision's ASPPPooling is (pool, conv, bn, relu): indices 1 and 2.
    pooled = global_mean(x, valid_BHW, self.stride)  # Padding never counts.
    pooled = self.conv_bn_relu(pooled, self.features, 1, train, f"convs_{i}_1", f"convs_{i}_2")
    # Bilinear upsampling of a 1x1 map is a broadcast.
    branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))
    x = jnp.concatenate(branches, axis=-1)
    x = self.conv_bn_relu(x, self.features, 1, train, "project_0", "project_1")
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class DeepLabHead(_HeadBase):
  """torchvision's DeepLabHead: ASPP, 3x3 conv-BN-ReLU, 1x1 classifier."""

  num_classes: int = 21
  rates: tuple[int, ...] = (12, 24, 36)
  aspp_dropout: float = 0.5
  output_stride: int = 8

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool,
               valid_BHW=None) -> jax.Array:
    common = dict(kernel_init=self.kernel_init, bn_momentum=self.bn_momentum, dtype=self.dtype)
    x = ASPP(rates=self.rates, dropout=self.aspp_dropout, stride=self.output_stride,
             name="aspp", **common)(features["layer4"], train=train, valid_BHW=valid_BHW)
    x = self.conv_bn_relu(mask_to(x, valid_BHW, self.output_stride), 256, 3, train, "conv", "bn")
    return conv2d(self.num_classes, 1, use_bias=True,
                  init=self.classifier_init or self.kernel_init, dtype=self.dtype, name="cls")(x)


class DeepLabV3PlusHead(_HeadBase):
  """ASPP on layer4, upsampled and fused with 48-channel layer1 features, two 3x3 convs."""

  num_classes: int = 21
  rates: tuple[int, ...] = (6, 12, 18)
  aspp_dropout: float = 0.5
  dropout: float = 0.1
  low_level_features: int = 48  # The paper's choice: few enough not to outweigh ASPP.
  output_stride: int = 8

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool,
               valid_BHW=None) -> jax.Array:
    common = dict(kernel_init=self.kernel_init, bn_momentum=self.bn_momentum, dtype=self.dtype)
    x = ASPP(rates=self.rates, dropout=self.aspp_dropout, stride=self.output_stride,
             name="aspp", **common)(features["layer4"], train=train, valid_BHW=valid_BHW)
    low = features["layer1"]
    low = self.conv_bn_relu(low, self.low_level_features, 1, train, "reduce_conv", "reduce_bn")
    x = resize_to_stride(x, valid_BHW, self.output_stride, low.shape[1:3], 4).astype(low.dtype)
    x = mask_to(jnp.concatenate([x, low], axis=-1), valid_BHW, 4)  # layer1 is at stride 4.
    x = self.conv_bn_relu(x, 256, 3, train, "fuse1_conv", "fuse1_bn")
    x = self.conv_bn_relu(mask_to(x, valid_BHW, 4), 256, 3, train, "fuse2_conv", "fuse2_bn")
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return conv2d(self.num_classes, 1, use_bias=True,
                  init=self.classifier_init or self.kernel_init, dtype=self.dtype, name="cls")(x)


def _deeplab(depth: int, plus: bool):
  def build(num_classes: int, *, dtype: Dtype = AUTO, init: Init = "kaiming_normal",
            bn_momentum: BNMomentum = 0.9, backbone: ResNetArgs = ResNetArgs(depth=depth),
            head: DeepLabV3PlusHeadArgs | DeepLabV3HeadArgs = (
                DeepLabV3PlusHeadArgs() if plus else DeepLabV3HeadArgs()),
            aux_head: AuxHeadArgs = AuxHeadArgs()) -> Segmentor:
    """torchvision's deeplabv3_resnet50/101, or DeepLabv3+ (`plus`) on the same backbone;
    aux_head: torchvision's FCN head on layer3."""
    resnet, layers = resnet_and_layers(backbone, init=init, bn_momentum=bn_momentum,
                                       dtype=dtype)
    stride = backbone.output_stride
    common = dict(num_classes=num_classes, rates=ASPP_RATES[stride], output_stride=stride,
                  aspp_dropout=head.aspp_dropout,
                  classifier_init=classifier_init(head.classifier_init_std), **layers)
    classifier = (DeepLabV3PlusHead(dropout=head.dropout, **common) if plus
                  else DeepLabHead(**common))
    return Segmentor(backbone=resnet, classifier=classifier,
                     aux_classifier=fcn_aux_head(num_classes, aux_head, stride, layers))
  return build


MODELS.register("deeplabv3_resnet50")(_deeplab(50, plus=False))
MODELS.register("deeplabv3_resnet101")(_deeplab(101, plus=False))
MODELS.register("deeplabv3plus_resnet50")(_deeplab(50, plus=True))
MODELS.register("deeplabv3plus_resnet101")(_deeplab(101, plus=True))
