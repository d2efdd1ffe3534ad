"""mmsegmentation 1.2.2 as the oracle of the parity tests, loaded one way for all of them.

mmseg imports `mmcv.ops` (compiled CUDA/C++ ops) at import time, which
mmcv-lite lacks; the models and transforms used here never call them, so a
stub module stands in (any use of it raises). Models are built from the config
files mmseg ships, through its own registry, with SyncBN turned into BN so
they run on one CPU. Without the oracle installed the tests skip locally and
fail under CI (`CI` set): a broken install cannot pass silently.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types

import pytest

INSTALL_HINT = "pip install -e '.[parity]'"


def _stub_mmcv_ops() -> None:
  if "mmcv.ops" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
    return  # Already stubbed, or a full mmcv whose compiled ops import for real.
  ops = types.ModuleType("mmcv.ops")
  ops.__spec__ = importlib.machinery.ModuleSpec("mmcv.ops", None)

  def stubbed(name):
    if name.startswith("__"):
      raise AttributeError(name)

    def refuse(*args, **kwargs):
      raise RuntimeError(f"mmcv.ops.{name} is a stub (mmcv-lite has no compiled ops)")

    return type(name, (), {"__init__": refuse})

  ops.__getattr__ = stubbed
  sys.modules["mmcv.ops"] = ops


def require(module: str):
  """Imports `module` (torch, mmcv, mmengine, mmseg...; mmcv.ops stubbed first).

  Skips the test when it is missing, and fails it instead when `CI` is set.
  """
  try:
    if module.startswith(("mmseg", "mmcv")):
      _stub_mmcv_ops()
    return importlib.import_module(module)
  except ImportError as e:
    if os.environ.get("CI"):
      pytest.fail(f"parity oracle missing in CI ({module}: {e}); {INSTALL_HINT}")
    pytest.skip(f"needs {module} ({e}); {INSTALL_HINT}")


def config_path(relative: str) -> str:
  """A config file shipped inside the installed mmseg package (`.mim/configs/...`)."""
  mmseg = require("mmseg")
  path = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", relative)
  assert os.path.exists(path), f"mmseg {mmseg.__version__} ships no {relative}"
  return path


def _single_device_norms(cfg):
  """SyncBN -> BN everywhere in a model config (SyncBN needs a process group)."""
  if isinstance(cfg, dict):
    if cfg.get("type") == "SyncBN":
      cfg["type"] = "BN"
    for value in cfg.values():
      _single_device_norms(value)
  elif isinstance(cfg, (list, tuple)):
    for value in cfg:
      _single_device_norms(value)


def build_segmentor(relative_config: str):
  """mmseg's EncoderDecoder of a shipped config, random weights, eval mode, on CPU.

  Weights are torch's default init (no `pretrained` download); every BN gets
  random affine parameters and running statistics so their mapping matters.
  """
  require("torch")
  mmengine = require("mmengine")
  require("mmseg.models")
  from mmengine.registry import init_default_scope
  from mmseg.registry import MODELS

  logging.getLogger("mmengine").setLevel(logging.WARNING)
  cfg = mmengine.Config.fromfile(config_path(relative_config))
  cfg.model.pretrained = None
  cfg.model.backbone.init_cfg = None
  _single_device_norms(cfg.model)
  init_default_scope("mmseg")
  net = MODELS.build(cfg.model)
  from tests.torch_reference import randomize_batch_norm  # Needs torch, as this does.

  return randomize_batch_norm(net).eval()


def logits(net, x_BCHW):
  """mmseg's eval-mode logits at the input size: `encode_decode`, and the aux head's alike."""
  torch = require("torch")
  from mmseg.models.utils import resize
  size = tuple(x_BCHW.shape[2:])
  with torch.no_grad():
    feats = net.extract_feat(x_BCHW)
    out = net.decode_head.predict(feats, [dict(img_shape=size)], net.test_cfg)
    aux = resize(net.auxiliary_head.forward(feats), size=size, mode="bilinear",
                 align_corners=net.auxiliary_head.align_corners)
  return out, aux
