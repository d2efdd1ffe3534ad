"""Defaults for every model-config key read by the ResNet/VGG model zoo."""

from __future__ import annotations

import ml_collections

# Valid values of the enumerated keys; factories check them with `check_choice`.
CHOICES = {
    "init": ("kaiming_normal", "xavier_uniform"),
    "output_stride": (8, 16, 32),
}


def zoo_defaults() -> ml_collections.ConfigDict:
  """Model-config entries the zoo factories read (merge into `cfg.model`)."""
  return ml_collections.ConfigDict({
      # Backbone stride; lower strides replace strides by dilation (torchvision).
      "output_stride": 8,
      # ResNet-v1c stem (three 3x3 convs, as mmsegmentation) instead of one 7x7.
      "deep_stem": False,
      # FCN head on layer3 (torchvision's aux_classifier), returned as aux_logits.
      "aux_head": True,
      # Dropout before the classifier of FCN heads and of the DeepLab decoder.
      "dropout": 0.1,
      # Dropout after the ASPP projection (torchvision's DeepLabHead uses 0.5).
      "aspp_dropout": 0.5,
      # Width of the mmseg_* decode heads (mmseg's `channels`, 512 in its configs); their
      # auxiliary FCN head has half (256). Tests narrow it to keep 8 replicas small.
      "head_channels": 512,
      # Dropout after fc6 and fc7 of the VGG FCNs (VGG's own 0.5).
      "fc_dropout": 0.5,
      # Width of VGG's fc6/fc7 convs: 4096 as ImageNet VGG-16 (and its weights);
      # smaller (DeepLab-LargeFOV's 1024) trains from scratch with far less memory.
      "fc_channels": 4096,
      # fcn32s/16s/8s on VGG-16-BN (torchvision's vgg16_bn) instead of VGG-16.
      "vgg_batch_norm": False,
      "init": "kaiming_normal",
      # Std of the normal init of the heads' 1x1 classifiers (mmsegmentation's 0.01, so
      # the first logits are near zero); 0 = use `init` like the other convs.
      "classifier_init_std": 0.01,
      # Zero the last BN scale of each residual block (Goyal et al. 2017).
      "zero_init_residual": False,
      # Flax convention: running = momentum * running + (1 - momentum) * batch.
      "bn_momentum": 0.9,
      # ImageNet weights of the backbone: a name (open-mmlab://resnet50_v1c,
      # torchvision://resnet50, ...; downloaded once into weights_dir), a .pth,
      # .safetensors or .npz file, or 'none' (from scratch, on purpose); '' loads nothing.
      "backbone_weights": "",
      # A whole segmentation checkpoint (file); when set, backbone_weights is not read.
      "weights": "",
      # Cache of named weights; put files here by hand on offline machines.
      "weights_dir": "~/.cache/jaxseg/weights",
  })


def check_choice(cfg: ml_collections.ConfigDict, key: str):
  """`cfg[key]`, or a ValueError naming the key and its valid values."""
  value = cfg[key]
  if value not in CHOICES[key]:
    raise ValueError(f"model.{key}={value!r}; expected one of {list(CHOICES[key])}")
  return value
