"""The jitted train and eval steps: pure functions of (state, batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseg import metrics
from jaxseg.sharding import batch_sharded, replicated
from jaxseg.state import TrainState, state_shardings


def normalize(image_BHWC, mean, std) -> jax.Array:
  """uint8 images -> float32 standardised; done on device so the host ships bytes."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (image_BHWC.astype(jnp.float32) - mean) / std


def make_train_step(model, loss_fn, tx, schedule, cfg):
  """Returns step(state, batch) -> (state, metrics); batch = {'image', 'label'}."""
  base_key = jax.random.key(cfg.seed)

  def step(state: TrainState, batch):
    # Dropout noise is a function of the step alone, so a resumed run sees the same noise.
    dropout_key = jax.random.fold_in(base_key, state.step)
    images = normalize(batch["image"], cfg.augment.mean, cfg.augment.std)
    labels_BHW = batch["label"].astype(jnp.int32)

    def objective(params):
      (logits_BHWC, aux), updated = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, images, train=True,
          rngs={"dropout": dropout_key}, mutable=["batch_stats"])
      total, terms = loss_fn(logits_BHWC, aux, labels_BHW)
      return total, (terms, updated.get("batch_stats", {}))

    (loss, (terms, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              batch_stats=batch_stats, opt_state=opt_state)
    step_metrics = {"loss": loss, "lr": schedule(state.step), "grad_norm": optax.tree.norm(grads),
                    **{f"loss/{name}": value for name, value in terms.items()}}
    return new_state, step_metrics

  return step


def jit_train_step(step, state: TrainState, mesh):
  shardings = state_shardings(state)
  return jax.jit(step, in_shardings=(shardings, batch_sharded(mesh)),
                 out_shardings=(shardings, replicated(mesh)), donate_argnums=0)


def make_eval_step(model, cfg, num_classes: int, ignore_index: int):
  """Returns step(state, batch) -> confusion matrix of the batch's valid pixels."""

  def step(state: TrainState, batch):
    images = normalize(batch["image"], cfg.augment.mean, cfg.augment.std)
    logits_BHWC, _ = model.apply(state.variables(), images, train=False)
    labels_BHW = batch["label"].astype(jnp.int32)
    # Masked (padding) examples and ignore pixels count nowhere.
    valid_BHW = (labels_BHW != ignore_index) & batch["example_mask"][:, None, None]
    pred_BHW = jnp.argmax(logits_BHWC, axis=-1).astype(jnp.int32)
    return metrics.confusion_matrix(pred_BHW, labels_BHW, valid_BHW, num_classes)

  return step


def jit_eval_step(step, state: TrainState, mesh):
  return jax.jit(step, in_shardings=(state_shardings(state), batch_sharded(mesh)),
                 out_shardings=replicated(mesh))


def to_host(tree) -> dict:
  """Fetches (replicated) device values as numpy / python scalars."""
  return jax.tree.map(lambda x: np.asarray(x).item() if np.ndim(x) == 0 else np.asarray(x),
                      jax.device_get(tree))
