"""DeepLabv3+-R50-D8: ResNet-50-v1c at output stride 8, ASPP and a decoder fusing
48-channel layer1 features, aux FCN head (0.4).

Variants `smoke`, `tv`, `loss=NAME`, and pretrained weights: see
`_voc.resnet_experiment`.
"""

from __future__ import annotations

from experiments import _voc


def get_config(variant: str = ""):
  return _voc.resnet_experiment("deeplabv3plus_resnet50", variant)
