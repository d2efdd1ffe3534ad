"""DeepLabv3-R50-D8 with mmsegmentation's recipe: ResNet-50-v1c at output stride 8,
ASPP (rates 12/24/36) with image pooling, aux FCN head (0.4). mmsegmentation
reports 76.2 val mIoU for this schedule.

Pretrained backbone: `--set model.backbone_weights=resnet50_v1c.pth` (mmsegmentation's
open-mmlab://resnet50_v1c converted to a state dict; its `stem.0/3/6` keys map onto
the deep stem). For torchvision's ResNet-50 weights use the `tv` variant (7x7 stem).

Variants: `smoke` (CPU seconds, on shapes), `tv`, `loss=NAME`. The shared VOC
recipe is in experiments/_voc.py.
"""

from __future__ import annotations

from experiments import _voc


def get_config(variant: str = ""):
  return _voc.resnet_experiment("deeplabv3_resnet50", variant)
