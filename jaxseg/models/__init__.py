"""Segmentation models, chosen by `model.name`.

Each registered factory is `build_x(num_classes, *, dtype, <its own arguments>)`: its
keyword-only parameters are the `model` keys it takes, each declared once with its
default, range and meaning (jaxseg/declare.py). Groups several factories
share are frozen dataclasses, nested dicts of the section: `model.backbone`
(resnet.ResNetArgs, vgg.VGGArgs, mit.MiTArgs), `model.head` (each family's own) and
`model.aux_head` (fcn.AuxHeadArgs). `--set model.head.aspp_dropout=0.3` with `unet`
fails at load naming the models that take it.
Every model is a linen module called as `model.apply(variables, x_BHWC, train=...)`
returning `(logits_BHWC float32, aux: dict)`; `aux` may hold `aux_logits`.
Every model also takes `valid_BHW=None`, a bool mask of the real (non-padding)
pixels at input resolution: global pooling (ASPP's image branch) averages only
those, SegFormer's attention masks the padded keys (mit.py); the convolutional
models zero padding before each conv wider than 1x1 (layers.mask_to).
"""

from __future__ import annotations

import ml_collections

from jaxseg.config.checks import Checker
from jaxseg.config.sections import Choice, Section
# Every module that registers a model, imported here once so MODELS is complete.
from jaxseg.models import deeplab, fcn, fcn_vgg, mmseg_heads, seed_cnn, segformer, unet
from jaxseg.models.registry import MODELS


# The `model` section (jaxseg/config/sections.py): the keys read outside the factories
# (jaxseg/models/weights.py, convert.py), then the chosen factory's own.
SECTION = Section("model", shared={
    "name": "unet",  # python run.py --list
    # ImageNet weights of the backbone: a name (open-mmlab://resnet50_v1c,
    # torchvision://resnet50, ...; downloaded once into weights_dir), a .pth,
    # .safetensors or .npz file, or 'none' (from scratch, on purpose); '' loads nothing.
    "backbone_weights": "",
    # A whole segmentation checkpoint (file); when set, backbone_weights is not read.
    "weights": "",
    # Cache of named weights; put files here by hand on offline machines.
    "weights_dir": "~/.cache/jaxseg/weights",
}, choices=(Choice("name", MODELS),))


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
  """The model `model_cfg.name` names, built from its own keys of `model_cfg`."""
  return MODELS.build(model_cfg.name, model_cfg, num_classes=num_classes)


def validate_config(model_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad shared `model` key; the chosen
  factory's own arguments are checked against their declarations (Section.check),
  the weights keys by weights.validate_config."""
  Checker(model_cfg, "model").choice("name", model_names(), "model")


def model_names() -> list[str]:
  return MODELS.names()
