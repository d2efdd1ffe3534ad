"""SegFormer: the MiT encoder (mit.py) under one of its two published all-MLP decoders.

`model.head.style` picks the implementation whose weights load, and with it the
encoder's LayerNorm epsilon:
- `hf`: transformers' SegformerDecodeHead (nvidia/segformer-* checkpoints): a
  Linear per stage, each upsampled to stride 4, concatenated from the DEEPEST
  stage, a 1x1 fuse conv + BN + ReLU, element-wise dropout, a 1x1 classifier.
  transformers builds every LayerNorm with torch's default eps, 1e-5.
- `mmseg`: mmsegmentation's SegformerHead (its segformer_mit-* checkpoints): a
  1x1 ConvModule (conv, BN, ReLU) per stage, concatenated from the SHALLOWEST,
  a fusion ConvModule, Dropout2d, `conv_seg`. mmseg's mit.py uses LayerNorm eps 1e-6.
Both resize bilinearly (align_corners=False) to the stride-4 grid; with
`valid_BHW` each example's valid grid is resized on its own (`layers.resize_to_stride`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.declare import Arg
from jaxseg.models.fcn import Segmentor
from jaxseg.models.layers import (AUTO, Dtype, batch_norm, compute_dtype, kernel_init,
                                  resize_to_stride)
from jaxseg.models.mit import (MIT_SIZES, STAGE_STRIDES, STAGES, MiTArgs, MixTransformer,
                               dense_init)
from jaxseg.models.mmseg_heads import _DecodeHead
from jaxseg.models.registry import MODELS

LN_EPS = {"hf": 1e-5, "mmseg": 1e-6}
# The decoder width of the published models: the paper's and transformers' 256 for B0/B1
# and 768 for B2..B5. mmseg 1.x's SegformerHead configs use 256 for every size.
HEAD_CHANNELS = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768}


@dataclasses.dataclass(frozen=True)
class SegFormerHeadArgs:
  """`model.head` of the SegFormers (each size's default `channels`: HEAD_CHANNELS)."""

  style: Annotated[str, Arg(choices=tuple(LN_EPS), help=(
      "hf: transformers' decoder (nvidia/* weights); mmseg: mmsegmentation's (its "
      "segformer_mit-* weights, 256 channels at every size); each with its LayerNorm eps"))
  ] = "hf"
  channels: Annotated[int, Arg(min=1, help=(
      "decoder width (the published 256 for B0/B1, 768 for B2..B5)"))] = 256
  dropout: Annotated[float, Arg(min=0, below=1, help=(
      "before the classifier (element-wise for hf, Dropout2d for mmseg)"))] = 0.1


def to_stride4(x_BHWC, valid_BHW, stride: int, size_hw) -> jax.Array:
  """A stage's map on the stride-4 grid of size `size_hw` (identity for stage 1)."""
  if stride == STAGE_STRIDES[0]:
    return x_BHWC
  return resize_to_stride(x_BHWC, valid_BHW, stride, size_hw, STAGE_STRIDES[0])


class HFSegformerHead(nn.Module):
  """transformers' SegformerDecodeHead."""

  num_classes: int
  channels: int
  dropout: float
  classifier_init: Callable
  dtype: Any
  bn_momentum: float = 0.9  # flax's; torch's 0.1.

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool, valid_BHW=None):
    size_hw = features[STAGES[0]].shape[1:3]
    projected = []
    for i, (name, stride) in enumerate(zip(STAGES, STAGE_STRIDES)):
      x = nn.Dense(self.channels, kernel_init=dense_init, dtype=self.dtype,
                   name=f"linear_c_{i}")(features[name])
      projected.append(to_stride4(x, valid_BHW, stride, size_hw).astype(self.dtype))
    x = nn.Conv(self.channels, (1, 1), use_bias=False, kernel_init=kernel_init("kaiming_normal"),
                dtype=self.dtype, name="linear_fuse")(jnp.concatenate(projected[::-1], -1))
    x = nn.relu(batch_norm(train=train, momentum=self.bn_momentum, dtype=self.dtype,
                           name="batch_norm")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Conv(self.num_classes, (1, 1), kernel_init=self.classifier_init, dtype=self.dtype,
                   name="classifier")(x)


class MMSegSegformerHead(_DecodeHead):
  """mmsegmentation's SegformerHead (its ConvModules and cls_seg: mmseg_heads._DecodeHead)."""

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], *, train: bool, valid_BHW=None):
    size_hw = features[STAGES[0]].shape[1:3]
    outs = []
    for i, (name, stride) in enumerate(zip(STAGES, STAGE_STRIDES)):
      x = self.conv_module(features[name], self.channels, 1, train, f"convs_{i}")
      outs.append(to_stride4(x, valid_BHW, stride, size_hw).astype(self.dtype))
    x = self.conv_module(jnp.concatenate(outs, -1), self.channels, 1, train, "fusion_conv")
    return self.cls_seg(x, train)


