"""Named SegFormer weights for `model.backbone_weights` (looked up by weights.py's NAMED).

mmsegmentation's MiT ImageNet-1k encoders, the `checkpoint` of its
segformer_mit-b*_8xb2-160k_ade20k-512x512.py configs (mmseg-style keys: load with
either `model.head.style`; convert_segformer reads them). Each file name ends in the
first 8 hex digits of its sha256 (mmcv's publish_model), which weights.fetch checks.

transformers' nvidia/mit-b* and nvidia/segformer-b*-finetuned-* checkpoints carry
no hash in their file names: they are `hf://` names (hf_hub.py), checked against
the sha256 the Hub announces. Whole mmseg SegFormer checkpoints: docs/models.md
lists their URLs for `model.weights`.
"""

from __future__ import annotations

_PRETRAIN = "https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/"

NAMED = {
    "open-mmlab://mit_b0": _PRETRAIN + "mit_b0_20220624-7e0fe6dd.pth",
    "open-mmlab://mit_b1": _PRETRAIN + "mit_b1_20220624-02e5a6a1.pth",
    "open-mmlab://mit_b2": _PRETRAIN + "mit_b2_20220624-66e8bf70.pth",
    "open-mmlab://mit_b3": _PRETRAIN + "mit_b3_20220624-13b1141c.pth",
    "open-mmlab://mit_b4": _PRETRAIN + "mit_b4_20220624-d588d980.pth",
    "open-mmlab://mit_b5": _PRETRAIN + "mit_b5_20220624-658746d9.pth",
}
