import jax
import numpy as np

from jaxseg.runtime.sharding import DevicePrefetcher, make_mesh


class _CountingIterator:
  """A checkpointable iterator of batches whose content is their index."""

  def __init__(self):
    self.position = 0

  def __next__(self):
    batch = {"x": np.full((8, 2), self.position, np.float32)}
    self.position += 1
    return batch

  def get_state(self):
    return self.position

  def set_state(self, state):
    self.position = state


def test_prefetch_yields_in_order_and_state_tracks_consumption():
  mesh = make_mesh()
  source = _CountingIterator()
  prefetcher = DevicePrefetcher(source, mesh, size=2)
  first = [float(next(prefetcher)["x"][0, 0]) for _ in range(3)]
  assert first == [0.0, 1.0, 2.0]
  assert source.position == 5  # three consumed, `size` more already on device
  assert prefetcher.get_state() == 3  # but the checkpointable state is what was consumed
  batch = next(prefetcher)
  assert isinstance(batch["x"], jax.Array) and len(batch["x"].sharding.device_set) == 8
  prefetcher.set_state(1)  # Restoring rewinds to exactly the consumed position.
  assert float(next(prefetcher)["x"][0, 0]) == 1.0
