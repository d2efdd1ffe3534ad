"""Metrics out: metrics.jsonl (one JSON object per logged step) and TensorBoard
event files (tensorboardX: no TensorFlow). Process 0 writes; others are silent."""

from __future__ import annotations

import json
import math
import numbers
import os

import jax


def _jsonable(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no NaN; absent classes become null.
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, "tolist"):  # numpy arrays, e.g. per-class IoU.
    return _jsonable(value.tolist())
  return value


class MetricsWriter:
  def __init__(self, workdir: str, tensorboard: bool = False):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    self.tb = None
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # Pure python; only runs that log import it.

      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.tb is not None:
      for key, value in values.items():  # Scalars only; per-class lists stay in the jsonl.
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
          self.tb.add_scalar(key, float(value), int(step))

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()
