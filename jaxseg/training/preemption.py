"""Stop requests: SIGTERM/SIGINT become a flag the loop reads between steps.

The loop then saves a checkpoint at the step it reached and exits with
status 3. On several processes a signal reaches only some of them, so there
jax's preemption sync point (every process agrees on the same step) decides.
"""

from __future__ import annotations

import signal

import jax


class StopRequest:
  """Context manager: while active, the first SIGTERM/SIGINT sets `requested`;
  a second SIGINT (Ctrl-C again) interrupts at once, as usual."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, checkpointer):
    self.checkpointer = checkpointer
    self.signal_name = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    # Give the signal back: a second one should not wait for the step to end.
    signal.signal(signum, self._previous[signum])

  def __enter__(self):
    # Multi-process: jax's preemption service owns SIGTERM and syncs the stop step.
    if jax.process_count() == 1:
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      if self.checkpointer.reached_preemption(step):
        self.signal_name = self.signal_name or "preemption notice"
        return True
      return False
    return self.signal_name is not None
