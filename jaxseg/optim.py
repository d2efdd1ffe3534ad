"""Optimizers and learning-rate schedules, chosen by name in `cfg.optim`."""

from __future__ import annotations

import ml_collections
import optax

from jaxseg.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@SCHEDULES.register("poly")
def poly(cfg, decay_steps: int) -> optax.Schedule:
  return optax.polynomial_schedule(cfg.lr, cfg.end_lr, cfg.poly_power, decay_steps)


@SCHEDULES.register("cosine")
def cosine(cfg, decay_steps: int) -> optax.Schedule:
  return optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.end_lr / cfg.lr)


@SCHEDULES.register("constant")
def constant(cfg, decay_steps: int) -> optax.Schedule:
  del decay_steps
  return optax.constant_schedule(cfg.lr)


def build_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr`, then the named decay over the remaining steps."""
  decay = SCHEDULES.get(cfg.schedule)(cfg, max(total_steps - cfg.warmup_steps, 1))
  if cfg.warmup_steps <= 0:
    return decay
  warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


@OPTIMIZERS.register("sgd")
def sgd(cfg, lr) -> optax.GradientTransformation:
  # Decay added to the gradient before momentum, as torch.optim.SGD does.
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))


@OPTIMIZERS.register("adam")
def adam(cfg, lr) -> optax.GradientTransformation:
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.adam(lr, b1=cfg.b1, b2=cfg.b2))


@OPTIMIZERS.register("adamw")
def adamw(cfg, lr) -> optax.GradientTransformation:
  return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """Returns (optax transformation, schedule) from `cfg.optim`."""
  schedule = build_schedule(cfg, total_steps)
  return OPTIMIZERS.get(cfg.name)(cfg, schedule), schedule
