"""Saved configs of older layouts, moved to today's keys before a checkpoint's config is rebuilt.

Until the recipe config (2026-12), every component argument was a flat key of its
section, prefixed to tell them apart (`loss.focal_gamma`, `model.output_stride`,
`data.folder_root`); now each lives where its component declares it
(`loss.focal.gamma`, `model.backbone.output_stride`, `data.folder.root`).
`MOVED` maps each old flat key to every key that now holds its meaning: one that
meant two things (`model.dropout`: the decode and the auxiliary head's) goes to
both, and a key that kept its name for some components lists itself. Keys a
checkpoint's model or loss does not take are then dropped when its sections are
filled (config.from_checkpoint), as for any key no longer read. A key moved to
nothing is retired: its meaning is gone on purpose.
"""

from __future__ import annotations

import re
from typing import Mapping

MOVED: dict[str, tuple[str, ...]] = {
    # loss: each term's arguments under its name.
    "loss.class_weights": ("loss.cross_entropy.class_weights", "loss.ohem.class_weights",
                           "loss.topk.class_weights"),
    "loss.label_smoothing": ("loss.cross_entropy.label_smoothing",
                             "loss.ohem.label_smoothing", "loss.topk.label_smoothing"),
    "loss.ce_avg_non_ignore": ("loss.cross_entropy.avg_non_ignore",),
    "loss.binary": ("loss.binary_cross_entropy.binary",),
    "loss.focal_gamma": ("loss.focal.gamma",),
    "loss.focal_alpha": ("loss.focal.alpha",),
    "loss.ohem_thresh": ("loss.ohem.thresh",),
    "loss.ohem_min_kept": ("loss.ohem.min_kept",),
    "loss.topk_ratio": ("loss.topk.ratio",),
    "loss.dice_smooth": ("loss.dice.smooth", "loss.tversky.smooth"),
    "loss.dice_mode": ("loss.dice.mode", "loss.tversky.mode"),
    "loss.tversky_alpha": ("loss.tversky.alpha",),
    "loss.tversky_beta": ("loss.tversky.beta",),
    "loss.lovasz_per_image": ("loss.lovasz.per_image",),
    # data: each dataset builder's arguments under its name.
    "data.folder_root": ("data.folder.root",),
    "data.folder_ignore_rgb": ("data.folder.ignore_rgb",),
    "data.download": ("data.voc_seg.download", "data.ade20k.download"),
    # augment: each op's arguments in its group (flip_prob kept its name).
    "augment.scale_range": ("augment.rescale.scale_range",),
    "augment.base_size": ("augment.rescale.base_size",),
    "augment.cat_max_ratio": ("augment.crop.cat_max_ratio",),
    "augment.image_pad": ("augment.crop.image_pad",),
    "augment.photometric": ("augment.photometric.enabled",),
    "augment.brightness_delta": ("augment.photometric.brightness_delta",),
    "augment.contrast_range": ("augment.photometric.contrast_range",),
    "augment.saturation_range": ("augment.photometric.saturation_range",),
    "augment.hue_delta": ("augment.photometric.hue_delta",),
    # model: the backbone's, the decode head's and the aux head's arguments in their groups.
    "model.output_stride": ("model.backbone.output_stride",),
    "model.deep_stem": ("model.backbone.deep_stem",),
    "model.zero_init_residual": ("model.backbone.zero_init_residual",),
    "model.vgg_batch_norm": ("model.backbone.batch_norm",),
    "model.fc_channels": ("model.backbone.fc_channels",),
    "model.fc_dropout": ("model.backbone.fc_dropout",),
    "model.drop_path_rate": ("model.backbone.drop_path_rate",),
    "model.head": ("model.head.style",),  # SegFormer's decoder: 'hf' or 'mmseg'.
    "model.head_channels": ("model.head.channels",),
    "model.aspp_dropout": ("model.head.aspp_dropout",),
    "model.dropout": ("model.dropout", "model.head.dropout", "model.aux_head.dropout"),
    "model.classifier_init_std": ("model.head.classifier_init_std",
                                  "model.aux_head.classifier_init_std"),
    "model.aux_head": ("model.aux_head.enabled",),
    # optim: a schedule's arguments under its name.
    "optim.poly_power": ("optim.poly.power",),
    "optim.end_lr": ("optim.poly.end_lr", "optim.cosine.end_lr"),
    # A test hook (make the loss NaN at a step); the test now poisons the model itself.
    "train.debug_nan_at_step": (),
}


def migrate(flat: Mapping[str, object]) -> dict[str, object]:
  """A saved flat config ({'a.b': value}) with every old key moved to its new ones.

  A value already at a new key wins over a moved one (a checkpoint of today's layout
  has no old keys; this keeps a half-moved one from being overwritten)."""
  moved = {key: value for key, value in flat.items() if key not in MOVED}
  for old, new_keys in MOVED.items():
    if old in flat:
      for new in new_keys:
        moved.setdefault(new, flat[old])
  # A flat-layout ResNet model's depth was its name's (`fcn_resnet101`); now an argument.
  depth = re.search(r"resnet(50|101)$", str(flat.get("model.name", "")))
  if depth and "model.output_stride" in flat:
    moved.setdefault("model.backbone.depth", int(depth.group(1)))
  return moved
