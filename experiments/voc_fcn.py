"""FCN-R50-D8 with mmsegmentation's recipe: ResNet-50-v1c (deep stem) at output
stride 8, FCN head, aux FCN head on layer3 (loss weight 0.4). mmsegmentation
reports 67.1 val mIoU for this schedule.

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_voc.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _voc


def get_config(variant: str = ""):
  return _voc.resnet_experiment("fcn_resnet50", variant)
