"""SegFormer-B2 on Cityscapes: mmseg's segformer_mit-b2_8xb1-160k_cityscapes-1024x1024
(experiments/_segformer.py; its target: docs/data.md).
"""

from experiments import _segformer

VARIANT_FLAGS, VARIANT_OPTIONS = _segformer.variants("cityscapes", "b2")


def get_config(variant: str = ""):
  return _segformer.experiment("cityscapes", "b2", variant)
