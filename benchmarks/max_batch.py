"""The largest global train batch that fits on the device (train_throughput.py --max-batch).

Two ways to decide whether a batch fits:
  * measured: run the compiled train step and catch the out-of-memory error
    (on GPU/TPU jax raises XlaRuntimeError with RESOURCE_EXHAUSTED);
  * estimated: compile only and compare XLA's memory analysis of the per-device
    program (arguments + outputs + temporaries - donated aliases) with a limit.
    On CPU, device memory is host RAM and running out kills the process rather
    than raising, so the estimate is the only safe (and testable) way there.
"""

from __future__ import annotations

import gc

import jax
import numpy as np

from jaxseg.runtime.sharding import batch_sharded


def search(fits, start: int, unit: int, limit: int) -> tuple[int, int | None, dict]:
  """Largest multiple of `unit` <= `limit` for which `fits` holds, assuming fits is monotone.

  Doubles from `start` until a batch fails (or halves when `start` already
  fails), then bisects in steps of `unit`. Returns (best or 0, smallest failing
  batch or None when the limit fits, {batch: fits} of every try).
  """
  tried: dict[int, bool] = {}

  def ok(b):
    if b not in tried:
      tried[b] = bool(fits(b))
    return tried[b]

  limit = limit // unit * unit
  if limit < unit:
    raise ValueError(f"--max-batch-limit {limit} is below the device count {unit}")
  b = min(max(start // unit * unit, unit), limit)
  good, bad = None, None
  if ok(b):
    good = b
    while good < limit:
      nxt = min(2 * good, limit)
      if not ok(nxt):
        bad = nxt
        break
      good = nxt
  else:
    bad = b
    while bad > unit:
      b = max(bad // 2 // unit * unit, unit)
      if ok(b):
        good = b
        break
      bad = b
  if good is None:
    return 0, bad, tried
  if bad is not None:
    lo, hi = good // unit, bad // unit
    while hi - lo > 1:
      mid = (lo + hi) // 2
      lo, hi = (mid, hi) if ok(mid * unit) else (lo, mid)
    good, bad = lo * unit, hi * unit
  return good, bad, tried


def is_oom(error: BaseException) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _abstract_batch(setup, batch: int) -> dict:
  sharding = batch_sharded(setup.mesh)
  H = W = setup.crop
  return {"image": jax.ShapeDtypeStruct((batch, H, W, 3), np.uint8, sharding=sharding),
          "label": jax.ShapeDtypeStruct((batch, H, W), np.uint8, sharding=sharding)}


def estimated_bytes(setup, train_jit, state, batch: int) -> int:
  """XLA's per-device memory for one train step at `batch`, from compilation alone."""
  m = train_jit.lower(state, _abstract_batch(setup, batch)).compile().memory_analysis()
  # The donated state is an argument and an output sharing one buffer: count it once.
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)


def _delete(tree) -> None:
  for x in jax.tree.leaves(tree):
    if isinstance(x, jax.Array) and not x.is_deleted():
      x.delete()


def runs(setup, train_jit, batch: int) -> bool:
  """Runs two train steps at `batch` on a fresh state; False on an out-of-memory error."""
  state, device_batch = None, None
  try:
    state = setup.new_state()
    device_batch = setup.device_batch(batch, train=True)
    for _ in range(2):  # The second step runs with the steady-state (donated) buffers.
      state, step_metrics = train_jit(state, device_batch)
      jax.block_until_ready(step_metrics)
    return True
  except Exception as e:  # noqa: BLE001 (jax's XlaRuntimeError; anything else re-raises)
    if is_oom(e):
      return False
    raise
  finally:
    # Free this try's buffers before the next one allocates.
    _delete(state)
    _delete(device_batch)
    gc.collect()
