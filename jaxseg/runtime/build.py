"""Builds a run's parts (model, optimizer, train state, jitted steps) from its config, the
dataset's meta and a mesh. Touches no data: train, eval, predict, tests and benchmarks
all build here, whether the meta came from a prepared dataset or from a checkpoint."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from jaxseg import losses, optim
from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.data import dataset_fit
from jaxseg.data import datasets
from jaxseg.data.datasets import DatasetMeta
from jaxseg.evaluation import evaluate
from jaxseg.models import build_model, pretrained as pretrained_weights
from jaxseg.runtime import checkpoint
from jaxseg.runtime.sharding import make_mesh
from jaxseg.training import steps
from jaxseg.training.state import TrainState, abstract_train_state, create_train_state


@dataclasses.dataclass
class Run:
  cfg: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  meta: DatasetMeta
  model: Any
  tx: optax.GradientTransformation
  # Freshly initialised and replicated over the mesh; or, built to restore a checkpoint
  # into, its ShapeDtypeStructs (shardings included) with nothing computed.
  state: TrainState
  train_step: Callable  # jitted (state, batch) -> (state, metrics); compiled on first call.
  eval_step: Callable  # jitted (state, batch) -> (confusion matrix, predictions)


def build(cfg: ml_collections.ConfigDict, meta: DatasetMeta, mesh: jax.sharding.Mesh,
          abstract: bool = False) -> Run:
  """Model, optimizer, randomly initialised state (params shaped by `augment.crop_size`;
  only its shapes when `abstract`) and the jitted train and eval steps, compiled on
  first call. No pretrained weights: see `load_pretrained`."""
  dataset_fit.check(cfg, meta)  # Before any compile: class weights, the model's input sizes.
  model = build_model(cfg.model, meta.num_classes)
  tx, schedule = optim.build_optimizer(cfg.optim, cfg.train.steps)
  shape_HWC, ema = (*cfg.augment.crop_size, 3), cfg.train.ema_decay > 0
  state = (abstract_train_state(model, tx, shape_HWC, mesh, ema) if abstract else
           create_train_state(model, tx, shape_HWC, cfg.seed, mesh, ema))
  loss_fn = losses.make_loss(cfg.loss, meta.ignore_index)
  train_step = steps.jit_train_step(steps.make_train_step(model, loss_fn, tx, schedule, cfg),
                                    state, mesh)
  eval_step = evaluate.jit_eval_step(
      evaluate.make_eval_step(model, cfg, meta.num_classes, meta.ignore_index), state, mesh)
  return Run(cfg, mesh, meta, model, tx, state, train_step, eval_step)


def load_pretrained(state: TrainState,
                    pretrained: pretrained_weights.Pretrained | None) -> TrainState:
  """The initial state with `pretrained` (models/pretrained.resolve: `model.weights` or
  the backbone's, read and checked before the data) loaded over it; None: unchanged."""
  if pretrained is None:
    return state
  variables, report = pretrained_weights.load_pretrained_state(state.variables(), pretrained)
  if jax.process_index() == 0:
    print(report.summary())
  state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
  if state.ema_params:  # The average starts from the loaded weights too.
    state = state.replace(ema_params=variables["params"])
  return state


def synthetic_meta(num_classes: int, canvas_HW: tuple[int, int]) -> DatasetMeta:
  """The meta of K unnamed classes (ignore index 255), for tests and benchmarks."""
  return DatasetMeta(class_names=tuple(f"class{k}" for k in range(num_classes)),
                     palette_K3=np.zeros((num_classes, 3), np.uint8), ignore_index=255,
                     eval_canvas_HW=tuple(canvas_HW))


def build_from_checkpoint(cfg: ml_collections.ConfigDict, workdir: str, overrides=()
                          ) -> tuple[Run, TrainState, int, str]:
  """(run, restored state, step, checkpoint path) of what `cfg.eval.checkpoint` names
  (default: the newest intact checkpoint in `workdir`, newer damaged ones said).

  The run is rebuilt from the checkpoint's own config (with `overrides` of
  inference keys, config/from_checkpoint.py) and dataset meta, so no dataset
  is read; only checkpoints older than the stored meta fall back to the dataset.
  """
  hint = f"python run.py --exp {cfg.experiment or 'NAME'} --workdir {workdir}"
  ckpt, step = checkpoint.open_existing(cfg.eval.checkpoint, workdir, hint)
  try:
    # The newest config that reads (a named step: that one, damaged or not) shapes the model.
    saved, damaged = None, []
    for candidate in [step] if step is not None else sorted(ckpt.manager.all_steps())[::-1]:
      try:
        saved = candidate, ckpt.restore_config(candidate), ckpt.restore_meta(candidate)
        break
      except checkpoint.DamagedCheckpointError as e:
        if step is not None:
          raise
        damaged.append(e)
    if saved is None:
      raise ckpt.none_intact(damaged)
    cfg = config_from_checkpoint(saved[1], overrides, requested=cfg.experiment)
    if saved[2] is None:
      print(f"note: checkpoint {ckpt.directory}/{saved[0]} predates stored dataset meta; "
            f"reading it from dataset {cfg.data.name!r} in {cfg.data.dir}", flush=True)
      meta = datasets.meta_of(datasets.prepare(cfg.data))
    else:
      meta = DatasetMeta.from_json(saved[2])
    run = build(cfg, meta, make_mesh(), abstract=True)  # No init: the checkpoint fills it.
    if step is not None:
      state = ckpt.restore(step, run.state)  # The one asked for: damaged = an error.
    else:
      state, step, skipped, _ = ckpt.restore_newest_intact(run.state)
      if jax.process_index() == 0:
        for e in skipped:
          print(f"warning: skipped checkpoint {e.step} in {ckpt.directory}: {e.path} is "
                f"damaged ({e.reason})", file=sys.stderr, flush=True)
    return run, state, step, os.path.join(ckpt.directory, str(step))
  finally:
    ckpt.close()
