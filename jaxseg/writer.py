"""Metrics out: metrics.jsonl (one JSON object per logged step) and TensorBoard
event files (tensorboardX: no TensorFlow). Process 0 writes; others are silent.

On resume, records past the restored step are dropped first: those steps are
trained again, and each step should appear once. In metrics.jsonl they are cut
out; TensorBoard's event files are append-only, so the new event file starts
with a purge marker (tensorboardX's `purge_step`, a SessionLog.START at the first
retrained step) and TensorBoard hides the older events at or past that step.
"""

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


def _record_step(line: str) -> float:
  """A record's step; a line cut short by a kill counts as past any step (dropped)."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return math.inf


class MetricsWriter:
  def __init__(self, workdir: str, tensorboard: bool = False, resume_step: int = 0):
    """`resume_step`: the restored checkpoint's step (0 = a fresh run); what was
    logged after it is dropped (`drop_after`) or, in TensorBoard, purged."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    self.tb = None
    self.dropped = self.drop_after(resume_step) if resume_step else 0
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # Pure python; only runs that log import it.

      purge_step = resume_step + 1 if resume_step else None
      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30,
                              purge_step=purge_step)

  def drop_after(self, step: int) -> int:
    """Removes the records of steps after `step` (atomically); returns how many."""
    if not self.enabled or not os.path.exists(self.path):
      return 0
    with open(self.path) as f:
      lines = [line for line in f if line.strip()]
    kept = [line for line in lines if _record_step(line) <= step]
    if len(kept) == len(lines):
      return 0
    # A new file renamed over the old: a kill mid-way leaves one or the other, whole.
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)
    return len(lines) - len(kept)

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