def segformer(variant: str, num_classes: int, *, head: SegFormerHeadArgs, backbone: MiTArgs,
              dtype: str) -> Segmentor:
  """SegFormer-`variant` (b0..b5) with the `head.style` implementation's decoder and
  LayerNorms."""
  if head.style not in LN_EPS:
    raise ValueError(f"SegFormer head style {head.style!r}; expected one of {list(LN_EPS)}")
  embed_dims, depths = MIT_SIZES[variant]
  dtype_ = compute_dtype(dtype)
  classifier_init = nn.initializers.normal(0.01)  # mmseg's conv_seg init.
  if head.style == "hf":
    decoder = HFSegformerHead(num_classes, head.channels, head.dropout, classifier_init, dtype_)
  else:
    decoder = MMSegSegformerHead(num_classes, kernel_init=kernel_init("kaiming_normal"),
                                 bn_momentum=0.9, dtype=dtype_, classifier_init=classifier_init,
                                 channels=head.channels, dropout=head.dropout)
  encoder = MixTransformer(embed_dims, depths, drop_path_rate=backbone.drop_path_rate,
                           ln_eps=LN_EPS[head.style], dtype=dtype_)
  return Segmentor(backbone=encoder, classifier=decoder)


def _register(variant: str):
  def build(num_classes: int, *, dtype: Dtype = AUTO, backbone: MiTArgs = MiTArgs(),
            head: SegFormerHeadArgs = SegFormerHeadArgs(channels=HEAD_CHANNELS[variant])
            ) -> Segmentor:
    """SegFormer on MiT-{variant}."""
    return segformer(variant, num_classes, head=head, backbone=backbone, dtype=dtype)
  build.__doc__ = build.__doc__.format(variant=variant.upper())
  return build


for _variant in MIT_SIZES:
  MODELS.register(f"segformer_{_variant}")(_register(_variant))


# The `optim` section of mmseg's SegFormer recipe (segformer_mit-b0_8xb2-160k_ade20k-512x512.py:
# AdamW, paramwise_cfg custom_keys {'pos_block': decay_mult 0, 'norm': decay_mult 0,
# 'head': lr_mult 10}; LinearLR(start_factor=1e-6, end=1500) then PolyLR(power=1, eta_min=0)).
# mmengine matches its keys as substrings of torch names; these regexes pick the same
# params here: `norm` is in the names of the patch-embedding, block and attention
# LayerNorms but not in the stage norms' (`layers.i.2`); `head` is the decoder
# (`classifier` here); MiT has no `pos_block`. A recipe: `config.optim.update(MMSEG_RECIPE_OPTIM)`
# with train.steps 160000 (tests/test_parity_segformer_step.py checks it against mmseg's).
MMSEG_RECIPE_OPTIM = dict(
    name="adamw", lr=6e-5, b1=0.9, b2=0.999, weight_decay=0.01,
    lr_mult=((r"^classifier/", 10.0),), decay_mult=((r"/norm\d?/", 0.0),),
    schedule="poly", poly=dict(power=1.0, end_lr=0.0), warmup_steps=1500,
    warmup_start_factor=1e-6, mmengine_schedule=True)
