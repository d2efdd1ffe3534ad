"""The NaN/Inf guard: stop naming the step and the last good checkpoint, never
checkpoint the bad state, or (train.skip_nonfinite) skip the update and count it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.runtime.checkpoint import Checkpointer
from jaxseg.training import steps, train

NAN_STEP = 3


class _NaNAtStep:
  """The model, its logits NaN at one train step (so the loss and every gradient are).

  The step is told by the dropout key the train step hands the model:
  fold_in(fold_in(key(seed), step - 1), micro-batch 0), as steps.make_train_step
  derives it. If that derivation changes, no step is poisoned and these tests fail.
  """

  def __init__(self, model, seed: int, step: int):
    self.model = model
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step - 1), 0)
    self.poison_key = jax.random.key_data(key)

  def apply(self, variables, x, **kwargs):
    out = self.model.apply(variables, x, **kwargs)
    if "rngs" not in kwargs:  # Evaluation: never poisoned.
      return out
    (logits, aux), updated = out
    hit = jnp.all(jax.random.key_data(kwargs["rngs"]["dropout"]) == self.poison_key)
    return (logits * jnp.where(hit, jnp.nan, 1.0), aux), updated

  def __getattr__(self, name):
    return getattr(self.model, name)


@pytest.fixture(autouse=True)
def _nan_at_step_3(monkeypatch):
  make = steps.make_train_step
  monkeypatch.setattr(steps, "make_train_step", lambda model, loss_fn, tx, schedule, cfg: make(
      _NaNAtStep(model, cfg.seed, NAN_STEP), loss_fn, tx, schedule, cfg))


def _cfg(shapes_dir, *overrides):
  return build_config("demo:smoke,seed", [
      f"data.dir={shapes_dir}", "model.width=4", "train.batch_size=8", "eval.batch_size=304",
      "train.tensorboard=false", *overrides])


def test_nan_between_log_points_stops_before_the_next_checkpoint(shapes_dir, tmp_path):
  # NaN at step 3, logs only at 6: the device-side flag is what stops the save at 4.
  cfg = _cfg(shapes_dir, "train.steps=6", "train.log_every=6", "train.checkpoint_every=2")
  with pytest.raises(train.NonFiniteError) as e:
    train.train_and_evaluate(cfg, str(tmp_path))
  message = str(e.value)
  assert "at step 3 (noticed at step 4)" in message and "Last good checkpoint: step 2" in message
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), 3)
  assert ckpt.latest_step() == 2
  state = ckpt.restore_arrays(2)
  ckpt.close()
  assert all(np.isfinite(x).all() for x in _leaves(state["params"]))


def test_skip_nonfinite_skips_the_update_and_counts_it(shapes_dir, tmp_path, capsys):
  cfg = _cfg(shapes_dir, "train.steps=4", "train.log_every=2", "train.checkpoint_every=100",
             "train.skip_nonfinite=true")
  train.train_and_evaluate(cfg, str(tmp_path))
  # Said on the console once, at the log point after it (step 4), not only in the jsonl.
  said = [line for line in capsys.readouterr().err.splitlines() if "non-finite" in line]
  assert said == ["warning: skipped 1 non-finite update(s) by step 4 (1 in all, the first at "
                  "step 3); train.skip_nonfinite=true"]
  with open(tmp_path / "metrics.jsonl") as f:
    logged = [json.loads(line) for line in f if '"loss"' in line]
  assert [r["step"] for r in logged] == [2, 4]
  assert logged[0]["nonfinite_steps"] == 0 and logged[0]["first_nonfinite_step"] == -1
  assert logged[1]["nonfinite_steps"] == 1 and logged[1]["first_nonfinite_step"] == 3
  assert np.isfinite(logged[1]["loss"])  # Step 4 trains on from the state before step 3.
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), 3)
  state = ckpt.restore_arrays(4)
  ckpt.close()
  assert all(np.isfinite(x).all() for x in _leaves(state))


def _leaves(tree):
  import jax

  return [np.asarray(x) for x in jax.tree.leaves(tree)]
