"""Gradient accumulation, clipping, weight-decay masks, lr groups and EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxseg import optim
from jaxseg.config.resolve import build_config
from jaxseg.runtime.sharding import global_batch
from tests.modelkit import model_overrides
from tests.stepkit import NUM_CLASSES, build_step

# What these check holds for any random bits; rbg keys compile the U-Net init ~5x faster.
pytestmark = pytest.mark.usefixtures("rbg_keys")


def _batch(n=16, size=32):
  rng = np.random.default_rng(0)
  label = rng.integers(0, NUM_CLASSES, (n, size, size)).astype(np.uint8)
  label[:, :4] = 255  # The same number of ignore pixels in every example.
  image = (label[..., None] % 255 * 40 + rng.integers(0, 30, (n, size, size, 3))).astype(np.uint8)
  return {"image": image, "label": label}


def _setup(*overrides, model="seed_cnn"):
  cfg = build_config("demo", [*model_overrides(model, width=4, depth=2), "optim.name=sgd",
                              "optim.lr=0.05", "optim.warmup_steps=0",
                              "augment.crop_size=(32,32)", *overrides])
  mesh, state, step, tx = build_step(cfg)
  return cfg, mesh, state, step, tx


def _train(overrides, n_steps=2):
  _, mesh, state, step, _ = _setup(*overrides)
  for _ in range(n_steps):
    state, m = step(state, global_batch(mesh, _batch()))
  return jax.device_get(state.params), float(m["loss"])


def test_gradient_accumulation_equals_the_full_batch():
  # seed_cnn has no BatchNorm: micro-batch statistics would differ from full-batch ones.
  full_params, full_loss = _train([])
  accum_params, accum_loss = _train(["train.grad_accum_steps=2"])
  np.testing.assert_allclose(accum_loss, full_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               accum_params, full_params)


def _one_update(*overrides, grad_value=1.0, model="seed_cnn"):
  cfg, _, state, _, tx = _setup("optim.momentum=0.0", "optim.weight_decay=0.0", *overrides,
                                model=model)
  grads = jax.tree.map(lambda p: jnp.full_like(p, grad_value), state.params)
  updates, _ = tx.update(grads, state.opt_state, state.params)
  return cfg, state.params, updates


def test_clip_grad_norm_bounds_the_update():
  _, _, updates = _one_update("optim.clip_grad_norm=0.5", "optim.lr=1.0",
                              "optim.schedule=constant")
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)


def test_weight_decay_mask_spares_biases_and_norm_params():
  cfg, params, _ = _one_update("optim.decay_norm_and_bias=false", model="unet")
  mask = optim.decay_mask(cfg.optim)(params)
  flat = {optim.param_path(p): m for p, m in jax.tree_util.tree_leaves_with_path(mask)}
  assert any(k.endswith("kernel") for k in flat)
  assert all(m == k.endswith("kernel") for k, m in flat.items()), flat
  assert any(k.endswith("scale") for k in flat) and any(k.endswith("bias") for k in flat)
  # The mask reaches the optimizer: zero gradient, decay on -> only kernels move.
  _, params, updates = _one_update("optim.decay_norm_and_bias=false", "optim.weight_decay=0.1",
                                   "optim.schedule=constant", model="unet", grad_value=0.0)
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    assert bool(jnp.any(u != 0)) == optim.param_path(path).endswith("kernel"), path


def test_lr_mult_scales_a_param_group():
  _, params, updates = _one_update('optim.lr_mult=(("bias", 10.0),)', "optim.lr=0.1",
                                   "optim.schedule=constant")
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    expected = -0.1 * (10.0 if optim.param_path(path).endswith("bias") else 1.0)
    np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6)


def test_ema_tracks_params():
  _, mesh, state, step, _ = _setup("train.ema_decay=0.5")
  before = jax.device_get(state.params)
  state, _ = step(state, global_batch(mesh, _batch()))
  after, ema = jax.device_get(state.params), jax.device_get(state.ema_params)
  jax.tree.map(lambda e, b, a: np.testing.assert_allclose(e, 0.5 * b + 0.5 * a, rtol=1e-6),
               ema, before, after)
  assert state.for_eval().params is state.ema_params
