"""Metrics out: metrics.jsonl (one JSON object per logged step) and TensorBoard
event files (tensorboardX: no TensorFlow). Process 0 writes; others are silent.

metrics.jsonl is tidied when a writer opens it, before anything is appended:
- lines that are not a whole record (a JSON object with an integer "step" and
  its line end), such as a tail torn by kill -9 or a full disk, are set aside,
  byte for byte, in `metrics.jsonl.torn-<n>`, with one warning line naming it;
- a training run (`resume_step` given: the restored checkpoint's step, 0 for a
  fresh start) drops the records of steps after it: those steps are trained
  again, and each step should appear once, checkpoint or not.
Each file is rewritten atomically (paths.write_bytes), the set-aside lines
first, so a kill mid-way loses nothing. Appends start on a fresh line.

TensorBoard's event files are append-only, so a resumed run's new event file
starts with a purge marker (tensorboardX's `purge_step`, a SessionLog.START at
the first retrained step) and TensorBoard hides the older events at or past it.
On gs:// tensorboardX uploads each event file itself (google-cloud-storage).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys

import jax

from jaxseg import paths

TORN_SUFFIX = ".torn-"


def _jsonable(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no NaN; absent classes become null.
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, "tolist"):  # numpy arrays, e.g. per-class IoU.
    return _jsonable(value.tolist())
  return value


def parse_record(line: str) -> dict | None:
  """The record a whole line of metrics.jsonl holds, or None (torn, or not jaxseg's)."""
  if not line.endswith("\n"):
    return None
  try:
    record = json.loads(line)
  except ValueError:
    return None
  if not isinstance(record, dict) or type(record.get("step")) is not int:
    return None
  return record


def read_records(path) -> list[dict]:
  """Every whole record of a metrics.jsonl; torn or foreign lines are skipped."""
  target = paths.resolve(path)
  if not target.exists():
    return []
  lines = target.read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
  return [r for line in lines if (r := parse_record(line)) is not None]


class MetricsWriter:
  def __init__(self, workdir: str, tensorboard: bool = False, resume_step: int | None = None):
    """`resume_step`: the step training starts from (the restored checkpoint's, 0 for a
    fresh start); records after it are dropped. None (a separate `--mode eval`): none are."""
    self.path = os.path.join(workdir, "metrics.jsonl")  # As given (gs:// stays a URL).
    self._file = paths.resolve(self.path, "--workdir")
    self.enabled = jax.process_index() == 0
    self.tb = None
    self.dropped, self.set_aside = self._tidy(resume_step) if self.enabled else (0, None)
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # Pure python; only runs that log import it.

      logdir = self._file.parent / "tensorboard"
      if paths.is_url(logdir) and not os.fspath(logdir).startswith(("gs://", "s3://")):
        raise paths.PathError(f"train.tensorboard=true: tensorboardX writes to local folders, "
                              f"gs:// and s3:// only, not {logdir}; --set "
                              "train.tensorboard=false")
      # Hide what an earlier run logged past the start (a fresh start: everything).
      purge_step = resume_step + 1 if resume_step is not None and logdir.exists() else None
      self.tb = SummaryWriter(os.fspath(logdir), flush_secs=30, purge_step=purge_step)

  def drop_after(self, step: int) -> int:
    """Removes the records of steps after `step` (atomically); returns how many."""
    return self._tidy(step)[0] if self.enabled else 0

  def _tidy(self, resume_step: int | None) -> tuple[int, str | None]:
    """(records dropped, where unreadable lines went or None); see the module docstring."""
    if not self._file.exists():
      return 0, None
    lines = self._file.read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
    lines = [line for line in lines if line.strip()]
    records = [(line, parse_record(line)) for line in lines]
    bad = [line for line, record in records if record is None]
    kept = [line for line, record in records
            if record is not None and (resume_step is None or record["step"] <= resume_step)]
    dropped = len(lines) - len(bad) - len(kept)
    if not bad and not dropped:
      return 0, None
    aside = None
    if bad:
      aside = self._free_torn_path()
      paths.write_bytes(aside, "".join(bad), exclusive=True)
      example = bad[-1].strip()
      example = example if len(example) <= 60 else example[:57] + "..."
      print(f"warning: {self.path}: set aside {len(bad)} unreadable line(s) (e.g. {example!r}, "
            f"torn by a kill or a full disk, or not jaxseg's) in {aside}", file=sys.stderr,
            flush=True)
    paths.write_bytes(self._file, "".join(kept))
    return dropped, aside

  def _free_torn_path(self) -> str:
    n = 1
    while paths.resolve(f"{self.path}{TORN_SUFFIX}{n}").exists():
      n += 1
    return f"{self.path}{TORN_SUFFIX}{n}"

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
    paths.append_line(self._file, json.dumps(record))
    if self.tb is not None:
      for key, value in values.items():  # Scalars only; per-class lists stay in the jsonl.
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
          self.tb.add_scalar(key, float(value), int(step))

  def write_images(self, step: int, images: dict) -> None:
    """{tag: (H, W, 3) uint8} as TensorBoard images (the reports' figures); no-op without it."""
    if self.tb is None:
      return
    for tag, image_HW3 in images.items():
      self.tb.add_image(tag, image_HW3, int(step), dataformats="HWC")
    self.tb.flush()  # Figures are written rarely (each evaluation): visible at once.

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()
      self.tb = None
