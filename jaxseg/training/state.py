"""The train state, created directly in its device sharding from shapes."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxseg.runtime.sharding import replicated


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: steps taken, skipped ones included (the schedule reads it).
  params: Any
  batch_stats: Any  # BatchNorm running statistics ({} for models without BN).
  opt_state: Any
  ema_params: Any  # Exponential moving average of params ({} when train.ema_decay == 0).
  # Non-finite guard, kept on device so no step needs a host sync to notice it:
  nonfinite_steps: jax.Array  # int32: steps whose update was skipped for a NaN/Inf.
  first_nonfinite_step: jax.Array  # int32: 1-based step of the first one, -1 if none.

  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}

  def for_eval(self) -> "TrainState":
    """The state evaluation should see: EMA params in place of params when EMA is on."""
    return self.replace(params=self.ema_params) if self.ema_params else self


def _init_fn(model, tx: optax.GradientTransformation, input_shape_HWC, ema: bool):
  def init(key) -> TrainState:
    dummy_1HWC = jnp.zeros((1, *input_shape_HWC), jnp.float32)
    variables = model.init({"params": key, "dropout": key}, dummy_1HWC, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      ema_params=jax.tree.map(jnp.copy, params) if ema else {},
                      nonfinite_steps=jnp.zeros((), jnp.int32),
                      first_nonfinite_step=jnp.full((), -1, jnp.int32))

  return init


def abstract_train_state(model, tx: optax.GradientTransformation, input_shape_HWC, mesh,
                         ema: bool = False) -> TrainState:
  """The state's shapes, dtypes and shardings, computing nothing: what a checkpoint
  restores into when the random initialisation would be thrown away."""
  abstract = jax.eval_shape(_init_fn(model, tx, input_shape_HWC, ema), jax.random.key(0))
  # Data parallelism: every parameter is replicated; the batch carries the split.
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh)),
                      abstract)


def create_train_state(model, tx: optax.GradientTransformation, input_shape_HWC, seed: int,
                       mesh, ema: bool = False) -> TrainState:
  """Initialises params on device, already replicated over the mesh (no host copy)."""
  init = _init_fn(model, tx, input_shape_HWC, ema)
  shardings = state_shardings(abstract_train_state(model, tx, input_shape_HWC, mesh, ema))
  return jax.jit(init, out_shardings=shardings)(jax.random.key(seed))


def state_shardings(state: TrainState):
  return jax.tree.map(lambda x: x.sharding, state)
