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
import ml_collections

from jaxseg.checks import Checker


def validate_config(train_cfg: ml_collections.ConfigDict) -> None:
  """() = off, or two ints 1 <= start < end <= train.steps (end excluded)."""
  steps = train_cfg.profile_steps
  if steps == () or steps is None:
    return
  Checker(train_cfg, "train").ints(
      "profile_steps", (2,), f"() or two ints (start, end), 1 <= start < end <= "
      f"train.steps={train_cfg.steps}, e.g. (10, 15) for steps 10..14", min=1,
      max=train_cfg.steps)
  if steps[0] >= steps[1]:
    Checker(train_cfg, "train").fail("profile_steps", "start < end, e.g. (10, 15)")


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
