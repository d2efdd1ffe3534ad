"""A damaged array file in the newest checkpoint: the fallback is said in one warning
and nothing else reaches stderr, however many reads were in flight when one failed."""

import asyncio
import glob
import os
import threading
import time

import grain
import jax.numpy as jnp
import pytest
from orbax.checkpoint._src import asyncio_utils

from jaxseg.runtime.checkpoint import Checkpointer
from jaxseg.runtime.checkpoint_damage import _run_draining, pending_reads_drained


def _restore_like(loop_errors: list, slow_reads: int):
  """A coroutine shaped like orbax's restore: one gather of reads whose results arrive
  from another thread (as tensorstore's do), the first one failing at once."""

  async def read(delay: float, fail: bool):
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def complete():
      time.sleep(delay)
      try:
        loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))
      except RuntimeError as e:  # What tensorstore prints a traceback for.
        loop_errors.append(e)

    threading.Thread(target=complete, daemon=True).start()
    await future
    if fail:
      raise ValueError("DATA_LOSS: damaged")

  async def restore():
    await asyncio.gather(read(0.0, True), *[read(0.3, False) for _ in range(slow_reads)])

  return restore()


@pytest.mark.parametrize("drained", [False, True])
def test_reads_in_flight_finish_before_the_loop_closes(drained):
  errors = []
  with pending_reads_drained() if drained else _nothing():
    with pytest.raises(ValueError, match="DATA_LOSS"):
      asyncio_utils.run_sync(_restore_like(errors, slow_reads=5))
  time.sleep(0.6)  # Every read's thread has completed by now.
  # orbax's own loop closes with the slow reads pending: each then hits a closed loop.
  assert (errors == []) if drained else (len(errors) == 5 and "closed" in str(errors[0]))


class _nothing:
  def __enter__(self):
    return self

  def __exit__(self, *_):
    return False


def test_damaged_array_file_gives_one_warning_and_nothing_else(tmp_path, capfd):
  # Many arrays, each in the ocdbt data files: reads of the damaged newest checkpoint
  # still in flight when the first one fails (more of them on a loaded machine).
  state = {f"w{i}": jnp.full((32, 32), i, jnp.float32) for i in range(400)}
  directory = str(tmp_path / "checkpoints")
  ckpt = Checkpointer(directory, keep=3)
  it = iter(grain.MapDataset.range(10).to_iter_dataset())
  for step in (2, 4):
    ckpt.save(step, {k: v + step for k, v in state.items()}, it, {"step": step})
  ckpt.close()
  data_files = glob.glob(os.path.join(directory, "4", "state", "**", "d", "*"), recursive=True)
  for path in data_files:  # Every array file cut in half.
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  capfd.readouterr()
  for _ in range(3):  # The race needs reads still pending: try it more than once.
    ckpt = Checkpointer(directory, keep=3)
    runners = []  # The loop runner orbax uses while the checkpoint restores.
    real_restore = ckpt.manager.restore
    ckpt.manager.restore = lambda *a, **k: (
        runners.append(asyncio_utils._run_sync_via_new_loop), real_restore(*a, **k))[1]
    restored, step, skipped, _ = ckpt.restore_newest_intact(state, it)
    assert runners and all(r is _run_draining for r in runners)
    ckpt.close()
    assert step == 2 and [e.step for e in skipped] == [4]
    assert float(restored["w7"][0, 0]) == 9.0
    assert skipped[0].path in data_files and "tensorstore_spec" not in skipped[0].reason
    time.sleep(0.2)  # Late callbacks would print now.
    out, err = capfd.readouterr()
    assert "Event loop is closed" not in err and "Traceback" not in err, err[:2000]
