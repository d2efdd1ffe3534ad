"""FCN on a dilated ResNet (torchvision's fcn_resnet50/101) and the backbone+head wrapper.

The wrapper is shared by the DeepLab models: a backbone returning named
features, a head mapping those features to coarse logits, and torchvision's
auxiliary FCN head on layer3. So are the `model` groups every ResNet model's heads
declare alike (`AuxHeadArgs`, `ClassifierInitStd`, `HeadDropout`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.layers import (AUTO, BNMomentum, Dtype, Init, batch_norm, compute_dtype,
                                  conv2d, kernel_init, mask_to, resize_bilinear)
from jaxseg.models.registry import MODELS
from jaxseg.models.resnet import ResNet, ResNetArgs, feature_stride, resnet_backbone

# What every ResNet model's heads declare alike (`model.head.*`, `model.aux_head.*`).
ClassifierInitStd = Annotated[float, Arg(min=0, help=(
    "std of the normal init of the 1x1 classifier (mmsegmentation's 0.01: the first "
    "logits near zero); 0 = model.init, as the other convs"))]
HeadDropout = Annotated[float, Arg(min=0, below=1, help="dropout before the 1x1 classifier")]


@dataclasses.dataclass(frozen=True)
class FCNHeadArgs:
  """`model.head` of torchvision's FCN (its FCNHead on layer4)."""

  dropout: HeadDropout = 0.1
  classifier_init_std: ClassifierInitStd = 0.01


@dataclasses.dataclass(frozen=True)
class AuxHeadArgs:
  """`model.aux_head` of every ResNet model: torchvision's aux_classifier or
  mmsegmentation's auxiliary_head, an FCN head on layer3."""

  enabled: Annotated[bool, Arg(help="build it; its logits are returned as aux_logits")] = True
  dropout: HeadDropout = 0.1
  classifier_init_std: ClassifierInitStd = 0.01


class FCNHead(nn.Module):
  """torchvision's FCNHead: 3x3 conv to in/4 channels, BN, ReLU, dropout, 1x1 classifier."""

  num_classes: int
  feature: str  # Which backbone feature the head reads.
  dropout: float
  kernel_init: Callable
  bn_momentum: float
  dtype: Any
  classifier_init: Callable | None = None  # The 1x1 classifier's; None = kernel_init.
  stride: int = 8  # Of `feature`, to place `valid_BHW` on its grid.

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool,
               valid_BHW=None) -> jax.Array:
    x = mask_to(features[self.feature], valid_BHW, self.stride)
    x = conv2d(x.shape[-1] // 4, 3, init=self.kernel_init, dtype=self.dtype, name="conv")(x)
    x = nn.relu(batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype,
                           name="bn")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return conv2d(self.num_classes, 1, use_bias=True,
                  init=self.classifier_init or self.kernel_init, dtype=self.dtype, name="cls")(x)


class Segmentor(nn.Module):
  """Backbone -> head (-> aux head), logits upsampled bilinearly to the input size."""

  backbone: nn.Module
  classifier: nn.Module
  aux_classifier: nn.Module | None = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, *, train: bool, valid_BHW: jax.Array | None = None):
    """`valid_BHW` (bool, input resolution) marks the real pixels of a top-left-padded
    canvas: the valid features and logits are then the unpadded image's (`layers.mask_to`)."""
    H, W = x_BHWC.shape[1:3]
    features = self.backbone(x_BHWC, train=train, valid_BHW=valid_BHW)
    # Upsample in float32: the logits feed a float32 softmax at full resolution.
    logits_BHWC = resize_bilinear(
        self.classifier(features, train=train, valid_BHW=valid_BHW).astype(jnp.float32),
        (H, W))
    aux = {}
    if self.aux_classifier is not None:
      aux["aux_logits"] = resize_bilinear(
          self.aux_classifier(features, train=train, valid_BHW=valid_BHW).astype(jnp.float32),
          (H, W))
    return logits_BHWC, aux


def classifier_init(std: float) -> Callable | None:
  """A head's 1x1 classifier init from its `classifier_init_std`: None = the convs' own."""
  return nn.initializers.normal(std) if std > 0 else None


def resnet_and_layers(backbone: ResNetArgs, *, init: str, bn_momentum: float,
                      dtype: str) -> tuple[ResNet, dict]:
  """(backbone, the init/BN/dtype settings of every head's layers) of a ResNet zoo model:
  `init`, `bn_momentum` and `dtype` apply to the backbone and the heads alike."""
  layers = dict(kernel_init=kernel_init(init), bn_momentum=bn_momentum,
                dtype=compute_dtype(dtype))
  return resnet_backbone(backbone, init=init, bn_momentum=bn_momentum,
                         dtype=dtype), layers


def fcn_aux_head(num_classes: int, args: AuxHeadArgs, output_stride: int,
                 layers: dict) -> FCNHead | None:
  """torchvision's aux_classifier (FCNHead on layer3), or None when `model.aux_head.enabled`
  is off."""
  if not args.enabled:
    return None
  return FCNHead(num_classes, feature="layer3", dropout=args.dropout,
                 classifier_init=classifier_init(args.classifier_init_std),
                 stride=feature_stride("layer3", output_stride), **layers)


def _fcn_resnet(depth: int):
  def build(num_classes: int, *, dtype: Dtype = AUTO, init: Init = "kaiming_normal",
            bn_momentum: BNMomentum = 0.9, backbone: ResNetArgs = ResNetArgs(depth=depth),
            head: FCNHeadArgs = FCNHeadArgs(), aux_head: AuxHeadArgs = AuxHeadArgs()
            ) -> Segmentor:
    """torchvision's fcn_resnet50/101: FCN heads on layer4 and (aux_head) layer3."""
    resnet, layers = resnet_and_layers(backbone, init=init, bn_momentum=bn_momentum,
                                       dtype=dtype)
    stride = backbone.output_stride
    return Segmentor(
        backbone=resnet,
        classifier=FCNHead(num_classes, feature="layer4", dropout=head.dropout, stride=stride,
                           classifier_init=classifier_init(head.classifier_init_std), **layers),
        aux_classifier=fcn_aux_head(num_classes, aux_head, stride, layers))
  return build


MODELS.register("fcn_resnet50")(_fcn_resnet(50))
MODELS.register("fcn_resnet101")(_fcn_resnet(101))
