"""Segmentation models, chosen by `model.name`.

Each registered factory is `build_x(num_classes, *, dtype, <its own keys>)`: its
keyword-only parameters, with their defaults, are the `model` keys it takes
(jaxseg/config/sections.py), so `--set model.aspp_dropout=0.3` with `unet` fails at load.
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
from jaxseg.models.layers import AUTO, DTYPES
from jaxseg.models.registry import MODELS
from jaxseg.models.zoo_config import CHOICES


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
  """Fails at config load (not mid-run) on a bad `model` section; the keys only some
  models take are checked when the chosen one does."""
  c = Checker(model_cfg, "model")
  c.choice("name", model_names(), "model")
  c.choice("dtype", [AUTO, *DTYPES], optional=True)
  c.choice("init", CHOICES["init"], optional=True)
  c.choice("head", CHOICES["head"], optional=True)
  if "output_stride" in model_cfg and model_cfg.output_stride not in CHOICES["output_stride"]:
    c.fail("output_stride", f"one of {list(CHOICES['output_stride'])}")
  c.count("width", optional=True)
  c.count("depth", min=0, optional=True)
  c.count("fc_channels", optional=True)
  c.count("head_channels", min=2, optional=True)  # The mmseg aux head has half of them.
  for key in ("dropout", "aspp_dropout", "fc_dropout", "drop_path_rate"):
    c.number(key, min=0, below=1, optional=True)
  c.number("bn_momentum", min=0, max=1, optional=True)
  c.number("classifier_init_std", min=0, optional=True)


def model_names() -> list[str]:
  return MODELS.names()
