"""mmsegmentation as the oracle of the eval/augment/metric parity tests.

mmseg imports `mmcv.ops` (compiled CUDA/C++ ops) at import time, which
mmcv-lite lacks; the models and transforms used here never call them, so a
stub module stands in. Without mmseg installed the tests skip locally and fail
under CI (`CI` set), so a broken install cannot pass silently.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import types

import pytest


def _stub_mmcv_ops() -> None:
  if "mmcv.ops" in sys.modules:
    return
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
  """Imports `module` of mmseg/mmcv/torch (stubbing mmcv.ops first); skips, or fails in CI."""
  try:
    if module.startswith("mmseg"):
      _stub_mmcv_ops()
    return importlib.import_module(module)
  except ImportError as e:
    if os.environ.get("CI"):
      pytest.fail(f"parity oracle missing in CI ({module}: {e}); pip install -e '.[parity]'")
    pytest.skip(f"needs {module} ({e}); pip install -e '.[parity]'")
