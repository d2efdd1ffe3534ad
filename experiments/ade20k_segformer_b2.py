"""SegFormer-B2 on ADE20K: mmseg's segformer_mit-b2_8xb2-160k_ade20k-512x512
(experiments/_segformer.py; its target: docs/data.md).
"""

from experiments import _segformer

VARIANT_FLAGS, VARIANT_OPTIONS = _segformer.variants("ade20k", "b2")


def get_config(variant: str = ""):
  return _segformer.experiment("ade20k", "b2", variant)
