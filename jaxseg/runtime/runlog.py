"""What a training run prints: one plain line every `train.log_every` steps, the same
on a terminal and in a file, and a progress bar only on a terminal.

A redirected run (any cluster job) gets the lines and nothing else: no bar, so
no carriage-return refreshes. On a terminal the bar stays below the lines
(tqdm.write). The line's values are also the extra keys of metrics.jsonl
(`interval_values`).
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time

import jax
import tqdm

from jaxseg.runtime.step_cost import StepCost

GIB = 1 << 30


def progress_bar(**kwargs) -> tqdm.tqdm:
  """A tqdm bar on stderr, shown on process 0 only and only if stderr is a terminal."""
  show = jax.process_index() == 0 and sys.stderr.isatty()
  return tqdm.tqdm(file=sys.stderr, disable=not show, dynamic_ncols=True, **kwargs)


def say(text: str) -> None:
  """Prints `text` on stdout, above a progress bar if one is shown, and flushes
  (so `tail -f` of a redirected run sees each line when it is written)."""
  tqdm.tqdm.write(text, file=sys.stdout)
  sys.stdout.flush()


def device_memory() -> tuple[int, int] | None:
  """(bytes in use, peak bytes) of the fullest local device; None where the backend
  reports nothing (CPU)."""
  stats = [d.memory_stats() for d in jax.local_devices()]
  stats = [s for s in stats if s and "bytes_in_use" in s]
  if not stats:
    return None
  return (max(s["bytes_in_use"] for s in stats),
          max(s.get("peak_bytes_in_use", s["bytes_in_use"]) for s in stats))


class StepClock:
  """Wall time per step and the part of it spent waiting on the input pipeline,
  averaged over the steps since the last log point."""

  def __init__(self, step: int):
    self.restart(step)

  def restart(self, step: int) -> None:
    """Starts a new interval after `step` (e.g. once the step has compiled)."""
    self._time, self._step, self._data_s = time.perf_counter(), step, 0.0

  @contextlib.contextmanager
  def waiting_for_data(self):
    start = time.perf_counter()
    try:
      yield
    finally:
      self._data_s += time.perf_counter() - start

  def interval(self, step: int) -> tuple[float, float]:
    """(step time, data time) in seconds per step since the last call; restarts."""
    now, steps = time.perf_counter(), max(step - self._step, 1)
    times = (now - self._time) / steps, self._data_s / steps
    self._time, self._step, self._data_s = now, step, 0.0
    return times


def interval_values(clock: StepClock, step: int, total: int, batch_size: int,
                    cost: StepCost | None) -> dict:
  """The timing, throughput, memory and FLOP/s of the steps since the last log point,
  under metrics.jsonl's names (absent where unknown, e.g. memory on CPU)."""
  step_s, data_s = clock.interval(step)
  values = {"step_time_s": step_s, "img_per_s": batch_size / step_s, "data_time_s": data_s,
            "eta_s": (total - step) * step_s}
  memory = device_memory()
  if memory is not None:
    values["device_memory_in_use_bytes"], values["device_memory_peak_bytes"] = memory
  if cost is not None and cost.tflops_per_device(step_s) is not None:
    values["tflops_per_device"] = cost.tflops_per_device(step_s)
    if cost.mfu(step_s) is not None:
      values["mfu"] = cost.mfu(step_s)
  return values


def _eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


def log_line(step: int, total: int, values: dict) -> str:
  """'step 40/800  loss 0.8123 (cross_entropy 0.8123)  lr 2.40e-03  ...' from a
  metrics.jsonl record's values."""
  terms = ", ".join(f"{k.removeprefix('loss/')} {v:.4f}" for k, v in values.items()
                    if k.startswith("loss/"))
  parts = [f"step {step}/{total}", f"loss {values['loss']:.4f}" + (f" ({terms})" if terms else ""),
           f"lr {values['lr']:.3e}", f"grad_norm {values['grad_norm']:.3f}",
           f"img/s {values['img_per_s']:.1f}", f"step {values['step_time_s']:.3f}s",
           f"data {values['data_time_s']:.3f}s", f"eta {_eta(values['eta_s'])}"]
  if "device_memory_in_use_bytes" in values:
    parts.append(f"mem {values['device_memory_in_use_bytes'] / GIB:.2f} GiB"
                 f" (peak {values['device_memory_peak_bytes'] / GIB:.2f})")
  if "tflops_per_device" in values:
    parts.append(f"{values['tflops_per_device']:.3g} TFLOP/s/device")
  if "mfu" in values:
    parts.append(f"MFU {100 * values['mfu']:.1f}%")
  if values.get("nonfinite_steps"):
    parts.append(f"nonfinite_steps {values['nonfinite_steps']}")
  return "  ".join(parts)


def say_skipped(values: dict, step: int, said: int, bar) -> int:
  """One console line when updates were skipped (train.skip_nonfinite) since the last
  one said; returns the count said."""
  count = int(values["nonfinite_steps"])
  if count > said and jax.process_index() == 0:
    bar.write(f"warning: skipped {count - said} non-finite update(s) by step {step} "
              f"({count} in all, the first at step {int(values['first_nonfinite_step'])}); "
              "train.skip_nonfinite=true", file=sys.stderr)
  return count
