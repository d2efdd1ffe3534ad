"""SegFormer-B3 on Cityscapes: mmseg's segformer_mit-b3_8xb1-160k_cityscapes-1024x1024
(experiments/_segformer.py; its target: docs/data.md).
"""

from experiments import _segformer

VARIANT_FLAGS, VARIANT_OPTIONS = _segformer.variants("cityscapes", "b3")


def get_config(variant: str = ""):
  return _segformer.experiment("cityscapes", "b3", variant)
