"""The sharded train step: it learns, and 8 devices compute what 1 device computes."""

import jax
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.runtime.sharding import global_batch
from tests.modelkit import model_overrides
from tests.stepkit import build_step, fixed_batch

def _setup(devices, model_name="unet"):
  cfg = build_config("demo", [*model_overrides(model_name, width=8, depth=2),
                              "optim.name=adamw", "optim.lr=0.01", "optim.warmup_steps=0",
                              "augment.crop_size=(32,32)"])
  mesh, state, step, _ = build_step(cfg, devices=devices)
  return mesh, state, step


def test_state_is_replicated_over_all_devices():
  assert jax.device_count() == 8
  _, state, _ = _setup(jax.devices())
  leaf = jax.tree.leaves(state.params)[0]
  assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated


@pytest.mark.parametrize("model_name", ["unet", "seed_cnn"])
def test_sharded_step_lowers_loss_on_afixed_batch(model_name):
  mesh, state, step = _setup(jax.devices(), model_name)
  batch = global_batch(mesh, fixed_batch())
  assert len(batch["image"].sharding.device_set) == 8
  losses_seen = []
  for _ in range(8):
    state, m = step(state, batch)
    losses_seen.append(float(m["loss"]))
  assert np.all(np.isfinite(losses_seen))
  assert losses_seen[-1] < 0.8 * losses_seen[0], losses_seen


def test_eight_devices_equal_one_device():
  host_batch = fixed_batch()
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh, state, step = _setup(devices)
    for _ in range(2):
      state, m = step(state, global_batch(mesh, host_batch))
    results.append((float(m["loss"]), jax.device_get(state.params),
                    jax.device_get(state.batch_stats)))
  (loss1, params1, bs1), (loss8, params8, bs8) = results
  np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
  # BatchNorm over the sharded batch uses global statistics, so params and
  # running stats agree, not just the loss.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), params1, params8)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), bs1, bs8)


def test_all_ignore_batch_gives_zero_loss_and_finite_grads():
  mesh, state, step = _setup(jax.devices())
  batch = fixed_batch()
  batch["label"][:] = 255
  state, m = step(state, global_batch(mesh, batch))
  assert float(m["loss"]) == 0.0 and np.isfinite(float(m["grad_norm"]))
