"""What `run.py --force` can honour when the config differs from the checkpoint's.

`--force` resumes across any change that leaves the two saved things restorable:
the train state (every array's path, shape and dtype: params, BatchNorm
statistics, optimizer state, EMA params) and the data iterator's position. So a
new learning rate, schedule, loss, augmentation, dropout, seed or crop size is
honoured (from the restored step on); a change of architecture, class count,
optimizer (its state's structure) or EMA on/off changes the state, and a change
of batch size, dataset, train split or shuffle seed invalidates the saved
position: those are refused in one line naming the difference, before any data
is prepared or anything is compiled.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxseg.data.datasets import DatasetMeta
from jaxseg.runtime.build import build
from jaxseg.runtime.checkpoint import Checkpointer, DamagedCheckpointError, ResumeConfigError

# The data iterator's saved state is a position in the order these keys define.
ITERATOR_KEYS = {
    "train.batch_size": "the saved data position counts batches of the old size",
    "data.name": "the saved data position is one of the old dataset",
    "data.config": "the saved data position is one of the old dataset",
    "data.train_split": "the saved data position is one of the old split",
    "data.shuffle_seed": "the saved data position is one of the old order",
}


def refused_change(changes: dict[str, tuple]) -> str | None:
  """Why --force cannot honour `changes` ({key: (old, new)}) for the data iterator."""
  for key, (old, new) in changes.items():
    if key in ITERATOR_KEYS:
      return (f"cannot resume with --force: {key} changed ({old!r} -> {new!r}) and "
              f"{ITERATOR_KEYS[key]}; use a new --workdir")
  return None


def _path(entries) -> str:
  """'params/Conv_0/kernel' of a tree path, whichever kinds of keys spell it."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                  for k in entries)


def _arrays(tree) -> dict[str, tuple[tuple, str]]:
  return {_path(p): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def saved_arrays(state_dir: str) -> dict[str, tuple[tuple, str]] | None:
  """{path: (shape, dtype)} of a checkpoint's saved state (its metadata only); None if
  it cannot be read (a damaged checkpoint: restoring it says so)."""
  import orbax.checkpoint as ocp

  try:
    with ocp.StandardCheckpointer() as checkpointer:
      metadata = checkpointer.metadata(state_dir)
  except Exception:  # noqa: BLE001  (damage is reported by the restore that follows)
    return None
  return _arrays(getattr(metadata, "item_metadata", metadata))


def state_difference(saved: dict, new: dict) -> str | None:
  """'params/Conv_0/kernel (3, 3, 3, 4) float32 -> (3, 3, 3, 8) float32, and 5 more'
  style description of how the new state's arrays differ from the saved ones."""
  show = lambda a: "absent" if a is None else f"{a[0]} {a[1]}"
  diffs = [f"{p} {show(saved.get(p))} -> {show(new.get(p))}"
           for p in sorted(saved.keys() | new.keys(), key=lambda p: (not p.startswith("params"), p))
           if saved.get(p) != new.get(p)]
  if not diffs:
    return None
  return diffs[0] + (f", and {len(diffs) - 1} more" if len(diffs) > 1 else "")


def check_changes(changes: dict[str, tuple]) -> None:
  """Raises ResumeConfigError if --force cannot honour `changes` for the data iterator."""
  refused = refused_change(changes)
  if refused:
    raise ResumeConfigError(refused)


def check_state(ckpt: Checkpointer, step: int, cfg, mesh, changes: dict[str, tuple]) -> None:
  """Raises ResumeConfigError when the train state `cfg` builds (shapes only, with the
  checkpoint's dataset meta) cannot take the one saved at `step`."""
  step_dir = os.path.join(ckpt.directory, str(step))
  saved = saved_arrays(os.path.join(step_dir, "state"))
  try:
    meta = ckpt.restore_meta(step)
  except DamagedCheckpointError:
    meta = None
  if saved is None or meta is None:  # Damaged (the restore says so), or from before metas.
    return
  run = build(cfg, DatasetMeta.from_json(meta), mesh, abstract=True)
  difference = state_difference(saved, _arrays(run.state))
  if difference:
    changed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changes.items())
    raise ResumeConfigError(
        f"cannot resume with --force: the train state this config builds differs from "
        f"checkpoint {step_dir}'s: {difference}{f' (changed: {changed})' if changed else ''}; "
        "use a new --workdir")
