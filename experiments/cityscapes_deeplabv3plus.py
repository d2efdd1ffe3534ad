"""DeepLabV3+-R50-D8 on Cityscapes, built to be mmseg's
deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024: ResNet-50-v1c at output stride 8,
mmseg's DepthwiseSeparableASPPHead, aux FCN head (0.4), 19 classes, 512x1024 crops,
whole-image inference at 1024x2048. mmseg reports 80.09 Cityscapes val mIoU for
that config (single scale; 81.13 multi-scale + flip); jaxseg has not trained it to
that number.

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_mmseg.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _cityscapes, _mmseg
from experiments.base import LOSS_VARIANT

# The variants get_config takes (resnet_experiment parses them); `run.py --list` shows them.
VARIANT_FLAGS = _mmseg.RESNET_VARIANT_FLAGS
VARIANT_OPTIONS = LOSS_VARIANT


def get_config(variant: str = ""):
  return _cityscapes.resnet_experiment("deeplabv3plus_resnet50", variant)
