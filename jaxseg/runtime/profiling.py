"""`train.profile_steps=(start, end)`: a jax.profiler trace of steps start..end-1.

The trace goes to <workdir>/profile/plugins/profile/<time>/: `*.xplane.pb` for
TensorBoard's profile plugin (`tensorboard --logdir <workdir>/profile`) and
`perfetto_trace.json.gz` for https://ui.perfetto.dev. Each step is annotated
with its number (StepTraceAnnotation), which TensorBoard's step view reads.
"""

from __future__ import annotations

import contextlib
import os

import jax


class StepProfiler:
  """Starts the trace before step `start` is dispatched and stops it once step end-1
  has finished on the devices (process 0's trace; every process writes its own)."""

  def __init__(self, profile_steps, workdir: str):
    self.start, self.end = tuple(profile_steps) if profile_steps else (0, 0)
    self.directory = os.path.join(workdir, "profile")
    self.active = False

  @contextlib.contextmanager
  def step(self, step: int):
    """Wraps the dispatch of `step`; yields a list to put the step's outputs in."""
    if step == self.start:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)
      self.active = True
    outputs = []
    if not self.active:
      yield outputs
      return
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      yield outputs
    if step == self.end - 1:
      self.stop(outputs)

  def stop(self, outputs=()) -> None:
    """Ends the trace (if running) after `outputs` are computed."""
    if self.active:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.active = False
