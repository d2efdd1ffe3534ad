"""FCN on a dilated ResNet (torchvision's fcn_resnet50/101) and the backbone+head wrapper.

The wrapper is shared by the DeepLab models: a backbone returning named
features, a head mapping those features to coarse logits, and torchvision's
auxiliary FCN head on layer3.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models.layers import (batch_norm, compute_dtype, conv2d, kernel_init, mask_to,
                                  resize_bilinear)
from jaxseg.models.registry import MODELS
from jaxseg.models.resnet import feature_stride, resnet_backbone
from jaxseg.models.zoo_config import check_choice


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


def head_kwargs(*, init: str, classifier_init_std: float, bn_momentum: float, dtype: str) -> dict:
  """The init/BN/dtype settings every head shares, from the zoo models' `model` keys:

  init: the convs' kernel initializer, as the backbone's (`layers.kernel_init`).
  classifier_init_std: std of the normal init of the heads' 1x1 classifiers
    (mmsegmentation's 0.01, so the first logits are near zero); 0 = `init`, as the other convs.
  bn_momentum, dtype: as the backbone's (`resnet.resnet_backbone`).
  """
  return dict(kernel_init=kernel_init(check_choice("init", init)), bn_momentum=bn_momentum,
              dtype=compute_dtype(dtype),
              classifier_init=(nn.initializers.normal(classifier_init_std)
                               if classifier_init_std > 0 else None))


def resnet_and_heads(depth: int, *, output_stride: int, deep_stem: bool, init: str,
                     classifier_init_std: float, zero_init_residual: bool, bn_momentum: float,
                     dtype: str) -> tuple[nn.Module, dict]:
  """(backbone, head settings) of a ResNet zoo model from the keys all of them take:
  `resnet.resnet_backbone` and `head_kwargs`, built alike for every head."""
  backbone = resnet_backbone(depth, output_stride=output_stride, deep_stem=deep_stem, init=init,
                             bn_momentum=bn_momentum, zero_init_residual=zero_init_residual,
                             dtype=dtype)
  return backbone, head_kwargs(init=init, classifier_init_std=classifier_init_std,
                               bn_momentum=bn_momentum, dtype=dtype)


def fcn_aux_head(num_classes: int, enabled: bool, dropout: float, output_stride: int,
                 head: dict) -> FCNHead | None:
  """torchvision's aux_classifier (FCNHead on layer3), or None when `model.aux_head` is off."""
  if not enabled:
    return None
  return FCNHead(num_classes, feature="layer3", dropout=dropout,
                 stride=feature_stride("layer3", output_stride), **head)


def _fcn_resnet(depth: int):
  def build(num_classes: int, *, dtype: str = "auto", output_stride: int = 8,
            deep_stem: bool = False, aux_head: bool = True, dropout: float = 0.1,
            init: str = "kaiming_normal", classifier_init_std: float = 0.01,
            zero_init_residual: bool = False, bn_momentum: float = 0.9) -> Segmentor:
    """torchvision's fcn_resnet50/101.

    aux_head: also an FCN head on layer3 (torchvision's aux_classifier), its
      logits returned as `aux_logits`.
    dropout: before the 1x1 classifier of both FCN heads.
    Backbone keys: `resnet.resnet_backbone`; init and classifier_init_std: `head_kwargs`.
    """
    backbone, head = resnet_and_heads(
        depth, output_stride=output_stride, deep_stem=deep_stem, init=init,
        classifier_init_std=classifier_init_std, zero_init_residual=zero_init_residual,
        bn_momentum=bn_momentum, dtype=dtype)
    return Segmentor(
        backbone=backbone,
        classifier=FCNHead(num_classes, feature="layer4", dropout=dropout,
                           stride=output_stride, **head),
        aux_classifier=fcn_aux_head(num_classes, aux_head, dropout, output_stride, head))
  return build


MODELS.register("fcn_resnet50")(_fcn_resnet(50))
MODELS.register("fcn_resnet101")(_fcn_resnet(101))
