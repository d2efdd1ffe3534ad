"""Every registered model runs one jitted, sharded train step on 8 fake devices."""

import jax
import numpy as np
import pytest

from jaxseg import losses, optim, steps
from jaxseg.config import build_config
from jaxseg.models import build_model, model_names
from jaxseg.sharding import global_batch, make_mesh
from jaxseg.state import create_train_state

NUM_CLASSES = 5
SIZE = 32  # The smallest input every model accepts (VGG FCNs pool 32x).


@pytest.mark.parametrize("name", model_names())
def test_one_sharded_train_step(name):
  cfg = build_config("demo", [f"model.name={name}", "model.width=4", "model.depth=2",
                              f"augment.crop_size=({SIZE},{SIZE})", "optim.name=sgd",
                              "optim.warmup_steps=0"])
  mesh = make_mesh()
  model = build_model(cfg.model, NUM_CLASSES)
  tx, schedule = optim.build_optimizer(cfg.optim, cfg.train.steps)
  state = create_train_state(model, tx, (SIZE, SIZE, 3), cfg.seed, mesh)
  loss_fn = losses.make_loss(cfg.loss, ignore_index=255)
  step = steps.jit_train_step(steps.make_train_step(model, loss_fn, tx, schedule, cfg), state, mesh)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8),
           "label": rng.integers(0, NUM_CLASSES, (8, SIZE, SIZE)).astype(np.uint8)}
  new_state, metrics = step(state, global_batch(mesh, batch))
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
  if "aux" in metrics:  # ResNet models with the aux head report its loss separately.
    assert np.isfinite(float(metrics["loss/aux"]))
