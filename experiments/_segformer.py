"""mmsegmentation 1.2.2's SegFormer recipes, one per MiT size: the `ade20k_segformer_b*`
and `cityscapes_segformer_b*` experiments.

configs/segformer/segformer_mit-b{0..5}_8xb2-160k_ade20k-512x512.py and
segformer_mit-b{0..5}_8xb1-160k_cityscapes-1024x1024.py (and B5's
_8xb2-160k_ade20k-640x640.py: the `640x640` variant of `ade20k_segformer_b5`):
- model: MiT-B* with mmseg's SegformerHead (`model.head.style=mmseg`: its LayerNorm eps
  1e-6, 256 decoder channels at every size), dropout 0.1 before conv_seg, drop path
  0.1; one CE (weight 1) summed over every pixel, no aux head; the encoder starts
  from mmseg's ImageNet MiT weights (`open-mmlab://mit_b*`, downloaded once into
  `model.weights_dir`; `--set model.backbone_weights=none` trains from scratch);
- optimizer: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with paramwise
  custom_keys (`norm`/`pos_block` no decay, `head` lr x10), LinearLR warmup from
  1e-6 over 1500 iterations then PolyLR power 1 to 0 at 160k, stepped as mmengine
  steps them (jaxseg/models/segformer.py MMSEG_RECIPE_OPTIM);
- data: the datasets' mmseg pipelines (_ade20k.py, _cityscapes.py), 160k
  iterations validated every 16k; ADE20K batch 16 (8 GPUs x 2), 512x512 crops,
  whole inference; Cityscapes batch 8 (8 x 1), 1024x1024 crops, slide inference
  with 1024x1024 windows at stride 768 (eval.mode=slide).

Variants: `smoke` (the same model and step on embedded data, CPU seconds),
`loss=NAME`, and `640x640` for `ade20k_segformer_b5`.
"""

from __future__ import annotations

import ml_collections

from experiments import _ade20k, _cityscapes, _mmseg
from experiments.base import LOSS_VARIANT, apply_loss_variant
from jaxseg.config.loading import parse_variant
from jaxseg.models.segformer import MMSEG_RECIPE_OPTIM

SIZES = ("b0", "b1", "b2", "b3", "b4", "b5")
DATASETS = ("ade20k", "cityscapes")
STEPS, EVAL_EVERY = 160_000, 16_000  # mmseg's schedule_160k.py.
SLIDE_WINDOW, SLIDE_STRIDE = (1024, 1024), (768, 768)  # Cityscapes test_cfg, (H, W).
HEAD_CHANNELS = 256  # mmseg's SegformerHead channels, the same for every size.


def dataset_config(dataset: str, flags: set[str]) -> ml_collections.ConfigDict:
  if dataset == "ade20k":
    return _ade20k.ade20k_config(crop=640 if "640x640" in flags else 512, steps=STEPS,
                                 eval_every=EVAL_EVERY)
  c = _cityscapes.cityscapes_config(crop_size=(1024, 1024), steps=STEPS, eval_every=EVAL_EVERY)
  c.eval.mode = "slide"  # test_cfg=dict(mode='slide', crop_size=..., stride=...).
  c.eval.crop_size = SLIDE_WINDOW
  c.eval.stride = SLIDE_STRIDE
  return c


def variants(dataset: str, size: str) -> tuple[set[str], dict]:
  """(flags, options) the `dataset` x `size` experiment takes (shown by --list)."""
  extra = {"640x640"} if (dataset, size) == ("ade20k", "b5") else set()
  return _mmseg.VARIANT_FLAGS | extra, LOSS_VARIANT


def experiment(dataset: str, size: str, variant: str) -> ml_collections.ConfigDict:
  """SegFormer-`size` with mmseg's recipe on `dataset` (see the module doc)."""
  assert dataset in DATASETS and size in SIZES, (dataset, size)
  known_flags, known_keys = variants(dataset, size)
  flags, options = parse_variant(variant, known_flags=known_flags, known_keys=known_keys)
  c = dataset_config(dataset, flags)
  c.model.name = f"segformer_{size}"
  # SegformerHead's channels and dropout_ratio, MixVisionTransformer's drop_path_rate.
  c.model.head = dict(style="mmseg", channels=HEAD_CHANNELS, dropout=0.1)
  c.model.backbone = dict(drop_path_rate=0.1)
  c.model.backbone_weights = f"open-mmlab://mit_{size}"
  c.optim.update(MMSEG_RECIPE_OPTIM)
  apply_loss_variant(c, options)
  if "smoke" in flags:
    _mmseg.apply_smoke(c)
    c.eval.crop_size, c.eval.stride = (32, 32), (24, 24)  # Slide still slides (cityscapes).
  return c
