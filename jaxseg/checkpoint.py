"""Orbax checkpoints of (train state, data iterator state, config), one per step.

Orbax writes each step into a temporary directory and renames it when
complete, so a crash mid-save never leaves a checkpoint that restore would pick.
"""

from __future__ import annotations

import os

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "config"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator, config_dict: dict) -> None:
    """Starts an (async) save; the data iterator's position is captured now."""
    args = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config_dict)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**args), force=True)

  def restore(self, step: int, state_like, data_iterator=None):
    """Restores into the shapes and shardings of `state_like`; moves `data_iterator`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    args = {"state": ocp.args.StandardRestore(abstract)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    return restored["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
