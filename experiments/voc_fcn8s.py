"""FCN-8s on VGG-16 (Long et al. 2015) with the shared VOC recipe.

VGG-16 keeps its stride-32 pools with pool4/pool3 skips (output stride 32 at the
classifier); no aux head. The paper trained at lr 1e-4 with unnormalised loss;
with jaxseg's mean-over-pixels loss the VOC recipe's lr 0.01 applies. The backbone
starts from torchvision's ImageNet VGG-16 (torchvision://vgg16, downloaded once; the
run refuses to start without it unless `--set model.backbone_weights=none`).

It targets no published number: mmseg has no VGG FCN config, and the paper's
results are VOC 2012 test-set numbers of Caffe's VGG-16 under another training.

Variants: `smoke` (CPU seconds, on shapes), `loss=NAME`.
"""

from __future__ import annotations

from experiments import _voc
from experiments.base import LOSS_VARIANT, apply_loss_variant
from jaxseg.config.loading import parse_variant


# What `--exp voc_fcn8s:VARIANT` takes; `python run.py --list` shows them.
VARIANT_FLAGS = _voc.VARIANT_FLAGS
VARIANT_OPTIONS = LOSS_VARIANT


def get_config(variant: str = ""):
  flags, options = parse_variant(variant, known_flags=VARIANT_FLAGS, known_keys=VARIANT_OPTIONS)
  c = _voc.voc_config()
  c.model.name = "fcn8s"
  c.model.backbone = dict(output_stride=32)
  c.model.aux_head.enabled = False
  c.model.backbone_weights = "torchvision://vgg16"
  apply_loss_variant(c, options)
  if "smoke" in flags:
    _voc.apply_smoke(c)
  return c
