"""DeepLabV3+-R50-D8 on ADE20K, built to be mmseg's deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512:
ResNet-50-v1c at output stride 8, mmseg's DepthwiseSeparableASPPHead (decoder on
48-channel layer1 features), aux FCN head (0.4), 150 classes. mmseg reports 42.72
ADE20K val mIoU for that config (single scale; 43.75 multi-scale + flip); jaxseg
has not trained it to that number.

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_mmseg.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _ade20k, _mmseg
from experiments.base import LOSS_VARIANT

# The variants get_config takes (resnet_experiment parses them); `run.py --list` shows them.
VARIANT_FLAGS = _mmseg.RESNET_VARIANT_FLAGS
VARIANT_OPTIONS = LOSS_VARIANT


def get_config(variant: str = ""):
  return _ade20k.resnet_experiment("deeplabv3plus_resnet50", variant)
