"""Optimizers and learning-rate schedules, chosen by name in `cfg.optim`."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg.checks import Checker
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


def param_path(path) -> str:
  """A tree path as 'encoder/Conv_0/kernel', the form `optim.lr_mult` regexes match."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(cfg):
  """None (decay everything) or params -> True on kernels only: biases and norm
  scales/offsets are the 1-D params."""
  if cfg.decay_norm_and_bias:
    return None
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def lr_multipliers(cfg, params):
  """The multiplier of each param: the first `optim.lr_mult` regex that matches, else 1."""
  rules = [(re.compile(pattern), float(mult)) for pattern, mult in cfg.lr_mult]

  def multiplier(path, _):
    name = param_path(path)
    return next((mult for regex, mult in rules if regex.search(name)), 1.0)

  return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_lr_mult(cfg) -> optax.GradientTransformation:
  """Scales final updates per param group. Every optimizer here is linear in lr at
  its last stage (decoupled decay included), so this equals a per-group lr."""

  def update(updates, params=None):
    del params
    return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates,
                        lr_multipliers(cfg, updates))

  return optax.stateless(update)


@OPTIMIZERS.register("sgd")
def sgd(cfg, lr) -> optax.GradientTransformation:
  # Decay added to the gradient before momentum, as torch.optim.SGD does.
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask(cfg)),
                     optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))


@OPTIMIZERS.register("adam")
def adam(cfg, lr) -> optax.GradientTransformation:
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask(cfg)),
                     optax.adam(lr, b1=cfg.b1, b2=cfg.b2))


@OPTIMIZERS.register("adamw")
def adamw(cfg, lr) -> optax.GradientTransformation:
  return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                     mask=decay_mask(cfg))


def validate_config(optim_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `optim` section."""
  c = Checker(optim_cfg, "optim")
  c.choice("name", OPTIMIZERS.names(), "optimizer")
  c.choice("schedule", SCHEDULES.names(), "schedule")
  c.number("lr", above=0)
  for key in ("momentum", "b1", "b2"):
    c.number(key, min=0, below=1)
  for key in ("weight_decay", "end_lr", "clip_grad_norm"):
    c.number(key, min=0)
  c.number("poly_power", above=0)
  c.count("warmup_steps", min=0)
  c.regex_rules("lr_mult")


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """Returns (optax transformation, schedule) from `cfg.optim`.

  Order: clip the (accumulated) gradient by global norm, run the named
  optimizer, then scale each param group's update by its lr multiplier.
  """
  schedule = build_schedule(cfg, total_steps)
  parts = [OPTIMIZERS.get(cfg.name)(cfg, schedule)]
  if cfg.clip_grad_norm > 0:
    parts.insert(0, optax.clip_by_global_norm(cfg.clip_grad_norm))
  if cfg.lr_mult:
    parts.append(scale_by_lr_mult(cfg))
  return optax.chain(*parts) if len(parts) > 1 else parts[0], schedule
