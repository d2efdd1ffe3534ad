"""The jitted train and eval steps: pure functions of (state, batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseg.models.layers import normalize
from jaxseg.runtime.sharding import batch_sharded, replicated
from jaxseg.training.state import TrainState, state_shardings


def _micro_batches(x_B, accum: int):
  """(B, ...) -> (accum, B/accum, ...), micro-batch a holding examples a, a+accum, ...

  Strided rather than contiguous: every device's shard of the batch then feeds
  every micro-batch equally, so the scan needs no resharding.
  """
  return x_B.reshape(x_B.shape[0] // accum, accum, *x_B.shape[1:]).swapaxes(0, 1)


def make_train_step(model, loss_fn, tx, schedule, cfg):
  """Returns step(state, batch) -> (state, metrics); batch = {'image', 'label'}.

  The batch is split into `train.grad_accum_steps` micro-batches scanned in
  order; gradients are averaged, so the update equals the full-batch one when
  every micro-batch has the same number of valid pixels (BatchNorm statistics,
  however, are per micro-batch and its running stats are updated once per
  micro-batch). A non-finite loss or gradient norm leaves params, optimizer,
  BatchNorm and EMA state unchanged and is recorded in the state.
  """
  base_key = jax.random.key(cfg.seed)
  accum, ema_decay = cfg.train.grad_accum_steps, cfg.train.ema_decay

  def step(state: TrainState, batch):
    this_step = state.step + 1  # 1-based, as the loop and metrics.jsonl count.
    # Dropout noise is a function of the step alone, so a resumed run sees the same noise.
    step_key = jax.random.fold_in(base_key, state.step)
    images = normalize(batch["image"], cfg.augment.mean, cfg.augment.std)
    labels_BHW = batch["label"].astype(jnp.int32)

    def micro_step(carry, xs):
      batch_stats, grad_sum = carry
      index, images_bHWC, labels_bHW = xs

      def objective(params):
        (logits_BHWC, aux), updated = model.apply(
            {"params": params, "batch_stats": batch_stats}, images_bHWC, train=True,
            rngs={"dropout": jax.random.fold_in(step_key, index)}, mutable=["batch_stats"])
        total, terms = loss_fn(logits_BHWC, aux, labels_bHW)
        return total, (terms, updated.get("batch_stats", {}))

      (loss, (terms, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
          state.params)
      return (batch_stats, jax.tree.map(jnp.add, grad_sum, grads)), (loss, terms)

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    if accum == 1:
      # No loop for one micro-batch: XLA:CPU runs the convolutions of a scan body
      # ~30x slower (fcn_resnet50 train step 1.1 s -> 35 s, benchmarks/README.md).
      (batch_stats, grad_sum), (losses, terms) = micro_step(
          (state.batch_stats, zeros), (jnp.zeros((), jnp.int32), images, labels_BHW))
    else:
      xs = (jnp.arange(accum), _micro_batches(images, accum), _micro_batches(labels_BHW, accum))
      (batch_stats, grad_sum), (losses, terms) = jax.lax.scan(
          micro_step, (state.batch_stats, zeros), xs)
    grads = jax.tree.map(lambda g: g / accum, grad_sum)
    loss, terms = jnp.mean(losses), jax.tree.map(jnp.mean, terms)
    grad_norm = optax.tree.norm(grads)  # Before clipping, which lives in the optimizer.

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = (jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params,
                        params) if ema_decay else state.ema_params)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A select, not a Python branch: the step stays one compiled program.
    keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    first_bad = jnp.where((state.first_nonfinite_step < 0) & ~finite, this_step,
                          state.first_nonfinite_step)
    new_state = state.replace(
        step=this_step, params=keep_if_finite(params, state.params),
        batch_stats=keep_if_finite(batch_stats, state.batch_stats),
        opt_state=keep_if_finite(opt_state, state.opt_state),
        ema_params=keep_if_finite(ema, state.ema_params),
        nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
        first_nonfinite_step=first_bad)
    step_metrics = {"loss": loss, "lr": schedule(state.step), "grad_norm": grad_norm,
                    "nonfinite_steps": new_state.nonfinite_steps,
                    "first_nonfinite_step": first_bad,
                    **{f"loss/{name}": value for name, value in terms.items()}}
    return new_state, step_metrics

  return step


def jit_train_step(step, state: TrainState, mesh):
  shardings = state_shardings(state)
  return jax.jit(step, in_shardings=(shardings, batch_sharded(mesh)),
                 out_shardings=(shardings, replicated(mesh)), donate_argnums=0)


def to_host(tree) -> dict:
  """Fetches (replicated) device values as numpy / python scalars."""
  return jax.tree.map(lambda x: np.asarray(x).item() if np.ndim(x) == 0 else np.asarray(x),
                      jax.device_get(tree))
