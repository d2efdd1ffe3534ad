"""The train state, created directly in its device sharding from shapes."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxseg.sharding import replicated


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken (the schedule reads it too).
  params: Any
  batch_stats: Any  # BatchNorm running statistics ({} for models without BN).
  opt_state: Any

  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}


def create_train_state(model, tx: optax.GradientTransformation, input_shape_HWC, seed: int,
                       mesh) -> TrainState:
  """Initialises params on device, already replicated over the mesh (no host copy)."""

  def init(key) -> TrainState:
    dummy_1HWC = jnp.zeros((1, *input_shape_HWC), jnp.float32)
    variables = model.init({"params": key, "dropout": key}, dummy_1HWC, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

  key = jax.random.key(seed)
  abstract = jax.eval_shape(init, key)
  # Data parallelism: every parameter is replicated; the batch carries the split.
  shardings = jax.tree.map(lambda _: replicated(mesh), abstract)
  return jax.jit(init, out_shardings=shardings)(key)


def state_shardings(state: TrainState):
  return jax.tree.map(lambda x: x.sharding, state)
