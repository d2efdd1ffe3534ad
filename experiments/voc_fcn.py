"""FCN-R50-D8, built to be mmseg's fcn_r50-d8_4xb4-20k_voc12aug-512x512: ResNet-50-v1c
(deep stem) at output stride 8, mmseg's FCNHead, aux FCN head on layer3 (0.4).
mmseg reports 67.08 VOC val mIoU for that config (single scale); jaxseg has not
trained it to that number (README, docs/models.md).

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_voc.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _mmseg, _voc
from experiments.base import LOSS_VARIANT

# The variants get_config takes (resnet_experiment parses them); `run.py --list` shows them.
VARIANT_FLAGS = _mmseg.RESNET_VARIANT_FLAGS
VARIANT_OPTIONS = LOSS_VARIANT


def get_config(variant: str = ""):
  return _voc.resnet_experiment("fcn_resnet50", variant)
