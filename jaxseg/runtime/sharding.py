"""The device mesh and how host batches become global, batch-sharded arrays."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every host, batch split along `data`."""
  devices = jax.devices() if devices is None else devices
  # make_mesh and Mesh default to different axis types; Auto keeps jit's usual
  # sharding propagation inside the step.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """This process's slice of the batch -> global arrays sharded over `data`."""
  sharding = batch_sharded(mesh)
  for key, value in local_batch.items():
    if value.shape[0] * jax.process_count() % mesh.size:
      raise ValueError(f"global batch of {value.shape[0] * jax.process_count()} "
                       f"({key!r}) is not divisible by the {mesh.size} devices")
  return {key: jax.make_array_from_process_local_data(sharding, value)
          for key, value in local_batch.items()}


class DevicePrefetcher:
  """Iterates global batches, keeping `size` of them already transferred to devices.

  jax transfers are asynchronous, so staying ahead lets the copy of batch k+1
  overlap step k. Checkpointing stays exact: `get_state` returns the wrapped
  iterator's state as of the last batch handed out, not the prefetched ones,
  so it can stand in for the iterator in `grain.checkpoint.CheckpointSave`.
  """

  def __init__(self, iterator, mesh, size: int = 2):
    self._iterator, self._mesh, self._size = iterator, mesh, size
    self._queue: list[tuple[dict, object]] = []  # (global batch, iterator state after it)
    self._state = iterator.get_state()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._queue) <= self._size:
      batch = next(self._iterator)
      self._queue.append((global_batch(self._mesh, batch), self._iterator.get_state()))
    batch, self._state = self._queue.pop(0)
    return batch

  def get_state(self):
    return self._state

  def set_state(self, state) -> None:
    self._queue.clear()
    self._iterator.set_state(state)
    self._state = state
