"""Builds the parts of a run (mesh, data, model, optimizer, state, steps) from its config."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from jaxseg import evaluate, losses, optim, steps
from jaxseg.data import datasets
from jaxseg.models import build_model, convert, weights
from jaxseg.sharding import make_mesh
from jaxseg.state import TrainState, create_train_state


@dataclasses.dataclass
class Run:
  cfg: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  builder: Any  # The prepared tfds builder.
  meta: datasets.DatasetMeta
  model: Any
  schedule: Callable
  state: TrainState
  train_step: Callable  # jitted (state, batch) -> (state, metrics)
  eval_step: Callable  # jitted (state, batch) -> (confusion matrix, predictions)

  def source(self, split: str):
    """Random-access records of a split (ArrayRecord via tfds; no TensorFlow)."""
    return self.builder.as_data_source(split)


def assemble(cfg: ml_collections.ConfigDict, *, pretrained_backbone: bool = True) -> Run:
  """The run's parts; `pretrained_backbone=False` when a checkpoint replaces the weights."""
  mesh = make_mesh()
  for name, batch in (("train.batch_size", cfg.train.batch_size),
                      ("eval.batch_size", cfg.eval.batch_size)):
    if batch % mesh.size:
      raise ValueError(f"{name}={batch} must be divisible by the {mesh.size} devices")
  accum = cfg.train.grad_accum_steps
  if accum < 1 or cfg.train.batch_size % (accum * mesh.size):
    # Every micro-batch must still split evenly over the devices.
    raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by "
                     f"train.grad_accum_steps={accum} x {mesh.size} devices")
  # Before the dataset and the model: a recipe without its weights fails in seconds.
  load_backbone = pretrained_backbone and bool(weights.backbone_path(cfg.model))
  builder = datasets.prepare(cfg.data)
  meta = datasets.meta_of(builder)
  model = build_model(cfg.model, meta.num_classes)
  tx, schedule = optim.build_optimizer(cfg.optim, cfg.train.steps)
  state = create_train_state(model, tx, (*cfg.augment.crop_size, 3), cfg.seed, mesh,
                             ema=cfg.train.ema_decay > 0)
  if cfg.model.weights or load_backbone:  # torch weights over the init.
    variables = convert.apply_pretrained(cfg.model, state.variables(), backbone=load_backbone)
    state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
    if state.ema_params:  # The average starts from the loaded weights too.
      state = state.replace(ema_params=variables["params"])
  loss_fn = losses.make_loss(cfg.loss, meta.ignore_index)
  train_step = steps.jit_train_step(steps.make_train_step(model, loss_fn, tx, schedule, cfg),
                                    state, mesh)
  eval_step = evaluate.jit_eval_step(
      evaluate.make_eval_step(model, cfg, meta.num_classes, meta.ignore_index), state, mesh)
  return Run(cfg, mesh, builder, meta, model, schedule, state, train_step, eval_step)
