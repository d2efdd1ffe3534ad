"""SegFormer-B5 on ADE20K: mmseg's segformer_mit-b5_8xb2-160k_ade20k-512x512
(experiments/_segformer.py; its target: docs/data.md).
Variant `640x640`: segformer_mit-b5_8xb2-160k_ade20k-640x640 (640x640 crops,
rescale base and test scale (2048, 640)).
"""

from experiments import _segformer

VARIANT_FLAGS, VARIANT_OPTIONS = _segformer.variants("ade20k", "b5")


def get_config(variant: str = ""):
  return _segformer.experiment("ade20k", "b5", variant)
