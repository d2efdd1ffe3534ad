"""TensorBoard after a resume: retrained steps appear once, as TensorBoard reads them."""

from __future__ import annotations

import glob
import os
import struct
import time

from tensorboardX.proto import event_pb2

from jaxseg.runtime.writer import MetricsWriter


def _records(path: str):
  """The TFRecord payloads of one event file (length, crc, data, crc)."""
  with open(path, "rb") as f:
    while header := f.read(12):
      (length,) = struct.unpack("<Q", header[:8])
      yield f.read(length)
      f.read(4)


def tensorboard_scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
  """(step, value) points of `tag` as TensorBoard keeps them: event files in name
  (time) order, every event a point (a step written twice is two points), and a
  SessionLog.START at step T purging the points read so far at steps >= T
  (tensorboard's EventAccumulator._CheckForRestartAndMaybePurge)."""
  points: list[tuple[int, float]] = []
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for payload in _records(path):
      event = event_pb2.Event.FromString(payload)
      if event.HasField("session_log") and event.session_log.status == event.session_log.START:
        points = [(s, v) for s, v in points if s < event.step]
      for value in event.summary.value:
        if value.tag == tag:
          points.append((event.step, value.simple_value))
  return points


def _first_run(workdir: str, monkeypatch) -> None:
  """Logs steps 1-6; then moves the clock on, as event file names carry the time in
  seconds: the next run's file sorts after (and does not share) this one's name."""
  first = MetricsWriter(workdir, tensorboard=True)
  for step in range(1, 7):
    first.write(step, {"loss": float(step)})
  first.close()
  real_time = time.time
  monkeypatch.setattr(time, "time", lambda: real_time() + 10)


def test_resume_purges_the_retrained_steps_from_tensorboard(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  _first_run(workdir, monkeypatch)  # Logged up to step 6; the last checkpoint was step 4.
  resumed = MetricsWriter(workdir, tensorboard=True, resume_step=4)
  assert resumed.dropped == 2
  for step in range(5, 8):
    resumed.write(step, {"loss": 100.0 + step})
  resumed.close()
  assert len(glob.glob(os.path.join(workdir, "tensorboard", "events.*"))) == 2
  assert tensorboard_scalars(os.path.join(workdir, "tensorboard"), "loss") == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 105.0), (6, 106.0), (7, 107.0)]


def test_without_the_purge_marker_the_reader_would_show_both_runs(tmp_path, monkeypatch):
  """The reader above is not vacuous: a second writer without purge_step leaves the old
  run's step 5 and 6 beside the new step 5."""
  workdir = str(tmp_path)
  _first_run(workdir, monkeypatch)
  plain = MetricsWriter(workdir, tensorboard=True)  # resume_step=0: no purge.
  plain.write(5, {"loss": 105.0})
  plain.close()
  points = tensorboard_scalars(os.path.join(workdir, "tensorboard"), "loss")
  assert (5, 5.0) in points and (6, 6.0) in points and (5, 105.0) in points
