"""DeepLabv3-R50-D8 with mmsegmentation's recipe: ResNet-50-v1c at output stride 8,
ASPP (rates 12/24/36) with image pooling, aux FCN head (0.4). mmsegmentation
reports 76.2 val mIoU for this schedule.

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_voc.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _voc


def get_config(variant: str = ""):
  return _voc.resnet_experiment("deeplabv3_resnet50", variant)
