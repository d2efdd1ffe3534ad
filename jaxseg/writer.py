"""metrics.jsonl in the workdir: one JSON object per logged step (process 0 writes)."""

from __future__ import annotations

import json
import math
import os

import jax


def _jsonable(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no NaN; absent classes become null.
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value


class MetricsWriter:
  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
